//! The ESP garbage benchmark: what a flood of bad ESP does to good traffic.
//!
//! The datapath benchmark's lab with vpngw ⇄ vpngw, AES-GCM-256
//! (`host-a → gw-a ⇄ gw-b → host-b`, network namespaces on this machine).
//! A thread in gw-a's namespace floods gw-b's UDP port 4500 from gw-a's
//! address (another port than vpngw's own) with one kind of garbage at a
//! time, paced with `sendmmsg` batches, while single-stream TCP runs from
//! host A to host B through the tunnel:
//!
//! | kind | datagrams | refused by gw-b's receive thread as |
//! |---|---|---|
//! | closed port (control) | 1400 B to port 4501 | nothing: the kernel drops them (`Udp NoPorts`); the flood's own cost on this machine |
//! | unknown SPI | 1400 B, SPIs gw-b does not have, sequence numbers counting | `unmatched.unknown_spi` (after up to 200 ms parked in 32 slots) |
//! | corrupted | 1400 B, gw-b's inbound SPI, sequence numbers from 2^31 up, random bytes | `drop_auth`: each is decrypted and fails the ICV, the costliest kind |
//! | replayed | 1400 B, gw-b's inbound SPI, sequence number 1 | `drop_replay`: left of the window, refused before decryption |
//! | truncated | 16 B, gw-b's inbound SPI | `drop_malformed`: too short for the SA |
//!
//! Each row reads gw-b's counters (`vpngw sas --json`, and the kernel's
//! UDP counters in gw-b's namespace), starts the flood, runs TCP, stops the
//! flood, waits 0.5 s and reads the counters again. The table gives the
//! rate the flood achieved, how much of it landed in the counter it should,
//! TCP's throughput and its ratio to the run without garbage. See
//! `docs/esp-garbage.md`.
//!
//! ```text
//! cargo build --release -p vpngw
//! cargo bench -p vpngw-netns-tests --bench esp_garbage                 # full, ~4 min
//! cargo bench -p vpngw-netns-tests --bench esp_garbage -- --smoke      # ~15 s
//!     [--seconds N] [--runs N] [--rate PPS] [--unpaced] [--out FILE]
//! ```
//!
//! As root. The vpngw binary is `$VPNGW_BIN`, by default
//! `target/release/vpngw` in the workspace. Exits non-zero if a kind of
//! garbage was not counted where it should be for at least half of what
//! was sent, or if TCP carried nothing, with or without garbage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use vpngw_netns_tests::bench_lab::{
    check_vpngw_binary, vpngw_binary, BenchLab, Datapath, TcpRun, A, B,
};
use vpngw_netns_tests::bench_util::{machine_busy, median, num, panic_message, Args};
use vpngw_netns_tests::traffic::spawn_in_netns;

/// The tunnel: vpngw on both gateways, the suite the datapath benchmark
/// quotes.
const PATH: Datapath = Datapath::Vpngw { esp: "aes256gcm16" };
/// UDP payload of the flood's datagrams (the truncated kind's excepted):
/// as large as the tunnel's own ESP packets of a 1400-byte TUN MTU.
const DATAGRAM: usize = 1400;
/// The truncated kind's datagrams: SPI, sequence number and 8 bytes, ESP
/// to port 4500's classifier but shorter than any AES-GCM packet (36 B).
const TRUNCATED: usize = 16;
/// Datagrams per `sendmmsg`.
const FLOOD_BATCH: usize = 32;
/// The default flood rate, packets/s: 100k × 1400 B = 1.12 Gbit/s of UDP
/// payload, a little more than a 1 Gbit/s uplink can carry (~85k
/// 1400-byte datagrams a second with their headers).
const DEFAULT_RATE: u64 = 100_000;
/// The smoke run's rate.
const SMOKE_RATE: u64 = 20_000;
/// Where vpngw's ESP arrives.
const NATT_PORT: u16 = 4500;
/// The control kind's closed port on gw-b.
const CLOSED_PORT: u16 = 4501;
/// The corrupted kind's first sequence number: far ahead of the window.
const CORRUPT_SEQ: u32 = 1 << 31;
/// After the flood stops and before the counters are read again: port
/// 4500's socket drained, parked unknown-SPI packets expired (200 ms).
const SETTLE: Duration = Duration::from_millis(500);
/// Attempts at one run of a row: a run during which the child SA was
/// rekeyed (vpngw's default byte lifetime, 100 GiB, comes round every few
/// minutes at this speed) is done again, since the flood kept the old SPI.
const ATTEMPTS: usize = 3;
/// A kind fails unless at least this share of what was sent is counted
/// (the kernel may drop some when the socket overflows).
const MIN_COUNTED: f64 = 0.5;

