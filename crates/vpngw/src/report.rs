//! The reports behind `vpngw status`, `sas`, `bgp` and `routes`, gathered
//! from the daemon's own state, the IKE drivers, the BGP speaker and the
//! route programmer.
//!
//! [`Gather::new`] takes what the daemon knows synchronously and posts the
//! questions to the drivers; [`Gather::answer`] waits for their answers on
//! another task, so the daemon's loop never waits on a CLI.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use ipnet::IpNet;
use tokio::sync::oneshot;
use vpngw_bgp::driver::Handle as BgpHandle;
use vpngw_bgp::{PeerId, Speaker};
use vpngw_routes::{KernelState, NexthopObject, NhId, RouteTable, RouteTarget, TunnelId};
use vpngw_tunnel::driver::datapath::CounterSnapshot;
use vpngw_tunnel::driver::ike::{ConnStatus, IkeCommand};
use vpngw_tunnel::ike::endpoint::ConnId;
use vpngw_tunnel::ike::proposal::{DhGroup, Encr, EspAlgorithms, IkeAlgorithms, Integ, Prf};
use vpngw_tunnel::ike::sa::{Phase, Role};

use crate::config::{Gateway, Routing};
use crate::control::{
    BgpReport, BgpRoute, ChildSaStatus, ConnectionStatus, DatapathCounters, Explanation,
    IkeSaStatus, KernelRoute, Neighbor, RefusedRoute, Reply, Request, RoutesReport, SaStatus,
    SasReport, StatusReport, Step, UnmatchedCounters,
};
use crate::daemon::{ok, Daemon};

/// One connection as the daemon sees it.
#[derive(Debug, Clone)]
struct ConnView {
    name: String,
    local: IpAddr,
    remote: IpAddr,
    tun: String,
    ifindex: u32,
    up_secs: Option<u64>,
    out_of_service: Option<&'static str>,
    statics: Option<Vec<IpNet>>,
    peer: Option<PeerId>,
    group: usize,
    ike: ConnId,
    child: Option<(u32, u32)>,
    /// (packets in, bytes in, packets out, bytes out) of the child SA.
    child_traffic: Option<[u64; 4]>,
    datapath: CounterSnapshot,
}

/// Our routes in the kernel: prefix → interface indexes.
type Installed = BTreeMap<IpNet, Vec<u32>>;

/// What the BGP speaker says about one prefix.
#[derive(Debug, Default)]
struct PrefixView {
    /// Peers that sent it and we accepted, with the AS path.
    accepted: Vec<(PeerId, String)>,
    /// Peers that sent it and we refused, with why.
    refused: Vec<(PeerId, String)>,
    /// The peers of the best path and its ECMP set.
    best: Vec<PeerId>,
    /// Paths that lost, with the step that decided.
    lost: Vec<(PeerId, String)>,
}

/// A report in the making.
#[derive(Debug)]
pub(crate) struct Gather {
    gateway: Gateway,
    file: PathBuf,
    uptime_secs: u64,
    conns: Vec<ConnView>,
    statics: BTreeMap<IpNet, Vec<TunnelId>>,
    unmatched: UnmatchedCounters,
    ike: Vec<Option<oneshot::Receiver<Vec<ConnStatus>>>>,
    ike_counters: Vec<oneshot::Receiver<vpngw_tunnel::driver::ike::DriverCounters>>,
    routes: Option<oneshot::Receiver<Installed>>,
    route_counts: Option<oneshot::Receiver<RouteCounts>>,
    bgp: Option<BgpHandle>,
}

/// How many routes of ours the kernel has, in all and through each
/// interface (what `status` shows, without listing a full table).
#[derive(Debug, Default)]
struct RouteCounts {
    total: usize,
    by_ifindex: HashMap<u32, usize>,
}

