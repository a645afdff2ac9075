//! The datapath benchmark's lab (`bench/datapath.rs`): one topology, five
//! ways to carry the LANs across it, and the measurements (iperf3 for TCP,
//! `udp-load` for UDP, ping, the machine's CPU time).
//!
//! ```text
//!  [host-a] eth0 ---- lan0 [gw-a] eth0 -------- eth0 [gw-b] lan0 ---- eth0 [host-b]
//!  10.1.0.2/24     10.1.0.1/24  192.0.2.1/24    192.0.2.2/24  10.2.0.1/24    10.2.0.2/24
//!                  tunnel 169.254.21.1 ========== 169.254.21.2
//! ```
//!
//! The same addresses as the vpngw crate's datapath tests
//! (`crates/vpngw/tests/common/mod.rs`). Traffic always goes from host A
//! to host B, so both gateways forward and one encrypts, one decrypts.
//! Everything is torn down on drop, also on panic: processes are stopped by
//! PID, then the namespaces are deleted.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::unique_id;
use crate::strongswan::{Charon, ConnConfig, TUNNEL_IF};
use crate::{veth, wait_until, Netns, Proc, WorkDir};

/// The pre-shared key of the IPsec paths.
pub const PSK: &str = "datapath-bench-psk-0123456789";
/// How long a tunnel may take to come up.
pub const SETUP: Duration = Duration::from_secs(20);
/// IKE proposals of the IPsec paths (strongSwan notation).
pub const IKE_PROPOSALS: &str = "aes256gcm16-prfsha256-x25519";
/// wireguard-go's UDP port on both gateways.
pub const WG_PORT: u16 = 51820;
/// iperf3's (and udp-load's) port on host B.
const IPERF_PORT: &str = "5201";

/// One site of the lab.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    /// Short name; also vpngw's connection name on the other side.
    pub name: &'static str,
    /// The gateway's underlay address.
    pub outer: &'static str,
    /// The LAN behind the gateway.
    pub lan: &'static str,
    /// The gateway's address on the LAN.
    pub gw_lan: &'static str,
    /// The LAN host.
    pub host: &'static str,
    /// The gateway's address on the tunnel interface.
    pub tunnel: &'static str,
}

/// Site A: the sender's side.
pub const A: Side = Side {
    name: "site-a",
    outer: "192.0.2.1",
    lan: "10.1.0.0/24",
    gw_lan: "10.1.0.1",
    host: "10.1.0.2",
    tunnel: "169.254.21.1",
};

/// Site B: the receiver's side.
pub const B: Side = Side {
    name: "site-b",
    outer: "192.0.2.2",
    lan: "10.2.0.0/24",
    gw_lan: "10.2.0.1",
    host: "10.2.0.2",
    tunnel: "169.254.21.2",
};

/// How the LANs are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datapath {
    /// Plain routing over the underlay, no tunnel.
    Underlay,
    /// vpngw on both gateways with this ESP proposal (e.g. `aes256gcm16`).
    Vpngw {
        /// The ESP proposal, strongSwan notation.
        esp: &'static str,
    },
    /// strongSwan's charon with kernel-libipsec (ESP in user space) on
    /// both gateways, AES-GCM-256.
    StrongSwan,
    /// wireguard-go (user space) on both gateways.
    WireguardGo,
}

