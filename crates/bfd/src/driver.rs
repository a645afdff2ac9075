//! The BFD driver: single-hop sessions (RFC 5881) over UDP with tokio. The
//! only I/O in this crate.
//!
//! [`Bfd::spawn`] starts one task that owns every [`Session`] and returns
//! a [`Handle`] to add and remove sessions, and the channel of their
//! [`Event`]s.
//!
//! - **Receiving.** One socket per address family on the wildcard address,
//!   port 3784 ([`DriverConfig::listen_port`]); the IPv4 one is bound by
//!   [`Bfd::spawn`], the IPv6 one with the first IPv6 session. Each
//!   datagram comes with its TTL (IP_RECVTTL / IPV6_RECVHOPLIMIT) and
//!   destination address (IP_PKTINFO): anything that did not arrive with
//!   TTL 255 is dropped (RFC 5881 §5, GTSM — our only protection, as there
//!   is no authentication). A packet goes to the session its Your
//!   Discriminator names, or, when that is zero, to the session of its
//!   (destination, source) address pair; the source must be the session's
//!   peer either way.
//! - **Sending.** One socket per session, bound to the session's local
//!   address and a random port in 49152–65535 (unique per session,
//!   RFC 5881 §4), with TTL 255 and traffic class CS6, to the peer's port
//!   3784. Sockets use IP_FREEBIND, so a session can be added before its
//!   tunnel address exists; until then its packets fail to go out
//!   (counted in [`Counters::send_errors`]) and it stays Down.
//! - **Time.** The task reads the clock and sleeps until the earliest
//!   session timeout; the jitter comes from a generator seeded by
//!   getrandom(2).
//!
//! A session starts sending (at the 1 s slow rate) as soon as it is
//! added. Removing it — or shutting the driver down — sends one AdminDown
//! packet first, so the peer goes Down at once rather than after its
//! detection time. Events of removed sessions are not reported.

mod sys;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::session::{ConfigError, Event, Session, SessionConfig};
use crate::wire::{ControlPacket, Diagnostic, State};

/// The UDP port of single-hop BFD Control packets (RFC 5881 §4).
pub const CONTROL_PORT: u16 = 3784;

/// The source ports single-hop Control packets must come from
/// (RFC 5881 §4).
pub const SOURCE_PORTS: RangeInclusive<u16> = 49152..=65535;

/// The TTL (hop limit) single-hop packets are sent and accepted with.
pub const TTL: u8 = 255;

/// Where the driver listens and sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverConfig {
    /// The port we receive Control packets on: 3784.
    pub listen_port: u16,
    /// The port we send them to: 3784. (Tests running two drivers in one
    /// namespace give each its own pair.)
    pub peer_port: u16,
    /// Source ports of the per-session sockets: 49152–65535.
    pub source_ports: RangeInclusive<u16>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            listen_port: CONTROL_PORT,
            peer_port: CONTROL_PORT,
            source_ports: SOURCE_PORTS,
        }
    }
}

/// A session of the driver. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bfd#{}", self.0)
    }
}

/// Why [`Handle::add_session`] refused a session.
#[derive(Debug, thiserror::Error)]
pub enum AddSessionError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// There is a session between these two addresses already.
    #[error("there is a BFD session from {local} to {peer} already")]
    Duplicate {
        /// Our address.
        local: IpAddr,
        /// The peer's address.
        peer: IpAddr,
    },
    /// The configured local discriminator belongs to another session.
    #[error("local discriminator {0:#x} is in use")]
    DiscriminatorInUse(u32),
    /// The addresses cannot make a single-hop session: different families,
    /// an unspecified, multicast or broadcast address, or an IPv6
    /// link-local one (not supported: it needs an interface).
    #[error("no single-hop BFD session from {local} to {peer}")]
    Addresses {
        /// Our address.
        local: IpAddr,
        /// The peer's address.
        peer: IpAddr,
    },
    /// A socket could not be set up.
    #[error("BFD socket: {0}")]
    Io(#[from] io::Error),
    /// The driver has stopped.
    #[error("the BFD driver has stopped")]
    Stopped,
}