impl Gather {
    /// Takes the daemon's state and asks the drivers what `request` needs.
    pub(crate) fn new(d: &Daemon, request: &Request) -> Gather {
        let now = Instant::now();
        let mut conns = Vec::new();
        for c in d.conns.iter().flatten() {
            let group = d.group_of(c);
            conns.push(ConnView {
                name: c.cfg.name.clone(),
                local: c.cfg.local_address,
                remote: c.cfg.remote_address,
                tun: c.cfg.tun_name.clone(),
                ifindex: c.ifindex,
                up_secs: c.up_since.map(|t| now.duration_since(t).as_secs()),
                out_of_service: c.out_of_service(),
                statics: match &c.cfg.routing {
                    Routing::Static(p) => Some(p.clone()),
                    Routing::Bgp(_) => None,
                },
                peer: c.peer,
                group: c.group,
                ike: c.ike,
                child: c.child,
                child_traffic: c.sa_counters.as_ref().map(|s| {
                    let r = |a: &std::sync::atomic::AtomicU64| {
                        a.load(std::sync::atomic::Ordering::Relaxed)
                    };
                    [
                        r(&s.inbound.packets),
                        r(&s.inbound.bytes),
                        r(&s.outbound.packets),
                        r(&s.outbound.bytes),
                    ]
                }),
                datapath: group
                    .and_then(|g| g.datapath.counters(c.ike.0))
                    .unwrap_or_default(),
            });
        }
        let mut unmatched = UnmatchedCounters::default();
        let mut ike = Vec::new();
        let mut ike_counters = Vec::new();
        for g in d.groups() {
            let (tx, rx) = oneshot::channel();
            if g.commands.send(IkeCommand::Counters(tx)).is_ok() {
                ike_counters.push(rx);
            }
            let (unknown_spi, malformed, _) = g.datapath.global_counters();
            unmatched.unknown_spi += unknown_spi;
            unmatched.malformed += malformed;
            let (tx, rx) = oneshot::channel();
            ike.push(g.commands.send(IkeCommand::Status(tx)).ok().map(|()| rx));
        }
        // The kernel table is walked only for the reports that show it.
        let mut routes = None;
        let mut route_counts = None;
        match request {
            Request::Routes { .. } => {
                let (tx, rx) = oneshot::channel();
                routes = d
                    .routes
                    .inspect(move |table| {
                        let _ = tx.send(installed(table));
                    })
                    .ok()
                    .map(|()| rx);
            }
            Request::Status => {
                let (tx, rx) = oneshot::channel();
                route_counts = d
                    .routes
                    .inspect(move |table| {
                        let _ = tx.send(route_counts_of(table));
                    })
                    .ok()
                    .map(|()| rx);
            }
            Request::Sas | Request::Bgp { .. } | Request::Reload | Request::Rekey { .. } => {}
        }
        Gather {
            gateway: d.gateway.clone(),
            file: d.file.clone(),
            uptime_secs: now.duration_since(d.started).as_secs(),
            conns,
            statics: d.statics.clone(),
            unmatched,
            ike,
            ike_counters,
            routes,
            route_counts,
            bgp: d.bgp.clone(),
        }
    }

    /// The reply to `request`.
    pub(crate) async fn answer(self, request: Request) -> Reply {
        match request {
            Request::Status => ok(&self.status().await),
            Request::Sas => ok(&self.sas().await),
            Request::Bgp { neighbor } => ok(&self.bgp(neighbor).await),
            Request::Routes { prefix } => ok(&self.routes(prefix).await),
            Request::Reload | Request::Rekey { .. } => {
                Reply::Error("internal: not a show request".into())
            }
        }
    }

    async fn installed(&mut self) -> Installed {
        match self.routes.take() {
            Some(rx) => rx.await.unwrap_or_default(),
            None => Installed::new(),
        }
    }

    async fn ike_status(&mut self) -> HashMap<(usize, ConnId), ConnStatus> {
        let mut out = HashMap::new();
        for (group, rx) in std::mem::take(&mut self.ike).into_iter().enumerate() {
            let Some(rx) = rx else { continue };
            for s in rx.await.unwrap_or_default() {
                out.insert((group, s.conn), s);
            }
        }
        out
    }

    async fn bgp_view(
        &self,
        prefix: Option<IpNet>,
        neighbor: Option<String>,
    ) -> Option<(BgpReport, PrefixView)> {
        let bgp = self.bgp.as_ref()?;
        bgp.inspect(move |s| bgp_view(s, prefix, neighbor.as_deref()))
            .await
    }

