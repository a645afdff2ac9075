//! The datapath benchmark: one topology, one run, one table.
//!
//! The same two sites (`host-a → gw-a ⇄ gw-b → host-b`, network namespaces
//! on this machine) joined five ways: plain routing over the underlay,
//! vpngw ⇄ vpngw with AES-GCM-128 and with AES-GCM-256, strongSwan ⇄
//! strongSwan (kernel-libipsec: ESP in user space, AES-GCM-256) and
//! wireguard-go ⇄ wireguard-go. For each: single-stream TCP (with pings and
//! the machine's CPU time alongside), 4-stream TCP, the highest UDP rate of
//! 1400-byte packets with < 1 % loss, and the rate of 64-byte UDP packets
//! delivered. Each figure is also given as a ratio to strongSwan's and to the
//! underlay's. See `docs/bench.md`.
//!
//! ```text
//! cargo build --release -p vpngw
//! cargo bench -p vpngw-netns-tests --bench datapath                 # full, ~12 min
//! cargo bench -p vpngw-netns-tests --bench datapath -- --smoke      # seconds
//!     [--out FILE] [--seconds N] [--runs N]
//! ```
//!
//! As root. The vpngw binary is `$VPNGW_BIN`, by default
//! `target/release/vpngw` in the workspace. Exits non-zero if a vpngw path
//! carried nothing; a path that cannot run here (a program missing,
//! wireguard-go refusing to start) says why in its row instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vpngw_netns_tests::bench_lab::{
    check_vpngw_binary, vpngw_binary, BenchLab, Datapath, LoadedRun, UdpLoad, UdpRun,
};
use vpngw_netns_tests::bench_util::{machine_busy, median, num, panic_message, percentile, Args};

/// UDP payload of the "1400-byte" packets: 1372 + 8 (UDP) + 20 (IPv4) =
/// 1400-byte IP packets, the largest that cross every tunnel here unsplit
/// (vpngw's and kernel-libipsec's TUN MTU is 1400).
const BIG_PAYLOAD: u32 = 1372;
/// UDP payload of the small packets (`iperf3 -l 64`).
const SMALL_PAYLOAD: u32 = 64;
/// The loss the UDP search accepts, percent.
const LOSS_LIMIT: f64 = 1.0;
/// Length of one step of the UDP rate search.
const SEARCH_SECONDS: u32 = 2;
/// Where the UDP search starts looking down from, if the ceiling fails.
const SEARCH_FLOOR: f64 = 100e6;
/// At most this many bisection steps...
const SEARCH_STEPS: usize = 8;
/// ...stopping once the passing and failing rates are this close.
const SEARCH_PRECISION: f64 = 1.05;
/// Full-length runs at 10 % lower rates if the one at the rate found loses
/// too much (near a saturated machine's limit, 2 s runs pass at rates a
/// 10 s run does not).
const FINAL_RETRIES: usize = 5;
/// The UDP generator and sink (`src/bin/udp-load.rs`).
const UDP_LOAD: &str = env!("CARGO_BIN_EXE_udp-load");
/// Flows of each UDP run (one source port each).
const UDP_FLOWS: u32 = 4;
/// The smoke run's fixed UDP rate.
const SMOKE_RATE: f64 = 50e6;

const FULL_PATHS: [Datapath; 5] = [
    Datapath::Underlay,
    Datapath::Vpngw { esp: "aes128gcm16" },
    Datapath::Vpngw { esp: "aes256gcm16" },
    Datapath::StrongSwan,
    Datapath::WireguardGo,
];
const SMOKE_PATHS: [Datapath; 2] = [Datapath::Underlay, Datapath::Vpngw { esp: "aes256gcm16" }];

const USAGE: &str = "usage: cargo bench -p vpngw-netns-tests --bench datapath -- \
[--smoke] [--out FILE] [--seconds N] [--runs N]
  [--paths underlay,vpngw-128,vpngw-256,strongswan,wireguard-go] [--udp-at MBIT]
  (as root; vpngw from $VPNGW_BIN, default target/release/vpngw: cargo build --release -p vpngw)";

