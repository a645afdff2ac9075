//! The configuration file: one TOML document, read strictly, then validated
//! into typed values.
//!
//! ```toml
//! [gateway]
//! asn = 65515
//! router_id = "192.0.2.1"
//! local_prefixes = ["10.1.0.0/16"]
//!
//! [[connection]]
//! name = "onprem-1"
//! local_address = "192.0.2.1"
//! remote_address = "198.51.100.1"
//! psk_file = "/etc/vpngw/onprem-1.psk"
//! tunnel_address = "169.254.21.1"
//! tunnel_peer = "169.254.21.2"
//!
//! [connection.bgp]
//! peer_asn = 65010
//! ```
//!
//! Every error names the file, the key (as a path such as
//! `connection[onprem-1].bgp.peer_asn`) and what was expected. Unknown keys
//! are errors, not silently ignored. Pre-shared keys are never inline: they
//! come from a file only root can read, or from an environment variable,
//! and are zeroized when dropped.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use vpngw_tunnel::ike::proposal::{self, EspProposal, IkeProposal};
use zeroize::Zeroizing;

/// A configuration error: where, and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The config file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The config file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser says (names the key and the expected type).
        message: String,
    },
    /// A well-formed value that is not acceptable.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// The key, as a path.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// ASNs no BGP peer may use: 0, AS_TRANS, and the last 16- and 32-bit ASNs.
pub const RESERVED_ASNS: [u32; 4] = [0, 23456, 65535, 4_294_967_295];

/// ASNs Azure VPN Gateway reserves (in addition to IANA's reserved ranges).
pub const AZURE_RESERVED_ASNS: [u32; 8] = [8074, 8075, 12076, 65515, 65517, 65518, 65519, 65520];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gateway: RawGateway,
    #[serde(default)]
    connection: Vec<RawConnection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    asn: Option<u32>,
    router_id: Option<Ipv4Addr>,
    #[serde(default)]
    local_prefixes: Vec<IpNet>,
    #[serde(default)]
    announce: Vec<IpNet>,
    kernel_table: Option<u32>,
    ecmp: Option<bool>,
    per_route_notifications: Option<bool>,
    control_socket: Option<PathBuf>,
    metrics_listen: Option<std::net::SocketAddr>,
    tx_queues: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    name: String,
    local_address: IpAddr,
    remote_address: IpAddr,
    local_id: Option<String>,
    remote_id: Option<String>,
    psk: Option<toml::Value>,
    psk_file: Option<PathBuf>,
    psk_env: Option<String>,
    initiate: Option<bool>,
    ike_proposals: Option<Vec<String>>,
    esp_proposals: Option<Vec<String>>,
    ike_lifetime: Option<u64>,
    child_lifetime: Option<u64>,
    child_lifetime_bytes: Option<u64>,
    child_lifetime_packets: Option<u64>,
    dpd_interval: Option<DurationValue>,
    dpd_timeout: Option<DurationValue>,
    hold_down: Option<DurationValue>,
    icmp_failover: Option<bool>,
    tun_name: Option<String>,
    mtu: Option<u16>,
    mss_clamp: Option<u16>,
    replay_window: Option<u16>,
    tunnel_address: Option<IpAddr>,
    tunnel_peer: Option<IpAddr>,
    tunnel_address6: Option<std::net::Ipv6Addr>,
    bgp: Option<RawBgp>,
    bfd: Option<RawBfd>,
    static_routes: Option<Vec<IpNet>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBfd {
    interval: Option<DurationValue>,
    multiplier: Option<u8>,
}

/// A duration in the file: whole seconds (`10`) or a string with a unit
/// (`"300ms"`, `"1.5s"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(u64),
    Text(String),
}

impl DurationValue {
    fn parse(&self) -> Result<Duration, String> {
        match self {
            DurationValue::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationValue::Text(t) => {
                let t = t.trim();
                let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
                    (n, 0.001)
                } else if let Some(n) = t.strip_suffix('s') {
                    (n, 1.0)
                } else {
                    return Err(format!(
                        "`{t}`: expected seconds (10) or a duration such as \"300ms\" or \"1.5s\""
                    ));
                };
                let v: f64 = number.trim().parse().map_err(|_| {
                    format!(
                        "`{t}`: expected seconds (10) or a duration such as \"300ms\" or \"1.5s\""
                    )
                })?;
                if !(0.0..=86_400.0).contains(&v) {
                    return Err(format!("`{t}`: out of range"));
                }
                Ok(Duration::from_secs_f64(v * scale))
            }
        }
    }
}

