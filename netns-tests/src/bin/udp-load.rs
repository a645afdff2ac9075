//! A UDP load generator and sink for the datapath benchmark, where iperf3
//! cannot go: iperf3 3.12 sends UDP from one thread with one `send` per
//! datagram and tops out near 1.25 Gbit/s of 1400-byte packets on this
//! machine's bare underlay, below what the tunnels carry.
//!
//! ```text
//! udp-load send ADDR:PORT --len BYTES --rate BITS_PER_S --seconds S [--flows N] [--gso]
//!     prints: sent=<datagrams> seconds=<how long it sent>
//! udp-load recv PORT [--timeout S]
//!     prints: received=<datagrams> bytes=<payload bytes> (when the sender has
//!     been quiet for half a second, or at the timeout)
//! ```
//!
//! The sender paces itself to `--rate` (payload bits per second, as iperf3's
//! `-b`; 0: as fast as it can) and sends each datagram on its own in
//! batches of `sendmmsg`, round-robin over `--flows` sockets (one source
//! port each, so the flows look like different applications). Every
//! datagram is `--len` bytes of payload. With `--gso` it hands the kernel
//! runs of up to [`GSO_SEGMENTS`] datagrams in one buffer (`UDP_SEGMENT`,
//! as QUIC servers send): the same datagrams on the wire, but the host's
//! and the gateways' kernels may carry a run as one packet until something
//! has to look at each datagram. The sink reads with `recvmmsg` and
//! `UDP_GRO` (a run of datagrams coalesced by the kernel is counted as the
//! datagrams it holds) through an 8 MiB socket buffer.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::exit;
use std::time::{Duration, Instant};

/// Datagrams per `sendmmsg`, at most.
const SEND_BATCH: usize = 64;
/// Datagrams per `UDP_SEGMENT` buffer with `--gso`.
const GSO_SEGMENTS: usize = 32;
/// Paced sends go out in bursts of about this many datagrams.
const BURST: u64 = 16;
/// Messages per `recvmmsg`.
const RECV_BATCH: usize = 32;
/// One receive buffer: a GRO run of up to 64 KiB.
const RECV_BUF: usize = 65_536;
/// The sink stops when nothing came for this long after the first datagram.
const QUIET: Duration = Duration::from_millis(500);
/// Socket buffers (set with the `FORCE` options: the benchmark runs as root).
const SOCKET_BUFFER: libc::c_int = 8 << 20;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

fn usage(error: &str) -> ! {
    eprintln!(
        "udp-load: {error}\nusage: udp-load send ADDR:PORT --len BYTES --rate BITS_PER_S \
         --seconds S [--flows N] [--gso]\n       udp-load recv PORT [--timeout S]"
    );
    exit(2)
}

fn value<T: std::str::FromStr>(args: &[String], key: &str, default: Option<T>) -> T {
    match args.iter().position(|a| a == key) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage(&format!("{key} needs a number"))),
        None => default.unwrap_or_else(|| usage(&format!("{key} is required"))),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("send") => {
            let to: SocketAddr = args
                .get(1)
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| usage("send needs ADDR:PORT"));
            let len: usize = value(&args, "--len", None);
            let rate: f64 = value(&args, "--rate", None);
            let seconds: f64 = value(&args, "--seconds", None);
            let flows: usize = value(&args, "--flows", Some(4));
            let gso = args.iter().any(|a| a == "--gso");
            if !(16..=65_000).contains(&len) || flows == 0 || seconds <= 0.0 || rate < 0.0 {
                usage("--len must be 16..=65000, --flows and --seconds positive");
            }
            let per_buffer = if gso { GSO_SEGMENTS } else { 1 };
            if len * per_buffer > 65_000 {
                usage("--len too long for --gso");
            }
            match send(
                to,
                len,
                rate,
                Duration::from_secs_f64(seconds),
                flows,
                per_buffer,
            ) {
                Ok((sent, took)) => println!("sent={sent} seconds={:.6}", took.as_secs_f64()),
                Err(e) => {
                    eprintln!("udp-load send: {e}");
                    exit(1)
                }
            }
        }
        Some("recv") => {
            let port: u16 = args
                .get(1)
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| usage("recv needs PORT"));
            let timeout: f64 = value(&args, "--timeout", Some(120.0));
            match recv(port, Duration::from_secs_f64(timeout)) {
                Ok((datagrams, bytes)) => println!("received={datagrams} bytes={bytes}"),
                Err(e) => {
                    eprintln!("udp-load recv: {e}");
                    exit(1)
                }
            }
        }
        _ => usage("send or recv?"),
    }
}

