//! Route programming against the real kernel, in a namespace of its own.
//! A benchmark, not a test: it prints a table.
//!
//! ```text
//! flock /tmp/vpngw-cargo.lock cargo bench -p vpngw-routes --bench kernel
//! ```
//! (root needed; `-- 100000` runs only the given sizes.)
//!
//! For 100k and 1M distinct /32s from 10.0.0.0/8, all through one nexthop
//! group, it times: our install (set_route for every prefix + apply), the
//! move of every route to the other tunnel (one group replace), our
//! withdraw (one delete per route), a clean stop after a fresh install
//! (deleting the group drops the routes), and the same install with
//! `ip -n NS -batch FILE` (`route add … nhid G`).
//!
//! ```text
//!   [vgb-<pid>-routes]   r1 <-veth-> p1   (tunnel 1, gateway 10.255.1.2)
//!                        r2 <-veth-> p2   (tunnel 2, gateway 10.255.2.2)
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use vpngw_routes::{enter_netns, Config, IpNet, Programmer, Tunnel, TunnelId};

struct Namespace(String);

impl Namespace {
    fn new() -> Namespace {
        let name = format!("vgb-{}-routes", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Namespace(name);
        ns.ip("link set lo up");
        for n in 1..=2 {
            ns.ip(&format!("link add r{n} type veth peer name p{n}"));
            ns.ip(&format!("link set r{n} up"));
            ns.ip(&format!("link set p{n} up"));
            ns.ip(&format!("addr add 10.255.{n}.1/30 dev r{n}"));
        }
        ns
    }

    fn ip(&self, args: &str) -> String {
        let mut all = vec!["-n", &self.0];
        all.extend(args.split_whitespace());
        ip(&all)
    }

    fn count(&self, filter: &str) -> usize {
        let out = Command::new("sh")
            .args(["-c", &format!("ip -n {} {filter} | wc -l", self.0)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ifindex(ns: &Namespace, dev: &str) -> u32 {
    let out = ns.ip(&format!("-o link show dev {dev}"));
    out.split(':').next().unwrap().trim().parse().unwrap()
}

fn prefix(i: u32) -> IpNet {
    IpNet::new(
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i).into(),
        32,
    )
    .unwrap()
}

fn rate(n: u32, d: Duration) -> String {
    format!("{:.0}", f64::from(n) / d.as_secs_f64())
}

struct Row {
    n: u32,
    install: Duration,
    apply_only: Duration,
    replace: Duration,
    withdraw: Duration,
    stop: Duration,
    batch: Duration,
    batch_replace: Duration,
    batch_group_del: Duration,
}

fn run(ns: &Namespace, n: u32) -> Row {
    let t1 = TunnelId::from("t1");
    let t2 = TunnelId::from("t2");
    let tunnels = [
        Tunnel {
            id: t1.clone(),
            ifindex: ifindex(ns, "r1"),
            peer_v4: Some(Ipv4Addr::new(10, 255, 1, 2)),
            peer_v6: None,
        },
        Tunnel {
            id: t2.clone(),
            ifindex: ifindex(ns, "r2"),
            peer_v4: Some(Ipv4Addr::new(10, 255, 2, 2)),
            peer_v6: None,
        },
    ];
    let path = PathBuf::from(format!("/run/netns/{}", ns.0));
    let (install, apply_only, replace, withdraw, stop) = std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&path).unwrap();
            let mut p = Programmer::open(Config::default()).unwrap();
            p.set_tunnel(tunnels[0].clone(), true).unwrap();
            p.set_tunnel(tunnels[1].clone(), false).unwrap();
            p.apply().unwrap();

            // Install: every prefix through the {t1, t2} group (t2 down).
            let start = Instant::now();
            for i in 0..n {
                p.set_route(prefix(i), [t1.clone(), t2.clone()]);
            }
            let applying = Instant::now();
            let report = p.apply().unwrap();
            let install = start.elapsed();
            let apply_only = applying.elapsed();
            assert!(report.failures.is_empty(), "{:?}", &report.failures[..1]);
            assert_eq!(report.routes_replaced, n as usize);

            // Move everything to t2: the group is replaced once.
            let start = Instant::now();
            p.set_tunnel_up(&t2, true);
            p.set_tunnel_up(&t1, false);
            let report = p.apply().unwrap();
            let replace = start.elapsed();
            assert_eq!(report.routes_replaced, 0);
            assert_eq!(report.nexthops_replaced, 2, "t2's nexthop and the group");

            let moved = ns.count("-4 route show proto 200");
            assert_eq!(moved, n as usize, "one line per single-member-group route");
            let sample = ns.ip(&format!("route show {}", prefix(n / 2)));
            assert!(sample.contains("via 10.255.2.2 dev r2"), "{sample}");

            // Withdraw: one delete per route.
            let start = Instant::now();
            for i in 0..n {
                p.withdraw(&prefix(i));
            }
            let report = p.apply().unwrap();
            let withdraw = start.elapsed();
            assert_eq!(report.routes_deleted, n as usize);

            // Clean stop after a fresh install: the group delete drops all.
            for i in 0..n {
                p.set_route(prefix(i), [t2.clone()]);
            }
            p.apply().unwrap();
            let start = Instant::now();
            p.shutdown(false).unwrap();
            let stop = start.elapsed();
            (install, apply_only, replace, withdraw, stop)
        })
        .join()
        .unwrap()
    });
    assert_eq!(ns.count("-4 route show proto 200"), 0);

    // The same install with ip -batch, through one group as well.
    let file = std::env::temp_dir().join(format!("vgb-{}-routes.batch", std::process::id()));
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for i in 0..n {
            writeln!(out, "route add {} nhid 2 proto 201 metric 20", prefix(i)).unwrap();
        }
    }
    ns.ip("nexthop add id 1 via 10.255.1.2 dev r1 proto 201");
    ns.ip("nexthop add id 2 group 1 proto 201");
    let start = Instant::now();
    ns.ip(&format!("-batch {}", file.display()));
    let batch = start.elapsed();
    let _ = std::fs::remove_file(&file);
    assert_eq!(ns.count("-4 route show proto 201"), n as usize);
    ns.ip("nexthop add id 3 via 10.255.2.2 dev r2 proto 201");
    let start = Instant::now();
    ns.ip("nexthop replace id 2 group 3 proto 201");
    let batch_replace = start.elapsed();
    let start = Instant::now();
    ns.ip("nexthop del id 2");
    let batch_group_del = start.elapsed();
    ns.ip("nexthop del id 1");
    ns.ip("nexthop del id 3");
    assert_eq!(ns.count("-4 route show proto 201"), 0);

    Row {
        n,
        install,
        apply_only,
        replace,
        withdraw,
        stop,
        batch,
        batch_replace,
        batch_group_del,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench mains without --bench.
        println!(
            "kernel route benchmark: run it with `cargo bench -p vpngw-routes --bench kernel`"
        );
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the kernel route benchmark needs root (it creates a network namespace)");
        std::process::exit(1);
    }
    let mut sizes: Vec<u32> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![100_000, 1_000_000];
    }
    let ns = Namespace::new();
    let rows: Vec<Row> = sizes.iter().map(|&n| run(&ns, n)).collect();
    println!();
    println!(
        "{:>9} | {:>22} | {:>12} | {:>22} | {:>14} | {:>20} | {:>14} | {:>16}",
        "routes",
        "vpngw install (apply)",
        "routes/s",
        "ip -batch install",
        "routes/s",
        "move: group replace",
        "vpngw withdraw",
        "stop (group del)",
    );
    for r in &rows {
        println!(
            "{:>9} | {:>9.3}s ({:>7.3}s) | {:>12} | {:>21.3}s | {:>14} | {:>19.3}ms | {:>13.3}s | {:>15.3}ms",
            r.n,
            r.install.as_secs_f64(),
            r.apply_only.as_secs_f64(),
            rate(r.n, r.install),
            r.batch.as_secs_f64(),
            rate(r.n, r.batch),
            r.replace.as_secs_f64() * 1e3,
            r.withdraw.as_secs_f64(),
            r.stop.as_secs_f64() * 1e3,
        );
        println!(
            "{:>9}   same kernel, by hand: `ip nexthop replace` of the ip -batch group {:.3} ms, \
             `ip nexthop del` of it {:.3} ms",
            "",
            r.batch_replace.as_secs_f64() * 1e3,
            r.batch_group_del.as_secs_f64() * 1e3
        );
    }
}
