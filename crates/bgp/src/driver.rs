//! The BGP driver: TCP listener and connector bound to the tunnel
//! addresses. The only I/O in this crate.
//!
//! [`Driver::run`] owns the [`Speaker`] and does what it asks: it listens on
//! port 179 of every local session address (passive peers, and active ones
//! whose peer connects first), opens connections from the local address to
//! active peers, moves bytes between the sockets and the speaker, runs the
//! speaker's timers, and forwards its [`Event`]s. Each connection is one
//! task that reads into the speaker and writes what the speaker sends, in
//! order; a close from the speaker is done after the queued bytes are out,
//! so a NOTIFICATION reaches the peer before the FIN.
//!
//! Sockets are bound with `IP_FREEBIND`, so the listener and the
//! connections can be set up before the tunnel address exists. eBGP between
//! two /32s over a tunnel needs nothing more: the peer's /32 is routed into
//! the tunnel.
//!
//! Peers, own and announced prefixes change while running through the
//! [`Handle`] ([`Handle::add_peer`], [`Handle::remove_peer`],
//! [`Handle::set_local_prefixes`], [`Handle::set_announce`]); the listeners follow the peers' local
//! addresses (unless [`DriverConfig::listen`] fixes them), and sessions
//! that did not change are left alone.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use ipnet::IpNet;

use crate::config::{ConfigError, PeerConfig, BGP_PORT};
use crate::session::{ConnectionId, Direction, Input, StopReason};
use crate::speaker::{Event, Output, Speaker};
use crate::PeerId;

/// How the driver reaches the network.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The port to listen on and to connect to.
    pub port: u16,
    /// Addresses to listen on; empty: the local address of every peer, or
    /// the wildcard address if a peer has none.
    pub listen: Vec<IpAddr>,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Start every session when the driver starts. Off when something else
    /// knows when a session can work — the daemon starts each one when its
    /// tunnel comes up ([`Handle::start_peer`]), so the first attempt is
    /// not wasted on a route that does not exist yet (and then a whole
    /// ConnectRetry interval).
    pub start_sessions: bool,
    /// Says when whoever takes the [`Event`]s is behind (the daemon's route
    /// programmer, when the kernel installs slower than peers send): while
    /// it returns true, the driver reads nothing more from the peers —
    /// TCP then holds them back — so a full table arriving never queues
    /// up in memory faster than the kernel takes it. Timers, commands and
    /// what we send go on.
    pub backpressure: Option<Backpressure>,
}

/// See [`DriverConfig::backpressure`].
#[derive(Clone)]
pub struct Backpressure(pub Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for Backpressure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backpressure")
    }
}

/// Messages from the socket tasks the driver has not taken yet; a reader
/// waits beyond that (what holds a peer back under backpressure).
const NET_QUEUE: usize = 64;
/// How often the driver looks again while held back.
const BACKPRESSURE_POLL: Duration = Duration::from_millis(2);

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            port: BGP_PORT,
            listen: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            start_sessions: true,
            backpressure: None,
        }
    }
}

type Inspect = Box<dyn FnOnce(&Speaker) + Send>;

enum Command {
    Start(PeerId),
    Stop(PeerId, StopReason),
    AddPeer(
        Box<PeerConfig>,
        oneshot::Sender<Result<PeerId, ConfigError>>,
    ),
    RemovePeer(PeerId),
    SetLocalPrefixes(Vec<IpNet>),
    SetAnnounce(Vec<IpNet>),
    Inspect(Inspect),
    Shutdown,
}

