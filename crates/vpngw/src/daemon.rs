//! The daemon: builds the drivers from the configuration and passes their
//! events between them.
//!
//! What runs:
//! - the IKE endpoint: every connection's IKE SA and child SA are
//!   negotiated, kept alive (DPD) and restarted;
//! - one TUN device per connection and the ESP datapath between them and
//!   UDP 4500: a child SA installed brings the TUN link up and starts
//!   carrying packets, its deletion takes the link down;
//! - the route programmer: static-mode connections' prefixes are routed
//!   through their tunnel while it is up and withdrawn the moment it goes
//!   down.
//!
//! - the BGP speaker: one eBGP session per `[connection.bgp]`, across the
//!   tunnel between the tunnel addresses. It starts when the tunnel comes
//!   up and is closed the moment the tunnel goes down (no waiting for the
//!   hold timer); best paths go to the route programmer with their ECMP set
//!   of tunnels, withdrawals at once.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use vpngw_routes::{Command as RouteCommand, Handle as RouteHandle, Notice, Tunnel, TunnelId};
use vpngw_tunnel::driver::datapath::{Datapath, SaCounters, TunnelSpec};
use vpngw_tunnel::driver::ike::{self as ike_driver, IkeCommand, IkeEvent, IkeSockets};
use vpngw_tunnel::driver::tun::{ifindex, Tun};
use vpngw_tunnel::esp::sa::{InboundSa, OutboundSa};
use vpngw_tunnel::ike::endpoint::Endpoint;
use vpngw_tunnel::ike::proposal::Esn;
use vpngw_tunnel::ike::sa::{ChildSa, Event, SaConfig, IKE_PORT, NATT_PORT};
use vpngw_tunnel::ike::wire::Identification;

use crate::config::{Config, Connection, Routing};
use vpngw_bgp::driver::{
    Driver as BgpDriver, DriverConfig as BgpDriverConfig, Handle as BgpHandle,
};
use vpngw_bgp::session::StopReason;
use vpngw_bgp::{Event as BgpEvent, PeerConfig, PeerId, Speaker, SpeakerConfig, Timers};

/// How long IKE waits for the first answer before retransmitting; doubles
/// with each of the retries.
const RETRANSMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const RETRANSMIT_TRIES: u32 = 5;

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
        retransmit_timeout: RETRANSMIT_TIMEOUT,
        retransmit_tries: RETRANSMIT_TRIES,
        // Our ESP runs in user space over UDP 4500 only.
        force_encap: true,
        ike_lifetime: c.ike_lifetime,
        child_lifetime: c.child_lifetime,
        child_lifetime_bytes: c.child_lifetime_bytes,
        child_lifetime_packets: c.child_lifetime_packets,
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config: Config) -> std::io::Result<()> {
    let now = Instant::now();
    let mut endpoint = Endpoint::new();
    let Some(local) = config.connections.first().map(|c| c.local_address) else {
        warn!("no connections configured; nothing to do");
        return Ok(());
    };
    for c in &config.connections {
        if c.local_address != local {
            return Err(std::io::Error::other(format!(
                "connection {}: all connections must share one local_address for now ({local})",
                c.name
            )));
        }
        endpoint.add_connection(
            &c.name,
            sa_config(c),
            SocketAddr::new(c.local_address, IKE_PORT),
            SocketAddr::new(c.remote_address, IKE_PORT),
            c.initiate,
            now,
        );
        info!(
            connection = %c.name,
            remote = %c.remote_address,
            role = if c.initiate { "initiator" } else { "responder" },
            "connection loaded"
        );
    }
    let names: Vec<String> = config.connections.iter().map(|c| c.name.clone()).collect();
    let mut tunnels = Vec::with_capacity(config.connections.len());
    for c in &config.connections {
        tunnels.push(TunnelSpec {
            tun: create_tun(c)?,
            mss_clamp: c.mss_clamp,
        });
    }
    let routes = start_routes(&config)?;
    let mut sockets = IkeSockets::bind(local).await?;
    let (natt, ike_to_driver) = sockets.attach_datapath()?;
    let datapath = Datapath::start(natt, ike_to_driver, tunnels)?;
    info!(%local, "IKE listening on UDP 500 and 4500; ESP datapath running");
    let (bgp, mut bgp_events, peer_of_conn) = start_bgp(&config)?;
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ike_commands, ike_commands_rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(ike_driver::run(
        endpoint,
        sockets,
        events_tx,
        stop_rx,
        ike_commands_rx,
    ));

    let mut state = State {
        names,
        datapath,
        routes,
        children: vec![None; config.connections.len()],
        replay_windows: config
            .connections
            .iter()
            .map(|c| u64::from(c.replay_window))
            .collect(),
        bgp,
        peer_of_conn,
        ike_commands,
        sa_counters: vec![None; config.connections.len()],
    };
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Ten times a second the child SAs' byte and packet counts go to IKE
    // (soft lifetimes at 90%, hard at 100%: the reports must come well
    // within that margin).
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tokio::select! {
            Some(event) = events_rx.recv() => state.on_ike_event(event),
            Some(event) = recv_bgp(&mut bgp_events) => state.on_bgp_event(event),
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = tick.tick() => state.report_bytes(),
        }
    }
    info!("stopping: deleting SAs");
    let _ = stop_tx.send(true);
    match driver.await {
        Ok(Ok(counters)) => info!(?counters, "IKE stopped"),
        Ok(Err(e)) => warn!("IKE driver failed: {e}"),
        Err(e) => warn!("IKE driver task failed: {e}"),
    }
    while let Ok(event) = events_rx.try_recv() {
        state.on_ike_event(event);
    }
    state.shutdown().await;
    Ok(())
}