/// What a session looks like right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    /// Our address.
    pub local: IpAddr,
    /// The peer's address.
    pub peer: IpAddr,
    /// The source port of our packets.
    pub source_port: u16,
    /// Our state.
    pub state: State,
    /// Why our state last changed.
    pub local_diag: Diagnostic,
    /// The state the peer last reported.
    pub remote_state: State,
    /// Our discriminator.
    pub local_discr: u32,
    /// The peer's discriminator; zero while unknown.
    pub remote_discr: u32,
    /// Our transmit interval before jitter.
    pub transmit_interval: Duration,
    /// How long a silent peer takes to be declared down; None until the
    /// peer was heard.
    pub detection_time: Option<Duration>,
}

/// Datagram counters of the driver (outcomes are counted, not logged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams received.
    pub received: u64,
    /// Dropped: TTL (hop limit) not 255, or unknown.
    pub bad_ttl: u64,
    /// Dropped: not a valid Control packet (see [`crate::wire::DecodeError`]).
    pub invalid: u64,
    /// Dropped: no session for its discriminator or addresses, or not from
    /// the session's peer.
    pub no_session: u64,
    /// Dropped by the session (AdminDown).
    pub discarded: u64,
    /// Packets handed to sessions.
    pub accepted: u64,
    /// Packets sent.
    pub sent: u64,
    /// Packets that could not be sent (no route yet, address missing, …).
    pub send_errors: u64,
}

enum Command {
    Add {
        local: IpAddr,
        peer: IpAddr,
        config: SessionConfig,
        reply: oneshot::Sender<Result<SessionId, AddSessionError>>,
    },
    Remove(SessionId),
    AdminDown(SessionId),
    AdminUp(SessionId),
    Status(SessionId, oneshot::Sender<Option<SessionStatus>>),
    List(oneshot::Sender<Vec<(SessionId, SessionStatus)>>),
    Counters(oneshot::Sender<Counters>),
    Shutdown,
}

/// Talks to a running driver. Cloning gives another handle to the same
/// driver; the driver stops when [`Handle::shutdown`] is called or every
/// handle is gone.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::UnboundedSender<Command>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// Adds a single-hop session from `local` to `peer`; it starts sending
    /// at once. A `config.local_discr` of zero lets the driver pick a
    /// unique discriminator.
    pub async fn add_session(
        &self,
        local: IpAddr,
        peer: IpAddr,
        config: SessionConfig,
    ) -> Result<SessionId, AddSessionError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Add {
                local,
                peer,
                config,
                reply,
            })
            .map_err(|_| AddSessionError::Stopped)?;
        rx.await.map_err(|_| AddSessionError::Stopped)?
    }

    /// Removes a session, telling the peer AdminDown first. No event
    /// follows.
    pub fn remove_session(&self, id: SessionId) {
        let _ = self.commands.send(Command::Remove(id));
    }

    /// Takes a session administratively down (RFC 5880 §6.8.16): the peer
    /// is told, and an Up session reports
    /// `Event::Down(Diagnostic::AdministrativelyDown)`.
    pub fn admin_down(&self, id: SessionId) {
        let _ = self.commands.send(Command::AdminDown(id));
    }

    /// Lets an AdminDown session come up again.
    pub fn admin_up(&self, id: SessionId) {
        let _ = self.commands.send(Command::AdminUp(id));
    }

    /// A session's status; None if there is no such session or the driver
    /// has stopped.
    pub async fn status(&self, id: SessionId) -> Option<SessionStatus> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Status(id, reply)).ok()?;
        rx.await.ok().flatten()
    }

    /// Every session's status, by id; empty if the driver has stopped.
    pub async fn sessions(&self) -> Vec<(SessionId, SessionStatus)> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::List(reply)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The datagram counters; None if the driver has stopped.
    pub async fn counters(&self) -> Option<Counters> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Counters(reply)).ok()?;
        rx.await.ok()
    }

    /// Stops the driver; every session tells its peer AdminDown first.
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}

/// Starts the driver.
#[derive(Debug)]
pub struct Bfd;

