//! Batched UDP with segmentation offloads: what the datapath's threads use
//! on port 4500.
//!
//! - Sending: sealed ESP datagrams are packed into messages of equal-size
//!   datagrams (the last may be shorter) and each message goes out as one
//!   UDP GSO send (`UDP_SEGMENT`): the kernel cuts it into datagrams as
//!   late as it can. Up to [`MSGS`] messages per `sendmmsg`. Without GSO
//!   (old kernels, or a send it refused) every datagram is its own message.
//! - Receiving: with `UDP_GRO` the kernel hands over runs of datagrams of
//!   one flow in one buffer, with their size in a control message; up to
//!   [`MSGS`] buffers per `recvmmsg`.
//!
//! Buffers are allocated once; nothing allocates per packet.

use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, SocketAddrV4};

/// Messages per `sendmmsg` / `recvmmsg`.
pub const MSGS: usize = 32;
/// Room for one message: a GSO run or a GRO buffer (64 KiB).
pub const MSG_CAP: usize = 65_536;
/// The most payload one GSO send may carry (IPv4's 64 KiB, less headers).
const GSO_MAX_BYTES: usize = 65_000;
/// The most datagrams in one GSO send (`UDP_MAX_SEGMENTS`).
const GSO_MAX_SEGMENTS: usize = 64;

const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

/// Room for one control message carrying an int, 8-byte aligned.
type Cmsg = [u64; 4];

/// Whether the kernel takes `UDP_SEGMENT` on this socket.
pub fn gso_supported(fd: i32) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a live int of the given size.
    unsafe {
        libc::getsockopt(
            fd,
            SOL_UDP,
            UDP_SEGMENT,
            std::ptr::addr_of_mut!(v).cast(),
            &mut len,
        ) == 0
    }
}

/// Socket buffers of `bytes` each way: a burst of 64 KiB GSO runs must
/// not overflow the receive queue while the receive thread decrypts. With
/// CAP_NET_ADMIN past `net.core.rmem_max`/`wmem_max`; otherwise up to them.
pub fn set_buffers(fd: i32, bytes: usize) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (forced, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        let set = |opt| {
            // SAFETY: setsockopt from a live int of the given size.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    std::ptr::addr_of!(v).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                ) == 0
            }
        };
        if !set(forced) {
            set(plain);
        }
    }
}

/// Turns on `UDP_GRO`; whether the kernel took it.
pub fn enable_gro(fd: i32) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt from a live int of the given size.
    unsafe {
        libc::setsockopt(
            fd,
            SOL_UDP,
            UDP_GRO,
            std::ptr::addr_of!(on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Asks the kernel to queue the ICMP errors our datagrams draw on the
/// socket's error queue (`IP_RECVERR`, and `IPV6_RECVERR` on an IPv6
/// socket), where [`read_error`] finds them. False if neither took.
pub fn enable_recverr(fd: i32) -> bool {
    let on: libc::c_int = 1;
    let set = |level, name| {
        // SAFETY: setsockopt from a live int of the given size.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                std::ptr::addr_of!(on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    let v4 = set(libc::SOL_IP, libc::IP_RECVERR);
    let v6 = set(libc::SOL_IPV6, libc::IPV6_RECVERR);
    v4 || v6
}

/// How many octets of the refused datagram [`SendError`] keeps: an ESP
/// header (SPI and sequence number).
pub const ERROR_HEAD: usize = 8;

/// An ICMP error about a datagram we sent, from the socket's error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendError {
    /// Where the refused datagram was going.
    pub to: SocketAddr,
    /// The error the ICMP message stands for (`ECONNREFUSED`: port
    /// unreachable, nothing listens there).
    pub errno: i32,
    /// It came in an ICMP or ICMPv6 message (not a local error).
    pub icmp: bool,
    /// The first octets of the refused datagram's payload, as the ICMP
    /// message quoted them...
    pub head: [u8; ERROR_HEAD],
    /// ...and how many of them it quoted (at most [`ERROR_HEAD`]).
    pub head_len: usize,
}

/// Takes one entry off the socket's error queue (see [`enable_recverr`]);
/// None once it is empty (or on any error). Reading it also clears the
/// error the socket would otherwise report to the next send or receive.
pub fn read_error(fd: i32) -> Option<SendError> {
    let mut head = [0u8; ERROR_HEAD];
    let mut iov = libc::iovec {
        iov_base: head.as_mut_ptr().cast(),
        iov_len: head.len(),
    };
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut name: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    // Room for a sock_extended_err and the offender's address.
    let mut control = [0u64; 16];
    // SAFETY: all-zero is a valid msghdr; the pointers are set below.
    let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    msg.msg_name = std::ptr::addr_of_mut!(name).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at our live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    let head_len = usize::try_from(n).ok()?.min(ERROR_HEAD);
    let to = addr_of(&name)?;
    let mut found = None;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut cm = libc::CMSG_FIRSTHDR(&msg);
        while !cm.is_null() {
            let level = (*cm).cmsg_level;
            let kind = (*cm).cmsg_type;
            if (level == libc::SOL_IP && kind == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR)
            {
                let ee =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cm).cast::<libc::sock_extended_err>());
                found = Some(ee);
            }
            cm = libc::CMSG_NXTHDR(&msg, cm);
        }
    }
    let ee = found?;
    Some(SendError {
        to,
        errno: i32::try_from(ee.ee_errno).unwrap_or(0),
        icmp: ee.ee_origin == libc::SO_EE_ORIGIN_ICMP || ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6,
        head,
        head_len,
    })
}