impl Datapath {
    /// Its short name on the command line (`--paths`).
    pub fn key(self) -> &'static str {
        match self {
            Datapath::Underlay => "underlay",
            Datapath::Vpngw { esp: "aes128gcm16" } => "vpngw-128",
            Datapath::Vpngw { .. } => "vpngw-256",
            Datapath::StrongSwan => "strongswan",
            Datapath::WireguardGo => "wireguard-go",
        }
    }

    /// The name in the results table.
    pub fn label(&self) -> String {
        match self {
            Datapath::Underlay => "underlay (plain routing, no tunnel)".into(),
            Datapath::Vpngw { esp } => format!("vpngw ⇄ vpngw, {}", esp_label(esp)),
            Datapath::StrongSwan => "strongSwan ⇄ strongSwan, AES-GCM-256".into(),
            Datapath::WireguardGo => "wireguard-go ⇄ wireguard-go".into(),
        }
    }

    /// Why this path cannot run on this machine (a program is missing),
    /// if it cannot.
    pub fn missing(&self, vpngw: &Path) -> Option<String> {
        let mut needs: Vec<(&str, &str)> = vec![("iperf3", "iperf3"), ("ping", "iputils-ping")];
        match self {
            Datapath::Underlay => {}
            Datapath::Vpngw { .. } => {
                if !vpngw.is_file() {
                    return Some(format!(
                        "no vpngw binary at {} (cargo build --release -p vpngw)",
                        vpngw.display()
                    ));
                }
            }
            Datapath::StrongSwan => needs.extend([
                (crate::strongswan::CHARON, "strongswan-charon"),
                ("swanctl", "strongswan-swanctl"),
            ]),
            Datapath::WireguardGo => {
                needs.extend([("wireguard-go", "wireguard-go"), ("wg", "wireguard-tools")]);
            }
        }
        needs
            .into_iter()
            .find(|(program, _)| !installed(program))
            .map(|(program, package)| {
                format!("`{program}` is not installed (Debian package {package})")
            })
    }
}

fn esp_label(esp: &str) -> String {
    match esp {
        "aes128gcm16" => "AES-GCM-128".into(),
        "aes256gcm16" => "AES-GCM-256".into(),
        other => other.into(),
    }
}

fn installed(program: &str) -> bool {
    Path::new(program).is_file()
        || std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
            .unwrap_or(false)
}

/// The two sites, their hosts, and whatever carries traffic between them.
///
/// Field order is drop order: processes, then namespaces, then the work
/// directory (kept, with its path printed, if a panic unwinds through it).
#[derive(Debug)]
pub struct BenchLab {
    procs: Vec<Proc>,
    charons: Vec<Charon>,
    /// Site A's gateway.
    pub gw_a: Netns,
    /// Site B's gateway.
    pub gw_b: Netns,
    /// The sending host, behind gateway A.
    pub host_a: Netns,
    /// The receiving host, behind gateway B.
    pub host_b: Netns,
    /// Configs and logs.
    pub dir: WorkDir,
    id: String,
}

impl Default for BenchLab {
    fn default() -> Self {
        Self::new()
    }
}

impl BenchLab {
    /// Builds the namespaces and links; nothing routes between the LANs yet.
    pub fn new() -> BenchLab {
        let id = unique_id();
        let dir = WorkDir::new(&id);
        let gw_a = Netns::new(&id, "gw-a");
        let gw_b = Netns::new(&id, "gw-b");
        let host_a = Netns::new(&id, "host-a");
        let host_b = Netns::new(&id, "host-b");
        veth(&gw_a, "eth0", &gw_b, "eth0");
        gw_a.ip(&format!("addr add {}/24 dev eth0", A.outer));
        gw_b.ip(&format!("addr add {}/24 dev eth0", B.outer));
        for (gw, host, side) in [(&gw_a, &host_a, &A), (&gw_b, &host_b, &B)] {
            veth(gw, "lan0", host, "eth0");
            gw.ip(&format!("addr add {}/24 dev lan0", side.gw_lan));
            host.ip(&format!("addr add {}/24 dev eth0", side.host));
            host.ip(&format!("route add default via {}", side.gw_lan));
        }
        BenchLab {
            procs: Vec::new(),
            charons: Vec::new(),
            gw_a,
            gw_b,
            host_a,
            host_b,
            dir,
            id,
        }
    }

    fn gw(&self, side: &Side) -> &Netns {
        if side.name == A.name {
            &self.gw_a
        } else {
            &self.gw_b
        }
    }

    /// Joins the LANs with `path` and waits until host A pings host B.
    /// `vpngw` is the daemon's binary (for [`Datapath::Vpngw`]).
    pub fn setup(&mut self, path: Datapath, vpngw: &Path) {
        match path {
            Datapath::Underlay => {
                self.gw_a
                    .ip(&format!("route add {} via {}", B.lan, B.outer));
                self.gw_b
                    .ip(&format!("route add {} via {}", A.lan, A.outer));
            }
            Datapath::Vpngw { esp } => {
                self.vpngw(vpngw, &B, &A, false, esp);
                self.vpngw(vpngw, &A, &B, true, esp);
            }
            Datapath::StrongSwan => {
                self.charon(&B, &A, false);
                self.charon(&A, &B, true);
            }
            Datapath::WireguardGo => self.wireguard(),
        }
        self.wait_connected();
    }