    fn name_of_ifindex(&self, ifindex: u32) -> String {
        self.conns
            .iter()
            .find(|c| c.ifindex == ifindex)
            .map_or_else(|| format!("ifindex {ifindex}"), |c| c.name.clone())
    }

    async fn status(mut self) -> StatusReport {
        let counts = match self.route_counts.take() {
            Some(rx) => rx.await.unwrap_or_default(),
            None => RouteCounts::default(),
        };
        let ike = self.ike_status().await;
        let bgp = self.bgp_view(None, None).await;
        let connections = self
            .conns
            .iter()
            .map(|c| {
                let neighbor = bgp
                    .as_ref()
                    .and_then(|(r, _)| r.neighbors.iter().find(|n| n.name == c.name));
                ConnectionStatus {
                    name: c.name.clone(),
                    local: c.local,
                    remote: c.remote,
                    tun: c.tun.clone(),
                    tunnel_up: c.up_secs.is_some(),
                    up_secs: c.up_secs,
                    out_of_service: c.out_of_service.map(str::to_string),
                    ike: ike
                        .get(&(c.group, c.ike))
                        .and_then(|s| s.sa.as_ref())
                        .map_or_else(|| "none".to_string(), |s| phase(s.phase).to_string()),
                    routing: if c.statics.is_some() { "static" } else { "bgp" }.into(),
                    bgp_state: neighbor.map(|n| n.state.clone()),
                    prefixes: match (&c.statics, neighbor) {
                        (Some(p), _) => p.len(),
                        (None, Some(n)) => n.accepted_count,
                        (None, None) => 0,
                    },
                    routes: counts.by_ifindex.get(&c.ifindex).copied().unwrap_or(0),
                }
            })
            .collect();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_secs: self.uptime_secs,
            config_file: self.file.display().to_string(),
            asn: self.gateway.asn,
            router_id: self.gateway.router_id,
            local_prefixes: self.gateway.local_prefixes.clone(),
            kernel_table: self.gateway.kernel_table,
            kernel_routes: counts.total,
            connections,
        }
    }

    async fn sas(mut self) -> SasReport {
        let ike = self.ike_status().await;
        let connections = self
            .conns
            .iter()
            .map(|c| {
                let status = ike.get(&(c.group, c.ike)).and_then(|s| s.sa.as_ref());
                SaStatus {
                    name: c.name.clone(),
                    ike: status.map(|s| IkeSaStatus {
                        role: match s.role {
                            Role::Initiator => "initiator",
                            Role::Responder => "responder",
                        }
                        .into(),
                        phase: phase(s.phase).into(),
                        spi_i: format!("{:016x}", u64::from_be_bytes(s.spi_i.0)),
                        spi_r: format!("{:016x}", u64::from_be_bytes(s.spi_r.0)),
                        algorithms: s.algorithms.as_ref().map(ike_algorithms),
                        established_secs: s.established_at.map(|t| t.elapsed().as_secs()),
                        nat: s.nat,
                        local: s.local.to_string(),
                        remote: s.remote.to_string(),
                    }),
                    child: c.child.map(|(spi_in, spi_out)| {
                        let algorithms = status
                            .and_then(|s| s.child.as_ref())
                            .filter(|(i, _, _)| *i == spi_in)
                            .map_or_else(String::new, |(_, _, a)| esp_algorithms(a));
                        let [packets_in, bytes_in, packets_out, bytes_out] =
                            c.child_traffic.unwrap_or_default();
                        let describe = |ts: &[vpngw_tunnel::ike::wire::TrafficSelector]| {
                            ts.iter().map(|t| t.describe()).collect::<Vec<_>>()
                        };
                        let (selectors_local, selectors_remote) = status
                            .filter(|s| s.child.as_ref().is_some_and(|(i, _, _)| *i == spi_in))
                            .and_then(|s| s.child_selectors.as_ref())
                            .map(|(l, r)| (describe(l), describe(r)))
                            .unwrap_or_default();
                        ChildSaStatus {
                            spi_in: format!("{spi_in:08x}"),
                            spi_out: format!("{spi_out:08x}"),
                            algorithms,
                            packets_in,
                            bytes_in,
                            packets_out,
                            bytes_out,
                            selectors_local,
                            selectors_remote,
                        }
                    }),
                    datapath: datapath(&c.datapath),
                }
            })
            .collect();
        let mut counters = crate::control::IkeCounters::default();
        for rx in std::mem::take(&mut self.ike_counters) {
            if let Ok(c) = rx.await {
                counters.accepted += c.endpoint.accepted;
                counters.unknown_peer += c.endpoint.unknown_peer;
                counters.unknown_spi += c.endpoint.unknown_spi;
                counters.malformed += c.endpoint.malformed + c.malformed;
                counters.cookie_challenges += c.endpoint.cookie_challenges;
                counters.send_errors += c.send_errors;
            }
        }
        SasReport {
            connections,
            unmatched: self.unmatched,
            ike: counters,
        }
    }

    async fn bgp(self, neighbor: Option<String>) -> BgpReport {
        match self.bgp_view(None, neighbor).await {
            Some((mut report, _)) => {
                report.local_prefixes = self.gateway.local_prefixes.clone();
                report
            }
            None => BgpReport {
                asn: self.gateway.asn,
                router_id: self.gateway.router_id,
                local_prefixes: self.gateway.local_prefixes.clone(),
                loc_rib: 0,
                neighbors: Vec::new(),
            },
        }
    }

    async fn routes(mut self, prefix: Option<IpNet>) -> RoutesReport {
        let installed = self.installed().await;
        let routes = installed
            .iter()
            .map(|(p, ifs)| KernelRoute {
                prefix: *p,
                tunnels: ifs.iter().map(|i| self.name_of_ifindex(*i)).collect(),
                source: if self.statics.contains_key(p) {
                    "static"
                } else {
                    "bgp"
                }
                .into(),
            })
            .collect();
        let explain = match prefix {
            Some(p) => Some(self.explain(p.trunc(), &installed).await),
            None => None,
        };
        RoutesReport {
            table: self.gateway.kernel_table,
            routes,
            explain,
        }
    }

    /// Why `prefix` is or is not in the kernel: for every connection that
    /// could carry it, tunnel → SA → BGP → policy, then the kernel.
    async fn explain(&mut self, prefix: IpNet, installed: &Installed) -> Explanation {
        let ike = self.ike_status().await;
        let bgp = self.bgp_view(Some(prefix), None).await;
        let mut steps = Vec::new();
        let step = |layer: &str, connection: Option<&str>, ok: bool, detail: String| Step {
            layer: layer.into(),
            connection: connection.map(str::to_string),
            ok,
            detail,
        };
        let in_kernel = installed.get(&prefix);
        if self.gateway.local_prefixes.contains(&prefix) {
            steps.push(step(
                "policy",
                None,
                false,
                format!("{prefix} is one of this gateway's own prefixes (gateway.local_prefixes): advertised to peers, never routed into a tunnel; a peer announcing it is refused"),
            ));
        }
        if self.gateway.announce.contains(&prefix) {
            steps.push(step(
                "policy",
                None,
                false,
                format!("{prefix} is announced by this gateway (gateway.announce): advertised to peers; a peer's route for it is accepted but our announcement is preferred, so it is not routed into a tunnel"),
            ));
        }
        let mut candidates = 0;
        for c in &self.conns {
            let name = Some(c.name.as_str());
            let carries_static = c.statics.as_ref().is_some_and(|p| p.contains(&prefix));
            let via_bgp = bgp.as_ref().and_then(|(report, view)| {
                let peer = c.peer?;
                let accepted = view.accepted.iter().find(|(p, _)| *p == peer);
                let refused = view.refused.iter().find(|(p, _)| *p == peer);
                (accepted.is_some() || refused.is_some())
                    .then_some((report, view, peer, accepted, refused))
            });
            if !carries_static && via_bgp.is_none() {
                continue;
            }
            candidates += 1;
            steps.push(step(
                "tunnel",
                name,
                c.up_secs.is_some(),
                match c.up_secs {
                    Some(s) => format!("{} up for {s} s", c.tun),
                    None => format!("{} down", c.tun),
                },
            ));
            let sa = ike.get(&(c.group, c.ike)).and_then(|s| s.sa.as_ref());
            steps.push(step(
                "sa",
                name,
                c.child.is_some(),
                match (c.child, sa) {
                    (Some((i, o)), _) => format!("child SA in {i:08x} out {o:08x}"),
                    (None, Some(s)) => format!("no child SA; IKE SA {}", phase(s.phase)),
                    (None, None) => format!("no IKE SA with {}", c.remote),
                },
            ));
            if carries_static {
                steps.push(step(
                    "static",
                    name,
                    true,
                    format!("{prefix} is in this connection's static_routes"),
                ));
            }
            if let Some((report, view, peer, accepted, refused)) = via_bgp {
                let state = report
                    .neighbors
                    .iter()
                    .find(|n| n.name == c.name)
                    .map_or_else(|| "unknown".to_string(), |n| n.state.clone());
                steps.push(step(
                    "bgp",
                    name,
                    accepted.is_some(),
                    format!("session {state}; peer announces {prefix}"),
                ));
                if let Some((_, why)) = refused {
                    steps.push(step("policy", name, false, format!("refused: {why}")));
                } else if let Some((_, path)) = accepted {
                    let (ok, detail) = if view.best.contains(&peer) {
                        (
                            true,
                            format!("accepted, AS path {path}; best path (or equal to it: ECMP)"),
                        )
                    } else {
                        let why = view
                            .lost
                            .iter()
                            .find(|(p, _)| *p == peer)
                            .map_or("not selected", |(_, w)| w.as_str());
                        (
                            false,
                            format!(
                                "accepted, AS path {path}; lost the best-path selection at: {why}"
                            ),
                        )
                    };
                    steps.push(step("policy", name, ok, detail));
                }
            }
        }
        let verdict = match in_kernel {
            Some(ifs) => {
                let names: Vec<String> = ifs.iter().map(|i| self.name_of_ifindex(*i)).collect();
                steps.push(step(
                    "kernel",
                    None,
                    true,
                    format!(
                        "{prefix} in table {} via {}",
                        self.gateway.kernel_table,
                        names.join(", ")
                    ),
                ));
                format!(
                    "{prefix} is installed through {}{}",
                    names.join(" and "),
                    if names.len() > 1 { " (ECMP)" } else { "" }
                )
            }
            None => {
                let covering = installed
                    .iter()
                    .filter(|(p, _)| p.contains(&prefix) && **p != prefix)
                    .max_by_key(|(p, _)| p.prefix_len());
                let covered = covering.map(|(p, ifs)| {
                    let names: Vec<String> = ifs.iter().map(|i| self.name_of_ifindex(*i)).collect();
                    format!("; traffic to it follows {p} via {}", names.join(", "))
                });
                steps.push(step(
                    "kernel",
                    None,
                    false,
                    format!("{prefix} is not in table {}", self.gateway.kernel_table),
                ));
                let first_failure = steps
                    .iter()
                    .find(|s| !s.ok && s.layer != "kernel")
                    .map(|s| match &s.connection {
                        Some(c) => format!("{c}: {} {}", s.layer, s.detail),
                        None => format!("{}: {}", s.layer, s.detail),
                    });
                match (candidates, first_failure) {
                    (_, Some(f))
                        if self.gateway.local_prefixes.contains(&prefix)
                            || self.gateway.announce.contains(&prefix) =>
                    {
                        f
                    }
                    (0, _) => format!(
                        "no connection carries {prefix}: it is in no static_routes and no BGP peer announces it{}",
                        covered.unwrap_or_default()
                    ),
                    (_, Some(f)) => format!("not installed: {f}{}", covered.unwrap_or_default()),
                    (_, None) => format!(
                        "not installed yet: the route programmer has not applied it{}",
                        covered.unwrap_or_default()
                    ),
                }
            }
        };
        Explanation {
            prefix,
            installed: in_kernel.is_some(),
            steps,
            verdict,
        }
    }
}

