//! The control socket: how `vpngw status`, `sas`, `bgp`, `routes` and
//! `reload` talk to the running daemon.
//!
//! A Unix stream socket (default [`crate::config::DEFAULT_CONTROL_SOCKET`])
//! that only root can open: the socket file is mode 0600 in a directory of
//! mode 0700. One request per connection: the client writes one JSON line
//! (a [`Request`]), the daemon answers one JSON line (a [`Reply`]) and
//! closes. The reports are plain data with stable field names; `--json`
//! prints them as they arrive and the tables are rendered from them
//! ([`crate::show`]), so what a script reads is exactly what a person sees.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The longest request the daemon reads.
pub const MAX_REQUEST: usize = 64 * 1024;

/// What the CLI asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Gateway and connection overview.
    Status,
    /// IKE and child SAs with their counters.
    Sas,
    /// BGP neighbors with their prefix counts; with a neighbor, its routes
    /// too (received, refused, advertised).
    Bgp {
        /// The neighbor whose routes to list.
        #[serde(default)]
        neighbor: Option<String>,
    },
    /// Kernel routes we own; with a prefix, why it is or is not installed.
    Routes {
        /// The prefix to explain.
        prefix: Option<IpNet>,
    },
    /// Re-read the configuration file and apply the difference.
    Reload,
    /// Rekey a connection's child SA (or its IKE SA) now.
    Rekey {
        /// The connection.
        connection: String,
        /// The IKE SA instead of the child SA.
        ike: bool,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The report asked for.
    Ok(serde_json::Value),
    /// Why the request could not be done.
    Error(String),
}

/// `vpngw status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// The daemon's version.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// The configuration file it runs.
    pub config_file: String,
    /// Our ASN.
    pub asn: u32,
    /// Our BGP router id.
    pub router_id: Ipv4Addr,
    /// The prefixes behind this gateway.
    pub local_prefixes: Vec<IpNet>,
    /// The kernel table routes go to.
    pub kernel_table: u32,
    /// Routes of ours in the kernel.
    pub kernel_routes: usize,
    /// Every connection.
    pub connections: Vec<ConnectionStatus>,
}

/// One connection in `vpngw status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionStatus {
    /// Its name.
    pub name: String,
    /// Our outer address.
    pub local: IpAddr,
    /// The peer's outer address.
    pub remote: IpAddr,
    /// The TUN device.
    pub tun: String,
    /// The tunnel carries traffic (a child SA is installed).
    pub tunnel_up: bool,
    /// Seconds since the tunnel came up.
    pub up_secs: Option<u64>,
    /// Why the tunnel, though up, carries no routes and no BGP session:
    /// `held down` (flap damping), `BFD down`, or `peer unreachable (ICMP),
    /// checking` (None: in service, or down).
    #[serde(default)]
    pub out_of_service: Option<String>,
    /// The IKE SA's phase (`none` when there is none).
    pub ike: String,
    /// `bgp` or `static`.
    pub routing: String,
    /// The BGP session's state, for BGP connections.
    pub bgp_state: Option<String>,
    /// Prefixes accepted from the BGP peer, or static prefixes.
    pub prefixes: usize,
    /// Kernel routes through this tunnel.
    pub routes: usize,
}

/// `vpngw sas`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SasReport {
    /// One entry per connection.
    pub connections: Vec<SaStatus>,
    /// Datagrams on port 4500 of no connection.
    pub unmatched: UnmatchedCounters,
    /// IKE messages by what became of them (all local addresses).
    #[serde(default)]
    pub ike: IkeCounters,
}

/// What the IKE endpoints did with the messages they got.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct IkeCounters {
    /// Processed by an SA.
    pub accepted: u64,
    /// IKE_SA_INIT from an address no connection names (dropped).
    pub unknown_peer: u64,
    /// For no SA we have (dropped).
    pub unknown_spi: u64,
    /// Not IKE at all.
    pub malformed: u64,
    /// IKE_SA_INIT answered with a COOKIE challenge (many half-open SAs:
    /// a flood, or a busy moment).
    pub cookie_challenges: u64,
    /// Send failures.
    pub send_errors: u64,
}

/// Port 4500 traffic that matched no connection.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct UnmatchedCounters {
    /// ESP for an SPI we do not have.
    pub unknown_spi: u64,
    /// Neither IKE, ESP nor keepalive.
    pub malformed: u64,
}

/// One connection's SAs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaStatus {
    /// The connection.
    pub name: String,
    /// Its IKE SA, if any.
    pub ike: Option<IkeSaStatus>,
    /// Its installed child SA, if any.
    pub child: Option<ChildSaStatus>,
    /// Datapath counters of the tunnel (all child SAs so far).
    pub datapath: DatapathCounters,
}