const USAGE: &str = "usage: cargo bench -p vpngw-netns-tests --bench esp_garbage -- \
[--smoke] [--seconds N] [--runs N] [--rate PPS] [--unpaced] [--out FILE]
  (as root; vpngw from $VPNGW_BIN, default target/release/vpngw: cargo build --release -p vpngw)";

#[derive(Debug)]
struct Options {
    smoke: bool,
    seconds: u32,
    runs: usize,
    /// Packets/s of the paced pass.
    rate: u64,
    /// A second pass as fast as the flooder goes.
    unpaced: bool,
    out: Option<PathBuf>,
    vpngw: PathBuf,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // Built and run by `cargo test --all-targets`: not a test.
        println!(
            "esp_garbage: a benchmark, run it with \
             `cargo bench -p vpngw-netns-tests --bench esp_garbage` (as root)"
        );
        return ExitCode::SUCCESS;
    }
    let opts = match parse_args(&args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("esp_garbage: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    vpngw_netns_tests::require_root();
    if !check_vpngw_binary("esp_garbage", &opts.vpngw) {
        return ExitCode::from(2);
    }
    if let Some(why) = PATH.missing(&opts.vpngw) {
        eprintln!("esp_garbage: cannot run: {why}");
        return ExitCode::from(2);
    }

    let busy_before = machine_busy(Duration::from_millis(500));
    let started = Instant::now();
    let mut rows = vec![Row::Baseline];
    let mut rates = vec![opts.rate];
    if opts.unpaced {
        rates.push(0);
    }
    for &rate in &rates {
        rows.extend(Kind::ALL.iter().map(|&kind| Row::Garbage { kind, rate }));
    }

    let mut lab = BenchLab::new();
    lab.setup(PATH, &opts.vpngw);
    let socket = lab.dir.join(&format!("{}.sock", B.name));
    let rx_thread = RxThread::find(&lab.dir.join(&format!("{}.vpngw.toml", B.name)));
    if rx_thread.is_none() {
        eprintln!("esp_garbage: gw-b's vpngw-rx thread not found: no CPU figures");
    }
    // Rounds of every row, so that whatever else the machine does spreads
    // over all of them; the baseline first, so that the window has moved
    // far past sequence number 1 before the replayed kind.
    let mut samples: Vec<Vec<Sample>> = rows.iter().map(|_| Vec::new()).collect();
    for run in 0..opts.runs {
        for (row, out) in rows.iter().zip(&mut samples) {
            eprintln!(
                "esp_garbage: run {}/{}: {} ...",
                run + 1,
                opts.runs,
                row.label()
            );
            let mut attempt = 0;
            let sampled = loop {
                attempt += 1;
                match sample(&lab, &opts, &socket, rx_thread.as_ref(), *row) {
                    Some(s) => break s,
                    None if attempt < ATTEMPTS => {
                        eprintln!("esp_garbage: gw-b's child SA was rekeyed during the run: again")
                    }
                    None => panic!("gw-b's child SA was rekeyed during {ATTEMPTS} runs in a row"),
                }
            };
            out.push(sampled);
        }
    }
    drop(lab);

    let results: Vec<RowResult> = rows
        .iter()
        .zip(&samples)
        .map(|(row, s)| RowResult::of(*row, s))
        .collect();
    let text = report(&opts, &results, busy_before, started.elapsed());
    println!("{text}");
    if let Some(out) = &opts.out {
        if let Err(e) = std::fs::write(out, &text) {
            eprintln!("esp_garbage: cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    }

    let failures = check(&results);
    for f in &failures {
        eprintln!("esp_garbage: FAILED: {f}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut smoke = false;
    let mut unpaced = false;
    let mut out = None;
    let mut seconds = None;
    let mut runs = None;
    let mut rate = None;
    let mut args = Args::new(args);
    while let Some(arg) = args.next_option() {
        match arg {
            "--smoke" => smoke = true,
            "--unpaced" => unpaced = true,
            "--out" => out = Some(PathBuf::from(args.value("--out")?)),
            "--seconds" => {
                seconds = Some(args.positive("--seconds", "a whole number of seconds")?);
            }
            "--runs" => runs = Some(args.positive("--runs", "a count")?),
            "--rate" => rate = Some(args.positive("--rate", "packets/s")?),
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let (default_seconds, default_runs, default_rate) = if smoke {
        (1, 1, SMOKE_RATE)
    } else {
        (10, 3, DEFAULT_RATE)
    };
    Ok(Options {
        smoke,
        seconds: seconds.unwrap_or(default_seconds),
        runs: runs.unwrap_or(default_runs),
        rate: rate.unwrap_or(default_rate),
        unpaced,
        out,
        vpngw: vpngw_binary(),
    })
}

/// A kind of garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// To a closed port: what the flood costs this machine by itself.
    ClosedPort,
    /// SPIs gw-b does not have.
    UnknownSpi,
    /// gw-b's SPI, fresh sequence numbers, bytes that fail the ICV.
    Corrupted,
    /// gw-b's SPI, sequence number 1, long left of the window.
    Replayed,
    /// gw-b's SPI, too short to be ESP of its SA.
    Truncated,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::ClosedPort,
        Kind::UnknownSpi,
        Kind::Corrupted,
        Kind::Replayed,
        Kind::Truncated,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::ClosedPort => "closed port 4501 (control)",
            Kind::UnknownSpi => "unknown SPI",
            Kind::Corrupted => "corrupted (fails the ICV)",
            Kind::Replayed => "replayed (sequence number 1)",
            Kind::Truncated => "truncated (16 B)",
        }
    }

    /// The counter it must land in.
    fn counter(self) -> Counter {
        match self {
            Kind::ClosedPort => Counter::NoPorts,
            Kind::UnknownSpi => Counter::UnknownSpi,
            Kind::Corrupted => Counter::DropAuth,
            Kind::Replayed => Counter::DropReplay,
            Kind::Truncated => Counter::DropMalformed,
        }
    }

    fn port(self) -> u16 {
        match self {
            Kind::ClosedPort => CLOSED_PORT,
            Kind::UnknownSpi | Kind::Corrupted | Kind::Replayed | Kind::Truncated => NATT_PORT,
        }
    }

    fn len(self) -> usize {
        match self {
            Kind::Truncated => TRUNCATED,
            Kind::ClosedPort | Kind::UnknownSpi | Kind::Corrupted | Kind::Replayed => DATAGRAM,
        }
    }

    /// Writes the header of the `n`th datagram (the rest stays random).
    fn stamp(self, packet: &mut [u8], n: u64, spi_in: u32) {
        let (spi, seq) = match self {
            Kind::ClosedPort => return,
            Kind::UnknownSpi => (unknown_spi(n, spi_in), n as u32 | 1),
            Kind::Corrupted => (spi_in, CORRUPT_SEQ | (n as u32 & !CORRUPT_SEQ)),
            Kind::Replayed => (spi_in, 1),
            Kind::Truncated => (spi_in, n as u32 | 1),
        };
        if let Some(header) = packet.get_mut(..8) {
            header[..4].copy_from_slice(&spi.to_be_bytes());
            header[4..].copy_from_slice(&seq.to_be_bytes());
        }
    }
}

/// The `n`th SPI of the unknown kind: 65536 SPIs from 0x01000000, none of
/// them `spi_in` (and none zero: that would be IKE's non-ESP marker).
fn unknown_spi(n: u64, spi_in: u32) -> u32 {
    let spi = 0x0100_0000 + (n % 65_536) as u32;
    if spi == spi_in {
        0x0200_0000
    } else {
        spi
    }
}

/// A counter the garbage lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    /// The kernel's: UDP datagrams to a port nobody listens on (gw-b).
    NoPorts,
    /// vpngw's `unmatched.unknown_spi`.
    UnknownSpi,
    /// vpngw's per-tunnel `datapath.drop_auth`.
    DropAuth,
    /// vpngw's per-tunnel `datapath.drop_replay`.
    DropReplay,
    /// vpngw's per-tunnel `datapath.drop_malformed`.
    DropMalformed,
}

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Counter::NoPorts => "kernel Udp NoPorts",
            Counter::UnknownSpi => "unmatched.unknown_spi",
            Counter::DropAuth => "drop_auth",
            Counter::DropReplay => "drop_replay",
            Counter::DropMalformed => "drop_malformed",
        }
    }

    fn of(self, c: &Counters) -> u64 {
        match self {
            Counter::NoPorts => c.no_ports,
            Counter::UnknownSpi => c.unknown_spi,
            Counter::DropAuth => c.drop_auth,
            Counter::DropReplay => c.drop_replay,
            Counter::DropMalformed => c.drop_malformed,
        }
    }
}

/// gw-b's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// The connection's inbound SPI (not a counter).
    spi_in: u32,
    unknown_spi: u64,
    drop_auth: u64,
    drop_replay: u64,
    drop_malformed: u64,
    /// Kernel, gw-b's namespace: UDP to closed ports.
    no_ports: u64,
    /// Kernel, gw-b's namespace: UDP dropped because a socket's receive
    /// buffer was full (port 4500's, here).
    rcvbuf_errors: u64,
}

