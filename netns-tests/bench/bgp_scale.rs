//! The BGP scale benchmark: a full table into vpngw and into BIRD, in one
//! run, one table out. See `docs/bgp-scale.md`.
//!
//! A feeder (`netns_tests::bgp_feed`, a small BGP speaker on a thread of
//! this process) sends N prefixes shaped like the public IPv4 table to the
//! receiver, which installs them into its kernel and passes them on to a
//! sink (a second peer, transit). The bench times, from the feeder's first
//! byte: all N in the receiver's Loc-RIB, all N in its kernel table (a
//! netlink watcher in the receiver's namespace), all N at the sink; then
//! the feeder withdraws everything and the same three are timed to zero.
//! RSS of the receiver before and with the table gives the memory per
//! prefix.
//!
//! ```text
//!  vpngw:  [feeder + vpngw F] ==ESP== [vpngw R] ==ESP== [vpngw S + sink]
//!          static-mode tunnels; the feeder and sink speak BGP to R across them
//!  BIRD:   [feeder] --veth-- [BIRD R] --veth-- [sink]
//! ```
//!
//! Then the flap: two feeders announce the same table over two tunnels (an
//! active-active pair: ECMP, one nexthop group), and one tunnel's gateway
//! stops (its IKE DELETE reaches R). Timed from the stop: the kernel's
//! group losing the member (every route moved at once), the last route
//! still pointing at the old tunnel gone, and the sink hearing the new
//! path for every prefix.
//!
//! ```text
//! cargo build --release -p vpngw
//! cargo bench -p vpngw-netns-tests --bench bgp_scale                 # 100k and 1M, flap with 100k
//! cargo bench -p vpngw-netns-tests --bench bgp_scale -- --smoke      # 10k, flap with 10k
//! cargo bench -p vpngw-netns-tests --bench bgp_scale -- 10000 200000 [--no-bird] [--no-flap]
//! ```
//!
//! As root. The vpngw binary is `$VPNGW_BIN`, by default
//! `target/release/vpngw` in the workspace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use vpngw_netns_tests::bench_lab::{check_vpngw_binary, vpngw_binary};
use vpngw_netns_tests::bgp_feed::{FeedTable, Feeder, Sink};
use vpngw_netns_tests::netns::unique_id;
use vpngw_netns_tests::route_watch::RouteWatch;
use vpngw_netns_tests::{veth, wait_until, Netns, Proc, WorkDir};

const PSK: &str = "bgp-scale-bench-psk-0123456789";
const RECEIVER_AS: u32 = 65515;
const FEEDER_AS: u32 = 65010;
const SINK_AS: u32 = 65020;
/// vpngw's route protocol number and BIRD's (RTPROT_BIRD).
const PROTO_VPNGW: u8 = 200;
const PROTO_BIRD: u8 = 12;
const MAIN_TABLE: u32 = 254;
const SEED: u64 = 20_261_203;
/// Generous bound on any one phase (1M prefixes on a slow machine).
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);
/// The smoke run fails if the kernel takes longer than this for 10k
/// prefixes (an order of magnitude above what it takes).
const SMOKE_BOUND: Duration = Duration::from_secs(10);

/// One receiver's times and memory for one table size.
#[derive(Debug, Clone, Default)]
struct Row {
    loc_rib: Option<Duration>,
    kernel: Option<Duration>,
    transit: Option<Duration>,
    withdraw_kernel: Option<Duration>,
    withdraw_transit: Option<Duration>,
    rss_base_kib: u64,
    rss_kib: u64,
    peak_kib: u64,
    note: String,
}

/// The flap's times.
#[derive(Debug, Clone, Default)]
struct Flap {
    group_moved: Option<Duration>,
    members_before: usize,
    members_after: usize,
    routes_after: usize,
    transit: Option<Duration>,
    daemon_log: String,
}