async fn recv_bgp(rx: &mut Option<mpsc::UnboundedReceiver<BgpEvent>>) -> Option<BgpEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

type BgpParts = (
    Option<BgpHandle>,
    Option<mpsc::UnboundedReceiver<BgpEvent>>,
    Vec<Option<PeerId>>,
);

/// The BGP speaker for the connections with `[connection.bgp]`, running
/// on its own task; peers are indexed in connection order.
fn start_bgp(config: &Config) -> std::io::Result<BgpParts> {
    let mut peers = Vec::new();
    let mut peer_of_conn = Vec::with_capacity(config.connections.len());
    for c in &config.connections {
        let Routing::Bgp(b) = &c.routing else {
            peer_of_conn.push(None);
            continue;
        };
        peer_of_conn.push(Some(PeerId(peers.len())));
        let mut p = PeerConfig::new(c.name.clone(), b.peer_address, b.peer_asn);
        p.local_address = c.tunnel_address;
        p.passive = b.passive;
        p.timers = Some(Timers {
            keepalive: u16::try_from(b.keepalive.as_secs()).unwrap_or(u16::MAX),
            hold: u16::try_from(b.hold.as_secs()).unwrap_or(u16::MAX),
        });
        p.max_prefixes = b.max_prefixes;
        p.prepend = b.prepend;
        p.profile = b.profile.map(|profile| match profile {
            crate::config::Profile::Azure => vpngw_bgp::Profile::Azure,
            crate::config::Profile::Aws => vpngw_bgp::Profile::Aws,
        });
        peers.push(p);
    }
    if peers.is_empty() {
        return Ok((None, None, peer_of_conn));
    }
    let speaker_config = SpeakerConfig {
        local_as: config.gateway.asn,
        router_id: config.gateway.router_id,
        local_prefixes: config.gateway.local_prefixes.clone(),
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
    let (driver, handle, events) = BgpDriver::new(speaker, BgpDriverConfig::default());
    tokio::spawn(async move {
        if let Err(e) = driver.run().await {
            warn!("BGP driver stopped: {e}");
        }
    });
    Ok((Some(handle), Some(events), peer_of_conn))
}

/// The TUN device of a connection: MTU, point-to-point addresses, link
/// down until a child SA is installed.
fn create_tun(c: &Connection) -> std::io::Result<Tun> {
    let err = |what: &str, e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("connection {}: {what} {}: {e}", c.name, c.tun_name),
        )
    };
    let tun = Tun::create(&c.tun_name).map_err(|e| err("cannot create TUN device", e))?;
    tun.set_mtu(c.mtu)
        .map_err(|e| err("cannot set the MTU of", e))?;
    if let (Some(IpAddr::V4(a)), Some(IpAddr::V4(p))) = (c.tunnel_address, c.tunnel_peer) {
        tun.set_ptp_v4(a, p).map_err(|e| err("cannot address", e))?;
    }
    tun.set_up(false)
        .map_err(|e| err("cannot set link state of", e))?;
    Ok(tun)
}

