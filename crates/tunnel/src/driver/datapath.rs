//! The ESP datapath: packets between the TUN devices and UDP 4500.
//!
//! ```text
//!  TUN vti-a ──read──> [tx thread a] ──seal──> sendmmsg ─┐
//!  TUN vti-b ──read──> [tx thread b] ──seal──> sendmmsg ─┤  UDP 4500
//!  TUN vti-* <─write── [rx thread] <──open── recvmmsg <──┘  (IKE on 4500 → IKE driver)
//! ```
//!
//! - One receive thread owns the inbound SA table (SPI → SA and connection)
//!   and the replay windows; one transmit thread per queue of a
//!   connection's TUN device (one queue unless `tx_queues` says more) seals
//!   with that connection's outbound SA, whose only shared state is its
//!   atomic sequence counter. Nothing is locked per packet: the control
//!   plane sends SA changes through channels that each thread drains between
//!   batches, and counters are relaxed atomics.
//! - Decrypted packets go into the TUN device coalesced where they can
//!   (TCP segments and same-sized UDP datagrams of one flow, up to
//!   eight flows at once), one write per run.
//! - Batches: up to [`BATCH`] datagrams per recvmmsg/sendmmsg; a transmit
//!   thread reads its TUN until it would block or the batch is full.
//! - Buffers are allocated once per thread; the hot path allocates nothing.
//!   IKE messages found on port 4500 are copied into the channel to the IKE
//!   driver (control traffic, rare).
//! - Threads wake at least every 100 ms to notice stop requests.
//! - Tunnels come and go while running ([`Datapath::add_tunnel`],
//!   [`Datapath::remove_tunnel`]): a tunnel is its transmit threads plus an
//!   entry in the receive thread's tunnel map, added and removed through
//!   the same command channel. Each inbound SA carries its tunnel (TUN
//!   device, MSS clamp, counters) with it, so the receive path looks up
//!   nothing but the SPI.

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::ike::NattIke;
use super::offload::{self, Coalescer, Push, VnetHdr, F_DATA_VALID, VNET_HDR_LEN};
use super::tun::Tun;
use super::udp::{self, addr_of, RxBatch, TxBatch, MSG_CAP};
use crate::esp::mss::clamp_mss;
use crate::esp::natt::{classify, Natt};
use crate::esp::replay::ReplayError;
use crate::esp::sa::{InboundSa, OpenError, OutboundSa, NEXT_IPV4, NEXT_IPV6};

/// Datagrams per recvmmsg/sendmmsg.
pub const BATCH: usize = 32;
/// Room for one datagram: a 9000-byte inner packet plus ESP/UDP overhead.
const BUF_LEN: usize = 9216;
/// Port 4500's socket buffers, each way.
const SOCKET_BUFFER: usize = 8 << 20;
/// How long a thread sleeps in poll(2) before it checks for a stop.
const POLL_MS: libc::c_int = 100;

/// Per-connection datapath counters (relaxed atomics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Packets decrypted and written to the TUN device.
    pub rx_packets: AtomicU64,
    /// Their inner bytes.
    pub rx_bytes: AtomicU64,
    /// Packets read from the TUN device and sent encrypted.
    pub tx_packets: AtomicU64,
    /// Their inner bytes.
    pub tx_bytes: AtomicU64,
    /// Inbound: refused by the anti-replay window.
    pub drop_replay: AtomicU64,
    /// Inbound: ICV did not verify.
    pub drop_auth: AtomicU64,
    /// Inbound: malformed ESP (length, padding) or dummy packets.
    pub drop_malformed: AtomicU64,
    /// Outbound: no child SA installed yet (tunnel down).
    pub drop_no_sa: AtomicU64,
    /// Outbound: sequence numbers used up or a send failure.
    pub drop_tx_error: AtomicU64,
    /// ICMP port unreachable from the peer about our ESP (its IKE daemon
    /// is gone), quoting the SPI and a recent sequence number of ours.
    pub peer_unreachable: AtomicU64,
}

/// One direction of one child SA: packets and inner bytes. Aligned to a
/// cache line, so the receive and transmit threads never share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct DirCounters {
    /// Packets.
    pub packets: AtomicU64,
    /// Inner bytes.
    pub bytes: AtomicU64,
}

/// Traffic of one child SA pair, for `vpngw sas` and the byte lifetime
/// the IKE SA rekeys at.
#[derive(Debug, Default)]
pub struct SaCounters {
    /// What arrived on the inbound SA.
    pub inbound: DirCounters,
    /// What left on the outbound SA.
    pub outbound: DirCounters,
}

impl SaCounters {
    /// Inner bytes both ways.
    pub fn bytes(&self) -> u64 {
        self.inbound.bytes.load(Ordering::Relaxed) + self.outbound.bytes.load(Ordering::Relaxed)
    }

    /// Packets both ways.
    pub fn packets(&self) -> u64 {
        self.inbound.packets.load(Ordering::Relaxed) + self.outbound.packets.load(Ordering::Relaxed)
    }
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// See [`Counters::rx_packets`].
    pub rx_packets: u64,
    /// See [`Counters::rx_bytes`].
    pub rx_bytes: u64,
    /// See [`Counters::tx_packets`].
    pub tx_packets: u64,
    /// See [`Counters::tx_bytes`].
    pub tx_bytes: u64,
    /// See [`Counters::drop_replay`].
    pub drop_replay: u64,
    /// See [`Counters::drop_auth`].
    pub drop_auth: u64,
    /// See [`Counters::drop_malformed`].
    pub drop_malformed: u64,
    /// See [`Counters::drop_no_sa`].
    pub drop_no_sa: u64,
    /// See [`Counters::drop_tx_error`].
    pub drop_tx_error: u64,
    /// See [`Counters::peer_unreachable`].
    pub peer_unreachable: u64,
}