fn main() -> ExitCode {
    vpngw_netns_tests::require_root();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let no_bird = args.iter().any(|a| a == "--no-bird");
    let no_flap = args.iter().any(|a| a == "--no-flap");
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = if smoke {
            vec![10_000]
        } else {
            vec![100_000, 1_000_000]
        };
    }
    let flap_size = if smoke { 10_000 } else { 100_000 };
    let binary = vpngw_binary();
    if !check_vpngw_binary("bgp_scale", &binary) {
        return ExitCode::FAILURE;
    }
    vpngw_netns_tests::require_program("bird", "bird2");

    let mut rows = Vec::new();
    for &n in &sizes {
        eprintln!("bgp_scale: generating {n} prefixes");
        let table = FeedTable::generate(n, SEED);
        eprintln!("bgp_scale: {n} prefixes into vpngw");
        let v = vpngw_run(&binary, &table);
        eprintln!("bgp_scale:   {v:?}");
        let b = if no_bird {
            None
        } else {
            eprintln!("bgp_scale: {n} prefixes into BIRD");
            let b = bird_run(&table);
            eprintln!("bgp_scale:   {b:?}");
            Some(b)
        };
        rows.push((n, v, b));
    }
    let flap = if no_flap {
        None
    } else {
        eprintln!("bgp_scale: flap with {flap_size} prefixes on two tunnels");
        let table = FeedTable::generate(flap_size, SEED);
        let f = flap_run(&binary, &table);
        eprintln!("bgp_scale:   {f:?}");
        Some((flap_size, f))
    };

    print_table(&rows, flap.as_ref());

    let mut ok = true;
    for (n, v, _) in &rows {
        if v.kernel.is_none() || v.transit.is_none() || v.withdraw_kernel.is_none() {
            eprintln!("bgp_scale: FAIL: vpngw did not finish every phase with {n} prefixes");
            ok = false;
        }
        if smoke && v.kernel.is_some_and(|k| k > SMOKE_BOUND) {
            eprintln!("bgp_scale: FAIL: {n} prefixes took longer than {SMOKE_BOUND:?}");
            ok = false;
        }
    }
    if let Some((n, f)) = &flap {
        if f.group_moved.is_none()
            || f.transit.is_none()
            || f.routes_after != *n
            || f.members_after != 1
        {
            eprintln!(
                "bgp_scale: FAIL: the flap did not move every route to the other tunnel in one group change"
            );
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// RSS and peak RSS of a process, KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Prints the mappings of `pid` with their resident size (profiling aid).
fn print_smaps(pid: u32) {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return;
    };
    let mut name = String::new();
    for line in smaps.lines() {
        if line.contains('-') && !line.starts_with(|c: char| c.is_ascii_uppercase()) {
            name = line.to_string();
        } else if let Some(kb) = line.strip_prefix("Rss:") {
            let kb: u64 = kb
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse()
                .unwrap_or(0);
            if kb > 256 {
                eprintln!("smaps: {kb:>8} kB  {name}");
            }
        }
    }
}

/// Polls `count` every 20 ms until it returns `want`; the time the first
/// answer that said so came back (an upper bound, late by at most one
/// poll's round trip).
fn poll_until(
    timeout: Duration,
    want: usize,
    count: impl Fn() -> Option<usize>,
) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if count() == Some(want) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn since(t0: Instant, t: Option<Instant>) -> Option<Duration> {
    t.map(|t| t.saturating_duration_since(t0))
}

// --- vpngw -----------------------------------------------------------------

/// A vpngw daemon in a namespace, with its control socket.
struct Daemon {
    proc: Proc,
    socket: PathBuf,
    binary: PathBuf,
}

impl Daemon {
    fn start(binary: &Path, ns: &Netns, dir: &WorkDir, name: &str, config: &str) -> Daemon {
        let socket = dir.join(&format!("{name}.sock"));
        let conf = dir.write(
            &format!("{name}.toml"),
            &format!(
                "[gateway]\ncontrol_socket = \"{}\"\n{config}",
                socket.display()
            ),
        );
        // `BGP_SCALE_WRAP="heaptrack -o /tmp/r"` (or a `perf record ... --`)
        // runs the receiver under a profiler.
        let wrap = match std::env::var("BGP_SCALE_WRAP") {
            Ok(w) if name == "r" => w,
            _ => String::new(),
        };
        let mut argv: Vec<&str> = wrap.split_whitespace().collect();
        argv.extend([
            binary.to_str().unwrap(),
            "run",
            "--config",
            conf.to_str().unwrap(),
        ]);
        let mut proc = Proc::spawn(
            ns,
            &format!("vpngw {name}"),
            &argv,
            &[("RUST_LOG", "info")],
            &dir.join(&format!("{name}.log")),
        );
        wait_until("vpngw to listen", Duration::from_secs(20), || {
            if proc.log().contains("IKE listening") {
                Ok(())
            } else if !proc.is_running() {
                panic!("vpngw {name} exited: {}", proc.log());
            } else {
                Err(proc.log())
            }
        });
        Daemon {
            proc,
            socket,
            binary: binary.to_path_buf(),
        }
    }

    fn json(&self, command: &str) -> Option<serde_json::Value> {
        let out = Command::new(&self.binary)
            .args(["--socket", self.socket.to_str().unwrap(), command, "--json"])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    fn loc_rib(&self) -> Option<usize> {
        self.json("bgp")?["loc_rib"].as_u64().map(|n| n as usize)
    }

    fn tunnels_up(&self) -> bool {
        self.json("status").is_some_and(|s| {
            s["connections"]
                .as_array()
                .is_some_and(|c| c.iter().all(|c| c["tunnel_up"] == true))
        })
    }
}

fn psk_file(dir: &WorkDir) -> PathBuf {
    let psk = dir.write("psk", PSK);
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
    psk
}

/// R's connection to one outer gateway, with eBGP to the speaker behind it.
fn r_connection(
    psk: &Path,
    name: &str,
    outer: (Ipv4Addr, Ipv4Addr),
    tunnel: (Ipv4Addr, Ipv4Addr),
    peer_as: u32,
) -> String {
    format!(
        r#"
[[connection]]
name = "{name}"
local_address = "{}"
remote_address = "{}"
psk_file = "{}"
initiate = false
tunnel_address = "{}"
tunnel_peer = "{}"
[connection.bgp]
peer_asn = {peer_as}
passive = true
max_prefixes = 4000000
"#,
        outer.0,
        outer.1,
        psk.display(),
        tunnel.0,
        tunnel.1,
    )
}

/// An outer gateway: one static-mode connection to R whose TUN device
/// carries the feeder's or sink's BGP session.
fn outer_config(psk: &Path, outer: (Ipv4Addr, Ipv4Addr), tunnel: (Ipv4Addr, Ipv4Addr)) -> String {
    format!(
        r#"local_prefixes = []

[[connection]]
name = "r"
local_address = "{}"
remote_address = "{}"
psk_file = "{}"
tunnel_address = "{}"
tunnel_peer = "{}"
static_routes = []
"#,
        outer.0,
        outer.1,
        psk.display(),
        tunnel.0,
        tunnel.1,
    )
}

/// The underlay link n between R and an outer gateway: 198.51.100.(4n+1) on
/// R, .(4n+2) outside; the tunnel's /32s 169.254.21.(4n+1) / (4n+2).
fn link(n: u8) -> ((Ipv4Addr, Ipv4Addr), (Ipv4Addr, Ipv4Addr)) {
    (
        (
            Ipv4Addr::new(198, 51, 100, 4 * n + 1),
            Ipv4Addr::new(198, 51, 100, 4 * n + 2),
        ),
        (
            Ipv4Addr::new(169, 254, 21, 4 * n + 1),
            Ipv4Addr::new(169, 254, 21, 4 * n + 2),
        ),
    )
}

/// Namespaces and daemons of one vpngw run. Field order is drop order.
struct VpngwLab {
    outer: Vec<Daemon>,
    r: Daemon,
    outer_ns: Vec<Netns>,
    r_ns: Netns,
    _dir: WorkDir,
}

impl VpngwLab {
    /// R plus one outer gateway per entry of `peers` (name, AS).
    fn start(binary: &Path, peers: &[(&str, u32)]) -> VpngwLab {
        let id = unique_id();
        let dir = WorkDir::new(&id);
        let psk = psk_file(&dir);
        let r_ns = Netns::new(&id, "r");
        let mut r_conf = format!(
            "asn = {RECEIVER_AS}\nrouter_id = \"192.0.2.1\"\nlocal_prefixes = [\"192.0.2.0/24\"]\n"
        );
        let mut outer_ns = Vec::new();
        let mut outer = Vec::new();
        for (i, (name, asn)) in peers.iter().enumerate() {
            let (under, tun) = link(i as u8);
            let ns = Netns::new(&id, name);
            veth(&r_ns, &format!("u{i}"), &ns, "u0");
            r_ns.ip(&format!("addr add {}/30 dev u{i}", under.0));
            ns.ip(&format!("addr add {}/30 dev u0", under.1));
            r_conf.push_str(&r_connection(&psk, name, under, tun, *asn));
            outer_ns.push(ns);
        }
        let r = Daemon::start(binary, &r_ns, &dir, "r", &r_conf);
        for (i, ns) in outer_ns.iter().enumerate() {
            let (under, tun) = link(i as u8);
            let conf = outer_config(&psk, (under.1, under.0), (tun.1, tun.0));
            outer.push(Daemon::start(binary, ns, &dir, peers[i].0, &conf));
        }
        wait_until("every tunnel up", Duration::from_secs(30), || {
            if r.tunnels_up() {
                Ok(())
            } else {
                Err(r.proc.log())
            }
        });
        VpngwLab {
            outer,
            r,
            outer_ns,
            r_ns,
            _dir: dir,
        }
    }

    /// The feeder or sink address behind outer gateway `i`, and R's.
    fn session(i: usize) -> (Ipv4Addr, Ipv4Addr) {
        let (_, tun) = link(i as u8);
        (tun.1, tun.0)
    }
}

fn vpngw_run(binary: &Path, table: &FeedTable) -> Row {
    let lab = VpngwLab::start(binary, &[("feed", FEEDER_AS), ("sink", SINK_AS)]);
    let watch = RouteWatch::start(&lab.r_ns, PROTO_VPNGW, MAIN_TABLE);
    let (f_local, f_remote) = VpngwLab::session(0);
    let (s_local, s_remote) = VpngwLab::session(1);
    let feeder = Feeder::connect(
        &lab.outer_ns[0],
        f_local,
        f_remote,
        FEEDER_AS,
        Duration::from_secs(30),
    );
    let sink = Sink::connect(
        &lab.outer_ns[1],
        s_local,
        s_remote,
        SINK_AS,
        Duration::from_secs(30),
    );
    // R's own prefix reaches the sink first: the sessions are up.
    sink.wait(Duration::from_secs(10), |s| !s.routes.is_empty());
    let pid = lab.r.proc.pid();
    let row = measure(table, pid, &feeder, &sink, &watch, || lab.r.loc_rib());
    drop((feeder, sink, watch));
    drop(lab);
    row
}

/// Feeds `table` to the receiver `pid` and withdraws it again, timing each
/// phase (its Loc-RIB by `loc_rib`, its kernel by `watch`, the transit by
/// `sink`, which starts with the receiver's own prefix) and its RSS.
fn measure(
    table: &FeedTable,
    pid: u32,
    feeder: &Feeder,
    sink: &Sink,
    watch: &RouteWatch,
    loc_rib: impl Fn() -> Option<usize> + Sync,
) -> Row {
    let n = table.len();
    let (base, _) = rss_kib(pid);
    let profiling = std::env::var_os("BGP_SCALE_KILL_LOADED").is_some();
    if profiling {
        print_smaps(pid);
    }
    let mut row = Row {
        rss_base_kib: base,
        ..Row::default()
    };
    let t0 = Instant::now();
    let loc = std::thread::scope(|scope| {
        let f = scope.spawn(|| feeder.announce(table));
        let loc = poll_until(PHASE_TIMEOUT, n, &loc_rib);
        f.join().unwrap();
        loc
    });
    row.loc_rib = since(t0, loc);
    row.kernel = since(t0, watch.wait(PHASE_TIMEOUT, |s| s.routes.len() >= n));
    row.transit = since(t0, sink.wait(PHASE_TIMEOUT, |s| s.routes.len() > n));
    std::thread::sleep(Duration::from_millis(500));
    (row.rss_kib, row.peak_kib) = rss_kib(pid);
    if profiling {
        std::thread::sleep(Duration::from_secs(5));
        if let Ok(out) = Command::new("gdb")
            .args(["-p", &pid.to_string(), "-batch", "-ex", "p mallinfo2()"])
            .output()
        {
            for l in String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("arena"))
            {
                eprintln!("mallinfo2: {l}");
            }
        }
        print_smaps(pid);
        // For a heap profiler's "leaked" report: what is live with the
        // table loaded.
        // (Under BGP_SCALE_WRAP the profiler's child is the daemon.)
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &pid.to_string()])
            .status();
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        std::thread::sleep(Duration::from_secs(2));
        return row;
    }
    let t1 = Instant::now();
    feeder.withdraw(table);
    row.withdraw_kernel = since(t1, watch.wait(PHASE_TIMEOUT, |s| s.routes.is_empty()));
    row.withdraw_transit = since(t1, sink.wait(PHASE_TIMEOUT, |s| s.routes.len() == 1));
    if watch.overflowed() {
        row.note = "netlink watcher overflowed".into();
    }
    row
}