/// Our routes in the kernel, counted in all and per interface.
fn route_counts_of(table: &RouteTable) -> RouteCounts {
    let state: &KernelState = table.installed();
    // Interfaces per nexthop id, worked out once per id, not per route.
    let mut per_nexthop: HashMap<NhId, Vec<u32>> = HashMap::new();
    for (id, object) in state.nexthops() {
        let ifs = match object {
            NexthopObject::Single { path, .. } => vec![path.ifindex],
            NexthopObject::Group { members } => members
                .iter()
                .filter_map(|m| match state.nexthops().get(m) {
                    Some(NexthopObject::Single { path, .. }) => Some(path.ifindex),
                    Some(NexthopObject::Group { .. } | NexthopObject::Foreign) | None => None,
                })
                .collect(),
            NexthopObject::Foreign => Vec::new(),
        };
        per_nexthop.insert(*id, ifs);
    }
    let mut counts = RouteCounts {
        total: state.routes().len(),
        by_ifindex: HashMap::new(),
    };
    for (id, ifs) in &per_nexthop {
        for i in ifs {
            *counts.by_ifindex.entry(*i).or_default() += state.refs(*id);
        }
    }
    for (_, target) in state.routes().iter() {
        if let RouteTarget::Paths(paths) = target {
            let mut ifs: Vec<u32> = paths.iter().map(|p| p.ifindex).collect();
            ifs.sort_unstable();
            ifs.dedup();
            for i in ifs {
                *counts.by_ifindex.entry(i).or_default() += 1;
            }
        }
    }
    counts
}