    /// vpngw on `me`'s gateway with one connection to `peer`, routing
    /// `peer`'s LAN into the tunnel while it is up.
    fn vpngw(&mut self, binary: &Path, me: &Side, peer: &Side, initiate: bool, esp: &str) {
        let psk = self.dir.write(&format!("{}.psk", me.name), PSK);
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).expect("chmod psk");
        let conf = self.dir.write(
            &format!("{}.vpngw.toml", me.name),
            &format!(
                r#"[gateway]
local_prefixes = ["{my_lan}"]
control_socket = "{sock}"

[[connection]]
name = "{peer_name}"
local_address = "{me_outer}"
remote_address = "{peer_outer}"
psk_file = "{psk}"
initiate = {initiate}
ike_proposals = ["{ike}"]
esp_proposals = ["{esp}"]
tunnel_address = "{me_tunnel}"
tunnel_peer = "{peer_tunnel}"
static_routes = ["{peer_lan}"]
"#,
                my_lan = me.lan,
                sock = self.dir.join(&format!("{}.sock", me.name)).display(),
                peer_name = peer.name,
                me_outer = me.outer,
                peer_outer = peer.outer,
                psk = psk.display(),
                ike = IKE_PROPOSALS,
                me_tunnel = me.tunnel,
                peer_tunnel = peer.tunnel,
                peer_lan = peer.lan,
            ),
        );
        let mut proc = Proc::spawn(
            self.gw(me),
            &format!("vpngw {}", me.name),
            &[
                binary.to_str().expect("utf-8 path"),
                "run",
                "--config",
                conf.to_str().expect("utf-8 path"),
            ],
            &[("RUST_LOG", "info")],
            &self.dir.join(&format!("{}.vpngw.log", me.name)),
        );
        wait_until("vpngw to listen", SETUP, || {
            let log = proc.log();
            if log.contains("IKE listening") {
                Ok(())
            } else if !proc.is_running() {
                panic!("vpngw exited: {}", last_line(&log));
            } else {
                Err(log)
            }
        });
        self.procs.push(proc);
    }

    /// strongSwan on `me`'s gateway, routing `peer`'s LAN into ipsec0.
    fn charon(&mut self, me: &Side, peer: &Side, initiator: bool) {
        let ns = self.gw(me);
        let charon = Charon::start(
            ns,
            &self.dir,
            me.name,
            &ConnConfig {
                local: me.outer.into(),
                remote: peer.outer.into(),
                psk: PSK.into(),
                ike_proposals: IKE_PROPOSALS.into(),
                esp_proposals: "aes256gcm16".into(),
                initiator,
                dual_stack: false,
            },
        );
        ns.ip(&format!(
            "addr add {}/32 peer {}/32 dev {TUNNEL_IF}",
            me.tunnel, peer.tunnel
        ));
        ns.ip(&format!("link set {TUNNEL_IF} up"));
        ns.ip(&format!("route add {} dev {TUNNEL_IF}", peer.lan));
        self.charons.push(charon);
    }

    /// wireguard-go on both gateways. Its interface names are unique per
    /// lab: its control sockets (`/var/run/wireguard/<if>.sock`) live in
    /// the file system, which the namespaces share.
    fn wireguard(&mut self) {
        let seq = self.id.rsplit('-').next().unwrap_or("0");
        let ifname = |side: &Side| {
            let name = format!("wg{}-{seq}{}", std::process::id(), &side.name[5..]);
            name.chars().take(15).collect::<String>()
        };
        let keys: Vec<(String, String)> = (0..2).map(|_| wg_keypair()).collect();
        let mut procs = Vec::new();
        for (i, (me, peer)) in [(&A, &B), (&B, &A)].into_iter().enumerate() {
            let (private, _) = &keys[i];
            let (_, peer_public) = &keys[1 - i];
            let dev = ifname(me);
            let ns = self.gw(me);
            let key_file = self.dir.write(&format!("{}.wg.key", me.name), private);
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
                .expect("chmod key");
            let mut proc = Proc::spawn(
                ns,
                &format!("wireguard-go {}", me.name),
                &["wireguard-go", &dev],
                &[("WG_PROCESS_FOREGROUND", "1"), ("LOG_LEVEL", "error")],
                &self.dir.join(&format!("{}.wireguard-go.log", me.name)),
            );
            let socket = format!("/var/run/wireguard/{dev}.sock");
            wait_until("wireguard-go's interface", Duration::from_secs(10), || {
                if !proc.is_running() {
                    let log = proc.log();
                    panic!("wireguard-go exited: {}", last_line(&log));
                }
                if Path::new(&socket).exists() && ns.try_ip(&format!("link show {dev}")).is_ok() {
                    Ok(())
                } else {
                    Err(proc.log())
                }
            });
            procs.push(proc);
            let port = WG_PORT.to_string();
            let endpoint = format!("{}:{WG_PORT}", peer.outer);
            ns.exec(
                "wg",
                &[
                    "set",
                    &dev,
                    "private-key",
                    key_file.to_str().expect("utf-8 path"),
                    "listen-port",
                    &port,
                    "peer",
                    peer_public,
                    "allowed-ips",
                    "0.0.0.0/0",
                    "endpoint",
                    &endpoint,
                ],
            );
            ns.ip(&format!(
                "addr add {}/32 peer {}/32 dev {dev}",
                me.tunnel, peer.tunnel
            ));
            ns.ip(&format!("link set {dev} up"));
            ns.ip(&format!("route add {} dev {dev}", peer.lan));
        }
        self.procs.extend(procs);
    }

    /// Waits until host A pings host B (the tunnel is up both ways).
    pub fn wait_connected(&self) {
        wait_until("LAN-to-LAN ping", SETUP, || {
            let out = self
                .host_a
                .run("ping", &["-n", "-c", "1", "-W", "1", B.host]);
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{}\ngw-a routes:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    self.gw_a.routes()
                ))
            }
        });
    }

    /// Waits until something listens on host B's port ([`IPERF_PORT`]), as
    /// `ss FLAGS` (`-Hltn`: TCP, `-Hlun`: UDP) lists it.
    fn wait_listening(&self, what: &str, flags: &str) {
        wait_until(
            &format!("{what} to listen"),
            Duration::from_secs(10),
            || {
                let out = self.host_b.run("ss", &[flags]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if text.contains(&format!(":{IPERF_PORT} ")) {
                    Ok(())
                } else {
                    Err(text)
                }
            },
        );
    }

    /// An iperf3 run from host A to host B with extra client `args`; returns
    /// iperf3's JSON report. A fresh one-off server serves each run.
    fn iperf(&self, seconds: u32, args: &[&str]) -> Value {
        let server = Proc::spawn(
            &self.host_b,
            "iperf3 server",
            &["iperf3", "-s", "-1", "-p", IPERF_PORT],
            &[],
            &self.dir.join("iperf3-server.log"),
        );
        self.wait_listening("iperf3 server", "-Hltn");
        let secs = seconds.to_string();
        let mut argv = vec![
            "-c",
            B.host,
            "-p",
            IPERF_PORT,
            "-J",
            "--connect-timeout",
            "3000",
            "-t",
            &secs,
        ];
        argv.extend_from_slice(args);
        let report = run_to_file(
            &self.host_a,
            "iperf3",
            &argv,
            &self.dir.join("iperf3-client.json"),
            Duration::from_secs(u64::from(seconds) + 20),
        );
        drop(server);
        let json: Value = serde_json::from_str(&report).unwrap_or_else(|e| {
            panic!(
                "iperf3 {argv:?}: unreadable report ({e}): {}",
                last_line(&report)
            )
        });
        if let Some(error) = json.get("error").and_then(Value::as_str) {
            panic!("iperf3 {argv:?}: {error}");
        }
        json
    }

    /// TCP from host A to host B for `seconds` over `streams` connections.
    pub fn tcp(&self, seconds: u32, streams: u32) -> TcpRun {
        let p = streams.to_string();
        let json = self.iperf(seconds, &["-P", &p]);
        let sum = &json["end"]["sum_received"];
        TcpRun {
            bits_per_second: sum["bits_per_second"].as_f64().unwrap_or(0.0),
            bytes: sum["bytes"].as_f64().unwrap_or(0.0),
        }
    }

    /// A UDP run from host A to host B with `udp-load` (see [`UdpLoad`])
    /// of datagrams of `payload` bytes at `rate` payload bit/s (`None`: as
    /// fast as the sender can).
    pub fn udp_load(
        &self,
        load: &UdpLoad<'_>,
        seconds: u32,
        payload: u32,
        rate: Option<f64>,
    ) -> UdpRun {
        let program = load.program;
        let timeout = (seconds + 30).to_string();
        let out_path = self.dir.join("udp-load-recv.out");
        let out = File::create(&out_path).expect("create udp-load output");
        let mut sink = self
            .host_b
            .command(program)
            .args(["recv", IPERF_PORT, "--timeout", &timeout])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("start udp-load recv");
        self.wait_listening("udp-load sink", "-Hlun");
        let to = format!("{}:{IPERF_PORT}", B.host);
        let rate_arg = rate.map_or("0".to_string(), |r| format!("{}", r.round() as u64));
        let (len, secs, flows) = (
            payload.to_string(),
            seconds.to_string(),
            load.flows.to_string(),
        );
        let mut argv = vec![
            "send",
            &to,
            "--len",
            &len,
            "--rate",
            &rate_arg,
            "--seconds",
            &secs,
            "--flows",
            &flows,
        ];
        if load.gso {
            argv.push("--gso");
        }
        let sent = run_to_file(
            &self.host_a,
            program,
            &argv,
            &self.dir.join("udp-load-send.out"),
            Duration::from_secs(u64::from(seconds) + 20),
        );
        if !wait_or_kill(&mut sink, Duration::from_secs(10)) {
            panic!("udp-load recv did not finish after the sender");
        }
        let received = std::fs::read_to_string(&out_path).unwrap_or_default();
        let number = |text: &str, key: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("udp-load: no {key} in {text:?}"))
        };
        let sent_count = number(&sent, "sent");
        let took = number(&sent, "seconds");
        let got = number(&received, "received").min(sent_count);
        let bytes = number(&received, "bytes");
        UdpRun {
            offered: rate,
            goodput: if took > 0.0 { bytes * 8.0 / took } else { 0.0 },
            sent: sent_count,
            received: got,
            loss_percent: if sent_count > 0.0 {
                100.0 * (sent_count - got) / sent_count
            } else {
                100.0
            },
            seconds: took,
        }
    }

    /// A single-stream TCP run of `seconds` with a ping every 10 ms from
    /// host A to host B alongside it, and the machine's CPU time around it.
    pub fn tcp_loaded(&self, seconds: u32) -> LoadedRun {
        let ping_log = self.dir.join("ping.log");
        let deadline = (seconds + 30).to_string();
        let out = File::create(&ping_log).expect("create ping log");
        let mut ping = self
            .host_a
            .command("ping")
            .args(["-n", "-i", "0.01", "-w", &deadline, B.host])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("start ping");
        let before = cpu_busy_seconds();
        let start = Instant::now();
        let tcp = self.tcp(seconds, 1);
        let elapsed = start.elapsed();
        let cpu_seconds = cpu_busy_seconds() - before;
        // SIGINT, as a user's ^C: ping prints its summary and exits.
        // SAFETY: kill has no memory-safety preconditions; ping is our child.
        unsafe { libc::kill(ping.id() as libc::pid_t, libc::SIGINT) };
        wait_or_kill(&mut ping, Duration::from_secs(3));
        let text = std::fs::read_to_string(&ping_log).unwrap_or_default();
        // The first 0.2 s: the iperf3 control connection and slow start.
        let rtts = ping_rtts(&text, 20);
        let (pings_sent, pings_answered) = ping_counts(&text, 20);
        LoadedRun {
            tcp,
            rtts_ms: rtts,
            pings_sent,
            pings_answered,
            cpu_seconds,
            elapsed,
        }
    }
}