impl Counters {
    /// What grew from `before` to `self` (`spi_in` is `self`'s).
    fn since(&self, before: &Counters) -> Counters {
        Counters {
            spi_in: self.spi_in,
            unknown_spi: self.unknown_spi.saturating_sub(before.unknown_spi),
            drop_auth: self.drop_auth.saturating_sub(before.drop_auth),
            drop_replay: self.drop_replay.saturating_sub(before.drop_replay),
            drop_malformed: self.drop_malformed.saturating_sub(before.drop_malformed),
            no_ports: self.no_ports.saturating_sub(before.no_ports),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(before.rcvbuf_errors),
        }
    }
}

/// gw-b's counters: vpngw's (`vpngw sas --json` on its control socket)
/// and the kernel's UDP counters in its namespace.
fn read_counters(lab: &BenchLab, vpngw: &Path, socket: &Path) -> Counters {
    let out = Command::new(vpngw)
        .arg("--socket")
        .arg(socket)
        .args(["sas", "--json"])
        .output()
        .expect("run vpngw sas");
    assert!(
        out.status.success(),
        "vpngw sas: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sas: Value = serde_json::from_slice(&out.stdout).expect("vpngw sas --json");
    let conn = &sas["connections"][0];
    let spi_in = conn["child"]["spi_in"]
        .as_str()
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| panic!("gw-b has no child SA: {conn}"));
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let dp = &conn["datapath"];
    let snmp = lab.gw_b.exec("cat", &["/proc/net/snmp"]);
    Counters {
        spi_in,
        unknown_spi: n(&sas["unmatched"]["unknown_spi"]),
        drop_auth: n(&dp["drop_auth"]),
        drop_replay: n(&dp["drop_replay"]),
        drop_malformed: n(&dp["drop_malformed"]),
        no_ports: snmp_field(&snmp, "Udp", "NoPorts"),
        rcvbuf_errors: snmp_field(&snmp, "Udp", "RcvbufErrors"),
    }
}

