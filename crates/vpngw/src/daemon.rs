//! The daemon: builds the drivers from the configuration and passes their
//! events between them.
//!
//! What runs:
//! - per local (outer) address, an IKE endpoint on UDP 500/4500 and an ESP
//!   datapath reading that 4500 socket: every connection from that address
//!   has its IKE SA and child SA negotiated, kept alive (DPD) and
//!   restarted; a child SA installed brings the connection's TUN link up
//!   and starts carrying packets, its deletion takes the link down;
//! - the route programmer: static-mode connections' prefixes are routed
//!   through their tunnel while it is up and withdrawn the moment it goes
//!   down; BGP best paths go through the tunnels of their ECMP set;
//! - the BGP speaker: one eBGP session per `[connection.bgp]`, across the
//!   tunnel between the tunnel addresses. It starts when the tunnel comes
//!   up and is closed the moment the tunnel goes down (no waiting for the
//!   hold timer);
//! - the control socket ([`crate::control`]) and, if configured, the
//!   Prometheus endpoint ([`crate::metrics`]).
//!
//! Connections live in slots that are never reused, so a reload can add
//! and remove them while the others keep their SAs: a changed connection
//! is removed and added again, an unchanged one is not touched.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, info_span, warn};
use vpngw_bgp::driver::{
    Backpressure, Driver as BgpDriver, DriverConfig as BgpDriverConfig, Handle as BgpHandle,
};
use vpngw_bgp::session::StopReason;
use vpngw_bgp::{Event as BgpEvent, PeerConfig, PeerId, Speaker, SpeakerConfig, Timers};
use vpngw_routes::{Command as RouteCommand, Handle as RouteHandle, Notice, Tunnel, TunnelId};
use vpngw_tunnel::driver::datapath::{Datapath, DatapathEvent, SaCounters, TunnelSpec};
use vpngw_tunnel::driver::ike::{
    self as ike_driver, DriverCounters, IkeCommand, IkeEvent, IkeSockets,
};
use vpngw_tunnel::driver::tun::{ifindex, Tun};
use vpngw_tunnel::esp::sa::{InboundSa, OutboundSa};
use vpngw_tunnel::ike::endpoint::{ConnId, Endpoint};
use vpngw_tunnel::ike::proposal::Esn;
use vpngw_tunnel::ike::sa::{ChildSa, CloseReason, Event, SaConfig, IKE_PORT, NATT_PORT};
use vpngw_tunnel::ike::wire::Identification;

use crate::config::{self, Config, Connection, Gateway, Routing};
use crate::control::{Incoming, ReloadReport, Reply, Request};
use crate::report;

/// How long IKE waits for the first answer before retransmitting; doubles
/// with each of the retries.
const RETRANSMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const RETRANSMIT_TRIES: u32 = 5;
/// How long a deleted child's inbound SA still accepts packets.
const INBOUND_GRACE: std::time::Duration = std::time::Duration::from_millis(500);
/// After an ICMP hint ([`DatapathEvent::PeerUnreachable`]) IKE checks the
/// peer, and gives up after `dpd_timeout`: a tunnel still up this much
/// later had its check answered, and rejoins.
const CHECK_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// An IKE identity from the configuration: an IP address, `keyid:...`,
/// `user@domain`, or an FQDN.
pub fn identity(id: &str) -> Identification {
    if let Ok(ip) = id.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(a) => Identification::ipv4(a),
            IpAddr::V6(a) => Identification::ipv6(a),
        };
    }
    if let Some(key) = id.strip_prefix("keyid:") {
        return Identification::key_id(key.as_bytes());
    }
    if id.contains('@') && !id.starts_with('@') {
        return Identification::rfc822(id);
    }
    Identification::fqdn(id.trim_start_matches('@'))
}

fn sa_config(c: &Connection) -> SaConfig {
    SaConfig {
        local_id: identity(&c.local_id),
        remote_id: identity(&c.remote_id),
        psk: zeroize::Zeroizing::new(c.psk.bytes().to_vec()),
        ike_proposals: c.ike_proposals.clone(),
        esp_proposals: c.esp_proposals.clone(),
        dpd_interval: c.dpd_interval,
        dpd_timeout: c.dpd_timeout,
        // A probe must get a few tries within a short DPD timeout.
        retransmit_timeout: RETRANSMIT_TIMEOUT.min(c.dpd_timeout / 4),
        retransmit_tries: RETRANSMIT_TRIES,
        // Our ESP runs in user space over UDP 4500 only.
        force_encap: true,
        ike_lifetime: c.ike_lifetime,
        child_lifetime: c.child_lifetime,
        child_lifetime_bytes: c.child_lifetime_bytes,
        child_lifetime_packets: c.child_lifetime_packets,
    }
}

fn peer_config(c: &Connection, b: &config::Bgp) -> PeerConfig {
    let mut p = PeerConfig::new(c.name.clone(), b.peer_address, b.peer_asn);
    p.local_address = c.tunnel_address;
    p.ipv6_next_hop = c.tunnel_address6;
    p.passive = b.passive;
    p.timers = Some(Timers {
        keepalive: u16::try_from(b.keepalive.as_secs()).unwrap_or(u16::MAX),
        hold: u16::try_from(b.hold.as_secs()).unwrap_or(u16::MAX),
    });
    p.max_prefixes = b.max_prefixes;
    p.prepend = b.prepend;
    p.profile = b.profile.map(|profile| match profile {
        config::Profile::Azure => vpngw_bgp::Profile::Azure,
        config::Profile::Aws => vpngw_bgp::Profile::Aws,
    });
    p
}

/// The IKE endpoint and ESP datapath of one local address.
pub(crate) struct Group {
    local: IpAddr,
    pub(crate) commands: mpsc::UnboundedSender<IkeCommand>,
    stop: watch::Sender<bool>,
    driver: tokio::task::JoinHandle<std::io::Result<DriverCounters>>,
    pub(crate) datapath: Datapath,
}

/// One configured connection while it exists.
pub(crate) struct Conn {
    pub(crate) cfg: Connection,
    /// Its local address's group.
    pub(crate) group: usize,
    /// Its id in that group's IKE endpoint (and datapath).
    pub(crate) ike: ConnId,
    /// Its BGP peer.
    pub(crate) peer: Option<PeerId>,
    /// Its TUN device's index.
    pub(crate) ifindex: u32,
    /// The installed child SA: (inbound SPI, outbound SPI).
    pub(crate) child: Option<(u32, u32)>,
    /// That child's traffic.
    pub(crate) sa_counters: Option<Arc<SaCounters>>,
    /// When the tunnel came up.
    pub(crate) up_since: Option<Instant>,
    /// Inbound packets on the child SA at the last tick.
    last_inbound: u64,
    /// The tunnel has gone down before (hold-down applies when it returns).
    was_down: bool,
    /// Up, but held down until then (flap damping).
    pub(crate) rejoin_at: Option<Instant>,
    /// Its BFD session.
    bfd: Option<vpngw_bfd::SessionId>,
    /// What BFD last said (None: no BFD, or no word yet).
    pub(crate) bfd_up: Option<bool>,
    /// Out of service on an ICMP hint that the peer is gone: the inbound
    /// packet count then, so that a packet since is proof of life.
    unreachable: Option<u64>,
}