/// How [`BenchLab::udp_load`] loads the path: `udp-load`
/// (`src/bin/udp-load.rs`), which unlike iperf3 batches its syscalls and so
/// is not the bottleneck of the path.
#[derive(Debug, Clone, Copy)]
pub struct UdpLoad<'a> {
    /// The program.
    pub program: &'a str,
    /// Flows (source ports), round-robin.
    pub flows: u32,
    /// Runs of datagrams handed to the kernel in one buffer (`UDP_SEGMENT`).
    pub gso: bool,
}

/// What one TCP run carried (the receiver's count).
#[derive(Debug, Clone, Copy)]
pub struct TcpRun {
    /// Received bits per second, all streams.
    pub bits_per_second: f64,
    /// Received bytes.
    pub bytes: f64,
}

/// What one UDP run carried.
#[derive(Debug, Clone, Copy)]
pub struct UdpRun {
    /// The offered rate, bit/s (`None`: unlimited).
    pub offered: Option<f64>,
    /// Received payload bits per second.
    pub goodput: f64,
    /// Datagrams sent.
    pub sent: f64,
    /// Datagrams received.
    pub received: f64,
    /// Lost datagrams, percent of those sent.
    pub loss_percent: f64,
    /// The receiver's measuring time.
    pub seconds: f64,
}

