//! The reference lab: strongSwan + BIRD on both sites, the setup our users
//! run today and the one vpngw replaces one side of.
//!
//! ```text
//!  [host-a] ---- [gw-a] ------ [wan] ------ [gw-b] ---- [host-b]
//!  10.1.0.2     192.0.2.1              198.51.100.1     10.2.0.2
//!                 charon ==== IKEv2 / ESP-in-UDP ==== charon
//!                 BIRD 65010 == eBGP 169.254.21.1-.2 == BIRD 65020
//! ```
//! (The full picture with every address is in `vpngw_netns_tests::lab`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::time::{Duration, Instant};

use vpngw_netns_tests::lab::{BgpPlan, LabOptions, SITE_A, SITE_B};
use vpngw_netns_tests::{wait_until, TwoSiteLab};

const SETUP: Duration = Duration::from_secs(30);

/// Brings the lab up and checks what a user checks first: the SA is up with
/// the algorithms asked for, each LAN is routed to the other across the
/// tunnel, and LAN-to-LAN ping works.
#[test]
fn tunnel_bgp_routes_and_ping() {
    let lab = TwoSiteLab::start(&LabOptions::default());

    let [sas_a, sas_b] = lab.wait_tunnel_up(SETUP);
    println!("gw-a swanctl --list-sas:\n{sas_a}\ngw-b swanctl --list-sas:\n{sas_b}");
    for sas in [&sas_a, &sas_b] {
        assert!(
            sas.contains("AES_GCM_16-256"),
            "IKE/ESP not AES-GCM-256:\n{sas}"
        );
        assert!(sas.contains("CURVE_25519"), "IKE not curve25519:\n{sas}");
        assert!(sas.contains("in-UDP"), "ESP not in UDP:\n{sas}");
        assert!(
            sas.contains("local  0.0.0.0/0") && sas.contains("remote 0.0.0.0/0"),
            "selectors not 0.0.0.0/0 both ways:\n{sas}"
        );
    }

    let [bgp_a, _] = lab.wait_bgp_up(SETUP);
    println!("gw-a birdc show protocols all peer:\n{bgp_a}");

    let [route_a, route_b] = lab.wait_lan_routes(SETUP);
    println!("gw-a: {route_a}\ngw-b: {route_b}");
    assert!(
        route_a.contains(&format!("via {}", SITE_B.bgp_addr)),
        "{route_a}"
    );
    assert!(
        route_b.contains(&format!("via {}", SITE_A.bgp_addr)),
        "{route_b}"
    );
    assert!(route_a.contains("dev ipsec0") && route_b.contains("dev ipsec0"));

    let ping = wait_until("LAN-to-LAN ping", SETUP, || lab.ping_a_to_b(3));
    println!("host-a ping {}:\n{ping}", SITE_B.host);
    assert!(ping.contains("3 received"), "{ping}");
}

/// With BFD (100 ms x 3) on the BGP session, a silent underlay failure
/// takes the routes out of both kernel tables within a second.
#[test]
fn bfd_withdraws_routes_within_a_second_of_underlay_loss() {
    let opts = LabOptions {
        bgp: BgpPlan {
            bfd: true,
            ..BgpPlan::default()
        },
        ..LabOptions::default()
    };
    let lab = TwoSiteLab::start(&opts);
    lab.wait_tunnel_up(SETUP);
    lab.wait_bgp_up(SETUP);
    lab.wait_lan_routes(SETUP);
    let bfd = lab.wait_bfd_up(SETUP);
    println!("gw-a birdc show bfd sessions:\n{bfd}");

    let cut = Instant::now();
    lab.blackhole_underlay();
    wait_until(
        "both LAN routes to leave the kernel tables",
        Duration::from_secs(5),
        || match lab.any_lan_route() {
            Some(route) => Err(route),
            None => Ok(()),
        },
    );
    let took = cut.elapsed();
    println!("routes withdrawn from both kernel tables {took:?} after the underlay was cut");
    assert!(
        took < Duration::from_secs(1),
        "routes took {took:?} to leave (BFD 100 ms x 3)"
    );
}

/// Without BFD the same failure leaves the routes in place until the hold
/// timer (180 s) runs out: traffic is blackholed all that time. This is the
/// slowness vpngw exists to remove.
#[test]
fn without_bfd_routes_outlive_underlay_loss() {
    let lab = TwoSiteLab::start(&LabOptions::default());
    lab.wait_tunnel_up(SETUP);
    lab.wait_bgp_up(SETUP);
    lab.wait_lan_routes(SETUP);

    lab.blackhole_underlay();
    std::thread::sleep(Duration::from_secs(3));
    let still = lab.any_lan_route();
    println!("3 s after the underlay was cut, without BFD: {still:?}");
    assert!(
        still.is_some(),
        "routes left without BFD: the hold timer should keep them"
    );
    assert!(lab.ping_a_to_b(1).is_err(), "traffic should be blackholed");
}