impl Conn {
    fn tunnel_id(&self) -> TunnelId {
        TunnelId(self.cfg.name.clone())
    }

    /// Why a tunnel that is up carries no routes and no BGP session, if
    /// it does not.
    pub(crate) fn out_of_service(&self) -> Option<&'static str> {
        if self.up_since.is_none() {
            None
        } else if self.unreachable.is_some() {
            Some("peer unreachable (ICMP), checking")
        } else if self.bfd_up == Some(false) {
            Some("BFD down")
        } else if self.rejoin_at.is_some() {
            Some("held down")
        } else {
            None
        }
    }
}

/// Everything the daemon tracks between events.
pub(crate) struct Daemon {
    pub(crate) file: PathBuf,
    pub(crate) gateway: Gateway,
    pub(crate) started: Instant,
    groups: Vec<Group>,
    ike_events: Vec<mpsc::UnboundedReceiver<IkeEvent>>,
    /// Each group's datapath reports, by group index.
    datapath_events: Vec<mpsc::UnboundedReceiver<DatapathEvent>>,
    pub(crate) conns: Vec<Option<Conn>>,
    pub(crate) routes: RouteHandle,
    /// The static prefixes and the tunnels carrying them, as last set.
    pub(crate) statics: BTreeMap<IpNet, Vec<TunnelId>>,
    pub(crate) bgp: Option<BgpHandle>,
    bgp_events: Option<mpsc::UnboundedReceiver<BgpEvent>>,
    /// BFD, started with the first connection that asks for it.
    bfd: Option<vpngw_bfd::Handle>,
    /// Inbound SAs of deleted children, kept a moment for packets the peer
    /// sent before it deleted them: (when to remove, group, SPI).
    retiring: Vec<(Instant, usize, u32)>,
    bfd_events: Option<mpsc::UnboundedReceiver<(vpngw_bfd::SessionId, vpngw_bfd::session::Event)>>,
    /// Best-path changes since the last burst ended, and the count at the
    /// last tick: a burst is over when a tick sees no new ones.
    churn: (u64, u64),
    /// The peers of the last best path and their tunnels, shared.
    last_tunnels: Option<(Vec<PeerId>, Arc<[TunnelId]>)>,
}

