//! The failover benchmark's lab (`bench/failover.rs`): an active-active
//! gateway pair and an on-premises pair, one tunnel between each instance
//! and its on-premises device, run three ways (vpngw with BFD, vpngw with
//! traffic liveness only, strongSwan + BIRD with BFD), and a paced UDP
//! stream whose gaps can be watched while it runs.
//!
//! ```text
//!                       ,-- 10.2.0.1 [gw-opa] 198.51.100.1 == tunnel A: 169.254.21.2 <-> .1 == 192.0.2.1 [gw-az0] 10.1.0.1 --.
//!  [host 10.2.0.2] --ECMP                                                                                                   [host 10.1.0.2]
//!                       `-- 10.2.0.3 [gw-opb] 203.0.113.1  == tunnel B: 169.254.21.6 <-> .5 == 192.0.2.2 [gw-az1] 10.1.0.3 --'
//! ```
//!
//! Both ends are [`Fabric::add_pair`] pairs: each device falls back to its
//! neighbour (10.0.0.0/8, metric 1000) when it has no route of its own
//! through its tunnel. The on-premises host spreads its flows over both
//! devices (an ECMP default route, hashed on ports), so the stream crosses
//! both tunnels; tunnel B is the one that fails. kernel-libipsec carries one
//! tunnel per charon, which is why the on-premises side is a pair and not
//! one device with two tunnels; vpngw runs in the same topology so that the
//! three are compared on the same paths.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bird::{BgpConfig, Bird};
use crate::fabric::Fabric;
use crate::strongswan::{Charon, ConnConfig, TUNNEL_IF};
use crate::traffic::in_netns;
use crate::{wait_until, Netns, Proc};

/// The pre-shared key of every tunnel.
pub const PSK: &str = "failover-bench-psk-0123456789";
/// IKE proposals (strongSwan notation).
pub const IKE_PROPOSALS: &str = "aes256gcm16-prfsha256-x25519";
/// ESP proposals.
pub const ESP_PROPOSALS: &str = "aes256gcm16";
/// How long the lab may take to come up (IKE, BGP, BFD on a busy machine).
pub const SETUP: Duration = Duration::from_secs(60);
/// BGP timers of the strongSwan + BIRD reference (keepalive, hold), s:
/// long enough that BFD is what detects a failure.
pub const REFERENCE_BGP: (u16, u16) = (10, 30);
/// The receiving port of the stream.
const STREAM_PORT: u16 = 40_000;

/// One end of a tunnel: the device at `site` and what it talks to.
#[derive(Debug, Clone, Copy)]
pub struct End {
    /// The fabric site of the device (`gw-<site>`).
    pub site: &'static str,
    /// The peer's site; also the vpngw connection's name.
    pub peer: &'static str,
    /// Our outer address.
    pub outer: &'static str,
    /// The peer's outer address.
    pub peer_outer: &'static str,
    /// Our tunnel (BGP, BFD) address.
    pub addr: &'static str,
    /// The peer's tunnel address.
    pub peer_addr: &'static str,
    /// The LAN behind us.
    pub lan: &'static str,
    /// The LAN behind the peer.
    pub peer_lan: &'static str,
    /// Our ASN.
    pub asn: u32,
    /// The peer's ASN.
    pub peer_asn: u32,
    /// Whether we initiate IKE.
    pub initiate: bool,
}

/// The gateway instance of tunnel A.
pub const AZ0: usize = 0;
/// The gateway instance of tunnel B: the one that fails.
pub const AZ1: usize = 1;
/// The on-premises device of tunnel A.
pub const OPA: usize = 2;
/// The on-premises device of tunnel B.
pub const OPB: usize = 3;