fn set_int(fd: i32, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt reads one c_int from a live local.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One iovec over each buffer, and as many empty message headers (the
/// caller points them at the iovecs before each call: the vectors may
/// move).
fn messages(bufs: &mut [Vec<u8>]) -> (Vec<libc::iovec>, Vec<libc::mmsghdr>) {
    let iovs = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
    let msgs = bufs
        .iter()
        .map(|_| unsafe { mem::zeroed::<libc::mmsghdr>() })
        .collect();
    (iovs, msgs)
}

/// Sends for `duration`, `per_buffer` datagrams per buffer (more than one:
/// `UDP_SEGMENT`); returns the datagrams sent and how long it took.
fn send(
    to: SocketAddr,
    len: usize,
    rate: f64,
    duration: Duration,
    flows: usize,
    per_buffer: usize,
) -> io::Result<(u64, Duration)> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let sockets = (0..flows)
        .map(|_| {
            let s = UdpSocket::bind(bind)?;
            s.connect(to)?;
            set_int(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                SOCKET_BUFFER,
            )?;
            if per_buffer > 1 {
                set_int(
                    s.as_raw_fd(),
                    libc::SOL_UDP,
                    UDP_SEGMENT,
                    len as libc::c_int,
                )?;
            }
            Ok(s)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let mut bufs = vec![vec![0u8; len * per_buffer]; SEND_BATCH];
    let (mut iovs, mut msgs) = messages(&mut bufs);
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let per_second = rate / (len as f64 * 8.0);
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut turn = 0usize;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let most = (SEND_BATCH * per_buffer) as u64;
        let n = if rate == 0.0 {
            most
        } else {
            let due = (elapsed.as_secs_f64() * per_second) as u64;
            if due <= sent {
                // Sleep until a burst is due (at most 1 ms).
                let next = (sent + BURST) as f64 / per_second;
                let wait = (next - elapsed.as_secs_f64()).clamp(0.000_02, 0.001);
                std::thread::sleep(Duration::from_secs_f64(wait));
                continue;
            }
            (due - sent).min(most)
        };
        // n datagrams in buffers of per_buffer (the last may hold fewer),
        // each datagram starting with its sequence number.
        let n = n as usize;
        let buffers = n.div_ceil(per_buffer);
        for (b, (buf, iov)) in bufs
            .iter_mut()
            .zip(iovs.iter_mut())
            .take(buffers)
            .enumerate()
        {
            let count = (n - b * per_buffer).min(per_buffer);
            for d in 0..count {
                let seq = sent + (b * per_buffer + d) as u64;
                buf[d * len..d * len + 8].copy_from_slice(&seq.to_be_bytes());
            }
            iov.iov_len = count * len;
        }
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()).take(buffers) {
            m.msg_hdr.msg_iov = iov;
        }
        let socket = &sockets[turn % flows];
        turn += 1;
        // SAFETY: `msgs[..buffers]` point at live iovecs over live buffers.
        let r = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), buffers as u32, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // A full queue or an ICMP error reported late: go on.
                Some(libc::ENOBUFS | libc::EAGAIN | libc::ECONNREFUSED | libc::EINTR) => continue,
                _ => return Err(e),
            }
        }
        let datagrams: usize = iovs[..r as usize].iter().map(|iov| iov.iov_len / len).sum();
        sent += datagrams as u64;
    }
    Ok((sent, start.elapsed()))
}

/// Receives until the sender has been quiet for [`QUIET`] (or `timeout`);
/// returns the datagrams and payload bytes received.
fn recv(port: u16, timeout: Duration) -> io::Result<(u64, u64)> {
    let socket = UdpSocket::bind(("0.0.0.0", port))?;
    let fd = socket.as_raw_fd();
    set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_BUFFER)?;
    let gro = set_int(fd, libc::SOL_UDP, UDP_GRO, 1).is_ok();
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut bufs = vec![vec![0u8; RECV_BUF]; RECV_BATCH];
    let (mut iovs, mut msgs) = messages(&mut bufs);
    // Room for one UDP_GRO control message (a c_int) per message.
    // SAFETY: CMSG_SPACE is arithmetic.
    let cmsg_space = unsafe { libc::CMSG_SPACE(mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut controls = vec![vec![0u8; cmsg_space]; RECV_BATCH];
    let start = Instant::now();
    let mut last: Option<Instant> = None;
    let (mut datagrams, mut bytes) = (0u64, 0u64);
    loop {
        if start.elapsed() >= timeout || last.is_some_and(|t| t.elapsed() >= QUIET) {
            break;
        }
        for ((m, iov), c) in msgs
            .iter_mut()
            .zip(iovs.iter_mut())
            .zip(controls.iter_mut())
        {
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = c.as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = c.len();
            m.msg_len = 0;
        }
        // SAFETY: every header points at live buffers of the lengths given.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                RECV_BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => continue,
                _ => return Err(e),
            }
        }
        last = Some(Instant::now());
        for m in &msgs[..r as usize] {
            let len = m.msg_len as usize;
            bytes += len as u64;
            let segment = if gro { gro_size(&m.msg_hdr) } else { None };
            datagrams += match segment {
                Some(s) if s > 0 => len.div_ceil(s) as u64,
                _ => 1,
            };
        }
    }
    Ok((datagrams, bytes))
}

/// The segment size of a `UDP_GRO` run, from the message's control data.
fn gro_size(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: walking the control buffer the kernel filled, with the
    // kernel's own macros; the data of a UDP_GRO message is one c_int.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}