/// Our routes as installed, each with its interfaces.
fn installed(table: &RouteTable) -> Installed {
    let state: &KernelState = table.installed();
    let ifindex_of = |id| match state.nexthops().get(&id) {
        Some(NexthopObject::Single { path, .. }) => vec![path.ifindex],
        Some(NexthopObject::Group { members }) => members
            .iter()
            .filter_map(|m| match state.nexthops().get(m) {
                Some(NexthopObject::Single { path, .. }) => Some(path.ifindex),
                Some(NexthopObject::Group { .. } | NexthopObject::Foreign) | None => None,
            })
            .collect(),
        Some(NexthopObject::Foreign) | None => Vec::new(),
    };
    state
        .routes()
        .iter()
        .map(|(prefix, target)| {
            let mut ifs = match target {
                RouteTarget::Nexthop(id) => ifindex_of(id),
                RouteTarget::Paths(paths) => paths.iter().map(|p| p.ifindex).collect(),
            };
            ifs.sort_unstable();
            ifs.dedup();
            (prefix, ifs)
        })
        .collect()
}

/// The BGP report; routes are listed for `neighbor` only (the others get
/// counts), and `prefix`'s paths are looked at for an explanation.
fn bgp_view(s: &Speaker, prefix: Option<IpNet>, neighbor: Option<&str>) -> (BgpReport, PrefixView) {
    let loc = s.loc_rib();
    let is_best = |prefix: &IpNet, peer: PeerId| {
        loc.get(prefix)
            .is_some_and(|e| e.ecmp().any(|r| r.peer == peer))
    };
    let mut view = PrefixView::default();
    let mut neighbors = Vec::new();
    for id in s.peer_ids() {
        let Some(p) = s.peer(id) else { continue };
        if let Some(prefix) = prefix {
            if let Some(attrs) = p.adj_rib_in.get(&prefix) {
                view.accepted.push((id, attrs.as_path_text()));
            }
            if let Some(r) = p.adj_rib_in.refused().get(&prefix) {
                view.refused.push((id, r.reason.to_string()));
            }
        }
        let listed = neighbor == Some(p.config.name.as_str());
        neighbors.push(Neighbor {
            name: p.config.name.clone(),
            address: p.config.address,
            asn: p.config.remote_as,
            state: p.state.to_string(),
            router_id: p.negotiated.map(|n| n.peer_router_id()),
            hold_time: p.negotiated.map(|n| n.hold_time),
            last_down: p.last_down.map(ToString::to_string),
            accepted_count: p.adj_rib_in.accepted().len(),
            refused_count: p.adj_rib_in.refused().len(),
            advertised_count: p.adj_rib_out.advertised().len(),
            accepted: p
                .adj_rib_in
                .accepted()
                .iter()
                .filter(|_| listed)
                .map(|(prefix, a)| BgpRoute {
                    prefix,
                    as_path: a.as_path_text(),
                    next_hop: Some(a.next_hop),
                    best: is_best(&prefix, id),
                })
                .collect(),
            refused: p
                .adj_rib_in
                .refused()
                .iter()
                .filter(|_| listed)
                .map(|(prefix, r)| RefusedRoute {
                    prefix,
                    as_path: r.attrs.as_ref().map(|a| a.as_path_text()),
                    reason: r.reason.to_string(),
                })
                .collect(),
            advertised: if listed {
                s.advertised_to(id)
            } else {
                Default::default()
            }
            .iter()
            .map(|(prefix, a)| BgpRoute {
                prefix,
                as_path: a.as_path_text(),
                next_hop: Some(a.next_hop),
                best: false,
            })
            .collect(),
        });
    }
    if let Some(d) = prefix.and_then(|p| s.decision(&p)) {
        view.best.extend(d.entry.ecmp().map(|r| r.peer));
        view.lost = d
            .lost
            .iter()
            .map(|(r, why)| (r.peer, why.to_string()))
            .collect();
    }
    (
        BgpReport {
            asn: s.local_as(),
            router_id: s.router_id(),
            local_prefixes: Vec::new(),
            loc_rib: loc.len(),
            neighbors,
        },
        view,
    )
}

