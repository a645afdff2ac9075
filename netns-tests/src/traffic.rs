//! Traffic that measures interruptions: paced UDP flows and a TCP
//! transfer between hosts in two namespaces.
//!
//! Sockets are created by a thread that has entered the namespace
//! (`setns`); a socket keeps its namespace for life, so the sender and
//! receiver threads then run anywhere. Each UDP flow (own source port, so
//! ECMP hashes the flows apart) sends a sequence number every `1/pps`
//! seconds; the receiver notes when each arrives. A flow's interruption is
//! the longest gap between two packets that arrived, and its loss is what
//! never did. The TCP transfer writes as fast as it can; its interruption
//! is the longest time in which no byte arrived, and it must survive (no
//! reset, no error).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Netns;

/// Runs `f` on a thread inside `ns` (sockets it creates stay there).
pub fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_netns(ns, f).join().expect("netns thread")
}

/// Starts a thread that enters `ns` and runs `f` there, for as long as it
/// likes (a sender that runs until told to stop).
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on a descriptor we hold open; it only moves this
        // thread, which we made for the purpose.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// What one UDP flow saw.
#[derive(Debug, Clone, Copy)]
pub struct FlowReport {
    /// Its source port.
    pub port: u16,
    /// Packets sent.
    pub sent: u64,
    /// Packets received.
    pub received: u64,
    /// The longest time between two received packets.
    pub longest_gap: Duration,
}

impl FlowReport {
    /// Packets that never arrived.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }
}

/// Paced UDP flows from one host to another, running until [`UdpFlows::stop`].
#[derive(Debug)]
pub struct UdpFlows {
    stop: Arc<AtomicBool>,
    senders: Vec<JoinHandle<(u16, u64)>>,
    receiver: JoinHandle<Vec<(u16, u64, Duration)>>,
}

/// The receiving port of [`UdpFlows`].
const UDP_PORT: u16 = 40_000;

impl UdpFlows {
    /// Starts `flows` flows of `pps` packets a second from `src` (in
    /// `from`) to `dst` (in `to`).
    pub fn start(
        from: &Netns,
        src: IpAddr,
        to: &Netns,
        dst: IpAddr,
        flows: u16,
        pps: u32,
    ) -> UdpFlows {
        let rx = in_netns(to, move || {
            UdpSocket::bind((dst, UDP_PORT)).expect("bind receiver")
        });
        rx.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stop_rx = Arc::clone(&stop);
        let receiver = std::thread::spawn(move || {
            // Per source port: (received, last arrival, longest gap).
            let mut seen: Vec<(u16, u64, Option<Instant>, Duration)> = Vec::new();
            let mut buf = [0u8; 64];
            // Drain for a moment after the senders stop.
            let mut stopped_at = None;
            loop {
                if stop_rx.load(Ordering::Relaxed) {
                    let t = *stopped_at.get_or_insert_with(Instant::now);
                    if t.elapsed() > Duration::from_millis(500) {
                        break;
                    }
                }
                let Ok((_, from)) = rx.recv_from(&mut buf) else {
                    continue;
                };
                let now = Instant::now();
                let i = match seen.iter().position(|s| s.0 == from.port()) {
                    Some(i) => i,
                    None => {
                        seen.push((from.port(), 0, None, Duration::ZERO));
                        seen.len() - 1
                    }
                };
                let entry = &mut seen[i];
                entry.1 += 1;
                if let Some(last) = entry.2 {
                    entry.3 = entry.3.max(now - last);
                }
                entry.2 = Some(now);
            }
            seen.into_iter().map(|(p, n, _, gap)| (p, n, gap)).collect()
        });
        let interval = Duration::from_secs(1) / pps.max(1);
        let senders = (0..flows)
            .map(|i| {
                let port = UDP_PORT + 1 + i;
                let tx = in_netns(from, move || {
                    UdpSocket::bind((src, port)).expect("bind sender")
                });
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let start = Instant::now();
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // Sends errors too (no route): they count as lost.
                        let _ = tx.send_to(&sent.to_be_bytes(), SocketAddr::new(dst, UDP_PORT));
                        sent += 1;
                        let next = start + interval * u32::try_from(sent).unwrap_or(u32::MAX);
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    (port, sent)
                })
            })
            .collect();
        UdpFlows {
            stop,
            senders,
            receiver,
        }
    }

    /// Stops the flows and reports each.
    pub fn stop(self) -> Vec<FlowReport> {
        self.stop.store(true, Ordering::Relaxed);
        let sent: Vec<(u16, u64)> = self
            .senders
            .into_iter()
            .map(|s| s.join().expect("sender"))
            .collect();
        let received = self.receiver.join().expect("receiver");
        sent.into_iter()
            .map(|(port, sent)| {
                let (received, longest_gap) = received
                    .iter()
                    .find(|r| r.0 == port)
                    .map_or((0, Duration::MAX), |r| (r.1, r.2));
                FlowReport {
                    port,
                    sent,
                    received,
                    longest_gap,
                }
            })
            .collect()
    }
}

