//! The failover benchmark: how long traffic stops when one tunnel of an
//! active-active pair fails, for vpngw with BFD, vpngw with traffic
//! liveness alone, and strongSwan + BIRD with BFD, in one run, one table.
//!
//! An active-active gateway pair (az0, az1) and an on-premises pair (opa,
//! opb), one tunnel between az0 and opa and one between az1 and opb, all in
//! network namespaces on this machine (`netns-tests/src/failover_lab.rs`).
//! Four UDP flows of 250 packets/s (1000 packets/s in all) go from the
//! on-premises host to the VNet host, two through each tunnel. Tunnel B
//! (az1 ⇄ opb) fails, N times in each of two ways, interleaved: az1's
//! daemons killed (SIGKILL) and started again afterwards; the underlay
//! between opb and az1 silently blackholed and mended afterwards. After each
//! injection the bench waits until opb no longer routes the VNet through its
//! tunnel, until every flow is through again, then stops the flows: the
//! interruption is the longest gap between two packets of any flow. Then it
//! restores, waits until both tunnels carry the route again, and goes on.
//! See `docs/failover.md`.
//!
//! `--loss` instead runs the lab for `--minutes N` (default 10) with 1 %
//! random loss on the underlay and counts false failovers (route
//! withdrawals, BFD / tunnel / BGP down events) on either side.
//!
//! ```text
//! cargo build --release -p vpngw
//! cargo bench -p vpngw-netns-tests --bench failover                  # full, 50 failures of each kind
//! cargo bench -p vpngw-netns-tests --bench failover -- --smoke       # 3 of each, vpngw with BFD only
//! cargo bench -p vpngw-netns-tests --bench failover -- --loss [--minutes N] [--percent P]
//!     [--failures N] [--out FILE]
//! ```
//!
//! As root. The vpngw binary is `$VPNGW_BIN`, by default
//! `target/release/vpngw` in the workspace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vpngw_netns_tests::bench_lab::{check_vpngw_binary, vpngw_binary};
use vpngw_netns_tests::bench_util::{panic_message, percentile, Args};
use vpngw_netns_tests::failover_lab::{
    Events, FailoverLab, Stack, Stream, StreamFlow, VpngwRouting, VpngwTimers, AZ1, OPA, OPB,
};

/// Flows through each tunnel...
const FLOWS_PER_TUNNEL: usize = 2;
/// ...of this many packets a second each: 4 × 250 = 1000 packets/s.
const PPS_PER_FLOW: u32 = 250;
/// Failures of each kind per variant, by default and in the smoke run.
const DEFAULT_FAILURES: usize = 50;
const SMOKE_FAILURES: usize = 3;
/// Flows run this long before a failure is injected.
const LEAD_IN: Duration = Duration::from_millis(400);
/// ...and this long after every flow is through again.
const TAIL: Duration = Duration::from_millis(200);
/// How long the on-premises side may take to notice (BGP hold 30 s and
/// DPD 45 s would notice within it, if BFD did not).
const DETECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a restore may take (daemon start, IKE, BGP, BFD).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after a restore before the next failure.
const SETTLE: Duration = Duration::from_millis(500);
/// The smoke run fails if an interruption is longer than this: BFD
/// (300 ms) must be what detects, not the BGP hold timer (30 s).
const SMOKE_BOUND: Duration = Duration::from_secs(3);
/// The `--loss` mode's loss on the underlay, percent (`--percent P`).
const LOSS_PERCENT: f64 = 1.0;