/// The four devices, indexed by [`AZ0`], [`AZ1`], [`OPA`], [`OPB`].
pub const ENDS: [End; 4] = [
    End {
        site: "az0",
        peer: "opa",
        outer: "192.0.2.1",
        peer_outer: "198.51.100.1",
        addr: "169.254.21.1",
        peer_addr: "169.254.21.2",
        lan: "10.1.0.0/24",
        peer_lan: "10.2.0.0/24",
        asn: 65515,
        peer_asn: 65010,
        initiate: true,
    },
    End {
        site: "az1",
        peer: "opb",
        outer: "192.0.2.2",
        peer_outer: "203.0.113.1",
        addr: "169.254.21.5",
        peer_addr: "169.254.21.6",
        lan: "10.1.0.0/24",
        peer_lan: "10.2.0.0/24",
        asn: 65515,
        peer_asn: 65010,
        initiate: true,
    },
    End {
        site: "opa",
        peer: "az0",
        outer: "198.51.100.1",
        peer_outer: "192.0.2.1",
        addr: "169.254.21.2",
        peer_addr: "169.254.21.1",
        lan: "10.2.0.0/24",
        peer_lan: "10.1.0.0/24",
        asn: 65010,
        peer_asn: 65515,
        initiate: false,
    },
    End {
        site: "opb",
        peer: "az1",
        outer: "203.0.113.1",
        peer_outer: "192.0.2.2",
        addr: "169.254.21.6",
        peer_addr: "169.254.21.5",
        lan: "10.2.0.0/24",
        peer_lan: "10.1.0.0/24",
        asn: 65010,
        peer_asn: 65515,
        initiate: false,
    },
];

/// The on-premises host (sender) and its first address.
const OP_HOST: &str = "10.2.0.2";
/// The VNet host (receiver).
const VNET_HOST: &str = "10.1.0.2";

/// How a vpngw connection learns its routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpngwRouting {
    /// eBGP across the tunnel with these (keepalive, hold) seconds; `None`:
    /// vpngw's defaults (60 / 180 s).
    Bgp(Option<(u16, u16)>),
    /// Static routes, installed while the tunnel is up.
    Static,
}

/// vpngw's routing and liveness settings on all four devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VpngwTimers {
    /// BGP or static routes.
    pub routing: VpngwRouting,
    /// BFD (interval ms, multiplier); `None`: no BFD.
    pub bfd: Option<(u32, u8)>,
    /// DPD (interval ms, timeout ms); `None`: the defaults, 10 s / 45 s.
    pub dpd: Option<(u32, u32)>,
}

impl VpngwTimers {
    /// The timers in words.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match self.routing {
            VpngwRouting::Bgp(Some((k, h))) => {
                parts.push(format!("eBGP keepalive {k} s / hold {h} s"));
            }
            VpngwRouting::Bgp(None) => parts.push("eBGP keepalive 60 s / hold 180 s".into()),
            VpngwRouting::Static => parts.push("static routes (no BGP)".into()),
        }
        match self.bfd {
            Some((ms, mult)) => parts.push(format!("BFD {ms} ms × {mult}")),
            None => parts.push("no BFD".into()),
        }
        match self.dpd {
            Some((i, t)) => parts.push(format!("DPD {i} ms / {t} ms")),
            None => parts.push("DPD 10 s / 45 s".into()),
        }
        parts.join(", ")
    }
}

/// What runs on the four devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// vpngw everywhere, with these timers.
    Vpngw(VpngwTimers),
    /// strongSwan (kernel-libipsec) + BIRD everywhere: BIRD's BFD 100 ms ×
    /// 3, BGP [`REFERENCE_BGP`], charon's DPD 10 s.
    StrongswanBird,
}

impl Stack {
    /// The timers in words.
    pub fn describe(&self) -> String {
        match self {
            Stack::Vpngw(t) => t.describe(),
            Stack::StrongswanBird => format!(
                "BIRD BFD 100 ms × 3, eBGP keepalive {} s / hold {} s, charon DPD 10 s",
                REFERENCE_BGP.0, REFERENCE_BGP.1
            ),
        }
    }
}

/// A device's daemons.
#[derive(Debug)]
enum Device {
    Vpngw { proc: Proc, socket: PathBuf },
    // Field order is drop order: BIRD, then charon.
    Reference { bird: Bird, charon: Charon },
    Down,
}

/// Kernel route events of one device, from `ip monitor route`, and its
/// daemon's events, from its log (vpngw only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events {
    /// The route to the peer's LAN gone from the kernel (vpngw's routes
    /// only: they have a `nhid`).
    pub route_withdrawals: u64,
    /// `BFD down` (vpngw).
    pub bfd_down: u64,
    /// `tunnel down` (vpngw).
    pub tunnel_down: u64,
    /// `BGP session down` of an established session (vpngw).
    pub bgp_down: u64,
}

