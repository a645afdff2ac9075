//! Single-stream TCP throughput through a tunnel, in network namespaces:
//! vpngw <-> vpngw against strongSwan <-> strongSwan (kernel-libipsec, the
//! user-space reference) and plain routing, in one run on one machine.
//!
//! `cargo bench -p vpngw --bench throughput` (as root). Prints a table; the
//! numbers are this machine's (both ends and iperf3 share its cores).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{mbits, Lab, A, B};

const SECONDS: u32 = 10;
const RUNS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn measure(name: &str, setup: impl Fn(&mut Lab)) -> (String, f64) {
    // `cargo bench --bench throughput -- vpngw`: only the rows named so.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
        return (name.to_string(), f64::NAN);
    }
    let mut lab = Lab::new();
    setup(&mut lab);
    lab.ping();
    let runs: Vec<f64> = (0..RUNS).map(|_| mbits(&lab.iperf_for(SECONDS))).collect();
    eprintln!("{name}: {runs:?} Mbit/s");
    (name.to_string(), median(runs))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("throughput: run with `cargo bench -p vpngw --bench throughput` (as root)");
        return;
    }
    vpngw_netns_tests::require_root();
    let rows = [
        measure("no tunnel (plain routing)", |lab| lab.plain_routes()),
        measure("strongSwan <-> strongSwan, AES-GCM-256", |lab| {
            lab.charon(&B, &A, false);
            lab.charon(&A, &B, true);
        }),
        measure("vpngw <-> vpngw, AES-GCM-256", |lab| {
            lab.vpngw(&B, &A, false);
            lab.vpngw(&A, &B, true);
            lab.wait_route_a();
        }),
    ];
    println!("\nsingle-stream TCP, iperf3 {SECONDS} s, median of {RUNS}:");
    println!("| path | Mbit/s |");
    println!("|---|---|");
    for (name, m) in rows {
        println!("| {name} | {m:.0} |");
    }
}