/// Variant 1: vpngw, eBGP with BFD 100 ms × 3 (BGP 10 / 30 s and DPD at
/// its defaults are far too slow to be what detects).
const VPNGW_BFD: Stack = Stack::Vpngw(VpngwTimers {
    routing: VpngwRouting::Bgp(Some((10, 30))),
    bfd: Some((100, 3)),
    dpd: None,
});
/// Variant 2: vpngw, static routes, no BFD: traffic liveness and DPD at
/// the shortest the configuration allows.
const VPNGW_LIVENESS: Stack = Stack::Vpngw(VpngwTimers {
    routing: VpngwRouting::Static,
    bfd: None,
    dpd: Some((100, 300)),
});
/// Variant 3: strongSwan + BIRD, BIRD's BFD 100 ms × 3.
const REFERENCE: Stack = Stack::StrongswanBird;
/// `--loss`: vpngw at default-ish timers: eBGP at its defaults, BFD at its
/// default 300 ms × 3, DPD at its defaults.
const VPNGW_DEFAULTISH: Stack = Stack::Vpngw(VpngwTimers {
    routing: VpngwRouting::Bgp(None),
    bfd: Some((300, 3)),
    dpd: None,
});

fn label(stack: Stack) -> &'static str {
    match stack {
        VPNGW_BFD => "vpngw ⇄ vpngw, eBGP + BFD",
        VPNGW_LIVENESS => "vpngw ⇄ vpngw, static routes + traffic liveness (DPD)",
        VPNGW_DEFAULTISH => "vpngw ⇄ vpngw, default-ish timers (eBGP + BFD)",
        REFERENCE => "strongSwan + BIRD ⇄ strongSwan + BIRD, eBGP + BFD",
        Stack::Vpngw(_) => "vpngw ⇄ vpngw",
    }
}

const USAGE: &str = "usage: cargo bench -p vpngw-netns-tests --bench failover -- \
[--smoke] [--failures N] [--loss [--minutes N] [--percent P]] [--out FILE]
  (as root; vpngw from $VPNGW_BIN, default target/release/vpngw: cargo build --release -p vpngw)";

#[derive(Debug)]
struct Options {
    smoke: bool,
    failures: usize,
    loss: bool,
    minutes: u64,
    percent: f64,
    out: Option<PathBuf>,
    vpngw: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Killed,
    Blackholed,
}

const FAILURES: [Failure; 2] = [Failure::Killed, Failure::Blackholed];

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Failure::Killed => "instance killed (SIGKILL), restarted",
            Failure::Blackholed => "underlay to the instance blackholed, mended",
        }
    }
}

/// One injection's figures.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// The longest gap of any flow.
    interruption: Duration,
    /// The same in the sender's schedule (sequence numbers).
    seq_gap: Duration,
    /// Failure to opb's route through its tunnel gone.
    withdrawn: Duration,
    /// Restore to both tunnels carrying the route again.
    rejoined: Duration,
    /// Packets lost, all flows.
    lost: u64,
}

#[derive(Debug, Default)]
struct KindResult {
    samples: Vec<Sample>,
    failed: Vec<String>,
}