impl Bfd {
    /// Binds the IPv4 receiving socket (0.0.0.0, `config.listen_port`) and
    /// spawns the driver task on the current tokio runtime. Returns the
    /// handle and the events of every session.
    pub fn spawn(
        config: DriverConfig,
    ) -> io::Result<(Handle, mpsc::UnboundedReceiver<(SessionId, Event)>)> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("BFD driver needs a tokio runtime: {e}")))?;
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let (net_tx, net) = mpsc::channel(NET_QUEUE);
        let mut driver = Driver {
            config,
            rng: Rng::seeded(),
            sessions: HashMap::new(),
            by_discr: HashMap::new(),
            by_addr: HashMap::new(),
            readers: Readers {
                v4: None,
                v6: None,
                net: net_tx,
            },
            events,
            next_id: 1,
            counters: Counters::default(),
        };
        let _guard = runtime.enter();
        driver.readers.listen(&driver.config, Family::V4)?;
        runtime.spawn(driver.run(commands, net));
        Ok((
            Handle {
                commands: commands_tx,
            },
            events_rx,
        ))
    }
}

/// Largest datagram we look at (the mandatory section plus the largest
/// authentication section, with room to spare).
const DATAGRAM_MAX: usize = 128;

/// Datagrams queued between the reader tasks and the driver; when full,
/// the readers wait and the kernel's socket buffer takes the overflow.
const NET_QUEUE: usize = 256;