impl std::ops::Add for Events {
    type Output = Events;
    fn add(self, o: Events) -> Events {
        Events {
            route_withdrawals: self.route_withdrawals + o.route_withdrawals,
            bfd_down: self.bfd_down + o.bfd_down,
            tunnel_down: self.tunnel_down + o.tunnel_down,
            bgp_down: self.bgp_down + o.bgp_down,
        }
    }
}

/// The lab. Field order is drop order: daemons, monitors, then the fabric
/// (namespaces, then files).
#[derive(Debug)]
pub struct FailoverLab {
    devices: Vec<Device>,
    monitors: Vec<Option<Proc>>,
    /// The sites: `az0`, `az1` (the gateway pair) and `opa`, `opb`.
    pub fabric: Fabric,
    stack: Stack,
    vpngw: PathBuf,
    starts: u32,
}

impl FailoverLab {
    /// Builds the fabric, starts the four devices and waits until each
    /// routes the other side's LAN through its tunnel.
    pub fn start(stack: Stack, vpngw: &Path) -> FailoverLab {
        let mut fabric = Fabric::new();
        fabric.add_pair(["az0", "az1"], 1, ["192.0.2.1", "192.0.2.2"]);
        fabric.add_pair(["opa", "opb"], 2, ["198.51.100.1", "203.0.113.1"]);
        // The on-premises LAN spreads its flows over both devices.
        let host = &fabric.site("opa").host;
        host.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
        host.ip("route replace default nexthop via 10.2.0.1 nexthop via 10.2.0.3");
        let psk = fabric.dir.write("failover.psk", PSK);
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).expect("chmod psk");
        let mut lab = FailoverLab {
            devices: (0..4).map(|_| Device::Down).collect(),
            monitors: (0..4).map(|_| None).collect(),
            fabric,
            stack,
            vpngw: vpngw.to_path_buf(),
            starts: 0,
        };
        for i in [OPA, OPB, AZ0, AZ1] {
            lab.start_device(i);
        }
        for i in [AZ0, AZ1, OPA, OPB] {
            lab.wait_routed(i, true, SETUP)
                .unwrap_or_else(|e| panic!("{}: {e}", ENDS[i].site));
        }
        lab.wait_liveness_up(SETUP)
            .unwrap_or_else(|e| panic!("BFD: {e}"));
        lab
    }

    /// The stack the devices run.
    pub fn stack(&self) -> Stack {
        self.stack
    }

    fn ns(&self, i: usize) -> &Netns {
        &self.fabric.site(ENDS[i].site).gw
    }

    /// Starts device `i`'s daemons (again).
    fn start_device(&mut self, i: usize) {
        let end = ENDS[i];
        self.starts += 1;
        let device = match self.stack {
            Stack::Vpngw(timers) => {
                let socket = self.fabric.dir.join(&format!("{}.sock", end.site));
                let psk = self.fabric.dir.join("failover.psk");
                let conf = self.fabric.dir.write(
                    &format!("{}.vpngw.toml", end.site),
                    &vpngw_toml(&end, &timers, &socket, &psk),
                );
                let mut proc = Proc::spawn(
                    self.ns(i),
                    &format!("vpngw {}", end.site),
                    &[
                        self.vpngw.to_str().expect("utf-8 path"),
                        "run",
                        "--config",
                        conf.to_str().expect("utf-8 path"),
                    ],
                    &[("RUST_LOG", "info")],
                    &self
                        .fabric
                        .dir
                        .join(&format!("{}.{}.vpngw.log", end.site, self.starts)),
                );
                wait_until(&format!("vpngw {} to answer", end.site), SETUP, || {
                    // Answering, not just there: a killed daemon leaves its socket.
                    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                        Ok(())
                    } else if !proc.is_running() {
                        panic!("vpngw {} exited: {}", end.site, tail(&proc.log(), 5));
                    } else {
                        Err(tail(&proc.log(), 5))
                    }
                });
                Device::Vpngw { proc, socket }
            }
            Stack::StrongswanBird => {
                let name = format!("ref-{}", end.site);
                // A killed instance leaves its sockets behind.
                for file in [
                    format!("{name}.vici"),
                    format!("{name}.bird.ctl"),
                    format!("{name}.bird.pid"),
                ] {
                    let _ = std::fs::remove_file(self.fabric.dir.join(&file));
                }
                let ns = self.ns(i);
                let charon = Charon::start(
                    ns,
                    &self.fabric.dir,
                    &name,
                    &ConnConfig {
                        local: end.outer.into(),
                        remote: end.peer_outer.into(),
                        psk: PSK.into(),
                        ike_proposals: IKE_PROPOSALS.into(),
                        esp_proposals: ESP_PROPOSALS.into(),
                        initiator: end.initiate,
                        dual_stack: false,
                    },
                );
                ns.ip(&format!(
                    "addr add {}/32 peer {}/32 dev {TUNNEL_IF}",
                    end.addr, end.peer_addr
                ));
                ns.ip(&format!("link set {TUNNEL_IF} up"));
                let bird = Bird::start(
                    ns,
                    &self.fabric.dir,
                    &name,
                    &BgpConfig {
                        router_id: end.outer.into(),
                        local_addr: end.addr.into(),
                        local_as: end.asn,
                        peer_addr: end.peer_addr.into(),
                        peer_as: end.peer_asn,
                        tunnel_if: TUNNEL_IF.into(),
                        advertise: vec![end.lan.into()],
                        originate: vec![],
                        bfd: true,
                        keepalive: REFERENCE_BGP.0,
                        hold: REFERENCE_BGP.1,
                        ipv6: None,
                    },
                );
                Device::Reference { bird, charon }
            }
        };
        self.devices[i] = device;
    }

    /// Kills device `i`'s daemons with SIGKILL (no IKE DELETE, no BGP
    /// Cease, no BFD AdminDown) and reaps them.
    pub fn kill(&mut self, i: usize) {
        let device = std::mem::replace(&mut self.devices[i], Device::Down);
        match device {
            Device::Vpngw { mut proc, .. } => {
                proc.kill();
                proc.stop();
            }
            Device::Reference { bird, charon } => {
                // charon's and BIRD's processes in this device's namespace
                // (ours: the namespace is this lab's).
                let out = Command::new("ip")
                    .args(["netns", "pids", self.ns(i).name()])
                    .output()
                    .expect("ip netns pids");
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let comm =
                        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    if matches!(comm.trim(), "charon" | "bird") {
                        if let Ok(pid) = pid.parse::<libc::pid_t>() {
                            // SAFETY: as above.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                }
                // Reaped on drop (they are no longer running).
                drop(bird);
                drop(charon);
            }
            Device::Down => {}
        }
    }

    /// Starts device `i` again after [`FailoverLab::kill`].
    pub fn restart(&mut self, i: usize) {
        self.start_device(i);
    }

    /// Silently blackholes the underlay between tunnel B's ends.
    pub fn cut_b(&self) {
        self.fabric.cut(ENDS[OPB].outer, ENDS[AZ1].outer);
    }

    /// Undoes [`FailoverLab::cut_b`].
    pub fn mend(&self) {
        self.fabric.mend();
    }

    /// Whether device `i` routes the peer's LAN through its tunnel: for
    /// vpngw what `vpngw routes --json` says, for BIRD the kernel's route.
    pub fn routed(&self, i: usize) -> Result<bool, String> {
        let end = ENDS[i];
        match &self.devices[i] {
            Device::Down => Ok(false),
            Device::Vpngw { socket, .. } => {
                let out = Command::new(&self.vpngw)
                    .args(["routes", "--json", "--socket"])
                    .arg(socket)
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(String::from_utf8_lossy(&out.stderr).into_owned());
                }
                let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
                Ok(v["routes"].as_array().is_some_and(|routes| {
                    routes.iter().any(|r| {
                        r["prefix"] == end.peer_lan
                            && r["tunnels"]
                                .as_array()
                                .is_some_and(|t| t.iter().any(|t| t == end.peer))
                    })
                }))
            }
            Device::Reference { .. } => Ok(self
                .ns(i)
                .route(end.peer_lan)
                .is_some_and(|r| r.contains(TUNNEL_IF))),
        }
    }

    /// Waits until device `i` routes (or no longer routes) the peer's LAN
    /// through its tunnel; how long that took.
    pub fn wait_routed(&self, i: usize, want: bool, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let state = self.routed(i);
            if state == Ok(want) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "{} {} the peer's LAN through its tunnel after {timeout:?} ({state:?}){}",
                    ENDS[i].site,
                    if want {
                        "does not route"
                    } else {
                        "still routes"
                    },
                    self.log_tail(i)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last lines of device `i`'s daemon log.
    pub fn log_tail(&self, i: usize) -> String {
        match &self.devices[i] {
            Device::Vpngw { proc, .. } => format!("\n{}", tail(&proc.log(), 15)),
            Device::Reference { bird, .. } => format!("\n{}", tail(&bird.log(), 15)),
            Device::Down => String::new(),
        }
    }

    /// Waits until BFD is up on the on-premises devices (BIRD only: a BGP
    /// session that came up before its BFD session would otherwise only be
    /// watched by its hold timer; vpngw keeps a BFD tunnel out of its
    /// routes until BFD is up, so routed means watched).
    pub fn wait_liveness_up(&self, timeout: Duration) -> Result<(), String> {
        if self.stack != Stack::StrongswanBird {
            return Ok(());
        }
        let start = Instant::now();
        for i in [OPA, OPB] {
            let Device::Reference { bird, .. } = &self.devices[i] else {
                return Err(format!("{} is down", ENDS[i].site));
            };
            loop {
                let out = bird.birdc("show bfd sessions");
                if out.lines().any(|l| l.contains(" Up ")) {
                    break;
                }
                if start.elapsed() > timeout {
                    return Err(format!("{}: {out}", ENDS[i].site));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Source ports for `per_tunnel` flows through each on-premises device,
    /// chosen by asking the host's kernel where each would go.
    pub fn pick_ports(&self, per_tunnel: usize) -> Vec<u16> {
        let host = &self.fabric.site("opa").host;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for port in STREAM_PORT + 1..STREAM_PORT + 200 {
            if a.len() >= per_tunnel && b.len() >= per_tunnel {
                break;
            }
            let route = host.ip(&format!(
                "route get {VNET_HOST} from {OP_HOST} ipproto udp sport {port} dport {STREAM_PORT}"
            ));
            if route.contains("via 10.2.0.1 ") && a.len() < per_tunnel {
                a.push(port);
            } else if route.contains("via 10.2.0.3 ") && b.len() < per_tunnel {
                b.push(port);
            }
        }
        assert!(
            a.len() == per_tunnel && b.len() == per_tunnel,
            "the host's ECMP route does not spread flows over both devices: {a:?} {b:?}"
        );
        a.into_iter().chain(b).collect()
    }

    /// Packets sent into device `i`'s tunnel so far.
    pub fn tunnel_tx_packets(&self, i: usize) -> u64 {
        let dev = match self.stack {
            Stack::Vpngw(_) => format!("vti-{}", ENDS[i].peer),
            Stack::StrongswanBird => TUNNEL_IF.to_string(),
        };
        let out = self.ns(i).ip(&format!("-s -j link show dev {dev}"));
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        v[0]["stats64"]["tx"]["packets"].as_u64().unwrap_or(0)
    }

    /// Starts the stream: flows from these source ports on the on-premises
    /// host to the VNet host, `pps` packets a second each.
    pub fn stream(&self, ports: &[u16], pps: u32) -> Stream {
        Stream::start(
            &self.fabric.site("opa").host,
            OP_HOST.parse().expect("address"),
            &self.fabric.site("az0").host,
            VNET_HOST.parse().expect("address"),
            ports,
            pps,
        )
    }

    /// Starts `ip monitor route nexthop` in every device's namespace.
    pub fn start_monitors(&mut self) {
        for (i, end) in ENDS.iter().enumerate() {
            let proc = Proc::spawn(
                self.ns(i),
                &format!("ip monitor {}", end.site),
                &["ip", "monitor", "route", "nexthop"],
                &[],
                &self
                    .fabric
                    .dir
                    .join(&format!("{}.ip-monitor.log", end.site)),
            );
            self.monitors[i] = Some(proc);
        }
    }

    /// Device `i`'s events so far (route events since
    /// [`FailoverLab::start_monitors`], which must be called while the
    /// device routes the peer's LAN; daemon events since it started).
    pub fn events(&self, i: usize) -> Events {
        let lan = ENDS[i].peer_lan;
        let mut e = Events::default();
        if let Some(monitor) = &self.monitors[i] {
            // The kernel does not always say when a route goes (removing
            // the last nexthop of its group takes the route silently), but
            // always when one comes: each comeback ends a withdrawal, and
            // a route missing now is one that has not ended yet.
            let comebacks = monitor
                .log()
                .lines()
                .filter(|l| l.starts_with(lan) && l.contains(" nhid "))
                .count() as u64;
            let missing = u64::from(self.routed(i) != Ok(true));
            e.route_withdrawals = comebacks + missing;
        }
        if let Device::Vpngw { proc, .. } = &self.devices[i] {
            for line in proc.log().lines() {
                if line.contains("BFD down") {
                    e.bfd_down += 1;
                }
                if line.contains("tunnel down") {
                    e.tunnel_down += 1;
                }
                if line.contains("BGP session down") && line.contains("was_established=true") {
                    e.bgp_down += 1;
                }
            }
        }
        e
    }
}

/// vpngw's configuration for `end`.
fn vpngw_toml(end: &End, t: &VpngwTimers, socket: &Path, psk: &Path) -> String {
    let mut s = format!(
        r#"[gateway]
asn = {asn}
local_prefixes = ["{lan}"]
control_socket = "{socket}"

[[connection]]
name = "{peer}"
local_address = "{outer}"
remote_address = "{peer_outer}"
psk_file = "{psk}"
initiate = {initiate}
ike_proposals = ["{IKE_PROPOSALS}"]
esp_proposals = ["{ESP_PROPOSALS}"]
tunnel_address = "{addr}"
tunnel_peer = "{peer_addr}"
"#,
        asn = end.asn,
        lan = end.lan,
        socket = socket.display(),
        peer = end.peer,
        outer = end.outer,
        peer_outer = end.peer_outer,
        psk = psk.display(),
        initiate = end.initiate,
        addr = end.addr,
        peer_addr = end.peer_addr,
    );
    if let Some((interval, timeout)) = t.dpd {
        s.push_str(&format!(
            "dpd_interval = \"{interval}ms\"\ndpd_timeout = \"{timeout}ms\"\n"
        ));
    }
    match t.routing {
        VpngwRouting::Static => s.push_str(&format!("static_routes = [\"{}\"]\n", end.peer_lan)),
        VpngwRouting::Bgp(timers) => {
            s.push_str(&format!(
                "\n[connection.bgp]\npeer_asn = {}\n",
                end.peer_asn
            ));
            if let Some((keepalive, hold)) = timers {
                s.push_str(&format!("keepalive = {keepalive}\nhold = {hold}\n"));
            }
        }
    }
    if let Some((interval, multiplier)) = t.bfd {
        s.push_str(&format!(
            "\n[connection.bfd]\ninterval = \"{interval}ms\"\nmultiplier = {multiplier}\n"
        ));
    }
    s
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One flow's state while the stream runs.
#[derive(Debug, Clone, Copy)]
struct FlowState {
    port: u16,
    received: u64,
    last: Option<Instant>,
    longest_gap: Duration,
    last_seq: Option<u64>,
    longest_seq_gap: u64,
}

/// What one flow of a [`Stream`] saw.
#[derive(Debug, Clone, Copy)]
pub struct StreamFlow {
    /// Its source port.
    pub port: u16,
    /// Packets sent.
    pub sent: u64,
    /// Packets received.
    pub received: u64,
    /// The longest time between two arrivals: the interruption as the
    /// receiver saw it (host scheduling delays included).
    pub longest_gap: Duration,
    /// The longest gap in the sender's schedule: the sequence numbers
    /// between two consecutive arrivals times the sending interval. What
    /// the path lost, without the hosts' scheduling delays.
    pub longest_seq_gap: Duration,
}

impl StreamFlow {
    /// Packets that never arrived.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }
}

/// Paced UDP flows (one source port each) whose arrivals can be watched
/// while they run: [`Stream::all_since`] tells when every flow is through
/// again after a failure. Like [`crate::traffic::UdpFlows`], a flow's
/// interruption is the longest gap between two packets that arrived.
#[derive(Debug)]
pub struct Stream {
    stop: Arc<AtomicBool>,
    stop_rx: Arc<AtomicBool>,
    state: Arc<Mutex<Vec<FlowState>>>,
    senders: Vec<JoinHandle<(u16, u64)>>,
    receiver: JoinHandle<()>,
    interval: Duration,
}

impl Stream {
    /// Starts one flow per source port in `ports`, `pps` packets a second
    /// each, from `src` (in `from`) to `dst` (in `to`).
    pub fn start(
        from: &Netns,
        src: IpAddr,
        to: &Netns,
        dst: IpAddr,
        ports: &[u16],
        pps: u32,
    ) -> Stream {
        let rx = in_netns(to, move || {
            UdpSocket::bind((dst, STREAM_PORT)).expect("bind receiver")
        });
        rx.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let state: Arc<Mutex<Vec<FlowState>>> = Arc::new(Mutex::new(
            ports
                .iter()
                .map(|&port| FlowState {
                    port,
                    received: 0,
                    last: None,
                    longest_gap: Duration::ZERO,
                    last_seq: None,
                    longest_seq_gap: 0,
                })
                .collect(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_rx = Arc::new(AtomicBool::new(false));
        let receiver = {
            let state = Arc::clone(&state);
            let stop_rx = Arc::clone(&stop_rx);
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop_rx.load(Ordering::Relaxed) {
                    let Ok((len, from)) = rx.recv_from(&mut buf) else {
                        continue;
                    };
                    let seq = buf
                        .get(..8)
                        .filter(|_| len >= 8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_be_bytes);
                    let now = Instant::now();
                    let mut flows = state.lock().expect("stream state");
                    if let Some(f) = flows.iter_mut().find(|f| f.port == from.port()) {
                        f.received += 1;
                        if let Some(last) = f.last {
                            f.longest_gap = f.longest_gap.max(now - last);
                        }
                        f.last = Some(now);
                        if let Some(seq) = seq {
                            if let Some(prev) = f.last_seq.filter(|&p| seq > p) {
                                f.longest_seq_gap = f.longest_seq_gap.max(seq - prev);
                            }
                            f.last_seq = Some(f.last_seq.map_or(seq, |p| p.max(seq)));
                        }
                    }
                }
            })
        };
        let interval = Duration::from_secs(1) / pps.max(1);
        let senders = ports
            .iter()
            .map(|&port| {
                let tx = in_netns(from, move || {
                    UdpSocket::bind((src, port)).expect("bind sender")
                });
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let start = Instant::now();
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // Send errors (no route) count as lost.
                        let _ = tx.send_to(&sent.to_be_bytes(), SocketAddr::new(dst, STREAM_PORT));
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
        Stream {
            stop,
            stop_rx,
            state,
            senders,
            receiver,
            interval,
        }
    }

    /// Whether every flow has delivered a packet after `t`.
    pub fn all_since(&self, t: Instant) -> bool {
        self.state
            .lock()
            .expect("stream state")
            .iter()
            .all(|f| f.last.is_some_and(|last| last > t))
    }

    /// Waits up to `timeout` until every flow has delivered a packet after
    /// `t`.
    pub fn wait_all_since(&self, t: Instant, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        while !self.all_since(t) {
            if start.elapsed() > timeout {
                let flows = self.state.lock().expect("stream state").clone();
                return Err(format!(
                    "not every flow got through within {timeout:?}: {:?}",
                    flows
                        .iter()
                        .map(|f| (f.port, f.received, f.last.map(|l| l.elapsed())))
                        .collect::<Vec<_>>()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Stops the flows (waiting a moment for packets in flight) and reports
    /// each.
    pub fn stop(self) -> Vec<StreamFlow> {
        self.stop.store(true, Ordering::Relaxed);
        let sent: Vec<(u16, u64)> = self
            .senders
            .into_iter()
            .map(|s| s.join().expect("sender"))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        self.stop_rx.store(true, Ordering::Relaxed);
        self.receiver.join().expect("receiver");
        let flows = self.state.lock().expect("stream state").clone();
        sent.into_iter()
            .map(|(port, sent)| {
                let f = flows.iter().find(|f| f.port == port);
                StreamFlow {
                    port,
                    sent,
                    received: f.map_or(0, |f| f.received),
                    longest_gap: f.map_or(Duration::MAX, |f| f.longest_gap),
                    longest_seq_gap: f.map_or(Duration::MAX, |f| {
                        self.interval * u32::try_from(f.longest_seq_gap).unwrap_or(u32::MAX)
                    }),
                }
            })
            .collect()
    }
}