impl Counters {
    /// The current values.
    pub fn snapshot(&self) -> CounterSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            rx_packets: r(&self.rx_packets),
            rx_bytes: r(&self.rx_bytes),
            tx_packets: r(&self.tx_packets),
            tx_bytes: r(&self.tx_bytes),
            drop_replay: r(&self.drop_replay),
            drop_auth: r(&self.drop_auth),
            drop_malformed: r(&self.drop_malformed),
            drop_no_sa: r(&self.drop_no_sa),
            drop_tx_error: r(&self.drop_tx_error),
            peer_unreachable: r(&self.peer_unreachable),
        }
    }
}

fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

/// Datagrams on port 4500 that belong to no connection.
#[derive(Debug, Default)]
pub struct GlobalCounters {
    /// ESP for an SPI we do not have.
    pub unknown_spi: AtomicU64,
    /// Neither IKE, ESP nor keepalive.
    pub malformed: AtomicU64,
    /// IKE messages passed to the IKE driver.
    pub ike: AtomicU64,
}

/// What the datapath tells the control plane ([`Datapath::take_events`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatapathEvent {
    /// The peer's host answered connection `conn`'s ESP with ICMP port
    /// unreachable: nothing listens on its port 4500 any more, so its IKE
    /// daemon is gone (killed, crashed, restarting). The message quoted the
    /// SPI of our current outbound SA and a sequence number we sent
    /// recently, which an off-path sender cannot know. At most one per
    /// [`HINT_INTERVAL`] per tunnel.
    ///
    /// A hint, not a verdict: RFC 7296 §2.4 lets only unanswered liveness
    /// checks (or INITIAL_CONTACT) end an IKE SA. The daemon takes the
    /// tunnel out of its routes and asks IKE to check at once.
    PeerUnreachable {
        /// The connection.
        conn: usize,
        /// The address the refused ESP went to.
        peer: SocketAddr,
    },
}

/// At most one [`DatapathEvent::PeerUnreachable`] per tunnel this often.
pub const HINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// A quoted sequence number counts as recent if it is at most this far
/// behind the SA's count of packets sent...
const HINT_SEQ_BEHIND: u32 = 1 << 20;
/// ...or this far ahead of it (the count is bumped after the send returns,
/// and the ICMP answer of a veth neighbour can be quicker).
const HINT_SEQ_AHEAD: u32 = 1 << 12;
/// ICMP errors read per wake-up, at most.
const ERRORS_PER_WAKE: usize = 64;

/// One connection's tunnel as the datapath sees it.
#[derive(Debug)]
pub struct TunnelSpec {
    /// The TUN device.
    pub tun: Tun,
    /// Clamp the MSS of TCP SYNs to this (0: off).
    pub mss_clamp: u16,
}

/// What the receive thread keeps of one tunnel.
struct RxTunnel {
    tun: Arc<Tun>,
    clamp: u16,
    counters: Arc<Counters>,
    /// The tunnel's transmit threads, to activate staged SAs (once per
    /// rekey).
    tx: TxSenders,
}

enum RxCommand {
    /// A tunnel appeared: SAs for `conn` may be added from now on.
    AddTunnel {
        conn: usize,
        tunnel: Arc<RxTunnel>,
    },
    /// A tunnel is gone: forget it and every inbound SA of it (so no
    /// reference to its TUN device stays behind), then say so on `done`.
    RemoveTunnel {
        conn: usize,
        done: Sender<()>,
    },
    Add {
        spi: u32,
        sa: Box<InboundSa>,
        conn: usize,
        /// The outbound half of the pair, and where it sends (to match ICMP
        /// errors about our ESP).
        spi_out: u32,
        peer: SocketAddr,
        /// Activate this staged outbound SPI at the first authentic packet.
        activate: Option<u32>,
        counters: Arc<SaCounters>,
    },
    Remove {
        spi: u32,
    },
}

#[derive(Clone)]
enum TxCommand {
    Set {
        sa: Arc<OutboundSa>,
        peer: SocketAddr,
        counters: Arc<SaCounters>,
    },
    /// Keep this SA ready; switch to it at `Activate` (make-before-break
    /// when we answered a rekey), or when the SA in use is cleared.
    Stage {
        sa: Arc<OutboundSa>,
        peer: SocketAddr,
        counters: Arc<SaCounters>,
    },
    Activate {
        spi: u32,
    },
    Clear {
        spi: u32,
    },
}

/// The command channels of one tunnel's transmit threads (one per queue
/// of its TUN device): every command goes to each.
#[derive(Debug, Clone)]
struct TxSenders(Vec<Sender<TxCommand>>);

impl TxSenders {
    fn send(&self, command: &TxCommand) {
        for s in &self.0 {
            let _ = s.send(command.clone());
        }
    }
}

