//! The reference lab as a demo: two sites, strongSwan + BIRD on each,
//! a route-based IKEv2 tunnel with eBGP and BFD across it. It shows the SAs,
//! the BGP session, the kernel routes and a LAN-to-LAN ping, then cuts the
//! underlay silently and shows how fast the routes leave. Everything is torn
//! down at the end. This is the setup vpngw replaces one side of.
//!
//! Run as root: `cargo run -p vpngw-netns-tests --bin lab-demo`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use vpngw_netns_tests::lab::{BgpPlan, LabOptions, SITE_A, SITE_B};
use vpngw_netns_tests::{wait_until, TwoSiteLab};

fn step(title: &str) {
    println!("\n=== {title}");
}

fn main() {
    vpngw_netns_tests::require_root();
    let timeout = Duration::from_secs(30);
    let opts = LabOptions {
        bgp: BgpPlan {
            bfd: true,
            ..BgpPlan::default()
        },
        ..LabOptions::default()
    };

    step("building two sites in network namespaces (strongSwan + BIRD on each)");
    let lab = TwoSiteLab::start(&opts);
    println!(
        "namespaces: {}, {}, {}, {}, {}",
        lab.a.host.name(),
        lab.a.gw.name(),
        lab.wan.name(),
        lab.b.gw.name(),
        lab.b.host.name()
    );

    step("IKEv2 SA and ESP child SA (gw-a: swanctl --list-sas)");
    let [sas, _] = lab.wait_tunnel_up(timeout);
    print!("{sas}");

    step("eBGP over the tunnel with BFD (gw-a: birdc show protocols all peer / show bfd sessions)");
    let [bgp, _] = lab.wait_bgp_up(timeout);
    print!("{bgp}");
    print!("{}", lab.wait_bfd_up(timeout));

    step("kernel routes learned over BGP");
    let [route_a, route_b] = lab.wait_lan_routes(timeout);
    println!("gw-a: {route_a}\ngw-b: {route_b}");

    step(&format!(
        "ping {} (site b) from {} (site a)",
        SITE_B.host, SITE_A.host
    ));
    print!(
        "{}",
        wait_until("LAN-to-LAN ping", timeout, || lab.ping_a_to_b(3))
    );

    step("cutting the underlay silently (blackhole routes in the wan router)");
    let cut = Instant::now();
    lab.blackhole_underlay();
    wait_until("routes to leave", Duration::from_secs(10), || {
        match lab.any_lan_route() {
            Some(route) => Err(route),
            None => Ok(()),
        }
    });
    println!(
        "both sites' LAN routes withdrawn {:?} after the cut (BFD 100 ms x 3)",
        cut.elapsed()
    );
    println!("(without BFD they would stay for the 180 s hold time)");

    step("tearing down");
}