/// Talks to a running driver.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// Starts a peer's session (after [`Handle::stop_peer`]).
    pub fn start_peer(&self, peer: PeerId) {
        let _ = self.commands.send(Command::Start(peer));
    }

    /// Stops a peer's session at once, e.g. when its tunnel went down.
    pub fn stop_peer(&self, peer: PeerId, reason: StopReason) {
        let _ = self.commands.send(Command::Stop(peer, reason));
    }

    /// Adds a peer (see [`Speaker::add_peer`]); it stays Idle until
    /// [`Handle::start_peer`]. The driver listens on its local address if
    /// it does not yet. `None` if the driver has ended.
    pub async fn add_peer(&self, config: PeerConfig) -> Option<Result<PeerId, ConfigError>> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::AddPeer(Box::new(config), tx))
            .ok()?;
        rx.await.ok()
    }

    /// Removes a peer (see [`Speaker::remove_peer`]): Cease / Peer
    /// De-configured goes out, then its connections close.
    pub fn remove_peer(&self, peer: PeerId) {
        let _ = self.commands.send(Command::RemovePeer(peer));
    }

    /// Replaces the gateway's own prefixes (see
    /// [`Speaker::set_local_prefixes`]).
    pub fn set_local_prefixes(&self, prefixes: Vec<IpNet>) {
        let _ = self.commands.send(Command::SetLocalPrefixes(prefixes));
    }

    /// Replaces the announced prefixes (see [`Speaker::set_announce`]).
    pub fn set_announce(&self, prefixes: Vec<IpNet>) {
        let _ = self.commands.send(Command::SetAnnounce(prefixes));
    }

    /// Runs `f` on the speaker (to read RIBs and peer states); `None` if
    /// the driver has ended.
    pub async fn inspect<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Speaker) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let job: Inspect = Box::new(move |s| {
            let _ = tx.send(f(s));
        });
        self.commands.send(Command::Inspect(job)).ok()?;
        rx.await.ok()
    }

    /// Stops every session (Cease / Administrative Shutdown) and ends the
    /// driver.
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}

enum Net {
    Accepted(TcpStream, SocketAddr),
    Connected(PeerId, TcpStream),
    ConnectFailed(PeerId, io::Error),
    Bytes(PeerId, ConnectionId, Vec<u8>),
    Closed(PeerId, ConnectionId),
}

enum ToConnection {
    Data(Vec<u8>),
    Close,
}

/// The I/O around a [`Speaker`]. See the module documentation.
pub struct Driver {
    speaker: Speaker,
    config: DriverConfig,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    net_tx: mpsc::Sender<Net>,
    net_rx: mpsc::Receiver<Net>,
    connections: HashMap<ConnectionId, mpsc::UnboundedSender<ToConnection>>,
    attempts: HashMap<PeerId, JoinHandle<()>>,
    /// The accept loop of each address listened on.
    listeners: HashMap<IpAddr, JoinHandle<()>>,
    next_connection: u64,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("config", &self.config)
            .field("connections", &self.connections.len())
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver for `speaker`, with the handle to command it and the
    /// receiver of its events.
    pub fn new(
        speaker: Speaker,
        config: DriverConfig,
    ) -> (Driver, Handle, mpsc::UnboundedReceiver<Event>) {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (net_tx, net_rx) = mpsc::channel(NET_QUEUE);
        let driver = Driver {
            speaker,
            config,
            commands: cmd_rx,
            events: ev_tx,
            net_tx,
            net_rx,
            connections: HashMap::new(),
            attempts: HashMap::new(),
            listeners: HashMap::new(),
            next_connection: 0,
        };
        (driver, Handle { commands: cmd_tx }, ev_rx)
    }

