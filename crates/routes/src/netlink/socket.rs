//! A NETLINK_ROUTE socket over libc: blocking sends of whole batches,
//! receives into a caller's buffer, multicast groups and a socket filter.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::Error;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NETLINK_GET_STRICT_CHK: libc::c_int = 12;

/// rtnetlink multicast groups the monitor joins.
pub(crate) const RTNLGRP_LINK: u32 = 1;
pub(crate) const RTNLGRP_IPV4_ROUTE: u32 = 7;
pub(crate) const RTNLGRP_IPV6_ROUTE: u32 = 11;
pub(crate) const RTNLGRP_NEXTHOP: u32 = 32;

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A bound NETLINK_ROUTE socket.
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// Opens and binds a socket with `rcvbuf` bytes of receive buffer.
    pub(crate) fn open(rcvbuf: usize) -> Result<Socket, Error> {
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(Error::io("open netlink socket", last_errno()));
        }
        // SAFETY: fd is a fresh descriptor we own.
        let sock = Socket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        };
        // Extended acks and strict dump filtering are best effort (older
        // kernels lack them); capped acks keep error acks small.
        let _ = sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1);
        let _ = sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1);
        let _ = sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1);
        let rcv = i32::try_from(rcvbuf).unwrap_or(i32::MAX);
        if sock
            .setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcv)
            .is_err()
        {
            let _ = sock.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, rcv);
        }
        if sock
            .setsockopt(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20)
            .is_err()
        {
            let _ = sock.setsockopt(libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
        }
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: addr is a valid sockaddr_nl of the given length.
        let rc = unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(Error::io("bind netlink socket", last_errno()));
        }
        Ok(sock)
    }

    fn setsockopt(&self, level: libc::c_int, name: libc::c_int, value: i32) -> Result<(), i32> {
        // SAFETY: value outlives the call; its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    }

    /// The port id the kernel gave this socket (what notifications caused
    /// by our own requests carry in `nlmsg_pid`).
    pub(crate) fn portid(&self) -> Result<u32, Error> {
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: addr and len are valid for writing, len holds addr's size.
        let rc = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut addr as *mut libc::sockaddr_nl).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(Error::io("read the netlink port id", last_errno()));
        }
        Ok(addr.nl_pid)
    }

    /// Joins a multicast group.
    pub(crate) fn join(&self, group: u32) -> Result<(), Error> {
        let group = i32::try_from(group).unwrap_or(0);
        self.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            .map_err(|errno| Error::io("join netlink group", errno))
    }

    /// Attaches a classic BPF filter.
    pub(crate) fn attach_filter(&self, program: &[libc::sock_filter]) -> Result<(), Error> {
        let prog = libc::sock_fprog {
            len: u16::try_from(program.len()).unwrap_or(0),
            filter: program.as_ptr().cast_mut(),
        };
        // SAFETY: prog points into `program`, alive for the call; the
        // kernel copies the program.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(Error::io("attach notification filter", last_errno()));
        }
        Ok(())
    }

    /// Sends one datagram (a batch of messages) to the kernel.
    pub(crate) fn send(&self, buf: &[u8]) -> Result<(), Error> {
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: buf and kernel are valid for the lengths passed.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    0,
                    (&kernel as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if rc >= 0 {
                return Ok(());
            }
            let errno = last_errno();
            if errno != libc::EINTR {
                return Err(Error::io("send netlink batch", errno));
            }
        }
    }

    /// Receives one datagram; `Ok(None)` if `nonblocking` and none is
    /// waiting. ENOBUFS (notifications lost) comes back as an error.
    pub(crate) fn recv(&self, buf: &mut [u8], nonblocking: bool) -> Result<Option<usize>, i32> {
        let flags = if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        loop {
            // SAFETY: buf is valid for writes of its length.
            let rc = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
            if rc >= 0 {
                return Ok(Some(rc as usize));
            }
            match last_errno() {
                libc::EINTR => continue,
                libc::EAGAIN => return Ok(None),
                errno => return Err(errno),
            }
        }
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