/// A datagram from a reader task.
struct Datagram {
    bytes: [u8; DATAGRAM_MAX],
    meta: sys::Received,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

fn family(addr: IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// The receiving sockets, each read by its own task.
struct Readers {
    v4: Option<JoinHandle<()>>,
    v6: Option<JoinHandle<()>>,
    net: mpsc::Sender<Datagram>,
}

impl Readers {
    /// Binds the listener of `family` unless there is one.
    fn listen(&mut self, config: &DriverConfig, family: Family) -> io::Result<()> {
        let (slot, wildcard) = match family {
            Family::V4 => (&mut self.v4, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            Family::V6 => (&mut self.v6, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        };
        if slot.is_some() {
            return Ok(());
        }
        let socket = UdpSocket::from_std(sys::listener(SocketAddr::new(
            wildcard,
            config.listen_port,
        ))?)?;
        *slot = Some(tokio::spawn(read_loop(socket, self.net.clone())));
        Ok(())
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        for task in [self.v4.take(), self.v6.take()].into_iter().flatten() {
            task.abort();
        }
    }
}

async fn read_loop(socket: UdpSocket, net: mpsc::Sender<Datagram>) {
    loop {
        let mut bytes = [0u8; DATAGRAM_MAX];
        let fd = socket.as_raw_fd();
        match socket
            .async_io(Interest::READABLE, || sys::recv(fd, &mut bytes))
            .await
        {
            Ok(meta) => {
                if net.send(Datagram { bytes, meta }).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "BFD receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// xorshift64*: the jitter and port generator, seeded from the kernel.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        Rng(sys::random_u64() | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

struct Entry {
    local: IpAddr,
    peer: IpAddr,
    source_port: u16,
    /// Non-blocking; not registered with tokio (a send that would block
    /// drops the packet, as a full queue would).
    socket: std::net::UdpSocket,
    session: Session,
    /// The last send failed (to log only the change).
    send_failing: bool,
}

impl Entry {
    fn status(&self) -> SessionStatus {
        let s = &self.session;
        SessionStatus {
            local: self.local,
            peer: self.peer,
            source_port: self.source_port,
            state: s.state(),
            local_diag: s.local_diag(),
            remote_state: s.remote_state(),
            local_discr: s.local_discr(),
            remote_discr: s.remote_discr(),
            transmit_interval: s.transmit_interval(),
            detection_time: s.detection_time(),
        }
    }

    /// Sends what the session queued and forwards its events (unless
    /// `events` is None: a session being removed).
    fn flush(
        &mut self,
        id: SessionId,
        peer_port: u16,
        counters: &mut Counters,
        events: Option<&mpsc::UnboundedSender<(SessionId, Event)>>,
    ) {
        let target = SocketAddr::new(self.peer, peer_port);
        while let Some(packet) = self.session.poll_transmit() {
            match self.socket.send_to(&packet.encode(), target) {
                Ok(_) => {
                    counters.sent += 1;
                    if std::mem::replace(&mut self.send_failing, false) {
                        tracing::debug!(%id, local = %self.local, peer = %self.peer, "BFD packets go out again");
                    }
                }
                Err(error) => {
                    counters.send_errors += 1;
                    if !std::mem::replace(&mut self.send_failing, true) {
                        tracing::debug!(%id, local = %self.local, peer = %self.peer, %error, "BFD packets cannot be sent");
                    }
                }
            }
        }
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Up => {
                    tracing::info!(%id, local = %self.local, peer = %self.peer, "BFD session up");
                }
                Event::Down(diag) => {
                    tracing::warn!(%id, local = %self.local, peer = %self.peer, %diag, "BFD session down");
                }
            }
            if let Some(events) = events {
                let _ = events.send((id, event));
            }
        }
    }
}

struct Driver {
    config: DriverConfig,
    rng: Rng,
    sessions: HashMap<SessionId, Entry>,
    by_discr: HashMap<u32, SessionId>,
    by_addr: HashMap<(IpAddr, IpAddr), SessionId>,
    readers: Readers,
    events: mpsc::UnboundedSender<(SessionId, Event)>,
    next_id: u64,
    counters: Counters,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut net: mpsc::Receiver<Datagram>,
    ) {
        loop {
            let deadline = self
                .sessions
                .values()
                .filter_map(|e| e.session.poll_timeout())
                .min();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.command(command),
                },
                Some(datagram) = net.recv() => self.received(&datagram),
                () = sleep => self.timeouts(),
            }
        }
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
        tracing::debug!("BFD driver stopped");
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Add {
                local,
                peer,
                config,
                reply,
            } => {
                let result = self.add(local, peer, config);
                if let Err(error) = &result {
                    tracing::warn!(%local, %peer, %error, "BFD session refused");
                }
                let _ = reply.send(result);
            }
            Command::Remove(id) => self.remove(id),
            Command::AdminDown(id) => self.with_session(id, |s, now| s.admin_down(now)),
            Command::AdminUp(id) => self.with_session(id, |s, now| s.admin_up(now)),
            Command::Status(id, reply) => {
                let _ = reply.send(self.sessions.get(&id).map(Entry::status));
            }
            Command::List(reply) => {
                let mut list: Vec<(SessionId, SessionStatus)> = self
                    .sessions
                    .iter()
                    .map(|(id, e)| (*id, e.status()))
                    .collect();
                list.sort_by_key(|(id, _)| *id);
                let _ = reply.send(list);
            }
            Command::Counters(reply) => {
                let _ = reply.send(self.counters);
            }
            // Handled by the loop.
            Command::Shutdown => {}
        }
    }

    fn add(
        &mut self,
        local: IpAddr,
        peer: IpAddr,
        mut config: SessionConfig,
    ) -> Result<SessionId, AddSessionError> {
        let usable = |a: IpAddr| match a {
            IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_multicast() && !v4.is_broadcast(),
            // Link-local peers would need an interface (scope) we do not
            // carry.
            IpAddr::V6(v6) => {
                !v6.is_unspecified() && !v6.is_multicast() && !v6.is_unicast_link_local()
            }
        };
        if family(local) != family(peer) || !usable(local) || !usable(peer) {
            return Err(AddSessionError::Addresses { local, peer });
        }
        if self.by_addr.contains_key(&(local, peer)) {
            return Err(AddSessionError::Duplicate { local, peer });
        }
        if config.local_discr == 0 {
            config.local_discr = loop {
                let d = self.rng.next_u32();
                if d != 0 && !self.by_discr.contains_key(&d) {
                    break d;
                }
            };
        } else if self.by_discr.contains_key(&config.local_discr) {
            return Err(AddSessionError::DiscriminatorInUse(config.local_discr));
        }
        config.validate()?;
        self.readers.listen(&self.config, family(local))?;
        let (socket, source_port) = self.bind_sender(local)?;
        let session = Session::new(config, Instant::now())?;
        let id = SessionId(self.next_id);
        self.next_id += 1;
        self.by_discr.insert(config.local_discr, id);
        self.by_addr.insert((local, peer), id);
        tracing::info!(%id, %local, %peer, source_port, discr = config.local_discr, "BFD session added");
        let mut entry = Entry {
            local,
            peer,
            source_port,
            socket,
            session,
            send_failing: false,
        };
        // The first packet is due now.
        entry
            .session
            .handle_timeout(Instant::now(), &mut || self.rng.next_u32());
        entry.flush(
            id,
            self.config.peer_port,
            &mut self.counters,
            Some(&self.events),
        );
        self.sessions.insert(id, entry);
        Ok(id)
    }

    /// A socket on `local` and a free random source port.
    fn bind_sender(&mut self, local: IpAddr) -> io::Result<(std::net::UdpSocket, u16)> {
        let (low, high) = (
            *self.config.source_ports.start(),
            *self.config.source_ports.end(),
        );
        if low > high {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty BFD source port range",
            ));
        }
        let span = u64::from(high - low) + 1;
        let mut last = io::Error::from(io::ErrorKind::AddrInUse);
        for _ in 0..64 {
            let port = low + u16::try_from(self.rng.next_u64() % span).unwrap_or(0);
            match sys::sender(SocketAddr::new(local, port)) {
                Ok(socket) => return Ok((socket, port)),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn remove(&mut self, id: SessionId) {
        let Some(mut entry) = self.sessions.remove(&id) else {
            return;
        };
        self.by_discr.remove(&entry.session.local_discr());
        self.by_addr.remove(&(entry.local, entry.peer));
        entry.session.admin_down(Instant::now());
        entry.flush(id, self.config.peer_port, &mut self.counters, None);
        tracing::info!(%id, local = %entry.local, peer = %entry.peer, "BFD session removed");
    }

    fn with_session(&mut self, id: SessionId, f: impl FnOnce(&mut Session, Instant)) {
        if let Some(entry) = self.sessions.get_mut(&id) {
            f(&mut entry.session, Instant::now());
            entry.flush(
                id,
                self.config.peer_port,
                &mut self.counters,
                Some(&self.events),
            );
        }
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        let rng = &mut self.rng;
        for (id, entry) in &mut self.sessions {
            if entry.session.poll_timeout().is_some_and(|at| at <= now) {
                entry.session.handle_timeout(now, &mut || rng.next_u32());
                entry.flush(
                    *id,
                    self.config.peer_port,
                    &mut self.counters,
                    Some(&self.events),
                );
            }
        }
    }

    fn received(&mut self, datagram: &Datagram) {
        let now = Instant::now();
        let meta = &datagram.meta;
        self.counters.received += 1;
        if meta.ttl != Some(TTL) {
            self.counters.bad_ttl += 1;
            tracing::trace!(source = %meta.source, ttl = ?meta.ttl, "BFD packet without TTL 255 dropped");
            return;
        }
        let bytes = datagram.bytes.get(..meta.len).unwrap_or_default();
        let packet = match ControlPacket::decode(bytes) {
            Ok(packet) if !meta.truncated => packet,
            Ok(_) => {
                self.counters.invalid += 1;
                return;
            }
            Err(error) => {
                self.counters.invalid += 1;
                tracing::trace!(source = %meta.source, %error, "invalid BFD packet dropped");
                return;
            }
        };
        let source = meta.source.ip();
        let id = if packet.your_discr != 0 {
            self.by_discr.get(&packet.your_discr)
        } else {
            meta.destination
                .and_then(|destination| self.by_addr.get(&(destination, source)))
        };
        let Some(entry) = id.and_then(|id| self.sessions.get_mut(id).map(|e| (*id, e))) else {
            self.counters.no_session += 1;
            tracing::trace!(%source, your_discr = packet.your_discr, "BFD packet for no session dropped");
            return;
        };
        let (id, entry) = entry;
        if entry.peer != source {
            self.counters.no_session += 1;
            tracing::trace!(%id, %source, "BFD packet from another address than the peer dropped");
            return;
        }
        match entry.session.handle_packet(now, &packet) {
            Ok(()) => self.counters.accepted += 1,
            Err(_) => self.counters.discarded += 1,
        }
        entry.flush(
            id,
            self.config.peer_port,
            &mut self.counters,
            Some(&self.events),
        );
    }
}