/// An IKE SA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IkeSaStatus {
    /// `initiator` or `responder`.
    pub role: String,
    /// `established`, `init-sent`, ...
    pub phase: String,
    /// Initiator's SPI, hex.
    pub spi_i: String,
    /// Responder's SPI, hex.
    pub spi_r: String,
    /// Algorithms in strongSwan notation.
    pub algorithms: Option<String>,
    /// Seconds since it was established.
    pub established_secs: Option<u64>,
    /// NAT detected: IKE and ESP in UDP 4500.
    pub nat: bool,
    /// Our address and port.
    pub local: String,
    /// The peer's address and port.
    pub remote: String,
}

/// A child SA pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildSaStatus {
    /// Inbound SPI, hex.
    pub spi_in: String,
    /// Outbound SPI, hex.
    pub spi_out: String,
    /// Algorithms in strongSwan notation.
    pub algorithms: String,
    /// Packets received on it.
    pub packets_in: u64,
    /// Their inner bytes.
    pub bytes_in: u64,
    /// Packets sent on it.
    pub packets_out: u64,
    /// Their inner bytes.
    pub bytes_out: u64,
    /// Our traffic selectors (`0.0.0.0/0`, `::/0` for a dual-stack
    /// route-based tunnel).
    #[serde(default)]
    pub selectors_local: Vec<String>,
    /// The peer's traffic selectors.
    #[serde(default)]
    pub selectors_remote: Vec<String>,
}

/// A tunnel's datapath counters, drops by reason.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct DatapathCounters {
    /// Packets decrypted into the TUN device.
    pub rx_packets: u64,
    /// Their inner bytes.
    pub rx_bytes: u64,
    /// Packets encrypted out of the TUN device.
    pub tx_packets: u64,
    /// Their inner bytes.
    pub tx_bytes: u64,
    /// Refused by the anti-replay window.
    pub drop_replay: u64,
    /// ICV did not verify.
    pub drop_auth: u64,
    /// Malformed ESP.
    pub drop_malformed: u64,
    /// No child SA to send with (tunnel down).
    pub drop_no_sa: u64,
    /// Send failures.
    pub drop_tx_error: u64,
    /// ICMP port unreachable from the peer about our ESP (verified by SPI
    /// and sequence number): its IKE daemon was gone.
    #[serde(default)]
    pub peer_unreachable: u64,
}

/// `vpngw bgp`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BgpReport {
    /// Our ASN.
    pub asn: u32,
    /// Our router id.
    pub router_id: Ipv4Addr,
    /// Our own prefixes (advertised to every peer).
    pub local_prefixes: Vec<IpNet>,
    /// Prefixes in the Loc-RIB.
    pub loc_rib: usize,
    /// The neighbors.
    pub neighbors: Vec<Neighbor>,
}

/// A BGP neighbor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Neighbor {
    /// Its name (the connection's).
    pub name: String,
    /// Its address.
    pub address: IpAddr,
    /// Its ASN.
    pub asn: u32,
    /// FSM state.
    pub state: String,
    /// Its router id, when established.
    pub router_id: Option<Ipv4Addr>,
    /// Negotiated hold time, when established.
    pub hold_time: Option<u16>,
    /// Why it last went down.
    pub last_down: Option<String>,
    /// How many routes it sent that we accepted.
    pub accepted_count: usize,
    /// How many routes it sent that we refused.
    pub refused_count: usize,
    /// How many routes we advertise to it.
    pub advertised_count: usize,
    /// Routes it sent that we accepted (only for the neighbor asked about:
    /// a full table is not listed for every neighbor on every request).
    #[serde(default)]
    pub accepted: Vec<BgpRoute>,
    /// Routes it sent that we refused, with the reason (neighbor asked
    /// about only).
    #[serde(default)]
    pub refused: Vec<RefusedRoute>,
    /// Routes we advertise to it (neighbor asked about only).
    #[serde(default)]
    pub advertised: Vec<BgpRoute>,
}

/// A route with its path.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BgpRoute {
    /// The prefix.
    pub prefix: IpNet,
    /// AS path, as text.
    pub as_path: String,
    /// Next hop.
    pub next_hop: Option<IpAddr>,
    /// It is (one of) the best path(s) in the Loc-RIB.
    pub best: bool,
}

/// A refused route.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefusedRoute {
    /// The prefix.
    pub prefix: IpNet,
    /// AS path, when it could be read.
    pub as_path: Option<String>,
    /// Why.
    pub reason: String,
}

/// `vpngw routes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoutesReport {
    /// The kernel table.
    pub table: u32,
    /// Our routes in the kernel.
    pub routes: Vec<KernelRoute>,
    /// For `vpngw routes PREFIX`: why it is or is not there.
    pub explain: Option<Explanation>,
}