    /// Binds the listeners, starts every session (unless
    /// [`DriverConfig::start_sessions`] is off) and runs until
    /// [`Handle::shutdown`] (or every handle is dropped).
    pub async fn run(mut self) -> io::Result<()> {
        for addr in self.listen_addresses() {
            self.listen_on(addr)?;
        }
        if self.config.start_sessions {
            self.speaker.start(Instant::now());
        }
        loop {
            self.do_outputs();
            let deadline = self.speaker.poll_timeout();
            let sleep = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let held_back = self
                .config
                .backpressure
                .as_ref()
                .is_some_and(|busy| busy.0());
            tokio::select! {
                net = self.net_rx.recv(), if !held_back => {
                    if let Some(net) = net {
                        self.net(net);
                    }
                }
                () = tokio::time::sleep(BACKPRESSURE_POLL), if held_back => {}
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.command(cmd).await,
                },
                () = sleep => self.speaker.handle_timeout(Instant::now()),
            }
        }
        let now = Instant::now();
        let peers: Vec<PeerId> = self.speaker.peer_ids().collect();
        for peer in peers {
            self.speaker
                .stop_peer(now, peer, StopReason::Administrative);
        }
        self.do_outputs();
        for (_, task) in self.listeners.drain() {
            task.abort();
        }
        for (_, attempt) in self.attempts.drain() {
            attempt.abort();
        }
        // Connection tasks end once their queues close, after writing what
        // is queued.
        self.connections.clear();
        Ok(())
    }

    async fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Start(peer) => self.speaker.handle(now, peer, Input::Start),
            Command::Stop(peer, reason) => self.speaker.stop_peer(now, peer, reason),
            Command::AddPeer(config, reply) => {
                let result = self.speaker.add_peer(now, *config);
                if result.is_ok() {
                    self.reconcile_listeners().await;
                }
                let _ = reply.send(result);
            }
            Command::RemovePeer(peer) => {
                self.speaker.remove_peer(now, peer);
                if let Some(attempt) = self.attempts.remove(&peer) {
                    attempt.abort();
                }
                self.reconcile_listeners().await;
            }
            Command::SetLocalPrefixes(prefixes) => self.speaker.set_local_prefixes(now, prefixes),
            Command::SetAnnounce(prefixes) => self.speaker.set_announce(now, prefixes),
            Command::Inspect(f) => f(&self.speaker),
            // Handled by the loop.
            Command::Shutdown => {}
        }
    }

    /// Starts accepting on `addr`.
    fn listen_on(&mut self, addr: IpAddr) -> io::Result<()> {
        let listener = listen(SocketAddr::new(addr, self.config.port))?;
        tracing::debug!(%addr, port = self.config.port, "BGP listening");
        let net = self.net_tx.clone();
        self.listeners
            .insert(addr, tokio::spawn(accept_loop(listener, net)));
        Ok(())
    }

    /// Listens where the peers now need it, after a peer came or went:
    /// closes listeners no peer needs any more (or that a new wildcard
    /// covers: the two cannot share the port), then opens the missing
    /// ones. Connections already accepted are not touched. A listener that
    /// cannot be opened is logged and tried again on the next change.
    async fn reconcile_listeners(&mut self) {
        if !self.config.listen.is_empty() {
            return;
        }
        let wanted = self.listen_addresses();
        let stale: Vec<IpAddr> = self
            .listeners
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        for addr in stale {
            if let Some(task) = self.listeners.remove(&addr) {
                task.abort();
                // The socket is closed once the task is gone.
                let _ = task.await;
                tracing::debug!(%addr, port = self.config.port, "BGP listener closed");
            }
        }
        for addr in wanted {
            if self.listeners.contains_key(&addr) {
                continue;
            }
            if let Err(error) = self.listen_on(addr) {
                tracing::warn!(%addr, port = self.config.port, %error, "BGP listen failed");
            }
        }
    }

    fn listen_addresses(&self) -> Vec<IpAddr> {
        if !self.config.listen.is_empty() {
            return self.config.listen.clone();
        }
        let mut out: Vec<IpAddr> = Vec::new();
        let mut wildcard_v4 = false;
        let mut wildcard_v6 = false;
        for id in self.speaker.peer_ids() {
            let Some(p) = self.speaker.peer(id) else {
                continue;
            };
            match (p.config.local_address, p.config.address) {
                (Some(a), _) => {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
                (None, IpAddr::V4(_)) => wildcard_v4 = true,
                (None, IpAddr::V6(_)) => wildcard_v6 = true,
            }
        }
        // A wildcard listener covers every address of its family.
        if wildcard_v4 {
            out.retain(IpAddr::is_ipv6);
            out.push(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        }
        if wildcard_v6 {
            out.retain(IpAddr::is_ipv4);
            out.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        }
        out
    }

    fn do_outputs(&mut self) {
        while let Some(out) = self.speaker.poll_output() {
            match out {
                Output::Connect {
                    peer,
                    local,
                    remote,
                } => {
                    if let Some(old) = self.attempts.remove(&peer) {
                        old.abort();
                    }
                    let net = self.net_tx.clone();
                    let remote = SocketAddr::new(remote, self.config.port);
                    let timeout = self.config.connect_timeout;
                    let task = tokio::spawn(async move {
                        let result = tokio::time::timeout(timeout, connect(local, remote)).await;
                        let msg = match result {
                            Ok(Ok(stream)) => Net::Connected(peer, stream),
                            Ok(Err(e)) => Net::ConnectFailed(peer, e),
                            Err(_) => Net::ConnectFailed(
                                peer,
                                io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
                            ),
                        };
                        let _ = net.send(msg).await;
                    });
                    self.attempts.insert(peer, task);
                }
                Output::Send {
                    connection, bytes, ..
                } => {
                    if let Some(tx) = self.connections.get(&connection) {
                        let _ = tx.send(ToConnection::Data(bytes));
                    }
                }
                Output::Close { connection, .. } => {
                    if let Some(tx) = self.connections.remove(&connection) {
                        let _ = tx.send(ToConnection::Close);
                    }
                }
                Output::Event(event) => {
                    log_event(&event);
                    let _ = self.events.send(event);
                }
            }
        }
    }

    fn net(&mut self, net: Net) {
        let now = Instant::now();
        match net {
            Net::Accepted(stream, remote) => {
                let Some(peer) = self.speaker.find_peer(remote.ip()) else {
                    tracing::debug!(%remote, "BGP connection from an unknown address refused");
                    return;
                };
                self.attach(now, peer, stream, Direction::Inbound);
            }
            Net::Connected(peer, stream) => {
                self.attempts.remove(&peer);
                self.attach(now, peer, stream, Direction::Outbound);
            }
            Net::ConnectFailed(peer, error) => {
                self.attempts.remove(&peer);
                tracing::debug!(%peer, %error, "BGP connect failed");
                self.speaker.handle(now, peer, Input::TcpConnectFailed);
            }
            Net::Bytes(peer, connection, data) => {
                self.speaker.handle(
                    now,
                    peer,
                    Input::Bytes {
                        connection,
                        data: &data,
                    },
                );
            }
            Net::Closed(peer, connection) => {
                self.connections.remove(&connection);
                self.speaker
                    .handle(now, peer, Input::TcpClosed { connection });
            }
        }
    }

    fn attach(&mut self, now: Instant, peer: PeerId, stream: TcpStream, direction: Direction) {
        if self.speaker.peer(peer).is_none() {
            // Removed while the connection was being set up.
            return;
        }
        let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) else {
            return;
        };
        let _ = stream.set_nodelay(true);
        self.next_connection += 1;
        let id = ConnectionId(self.next_connection);
        let (tx, rx) = mpsc::unbounded_channel();
        self.connections.insert(id, tx);
        let net = self.net_tx.clone();
        tokio::spawn(connection_task(peer, id, stream, rx, net));
        self.speaker.handle(
            now,
            peer,
            Input::TcpConnected {
                connection: id,
                direction,
                local,
                remote,
            },
        );
    }
}