/// The control plane's handle on one tunnel.
#[derive(Debug)]
struct Tunnel {
    tx: TxSenders,
    tun: Arc<Tun>,
    counters: Arc<Counters>,
    /// Tells this tunnel's transmit threads alone to stop.
    quit: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The running datapath: the control plane's handle on it.
#[derive(Debug)]
pub struct Datapath {
    socket: Arc<UdpSocket>,
    /// The socket takes UDP GSO sends.
    gso: bool,
    rx: Sender<RxCommand>,
    /// The tunnels by connection index (sparse).
    tunnels: HashMap<usize, Tunnel>,
    global: Arc<GlobalCounters>,
    /// What the receive thread reports, until [`take_events`](Self::take_events).
    events: Option<tokio::sync::mpsc::UnboundedReceiver<DatapathEvent>>,
    stop: Arc<AtomicBool>,
    rx_thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RxCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RxCommand::AddTunnel { conn, tunnel } => {
                write!(f, "AddTunnel(conn {conn}, {})", tunnel.tun.name())
            }
            RxCommand::RemoveTunnel { conn, .. } => write!(f, "RemoveTunnel(conn {conn})"),
            RxCommand::Add { spi, conn, .. } => write!(f, "Add({spi:08x}, conn {conn})"),
            RxCommand::Remove { spi } => write!(f, "Remove({spi:08x})"),
        }
    }
}

impl std::fmt::Debug for TxCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxCommand::Set { sa, peer, .. } => write!(f, "Set({:08x} -> {peer})", sa.spi()),
            TxCommand::Clear { spi } => write!(f, "Clear({spi:08x})"),
            TxCommand::Stage { sa, peer, .. } => write!(f, "Stage({:08x} -> {peer})", sa.spi()),
            TxCommand::Activate { spi } => write!(f, "Activate({spi:08x})"),
        }
    }
}

impl Datapath {
    /// Starts the threads: one receiver on `socket` (UDP 4500, shared with
    /// the IKE driver, which gets the IKE messages through `ike`), one
    /// transmitter per tunnel. The tunnels get the connection indices
    /// `0..tunnels.len()`; more can be added later
    /// ([`add_tunnel`](Self::add_tunnel)).
    pub fn start(
        socket: UdpSocket,
        ike: tokio::sync::mpsc::Sender<NattIke>,
        tunnels: Vec<TunnelSpec>,
    ) -> io::Result<Datapath> {
        socket.set_nonblocking(true)?;
        let gso = !disabled("udp-gso") && udp::gso_supported(socket.as_raw_fd());
        // Runs of datagrams arrive in one buffer (the receive thread splits
        // them by the size the kernel reports).
        if !disabled("udp-gro") {
            udp::enable_gro(socket.as_raw_fd());
        }
        if !disabled("socket-buffers") {
            udp::set_buffers(socket.as_raw_fd(), SOCKET_BUFFER);
        }
        // ICMP errors about our ESP come back on the error queue: a peer
        // whose port 4500 is closed is noticed at its first refused packet.
        udp::enable_recverr(socket.as_raw_fd());
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let socket = Arc::new(socket);
        let stop = Arc::new(AtomicBool::new(false));
        let global = Arc::new(GlobalCounters::default());
        let (rx_tx, rx_rx) = mpsc::channel();
        let worker = RxWorker {
            socket: Arc::clone(&socket),
            commands: rx_rx,
            global: Arc::clone(&global),
            ike,
            events: events_tx,
            stop: Arc::clone(&stop),
        };
        let rx_thread = std::thread::Builder::new()
            .name("vpngw-rx".into())
            .spawn(move || worker.run())?;
        let mut datapath = Datapath {
            socket,
            gso,
            rx: rx_tx,
            tunnels: HashMap::new(),
            global,
            events: Some(events_rx),
            stop,
            rx_thread: Some(rx_thread),
        };
        for (conn, spec) in tunnels.into_iter().enumerate() {
            datapath.add_tunnel(conn, spec)?;
        }
        Ok(datapath)
    }