#[derive(Debug)]
struct VariantResult {
    stack: Stack,
    kinds: [KindResult; 2],
    /// Why the variant stopped early (a restore that never completed, a
    /// lab that never came up).
    aborted: Option<String>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // Built and run by `cargo test --all-targets`: not a test.
        println!("failover: a benchmark, run it with `cargo bench -p vpngw-netns-tests --bench failover` (as root)");
        return ExitCode::SUCCESS;
    }
    let opts = match parse_args(&args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("failover: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    vpngw_netns_tests::require_root();
    if !check_vpngw_binary("failover", &opts.vpngw) {
        return ExitCode::from(2);
    }
    let (text, ok) = if opts.loss {
        run_loss(&opts)
    } else {
        run_failover(&opts)
    };
    println!("{text}");
    if let Some(out) = &opts.out {
        if let Err(e) = std::fs::write(out, &text) {
            eprintln!("failover: cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
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
    let mut loss = false;
    let mut failures = None;
    let mut minutes = 10;
    let mut percent = LOSS_PERCENT;
    let mut out = None;
    let mut args = Args::new(args);
    while let Some(arg) = args.next_option() {
        match arg {
            "--smoke" => smoke = true,
            "--loss" => loss = true,
            "--failures" => failures = Some(args.positive("--failures", "a count")?),
            "--minutes" => minutes = args.positive("--minutes", "a whole number")?,
            "--percent" => {
                let v = args.value("--percent")?;
                percent = v
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| format!("--percent {v}: expected 0 to 100"))?;
            }
            "--out" => out = Some(PathBuf::from(args.value("--out")?)),
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if smoke && loss {
        return Err("--smoke and --loss do not go together".into());
    }
    Ok(Options {
        smoke,
        failures: failures.unwrap_or(if smoke {
            SMOKE_FAILURES
        } else {
            DEFAULT_FAILURES
        }),
        loss,
        minutes,
        percent,
        out,
        vpngw: vpngw_binary(),
    })
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn sorted(v: impl Iterator<Item = Duration>) -> Vec<Duration> {
    let mut v: Vec<Duration> = v.collect();
    v.sort();
    v
}

// ---- failover mode ----

fn run_failover(opts: &Options) -> (String, bool) {
    let variants: &[Stack] = if opts.smoke {
        &[VPNGW_BFD]
    } else {
        &[VPNGW_BFD, VPNGW_LIVENESS, REFERENCE]
    };
    let started = Instant::now();
    let results: Vec<VariantResult> = variants
        .iter()
        .map(|&stack| {
            eprintln!(
                "failover: {}: {} failures of each kind ...",
                label(stack),
                opts.failures
            );
            measure_variant(stack, opts)
        })
        .collect();
    let text = failover_report(opts, &results, started.elapsed());
    let mut ok = true;
    for r in &results {
        let vpngw = matches!(r.stack, Stack::Vpngw(_));
        if let Some(why) = &r.aborted {
            eprintln!("failover: {}: {why}", label(r.stack));
            ok &= !vpngw;
        }
        for (kind, k) in FAILURES.iter().zip(&r.kinds) {
            for why in &k.failed {
                eprintln!("failover: {}, {}: {why}", label(r.stack), kind.label());
            }
            if vpngw && !k.failed.is_empty() {
                ok = false;
            }
            if opts.smoke {
                if let Some(worst) = k.samples.iter().map(|s| s.interruption).max() {
                    if worst > SMOKE_BOUND {
                        eprintln!(
                            "failover: {}, {}: interrupted {} ms, more than the smoke bound {} ms",
                            label(r.stack),
                            kind.label(),
                            ms(worst),
                            ms(SMOKE_BOUND)
                        );
                        ok = false;
                    }
                }
            }
        }
    }
    (text, ok)
}

fn measure_variant(stack: Stack, opts: &Options) -> VariantResult {
    let mut result = VariantResult {
        stack,
        kinds: [KindResult::default(), KindResult::default()],
        aborted: None,
    };
    let run = catch_unwind(AssertUnwindSafe(|| {
        let mut lab = FailoverLab::start(stack, &opts.vpngw);
        let ports = lab.pick_ports(FLOWS_PER_TUNNEL);
        check_both_tunnels(&lab, &ports);
        for n in 0..opts.failures {
            for (k, &kind) in FAILURES.iter().enumerate() {
                let (measured, restored) = inject(&mut lab, kind, &ports);
                match measured {
                    Ok(mut sample) => {
                        if let Ok(back) = restored {
                            sample.rejoined = back;
                        }
                        eprintln!(
                            "failover:   {} {}/{}: interrupted {} ms ({} ms by sequence numbers; opb's route gone after {} ms, {} packets lost); rejoined {:.1} s after the restore",
                            kind.label(),
                            n + 1,
                            opts.failures,
                            ms(sample.interruption),
                            ms(sample.seq_gap),
                            ms(sample.withdrawn),
                            sample.lost,
                            sample.rejoined.as_secs_f64()
                        );
                        result.kinds[k].samples.push(sample);
                    }
                    Err(why) => {
                        eprintln!(
                            "failover:   {} {}/{}: failed: {why}",
                            kind.label(),
                            n + 1,
                            opts.failures
                        );
                        result.kinds[k].failed.push(why);
                    }
                }
                if let Err(why) = restored {
                    result.aborted = Some(format!("stopped after a restore failed: {why}"));
                    return;
                }
            }
        }
    }));
    if let Err(e) = run {
        result.aborted = Some(format!("failed: {}", panic_message(&*e)));
    }
    result
}

/// Runs the stream for a second and checks that both tunnels carried some
/// of it.
fn check_both_tunnels(lab: &FailoverLab, ports: &[u16]) {
    let before = [lab.tunnel_tx_packets(OPA), lab.tunnel_tx_packets(OPB)];
    let stream = lab.stream(ports, PPS_PER_FLOW);
    std::thread::sleep(Duration::from_secs(1));
    let flows = stream.stop();
    let after = [lab.tunnel_tx_packets(OPA), lab.tunnel_tx_packets(OPB)];
    for (i, site) in ["opa", "opb"].iter().enumerate() {
        let carried = after[i].saturating_sub(before[i]);
        assert!(
            carried > u64::from(PPS_PER_FLOW) / 2,
            "{site}'s tunnel carried only {carried} packets of the stream: {flows:?}"
        );
    }
    assert!(flows.iter().all(|f| f.received > 0), "{flows:?}");
}

/// One failure under traffic and its restore: (the measurement, the time
/// to both tunnels carrying the route again).
fn inject(
    lab: &mut FailoverLab,
    kind: Failure,
    ports: &[u16],
) -> (Result<Sample, String>, Result<Duration, String>) {
    let stream = lab.stream(ports, PPS_PER_FLOW);
    let started = Instant::now();
    let mut injected = false;
    let measured = measure(lab, &stream, kind, started, &mut injected);
    let flows = stream.stop();
    let measured = measured.and_then(|withdrawn| sample(&flows, withdrawn));
    let restored = restore(lab, kind, injected);
    (measured, restored)
}

fn measure(
    lab: &mut FailoverLab,
    stream: &Stream,
    kind: Failure,
    started: Instant,
    injected: &mut bool,
) -> Result<Duration, String> {
    stream
        .wait_all_since(started + Duration::from_millis(100), Duration::from_secs(5))
        .map_err(|e| format!("before the failure: {e}"))?;
    if let Some(wait) = (started + LEAD_IN).checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    *injected = true;
    let t0 = Instant::now();
    match kind {
        Failure::Killed => lab.kill(AZ1),
        Failure::Blackholed => lab.cut_b(),
    }
    lab.wait_routed(OPB, false, DETECT_TIMEOUT)?;
    let withdrawn = t0.elapsed();
    let t1 = Instant::now();
    stream.wait_all_since(t1, Duration::from_secs(10))?;
    std::thread::sleep(TAIL);
    Ok(withdrawn)
}

fn sample(flows: &[StreamFlow], withdrawn: Duration) -> Result<Sample, String> {
    if flows.iter().any(|f| f.received == 0) {
        return Err(format!("a flow delivered nothing: {flows:?}"));
    }
    Ok(Sample {
        interruption: flows
            .iter()
            .map(|f| f.longest_gap)
            .max()
            .unwrap_or_default(),
        seq_gap: flows
            .iter()
            .map(|f| f.longest_seq_gap)
            .max()
            .unwrap_or_default(),
        withdrawn,
        rejoined: Duration::ZERO,
        lost: flows.iter().map(StreamFlow::lost).sum(),
    })
}

fn restore(lab: &mut FailoverLab, kind: Failure, injected: bool) -> Result<Duration, String> {
    let t = Instant::now();
    match kind {
        Failure::Killed if injected => lab.restart(AZ1),
        Failure::Killed => {}
        Failure::Blackholed => lab.mend(),
    }
    lab.wait_routed(OPB, true, RESTORE_TIMEOUT)?;
    lab.wait_routed(OPA, true, RESTORE_TIMEOUT)?;
    lab.wait_liveness_up(RESTORE_TIMEOUT)?;
    let back = t.elapsed();
    std::thread::sleep(SETTLE);
    Ok(back)
}

fn failover_report(opts: &Options, results: &[VariantResult], elapsed: Duration) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mode = if opts.smoke { "smoke" } else { "full" };
    let mut out = format!(
        "failover benchmark ({mode}): {} failures of each kind per variant, interleaved; \
         {} UDP flows × {PPS_PER_FLOW} packets/s from the on-premises host to the VNet host, \
         {FLOWS_PER_TUNNEL} through each tunnel; tunnel B (az1 ⇄ opb) fails; network namespaces \
         on one {cores}-core machine; {:.0} s in all\n\n",
        opts.failures,
        2 * FLOWS_PER_TUNNEL,
        elapsed.as_secs_f64()
    );
    out.push_str(
        "| variant | failure | injections | interruption p50 (ms) | p99 (ms) | max (ms) \
         | by sequence numbers, p50 / max (ms) | opb's route gone, p50 / max (ms) \
         | rejoined after restore, p50 (s) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        for (kind, k) in FAILURES.iter().zip(&r.kinds) {
            let mut count = k.samples.len().to_string();
            if !k.failed.is_empty() {
                count.push_str(&format!(" (+{} failed)", k.failed.len()));
            }
            out.push_str(&format!(
                "| {} | {} | {count} |",
                label(r.stack),
                kind.label()
            ));
            if k.samples.is_empty() {
                out.push_str(" – | – | – | – | – | – |\n");
                continue;
            }
            let gaps = sorted(k.samples.iter().map(|s| s.interruption));
            let seq = sorted(k.samples.iter().map(|s| s.seq_gap));
            let withdrawn = sorted(k.samples.iter().map(|s| s.withdrawn));
            let rejoined = sorted(k.samples.iter().map(|s| s.rejoined));
            out.push_str(&format!(
                " {} | {} | {} | {} / {} | {} / {} | {:.1} |\n",
                ms(percentile(&gaps, 50.0)),
                ms(percentile(&gaps, 99.0)),
                ms(percentile(&gaps, 100.0)),
                ms(percentile(&seq, 50.0)),
                ms(percentile(&seq, 100.0)),
                ms(percentile(&withdrawn, 50.0)),
                ms(percentile(&withdrawn, 100.0)),
                percentile(&rejoined, 50.0).as_secs_f64()
            ));
        }
        if let Some(why) = &r.aborted {
            out.push_str(&format!(
                "| {} | {} | – | – | – | – | – | – | – |\n",
                label(r.stack),
                why.replace('|', "/")
            ));
        }
    }
    out.push_str("\nTimers:");
    for r in results {
        out.push_str(&format!(" {}: {}.", label(r.stack), r.stack.describe()));
    }
    out.push_str(
        "\n\nInterruption: the longest gap between two packets of any of the flows \
         (those through tunnel A are not interrupted), from a stream started shortly before \
         the failure and stopped once every flow is through again. p99 is by nearest rank \
         (the largest sample when there are fewer than 100). By sequence numbers: the same \
         gap in the sender's schedule (packets missing between two arrivals × 4 ms), what \
         the path lost without the hosts' scheduling delays. opb's route gone: failure to \
         opb no longer routing the VNet through its tunnel (`vpngw routes`, or the kernel \
         route BIRD installed), after which it hands the traffic to opa. See docs/failover.md.\n",
    );
    out
}

// ---- loss mode ----

fn run_loss(opts: &Options) -> (String, bool) {
    let configs = [VPNGW_DEFAULTISH, VPNGW_BFD, VPNGW_LIVENESS];
    let started = Instant::now();
    let mut labs: Vec<(Stack, Result<FailoverLab, String>)> = Vec::new();
    for stack in configs {
        eprintln!(
            "failover: --loss: starting {} ({})",
            label(stack),
            stack.describe()
        );
        let lab = catch_unwind(AssertUnwindSafe(|| {
            let mut lab = FailoverLab::start(stack, &opts.vpngw);
            lab.start_monitors();
            lab
        }))
        .map_err(|e| format!("failed: {}", panic_message(&*e)));
        labs.push((stack, lab));
    }
    let baselines: Vec<Events> = labs
        .iter()
        .map(|(_, lab)| lab.as_ref().map(all_events).unwrap_or_default())
        .collect();
    let mut streams: Vec<Option<Stream>> = Vec::new();
    for (_, lab) in &labs {
        streams.push(lab.as_ref().ok().map(|lab| {
            lab.fabric.lossy(opts.percent);
            let ports = lab.pick_ports(FLOWS_PER_TUNNEL);
            lab.stream(&ports, PPS_PER_FLOW)
        }));
    }
    let loss_started = Instant::now();
    for minute in 1..=opts.minutes {
        let until = loss_started + Duration::from_secs(60 * minute);
        if let Some(wait) = until.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for ((stack, lab), base) in labs.iter().zip(&baselines) {
            if let Ok(lab) = lab {
                let e = since(all_events(lab), *base);
                eprintln!(
                    "failover: --loss: {minute}/{} min: {}: {} route withdrawals, {} BFD down, {} tunnel down, {} BGP session down",
                    opts.minutes,
                    label(*stack),
                    e.route_withdrawals,
                    e.bfd_down,
                    e.tunnel_down,
                    e.bgp_down
                );
            }
        }
    }
    let flows: Vec<Option<Vec<StreamFlow>>> =
        streams.into_iter().map(|s| s.map(Stream::stop)).collect();
    let mut out = format!(
        "failover benchmark (--loss): {} % random loss on the underlay (every path, \
         both ways) for {} min, no failure injected; {} UDP flows × {PPS_PER_FLOW} packets/s \
         from the on-premises host, {FLOWS_PER_TUNNEL} through each tunnel; the three \
         configurations ran side by side, each in its own fabric; {:.0} s in all\n\n",
        opts.percent,
        opts.minutes,
        2 * FLOWS_PER_TUNNEL,
        started.elapsed().as_secs_f64()
    );
    out.push_str(
        "| configuration | timers | false failovers (route withdrawals, 4 gateways) \
         | BFD down | tunnel down | BGP session down | stream lost (%) | longest gap, arrivals / sequence numbers (ms) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut ok = true;
    for (((stack, lab), base), flows) in labs.iter().zip(&baselines).zip(&flows) {
        match (lab, flows) {
            (Ok(lab), Some(flows)) => {
                let e = since(all_events(lab), *base);
                let sent: u64 = flows.iter().map(|f| f.sent).sum();
                let lost: u64 = flows.iter().map(StreamFlow::lost).sum();
                let gap = flows
                    .iter()
                    .map(|f| f.longest_gap)
                    .max()
                    .unwrap_or_default();
                let seq_gap = flows
                    .iter()
                    .map(|f| f.longest_seq_gap)
                    .max()
                    .unwrap_or_default();
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {:.2} | {} / {} |\n",
                    label(*stack),
                    stack.describe(),
                    e.route_withdrawals,
                    e.bfd_down,
                    e.tunnel_down,
                    e.bgp_down,
                    if sent > 0 {
                        100.0 * lost as f64 / sent as f64
                    } else {
                        100.0
                    },
                    ms(gap),
                    ms(seq_gap)
                ));
            }
            (Err(why), _) => {
                ok = false;
                out.push_str(&format!(
                    "| {} | {} | {} | – | – | – | – | – |\n",
                    label(*stack),
                    stack.describe(),
                    why.replace('|', "/")
                ));
            }
            (Ok(_), None) => {}
        }
    }
    out.push_str(
        "\nRoute withdrawals: the route to the other side's LAN gone from a gateway's kernel \
         table and back (`ip monitor route nexthop` in each gateway's namespace: its comebacks, plus \
         one if it is missing at the end); BFD / tunnel / BGP session down: vpngw's log lines, all four \
         gateways. Each is a false failover: nothing failed but the loss.\n",
    );
    drop(labs);
    (out, ok)
}

fn all_events(lab: &FailoverLab) -> Events {
    (0..4)
        .map(|i| lab.events(i))
        .fold(Events::default(), |a, b| a + b)
}

fn since(now: Events, base: Events) -> Events {
    Events {
        route_withdrawals: now.route_withdrawals.saturating_sub(base.route_withdrawals),
        bfd_down: now.bfd_down.saturating_sub(base.bfd_down),
        tunnel_down: now.tunnel_down.saturating_sub(base.tunnel_down),
        bgp_down: now.bgp_down.saturating_sub(base.bgp_down),
    }
}