/// A field of `/proc/net/snmp` (a header line and a value line per
/// protocol); 0 if missing.
fn snmp_field(text: &str, proto: &str, field: &str) -> u64 {
    let prefix = format!("{proto}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == field)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// gw-b's vpngw receive thread, to read its CPU time.
struct RxThread {
    /// `/proc/<pid>/task/<tid>/stat`.
    stat: PathBuf,
}

impl RxThread {
    /// The `vpngw-rx` thread of the vpngw process run with `config`.
    fn find(config: &Path) -> Option<RxThread> {
        let config = config.to_str()?;
        let pid = std::fs::read_dir("/proc").ok()?.flatten().find(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|&b| b == 0)
                    .any(|arg| arg == config.as_bytes())
            })
        })?;
        let task = std::fs::read_dir(pid.path().join("task"))
            .ok()?
            .flatten()
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|comm| comm.trim() == "vpngw-rx")
            })?;
        Some(RxThread {
            stat: task.path().join("stat"),
        })
    }

    /// Its user + system CPU time so far, seconds.
    fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(&self.stat) else {
            return 0.0;
        };
        // After the `(comm)` field: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<f64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        let ticks = fields.get(11).copied().unwrap_or(0.0) + fields.get(12).copied().unwrap_or(0.0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks / hz
    }
}