impl UdpRun {
    /// Received datagrams per second.
    pub fn received_pps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.received / self.seconds
        } else {
            0.0
        }
    }
}

/// A single-stream TCP run with pings and CPU time alongside.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    /// The transfer.
    pub tcp: TcpRun,
    /// Round-trip times of the pings answered during it, ms.
    pub rtts_ms: Vec<f64>,
    /// Pings sent during it, as counted by [`ping_counts`].
    pub pings_sent: u64,
    /// Pings answered.
    pub pings_answered: u64,
    /// User + system CPU seconds of the whole machine during it (all
    /// cores; nice, irq and softirq included).
    pub cpu_seconds: f64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl LoadedRun {
    /// CPU seconds per gigabit carried (= cores busy per Gbit/s).
    pub fn cpu_per_gbit(&self) -> Option<f64> {
        let gbit = self.tcp.bytes * 8.0 / 1e9;
        (gbit > 0.0).then(|| self.cpu_seconds / gbit)
    }
}

/// A wireguard key pair: (private, public), base64.
fn wg_keypair() -> (String, String) {
    let private = crate::netns::run_checked(Command::new("wg").arg("genkey"))
        .trim()
        .to_string();
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run wg pubkey");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("{private}\n").as_bytes())
            .expect("write to wg pubkey");
    }
    let out = child.wait_with_output().expect("wg pubkey");
    assert!(out.status.success(), "wg pubkey failed");
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (private, public)
}

