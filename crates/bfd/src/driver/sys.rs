//! The socket calls std and tokio do not offer: options before bind
//! (IP_FREEBIND, TTL, receiving TTL and destination address) and
//! `recvmsg` with its control messages.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Traffic class for BFD: CS6, internetwork control (what BIRD uses too).
const TOS_NETWORK_CONTROL: libc::c_int = 0xc0;

/// A non-blocking, close-on-exec UDP socket of `addr`'s family.
fn udp_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket has no memory-safety preconditions.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a descriptor we just opened and nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt on a descriptor we own, with a pointer to a c_int
    // that outlives the call and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A `sockaddr_storage` holding `addr`, and its length.
fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in; we write one whole value.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn bind(fd: &OwnedFd, addr: &SocketAddr) -> io::Result<()> {
    let (storage, len) = sockaddr(addr);
    // SAFETY: bind reads `len` bytes of a sockaddr we built and own.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The receiving socket on the wildcard address of `addr`'s family and
/// its port, reporting each datagram's TTL (hop limit) and destination
/// address. IPv6 sockets are IPv6-only.
pub(super) fn listener(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let fd = udp_socket(&addr)?;
    match addr {
        SocketAddr::V4(_) => {
            set_int(&fd, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
            set_int(&fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        }
        SocketAddr::V6(_) => {
            set_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
            set_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
            set_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        }
    }
    bind(&fd, &addr)?;
    Ok(std::net::UdpSocket::from(fd))
}

/// A sending socket bound to `addr` (which need not exist yet:
/// IP_FREEBIND), sending with TTL / hop limit 255 and traffic class CS6.
pub(super) fn sender(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let fd = udp_socket(&addr)?;
    // IP_FREEBIND applies to IPv6 sockets as well on Linux.
    set_int(&fd, libc::IPPROTO_IP, libc::IP_FREEBIND, 1)?;
    match addr {
        SocketAddr::V4(_) => {
            set_int(&fd, libc::IPPROTO_IP, libc::IP_TTL, 255)?;
            set_int(&fd, libc::IPPROTO_IP, libc::IP_TOS, TOS_NETWORK_CONTROL)?;
        }
        SocketAddr::V6(_) => {
            set_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 255)?;
            set_int(
                &fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_TCLASS,
                TOS_NETWORK_CONTROL,
            )?;
        }
    }
    bind(&fd, &addr)?;
    Ok(std::net::UdpSocket::from(fd))
}

/// One received datagram's addresses and TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Received {
    /// Bytes received (at most the buffer's length).
    pub(super) len: usize,
    /// The datagram was longer than the buffer.
    pub(super) truncated: bool,
    /// Where it came from.
    pub(super) source: SocketAddr,
    /// The destination address of its IP header.
    pub(super) destination: Option<IpAddr>,
    /// Its IP TTL or IPv6 hop limit on arrival.
    pub(super) ttl: Option<u8>,
}

/// Control buffer for recvmsg, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct ControlBuffer([u8; 256]);

/// `recvmsg` on a non-blocking socket: WouldBlock when nothing is queued.
pub(super) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut source = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut control = ControlBuffer([0; 256]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all zeroes is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = source.as_mut_ptr().cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: every pointer in msg points at a live buffer of the length
    // given beside it, all outliving the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: recvmsg filled in (at most) the zero-initialised storage.
    let source = unsafe { source.assume_init() };
    let source = from_sockaddr(&source)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown address family"))?;
    let mut received = Received {
        len: usize::try_from(n).unwrap_or(0).min(buf.len()),
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        source,
        destination: None,
        ttl: None,
    };
    // SAFETY: msg describes the control buffer recvmsg just filled; the
    // CMSG_* helpers stay within msg_controllen, and each payload is read
    // unaligned with the type its level and type announce.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_TTL) => {
                    let ttl = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                    received.ttl = u8::try_from(ttl).ok();
                }
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                    received.destination = Some(IpAddr::V4(Ipv4Addr::from(
                        info.ipi_addr.s_addr.to_ne_bytes(),
                    )));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                    let hops = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                    received.ttl = u8::try_from(hops).ok();
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    received.destination = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(received)
}

/// Random bytes from the kernel (getrandom(2)), for discriminators,
/// source ports and the jitter seed.
pub(super) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(bytes)
    } else {
        // No getrandom: the time and our pid are random enough for ports
        // and jitter (discriminators only need to be unique here).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 32)
    }
}