/// What one flood did.
#[derive(Debug, Clone, Copy, Default)]
struct FloodReport {
    /// Datagrams the kernel took.
    sent: u64,
    /// Datagrams `sendmmsg` refused.
    failed: u64,
    /// How long it ran.
    seconds: f64,
}

/// A flood of one kind of garbage from gw-a to gw-b, until [`Flood::stop`]
/// (or drop).
struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<FloodReport>>,
}

impl Flood {
    /// Starts flooding at `rate` packets/s (0: as fast as it goes) from a
    /// thread in gw-a's namespace.
    fn start(lab: &BenchLab, kind: Kind, spi_in: u32, rate: u64) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = spawn_in_netns(&lab.gw_a, move || flood(kind, spi_in, rate, &flag));
        Flood {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> FloodReport {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|e| panic!("the flooder failed: {}", panic_message(&*e))),
            None => FloodReport::default(),
        }
    }
}

impl Drop for Flood {
    /// The thread ends by itself (within one batch) once told.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The flooder's loop: batches of [`FLOOD_BATCH`] prebuilt datagrams of
/// random bytes, the headers stamped before each send, `sendmmsg` from
/// gw-a's address (an ephemeral port: vpngw owns 4500) to gw-b. Paced by
/// the number of datagrams offered so far, so a slow moment is caught up
/// and refused sends do not speed it up.
fn flood(kind: Kind, spi_in: u32, rate: u64, stop: &AtomicBool) -> FloodReport {
    let socket = UdpSocket::bind((A.outer, 0)).expect("bind the flooder's socket");
    // Blocking sends (a full queue waits), but never for long: the stop
    // flag is read between batches.
    socket
        .set_write_timeout(Some(Duration::from_millis(100)))
        .expect("send timeout");
    let fd = socket.as_raw_fd();
    let to_ip: Ipv4Addr = B.outer.parse().expect("gw-b's address");
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: kind.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(to_ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = kind.len();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut bufs: Vec<u8> = (0..FLOOD_BATCH * len)
        .map(|_| {
            // xorshift64: random enough to be anything but valid ESP.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();

    let start = Instant::now();
    let (mut sent, mut failed) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let offered = sent + failed;
        if rate > 0 {
            let due = start + Duration::from_secs_f64(offered as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        for (i, packet) in bufs.chunks_mut(len).enumerate() {
            kind.stamp(packet, offered + i as u64, spi_in);
        }
        // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
        let mut msgs: [libc::mmsghdr; FLOOD_BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; FLOOD_BATCH];
        for ((msg, iov), packet) in msgs.iter_mut().zip(&mut iovs).zip(bufs.chunks_mut(len)) {
            iov.iov_base = packet.as_mut_ptr().cast();
            iov.iov_len = packet.len();
            msg.msg_hdr.msg_name = std::ptr::addr_of!(to).cast_mut().cast();
            msg.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        let mut done = 0;
        while done < FLOOD_BATCH {
            // SAFETY: the headers point at `to`, `iovs` and `bufs`, all
            // alive and unmoved until the call returns; the kernel only
            // reads them (and writes each msg_len).
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs[done..].as_mut_ptr(),
                    (FLOOD_BATCH - done) as libc::c_uint,
                    0,
                )
            };
            if rc <= 0 {
                break;
            }
            done += rc as usize;
        }
        sent += done as u64;
        failed += (FLOOD_BATCH - done) as u64;
    }
    FloodReport {
        sent,
        failed,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// One line of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    /// TCP alone.
    Baseline,
    /// TCP while `kind` floods at `rate` packets/s (0: unpaced).
    Garbage { kind: Kind, rate: u64 },
}

impl Row {
    fn label(&self) -> String {
        match self {
            Row::Baseline => "none (baseline)".into(),
            Row::Garbage { kind, rate: 0 } => format!("{}, unpaced", kind.label()),
            Row::Garbage { kind, rate } => {
                format!("{}, {} packets/s", kind.label(), si(*rate as f64))
            }
        }
    }
}

/// One run of one row.
#[derive(Debug, Clone, Copy)]
struct Sample {
    flood: FloodReport,
    /// gw-b's counters' growth over the run.
    delta: Counters,
    tcp: TcpRun,
    /// gw-b's receive thread's CPU time over the run, per second of it
    /// (None: not found).
    rx_cpu: Option<f64>,
}

/// Reads gw-b's counters, starts the row's flood, runs single-stream TCP,
/// stops the flood, lets the receiver settle and reads the counters again.
/// None if gw-b's inbound SPI changed meanwhile (a rekey: the flood's SPI
/// went stale, so its garbage landed elsewhere).
fn sample(
    lab: &BenchLab,
    opts: &Options,
    socket: &Path,
    rx_thread: Option<&RxThread>,
    row: Row,
) -> Option<Sample> {
    let before = read_counters(lab, &opts.vpngw, socket);
    let cpu_before = rx_thread.map(RxThread::cpu_seconds);
    let started = Instant::now();
    let flood = match row {
        Row::Baseline => None,
        Row::Garbage { kind, rate } => Some(Flood::start(lab, kind, before.spi_in, rate)),
    };
    let tcp = lab.tcp(opts.seconds, 1);
    let flood = flood.map(Flood::stop).unwrap_or_default();
    let rx_cpu = rx_thread
        .zip(cpu_before)
        .map(|(t, before)| (t.cpu_seconds() - before) / started.elapsed().as_secs_f64());
    std::thread::sleep(SETTLE);
    let after = read_counters(lab, &opts.vpngw, socket);
    (after.spi_in == before.spi_in).then(|| Sample {
        flood,
        delta: after.since(&before),
        tcp,
        rx_cpu,
    })
}

/// A row's runs, summed (garbage, counters) or their median (TCP).
#[derive(Debug)]
struct RowResult {
    row: Row,
    sent: u64,
    failed: u64,
    flood_seconds: f64,
    /// What landed in the row's counter (0 for the baseline).
    counted: u64,
    /// Port 4500's socket overflowing (all runs).
    overflow: u64,
    /// Median single-stream TCP, bit/s.
    tcp: f64,
    /// gw-b's receive thread's CPU, cores (mean of the runs).
    rx_cpu: Option<f64>,
    /// Whether every run's TCP carried something.
    carried: bool,
}

impl RowResult {
    fn of(row: Row, samples: &[Sample]) -> RowResult {
        RowResult {
            row,
            sent: samples.iter().map(|s| s.flood.sent).sum(),
            failed: samples.iter().map(|s| s.flood.failed).sum(),
            flood_seconds: samples.iter().map(|s| s.flood.seconds).sum(),
            counted: match row {
                Row::Baseline => 0,
                Row::Garbage { kind, .. } => {
                    samples.iter().map(|s| kind.counter().of(&s.delta)).sum()
                }
            },
            overflow: samples.iter().map(|s| s.delta.rcvbuf_errors).sum(),
            tcp: median(samples.iter().map(|s| s.tcp.bits_per_second).collect()).unwrap_or(0.0),
            rx_cpu: samples
                .iter()
                .map(|s| s.rx_cpu)
                .sum::<Option<f64>>()
                .map(|sum| sum / samples.len().max(1) as f64),
            carried: !samples.is_empty() && samples.iter().all(|s| s.tcp.bytes > 0.0),
        }
    }

    fn pps(&self) -> f64 {
        if self.flood_seconds > 0.0 {
            self.sent as f64 / self.flood_seconds
        } else {
            0.0
        }
    }

    /// What was counted, percent of what was sent.
    fn counted_percent(&self) -> f64 {
        if self.sent > 0 {
            100.0 * self.counted as f64 / self.sent as f64
        } else {
            0.0
        }
    }
}

/// Why the run fails, if it does.
fn check(results: &[RowResult]) -> Vec<String> {
    let mut failures = Vec::new();
    for r in results {
        if !r.carried {
            failures.push(format!("{}: TCP carried nothing", r.row.label()));
        }
        let Row::Garbage { kind, .. } = r.row else {
            continue;
        };
        if r.sent == 0 {
            failures.push(format!("{}: the flooder sent nothing", r.row.label()));
        } else if kind != Kind::ClosedPort && (r.counted as f64) < MIN_COUNTED * r.sent as f64 {
            failures.push(format!(
                "{}: {} of {} datagrams sent counted in {} ({:.1} %, at least {:.0} % expected)",
                r.row.label(),
                r.counted,
                r.sent,
                kind.counter().name(),
                r.counted_percent(),
                MIN_COUNTED * 100.0
            ));
        }
    }
    failures
}

/// The whole output: a caption, the table, the legend.
fn report(opts: &Options, results: &[RowResult], busy_before: f64, elapsed: Duration) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mode = if opts.smoke { "smoke" } else { "full" };
    let runs = if opts.runs == 1 {
        "one run per row".to_string()
    } else {
        format!("median of {} runs per row", opts.runs)
    };
    let baseline = results
        .iter()
        .find(|r| r.row == Row::Baseline)
        .map_or(0.0, |r| r.tcp);
    let mut out = format!(
        "ESP garbage benchmark ({mode}): {label}, single-stream TCP host-a → host-b for {secs} s \
         ({runs}) while gw-a floods gw-b with {DATAGRAM}-byte datagrams at {rate} packets/s{unpaced}; \
         network namespaces on one {cores}-core machine; {total:.0} s in all\n\n",
        label = PATH.label(),
        secs = opts.seconds,
        rate = si(opts.rate as f64),
        unpaced = if opts.unpaced {
            " and unpaced"
        } else {
            ""
        },
        total = elapsed.as_secs_f64(),
    );
    out.push_str(
        "| garbage | sent (packets/s achieved) | counted (counter: packets, % of sent) \
         | port 4500 socket overflow (packets) | gw-b's receive thread (CPU %) \
         | TCP, 1 stream (Mbit/s) | ratio to baseline |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let (sent, counted) = match r.row {
            Row::Baseline => ("–".to_string(), "–".to_string()),
            Row::Garbage { kind, .. } => {
                let refused = if r.failed > 0 {
                    format!(", {} refused by sendmmsg", r.failed)
                } else {
                    String::new()
                };
                (
                    format!("{} ({}/s{refused})", r.sent, si(r.pps())),
                    format!(
                        "{}: {}, {:.1} %",
                        kind.counter().name(),
                        r.counted,
                        r.counted_percent()
                    ),
                )
            }
        };
        let ratio = if baseline > 0.0 {
            format!("{:.2}", r.tcp / baseline)
        } else {
            "–".into()
        };
        let cpu = r
            .rx_cpu
            .map_or("–".to_string(), |c| format!("{:.0}", c * 100.0));
        out.push_str(&format!(
            "| {} | {sent} | {counted} | {} | {cpu} | {} | {ratio} |\n",
            r.row.label(),
            r.overflow,
            num(r.tcp / 1e6),
        ));
    }
    out.push_str(&format!(
        "\nsent: datagrams the flooder's kernel took (sendmmsg), over all runs of the row; \
         counted: how many of them gw-b counted where that kind belongs (vpngw's counters from \
         `vpngw sas --json`; the control kind's is the kernel's); socket overflow: datagrams \
         gw-b's kernel dropped because a UDP socket's receive buffer was full (Udp RcvbufErrors, \
         port 4500's here), garbage and tunnel traffic alike; receive thread: the CPU time of \
         gw-b's vpngw-rx thread (which opens the tunnel's ESP and refuses the garbage) during the \
         run, % of one core, mean of the runs. A kind fails the run if less than \
         {:.0} % of it is counted. See docs/esp-garbage.md.\n",
        MIN_COUNTED * 100.0
    ));
    if busy_before > 0.1 {
        out.push_str(&format!(
            "Note: the machine was already {:.0} % busy (of one core) before the run: \
             other load skews these figures.\n",
            busy_before * 100.0
        ));
    }
    out
}

/// A count with an SI suffix: `98.7k`, `1.20M`.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", num(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", num(v / 1e3))
    } else {
        format!("{v:.0}")
    }
}