/// Runs `program args` in `ns` with its standard output in `path`; kills it
/// (by PID) after `timeout`. Returns what it wrote.
fn run_to_file(ns: &Netns, program: &str, args: &[&str], path: &Path, timeout: Duration) -> String {
    let out = File::create(path).expect("create output file");
    let mut child = ns
        .command(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    if !wait_or_kill(&mut child, timeout) {
        panic!("{program} {args:?} did not finish within {timeout:?}");
    }
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits up to `timeout` for `child`, then kills it by PID. Whether it
/// exited by itself.
fn wait_or_kill(child: &mut std::process::Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// The RTTs (ms) of ping's reply lines, skipping icmp_seq ≤ `skip`.
pub fn ping_rtts(text: &str, skip: u64) -> Vec<f64> {
    text.lines()
        .filter_map(|line| {
            let seq: u64 = field(line, "icmp_seq=")?.parse().ok()?;
            let rtt: f64 = field(line, "time=")?.parse().ok()?;
            (seq > skip).then_some(rtt)
        })
        .collect()
}

/// (sent, answered) pings after icmp_seq `skip`, counting as sent only
/// those up to the last one answered (the ones after it were still in
/// flight when ping was stopped).
pub fn ping_counts(text: &str, skip: u64) -> (u64, u64) {
    let seqs: Vec<u64> = text
        .lines()
        .filter(|line| line.contains("time="))
        .filter_map(|line| field(line, "icmp_seq=")?.parse().ok())
        .filter(|&seq| seq > skip)
        .collect();
    let last = seqs.iter().copied().max().unwrap_or(skip);
    (last - skip, seqs.len() as u64)
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split_whitespace().next()
}

/// User + nice + system + irq + softirq time of all CPUs, in seconds, from
/// `/proc/stat` (the whole machine: the namespaces share it).
pub fn cpu_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .expect("/proc/stat has a cpu line");
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| ticks.get(i)).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy / hz
}

/// The last non-empty line of `text` ("no output" if none).
fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_string()
}