/// The socket address in `storage` (None for a family other than IPv4/6).
pub fn addr_of(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &*std::ptr::addr_of!(*storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &*std::ptr::addr_of!(*storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

/// Sealed datagrams waiting to be sent to one peer.
pub struct TxBatch {
    bufs: Vec<Vec<u8>>,
    lens: [usize; MSGS],
    /// Datagram size of each message (all but the last equal to it).
    seg: [usize; MSGS],
    counts: [usize; MSGS],
    /// A shorter datagram ended the message: nothing may follow.
    closed: [bool; MSGS],
    n: usize,
    gso: bool,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    cmsgs: Vec<Cmsg>,
}

impl std::fmt::Debug for TxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxBatch")
            .field("messages", &self.n)
            .field("gso", &self.gso)
            .finish_non_exhaustive()
    }
}

/// What a [`TxBatch::send`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Datagrams that went out.
    pub datagrams: u64,
    /// Datagrams that could not be sent.
    pub failed: u64,
}

impl TxBatch {
    /// An empty batch; `gso` says whether to pack datagrams into GSO sends.
    pub fn new(gso: bool) -> TxBatch {
        TxBatch {
            bufs: (0..MSGS).map(|_| vec![0u8; MSG_CAP]).collect(),
            lens: [0; MSGS],
            seg: [0; MSGS],
            counts: [0; MSGS],
            closed: [false; MSGS],
            n: 0,
            gso,
            iovs: (0..MSGS)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            // SAFETY: all-zero mmsghdr is valid (null pointers, zero lengths).
            msgs: (0..MSGS)
                .map(|_| unsafe { MaybeUninit::zeroed().assume_init() })
                .collect(),
            cmsgs: vec![[0u64; 4]; MSGS],
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Whether a datagram of `len` bytes has room ([`TxBatch::slot`]
    /// would give one).
    pub fn fits(&self, len: usize) -> bool {
        if len == 0 || len > GSO_MAX_BYTES {
            return false;
        }
        let joins = self.n.checked_sub(1).is_some_and(|m| {
            self.gso
                && !self.closed[m]
                && self.counts[m] < GSO_MAX_SEGMENTS
                && self.lens[m] + len <= GSO_MAX_BYTES
                && len <= self.seg[m]
        });
        joins || self.n < MSGS
    }

    /// Room for one datagram of `len` bytes, or None when the batch is
    /// full (send it first). The slot is part of the batch from now on.
    pub fn slot(&mut self, len: usize) -> Option<&mut [u8]> {
        if len == 0 || len > GSO_MAX_BYTES {
            return None;
        }
        if let Some(m) = self.n.checked_sub(1) {
            if self.gso
                && !self.closed[m]
                && self.counts[m] < GSO_MAX_SEGMENTS
                && self.lens[m] + len <= GSO_MAX_BYTES
                && len <= self.seg[m]
            {
                let start = self.lens[m];
                self.lens[m] += len;
                self.counts[m] += 1;
                self.closed[m] = len < self.seg[m];
                return self.bufs[m].get_mut(start..start + len);
            }
        }
        if self.n == MSGS {
            return None;
        }
        let m = self.n;
        self.n += 1;
        self.lens[m] = len;
        self.seg[m] = len;
        self.counts[m] = 1;
        self.closed[m] = false;
        self.bufs[m].get_mut(..len)
    }

    /// Gives back the last slot (its datagram could not be sealed).
    pub fn unslot(&mut self, len: usize) {
        if let Some(m) = self.n.checked_sub(1) {
            self.lens[m] -= len.min(self.lens[m]);
            self.counts[m] = self.counts[m].saturating_sub(1);
            if self.counts[m] == 0 {
                self.n = m;
            }
        }
    }

    /// Sends everything to `peer` on `fd`, waiting (up to 100 ms at a time)
    /// while the socket is full unless `stopping` says otherwise; empties
    /// the batch.
    pub fn send(
        &mut self,
        fd: i32,
        peer: &(libc::sockaddr_storage, libc::socklen_t),
        stopping: &dyn Fn() -> bool,
    ) -> Sent {
        let mut result = Sent::default();
        let n = std::mem::take(&mut self.n);
        let mut i = 0;
        let mut retried = false;
        while i < n {
            for k in i..n {
                self.iovs[k] = libc::iovec {
                    iov_base: self.bufs[k].as_mut_ptr().cast(),
                    iov_len: self.lens[k],
                };
                let h = &mut self.msgs[k].msg_hdr;
                h.msg_name = std::ptr::addr_of!(peer.0).cast_mut().cast();
                h.msg_namelen = peer.1;
                h.msg_iov = &mut self.iovs[k];
                h.msg_iovlen = 1;
                h.msg_flags = 0;
                if self.counts[k] > 1 {
                    let c = &mut self.cmsgs[k];
                    // SAFETY: CMSG_SPACE of a u16 fits Cmsg (32 bytes).
                    let space = unsafe { libc::CMSG_SPACE(2) } as usize;
                    h.msg_control = c.as_mut_ptr().cast();
                    h.msg_controllen = space;
                    // SAFETY: the header points at `c`, large and aligned
                    // enough for one cmsghdr with 2 bytes of data.
                    unsafe {
                        let cm = libc::CMSG_FIRSTHDR(h);
                        (*cm).cmsg_level = SOL_UDP;
                        (*cm).cmsg_type = UDP_SEGMENT;
                        (*cm).cmsg_len = libc::CMSG_LEN(2) as usize;
                        std::ptr::write_unaligned(
                            libc::CMSG_DATA(cm).cast::<u16>(),
                            self.seg[k] as u16,
                        );
                    }
                } else {
                    h.msg_control = std::ptr::null_mut();
                    h.msg_controllen = 0;
                }
            }
            // SAFETY: msgs[i..n] point at live buffers, control data and
            // the peer address.
            let r = unsafe { libc::sendmmsg(fd, self.msgs[i..].as_mut_ptr(), (n - i) as u32, 0) };
            if r > 0 {
                for k in i..i + r as usize {
                    result.datagrams += self.counts[k] as u64;
                }
                i += r as usize;
                retried = false;
                continue;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock && !stopping() {
                wait_writable(fd);
                continue;
            }
            if !retried && pending_icmp_error(&err) {
                // An ICMP error about an earlier datagram (to any peer:
                // the socket is shared), reported by this send and cleared
                // by it; this message itself was not sent. Once more.
                retried = true;
                continue;
            }
            retried = false;
            if self.counts[i] > 1 && matches!(err.raw_os_error(), Some(libc::EIO | libc::EINVAL)) {
                // The kernel refused the GSO send: from now on one datagram
                // per message; this one goes out datagram by datagram.
                self.gso = false;
                let seg = self.seg[i];
                let mut off = 0;
                while off < self.lens[i] {
                    let len = seg.min(self.lens[i] - off);
                    // SAFETY: sending from our own buffer to a valid address.
                    let w = unsafe {
                        libc::sendto(
                            fd,
                            self.bufs[i][off..].as_ptr().cast(),
                            len,
                            0,
                            std::ptr::addr_of!(peer.0).cast(),
                            peer.1,
                        )
                    };
                    if w < 0 {
                        result.failed += 1;
                    } else {
                        result.datagrams += 1;
                    }
                    off += len;
                }
            } else {
                result.failed += self.counts[i] as u64;
            }
            i += 1;
        }
        result
    }
}

/// Errors a send reports for an ICMP message about an earlier datagram
/// (`IP_RECVERR` makes the socket keep them for the next call).
fn pending_icmp_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EPROTO)
    )
}

fn wait_writable(fd: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 100) };
}