fn duration(
    cx: &Ctx<'_>,
    key: &str,
    value: Option<&DurationValue>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let d = match value {
        Some(v) => v.parse().map_err(|m| cx.invalid(key, m))?,
        None => default,
    };
    if d < min || d > max {
        return Err(cx.invalid(key, format!("expected {min:?} to {max:?}, got {d:?}")));
    }
    Ok(d)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBgp {
    peer_asn: u32,
    peer_address: Option<IpAddr>,
    profile: Option<String>,
    passive: Option<bool>,
    max_prefixes: Option<u32>,
    prepend: Option<u8>,
    keepalive: Option<u16>,
    hold: Option<u16>,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Gateway-wide settings.
    pub gateway: Gateway,
    /// The connections, in file order.
    pub connections: Vec<Connection>,
}

/// Gateway-wide settings.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Our ASN (default 65515, as Azure's gateways use).
    pub asn: u32,
    /// BGP router id (default: the first connection's local address).
    pub router_id: Ipv4Addr,
    /// The prefixes behind this gateway ("VNet" prefixes), advertised to
    /// every peer; a received route identical to one of them is refused.
    pub local_prefixes: Vec<IpNet>,
    /// Prefixes announced to every peer that are not this gateway's own (a
    /// default route, a summary): a peer's identical route is accepted,
    /// though our announcement wins the best-path selection.
    pub announce: Vec<IpNet>,
    /// Kernel routing table for learned routes (default 254, main).
    pub kernel_table: u32,
    /// Install equal paths over several tunnels as ECMP (default on).
    pub ecmp: bool,
    /// Keep the kernel announcing every route again when a nexthop group
    /// changes (default off: vpngw sets `net.ipv4.nexthop_compat_mode` to 0
    /// while it runs, so a tunnel failure moves 100k routes in one
    /// operation instead of 120 ms of notifications; the old value comes
    /// back at a clean stop). Turn on if other software on the gateway
    /// follows routes one by one.
    pub per_route_notifications: bool,
    /// The control socket the CLI talks to.
    pub control_socket: PathBuf,
    /// Where the Prometheus metrics endpoint listens (off by default).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Queues of each TUN device, each read, encrypted and sent by its own
    /// thread (multi-queue TUN; the kernel keeps each flow on one queue).
    /// Default 1: one thread per tunnel. More only helps traffic of
    /// several flows on a machine with cores to spare (`docs/bench.md`).
    pub tx_queues: usize,
}

/// Where the pre-shared key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PskSource {
    /// A file readable only by its owner.
    File(PathBuf),
    /// An environment variable of the daemon.
    Env(String),
}

/// A pre-shared key, zeroized on drop, never printed.
pub struct Psk(Zeroizing<Vec<u8>>);

impl Psk {
    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Compared in constant time (a reload compares old and new keys).
impl PartialEq for Psk {
    fn eq(&self, other: &Psk) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(other.0.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Eq for Psk {}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Psk(<{} bytes, redacted>)", self.0.len())
    }
}

/// The cloud whose BGP rules a peer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Azure VPN Gateway: 60/180 s, at most 4000 prefixes, APIPA range.
    Azure,
    /// AWS site-to-site VPN: 10/30 s, at most 100 prefixes.
    Aws,
}

/// The BGP session across a connection's tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bgp {
    /// The peer's ASN.
    pub peer_asn: u32,
    /// The peer's BGP address (default: the tunnel peer address).
    pub peer_address: IpAddr,
    /// The cloud profile, if any.
    pub profile: Option<Profile>,
    /// Wait for the peer to connect.
    pub passive: bool,
    /// Prefixes accepted from the peer before the session is closed.
    pub max_prefixes: u32,
    /// Extra copies of our ASN prepended on export.
    pub prepend: u8,
    /// Keepalive interval.
    pub keepalive: Duration,
    /// Hold time.
    pub hold: Duration,
}

/// BFD across the tunnel (RFC 5880/5881, between the tunnel addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bfd {
    /// How often we send and can receive once up.
    pub interval: Duration,
    /// Missed intervals before the peer is declared down.
    pub multiplier: u8,
}

/// What a connection routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// eBGP across the tunnel.
    Bgp(Bgp),
    /// Fixed prefixes, installed while the tunnel is up.
    Static(Vec<IpNet>),
}