/// `$VPNGW_BIN`, or `target/release/vpngw` in the workspace (in
/// `$CARGO_TARGET_DIR` if that is set). A relative path that does not exist
/// from here (cargo runs benches in the package's directory) is taken from
/// the workspace root.
pub fn vpngw_binary() -> PathBuf {
    let root = workspace_root();
    let path = match std::env::var_os("VPNGW_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => PathBuf::from(dir).join("release/vpngw"),
            None => PathBuf::from("target/release/vpngw"),
        },
    };
    if path.is_absolute() {
        path
    } else if path.exists() {
        std::env::current_dir().map_or(path.clone(), |cwd| cwd.join(&path))
    } else {
        root.join(path)
    }
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Whether `binary` is there (else says how to build it, as `bench`); warns
/// when a source file is newer than it.
pub fn check_vpngw_binary(bench: &str, binary: &Path) -> bool {
    if !binary.is_file() {
        eprintln!(
            "{bench}: no vpngw binary at {}\n  build it with `cargo build --release -p vpngw`, \
             or point VPNGW_BIN at one",
            binary.display()
        );
        return false;
    }
    if let Some(newer) = newer_source(binary) {
        eprintln!(
            "{bench}: warning: {} is older than {}: rebuild it with `cargo build --release -p vpngw`",
            binary.display(),
            newer.display()
        );
    }
    true
}

/// A source file of the workspace's crates (`crates/*/src`) newer than
/// `binary`, if any.
fn newer_source(binary: &Path) -> Option<PathBuf> {
    fn newest(dir: &Path, best: &mut Option<(SystemTime, PathBuf)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                newest(&path, best);
            } else if path.extension().is_some_and(|e| e == "rs") {
                if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                    if best.as_ref().is_none_or(|(t, _)| modified > *t) {
                        *best = Some((modified, path));
                    }
                }
            }
        }
    }
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    let mut best = None;
    for krate in std::fs::read_dir(workspace_root().join("crates"))
        .ok()?
        .flatten()
    {
        newest(&krate.path().join("src"), &mut best);
    }
    best.filter(|(t, _)| *t > built).map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_lines_are_parsed() {
        let text = "PING 10.2.0.2 (10.2.0.2) 56(84) bytes of data.\n\
            64 bytes from 10.2.0.2: icmp_seq=1 ttl=62 time=0.512 ms\n\
            64 bytes from 10.2.0.2: icmp_seq=2 ttl=62 time=1.25 ms\n\
            64 bytes from 10.2.0.2: icmp_seq=3 ttl=62 time=12.0 ms\n\
            \n--- 10.2.0.2 ping statistics ---\n\
            3 packets transmitted, 3 received, 0% packet loss, time 20ms\n";
        assert_eq!(ping_rtts(text, 0), vec![0.512, 1.25, 12.0]);
        assert_eq!(ping_rtts(text, 1), vec![1.25, 12.0]);
        assert_eq!(ping_counts(text, 0), (3, 3));
        assert_eq!(ping_counts(text, 1), (2, 2));
        let lossy = text.replace(
            "icmp_seq=2 ttl=62 time=1.25 ms",
            "From 10.1.0.1 icmp_seq=2 lost",
        );
        assert_eq!(ping_counts(&lossy, 0), (3, 2));
    }
}