/// What the TCP transfer saw.
#[derive(Debug, Clone)]
pub struct TcpReport {
    /// Bytes received.
    pub bytes: u64,
    /// The longest time in which no byte arrived.
    pub longest_stall: Duration,
    /// The error that ended it early, if any (reset, timeout).
    pub error: Option<String>,
}

/// A bulk TCP transfer from one host to another, until [`TcpTransfer::stop`].
#[derive(Debug)]
pub struct TcpTransfer {
    stop: Arc<AtomicBool>,
    sender: JoinHandle<Option<String>>,
    receiver: JoinHandle<(u64, Duration, Option<String>)>,
}

/// The TCP transfer's port.
const TCP_PORT: u16 = 40_100;

impl TcpTransfer {
    /// Connects from `src` (in `from`) to `dst` (in `to`) and starts
    /// sending.
    pub fn start(from: &Netns, src: IpAddr, to: &Netns, dst: IpAddr) -> TcpTransfer {
        let listener = in_netns(to, move || {
            TcpListener::bind((dst, TCP_PORT)).expect("listen")
        });
        let stream = in_netns(from, move || {
            let socket = socket2_connect(src, SocketAddr::new(dst, TCP_PORT));
            socket.expect("connect")
        });
        let (mut rx, _) = listener.accept().expect("accept");
        let stop = Arc::new(AtomicBool::new(false));
        let stop_rx = Arc::clone(&stop);
        let receiver = std::thread::spawn(move || {
            let _ = rx.set_read_timeout(Some(Duration::from_millis(50)));
            let mut buf = vec![0u8; 65536];
            let mut bytes = 0u64;
            let mut last = Instant::now();
            let mut stall = Duration::ZERO;
            let mut stopped_at = None;
            loop {
                if stop_rx.load(Ordering::Relaxed) {
                    let t = *stopped_at.get_or_insert_with(Instant::now);
                    if t.elapsed() > Duration::from_millis(300) {
                        return (bytes, stall, None);
                    }
                }
                match rx.read(&mut buf) {
                    Ok(0) => return (bytes, stall, None),
                    Ok(n) => {
                        bytes += n as u64;
                        let now = Instant::now();
                        if stopped_at.is_none() {
                            stall = stall.max(now - last);
                        }
                        last = now;
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => return (bytes, stall, Some(e.to_string())),
                }
            }
        });
        let stop_tx = Arc::clone(&stop);
        let mut tx = stream;
        let sender = std::thread::spawn(move || {
            let chunk = vec![0x5au8; 16 * 1024];
            let _ = tx.set_write_timeout(Some(Duration::from_millis(100)));
            while !stop_tx.load(Ordering::Relaxed) {
                match tx.write(&chunk) {
                    Ok(_) => {}
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => return Some(e.to_string()),
                }
            }
            None
        });
        TcpTransfer {
            stop,
            sender,
            receiver,
        }
    }

    /// Stops sending and reports.
    pub fn stop(self) -> TcpReport {
        self.stop.store(true, Ordering::Relaxed);
        let send_error = self.sender.join().expect("sender");
        let (bytes, longest_stall, recv_error) = self.receiver.join().expect("receiver");
        TcpReport {
            bytes,
            longest_stall,
            error: send_error.or(recv_error),
        }
    }
}

/// A TCP connection from `src` to `dst`, with a 10 s connect timeout.
fn socket2_connect(src: IpAddr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    // Bind the source by connecting from a socket bound to it: std has no
    // bind-before-connect, so go through libc.
    let family = if src.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let stream = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let (addr, len) = sockaddr(SocketAddr::new(src, 0));
    // SAFETY: addr is a valid sockaddr of `len` bytes.
    if unsafe { libc::bind(fd, std::ptr::addr_of!(addr).cast(), len) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (addr, len) = sockaddr(dst);
    // SAFETY: as above.
    if unsafe { libc::connect(fd, std::ptr::addr_of!(addr).cast(), len) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