/// One site-to-site connection. Two are equal when every setting, the
/// key included, is: a reload keeps an equal connection's SAs.
#[derive(Debug, PartialEq, Eq)]
pub struct Connection {
    /// Unique name.
    pub name: String,
    /// Our outer address.
    pub local_address: IpAddr,
    /// The peer's outer address.
    pub remote_address: IpAddr,
    /// Our IKE identity (default: our outer address).
    pub local_id: String,
    /// The identity the peer must present (default: its outer address).
    pub remote_id: String,
    /// Where the PSK comes from.
    pub psk_source: PskSource,
    /// The PSK (read at load time).
    pub psk: Psk,
    /// Initiate IKE (true) or only respond.
    pub initiate: bool,
    /// IKE proposals in preference order.
    pub ike_proposals: Vec<IkeProposal>,
    /// ESP proposals in preference order.
    pub esp_proposals: Vec<EspProposal>,
    /// IKE SA lifetime (rekeyed before it ends).
    pub ike_lifetime: Duration,
    /// Child SA lifetime.
    pub child_lifetime: Duration,
    /// Child SA lifetime in bytes.
    pub child_lifetime_bytes: u64,
    /// Child SA lifetime in packets (0: none).
    pub child_lifetime_packets: u64,
    /// DPD: probe after this much silence.
    pub dpd_interval: Duration,
    /// DPD: declare the peer dead after this much silence.
    pub dpd_timeout: Duration,
    /// After the tunnel went down, it rejoins (routes, BGP) only once it
    /// has stayed up this long (flap damping; 0: at once).
    pub hold_down: Duration,
    /// An ICMP port unreachable from the peer answering our ESP (its IKE
    /// daemon is gone: nothing listens on its port 4500) takes the tunnel
    /// out of its routes and BGP session at once, and IKE checks the peer
    /// straight away; the tunnel rejoins at the peer's next sign of life.
    pub icmp_failover: bool,
    /// TUN device name.
    pub tun_name: String,
    /// TUN MTU.
    pub mtu: u16,
    /// Clamp the MSS of TCP SYNs through the tunnel to this (0: off;
    /// default: the MTU minus 40, the IPv4 and TCP headers).
    pub mss_clamp: u16,
    /// ESP anti-replay window in packets (default 1024).
    pub replay_window: u16,
    /// Our address on the tunnel interface (a /32 or /128).
    pub tunnel_address: Option<IpAddr>,
    /// The peer's address on the tunnel.
    pub tunnel_peer: Option<IpAddr>,
    /// Our IPv6 address on the tunnel interface (/128), for a dual-stack
    /// tunnel with an IPv4 BGP session: the next hop of the IPv6 prefixes
    /// we advertise (RFC 2545; MP-BGP over the IPv4 session). IPv6 routes
    /// go into the kernel through the tunnel device either way.
    pub tunnel_address6: Option<std::net::Ipv6Addr>,
    /// BGP or static routes.
    pub routing: Routing,
    /// BFD across the tunnel: when it says the peer is gone, the tunnel's
    /// routes and BGP session leave at once.
    pub bfd: Option<Bfd>,
}

/// The default control socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/vpngw/vpngw.sock";

struct Ctx<'a> {
    file: &'a Path,
}

impl Ctx<'_> {
    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Reads and validates `file`, reading the PSKs it points to.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse(file, &text, &|name| std::env::var(name).ok())
}

/// Parses and validates `text` as the contents of `file`; `env` looks up
/// environment variables (for `psk_env`).
pub fn parse(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |span| line_col(text, span.start));
        let mut message = e.message().trim_end().to_string();
        if let Some(key) = text
            .lines()
            .nth(line.saturating_sub(1))
            .and_then(key_of_line)
        {
            message = format!("`{key}`: {message}");
        }
        ConfigError::Syntax {
            file: file.to_path_buf(),
            line,
            column,
            message,
        }
    })?;
    let cx = Ctx { file };
    let mut connections = Vec::with_capacity(raw.connection.len());
    let mut names = HashSet::new();
    let mut tuns = HashSet::new();
    for (index, rc) in raw.connection.into_iter().enumerate() {
        let conn = connection(&cx, index, rc, env)?;
        let key = format!("connection[{}]", conn.name);
        if !names.insert(conn.name.clone()) {
            return Err(cx.invalid(format!("{key}.name"), "connection names must be unique"));
        }
        if !tuns.insert(conn.tun_name.clone()) {
            return Err(cx.invalid(
                format!("{key}.tun_name"),
                format!(
                    "TUN device `{}` is used by another connection",
                    conn.tun_name
                ),
            ));
        }
        connections.push(conn);
    }
    let gateway = gateway(&cx, raw.gateway, &connections)?;
    Ok(Config {
        gateway,
        connections,
    })
}