fn log_event(event: &Event) {
    match event {
        Event::PeerUp {
            name, router_id, ..
        } => tracing::info!(peer = %name, %router_id, "BGP session established"),
        Event::PeerDown {
            name,
            reason,
            was_established,
            ..
        } => {
            if *was_established {
                tracing::warn!(peer = %name, %reason, "BGP session down");
            } else {
                tracing::debug!(peer = %name, %reason, "BGP session attempt failed");
            }
        }
        Event::Refused { peer, routes } => {
            for (prefix, reason) in routes {
                tracing::info!(%peer, %prefix, %reason, "route refused");
            }
        }
        Event::HeldBack { peer, routes } => {
            for (prefix, reason) in routes {
                tracing::info!(%peer, %prefix, %reason, "route held back");
            }
        }
        Event::BestPath { prefix, .. } => tracing::debug!(%prefix, "best path changed"),
        Event::Withdrawn { prefix } => tracing::debug!(%prefix, "route withdrawn"),
    }
}

/// Lets a socket bind an address that is not (yet) on an interface.
fn set_freebind(socket: &TcpSocket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a descriptor we own, with a pointer to a c_int
    // that outlives the call and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_FREEBIND,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn new_socket(addr: &SocketAddr) -> io::Result<TcpSocket> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    set_freebind(&socket)?;
    Ok(socket)
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(&addr)?;
    socket.bind(addr)?;
    socket.listen(64)
}

async fn connect(local: Option<IpAddr>, remote: SocketAddr) -> io::Result<TcpStream> {
    let socket = new_socket(&remote)?;
    if let Some(local) = local {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    socket.connect(remote).await
}

async fn accept_loop(listener: TcpListener, net: mpsc::Sender<Net>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                if net.send(Net::Accepted(stream, remote)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "BGP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection_task(
    peer: PeerId,
    id: ConnectionId,
    stream: TcpStream,
    mut rx: mpsc::UnboundedReceiver<ToConnection>,
    net: mpsc::Sender<Net>,
) {
    let (mut rd, mut wr) = stream.into_split();
    // Reading on a task of its own: when the driver holds input back, the
    // reader waits on the queue while what we send (keepalives above all)
    // still goes out.
    let reader_net = net.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = reader_net.send(Net::Closed(peer, id)).await;
                    return;
                }
                Ok(n) => {
                    let data = buf.get(..n).unwrap_or_default().to_vec();
                    if reader_net.send(Net::Bytes(peer, id, data)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    loop {
        match rx.recv().await {
            Some(ToConnection::Data(bytes)) => {
                if wr.write_all(&bytes).await.is_err() {
                    let _ = net.send(Net::Closed(peer, id)).await;
                    break;
                }
            }
            Some(ToConnection::Close) | None => {
                let _ = wr.shutdown().await;
                break;
            }
        }
    }
    reader.abort();
}