/// Runs the daemon on `config` (read from `file`, which `reload` and
/// SIGHUP read again) until SIGINT or SIGTERM.
pub async fn run(config: Config, file: PathBuf) -> std::io::Result<()> {
    let Config {
        gateway,
        connections,
    } = config;
    if connections.is_empty() {
        warn!("no connections configured; add some and reload");
    }
    tune_allocator();
    let listener = crate::control::bind(&gateway.control_socket)?;
    let routes = start_routes(&gateway)?;
    let (bgp, bgp_events) = start_bgp(&gateway, &connections, &routes)?;
    let mut daemon = Daemon {
        file,
        gateway,
        started: Instant::now(),
        groups: Vec::new(),
        ike_events: Vec::new(),
        datapath_events: Vec::new(),
        conns: Vec::new(),
        routes,
        statics: BTreeMap::new(),
        bgp,
        bgp_events,
        bfd: None,
        bfd_events: None,
        retiring: Vec::new(),
        churn: (0, 0),
        last_tunnels: None,
    };
    let mut next_peer = 0;
    for c in connections {
        // start_bgp made the peers in connection order.
        let peer = match &c.routing {
            Routing::Bgp(_) => {
                next_peer += 1;
                Some(PeerId(next_peer - 1))
            }
            Routing::Static(_) => None,
        };
        daemon.add_connection(c, peer).await?;
    }
    daemon.sync_statics();

    let (control_tx, mut control_rx) = mpsc::unbounded_channel();
    let control = tokio::spawn(crate::control::serve(listener, control_tx.clone()));
    info!(socket = %daemon.gateway.control_socket.display(), "control socket ready");
    let metrics = match daemon.gateway.metrics_listen {
        Some(addr) => Some(tokio::spawn(crate::metrics::serve(addr, control_tx)?)),
        None => None,
    };

    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    // Ten times a second the child SAs' byte and packet counts go to IKE
    // (soft lifetimes at 90%, hard at 100%: the reports must come well
    // within that margin).
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tokio::select! {
            (group, event) = next_event(&mut daemon.ike_events) => daemon.on_ike_event(group, event),
            (group, event) = next_event(&mut daemon.datapath_events) => daemon.on_datapath_event(group, event),
            Some(event) = recv_bgp(&mut daemon.bgp_events) => daemon.on_bgp_events(event),
            Some((session, event)) = recv_bfd(&mut daemon.bfd_events) => daemon.on_bfd_event(session, event),
            Some(incoming) = control_rx.recv() => daemon.on_request(incoming).await,
            _ = sighup.recv() => {
                info!("SIGHUP: reloading {}", daemon.file.display());
                if let Err(e) = daemon.reload().await {
                    warn!("reload refused: {e}");
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = tick.tick() => daemon.tick(),
        }
    }
    control.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    let _ = std::fs::remove_file(&daemon.gateway.control_socket);
    daemon.shutdown().await;
    Ok(())
}

/// The next event of any group's IKE driver (or datapath), with the
/// group's index.
async fn next_event<T>(rxs: &mut [mpsc::UnboundedReceiver<T>]) -> (usize, T) {
    std::future::poll_fn(|cx| {
        for (i, rx) in rxs.iter_mut().enumerate() {
            if let std::task::Poll::Ready(Some(e)) = rx.poll_recv(cx) {
                return std::task::Poll::Ready((i, e));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

async fn recv_bgp(rx: &mut Option<mpsc::UnboundedReceiver<BgpEvent>>) -> Option<BgpEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_bfd(
    rx: &mut Option<mpsc::UnboundedReceiver<(vpngw_bfd::SessionId, vpngw_bfd::session::Event)>>,
) -> Option<(vpngw_bfd::SessionId, vpngw_bfd::session::Event)> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

type BgpParts = (Option<BgpHandle>, Option<mpsc::UnboundedReceiver<BgpEvent>>);

/// The BGP speaker with the peers of `connections` (PeerId in connection
/// order), on its own task; none if no connection runs BGP (a reload that
/// adds one starts it).
fn start_bgp(
    gateway: &Gateway,
    connections: &[Connection],
    routes: &RouteHandle,
) -> std::io::Result<BgpParts> {
    let peers: Vec<PeerConfig> = connections
        .iter()
        .filter_map(|c| match &c.routing {
            Routing::Bgp(b) => Some(peer_config(c, b)),
            Routing::Static(_) => None,
        })
        .collect();
    if peers.is_empty() {
        return Ok((None, None));
    }
    let speaker_config = SpeakerConfig {
        local_as: gateway.asn,
        router_id: gateway.router_id,
        local_prefixes: gateway.local_prefixes.clone(),
        announce: gateway.announce.clone(),
        act_as: None,
        peers,
    };
    match speaker_config.validate() {
        Ok(warnings) => {
            for w in warnings {
                warn!("BGP: {w}");
            }
        }
        Err(e) => return Err(std::io::Error::other(format!("BGP configuration: {e}"))),
    }
    let speaker = Speaker::new(speaker_config)
        .map_err(|e| std::io::Error::other(format!("BGP configuration: {e}")))?;
    let (handle, events) = spawn_speaker(speaker, routes);
    Ok((Some(handle), Some(events)))
}

/// Route commands queued for the kernel beyond which the BGP speaker
/// stops reading from peers until the route programmer catches up: a full
/// table then arrives at the pace the kernel takes it, and what waits in
/// between stays bounded (about 3 MB).
const ROUTE_BACKLOG_HIGH: usize = 65_536;

/// BGP events handled before the route programmer is woken.
const BGP_EVENT_BATCH: usize = 4096;

/// Runs `speaker` on its own task, held back while `routes` is behind.
fn spawn_speaker(
    speaker: Speaker,
    routes: &RouteHandle,
) -> (BgpHandle, mpsc::UnboundedReceiver<BgpEvent>) {
    let backlog = routes.backlog_counter();
    let busy = move || backlog.load(std::sync::atomic::Ordering::Relaxed) > ROUTE_BACKLOG_HIGH;
    // Sessions start when their tunnel comes up.
    let config = BgpDriverConfig {
        start_sessions: false,
        backpressure: Some(Backpressure(Arc::new(busy))),
        ..BgpDriverConfig::default()
    };
    let (driver, handle, events) = BgpDriver::new(speaker, config);
    tokio::spawn(async move {
        if let Err(e) = driver.run().await {
            warn!("BGP driver stopped: {e}");
        }
    });
    (handle, events)
}

/// The TUN device of a connection: MTU, point-to-point addresses, link
/// down until a child SA is installed.
fn create_tun(c: &Connection, queues: usize) -> std::io::Result<Tun> {
    let err = |what: &str, e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("connection {}: {what} {}: {e}", c.name, c.tun_name),
        )
    };
    // With offloads (TCP super-packets both ways) where the kernel has
    // them; a plain TUN device otherwise.
    let offload = if vpngw_tunnel::driver::datapath::disabled("tun-offload") {
        Err(std::io::Error::other("disabled by VPNGW_DATAPATH_DISABLE"))
    } else {
        Tun::create_offload_queues(&c.tun_name, queues)
    };
    let tun = match offload {
        Ok(tun) => tun,
        Err(e) => {
            warn!(connection = %c.name, "TUN offloads unavailable ({e}); one packet per read and write");
            Tun::create(&c.tun_name).map_err(|e| err("cannot create TUN device", e))?
        }
    };
    tun.set_mtu(c.mtu)
        .map_err(|e| err("cannot set the MTU of", e))?;
    if let (Some(IpAddr::V4(a)), Some(IpAddr::V4(p))) = (c.tunnel_address, c.tunnel_peer) {
        tun.set_ptp_v4(a, p).map_err(|e| err("cannot address", e))?;
    }
    for a in [
        c.tunnel_address6,
        c.tunnel_address.and_then(|a| match a {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        }),
    ]
    .into_iter()
    .flatten()
    {
        tun.add_addr_v6(a)
            .map_err(|e| err("cannot give an IPv6 address to", e))?;
    }
    tun.set_up(false)
        .map_err(|e| err("cannot set link state of", e))?;
    Ok(tun)
}

/// Keeps glibc's malloc from fragmenting under a full table: allocations
/// from 128 KiB up (the batches, queues and sets of a table arriving or
/// leaving) always get pages of their own, returned when freed, instead of
/// the heap, where they would end up between long-lived route entries.
/// (Without it glibc raises that threshold after the first large free, up
/// to 32 MiB.) Measured in `docs/bgp-scale.md`.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// The route programmer; tunnels and routes are set as connections come.
fn start_routes(gateway: &Gateway) -> std::io::Result<RouteHandle> {
    let routes_config = vpngw_routes::Config {
        table: gateway.kernel_table,
        per_route_notifications: gateway.per_route_notifications,
        ..Default::default()
    };
    if !gateway.per_route_notifications {
        info!("nexthop changes move routes without a notification per route (net.ipv4.nexthop_compat_mode 0 while vpngw runs; gateway.per_route_notifications)");
    }
    RouteHandle::spawn(routes_config, None, |notice| match notice {
        Notice::Event(e) => info!(event = ?e, "kernel routes"),
        Notice::Failed(failures) => {
            for f in failures {
                warn!("kernel refused a route operation: {f}");
            }
        }
        Notice::Error(e) => warn!("route programmer: {e}"),
    })
    .map_err(|e| std::io::Error::other(format!("cannot start the route programmer: {e}")))
}

impl Daemon {
    /// The groups, one per local address.
    pub(crate) fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The group a connection belongs to.
    pub(crate) fn group_of(&self, c: &Conn) -> Option<&Group> {
        self.groups.get(c.group)
    }

    /// The group of `local`, started if it is new: UDP 500/4500 bound, the
    /// IKE driver and the ESP datapath running.
    async fn group(&mut self, local: IpAddr) -> std::io::Result<usize> {
        if let Some(i) = self.groups.iter().position(|g| g.local == local) {
            return Ok(i);
        }
        let mut sockets = IkeSockets::bind(local).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot bind UDP 500/4500 on {local}: {e}"),
            )
        })?;
        let (natt, to_ike) = sockets.attach_datapath()?;
        let mut datapath = Datapath::start(natt, to_ike, Vec::new())?;
        let datapath_events = datapath
            .take_events()
            .ok_or_else(|| std::io::Error::other("datapath events taken"))?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(ike_driver::run(
            Endpoint::new(),
            sockets,
            events_tx,
            stop_rx,
            commands_rx,
        ));
        info!(%local, "IKE listening on UDP 500 and 4500; ESP datapath running");
        self.groups.push(Group {
            local,
            commands,
            stop: stop_tx,
            driver,
            datapath,
        });
        self.ike_events.push(events_rx);
        self.datapath_events.push(datapath_events);
        Ok(self.groups.len() - 1)
    }

    /// Brings a connection to life: its TUN device, its IKE connection
    /// (initiators start at once), its tunnel in the route programmer and
    /// its BGP peer (`peer` if the speaker already has it).
    async fn add_connection(&mut self, c: Connection, peer: Option<PeerId>) -> std::io::Result<()> {
        let group = self.group(c.local_address).await?;
        let tun = create_tun(&c, self.gateway.tx_queues)?;
        let index = ifindex(&c.tun_name)?;
        let (reply, ike) = oneshot::channel();
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| std::io::Error::other("group vanished"))?;
        let _ = g.commands.send(IkeCommand::AddConnection {
            name: c.name.clone(),
            cfg: Box::new(sa_config(&c)),
            local: SocketAddr::new(c.local_address, IKE_PORT),
            remote: SocketAddr::new(c.remote_address, IKE_PORT),
            initiate: c.initiate,
            reply,
        });
        let ike = ike
            .await
            .map_err(|_| std::io::Error::other("the IKE driver has stopped"))?;
        g.datapath.add_tunnel(
            ike.0,
            TunnelSpec {
                tun,
                mss_clamp: c.mss_clamp,
            },
        )?;
        let peer_v4 = match c.tunnel_peer {
            Some(IpAddr::V4(p)) => Some(p),
            Some(IpAddr::V6(_)) | None => None,
        };
        let _ = self.routes.send(RouteCommand::SetTunnel(
            Tunnel {
                id: TunnelId(c.name.clone()),
                ifindex: index,
                peer_v4,
                peer_v6: None,
            },
            false,
        ));
        let peer = match (&c.routing, peer) {
            (Routing::Bgp(_), Some(p)) => Some(p),
            (Routing::Bgp(b), None) => Some(self.add_peer(peer_config(&c, b)).await?),
            (Routing::Static(_), _) => None,
        };
        let bfd = match (c.bfd, c.tunnel_address, c.tunnel_peer) {
            (Some(b), Some(local), Some(peer)) => {
                Some(self.add_bfd(&c.name, local, peer, b).await?)
            }
            _ => None,
        };
        info!(
            connection = %c.name,
            local = %c.local_address,
            remote = %c.remote_address,
            tun = %c.tun_name,
            role = if c.initiate { "initiator" } else { "responder" },
            "connection loaded"
        );
        self.conns.push(Some(Conn {
            cfg: c,
            group,
            ike,
            peer,
            ifindex: index,
            child: None,
            sa_counters: None,
            up_since: None,
            last_inbound: 0,
            was_down: false,
            rejoin_at: None,
            bfd,
            bfd_up: None,
            unreachable: None,
        }));
        Ok(())
    }

    /// A BFD session across a tunnel (the BFD driver is started with the
    /// first). It runs from now on: while the tunnel is down its packets go
    /// nowhere and it stays down.
    async fn add_bfd(
        &mut self,
        name: &str,
        local: IpAddr,
        peer: IpAddr,
        b: config::Bfd,
    ) -> std::io::Result<vpngw_bfd::SessionId> {
        if self.bfd.is_none() {
            let (handle, events) = vpngw_bfd::Bfd::spawn(vpngw_bfd::DriverConfig::default())
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot start BFD (UDP 3784): {e}"))
                })?;
            self.bfd = Some(handle);
            self.bfd_events = Some(events);
        }
        let handle = self
            .bfd
            .as_ref()
            .ok_or_else(|| std::io::Error::other("BFD driver missing"))?;
        let config = vpngw_bfd::SessionConfig {
            local_discr: 0,
            desired_min_tx: b.interval,
            required_min_rx: b.interval,
            detect_mult: b.multiplier,
        };
        handle
            .add_session(local, peer, config)
            .await
            .map_err(|e| std::io::Error::other(format!("connection {name}: BFD: {e}")))
    }

    /// BFD says the peer is (again) reachable across the tunnel, or not.
    /// Down takes the tunnel out of service — routes and BGP session — while
    /// IKE and ESP go on, so BFD can see it come back; up rejoins it
    /// (after the hold-down, if one is set).
    fn on_bfd_event(&mut self, session: vpngw_bfd::SessionId, event: vpngw_bfd::session::Event) {
        let Some(slot) = self
            .conns
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.bfd == Some(session)))
        else {
            return;
        };
        let _enter = self.conn_span(slot).entered();
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return;
        };
        let was = c.bfd_up;
        let tunnel_up = c.up_since.is_some();
        match event {
            vpngw_bfd::session::Event::Up => {
                c.bfd_up = Some(true);
                if c.unreachable.take().is_some() && was != Some(false) && tunnel_up {
                    // BFD came up after an ICMP hint took the tunnel out.
                    c.rejoin_at = Some(Instant::now());
                }
                info!("BFD up");
                if was == Some(false) && tunnel_up {
                    let hold_down = c.cfg.hold_down;
                    if hold_down.is_zero() {
                        self.rejoin(slot, true);
                    } else {
                        c.rejoin_at = Some(Instant::now() + hold_down);
                        info!(?hold_down, "held down after BFD's failure");
                    }
                }
            }
            // Down before ever up (a peer that has not answered yet, or
            // runs no BFD) changes nothing: only a lost peer counts.
            vpngw_bfd::session::Event::Down(_) if was != Some(true) => {}
            vpngw_bfd::session::Event::Down(diag) => {
                c.bfd_up = Some(false);
                warn!(diagnostic = ?diag, "BFD down");
                if tunnel_up {
                    c.rejoin_at = None;
                    warn!("BFD lost the peer: the tunnel leaves its routes and BGP session");
                    self.rejoin(slot, false);
                }
            }
        }
    }

    /// A BGP peer added while running (the speaker is started if this is
    /// the first).
    async fn add_peer(&mut self, config: PeerConfig) -> std::io::Result<PeerId> {
        if self.bgp.is_none() {
            let speaker = Speaker::new(SpeakerConfig {
                local_as: self.gateway.asn,
                router_id: self.gateway.router_id,
                local_prefixes: self.gateway.local_prefixes.clone(),
                announce: self.gateway.announce.clone(),
                act_as: None,
                peers: Vec::new(),
            })
            .map_err(|e| std::io::Error::other(format!("BGP configuration: {e}")))?;
            let (handle, events) = spawn_speaker(speaker, &self.routes);
            self.bgp = Some(handle);
            self.bgp_events = Some(events);
        }
        let bgp = self
            .bgp
            .as_ref()
            .ok_or_else(|| std::io::Error::other("BGP speaker missing"))?;
        let name = config.name.clone();
        match bgp.add_peer(config).await {
            Some(Ok(peer)) => Ok(peer),
            Some(Err(e)) => Err(std::io::Error::other(format!(
                "connection {name}: BGP: {e}"
            ))),
            None => Err(std::io::Error::other("the BGP speaker has stopped")),
        }
    }

    /// Takes a connection away: its routes, BGP peer (Cease, its routes
    /// withdrawn), IKE SAs (DELETE sent) and TUN device.
    async fn remove_connection(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        // Traffic first: the routes leave the tunnel (an ECMP group
        // shrinks to the others), then the peers hear of it, then the
        // device goes.
        let _ = self
            .routes
            .send(RouteCommand::RemoveTunnel(conn.tunnel_id()));
        if let (Some(bgp), Some(peer)) = (&self.bgp, conn.peer) {
            bgp.remove_peer(peer);
        }
        if let (Some(bfd), Some(session)) = (&self.bfd, conn.bfd) {
            bfd.remove_session(session);
        }
        if let Some(g) = self.groups.get_mut(conn.group) {
            let _ = g.commands.send(IkeCommand::RemoveConnection(conn.ike));
            // The driver answers in order, after it has sent what the
            // removal produced: the DELETE is out before anything blocks.
            let (tx, rx) = oneshot::channel();
            if g.commands.send(IkeCommand::Status(tx)).is_ok() {
                let _ = rx.await;
            }
            // Blocks until the datapath threads let go of the TUN device
            // (at most one poll interval, 100 ms).
            g.datapath.remove_tunnel(conn.ike.0);
        }
        info!(connection = %conn.cfg.name, "connection removed");
    }

    /// Sets the static routes from the live connections: a prefix several
    /// connections carry is one ECMP route through all of their tunnels
    /// (active-active); the kernel uses those that are up.
    fn sync_statics(&mut self) {
        let mut now: BTreeMap<IpNet, Vec<TunnelId>> = BTreeMap::new();
        for c in self.conns.iter().flatten() {
            if let Routing::Static(prefixes) = &c.cfg.routing {
                for p in prefixes {
                    now.entry(*p).or_default().push(c.tunnel_id());
                }
            }
            // An IPv6 tunnel peer (a BGP session over IPv6 on the tunnel)
            // is reached through the tunnel: IPv6 has no point-to-point
            // address pair to give the kernel that route, as IPv4 does.
            if let Some(IpAddr::V6(peer)) = c.cfg.tunnel_peer {
                let host = IpNet::V6(ipnet::Ipv6Net::from(peer));
                now.entry(host).or_default().push(c.tunnel_id());
            }
        }
        for prefix in self.statics.keys() {
            if !now.contains_key(prefix) {
                let _ = self.routes.send(RouteCommand::Withdraw(*prefix));
            }
        }
        for (prefix, tunnels) in &now {
            if self.statics.get(prefix) != Some(tunnels) {
                let _ = self
                    .routes
                    .send(RouteCommand::SetRoute(*prefix, tunnels.clone()));
            }
        }
        self.statics = now;
    }

    fn slot_of(&self, group: usize, ike: ConnId) -> Option<usize> {
        self.conns
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.group == group && c.ike == ike))
    }

    fn on_ike_event(&mut self, group: usize, e: IkeEvent) {
        let Some(slot) = self.slot_of(group, e.conn) else {
            // A removed connection's SAs closing: its tunnel is gone already.
            return;
        };
        let _enter = self.conn_span(slot).entered();
        let sa_span = e.ike_sa.map(|(i, r)| {
            info_span!(
                "ike_sa",
                spi_i = %format_args!("{:016x}", u64::from_be_bytes(i.0)),
                spi_r = %format_args!("{:016x}", u64::from_be_bytes(r.0))
            )
        });
        let _sa = sa_span.as_ref().map(tracing::Span::enter);
        log_event(&e.event);
        match e.event {
            Event::ChildInstalled(child) => self.install(slot, &child, e.peer, None),
            Event::ChildDeleted { spi_in, spi_out } => {
                // Outbound stops now; inbound stays for INBOUND_GRACE: the
                // peer's last packets under it may arrive after its DELETE
                // (they leave from another thread than the DELETE did).
                if let Some((c, g)) = self.conn_group(slot) {
                    g.datapath.clear_outbound(c.ike.0, spi_out);
                    let group = c.group;
                    self.retiring
                        .push((Instant::now() + INBOUND_GRACE, group, spi_in));
                }
                let current = self
                    .conns
                    .get(slot)
                    .and_then(Option::as_ref)
                    .and_then(|c| c.child);
                if current == Some((spi_in, spi_out)) {
                    self.tunnel_state(slot, false);
                }
            }
            // Make before break: the new inbound SA is installed at once and
            // the old one stays until its ChildDeleted. Outbound switches now
            // if we initiated the rekey (the peer has the new child); if we
            // answered, at the peer's first packet on the new child (or when
            // the old outbound SA is removed).
            Event::ChildRekeyed {
                new,
                delay_outbound,
                ..
            } => self.install(slot, &new, e.peer, Some(delay_outbound)),
            Event::Closed(CloseReason::Superseded) => self.peer_restarted(slot),
            Event::Established(_) | Event::IkeRekeyed { .. } | Event::Closed(_) => {}
        }
    }

    /// The datapath saw the peer's host refuse our ESP (ICMP port
    /// unreachable, verified by SPI and sequence number): its IKE daemon
    /// is gone. A tunnel in service leaves its routes and BGP session now
    /// rather than after BFD's or DPD's timeout, and IKE checks the peer at
    /// once. It rejoins at the first sign of life: inbound ESP (BFD and BGP
    /// ride in it too), BFD coming up, a new child SA, or the check
    /// answered (the tunnel still up `dpd_timeout` later). Only a check
    /// that goes unanswered ends the IKE SA (RFC 7296 §2.4).
    fn on_datapath_event(&mut self, group: usize, event: DatapathEvent) {
        let DatapathEvent::PeerUnreachable { conn, peer } = event;
        let Some(slot) = self.slot_of(group, ConnId(conn)) else {
            return;
        };
        let _enter = self.conn_span(slot).entered();
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return;
        };
        if !c.cfg.icmp_failover || c.up_since.is_none() || c.unreachable.is_some() {
            return;
        }
        if let Some(g) = self.groups.get(c.group) {
            let _ = g.commands.send(IkeCommand::CheckLiveness(c.ike));
        }
        if c.out_of_service().is_some() {
            debug!(%peer, "ICMP port unreachable from the peer; the tunnel is out of service already");
            return;
        }
        c.unreachable = Some(c.sa_counters.as_ref().map_or(0, |s| {
            s.inbound.packets.load(std::sync::atomic::Ordering::Relaxed)
        }));
        c.rejoin_at = Some(Instant::now() + c.cfg.dpd_timeout + CHECK_MARGIN);
        warn!(%peer, "the peer's host refused our ESP (ICMP port unreachable: its IKE daemon is gone); the tunnel leaves its routes and BGP session until the peer shows life");
        self.rejoin(slot, false);
    }

    /// The peer restarted (its new IKE SA said INITIAL_CONTACT, and the
    /// old one ended): its BGP speaker restarted with it, and our session
    /// runs on a TCP connection its kernel no longer knows. Started again
    /// now, rather than when our next keepalive draws a reset and the
    /// IdleHoldTime has passed; the restarted peer's own connection would be
    /// refused as a collision with an established session meanwhile.
    fn peer_restarted(&self, slot: usize) {
        let Some(c) = self.conns.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let in_service = c.up_since.is_some() && c.out_of_service().is_none();
        if let (Some(bgp), Some(peer), true) = (&self.bgp, c.peer, in_service) {
            info!("the peer restarted: its BGP session starts again");
            bgp.stop_peer(peer, StopReason::TransportDown);
            bgp.start_peer(peer);
        }
    }

    /// The `connection{name}` span that an event of `slot` is logged in.
    fn conn_span(&self, slot: usize) -> tracing::Span {
        info_span!("connection", name = %self.name(slot))
    }

    fn name(&self, slot: usize) -> &str {
        self.conns
            .get(slot)
            .and_then(Option::as_ref)
            .map_or("?", |c| c.cfg.name.as_str())
    }

    fn conn_group(&self, slot: usize) -> Option<(&Conn, &Group)> {
        let c = self.conns.get(slot)?.as_ref()?;
        Some((c, self.groups.get(c.group)?))
    }

    /// Installs a child SA: the first of a tunnel (`rekey` None, which
    /// brings the tunnel up) or the successor of a rekey (`Some(staged)`).
    fn install(
        &mut self,
        slot: usize,
        child: &ChildSa,
        peer: Option<SocketAddr>,
        rekey: Option<bool>,
    ) {
        let Some(mut peer) = peer else {
            warn!("child SA without a peer address; not installed");
            return;
        };
        if child.udp_encap {
            if peer.port() == IKE_PORT {
                peer.set_port(NATT_PORT);
            }
        } else {
            warn!("the peer negotiated ESP without UDP encapsulation, which this datapath cannot send");
        }
        let Some((c, g)) = self.conn_group(slot) else {
            return;
        };
        let esn = child.algorithms.esn == Esn::On;
        let window = u64::from(c.cfg.replay_window);
        let inbound = InboundSa::with_replay_window(child.spi_in, esn, window, &child.keys_in);
        let outbound = OutboundSa::new(child.spi_out, esn, &child.keys_out);
        let (i, o) = match (inbound, outbound) {
            (Ok(i), Ok(o)) => (i, o),
            (Err(e), _) | (_, Err(e)) => {
                warn!("cannot install the child SA: {e}");
                return;
            }
        };
        let counters = Arc::new(SaCounters::default());
        let dp = c.ike.0;
        match rekey {
            Some(true) => g.datapath.install_staged(dp, i, o, peer, &counters),
            Some(false) | None => g.datapath.install(dp, i, o, peer, &counters),
        }
        if let Some(Some(c)) = self.conns.get_mut(slot) {
            c.sa_counters = Some(counters);
            c.child = Some((child.spi_in, child.spi_out));
        }
        if rekey.is_none() {
            self.tunnel_state(slot, true);
        }
    }

    /// Ten times a second: tells IKE how much each current child SA has
    /// carried, and which tunnels heard from their peer (inbound ESP is
    /// proof of life: DPD then has nothing to probe); rejoins tunnels
    /// whose hold-down is over.
    fn tick(&mut self) {
        let now = Instant::now();
        self.after_burst();
        let mut rejoin = Vec::new();
        for (slot, c) in self.conns.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            if let (Some(counters), Some(g)) = (&c.sa_counters, self.groups.get(c.group)) {
                let _ = g.commands.send(IkeCommand::ChildBytes {
                    conn: c.ike,
                    bytes: counters.bytes(),
                    packets: counters.packets(),
                });
                let inbound = counters
                    .inbound
                    .packets
                    .load(std::sync::atomic::Ordering::Relaxed);
                if inbound != c.last_inbound {
                    c.last_inbound = inbound;
                    let _ = g.commands.send(IkeCommand::InboundTraffic(c.ike));
                }
                if c.unreachable.is_some_and(|then| inbound > then) {
                    // Proof of life after an ICMP hint: back at once.
                    info!(connection = %c.cfg.name, "ESP from the peer again: it is alive");
                    c.rejoin_at = Some(now);
                }
            }
            if c.rejoin_at.is_some_and(|t| t <= now) && c.bfd_up != Some(false) {
                c.rejoin_at = None;
                c.unreachable = None;
                rejoin.push(slot);
            }
        }
        for slot in rejoin {
            info!(connection = %self.name(slot), "hold-down over: the tunnel rejoins");
            self.rejoin(slot, true);
        }
        let groups = &self.groups;
        self.retiring.retain(|(at, group, spi)| {
            if *at > now {
                return true;
            }
            if let Some(g) = groups.get(*group) {
                g.datapath.remove_inbound(*spi);
            }
            false
        });
    }

    /// Once a burst of route changes (a full table arriving or leaving) is
    /// over, hands the memory its queues and batches used back to the
    /// system: the allocator would otherwise keep it, and a gateway that
    /// once took a full table would look as if it still held two.
    fn after_burst(&mut self) {
        let (count, seen) = self.churn;
        if count == 0 {
            return;
        }
        if count != seen {
            self.churn.1 = count;
            return;
        }
        if count >= 10_000 {
            vpngw_routes::release_free_memory();
        }
        self.churn = (0, 0);
    }

    /// `first` and whatever else the speaker has queued (up to a batch):
    /// the route programmer wakes once for all of them.
    fn on_bgp_events(&mut self, first: BgpEvent) {
        self.on_bgp_event(first);
        for _ in 1..BGP_EVENT_BATCH {
            let Some(event) = self.bgp_events.as_mut().and_then(|rx| rx.try_recv().ok()) else {
                break;
            };
            self.on_bgp_event(event);
        }
        let _ = self.routes.wake();
    }

    fn on_bgp_event(&mut self, event: BgpEvent) {
        let tunnel_of = |peer: PeerId| -> Option<TunnelId> {
            self.conns
                .iter()
                .flatten()
                .find(|c| c.peer == Some(peer))
                .map(Conn::tunnel_id)
        };
        match event {
            BgpEvent::PeerUp {
                name,
                router_id,
                hold_time,
                ..
            } => {
                let span = info_span!("bgp_peer", name = %name);
                let _enter = span.enter();
                info!(%router_id, hold_time, "BGP session established");
            }
            BgpEvent::PeerDown {
                name,
                reason,
                was_established,
                ..
            } => {
                let span = info_span!("bgp_peer", name = %name);
                let _enter = span.enter();
                warn!(was_established, "BGP session down: {reason}");
            }
            BgpEvent::BestPath {
                prefix, next_hops, ..
            } => {
                // A full table goes through one or two peer sets: their
                // tunnel set is built once and shared, not per prefix.
                let hit = self.last_tunnels.as_ref().filter(|(peers, _)| {
                    peers.len() == next_hops.len()
                        && peers
                            .iter()
                            .zip(next_hops.iter())
                            .all(|(p, nh)| *p == nh.peer)
                });
                let tunnels = match hit {
                    Some((_, tunnels)) => Arc::clone(tunnels),
                    None => {
                        let mut list: Vec<TunnelId> = next_hops
                            .iter()
                            .filter_map(|nh| tunnel_of(nh.peer))
                            .collect();
                        list.dedup();
                        let tunnels: Arc<[TunnelId]> = list.into();
                        self.last_tunnels = Some((
                            next_hops.iter().map(|nh| nh.peer).collect(),
                            Arc::clone(&tunnels),
                        ));
                        tunnels
                    }
                };
                self.churn.0 += 1;
                debug!(%prefix, tunnels = ?tunnels.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), "BGP best path");
                let _ = self
                    .routes
                    .queue(RouteCommand::SetRouteShared(prefix, tunnels));
            }
            BgpEvent::Withdrawn { prefix } => {
                debug!(%prefix, "BGP route withdrawn");
                self.churn.0 += 1;
                let _ = self.routes.queue(RouteCommand::Withdraw(prefix));
            }
            BgpEvent::Refused { peer, routes } => {
                let name = self.peer_name(peer);
                for (prefix, why) in routes {
                    info!(peer = %name, %prefix, "BGP route refused: {why}");
                }
            }
            BgpEvent::HeldBack { peer, routes } => {
                let name = self.peer_name(peer);
                for (prefix, why) in routes {
                    info!(peer = %name, %prefix, "BGP route not advertised: {why}");
                }
            }
        }
    }

    fn peer_name(&self, peer: PeerId) -> String {
        self.conns
            .iter()
            .flatten()
            .find(|c| c.peer == Some(peer))
            .map_or_else(|| format!("peer {}", peer.0), |c| c.cfg.name.clone())
    }

    /// The tunnel's link, routes and BGP session follow its child SA. A
    /// tunnel that went down before comes back held down for `hold_down`:
    /// its link is up (IKE and ESP run) but its routes and BGP session wait.
    fn tunnel_state(&mut self, slot: usize, up: bool) {
        let Some((c, g)) = self.conn_group(slot) else {
            return;
        };
        if let Some(tun) = g.datapath.tun(c.ike.0) {
            if let Err(e) = tun.set_up(up) {
                warn!(
                    "cannot set {} {}: {e}",
                    tun.name(),
                    if up { "up" } else { "down" }
                );
            }
        }
        let hold_down = c.cfg.hold_down;
        // A tunnel whose BFD session is down waits for it.
        let bfd_down = c.bfd_up == Some(false);
        let held = up && ((c.was_down && !hold_down.is_zero()) || bfd_down);
        if let Some(Some(c)) = self.conns.get_mut(slot) {
            c.unreachable = None;
            if up {
                c.up_since = Some(Instant::now());
                c.rejoin_at = (held && !bfd_down).then(|| Instant::now() + hold_down);
            } else {
                c.up_since = None;
                c.child = None;
                c.sa_counters = None;
                c.last_inbound = 0;
                c.was_down = true;
                c.rejoin_at = None;
            }
        }
        if bfd_down && up {
            info!("tunnel up, waiting for BFD");
        } else if held {
            info!(?hold_down, "tunnel up, held down after its failure");
        } else {
            self.rejoin(slot, up);
        }
        info!(up, "tunnel {}", if up { "up" } else { "down" });
    }

    /// The tunnel's routes and BGP session join (or leave) it.
    fn rejoin(&self, slot: usize, up: bool) {
        let Some(c) = self.conns.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let _ = self
            .routes
            .send(RouteCommand::SetTunnelUp(c.tunnel_id(), up));
        // The BGP session across the tunnel follows it: closed at once when
        // the tunnel goes down, instead of waiting for the hold timer.
        if let (Some(bgp), Some(peer)) = (&self.bgp, c.peer) {
            if !up {
                bgp.stop_peer(peer, StopReason::TransportDown);
            } else if matches!(c.cfg.tunnel_peer, Some(IpAddr::V6(_))) {
                // An IPv6 tunnel peer is reached by a route vpngw installs
                // with the tunnel (IPv4 peers by the point-to-point pair):
                // the session starts once the route programmer has applied
                // it, not with a first connect that fails and then waits
                // out ConnectRetry.
                let (tx, rx) = oneshot::channel();
                if self
                    .routes
                    .inspect(move |_| {
                        let _ = tx.send(());
                    })
                    .is_ok()
                {
                    let bgp = bgp.clone();
                    tokio::spawn(async move {
                        if rx.await.is_ok() {
                            bgp.start_peer(peer);
                        }
                    });
                } else {
                    bgp.start_peer(peer);
                }
            } else {
                bgp.start_peer(peer);
            }
        }
    }

    async fn on_request(&mut self, incoming: Incoming) {
        let reply = match incoming.request {
            Request::Reload => match self.reload().await {
                Ok(report) => ok(&report),
                Err(e) => Reply::Error(e),
            },
            Request::Rekey { connection, ike } => self.rekey(&connection, ike),
            request @ (Request::Status
            | Request::Sas
            | Request::Bgp { .. }
            | Request::Routes { .. }) => {
                // Gathered on another task: the IKE driver counts on this
                // loop to install SAs promptly.
                let view = report::Gather::new(self, &request);
                tokio::spawn(async move {
                    let _ = incoming.reply.send(view.answer(request).await);
                });
                return;
            }
        };
        let _ = incoming.reply.send(reply);
    }

    fn rekey(&self, name: &str, ike: bool) -> Reply {
        let Some(c) = self.conns.iter().flatten().find(|c| c.cfg.name == name) else {
            return Reply::Error(format!("no connection named {name}"));
        };
        let Some(g) = self.groups.get(c.group) else {
            return Reply::Error("internal: connection without its group".into());
        };
        let command = if ike {
            IkeCommand::RekeyIke(c.ike)
        } else {
            IkeCommand::RekeyChild(c.ike)
        };
        let _ = g.commands.send(command);
        ok(&format!(
            "{} rekey of {name} started",
            if ike { "IKE SA" } else { "child SA" }
        ))
    }

    /// Reads the configuration file again and applies the difference:
    /// removed connections are deleted, new ones started, changed ones
    /// restarted; unchanged ones keep their SAs and BGP sessions. Nothing is
    /// applied when the file is invalid or changes what only a restart can.
    pub(crate) async fn reload(&mut self) -> Result<ReloadReport, String> {
        let new = config::load(&self.file).map_err(|e| e.to_string())?;
        let old = &self.gateway;
        let mut restart_only = Vec::new();
        if new.gateway.asn != old.asn {
            restart_only.push("gateway.asn");
        }
        if new.gateway.router_id != old.router_id {
            restart_only.push("gateway.router_id");
        }
        if new.gateway.kernel_table != old.kernel_table {
            restart_only.push("gateway.kernel_table");
        }
        if new.gateway.tx_queues != old.tx_queues {
            restart_only.push("gateway.tx_queues");
        }
        if new.gateway.ecmp != old.ecmp {
            restart_only.push("gateway.ecmp");
        }
        if new.gateway.per_route_notifications != old.per_route_notifications {
            restart_only.push("gateway.per_route_notifications");
        }
        if new.gateway.control_socket != old.control_socket {
            restart_only.push("gateway.control_socket");
        }
        if new.gateway.metrics_listen != old.metrics_listen {
            restart_only.push("gateway.metrics_listen");
        }
        if !restart_only.is_empty() {
            return Err(format!(
                "{}: nothing applied: {} changed, which takes a restart (systemctl restart vpngw)",
                self.file.display(),
                restart_only.join(", ")
            ));
        }
        let mut report = ReloadReport::default();
        if new.gateway.local_prefixes != self.gateway.local_prefixes {
            report.gateway.push(format!(
                "local_prefixes: {:?} -> {:?}",
                self.gateway.local_prefixes, new.gateway.local_prefixes
            ));
            if let Some(bgp) = &self.bgp {
                bgp.set_local_prefixes(new.gateway.local_prefixes.clone());
            }
        }
        if new.gateway.announce != self.gateway.announce {
            report.gateway.push(format!(
                "announce: {:?} -> {:?}",
                self.gateway.announce, new.gateway.announce
            ));
            if let Some(bgp) = &self.bgp {
                bgp.set_announce(new.gateway.announce.clone());
            }
        }
        self.gateway = new.gateway;

        let mut incoming: Vec<Connection> = Vec::new();
        let mut keep = std::collections::HashSet::new();
        for c in new.connections {
            match self
                .conns
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.cfg.name == c.name))
            {
                Some(slot)
                    if self
                        .conns
                        .get(slot)
                        .and_then(Option::as_ref)
                        .is_some_and(|s| s.cfg == c) =>
                {
                    report.unchanged.push(c.name.clone());
                    keep.insert(slot);
                }
                Some(_) => {
                    report.changed.push(c.name.clone());
                    incoming.push(c);
                }
                None => {
                    report.added.push(c.name.clone());
                    incoming.push(c);
                }
            }
        }
        for slot in 0..self.conns.len() {
            if keep.contains(&slot) {
                continue;
            }
            let name = match self.conns.get(slot).and_then(Option::as_ref) {
                Some(c) => c.cfg.name.clone(),
                None => continue,
            };
            if !report.changed.contains(&name) {
                report.removed.push(name);
            }
            self.remove_connection(slot).await;
        }
        let mut failed = Vec::new();
        for c in incoming {
            let name = c.name.clone();
            if let Err(e) = self.add_connection(c, None).await {
                warn!(connection = %name, "cannot start: {e}");
                failed.push(format!("{name}: {e}"));
            }
        }
        self.sync_statics();
        info!(
            added = ?report.added,
            removed = ?report.removed,
            changed = ?report.changed,
            unchanged = report.unchanged.len(),
            "configuration reloaded"
        );
        if failed.is_empty() {
            Ok(report)
        } else {
            Err(format!(
                "reloaded, but these connections could not start: {}",
                failed.join("; ")
            ))
        }
    }

    async fn shutdown(self) {
        info!("stopping: deleting SAs");
        if let Some(bgp) = &self.bgp {
            bgp.shutdown();
        }
        if let Some(bfd) = &self.bfd {
            bfd.shutdown();
        }
        for c in self.conns.iter().flatten() {
            if let Some(counters) = self
                .groups
                .get(c.group)
                .and_then(|g| g.datapath.counters(c.ike.0))
            {
                info!(connection = %c.cfg.name, counters = ?counters, "datapath counters");
            }
        }
        for g in &self.groups {
            let _ = g.stop.send(true);
        }
        for g in self.groups {
            match g.driver.await {
                Ok(Ok(counters)) => info!(local = %g.local, ?counters, "IKE stopped"),
                Ok(Err(e)) => warn!("IKE driver failed: {e}"),
                Err(e) => warn!("IKE driver task failed: {e}"),
            }
            let (unknown_spi, malformed, ike) = g.datapath.global_counters();
            info!(local = %g.local, unknown_spi, malformed, ike, "port 4500 counters");
            g.datapath.stop();
        }
        let routes = self.routes;
        let _ = tokio::task::spawn_blocking(move || routes.stop(false)).await;
    }
}