/// The route programmer, with every tunnel known (down) and the static
/// routes set: they enter the kernel when their tunnel comes up.
fn start_routes(config: &Config) -> std::io::Result<RouteHandle> {
    let routes_config = vpngw_routes::Config {
        table: config.gateway.kernel_table,
        ..Default::default()
    };
    let routes = RouteHandle::spawn(routes_config, None, |notice| match notice {
        Notice::Event(e) => info!(event = ?e, "kernel routes"),
        Notice::Failed(failures) => {
            for f in failures {
                warn!("kernel refused a route operation: {f}");
            }
        }
        Notice::Error(e) => warn!("route programmer: {e}"),
    })
    .map_err(|e| std::io::Error::other(format!("cannot start the route programmer: {e}")))?;
    // A prefix several connections carry is one ECMP route through all of
    // their tunnels (active-active); the kernel uses those that are up.
    let mut statics: std::collections::BTreeMap<ipnet::IpNet, Vec<TunnelId>> =
        std::collections::BTreeMap::new();
    for c in &config.connections {
        let id = TunnelId(c.name.clone());
        let index = ifindex(&c.tun_name)?;
        let peer_v4 = match c.tunnel_peer {
            Some(IpAddr::V4(p)) => Some(p),
            Some(IpAddr::V6(_)) | None => None,
        };
        let tunnel = Tunnel {
            id: id.clone(),
            ifindex: index,
            peer_v4,
            peer_v6: None,
        };
        let _ = routes.send(RouteCommand::SetTunnel(tunnel, false));
        if let Routing::Static(prefixes) = &c.routing {
            for p in prefixes {
                statics.entry(*p).or_default().push(id.clone());
            }
        }
    }
    for (prefix, tunnels) in statics {
        let _ = routes.send(RouteCommand::SetRoute(prefix, tunnels));
    }
    Ok(routes)
}

/// What the daemon tracks between events.
struct State {
    /// Commands to the IKE endpoint.
    ike_commands: mpsc::UnboundedSender<IkeCommand>,
    /// Each connection's current child SA traffic.
    sa_counters: Vec<Option<Arc<SaCounters>>>,
    names: Vec<String>,
    datapath: Datapath,
    routes: RouteHandle,
    /// Each connection's installed child SA: (inbound SPI, outbound SPI).
    children: Vec<Option<(u32, u32)>>,
    /// Each connection's anti-replay window size.
    replay_windows: Vec<u64>,
    /// The BGP speaker, if any connection runs BGP.
    bgp: Option<BgpHandle>,
    /// Each connection's BGP peer.
    peer_of_conn: Vec<Option<PeerId>>,
}