    /// Adds the tunnel of connection `conn` (any index; the indices in use
    /// need not be contiguous): starts its transmit threads and tells the
    /// receive thread about its TUN device. Fails if `conn` already has a
    /// tunnel ([`io::ErrorKind::AlreadyExists`]) or the datapath stopped.
    pub fn add_tunnel(&mut self, conn: usize, spec: TunnelSpec) -> io::Result<()> {
        if self.tunnels.contains_key(&conn) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("connection {conn} already has a tunnel"),
            ));
        }
        let tun = Arc::new(spec.tun);
        let counters = Arc::new(Counters::default());
        let quit = Arc::new(AtomicBool::new(false));
        let fds = tun.queue_fds();
        let (senders, receivers): (Vec<_>, Vec<_>) = fds.iter().map(|_| mpsc::channel()).unzip();
        let senders = TxSenders(senders);
        let rx_tunnel = Arc::new(RxTunnel {
            tun: Arc::clone(&tun),
            clamp: spec.mss_clamp,
            counters: Arc::clone(&counters),
            tx: senders.clone(),
        });
        if self
            .rx
            .send(RxCommand::AddTunnel {
                conn,
                tunnel: rx_tunnel,
            })
            .is_err()
        {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the datapath's receive thread is gone",
            ));
        }
        let mut threads = Vec::with_capacity(fds.len());
        for (queue, (fd, commands)) in fds.into_iter().zip(receivers).enumerate() {
            let worker = TxWorker {
                tun: Arc::clone(&tun),
                fd,
                socket: Arc::clone(&self.socket),
                commands,
                counters: Arc::clone(&counters),
                stop: Arc::clone(&self.stop),
                quit: Arc::clone(&quit),
                mss_clamp: spec.mss_clamp,
                gso: self.gso,
            };
            let name = if queue == 0 {
                format!("vpngw-tx-{conn}")
            } else {
                format!("vpngw-tx-{conn}.{queue}")
            };
            match std::thread::Builder::new()
                .name(name)
                .spawn(move || worker.run())
            {
                Ok(t) => threads.push(t),
                Err(e) => {
                    quit.store(true, Ordering::Relaxed);
                    for t in threads {
                        let _ = t.join();
                    }
                    let (done, _) = mpsc::channel();
                    let _ = self.rx.send(RxCommand::RemoveTunnel { conn, done });
                    return Err(e);
                }
            }
        }
        self.tunnels.insert(
            conn,
            Tunnel {
                tx: senders,
                tun,
                counters,
                quit,
                threads,
            },
        );
        Ok(())
    }

    /// Removes the tunnel of connection `conn` (nothing if it has none):
    /// stops and joins its transmit threads, and has the receive thread drop
    /// every inbound SA of it and its TUN device. When this returns no
    /// reference to the [`Tun`] is left, so the kernel interface is gone
    /// (unless the caller holds another descriptor of it). Blocks until both
    /// threads have noticed: at most about one poll interval (100 ms), or
    /// one second if the receive thread does not answer. Other tunnels are
    /// not disturbed.
    pub fn remove_tunnel(&mut self, conn: usize) {
        let Some(mut tunnel) = self.tunnels.remove(&conn) else {
            return;
        };
        // Both threads notice within one poll interval; wait for them
        // together.
        let (done_tx, done_rx) = mpsc::channel();
        let asked = self
            .rx
            .send(RxCommand::RemoveTunnel {
                conn,
                done: done_tx,
            })
            .is_ok();
        tunnel.quit.store(true, Ordering::Relaxed);
        for thread in tunnel.threads.drain(..) {
            let _ = thread.join();
        }
        if asked {
            // Err: the receive thread ended (and dropped everything) or is
            // stuck; either way there is nothing more to wait for.
            let _ = done_rx.recv_timeout(std::time::Duration::from_secs(1));
        }
    }

    /// Installs a child SA pair for connection `conn`: the inbound half
    /// first, so the peer's first packet under the new SA is accepted, then
    /// the outbound half, sending to `peer`.
    pub fn install(
        &self,
        conn: usize,
        inbound: InboundSa,
        outbound: OutboundSa,
        peer: SocketAddr,
        counters: &Arc<SaCounters>,
    ) {
        let spi = inbound.spi();
        let _ = self.rx.send(RxCommand::Add {
            spi,
            sa: Box::new(inbound),
            conn,
            spi_out: outbound.spi(),
            peer,
            activate: None,
            counters: Arc::clone(counters),
        });
        if let Some(t) = self.tunnels.get(&conn) {
            t.tx.send(&TxCommand::Set {
                sa: Arc::new(outbound),
                peer,
                counters: Arc::clone(counters),
            });
        }
    }

    /// Installs the child SA pair of a rekey we answered (make before
    /// break): the inbound half at once; the outbound half is staged and
    /// takes over at the first authentic packet on the new inbound SA —
    /// proof the peer has the new child — or at [`activate`](Self::activate).
    pub fn install_staged(
        &self,
        conn: usize,
        inbound: InboundSa,
        outbound: OutboundSa,
        peer: SocketAddr,
        counters: &Arc<SaCounters>,
    ) {
        let spi = inbound.spi();
        let out_spi = outbound.spi();
        if let Some(t) = self.tunnels.get(&conn) {
            t.tx.send(&TxCommand::Stage {
                sa: Arc::new(outbound),
                peer,
                counters: Arc::clone(counters),
            });
        }
        let _ = self.rx.send(RxCommand::Add {
            spi,
            sa: Box::new(inbound),
            conn,
            spi_out: out_spi,
            peer,
            activate: Some(out_spi),
            counters: Arc::clone(counters),
        });
    }

    /// Switches connection `conn` to its staged outbound SA `spi_out`.
    pub fn activate(&self, conn: usize, spi_out: u32) {
        if let Some(t) = self.tunnels.get(&conn) {
            t.tx.send(&TxCommand::Activate { spi: spi_out });
        }
    }

    /// Removes a child SA pair (the outbound half only if it is still the
    /// one in use).
    pub fn remove(&self, conn: usize, spi_in: u32, spi_out: u32) {
        let _ = self.rx.send(RxCommand::Remove { spi: spi_in });
        if let Some(t) = self.tunnels.get(&conn) {
            t.tx.send(&TxCommand::Clear { spi: spi_out });
        }
    }

    /// Stops sending on outbound SA `spi_out` of connection `conn` (if it
    /// is still the one in use; a staged successor takes over).
    pub fn clear_outbound(&self, conn: usize, spi_out: u32) {
        if let Some(t) = self.tunnels.get(&conn) {
            t.tx.send(&TxCommand::Clear { spi: spi_out });
        }
    }

    /// Forgets inbound SA `spi_in`.
    pub fn remove_inbound(&self, spi_in: u32) {
        let _ = self.rx.send(RxCommand::Remove { spi: spi_in });
    }

    /// The datapath's reports to the control plane (the first call takes
    /// the receiver; later ones get None).
    pub fn take_events(&mut self) -> Option<tokio::sync::mpsc::UnboundedReceiver<DatapathEvent>> {
        self.events.take()
    }

    /// Connection `conn`'s TUN device (None if it has no tunnel).
    pub fn tun(&self, conn: usize) -> Option<&Tun> {
        self.tunnels.get(&conn).map(|t| t.tun.as_ref())
    }

    /// Connection `conn`'s counters (None if it has no tunnel).
    pub fn counters(&self, conn: usize) -> Option<CounterSnapshot> {
        self.tunnels.get(&conn).map(|t| t.counters.snapshot())
    }

    /// The connections that have a tunnel, in ascending order.
    pub fn tunnels(&self) -> Vec<usize> {
        let mut conns: Vec<usize> = self.tunnels.keys().copied().collect();
        conns.sort_unstable();
        conns
    }

    /// Counters of traffic that matched no connection.
    pub fn global_counters(&self) -> (u64, u64, u64) {
        let g = &self.global;
        (
            g.unknown_spi.load(Ordering::Relaxed),
            g.malformed.load(Ordering::Relaxed),
            g.ike.load(Ordering::Relaxed),
        )
    }

    /// Stops the threads and waits for them.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tunnels.values_mut() {
            for thread in t.threads.drain(..) {
                let _ = thread.join();
            }
        }
        if let Some(thread) = self.rx_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits until `fd` is readable or `POLL_MS` passed.