/// Buffers for `recvmmsg`, with the `UDP_GRO` segment size of each.
pub struct RxBatch {
    bufs: Vec<Vec<u8>>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    msgs: Vec<libc::mmsghdr>,
    cmsgs: Vec<Cmsg>,
    n: usize,
}

impl std::fmt::Debug for RxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxBatch")
            .field("received", &self.n)
            .finish_non_exhaustive()
    }
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch::new()
    }
}

impl RxBatch {
    /// Buffers for [`MSGS`] messages of up to [`MSG_CAP`] bytes.
    pub fn new() -> RxBatch {
        RxBatch {
            bufs: (0..MSGS).map(|_| vec![0u8; MSG_CAP]).collect(),
            iovs: (0..MSGS)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            // SAFETY: all-zero sockaddr_storage / mmsghdr are valid.
            addrs: (0..MSGS)
                .map(|_| unsafe { MaybeUninit::zeroed().assume_init() })
                .collect(),
            // SAFETY: as above.
            msgs: (0..MSGS)
                .map(|_| unsafe { MaybeUninit::zeroed().assume_init() })
                .collect(),
            cmsgs: vec![[0u64; 4]; MSGS],
            n: 0,
        }
    }

    /// Receives what is waiting on `fd` without blocking; returns how many
    /// messages arrived.
    pub fn recv(&mut self, fd: i32) -> usize {
        for i in 0..MSGS {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: MSG_CAP,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = std::ptr::addr_of_mut!(self.addrs[i]).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of::<Cmsg>();
            h.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: msgs point at our buffers, address and control slots.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                MSGS as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        self.n = usize::try_from(n).unwrap_or(0);
        self.n
    }

    /// Message `i`: its sender, and its bytes with the datagram size they
    /// are made of (the whole length when not coalesced).
    pub fn message(&mut self, i: usize) -> Option<(&libc::sockaddr_storage, &mut [u8], usize)> {
        if i >= self.n {
            return None;
        }
        let len = self.msgs[i].msg_len as usize;
        let h = &self.msgs[i].msg_hdr;
        let mut seg = len;
        if h.msg_controllen > 0 && !h.msg_control.is_null() {
            // SAFETY: the kernel filled msg_control with msg_controllen
            // bytes of well-formed control messages in our buffer.
            unsafe {
                let mut cm = libc::CMSG_FIRSTHDR(h);
                while !cm.is_null() {
                    if (*cm).cmsg_level == SOL_UDP && (*cm).cmsg_type == UDP_GRO {
                        let v = std::ptr::read_unaligned(libc::CMSG_DATA(cm).cast::<libc::c_int>());
                        if v > 0 {
                            seg = v as usize;
                        }
                    }
                    cm = libc::CMSG_NXTHDR(h, cm);
                }
            }
        }
        let buf = self.bufs[i].get_mut(..len)?;
        Some((&self.addrs[i], buf, seg.max(1)))
    }
}