#[derive(Debug)]
struct Options {
    smoke: bool,
    seconds: u32,
    runs: usize,
    out: Option<PathBuf>,
    vpngw: PathBuf,
    /// Only these paths (`--paths`), else all of the mode's.
    paths: Option<Vec<Datapath>>,
    /// Only one UDP 1400 B run at this rate, bit/s (`--udp-at`), for each
    /// path: for profiling one load.
    udp_at: Option<f64>,
    /// UDP runs hand the kernel runs of datagrams (`--udp-gso`).
    gso: bool,
}

impl Options {
    fn load(&self) -> UdpLoad<'static> {
        UdpLoad {
            program: UDP_LOAD,
            flows: UDP_FLOWS,
            gso: self.gso,
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // Built and run by `cargo test --all-targets`: not a test.
        println!("datapath: a benchmark, run it with `cargo bench -p vpngw-netns-tests --bench datapath` (as root)");
        return ExitCode::SUCCESS;
    }
    let opts = match parse_args(&args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("datapath: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    vpngw_netns_tests::require_root();
    if !check_vpngw_binary("datapath", &opts.vpngw) {
        return ExitCode::from(2);
    }

    let busy_before = machine_busy(Duration::from_millis(500));
    let started = Instant::now();
    let paths: &[Datapath] = match &opts.paths {
        Some(paths) => paths,
        None if opts.smoke => &SMOKE_PATHS,
        None => &FULL_PATHS,
    };
    let rows: Vec<(Datapath, Result<Figures, String>)> = paths
        .iter()
        .map(|&path| {
            if !opts.smoke {
                eprintln!("datapath: measuring {} ...", path.label());
            }
            (path, measure(path, &opts))
        })
        .collect();

    let text = report(&opts, &rows, busy_before, started.elapsed());
    println!("{text}");
    if let Some(out) = &opts.out {
        if let Err(e) = std::fs::write(out, &text) {
            eprintln!("datapath: cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    }

    let mut ok = true;
    for (path, result) in &rows {
        if let Datapath::Vpngw { .. } = path {
            match result {
                Ok(f) if f.carried => {}
                Ok(_) => {
                    eprintln!("datapath: {} carried nothing", path.label());
                    ok = false;
                }
                Err(e) => {
                    eprintln!("datapath: {}: {e}", path.label());
                    ok = false;
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut smoke = false;
    let mut out = None;
    let mut seconds = None;
    let mut runs = None;
    let mut paths = None;
    let mut udp_at = None;
    let mut gso = false;
    let mut args = Args::new(args);
    while let Some(arg) = args.next_option() {
        match arg {
            "--smoke" => smoke = true,
            "--out" => out = Some(PathBuf::from(args.value("--out")?)),
            "--seconds" => {
                seconds = Some(args.positive("--seconds", "a whole number of seconds")?);
            }
            "--runs" => runs = Some(args.positive("--runs", "a count")?),
            "--udp-gso" => gso = true,
            "--udp-at" => {
                let mbit: f64 = args.positive("--udp-at", "a rate in Mbit/s")?;
                udp_at = Some(mbit * 1e6);
            }
            "--paths" => {
                let list = args.value("--paths")?;
                let chosen = list
                    .split(',')
                    .map(|key| {
                        FULL_PATHS
                            .iter()
                            .copied()
                            .find(|p| p.key() == key.trim())
                            .ok_or_else(|| {
                                format!(
                                    "--paths: unknown path `{key}`, expected some of {}",
                                    FULL_PATHS.map(Datapath::key).join(",")
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                paths = Some(chosen);
            }
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let (default_seconds, default_runs) = if smoke { (1, 1) } else { (10, 3) };
    Ok(Options {
        smoke,
        seconds: seconds.unwrap_or(default_seconds),
        runs: runs.unwrap_or(default_runs),
        out,
        vpngw: vpngw_binary(),
        paths,
        udp_at,
        gso,
    })
}

/// One path's figures; `None` where not measured (smoke).
#[derive(Debug, Default)]
struct Figures {
    /// Single-stream TCP, bit/s (median).
    tcp1: Option<f64>,
    /// 4-stream TCP, bit/s (median).
    tcp4: Option<f64>,
    /// Big UDP packets at the highest rate with < 1 % loss.
    udp: Option<UdpFigure>,
    /// Small UDP packets: (received packets/s, loss %), the median run.
    pps: Option<(f64, f64)>,
    /// Ping during the single-stream runs: (median, p99) ms.
    ping: Option<(f64, f64)>,
    /// Pings lost during the single-stream runs, percent.
    ping_loss: f64,
    /// CPU seconds per Gbit in the single-stream runs (median).
    cpu: Option<f64>,
    /// Whether TCP and UDP both got through.
    carried: bool,
}

#[derive(Debug, Clone, Copy)]
struct UdpFigure {
    /// Received bit/s.
    goodput: f64,
    /// Lost, percent.
    loss: f64,
    /// Whether some rate met the loss limit.
    under_limit: bool,
}

/// Sets `path` up in a fresh lab and measures it; a panic (a tunnel that
/// never came up, a daemon that exited) becomes the row's text.
fn measure(path: Datapath, opts: &Options) -> Result<Figures, String> {
    if let Some(why) = path.missing(&opts.vpngw) {
        return Err(format!("not run: {why}"));
    }
    catch_unwind(AssertUnwindSafe(|| run_path(path, opts)))
        .map_err(|e| format!("failed: {}", panic_message(&*e)))
}

fn run_path(path: Datapath, opts: &Options) -> Figures {
    let mut lab = BenchLab::new();
    lab.setup(path, &opts.vpngw);
    let mut f = Figures::default();
    if let Some(rate) = opts.udp_at {
        let run = lab.udp_load(&opts.load(), opts.seconds, BIG_PAYLOAD, Some(rate));
        f.udp = Some(UdpFigure {
            goodput: run.goodput,
            loss: run.loss_percent,
            under_limit: run.loss_percent < LOSS_LIMIT,
        });
        f.carried = run.received > 0.0;
        return f;
    }

    let loaded: Vec<LoadedRun> = (0..opts.runs)
        .map(|_| lab.tcp_loaded(opts.seconds))
        .collect();
    let tcp1 = median(loaded.iter().map(|r| r.tcp.bits_per_second).collect());
    f.tcp1 = tcp1;
    let mut rtts: Vec<f64> = loaded
        .iter()
        .flat_map(|r| r.rtts_ms.iter().copied())
        .collect();
    rtts.sort_by(f64::total_cmp);
    if !rtts.is_empty() {
        f.ping = Some((percentile(&rtts, 50.0), percentile(&rtts, 99.0)));
    }
    let sent: u64 = loaded.iter().map(|r| r.pings_sent).sum();
    let answered: u64 = loaded.iter().map(|r| r.pings_answered).sum();
    if sent > 0 {
        f.ping_loss = 100.0 * sent.saturating_sub(answered) as f64 / sent as f64;
    }
    f.cpu = median(loaded.iter().filter_map(LoadedRun::cpu_per_gbit).collect());
    let tcp_carried = loaded.iter().any(|r| r.tcp.bytes > 0.0);

    if opts.smoke {
        let run = lab.udp_load(&opts.load(), opts.seconds, BIG_PAYLOAD, Some(SMOKE_RATE));
        f.udp = Some(UdpFigure {
            goodput: run.goodput,
            loss: run.loss_percent,
            under_limit: run.loss_percent < LOSS_LIMIT,
        });
        f.carried = tcp_carried && run.received > 0.0;
        return f;
    }

    f.tcp4 = median(
        (0..opts.runs)
            .map(|_| lab.tcp(opts.seconds, 4).bits_per_second)
            .collect(),
    );
    let ceiling = 1.5 * tcp1.unwrap_or(0.0).max(f.tcp4.unwrap_or(0.0));
    let udp = udp_search(&lab, &opts.load(), opts.seconds, ceiling);
    f.udp = Some(udp);
    let mut small: Vec<UdpRun> = (0..opts.runs)
        .map(|_| lab.udp_load(&opts.load(), opts.seconds, SMALL_PAYLOAD, None))
        .collect();
    small.sort_by(|a, b| a.received_pps().total_cmp(&b.received_pps()));
    let mid = small[small.len() / 2];
    f.pps = Some((mid.received_pps(), mid.loss_percent));
    f.carried = tcp_carried && udp.goodput > 0.0;
    f
}

/// The highest offered rate of big UDP packets with < 1 % loss: try
/// `ceiling`; if it loses too much, find a passing rate at or below 100
/// Mbit/s (quartering), then bisect (geometrically) between the highest
/// passing and the lowest failing rate with short runs (a rate passes if
/// two runs in a row do). The figure is one full-length run at the rate
/// found (or up to [`FINAL_RETRIES`] runs, each 10 % lower, until one loses
/// less than 1 %; if none does, the cell says so).
fn udp_search(lab: &BenchLab, load: &UdpLoad<'_>, seconds: u32, ceiling: f64) -> UdpFigure {
    // A rate passes if two short runs in a row lose < 1 %: near the limit
    // of this saturated machine the loss at one rate varies from run to
    // run by several times, and the figure claims < 1 %.
    let passes = |rate: f64| {
        (0..2).all(|_| {
            let run = lab.udp_load(load, SEARCH_SECONDS, BIG_PAYLOAD, Some(rate));
            run.received > 0.0 && run.loss_percent < LOSS_LIMIT
        })
    };
    let mut hi = ceiling.max(2e6);
    let found = if passes(hi) {
        Some(hi)
    } else {
        let mut lo = SEARCH_FLOOR.min(hi / 2.0);
        let mut pass = None;
        while lo >= 1e6 {
            if passes(lo) {
                pass = Some(lo);
                break;
            }
            hi = lo;
            lo /= 4.0;
        }
        pass.map(|mut lo| {
            for _ in 0..SEARCH_STEPS {
                if hi / lo < SEARCH_PRECISION {
                    break;
                }
                let mid = (lo * hi).sqrt();
                if passes(mid) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            lo
        })
    };
    // A long run can lose more than the short ones did: step down a little.
    let mut rate = found.unwrap_or(1e6);
    let mut run = lab.udp_load(load, seconds, BIG_PAYLOAD, Some(rate));
    for _ in 0..FINAL_RETRIES {
        if found.is_none() || run.loss_percent < LOSS_LIMIT {
            break;
        }
        rate *= 0.9;
        run = lab.udp_load(load, seconds, BIG_PAYLOAD, Some(rate));
    }
    UdpFigure {
        goodput: run.goodput,
        loss: run.loss_percent,
        under_limit: found.is_some() && run.loss_percent < LOSS_LIMIT,
    }
}

/// One column of the table: its title, the number ratios are taken of,
/// and the cell's text without ratios.
struct Column {
    title: &'static str,
    value: fn(&Figures) -> Option<f64>,
    text: fn(&Figures) -> Option<String>,
}

const COLUMNS: [Column; 6] = [
    Column {
        title: "TCP, 1 stream (Mbit/s)",
        value: |f| f.tcp1.map(|v| v / 1e6),
        text: |f| f.tcp1.map(|v| num(v / 1e6)),
    },
    Column {
        title: "TCP, 4 streams (Mbit/s)",
        value: |f| f.tcp4.map(|v| v / 1e6),
        text: |f| f.tcp4.map(|v| num(v / 1e6)),
    },
    Column {
        title: "UDP 1400 B at < 1 % loss (Mbit/s, loss)",
        value: |f| f.udp.map(|u| u.goodput / 1e6),
        text: |f| {
            f.udp.map(|u| {
                let note = if u.under_limit {
                    ""
                } else if u.loss < LOSS_LIMIT {
                    ", none under 1 %"
                } else {
                    ", over 1 % in the long run"
                };
                format!("{}, loss {} %{note}", num(u.goodput / 1e6), num(u.loss))
            })
        },
    },
    Column {
        title: "UDP 64 B (kpackets/s received, loss)",
        value: |f| f.pps.map(|(pps, _)| pps / 1e3),
        text: |f| {
            f.pps
                .map(|(pps, loss)| format!("{}, loss {} %", num(pps / 1e3), num(loss)))
        },
    },
    Column {
        title: "ping under load (ms, median / p99)",
        value: |f| f.ping.map(|(median, _)| median),
        text: |f| {
            f.ping.map(|(median, p99)| {
                let lost = if f.ping_loss >= 0.05 {
                    format!(", {} % lost", num(f.ping_loss))
                } else {
                    String::new()
                };
                format!("{} / {}{lost}", num(median), num(p99))
            })
        },
    },
    Column {
        title: "CPU (s per Gbit)",
        value: |f| f.cpu,
        text: |f| f.cpu.map(num),
    },
];

/// The whole output: a caption, the table, the legend.
fn report(
    opts: &Options,
    rows: &[(Datapath, Result<Figures, String>)],
    busy_before: f64,
    elapsed: Duration,
) -> String {
    let reference = |which: Datapath| {
        rows.iter()
            .find(|(p, _)| *p == which)
            .and_then(|(_, r)| r.as_ref().ok())
    };
    let strongswan = reference(Datapath::StrongSwan);
    let underlay = reference(Datapath::Underlay);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mode = if opts.smoke { "smoke" } else { "full" };
    let runs = if opts.runs == 1 {
        "one run each".to_string()
    } else {
        format!("median of {}", opts.runs)
    };
    let smoke_udp = if opts.smoke {
        format!("; UDP at a fixed {} Mbit/s", num(SMOKE_RATE / 1e6))
    } else {
        String::new()
    };
    let mut out = format!(
        "datapath benchmark ({mode}): iperf3 {} s, {runs}{smoke_udp}; host-a → gw-a ⇄ gw-b → \
         host-b in network namespaces on one {cores}-core machine; {:.0} s in all\n\n",
        opts.seconds,
        elapsed.as_secs_f64()
    );
    out.push_str("| path |");
    for c in &COLUMNS {
        out.push_str(&format!(" {} |", c.title));
    }
    out.push_str("\n|---|");
    for _ in &COLUMNS {
        out.push_str("---|");
    }
    out.push('\n');
    for (path, result) in rows {
        out.push_str(&format!("| {} |", path.label()));
        match result {
            Err(why) => {
                out.push_str(&format!(" {} |", why.replace('|', "/")));
                for _ in 1..COLUMNS.len() {
                    out.push_str(" – |");
                }
            }
            Ok(f) => {
                for c in &COLUMNS {
                    let Some(text) = (c.text)(f) else {
                        out.push_str(" – |");
                        continue;
                    };
                    let mut ratios = Vec::new();
                    for (name, base, is_self) in [
                        ("sS", strongswan, *path == Datapath::StrongSwan),
                        ("ul", underlay, *path == Datapath::Underlay),
                    ] {
                        let (Some(v), Some(r)) = ((c.value)(f), base.and_then(c.value)) else {
                            continue;
                        };
                        if !is_self && r > 0.0 {
                            ratios.push(format!("{}× {name}", sig2(v / r)));
                        }
                    }
                    if ratios.is_empty() {
                        out.push_str(&format!(" {text} |"));
                    } else {
                        out.push_str(&format!(" {text} ({}) |", ratios.join(", ")));
                    }
                }
            }
        }
        out.push('\n');
    }
    out.push_str(
        "\n(n× sS, n× ul): the figure over strongSwan ⇄ strongSwan's and over the underlay's; \
         higher is better except for ping and CPU. CPU: user + system time of the whole \
         machine (iperf3 and ping included) per Gbit carried in the single-stream runs. \
         See docs/bench.md.\n",
    );
    if busy_before > 0.1 {
        out.push_str(&format!(
            "Note: the machine was already {:.0} % busy (of one core) before the run: \
             other load skews these figures.\n",
            busy_before * 100.0
        ));
    }
    out
}

/// A ratio with two significant digits (at least its whole part).
fn sig2(r: f64) -> String {
    if r <= 0.0 || !r.is_finite() {
        return format!("{r:.0}");
    }
    let decimals = (1 - r.log10().floor() as i32).max(0) as usize;
    format!("{r:.decimals$}")
}
