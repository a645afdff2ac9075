//! TUN devices: one per connection, behaving like a VTI.
//!
//! Created with the `TUNSETIFF` ioctl on `/dev/net/tun` (IFF_TUN |
//! IFF_NO_PI: plain IP packets), configured with the classic interface
//! ioctls: MTU, the local tunnel address with the peer as point-to-point
//! destination (`169.254.21.1 peer 169.254.21.2`), and the link state. The
//! link is up only while a child SA is installed, so routing (and the
//! route programmer watching links) sees the tunnel's state.
//!
//! Hand-written rather than through the `tun` crate: the datapath needs the
//! raw non-blocking fd for poll(2)/batched reads, and later IFF_VNET_HDR
//! offloads, and this is a few ioctls.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
/// `_IOW('T', 208, unsigned int)`.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `_IOW('T', 216, int)`.
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
/// The device's transmit queue, packets (the kernel's default for a TUN
/// device is 500). Packets routed into the tunnel wait here until the
/// datapath reads them; 1000, Ethernet's default, rides out the moments a
/// busy machine does not schedule the datapath (at 2 Gbit/s of 1400-byte
/// packets 500 is 2.8 ms). `ip link set DEV txqueuelen N` changes it.
const TX_QUEUE_LEN: libc::c_int = 1000;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// `struct ifreq` with the union fields we use.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: IfReqData,
}

#[repr(C)]
union IfReqData {
    flags: libc::c_short,
    mtu: libc::c_int,
    qlen: libc::c_int,
    addr: libc::sockaddr_in,
    _pad: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}"),
            ));
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: IfReqData { _pad: [0; 24] },
        };
        for (d, s) in req.name.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        Ok(req)
    }
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A TUN device. Closing it (drop) removes the interface.
#[derive(Debug)]
pub struct Tun {
    file: File,
    /// More queues of a multi-queue device (each its own descriptor; the
    /// kernel spreads flows over them).
    queues: Vec<File>,
    name: String,
    offload: bool,
}

impl Tun {
    /// Creates (or attaches to) TUN device `name`, non-blocking: one plain
    /// IP packet per read and write.
    pub fn create(name: &str) -> io::Result<Tun> {
        Tun::open(name, false, 1)
    }

    /// Creates TUN device `name` with offloads: every packet read or
    /// written starts with a virtio-net header
    /// ([`offload::VnetHdr`](super::offload::VnetHdr)), and the kernel may
    /// hand over TCP super-packets of up to 64 KiB (TSO) with partial
    /// checksums, and take them (GRO): far fewer reads and writes per
    /// byte.
    pub fn create_offload(name: &str) -> io::Result<Tun> {
        Tun::open(name, true, 1)
    }

    /// [`Tun::create_offload`] with `queues` queues (`IFF_MULTI_QUEUE`;
    /// one is an ordinary device): each has its own descriptor
    /// ([`Tun::queue_fds`]), and the kernel hands each flow's packets to
    /// one of them, so that several threads can read the device.
    pub fn create_offload_queues(name: &str, queues: usize) -> io::Result<Tun> {
        Tun::open(name, true, queues.max(1))
    }

