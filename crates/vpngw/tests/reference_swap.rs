//! The reference lab with one site replaced by vpngw: IKEv2/ESP and eBGP
//! across the tunnel against strongSwan + BIRD, with the same checks the
//! reference passes (SA up, each LAN routed into the other site's kernel
//! table, LAN-to-LAN ping), vpngw initiating and responding.
//!
//! ```text
//!  [host-a] --- [gw-a] ------ [wan] ------ [gw-b] --- [host-b]
//!  10.1.0.2   192.0.2.1                198.51.100.1   10.2.0.2
//!     vpngw or charon+BIRD ==== IKEv2 / ESP-in-UDP ==== charon+BIRD or vpngw
//!            AS 65010 ====== eBGP 169.254.21.1-.2 ======= AS 65020
//! ```
//! (The full picture is in `vpngw_netns_tests::lab`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::time::Duration;

use vpngw_netns_tests::lab::{GatewayKind, LabOptions, SITE_A, SITE_B};
use vpngw_netns_tests::{wait_until, TwoSiteLab};

const SETUP: Duration = Duration::from_secs(40);
const VPNGW: GatewayKind = GatewayKind::Vpngw(env!("CARGO_BIN_EXE_vpngw"));

fn check(lab: &TwoSiteLab) {
    let [a, b] = lab.wait_tunnel_up(SETUP);
    println!("site a tunnel:\n{a}\nsite b tunnel:\n{b}");
    let [a, b] = lab.wait_bgp_up(SETUP);
    println!("site a BGP:\n{a}\nsite b BGP:\n{b}");
    let [route_a, route_b] = lab.wait_lan_routes(SETUP);
    println!("gw-a: {route_a}\ngw-b: {route_b}");
    let ping = wait_until("LAN-to-LAN ping", SETUP, || lab.ping_a_to_b(3));
    println!("{ping}");
    assert!(ping.contains("3 received"), "{ping}");
}

#[test]
fn vpngw_initiates_to_strongswan_and_bird() {
    let lab = TwoSiteLab::start(&LabOptions {
        a: VPNGW,
        ..LabOptions::default()
    });
    check(&lab);
    // vpngw installed the route it learned from BIRD, through its tunnel.
    let route = lab.a.gw.route(SITE_B.lan).unwrap();
    assert!(route.contains("proto 200"), "not vpngw's route: {route}");
    // BIRD learned ours with our AS in the path.
    let learned = lab.b.gw.route(SITE_A.lan).unwrap();
    assert!(learned.contains("proto bird"), "{learned}");
}

#[test]
fn strongswan_and_bird_initiate_to_vpngw() {
    let lab = TwoSiteLab::start(&LabOptions {
        b: VPNGW,
        ..LabOptions::default()
    });
    check(&lab);
    let route = lab.b.gw.route(SITE_A.lan).unwrap();
    assert!(route.contains("proto 200"), "not vpngw's route: {route}");
}

/// The peer deletes the IKE SA: vpngw takes the tunnel down, closes the BGP
/// session across it and withdraws the routes it learned at once (not
/// after the 180 s hold time); then, as the initiator, it brings the
/// tunnel and the session back and the routes return.
#[test]
fn peer_delete_withdraws_routes_at_once_and_recovers() {
    let lab = TwoSiteLab::start(&LabOptions {
        a: VPNGW,
        ..LabOptions::default()
    });
    check(&lab);
    let cut = std::time::Instant::now();
    lab.gw_b.delete_tunnel().unwrap();
    wait_until(
        "vpngw to withdraw site B's LAN",
        Duration::from_secs(5),
        || match lab.a.gw.route(SITE_B.lan) {
            Some(route) => Err(route),
            None => Ok(()),
        },
    );
    println!(
        "route withdrawn {:?} after the peer deleted the IKE SA",
        cut.elapsed()
    );
    let route = wait_until("the route to come back", SETUP, || {
        lab.a.gw.route(SITE_B.lan).ok_or_else(|| lab.a.gw.routes())
    });
    println!("back after {:?}: {route}", cut.elapsed());
    let ping = wait_until("LAN-to-LAN ping after recovery", SETUP, || {
        lab.ping_a_to_b(3)
    });
    assert!(ping.contains("3 received"), "{ping}");
}

/// BFD (100 ms x 3) between vpngw and BIRD across the tunnel: a silent
/// underlay failure takes the routes out of both kernel tables within a
/// second — vpngw's and BIRD's (the reference lab's figure with BIRD on
/// both sides is 0.28-0.36 s).
#[test]
fn bfd_with_bird_withdraws_routes_within_a_second_of_underlay_loss() {
    let lab = TwoSiteLab::start(&LabOptions {
        a: VPNGW,
        bgp: vpngw_netns_tests::lab::BgpPlan {
            bfd: true,
            ..Default::default()
        },
        ..LabOptions::default()
    });
    check(&lab);
    let ours = lab.wait_bfd_up(SETUP);
    println!("vpngw: {ours}");
    let theirs = wait_until("BIRD's BFD session up", SETUP, || {
        let s = lab.gw_b.bfd_up()?;
        Ok::<_, String>(s)
    });
    println!("BIRD: {theirs}");
    let cut = std::time::Instant::now();
    lab.blackhole_underlay();
    let mut vpngw_took = None;
    wait_until(
        "both LAN routes to leave the kernel tables",
        Duration::from_secs(5),
        || {
            if vpngw_took.is_none() && lab.a.gw.route(SITE_B.lan).is_none() {
                vpngw_took = Some(cut.elapsed());
            }
            match lab.any_lan_route() {
                Some(route) => Err(route),
                None => Ok(()),
            }
        },
    );
    let both = cut.elapsed();
    let vpngw_took = vpngw_took.unwrap_or(both);
    println!("vpngw withdrew BIRD's LAN {vpngw_took:?} after the underlay was cut; both tables clean after {both:?}");
    assert!(
        vpngw_took < Duration::from_secs(1),
        "vpngw took {vpngw_took:?} (BFD 100 ms x 3)"
    );
    assert!(both < Duration::from_secs(1), "{both:?}");
}