/// True if errors wait on its error queue.
fn wait_readable(fd: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
    n > 0 && pfd.revents & libc::POLLERR != 0
}

fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe {
                std::ptr::write(
                    std::ptr::addr_of_mut!(storage).cast::<libc::sockaddr_in>(),
                    sin,
                )
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe {
                std::ptr::write(
                    std::ptr::addr_of_mut!(storage).cast::<libc::sockaddr_in6>(),
                    sin6,
                )
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

struct TxWorker {
    /// The device (kept open while this thread runs).
    tun: Arc<Tun>,
    /// The queue this thread reads.
    fd: RawFd,
    socket: Arc<UdpSocket>,
    commands: Receiver<TxCommand>,
    counters: Arc<Counters>,
    /// The whole datapath stops.
    stop: Arc<AtomicBool>,
    /// This tunnel stops.
    quit: Arc<AtomicBool>,
    mss_clamp: u16,
    /// Pack datagrams into UDP GSO sends.
    gso: bool,
}

impl TxWorker {
    /// The datapath or this tunnel is stopping.
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.quit.load(Ordering::Relaxed)
    }

    fn run(self) {
        let mut sa: Option<Arc<OutboundSa>> = None;
        let mut peer = (
            // SAFETY: all-zero is a valid sockaddr_storage.
            unsafe { MaybeUninit::<libc::sockaddr_storage>::zeroed().assume_init() },
            0 as libc::socklen_t,
        );
        // One read: a packet, or with offloads a virtio-net header and a
        // TCP super-packet of up to 64 KiB.
        let mut inner = vec![0u8; VNET_HDR_LEN + MSG_CAP];
        let mut scratch = vec![0u8; BUF_LEN];
        let mut batch = TxBatch::new(self.gso);
        let offload = self.tun.offload();
        // The SA in use, and one staged to take over (make before break).
        let mut staged: Option<(Arc<OutboundSa>, SocketAddr, Arc<SaCounters>)> = None;
        let mut sa_counters: Option<Arc<SaCounters>> = None;
        let fd = self.fd;
        while !self.stopping() {
            wait_readable(fd);
            loop {
                let promote = match self.commands.try_recv() {
                    Ok(TxCommand::Set {
                        sa: new,
                        peer: p,
                        counters,
                    }) => {
                        staged = None;
                        Some((new, p, counters))
                    }
                    Ok(TxCommand::Stage {
                        sa: new,
                        peer: p,
                        counters,
                    }) => {
                        staged = Some((new, p, counters));
                        None
                    }
                    Ok(TxCommand::Activate { spi }) => {
                        if staged.as_ref().is_some_and(|(s, _, _)| s.spi() == spi) {
                            staged.take()
                        } else {
                            None
                        }
                    }
                    Ok(TxCommand::Clear { spi }) => {
                        if sa.as_ref().is_some_and(|s| s.spi() == spi) {
                            // A staged successor takes over; otherwise the
                            // tunnel has no outbound SA.
                            sa = None;
                            sa_counters = None;
                            staged.take()
                        } else {
                            if staged.as_ref().is_some_and(|(s, _, _)| s.spi() == spi) {
                                staged = None;
                            }
                            None
                        }
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                };
                if let Some((new, p, counters)) = promote {
                    sa = Some(new);
                    peer = sockaddr_of(p);
                    sa_counters = Some(counters);
                }
            }
            // Read, segment and seal a batch; send it when full and at the
            // end.
            let mut reads = 0;
            while reads < BATCH {
                // SAFETY: reading into our own buffer of its length.
                let got = unsafe { libc::read(fd, inner.as_mut_ptr().cast(), inner.len()) };
                if got <= 0 {
                    break;
                }
                reads += 1;
                let got = got as usize;
                let Some(s) = sa.as_deref() else {
                    bump(&self.counters.drop_no_sa, 1);
                    continue;
                };
                let sa_c = sa_counters.as_deref();
                if offload {
                    let Some(hdr) = VnetHdr::parse(&inner) else {
                        bump(&self.counters.drop_tx_error, 1);
                        continue;
                    };
                    let packet = &mut inner[VNET_HDR_LEN..got];
                    let cut = offload::segment(&hdr, packet, &mut scratch, |seg| {
                        self.seal(s, seg, &mut batch, &peer, sa_c)
                    });
                    if cut.is_err() {
                        bump(&self.counters.drop_tx_error, 1);
                    }
                } else {
                    self.seal(s, &mut inner[..got], &mut batch, &peer, sa_c);
                }
            }
            if !batch.is_empty() {
                self.send(&mut batch, &peer);
            }
        }
    }

    /// Seals one IP packet into the batch (sending the batch first if it
    /// is full).
    fn seal(
        &self,
        s: &OutboundSa,
        packet: &mut [u8],
        batch: &mut TxBatch,
        peer: &(libc::sockaddr_storage, libc::socklen_t),
        sa_counters: Option<&SaCounters>,
    ) {
        if self.mss_clamp != 0 {
            clamp_mss(packet, self.mss_clamp);
        }
        let next = if packet.first().is_some_and(|b| b >> 4 == 6) {
            NEXT_IPV6
        } else {
            NEXT_IPV4
        };
        let len = s.sealed_len(packet.len());
        if !batch.fits(len) {
            self.send(batch, peer);
        }
        let Some(slot) = batch.slot(len) else {
            bump(&self.counters.drop_tx_error, 1);
            return;
        };
        match s.seal(packet, next, slot) {
            Ok(_) => {
                bump(&self.counters.tx_bytes, packet.len() as u64);
                if let Some(c) = sa_counters {
                    bump(&c.outbound.packets, 1);
                    bump(&c.outbound.bytes, packet.len() as u64);
                }
            }
            Err(_) => {
                batch.unslot(len);
                bump(&self.counters.drop_tx_error, 1);
            }
        }
    }

    fn send(&self, batch: &mut TxBatch, peer: &(libc::sockaddr_storage, libc::socklen_t)) {
        let sent = batch.send(self.socket.as_raw_fd(), peer, &|| self.stopping());
        bump(&self.counters.tx_packets, sent.datagrams);
        bump(&self.counters.drop_tx_error, sent.failed);
    }
}

struct Inbound {
    sa: Box<InboundSa>,
    conn: usize,
    /// The outbound SA of the same child, and its peer.
    spi_out: u32,
    peer: SocketAddr,
    /// The tunnel it belongs to: where its packets go.
    tunnel: Arc<RxTunnel>,
    /// A staged outbound SPI to activate at the first authentic packet.
    activate: Option<u32>,
    counters: Arc<SaCounters>,
}

struct RxWorker {
    socket: Arc<UdpSocket>,
    commands: Receiver<RxCommand>,
    global: Arc<GlobalCounters>,
    ike: tokio::sync::mpsc::Sender<NattIke>,
    events: tokio::sync::mpsc::UnboundedSender<DatapathEvent>,
    stop: Arc<AtomicBool>,
}

impl RxWorker {
    /// Applies the control plane's commands to the tunnel map and the SA
    /// table (between batches).
    /// True if an inbound SA was added (parked packets may have one now).
    fn drain_commands(
        &self,
        tunnels: &mut HashMap<usize, Arc<RxTunnel>>,
        table: &mut HashMap<u32, Inbound>,
    ) -> bool {
        let mut added = false;
        loop {
            match self.commands.try_recv() {
                Ok(RxCommand::AddTunnel { conn, tunnel }) => {
                    tunnels.insert(conn, tunnel);
                }
                Ok(RxCommand::RemoveTunnel { conn, done }) => {
                    tunnels.remove(&conn);
                    table.retain(|_, entry| entry.conn != conn);
                    let _ = done.send(());
                }
                Ok(RxCommand::Add {
                    spi,
                    sa,
                    conn,
                    spi_out,
                    peer,
                    activate,
                    counters,
                }) => {
                    // SAs of a connection without a tunnel have nowhere to go.
                    if let Some(tunnel) = tunnels.get(&conn) {
                        added = true;
                        table.insert(
                            spi,
                            Inbound {
                                sa,
                                conn,
                                spi_out,
                                peer,
                                tunnel: Arc::clone(tunnel),
                                activate,
                                counters,
                            },
                        );
                    }
                }
                Ok(RxCommand::Remove { spi }) => {
                    table.remove(&spi);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return added,
            }
        }
    }

    fn run(self) {
        let mut tunnels: HashMap<usize, Arc<RxTunnel>> = HashMap::new();
        let mut table: HashMap<u32, Inbound> = HashMap::new();
        let mut batch = RxBatch::new();
        let mut gro = Gro::new(!disabled("tun-uso"));
        let mut parked = Parked::new();
        // An inbound SA was added since the parked packets were last tried.
        let mut sa_added = false;
        // When each tunnel last reported its peer unreachable.
        let mut hinted: HashMap<usize, std::time::Instant> = HashMap::new();
        let fd = self.socket.as_raw_fd();
        while !self.stop.load(Ordering::Relaxed) {
            let errors = wait_readable(fd);
            sa_added |= self.drain_commands(&mut tunnels, &mut table);
            if errors {
                self.icmp_errors(&table, &mut hinted);
            }
            // Parked packets are looked at again when an SA came, or when
            // one of them is due to expire: not at every wake-up (a flood
            // of unknown SPIs keeps every slot taken).
            if sa_added || parked.expiry_due() {
                sa_added = false;
                let expired = parked.retry(|p| self.esp(&mut table, p, &mut gro));
                bump(&self.global.unknown_spi, expired);
            }
            let n = batch.recv(fd);
            for i in 0..n {
                let Some((from, buf, seg)) = batch.message(i) else {
                    continue;
                };
                let from = addr_of(from);
                // A run of datagrams of one flow, each `seg` bytes but the last.
                for datagram in buf.chunks_mut(seg) {
                    match classify(datagram) {
                        Natt::Ike(message) => {
                            bump(&self.global.ike, 1);
                            if let Some(from) = from {
                                let _ = self.ike.try_send((from, message.to_vec()));
                            }
                        }
                        Natt::Keepalive => {}
                        Natt::Malformed => bump(&self.global.malformed, 1),
                        Natt::Esp(_) => {
                            if !self.esp(&mut table, datagram, &mut gro) {
                                // An SA installed since this batch's commands
                                // were drained (the peer may use a new SA the
                                // moment our answer reaches it): look again,
                                // and if it is still unknown keep it a moment
                                // — the control plane may not have told us
                                // yet.
                                sa_added |= self.drain_commands(&mut tunnels, &mut table);
                                if !self.esp(&mut table, datagram, &mut gro)
                                    && !parked.park(datagram)
                                {
                                    bump(&self.global.unknown_spi, 1);
                                }
                            }
                        }
                    }
                }
            }
            gro.flush();
        }
    }

    /// Reads the ICMP errors our datagrams drew (see [`DatapathEvent`]).
    fn icmp_errors(
        &self,
        table: &HashMap<u32, Inbound>,
        hinted: &mut HashMap<usize, std::time::Instant>,
    ) {
        let fd = self.socket.as_raw_fd();
        for _ in 0..ERRORS_PER_WAKE {
            let Some(e) = udp::read_error(fd) else {
                return;
            };
            let Some(conn) = verified_unreachable(&e, table.values()) else {
                continue;
            };
            let now = std::time::Instant::now();
            if hinted
                .get(&conn)
                .is_some_and(|&at| now.duration_since(at) < HINT_INTERVAL)
            {
                continue;
            }
            hinted.insert(conn, now);
            let _ = self
                .events
                .send(DatapathEvent::PeerUnreachable { conn, peer: e.to });
        }
    }

    /// Opens one ESP packet and passes it on; false if no SA has its SPI.
    fn esp(&self, table: &mut HashMap<u32, Inbound>, packet: &mut [u8], gro: &mut Gro) -> bool {
        let Some(spi) = packet
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return true;
        };
        let Some(entry) = table.get_mut(&spi) else {
            return false;
        };
        let tunnel = &entry.tunnel;
        let counters = &tunnel.counters;
        match entry.sa.open(packet) {
            Ok(opened) => {
                if let Some(spi) = entry.activate.take() {
                    tunnel.tx.send(&TxCommand::Activate { spi });
                }
                let Some(inner) = packet.get_mut(opened.inner) else {
                    return true;
                };
                if tunnel.clamp != 0 {
                    clamp_mss(inner, tunnel.clamp);
                }
                let written = if tunnel.tun.offload() {
                    gro.write(tunnel, inner)
                } else {
                    // SAFETY: writing our own initialized buffer.
                    unsafe { libc::write(tunnel.tun.fd(), inner.as_ptr().cast(), inner.len()) > 0 }
                };
                if written {
                    bump(&counters.rx_packets, 1);
                    bump(&counters.rx_bytes, inner.len() as u64);
                    bump(&entry.counters.inbound.packets, 1);
                    bump(&entry.counters.inbound.bytes, inner.len() as u64);
                }
            }
            Err(OpenError::Replay(
                ReplayError::Duplicate | ReplayError::TooOld | ReplayError::Zero,
            )) => bump(&counters.drop_replay, 1),
            Err(OpenError::Integrity) => bump(&counters.drop_auth, 1),
            Err(
                OpenError::Truncated
                | OpenError::BadLength
                | OpenError::BadPadding
                | OpenError::Dummy,
            ) => bump(&counters.drop_malformed, 1),
        }
        true
    }
}

/// The connection whose peer `e` says is gone, if it is an ICMP port
/// unreachable from that peer about ESP of a current outbound SA with a
/// recent sequence number (see [`DatapathEvent::PeerUnreachable`]); the
/// matching tunnel's `peer_unreachable` counter is bumped.
fn verified_unreachable<'a>(
    e: &udp::SendError,
    inbound: impl Iterator<Item = &'a Inbound>,
) -> Option<usize> {
    if !e.icmp || e.errno != libc::ECONNREFUSED || e.head_len < 8 {
        return None;
    }
    let spi = u32::from_be_bytes([e.head[0], e.head[1], e.head[2], e.head[3]]);
    let seq = u32::from_be_bytes([e.head[4], e.head[5], e.head[6], e.head[7]]);
    // SPI 0 is the non-ESP marker: an IKE message.
    if spi == 0 || seq == 0 {
        return None;
    }
    let entry = inbound
        .into_iter()
        .find(|i| i.spi_out == spi && i.peer == e.to)?;
    // The low 32 bits of the packets sent (with ESN the sequence number
    // on the wire is the low half too).
    let sent = entry.counters.outbound.packets.load(Ordering::Relaxed) as u32;
    let behind = sent.wrapping_sub(seq);
    if behind > HINT_SEQ_BEHIND && seq.wrapping_sub(sent) > HINT_SEQ_AHEAD {
        return None;
    }
    bump(&entry.tunnel.counters.peer_unreachable, 1);
    Some(entry.conn)
}

/// Flows coalesced at once on the way into the TUN devices: packets of
/// several flows arrive interleaved (several hosts, several sockets), and
/// one slot would flush at every change of flow.
const GRO_FLOWS: usize = 8;

/// Decrypted packets on their way into offload TUN devices: consecutive TCP
/// segments (or UDP datagrams of one size) of one flow become one
/// super-packet and one write; up to [`GRO_FLOWS`] flows are built at once,
/// and all are written at the end of each receive batch.
struct Gro {
    slots: Vec<GroSlot>,
    /// The slot to give up next when all are busy.
    victim: usize,
}

struct GroSlot {
    coalescer: Coalescer,
    /// The tunnel the held packet goes to.
    tunnel: Option<Arc<RxTunnel>>,
}

impl GroSlot {
    /// Writes what is held.
    fn flush(&mut self) {
        let Some(tunnel) = self.tunnel.take() else {
            let _ = self.coalescer.flush();
            return;
        };
        if let Some(bytes) = self.coalescer.flush() {
            // SAFETY: writing our own initialized buffer.
            unsafe { libc::write(tunnel.tun.fd(), bytes.as_ptr().cast(), bytes.len()) };
        }
    }

    fn holds(&self, tunnel: &Arc<RxTunnel>, packet: &[u8]) -> bool {
        self.tunnel.as_ref().is_some_and(|t| Arc::ptr_eq(t, tunnel))
            && self.coalescer.holds_flow(packet)
    }
}

impl Gro {
    /// `udp`: coalesce UDP datagrams too (see [`Coalescer::tcp_only`]).
    fn new(udp: bool) -> Gro {
        Gro {
            slots: (0..GRO_FLOWS)
                .map(|_| GroSlot {
                    coalescer: if udp {
                        Coalescer::new()
                    } else {
                        Coalescer::tcp_only()
                    },
                    tunnel: None,
                })
                .collect(),
            victim: 0,
        }
    }

    /// Takes one packet for `tunnel`; false if it had to be written alone
    /// and the write failed.
    fn write(&mut self, tunnel: &Arc<RxTunnel>, packet: &[u8]) -> bool {
        // The slot of its flow, else a free one, else the next victim.
        let i = match self.slots.iter().position(|s| s.holds(tunnel, packet)) {
            Some(i) => i,
            None => match self.slots.iter().position(|s| s.tunnel.is_none()) {
                Some(i) => i,
                None => {
                    let i = self.victim;
                    self.victim = (i + 1) % self.slots.len();
                    self.slots[i].flush();
                    i
                }
            },
        };
        let slot = &mut self.slots[i];
        let mut pushed = slot.coalescer.push(packet);
        if pushed == Push::Flush {
            slot.flush();
            pushed = slot.coalescer.push(packet);
        }
        match pushed {
            Push::Merged => {
                if slot.tunnel.is_none() {
                    slot.tunnel = Some(Arc::clone(tunnel));
                }
                true
            }
            Push::Flush | Push::Alone => {
                // Whatever its flow holds goes first: order within a flow
                // is kept.
                slot.flush();
                let mut hdr = [0u8; VNET_HDR_LEN];
                VnetHdr {
                    flags: F_DATA_VALID,
                    ..VnetHdr::default()
                }
                .write(&mut hdr);
                let iov = [
                    libc::iovec {
                        iov_base: hdr.as_ptr().cast_mut().cast(),
                        iov_len: hdr.len(),
                    },
                    libc::iovec {
                        iov_base: packet.as_ptr().cast_mut().cast(),
                        iov_len: packet.len(),
                    },
                ];
                // SAFETY: two iovecs over live buffers.
                unsafe { libc::writev(tunnel.tun.fd(), iov.as_ptr(), 2) > 0 }
            }
        }
    }

    /// Writes everything held.
    fn flush(&mut self) {
        for slot in &mut self.slots {
            if slot.tunnel.is_some() {
                slot.flush();
            }
        }
    }
}

/// Whether `feature` is listed in `VPNGW_DATAPATH_DISABLE` (comma-separated:
/// `tun-offload`, `tun-uso`, `tx-queue`, `udp-gso`, `udp-gro`, `socket-buffers`): for measuring
/// what each optimisation gives (`docs/bench.md`), never needed otherwise.
pub fn disabled(feature: &str) -> bool {
    std::env::var("VPNGW_DATAPATH_DISABLE").is_ok_and(|v| v.split(',').any(|f| f.trim() == feature))
}

/// ESP packets for an SPI we do not have yet, kept a moment: the peer may
/// start using a new child SA a little before our control plane has told
/// the receive thread about it (its answer and our install race). A few
/// slots, allocated once; a packet still unknown after [`PARK_FOR`] counts
/// as an unknown SPI.
struct Parked {
    slots: Vec<(Option<std::time::Instant>, usize, Vec<u8>)>,
    /// When the oldest parked packet expires (None: nothing parked).
    next_expiry: Option<std::time::Instant>,
}

/// Parked packets per receive thread.
const PARK_SLOTS: usize = 32;
/// How long a parked packet waits for its SA.
const PARK_FOR: std::time::Duration = std::time::Duration::from_millis(200);

impl Parked {
    fn new() -> Parked {
        Parked {
            slots: (0..PARK_SLOTS)
                .map(|_| (None, 0, vec![0u8; BUF_LEN]))
                .collect(),
            next_expiry: None,
        }
    }

    /// Whether a parked packet's time is up.
    fn expiry_due(&self) -> bool {
        self.next_expiry
            .is_some_and(|t| std::time::Instant::now() >= t)
    }

    /// Keeps a copy of `packet`; false if there is no room (or it is too
    /// large to keep).
    fn park(&mut self, packet: &[u8]) -> bool {
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.0.is_none() && s.2.len() >= packet.len())
        else {
            return false;
        };
        slot.2[..packet.len()].copy_from_slice(packet);
        slot.1 = packet.len();
        let now = std::time::Instant::now();
        slot.0 = Some(now);
        self.next_expiry.get_or_insert(now + PARK_FOR);
        true
    }

    /// Offers every parked packet to `open` again (which says whether its
    /// SA was found); returns how many expired.
    fn retry(&mut self, mut open: impl FnMut(&mut [u8]) -> bool) -> u64 {
        let mut expired = 0;
        let now = std::time::Instant::now();
        self.next_expiry = None;
        for slot in &mut self.slots {
            let Some(at) = slot.0 else { continue };
            if open(&mut slot.2[..slot.1]) {
                slot.0 = None;
            } else if now.duration_since(at) >= PARK_FOR {
                slot.0 = None;
                expired += 1;
            } else {
                let due = at + PARK_FOR;
                self.next_expiry = Some(self.next_expiry.map_or(due, |t| t.min(due)));
            }
        }
        expired
    }
}