impl State {
    fn on_ike_event(&mut self, e: IkeEvent) {
        log_event(&self.names, e.conn, &e.event);
        let conn = e.conn.0;
        match e.event {
            Event::ChildInstalled(child) => self.install(conn, &child, e.peer, None),
            Event::ChildDeleted { spi_in, spi_out } => {
                self.datapath.remove(conn, spi_in, spi_out);
                if self.children.get(conn).copied().flatten() == Some((spi_in, spi_out)) {
                    self.tunnel_state(conn, false);
                    if let Some(slot) = self.children.get_mut(conn) {
                        *slot = None;
                    }
                    if let Some(slot) = self.sa_counters.get_mut(conn) {
                        *slot = None;
                    }
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
            } => self.install(conn, &new, e.peer, Some(delay_outbound)),
            Event::Established(_) | Event::IkeRekeyed { .. } | Event::Closed(_) => {}
        }
    }

    /// Installs a child SA: the first of a tunnel (`rekey` None, which
    /// brings the tunnel up) or the successor of a rekey (`Some(staged)`).
    fn install(
        &mut self,
        conn: usize,
        child: &ChildSa,
        peer: Option<std::net::SocketAddr>,
        rekey: Option<bool>,
    ) {
        let name = self.names.get(conn).map_or("?", String::as_str);
        let Some(mut peer) = peer else {
            warn!(
                connection = name,
                "child SA without a peer address; not installed"
            );
            return;
        };
        if child.udp_encap {
            if peer.port() == IKE_PORT {
                peer.set_port(NATT_PORT);
            }
        } else {
            warn!(connection = name, "the peer negotiated ESP without UDP encapsulation, which this datapath cannot send");
        }
        let esn = child.algorithms.esn == Esn::On;
        let window = self.replay_windows.get(conn).copied().unwrap_or(1024);
        let inbound = InboundSa::with_replay_window(child.spi_in, esn, window, &child.keys_in);
        let outbound = OutboundSa::new(child.spi_out, esn, &child.keys_out);
        match (inbound, outbound) {
            (Ok(i), Ok(o)) => {
                let counters = Arc::new(SaCounters::default());
                if let Some(slot) = self.sa_counters.get_mut(conn) {
                    *slot = Some(Arc::clone(&counters));
                }
                match rekey {
                    Some(true) => self.datapath.install_staged(conn, i, o, peer, &counters),
                    Some(false) | None => self.datapath.install(conn, i, o, peer, &counters),
                }
                if let Some(slot) = self.children.get_mut(conn) {
                    *slot = Some((child.spi_in, child.spi_out));
                }
                if rekey.is_none() {
                    self.tunnel_state(conn, true);
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                warn!(connection = name, "cannot install the child SA: {e}")
            }
        }
    }

    /// Tells IKE how many bytes each current child SA has carried.
    fn report_bytes(&self) {
        for (i, c) in self.sa_counters.iter().enumerate() {
            if let Some(c) = c {
                let _ = self.ike_commands.send(IkeCommand::ChildBytes {
                    conn: vpngw_tunnel::ike::endpoint::ConnId(i),
                    bytes: c.bytes(),
                    packets: c.packets(),
                });
            }
        }
    }

    fn on_bgp_event(&mut self, event: BgpEvent) {
        let tunnel_of = |peer: PeerId| -> Option<TunnelId> {
            let conn = self.peer_of_conn.iter().position(|p| *p == Some(peer))?;
            self.names.get(conn).map(|n| TunnelId(n.clone()))
        };
        match event {
            BgpEvent::PeerUp {
                name,
                router_id,
                hold_time,
                ..
            } => {
                info!(peer = %name, %router_id, hold_time, "BGP session established")
            }
            BgpEvent::PeerDown {
                name,
                reason,
                was_established,
                ..
            } => {
                warn!(peer = %name, was_established, "BGP session down: {reason}")
            }
            BgpEvent::BestPath {
                prefix, next_hops, ..
            } => {
                let mut tunnels: Vec<TunnelId> = next_hops
                    .iter()
                    .filter_map(|nh| tunnel_of(nh.peer))
                    .collect();
                tunnels.dedup();
                info!(%prefix, tunnels = ?tunnels.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), "BGP best path");
                let _ = self.routes.send(RouteCommand::SetRoute(prefix, tunnels));
            }
            BgpEvent::Withdrawn { prefix } => {
                info!(%prefix, "BGP route withdrawn");
                let _ = self.routes.send(RouteCommand::Withdraw(prefix));
            }
            other @ (BgpEvent::Refused { .. } | BgpEvent::HeldBack { .. }) => {
                info!(event = ?other, "BGP policy")
            }
        }
    }

    /// The tunnel's link and routes follow its child SA.
    fn tunnel_state(&self, conn: usize, up: bool) {
        let name = self.names.get(conn).map_or("?", String::as_str);
        if let Some(tun) = self.datapath.tun(conn) {
            if let Err(e) = tun.set_up(up) {
                warn!(
                    connection = name,
                    "cannot set {} {}: {e}",
                    tun.name(),
                    if up { "up" } else { "down" }
                );
            }
        }
        let _ = self
            .routes
            .send(RouteCommand::SetTunnelUp(TunnelId(name.to_string()), up));
        // The BGP session across the tunnel follows it: closed at once when
        // the tunnel goes down, instead of waiting for the hold timer.
        if let (Some(bgp), Some(Some(peer))) = (&self.bgp, self.peer_of_conn.get(conn)) {
            if up {
                bgp.start_peer(*peer);
            } else {
                bgp.stop_peer(*peer, StopReason::TransportDown);
            }
        }
        info!(
            connection = name,
            up,
            "tunnel {}",
            if up { "up" } else { "down" }
        );
    }

    async fn shutdown(self) {
        if let Some(bgp) = &self.bgp {
            bgp.shutdown();
        }
        for (i, name) in self.names.iter().enumerate() {
            if let Some(c) = self.datapath.counters(i) {
                info!(connection = %name, counters = ?c, "datapath counters");
            }
        }
        let (unknown_spi, malformed, ike) = self.datapath.global_counters();
        info!(unknown_spi, malformed, ike, "port 4500 counters");
        let routes = self.routes;
        let _ = tokio::task::spawn_blocking(move || routes.stop(false)).await;
        self.datapath.stop();
    }
}

fn log_event(names: &[String], conn: vpngw_tunnel::ike::endpoint::ConnId, event: &Event) {
    let name = names.get(conn.0).map_or("?", String::as_str);
    match event {
        Event::Established(algs) => {
            info!(connection = name, algorithms = ?algs, "IKE SA established")
        }
        Event::ChildInstalled(child) => info!(
            connection = name,
            spi_in = %format_args!("{:08x}", child.spi_in),
            spi_out = %format_args!("{:08x}", child.spi_out),
            algorithms = ?child.algorithms,
            udp_encap = child.udp_encap,
            "child SA installed"
        ),
        Event::ChildDeleted { spi_in, spi_out } => info!(
            connection = name,
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
            connection = name,
            outbound_switch = if *delay_outbound { "at the peer's first packet" } else { "now" },
            old_spi_in = %format_args!("{old_spi_in:08x}"),
            old_spi_out = %format_args!("{old_spi_out:08x}"),
            spi_in = %format_args!("{:08x}", new.spi_in),
            spi_out = %format_args!("{:08x}", new.spi_out),
            algorithms = ?new.algorithms,
            "child SA rekeyed"
        ),
        Event::IkeRekeyed { spi_i, spi_r } => {
            info!(connection = name, spi_i = ?spi_i, spi_r = ?spi_r, "IKE SA rekeyed")
        }
        Event::Closed(reason) => warn!(connection = name, "IKE SA closed: {reason}"),
    }
}