/// A successful reply carrying `value`.
pub(crate) fn ok(value: &impl serde::Serialize) -> Reply {
    match serde_json::to_value(value) {
        Ok(v) => Reply::Ok(v),
        Err(e) => Reply::Error(format!("internal: cannot encode the report: {e}")),
    }
}

fn log_event(event: &Event) {
    match event {
        Event::Established(algs) => {
            info!(algorithms = %report::ike_algorithms(algs), "IKE SA established")
        }
        Event::ChildInstalled(child) => info!(
            spi_in = %format_args!("{:08x}", child.spi_in),
            spi_out = %format_args!("{:08x}", child.spi_out),
            algorithms = %report::esp_algorithms(&child.algorithms),
            udp_encap = child.udp_encap,
            "child SA installed"
        ),
        Event::ChildDeleted { spi_in, spi_out } => info!(
            spi_in = %format_args!("{spi_in:08x}"),
            spi_out = %format_args!("{spi_out:08x}"),
            "child SA deleted"
        ),
        Event::ChildRekeyed {
            old_spi_in,
            old_spi_out,
            new,
            delay_outbound,
        } => info!(
            outbound_switch = if *delay_outbound { "at the peer's first packet" } else { "now" },
            old_spi_in = %format_args!("{old_spi_in:08x}"),
            old_spi_out = %format_args!("{old_spi_out:08x}"),
            spi_in = %format_args!("{:08x}", new.spi_in),
            spi_out = %format_args!("{:08x}", new.spi_out),
            algorithms = %report::esp_algorithms(&new.algorithms),
            "child SA rekeyed"
        ),
        Event::IkeRekeyed { spi_i, spi_r } => {
            info!(spi_i = ?spi_i, spi_r = ?spi_r, "IKE SA rekeyed")
        }
        Event::Closed(reason) => warn!("IKE SA closed: {reason}"),
    }
}