/// A kernel route of ours.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelRoute {
    /// The prefix.
    pub prefix: IpNet,
    /// The tunnels (connections) it goes through; several: ECMP.
    pub tunnels: Vec<String>,
    /// Where it came from: `bgp` or `static`.
    pub source: String,
}

/// Why a prefix is, or is not, in the kernel: tunnel → SA → BGP → policy →
/// kernel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Explanation {
    /// The prefix asked about.
    pub prefix: IpNet,
    /// Installed in the kernel.
    pub installed: bool,
    /// The chain, in order.
    pub steps: Vec<Step>,
    /// One sentence.
    pub verdict: String,
}

/// One link of the chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// `tunnel`, `sa`, `bgp`, `policy`, `static` or `kernel`.
    pub layer: String,
    /// The connection it concerns, if one.
    pub connection: Option<String>,
    /// Whether this link holds.
    pub ok: bool,
    /// What we found.
    pub detail: String,
}

/// `vpngw reload`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Connections added.
    pub added: Vec<String>,
    /// Connections removed.
    pub removed: Vec<String>,
    /// Connections whose settings changed (restarted).
    pub changed: Vec<String>,
    /// Connections kept as they were, SAs and sessions included.
    pub unchanged: Vec<String>,
    /// Gateway-wide changes applied.
    pub gateway: Vec<String>,
}

/// Errors of the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not reach the daemon.
    #[error(
        "cannot reach the daemon at {path}: {source} (is `vpngw run` running, and are you root?)"
    )]
    Connect {
        /// The socket path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The conversation failed.
    #[error("control socket {path}: {message}")]
    Io {
        /// The socket path.
        path: String,
        /// What happened.
        message: String,
    },
    /// The daemon refused.
    #[error("{0}")]
    Refused(String),
}

/// Sends `request` to the daemon at `path` and returns its report.
pub fn request(path: &Path, request: &Request) -> Result<serde_json::Value, ClientError> {
    let shown = path.display().to_string();
    let io = |e: &dyn std::fmt::Display| ClientError::Io {
        path: shown.clone(),
        message: e.to_string(),
    };
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: shown.clone(),
            source,
        })?;
    // A reload restarts connections and may take a while; the rest is quick.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut line = serde_json::to_string(request).map_err(|e| io(&e))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(|e| io(&e))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| io(&e))?;
    if answer.is_empty() {
        return Err(io(&"the daemon closed the connection without answering"));
    }
    match serde_json::from_str::<Reply>(&answer).map_err(|e| io(&e))? {
        Reply::Ok(v) => Ok(v),
        Reply::Error(e) => Err(ClientError::Refused(e)),
    }
}

/// Binds the control socket at `path`: creates its directory (mode 0700)
/// if missing, replaces a stale socket file nobody answers on, and refuses
/// to start if another daemon answers there. The socket file is mode 0600.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let err = |what: &str, e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("control socket {}: {what}: {e}", path.display()),
        )
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| err("cannot create its directory", e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| err("cannot restrict its directory", e))?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "control socket {}: another vpngw answers there; stop it first or set gateway.control_socket",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path).map_err(|e| err("cannot remove the stale socket", e))?;
    }
    // Created 0600 from the start: no window in which others could connect.
    // SAFETY: umask(2) cannot fail; the previous mask is restored below.
    let old = unsafe { libc::umask(0o177) };
    let listener = tokio::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = listener.map_err(|e| err("cannot bind", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err("cannot set permissions", e))?;
    Ok(listener)
}

/// A request read from a client, with where its answer goes.
#[derive(Debug)]
pub struct Incoming {
    /// What the client asked.
    pub request: Request,
    /// Where the answer goes.
    pub reply: tokio::sync::oneshot::Sender<Reply>,
}

/// Accepts clients on `listener` forever, passing each request to `to_daemon`.
pub async fn serve(
    listener: tokio::net::UnixListener,
    to_daemon: tokio::sync::mpsc::UnboundedSender<Incoming>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let to_daemon = to_daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &to_daemon).await {
                tracing::debug!("control socket client: {e}");
            }
        });
    }
}

async fn answer(
    stream: tokio::net::UnixStream,
    to_daemon: &tokio::sync::mpsc::UnboundedSender<Incoming>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST as u64));
    let n = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::other("no request within 10 s"))??;
    let reply = if n == 0 {
        return Ok(());
    } else {
        match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                if to_daemon.send(Incoming { request, reply: tx }).is_err() {
                    Reply::Error("the daemon is stopping".into())
                } else {
                    rx.await
                        .unwrap_or_else(|_| Reply::Error("the daemon dropped the request".into()))
                }
            }
            Err(e) => Reply::Error(format!("not a request: {e}")),
        }
    };
    let mut out = serde_json::to_string(&reply).map_err(std::io::Error::other)?;
    out.push('\n');
    write.write_all(out.as_bytes()).await?;
    write.shutdown().await
}