// --- BIRD ------------------------------------------------------------------

fn bird_run(table: &FeedTable) -> Row {
    let id = unique_id();
    let dir = WorkDir::new(&id);
    let r = Netns::new(&id, "bird-r");
    let f = Netns::new(&id, "bird-f");
    let s = Netns::new(&id, "bird-s");
    veth(&r, "feed", &f, "u0");
    veth(&r, "sink", &s, "u0");
    r.ip("addr add 10.201.0.2/30 dev feed");
    f.ip("addr add 10.201.0.1/30 dev u0");
    r.ip("addr add 10.202.0.2/30 dev sink");
    s.ip("addr add 10.202.0.1/30 dev u0");
    let conf = dir.write(
        "bird.conf",
        &format!(
            r#"router id 10.201.0.2;
protocol device {{ }}
protocol kernel {{
  ipv4 {{ import none; export filter {{ if source = RTS_BGP then accept; reject; }}; }};
  learn off;
}}
protocol static own {{ ipv4; route 192.0.2.0/24 blackhole; }}
protocol bgp feed {{
  local 10.201.0.2 as {RECEIVER_AS};
  neighbor 10.201.0.1 as {FEEDER_AS};
  passive on;
  ipv4 {{ import all; export none; }};
}}
protocol bgp sink {{
  local 10.202.0.2 as {RECEIVER_AS};
  neighbor 10.202.0.1 as {SINK_AS};
  passive on;
  ipv4 {{ import none; export all; }};
}}
"#
        ),
    );
    let ctl = dir.join("bird.ctl");
    let mut bird = Proc::spawn(
        &r,
        "bird",
        &[
            "bird",
            "-f",
            "-c",
            conf.to_str().unwrap(),
            "-s",
            ctl.to_str().unwrap(),
            "-P",
            dir.join("bird.pid").to_str().unwrap(),
        ],
        &[],
        &dir.join("bird.log"),
    );
    wait_until("BIRD's control socket", Duration::from_secs(10), || {
        if ctl.exists() {
            Ok(())
        } else if !bird.is_running() {
            panic!("bird exited: {}", bird.log());
        } else {
            Err(bird.log())
        }
    });
    let watch = RouteWatch::start(&r, PROTO_BIRD, MAIN_TABLE);
    let feeder = Feeder::connect(
        &f,
        Ipv4Addr::new(10, 201, 0, 1),
        Ipv4Addr::new(10, 201, 0, 2),
        FEEDER_AS,
        Duration::from_secs(30),
    );
    let sink = Sink::connect(
        &s,
        Ipv4Addr::new(10, 202, 0, 1),
        Ipv4Addr::new(10, 202, 0, 2),
        SINK_AS,
        Duration::from_secs(30),
    );
    sink.wait(Duration::from_secs(10), |s| !s.routes.is_empty());
    let birdc_count = || -> Option<usize> {
        let out = Command::new("birdc")
            .args([
                "-s",
                ctl.to_str().unwrap(),
                "show",
                "route",
                "count",
                "protocol",
                "feed",
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "N of N routes for N networks in table master4"
        text.lines()
            .find(|l| l.contains("routes for"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let row = measure(table, bird.pid(), &feeder, &sink, &watch, birdc_count);
    drop((feeder, sink, watch));
    bird.stop();
    row
}

// --- the flap ----------------------------------------------------------------

fn flap_run(binary: &Path, table: &FeedTable) -> Flap {
    let n = table.len();
    // Feeder 1 has the lower router id (its /32), so its path is the best
    // of the ECMP set and the one the sink hears; it is the one that fails.
    let mut lab = VpngwLab::start(
        binary,
        &[
            ("feed1", FEEDER_AS + 1),
            ("feed2", FEEDER_AS + 2),
            ("sink", SINK_AS),
        ],
    );
    if let Ok(v) = std::env::var("BGP_SCALE_COMPAT") {
        lab.r_ns.sysctl("net.ipv4.nexthop_compat_mode", &v);
    }
    let watch = RouteWatch::start(&lab.r_ns, PROTO_VPNGW, MAIN_TABLE);
    let feeders: Vec<Feeder> = (0..2)
        .map(|i| {
            let (local, remote) = VpngwLab::session(i);
            Feeder::connect(
                &lab.outer_ns[i],
                local,
                remote,
                FEEDER_AS + 1 + i as u32,
                Duration::from_secs(30),
            )
        })
        .collect();
    let (s_local, s_remote) = VpngwLab::session(2);
    let sink = Sink::connect(
        &lab.outer_ns[2],
        s_local,
        s_remote,
        SINK_AS,
        Duration::from_secs(30),
    );
    for f in &feeders {
        f.announce(table);
    }
    let mut flap = Flap::default();
    let settled = watch.wait(PHASE_TIMEOUT, |s| {
        s.routes.len() >= n && s.members.values().any(|m| m.len() == 2)
    });
    let heard = sink.wait(PHASE_TIMEOUT, |s| {
        s.routes.len() > n && s.routes.values().filter(|&&v| v == FEEDER_AS + 1).count() == n
    });
    if settled.is_none() || heard.is_none() {
        flap.daemon_log = lab.r.proc.log();
        return flap;
    }
    // Let the route programmer finish whatever it still has queued.
    std::thread::sleep(Duration::from_secs(1));
    let (group, before) = watch.with(|s| {
        s.members
            .iter()
            .find(|(_, m)| m.len() == 2)
            .map(|(g, m)| (*g, m.len()))
            .unwrap()
    });
    flap.members_before = before;

    // Feeder 1's gateway stops: its IKE DELETE tells R the tunnel is gone.
    let t0 = Instant::now();
    lab.outer[0].proc.terminate();
    let moved = watch.wait(Duration::from_secs(30), |s| {
        s.groups
            .iter()
            .any(|(t, g, m)| *t >= t0 && *g == group && m.len() < 2)
    });
    flap.group_moved = moved.and_then(|_| {
        watch.with(|s| {
            s.groups
                .iter()
                .find(|(t, g, m)| *t >= t0 && *g == group && m.len() < 2)
                .map(|(t, _, m)| {
                    flap.members_after = m.len();
                    t.saturating_duration_since(t0)
                })
        })
    });
    flap.transit = since(
        t0,
        sink.wait(PHASE_TIMEOUT, |s| {
            s.routes.values().filter(|&&v| v == FEEDER_AS + 2).count() == n
        }),
    );
    std::thread::sleep(Duration::from_secs(2));
    flap.routes_after = watch.count();
    drop((feeders, sink, watch));
    lab.outer[0].proc.stop();
    drop(lab);
    flap
}

// --- the table -------------------------------------------------------------------

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "—".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn ratio(v: Option<Duration>, b: Option<Duration>) -> String {
    match (v, b) {
        (Some(v), Some(b)) if b.as_secs_f64() > 0.0 => {
            format!("{:.2}×", v.as_secs_f64() / b.as_secs_f64())
        }
        _ => "—".into(),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn print_table(rows: &[(usize, Row, Option<Row>)], flap: Option<&(usize, Flap)>) {
    println!();
    println!("| prefixes | receiver | Loc-RIB | kernel | transit (sink has all) | withdraw: kernel | withdraw: sink | RSS (idle → loaded, peak) | bytes/prefix |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (n, v, b) in rows {
        for (name, r) in [("vpngw", Some(v)), ("BIRD", b.as_ref())] {
            let Some(r) = r else { continue };
            let per = (r.rss_kib.saturating_sub(r.rss_base_kib) * 1024) as f64 / *n as f64;
            println!(
                "| {n} | {name} | {} | {} | {} | {} | {} | {} → {} ({}) | {per:.0} |{}",
                secs(r.loc_rib),
                secs(r.kernel),
                secs(r.transit),
                secs(r.withdraw_kernel),
                secs(r.withdraw_transit),
                mib(r.rss_base_kib),
                mib(r.rss_kib),
                mib(r.peak_kib),
                if r.note.is_empty() {
                    String::new()
                } else {
                    format!(" {}", r.note)
                },
            );
        }
        if let Some(b) = b {
            println!(
                "| {n} | vpngw / BIRD | {} | {} | {} | {} | {} | {} | |",
                ratio(v.loc_rib, b.loc_rib),
                ratio(v.kernel, b.kernel),
                ratio(v.transit, b.transit),
                ratio(v.withdraw_kernel, b.withdraw_kernel),
                ratio(v.withdraw_transit, b.withdraw_transit),
                if b.rss_kib > 0 {
                    format!("{:.2}×", v.rss_kib as f64 / b.rss_kib as f64)
                } else {
                    "—".into()
                },
            );
        }
    }
    if let Some((n, f)) = flap {
        println!();
        println!("| flap: {n} prefixes on two tunnels, one stops | time from the stop |");
        println!("|---|---:|");
        println!(
            "| kernel: the ECMP group loses the tunnel ({} → {} members; every route moves with it) | {} |",
            f.members_before,
            f.members_after,
            f.group_moved
                .map_or_else(|| "—".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3)),
        );
        println!(
            "| sink: the new path for all {n} prefixes | {} |",
            secs(f.transit)
        );
        println!("| routes in the kernel afterwards | {} |", f.routes_after);
        if !f.daemon_log.is_empty() {
            eprintln!("flap did not settle; R's log:\n{}", f.daemon_log);
        }
    }
}