/// The key of a `key = value` line, to name it in a syntax error (the value
/// is never echoed: it may be a secret).
fn key_of_line(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('[') && !key.starts_with('#')).then_some(key)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn gateway(cx: &Ctx<'_>, g: RawGateway, conns: &[Connection]) -> Result<Gateway, ConfigError> {
    let asn = g.asn.unwrap_or(65515);
    if RESERVED_ASNS.contains(&asn) {
        return Err(cx.invalid(
            "gateway.asn",
            format!("{asn} is reserved; use a private ASN such as 65515"),
        ));
    }
    let router_id = match g.router_id {
        Some(id) => id,
        // The first IPv4 outer address, else (an IPv6 underlay) the
        // first IPv4 tunnel address.
        None => conns
            .iter()
            .find_map(|c| match c.local_address {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .or_else(|| {
                conns.iter().find_map(|c| match c.tunnel_address {
                    Some(IpAddr::V4(v4)) => Some(v4),
                    Some(IpAddr::V6(_)) | None => None,
                })
            })
            .ok_or_else(|| {
                cx.invalid(
                    "gateway.router_id",
                    "required when no connection has an IPv4 local_address or tunnel_address",
                )
            })?,
    };
    for (list, prefixes) in [
        ("local_prefixes", &g.local_prefixes),
        ("announce", &g.announce),
    ] {
        for (i, p) in prefixes.iter().enumerate() {
            if p.trunc() != *p {
                return Err(cx.invalid(
                    format!("gateway.{list}[{i}]"),
                    format!("{p} has host bits set; expected {}", p.trunc()),
                ));
            }
        }
    }
    let tx_queues = g.tx_queues.unwrap_or(1);
    if !(1..=MAX_TX_QUEUES).contains(&tx_queues) {
        return Err(cx.invalid(
            "gateway.tx_queues",
            format!("expected 1 to {MAX_TX_QUEUES} queues per TUN device"),
        ));
    }
    let kernel_table = g.kernel_table.unwrap_or(254);
    if kernel_table == 0 || kernel_table == 255 {
        return Err(cx.invalid(
            "gateway.kernel_table",
            "expected a table id other than 0 and 255 (local)",
        ));
    }
    Ok(Gateway {
        asn,
        router_id,
        local_prefixes: g.local_prefixes,
        announce: g.announce,
        kernel_table,
        ecmp: g.ecmp.unwrap_or(true),
        per_route_notifications: g.per_route_notifications.unwrap_or(false),
        control_socket: g
            .control_socket
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
        metrics_listen: g.metrics_listen,
        tx_queues: usize::from(tx_queues),
    })
}

/// The most TUN queues (threads) per tunnel `gateway.tx_queues` allows.
const MAX_TX_QUEUES: u16 = 16;

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn connection(
    cx: &Ctx<'_>,
    index: usize,
    rc: RawConnection,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Connection, ConfigError> {
    if rc.name.is_empty()
        || !rc
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(cx.invalid(
            format!("connection[{index}].name"),
            "expected a non-empty name of letters, digits, '-' and '_'",
        ));
    }
    let key = format!("connection[{}]", rc.name);
    let k = |field: &str| format!("{key}.{field}");

    if rc.local_address.is_ipv4() != rc.remote_address.is_ipv4() {
        return Err(cx.invalid(
            k("remote_address"),
            "must be of the same family as local_address",
        ));
    }

    let (psk_source, psk) = match (rc.psk, rc.psk_file, rc.psk_env) {
        (Some(_), _, _) => {
            return Err(cx.invalid(
                k("psk"),
                "inline pre-shared keys are refused; use psk_file (a file only root can read) or psk_env",
            ))
        }
        (None, Some(path), None) => {
            let psk = read_psk_file(&path).map_err(|m| cx.invalid(k("psk_file"), m))?;
            (PskSource::File(path), psk)
        }
        (None, None, Some(var)) => {
            let value = env(&var)
                .ok_or_else(|| cx.invalid(k("psk_env"), format!("environment variable {var} is not set")))?;
            let psk = psk_from_text(value.into_bytes()).map_err(|m| cx.invalid(k("psk_env"), m))?;
            (PskSource::Env(var), psk)
        }
        (None, Some(_), Some(_)) => {
            return Err(cx.invalid(k("psk_file"), "give either psk_file or psk_env, not both"))
        }
        (None, None, None) => {
            return Err(cx.invalid(k("psk_file"), "a pre-shared key is required: psk_file or psk_env"))
        }
    };

    let ike_proposals = proposals(
        cx,
        &k("ike_proposals"),
        rc.ike_proposals,
        "aes256gcm16-prfsha256-x25519",
        proposal::parse_ike,
    )?;
    let esp_proposals = proposals(
        cx,
        &k("esp_proposals"),
        rc.esp_proposals,
        "aes256gcm16",
        proposal::parse_esp,
    )?;

    let ike_lifetime = secs(
        cx,
        &k("ike_lifetime"),
        rc.ike_lifetime.unwrap_or(28_800),
        10,
        86_400,
    )?;
    let child_lifetime = secs(
        cx,
        &k("child_lifetime"),
        rc.child_lifetime.unwrap_or(27_000),
        10,
        86_400,
    )?;
    let child_lifetime_bytes = rc.child_lifetime_bytes.unwrap_or(102_400_000 * 1024);
    if child_lifetime_bytes < 1024 * 1024 {
        return Err(cx.invalid(
            k("child_lifetime_bytes"),
            "expected at least 1048576 (1 MiB)",
        ));
    }
    if rc
        .child_lifetime_packets
        .is_some_and(|n| n != 0 && n < 1000)
    {
        return Err(cx.invalid(
            k("child_lifetime_packets"),
            "expected 0 (no packet limit) or at least 1000",
        ));
    }
    // Inbound ESP counts as proof of life: DPD probes only a quiet tunnel,
    // so short timers cost nothing on a busy one.
    let dpd_interval = duration(
        cx,
        &k("dpd_interval"),
        rc.dpd_interval.as_ref(),
        Duration::from_secs(10),
        Duration::from_millis(100),
        Duration::from_secs(3600),
    )?;
    let dpd_timeout = duration(
        cx,
        &k("dpd_timeout"),
        rc.dpd_timeout.as_ref(),
        Duration::from_secs(45),
        Duration::from_millis(300),
        Duration::from_secs(3600),
    )?;
    let hold_down = duration(
        cx,
        &k("hold_down"),
        rc.hold_down.as_ref(),
        Duration::ZERO,
        Duration::ZERO,
        Duration::from_secs(3600),
    )?;
    if dpd_timeout <= dpd_interval {
        return Err(cx.invalid(k("dpd_timeout"), "expected more than dpd_interval"));
    }

    let tun_name = rc.tun_name.unwrap_or_else(|| {
        let mut n = format!("vti-{}", rc.name);
        n.truncate(15);
        n
    });
    if !valid_ifname(&tun_name) {
        return Err(cx.invalid(
            k("tun_name"),
            "expected 1-15 characters of letters, digits, '-', '_' or '.'",
        ));
    }
    let mtu = rc.mtu.unwrap_or(1400);
    if !(576..=9000).contains(&mtu) {
        return Err(cx.invalid(k("mtu"), "expected 576..=9000 (default 1400)"));
    }
    let mss_clamp = rc.mss_clamp.unwrap_or(mtu - 40);
    if mss_clamp != 0 && !(536..=mtu - 40).contains(&mss_clamp) {
        return Err(cx.invalid(
            k("mss_clamp"),
            format!("expected 0 (off) or 536..={} (the MTU minus 40)", mtu - 40),
        ));
    }
    let replay_window = rc.replay_window.unwrap_or(1024);
    if !(32..=1024).contains(&replay_window) {
        return Err(cx.invalid(
            k("replay_window"),
            "expected 32..=1024 packets (default 1024)",
        ));
    }
    if rc.tunnel_address.is_some() != rc.tunnel_peer.is_some() {
        return Err(cx.invalid(
            k("tunnel_peer"),
            "tunnel_address and tunnel_peer go together",
        ));
    }
    if let (Some(a), Some(p)) = (rc.tunnel_address, rc.tunnel_peer) {
        if a.is_ipv4() != p.is_ipv4() {
            return Err(cx.invalid(
                k("tunnel_peer"),
                format!("{p} and tunnel_address {a} are of different families; expected both IPv4 or both IPv6"),
            ));
        }
    }

    let tunnel_address6 = rc.tunnel_address6;
    if let Some(a) = tunnel_address6 {
        if a.is_unspecified()
            || a.is_loopback()
            || a.is_multicast()
            || (a.segments()[0] & 0xffc0) == 0xfe80
        {
            return Err(cx.invalid(
                k("tunnel_address6"),
                format!("{a} cannot be a tunnel address; expected a global or unique-local IPv6 address"),
            ));
        }
    }

    let routing = match (rc.bgp, rc.static_routes) {
        (Some(_), Some(_)) => {
            return Err(cx.invalid(
                k("static_routes"),
                "a connection has either [bgp] or static_routes, not both",
            ))
        }
        (None, Some(routes)) => {
            for (i, p) in routes.iter().enumerate() {
                if p.trunc() != *p {
                    return Err(cx.invalid(
                        format!("{key}.static_routes[{i}]"),
                        format!("{p} has host bits set; expected {}", p.trunc()),
                    ));
                }
            }
            Routing::Static(routes)
        }
        (Some(b), None) => Routing::Bgp(bgp(cx, &key, b, rc.tunnel_peer)?),
        (None, None) => {
            return Err(cx.invalid(
                k("bgp"),
                "expected a [connection.bgp] table or static_routes",
            ))
        }
    };

    let bfd = match rc.bfd {
        None => None,
        Some(b) => {
            if rc.tunnel_address.is_none() {
                return Err(cx.invalid(
                    k("bfd"),
                    "BFD runs between tunnel_address and tunnel_peer: set both",
                ));
            }
            let interval = duration(
                cx,
                &k("bfd.interval"),
                b.interval.as_ref(),
                Duration::from_millis(300),
                Duration::from_millis(10),
                Duration::from_secs(10),
            )?;
            let multiplier = b.multiplier.unwrap_or(3);
            if multiplier == 0 {
                return Err(cx.invalid(k("bfd.multiplier"), "expected 1..=255 (default 3)"));
            }
            Some(Bfd {
                interval,
                multiplier,
            })
        }
    };

    Ok(Connection {
        local_id: rc.local_id.unwrap_or_else(|| rc.local_address.to_string()),
        remote_id: rc
            .remote_id
            .unwrap_or_else(|| rc.remote_address.to_string()),
        name: rc.name,
        local_address: rc.local_address,
        remote_address: rc.remote_address,
        psk_source,
        psk,
        initiate: rc.initiate.unwrap_or(true),
        ike_proposals,
        esp_proposals,
        ike_lifetime,
        child_lifetime,
        child_lifetime_bytes,
        child_lifetime_packets: rc.child_lifetime_packets.unwrap_or(0),
        dpd_interval,
        dpd_timeout,
        hold_down,
        icmp_failover: rc.icmp_failover.unwrap_or(true),
        tun_name,
        mtu,
        mss_clamp,
        replay_window,
        tunnel_address: rc.tunnel_address,
        tunnel_peer: rc.tunnel_peer,
        tunnel_address6,
        routing,
        bfd,
    })
}

fn proposals<T>(
    cx: &Ctx<'_>,
    key: &str,
    given: Option<Vec<String>>,
    default: &str,
    parse: fn(&str) -> Result<T, proposal::ProposalError>,
) -> Result<Vec<T>, ConfigError> {
    let list = given.unwrap_or_else(|| vec![default.to_string()]);
    if list.is_empty() {
        return Err(cx.invalid(
            key,
            format!("expected at least one proposal, e.g. \"{default}\""),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, p)| parse(p).map_err(|e| cx.invalid(format!("{key}[{i}]"), e.to_string())))
        .collect()
}

fn secs(cx: &Ctx<'_>, key: &str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(Duration::from_secs(value))
    } else {
        Err(cx.invalid(key, format!("expected {min}..={max} seconds, got {value}")))
    }
}

fn bgp(
    cx: &Ctx<'_>,
    key: &str,
    b: RawBgp,
    tunnel_peer: Option<IpAddr>,
) -> Result<Bgp, ConfigError> {
    let k = |field: &str| format!("{key}.bgp.{field}");
    let profile = match b.profile.as_deref() {
        None => None,
        Some("azure") => Some(Profile::Azure),
        Some("aws") => Some(Profile::Aws),
        Some(other) => {
            return Err(cx.invalid(
                k("profile"),
                format!("unknown profile `{other}`; expected \"azure\" or \"aws\""),
            ))
        }
    };
    if RESERVED_ASNS.contains(&b.peer_asn) {
        return Err(cx.invalid(k("peer_asn"), format!("{} is a reserved ASN", b.peer_asn)));
    }
    if profile == Some(Profile::Azure) && AZURE_RESERVED_ASNS.contains(&b.peer_asn) {
        return Err(cx.invalid(
            k("peer_asn"),
            format!("{} is reserved by Azure", b.peer_asn),
        ));
    }
    let peer_address = b.peer_address.or(tunnel_peer).ok_or_else(|| {
        cx.invalid(
            k("peer_address"),
            "required when the connection has no tunnel_peer",
        )
    })?;
    if profile == Some(Profile::Azure) {
        let apipa = match peer_address {
            IpAddr::V4(a) => {
                let o = a.octets();
                o[0] == 169 && o[1] == 254 && (o[2] == 21 || o[2] == 22)
            }
            IpAddr::V6(_) => false,
        };
        if !apipa {
            return Err(cx.invalid(
                k("peer_address"),
                "with profile \"azure\" the BGP address must lie in 169.254.21.0-169.254.22.255",
            ));
        }
    }
    let (default_keepalive, default_hold, default_max) = match profile {
        Some(Profile::Aws) => (10, 30, 100),
        Some(Profile::Azure) | None => (60, 180, 4000),
    };
    let keepalive = b.keepalive.unwrap_or(default_keepalive);
    let hold = b.hold.unwrap_or(default_hold);
    if hold != 0 && (hold < 3 || keepalive == 0 || keepalive > hold / 3) {
        return Err(cx.invalid(
            k("hold"),
            format!("expected hold 0 or >= 3 s and keepalive <= hold/3 (got keepalive {keepalive}, hold {hold})"),
        ));
    }
    Ok(Bgp {
        peer_asn: b.peer_asn,
        peer_address,
        profile,
        passive: b.passive.unwrap_or(false),
        max_prefixes: b.max_prefixes.unwrap_or(default_max),
        prepend: b.prepend.unwrap_or(0),
        keepalive: Duration::from_secs(u64::from(keepalive)),
        hold: Duration::from_secs(u64::from(hold)),
    })
}

/// Reads a PSK file, refusing one that others may read.
fn read_psk_file(path: &Path) -> Result<Psk, String> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is readable by group or others (mode {:o}); expected 0600 or 0400",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    psk_from_text(bytes.to_vec())
}

/// Trims one trailing newline; refuses short keys.
fn psk_from_text(bytes: Vec<u8>) -> Result<Psk, String> {
    let mut bytes = Zeroizing::new(bytes);
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.len() < 16 {
        return Err(format!(
            "the pre-shared key has {} bytes; expected at least 16",
            bytes.len()
        ));
    }
    Ok(Psk(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[gateway]
asn = 65515
local_prefixes = ["10.1.0.0/16"]

[[connection]]
name = "onprem-1"
local_address = "192.0.2.1"
remote_address = "198.51.100.1"
psk_env = "PSK1"
tunnel_address = "169.254.21.1"
tunnel_peer = "169.254.21.2"

[connection.bgp]
peer_asn = 65010
profile = "azure"

[[connection]]
name = "branch"
local_address = "192.0.2.1"
remote_address = "203.0.113.9"
psk_env = "PSK1"
initiate = false
ike_proposals = ["aes256-sha256-modp2048", "aes128gcm16-prfsha256-ecp256"]
esp_proposals = ["aes256-sha256-esn"]
static_routes = ["10.9.0.0/16"]
"#;

    fn env(name: &str) -> Option<String> {
        (name == "PSK1").then(|| "a-long-enough-test-key\n".to_string())
    }

    fn err(text: &str) -> String {
        parse(Path::new("/etc/vpngw/vpngw.toml"), text, &env)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn liveness_timers_take_units_and_are_checked() {
        let t = GOOD.replace(
            "initiate = false\n",
            "initiate = false\ndpd_interval = \"300ms\"\ndpd_timeout = \"1.5s\"\nhold_down = 5\n",
        );
        let c = parse(Path::new("x.toml"), &t, &env).unwrap();
        let b = &c.connections[1];
        assert_eq!(b.dpd_interval, Duration::from_millis(300));
        assert_eq!(b.dpd_timeout, Duration::from_millis(1500));
        assert_eq!(b.hold_down, Duration::from_secs(5));
        assert_eq!(c.connections[0].hold_down, Duration::ZERO);

        let e = err(&GOOD.replace(
            "initiate = false\n",
            "initiate = false\ndpd_interval = \"5 minutes\"\n",
        ));
        assert!(
            e.contains("connection[branch].dpd_interval: `5 minutes`: expected seconds"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "initiate = false\n",
            "initiate = false\ndpd_interval = \"10ms\"\n",
        ));
        assert!(
            e.contains("connection[branch].dpd_interval: expected 100ms"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "initiate = false\n",
            "initiate = false\ndpd_interval = \"2s\"\ndpd_timeout = \"1s\"\n",
        ));
        assert!(
            e.contains("dpd_timeout: expected more than dpd_interval"),
            "{e}"
        );
    }

    #[test]
    fn bfd_needs_tunnel_addresses_and_takes_its_timers() {
        let t = GOOD.replace(
            "[connection.bgp]\npeer_asn = 65010",
            "[connection.bfd]\ninterval = \"100ms\"\n\n[connection.bgp]\npeer_asn = 65010",
        );
        let c = parse(Path::new("x.toml"), &t, &env).unwrap();
        assert_eq!(
            c.connections[0].bfd,
            Some(Bfd {
                interval: Duration::from_millis(100),
                multiplier: 3
            })
        );
        assert_eq!(c.connections[1].bfd, None);
        let e = err(&GOOD.replace(
            "static_routes = [\"10.9.0.0/16\"]",
            "static_routes = [\"10.9.0.0/16\"]\n[connection.bfd]",
        ));
        assert!(
            e.contains("connection[branch].bfd: BFD runs between tunnel_address and tunnel_peer"),
            "{e}"
        );
        let e = err(&t.replace("interval = \"100ms\"", "interval = \"1ms\""));
        assert!(
            e.contains("connection[onprem-1].bfd.interval: expected 10ms"),
            "{e}"
        );
    }

    #[test]
    fn a_good_config_gets_its_defaults() {
        let c = parse(Path::new("x.toml"), GOOD, &env).unwrap();
        assert_eq!(c.gateway.asn, 65515);
        assert_eq!(c.gateway.router_id, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(c.gateway.kernel_table, 254);
        assert_eq!(c.gateway.tx_queues, 1);
        let a = &c.connections[0];
        assert_eq!(a.tun_name, "vti-onprem-1");
        assert_eq!(a.mtu, 1400);
        assert_eq!(a.dpd_timeout, Duration::from_secs(45));
        assert_eq!(a.psk.bytes(), b"a-long-enough-test-key");
        assert!(
            !format!("{a:?}").contains("a-long-enough"),
            "PSK leaked into Debug"
        );
        let Routing::Bgp(b) = &a.routing else {
            panic!("bgp expected")
        };
        assert_eq!(
            (b.keepalive.as_secs(), b.hold.as_secs(), b.max_prefixes),
            (60, 180, 4000)
        );
        assert_eq!(b.peer_address.to_string(), "169.254.21.2");
        let s = &c.connections[1];
        assert!(!s.initiate);
        assert_eq!(s.ike_proposals.len(), 2);
        assert!(matches!(&s.routing, Routing::Static(r) if r.len() == 1));
    }

    #[test]
    fn errors_name_file_key_and_expectation() {
        let e = err(&GOOD.replace("psk_env = \"PSK1\"\ntunnel", "psk = \"secret\"\ntunnel"));
        assert!(
            e.starts_with("/etc/vpngw/vpngw.toml: connection[onprem-1].psk: inline"),
            "{e}"
        );
        assert!(
            !e.contains("secret\""),
            "the PSK value must not be echoed: {e}"
        );

        let e = err(&GOOD.replace("asn = 65515", "asn = 65515\ncolour = 3"));
        assert!(
            e.starts_with("/etc/vpngw/vpngw.toml:4:1: `colour`: unknown field `colour`"),
            "{e}"
        );

        let e = err(&GOOD.replace("asn = 65515", "asn = 65515\ntx_queues = 0"));
        assert!(
            e.contains("gateway.tx_queues: expected 1 to 16 queues per TUN device"),
            "{e}"
        );

        let e = err(&GOOD.replace("peer_asn = 65010", "peer_asn = 23456"));
        assert!(
            e.contains("connection[onprem-1].bgp.peer_asn: 23456 is a reserved ASN"),
            "{e}"
        );

        let e = err(&GOOD.replace("peer_asn = 65010", "peer_asn = 65515"));
        assert!(e.contains("reserved by Azure"), "{e}");

        let e = err(&GOOD.replace("aes128gcm16-prfsha256-ecp256", "aes128gcm16-sha1-ecp256"));
        assert!(
            e.contains("connection[branch].ike_proposals[1]: unknown algorithm `sha1`"),
            "{e}"
        );

        let e = err(&GOOD.replace(
            "\"169.254.21.2\"\n\n[connection.bgp]",
            "\"10.0.0.2\"\n\n[connection.bgp]",
        ));
        assert!(
            e.contains("bgp.peer_address: with profile \"azure\""),
            "{e}"
        );

        let e = err(&GOOD.replace("10.9.0.0/16", "10.9.0.1/16"));
        assert!(
            e.contains("connection[branch].static_routes[0]: 10.9.0.1/16 has host bits set"),
            "{e}"
        );

        let e = err(&GOOD.replace("name = \"branch\"", "name = \"onprem-1\""));
        assert!(
            e.contains("must be unique") || e.contains("used by another"),
            "{e}"
        );

        let e = err(&GOOD.replace(
            "remote_address = \"198.51.100.1\"",
            "remote_address = \"not an ip\"",
        ));
        assert!(
            e.contains(":9:18: `remote_address`: invalid IP address"),
            "{e}"
        );

        let e = parse(Path::new("f"), GOOD, &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("psk_env: environment variable PSK1 is not set"),
            "{e}"
        );
    }

    #[test]
    fn psk_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("vpngw-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let psk = dir.join("psk");
        std::fs::write(&psk, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = GOOD.replacen(
            "psk_env = \"PSK1\"",
            &format!("psk_file = \"{}\"", psk.display()),
            1,
        );
        let e = parse(Path::new("f"), &text, &env).unwrap_err().to_string();
        assert!(e.contains("readable by group or others (mode 644)"), "{e}");
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = parse(Path::new("f"), &text, &env).unwrap();
        assert_eq!(c.connections[0].psk.bytes(), b"0123456789abcdef0123");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