fn datapath(c: &CounterSnapshot) -> DatapathCounters {
    DatapathCounters {
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        tx_packets: c.tx_packets,
        tx_bytes: c.tx_bytes,
        drop_replay: c.drop_replay,
        drop_auth: c.drop_auth,
        drop_malformed: c.drop_malformed,
        drop_no_sa: c.drop_no_sa,
        drop_tx_error: c.drop_tx_error,
        peer_unreachable: c.peer_unreachable,
    }
}

/// An IKE SA's phase, as operators read it.
pub(crate) fn phase(p: Phase) -> &'static str {
    match p {
        Phase::InitSent => "init-sent",
        Phase::AuthSent => "auth-sent",
        Phase::InitReplied => "init-replied",
        Phase::Established => "established",
        Phase::Closed => "closed",
    }
}

fn encr(e: Encr) -> String {
    match e {
        Encr::AesCbc { key_bits } => format!("aes{key_bits}"),
        Encr::AesGcm16 { key_bits } => format!("aes{key_bits}gcm16"),
    }
}

fn integ(i: Integ) -> &'static str {
    match i {
        Integ::HmacSha256_128 => "sha256",
        Integ::HmacSha384_192 => "sha384",
        Integ::HmacSha512_256 => "sha512",
    }
}

fn prf(p: Prf) -> &'static str {
    match p {
        Prf::HmacSha256 => "prfsha256",
        Prf::HmacSha384 => "prfsha384",
        Prf::HmacSha512 => "prfsha512",
    }
}

fn dh(g: DhGroup) -> &'static str {
    match g {
        DhGroup::Modp2048 => "modp2048",
        DhGroup::Ecp256 => "ecp256",
        DhGroup::Ecp384 => "ecp384",
        DhGroup::Curve25519 => "x25519",
    }
}

/// IKE algorithms in strongSwan notation (`aes256gcm16-prfsha256-x25519`).
pub(crate) fn ike_algorithms(a: &IkeAlgorithms) -> String {
    let mut parts = vec![encr(a.encr)];
    parts.extend(a.integ.map(|i| integ(i).to_string()));
    parts.push(prf(a.prf).into());
    parts.push(dh(a.dh).into());
    parts.join("-")
}

/// ESP algorithms in strongSwan notation (`aes256gcm16-esn`).
pub(crate) fn esp_algorithms(a: &EspAlgorithms) -> String {
    let mut parts = vec![encr(a.encr)];
    parts.extend(a.integ.map(|i| integ(i).to_string()));
    parts.extend(a.dh.map(|g| dh(g).to_string()));
    if a.esn == vpngw_tunnel::ike::proposal::Esn::On {
        parts.push("esn".into());
    }
    parts.join("-")
}