    /// Opens `/dev/net/tun` and attaches it to `name` (creating it).
    fn attach(name: &str, flags: libc::c_short) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        let mut req = IfReq::new(name)?;
        req.data.flags = flags;
        // SAFETY: TUNSETIFF reads and writes an ifreq, which `req` is.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(file)
    }

    fn open(name: &str, offload: bool, queues: usize) -> io::Result<Tun> {
        let flags = IFF_TUN
            | IFF_NO_PI
            | if offload { IFF_VNET_HDR } else { 0 }
            | if queues > 1 { IFF_MULTI_QUEUE } else { 0 };
        let file = Tun::attach(name, flags)?;
        let queues = (1..queues)
            .map(|_| Tun::attach(name, flags))
            .collect::<io::Result<Vec<File>>>()?;
        if offload {
            let size = super::offload::VNET_HDR_LEN as libc::c_int;
            // SAFETY: TUNSETVNETHDRSZ reads an int.
            if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETVNETHDRSZ, &size) } < 0 {
                return Err(io::Error::last_os_error());
            }
            // UDP segmentation offload (UDP_SEGMENT sends of local or
            // forwarded traffic reach us whole) since Linux 6.2; without it
            // the kernel cuts them up before they reach us.
            let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
            let set = |flags: libc::c_uint| {
                // SAFETY: TUNSETOFFLOAD takes an unsigned int by value.
                unsafe { libc::ioctl(file.as_raw_fd(), TUNSETOFFLOAD, flags) >= 0 }
            };
            let uso = !super::datapath::disabled("tun-uso");
            let with_uso = uso && set(tso | TUN_F_USO4 | TUN_F_USO6);
            if !with_uso && !set(tso) {
                return Err(io::Error::last_os_error());
            }
        }
        let tun = Tun {
            file,
            queues,
            name: name.to_string(),
            offload,
        };
        if !super::datapath::disabled("tx-queue") {
            let mut req = IfReq::new(name)?;
            req.data.qlen = TX_QUEUE_LEN;
            ctl(libc::SIOCSIFTXQLEN, &mut req)?;
        }
        Ok(tun)
    }

    /// Whether packets carry a virtio-net header ([`Tun::create_offload`]).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The non-blocking file descriptor packets are read from and written to.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Every queue's descriptor, [`Tun::fd`] first.
    pub fn queue_fds(&self) -> Vec<RawFd> {
        std::iter::once(&self.file)
            .chain(&self.queues)
            .map(AsRawFd::as_raw_fd)
            .collect()
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, mtu: u16) -> io::Result<()> {
        let mut req = IfReq::new(&self.name)?;
        req.data.mtu = libc::c_int::from(mtu);
        ctl(libc::SIOCSIFMTU, &mut req)
    }

    /// Puts `local` on the device with `peer` as point-to-point destination
    /// (a /32 route to the peer through the tunnel comes with it).
    pub fn set_ptp_v4(&self, local: Ipv4Addr, peer: Ipv4Addr) -> io::Result<()> {
        let mut req = IfReq::new(&self.name)?;
        req.data.addr = sockaddr(local);
        ctl(libc::SIOCSIFADDR, &mut req)?;
        let mut req = IfReq::new(&self.name)?;
        req.data.addr = sockaddr(Ipv4Addr::BROADCAST);
        ctl(libc::SIOCSIFNETMASK, &mut req)?;
        let mut req = IfReq::new(&self.name)?;
        req.data.addr = sockaddr(peer);
        ctl(libc::SIOCSIFDSTADDR, &mut req)
    }

    /// Gives the device IPv6 address `local` (/128: the device is
    /// point-to-point, routes name it, not a subnet).
    pub fn add_addr_v6(&self, local: std::net::Ipv6Addr) -> io::Result<()> {
        let index = ifindex(&self.name)?;
        // struct in6_ifreq (linux/ipv6.h).
        #[repr(C)]
        struct In6IfReq {
            addr: libc::in6_addr,
            prefixlen: u32,
            ifindex: libc::c_int,
        }
        let mut req = In6IfReq {
            addr: libc::in6_addr {
                s6_addr: local.octets(),
            },
            prefixlen: 128,
            ifindex: libc::c_int::try_from(index)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex"))?,
        };
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads a struct in6_ifreq.
        let rc = unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCSIFADDR as _,
                std::ptr::addr_of_mut!(req),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            // Already there (a restart reusing the device) is fine.
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sets the link up or down.
    pub fn set_up(&self, up: bool) -> io::Result<()> {
        set_link_up(&self.name, up)
    }
}

/// Sets interface `name` up or down.
pub fn set_link_up(name: &str, up: bool) -> io::Result<()> {
    let mut req = IfReq::new(name)?;
    ctl(libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let mut flags = unsafe { req.data.flags };
    let up_bits = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    if up {
        flags |= up_bits;
    } else {
        flags &= !up_bits;
    }
    req.data.flags = flags;
    ctl(libc::SIOCSIFFLAGS, &mut req)
}

/// The interface index of `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// Runs an interface ioctl on a throwaway AF_INET datagram socket.
fn ctl(request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the interface ioctls read/write a struct ifreq.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut IfReq) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
