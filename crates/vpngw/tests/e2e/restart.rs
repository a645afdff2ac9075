//! Restarts lose nothing: `kill -9` of a gateway under traffic, then a
//! fresh start.
//!
//! ```text
//!  [host-g 10.1.0.2] -- [gw-g vpngw AS 65515] 192.0.2.1 == 169.254.21.1 <-> .2 == 198.51.100.1 [gw-p1 vpngw AS 65010] -- [host-p1 10.2.0.2]
//! ```
//!
//! gw-g dies without a word (SIGKILL): its TUN device goes with it, and
//! with it every kernel route it had installed — none is left pointing
//! nowhere. Started again, it purges whatever an earlier run left, brings
//! the tunnel and BGP back. Its new IKE SA says INITIAL_CONTACT, so the
//! peer ends the dead one at once (no DELETE to a daemon that lost it) and
//! starts its BGP session again straight away, instead of holding on to a
//! TCP connection gw-g's kernel forgot until a keepalive draws a reset.

use super::*;
use vpngw_netns_tests::fabric::Fabric;

fn gw(asn: u32, prefix: &'static str, t: Tunnel) -> Gw {
    Gw {
        asn,
        prefixes: vec![prefix],
        announce: vec![],
        conn_extra: "",
        tunnels: vec![t],
    }
}

#[test]
fn a_killed_gateway_leaves_no_routes_and_comes_back() {
    let scenario = "restart";
    let mut f = Fabric::new();
    f.add_site("g", 1, &["192.0.2.1"]);
    f.add_site("p1", 2, &["198.51.100.1"]);
    let p1_gw = gw(
        65010,
        "10.2.0.0/24",
        Tunnel {
            name: "g",
            local: "198.51.100.1",
            remote: "192.0.2.1",
            addr: "169.254.21.2",
            peer_addr: "169.254.21.1",
            routing: Routing::Bgp(65515),
            initiate: false,
        },
    );
    let g_gw = gw(
        65515,
        "10.1.0.0/24",
        Tunnel {
            name: "p1",
            local: "192.0.2.1",
            remote: "198.51.100.1",
            addr: "169.254.21.1",
            peer_addr: "169.254.21.2",
            routing: Routing::Bgp(65010),
            initiate: true,
        },
    );
    let p1 = Daemon::start(&f, "p1", &p1_gw);
    let mut g = Daemon::start(&f, "g", &g_gw);
    g.wait_route("10.2.0.0/24", &["p1"]);
    p1.wait_route("10.1.0.0/24", &["g"]);
    f.wait_ping("g", "10.2.0.2", SETUP);
    let old = p1.json(&["sas"])["connections"][0]["ike"]["spi_i"].clone();

    // Under traffic, gw-g is killed.
    let pinger = f
        .site("g")
        .host
        .command("ping")
        .args(["-n", "-q", "-i", "0.01", "-c", "300", "10.2.0.2"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    g.proc.kill();
    g.proc.stop();
    let gw_ns = &f.site("g").gw;
    let left = wait_until(
        "gw-g's routes to go with its process",
        Duration::from_secs(5),
        || {
            let routes = gw_ns.ip("route show proto 200");
            let nexthops = gw_ns.try_ip("nexthop show").unwrap_or_default();
            if routes.trim().is_empty() && !nexthops.contains("vti-") {
                Ok(nexthops)
            } else {
                Err(format!("{routes}\n{nexthops}"))
            }
        },
    );
    report(
        scenario,
        &format!(
            "after SIGKILL: no route of ours left in gw-g's kernel; nexthops left: {:?}",
            left.trim()
        ),
    );

    // Started again: the tunnel, BGP and the routes come back.
    let start = Instant::now();
    g = Daemon::start(&f, "g", &g_gw);
    g.wait_route("10.2.0.0/24", &["p1"]);
    p1.wait_route("10.1.0.0/24", &["g"]);
    let back = start.elapsed();
    f.wait_ping("g", "10.2.0.2", SETUP);
    drop(pinger);
    report(scenario, &format!("restarted gw-g routes p1's LAN again {:.0} ms after it was started; p1 routes back to it too", back.as_secs_f64() * 1000.0));
    // p1 runs the new IKE SA only: the dead one was superseded.
    let sas = p1.json(&["sas"]);
    let now = &sas["connections"][0]["ike"]["spi_i"];
    assert_ne!(now, &old, "p1 moved to the new IKE SA");
    // The dead SA on p1 ended when the new one said INITIAL_CONTACT, and
    // the BGP session started again with it.
    let log = p1.proc.log();
    assert!(
        log.contains("its new IKE SA (INITIAL_CONTACT) replaces this one"),
        "{}",
        tail(&log, 20)
    );
    assert!(
        log.contains("the peer restarted: its BGP session starts again"),
        "{}",
        tail(&log, 20)
    );
    // And the live tunnel stays up.
    let status = p1.json(&["status"]);
    assert_eq!(status["connections"][0]["tunnel_up"], true, "{status}");
    f.wait_ping("g", "10.2.0.2", SETUP);
    // Exactly one child SA's worth of routes, all through the live tunnel.
    let routes = gw_ns.ip("route show proto 200");
    assert_eq!(
        routes
            .lines()
            .filter(|l| l.starts_with("10.2.0.0/24"))
            .count(),
        1,
        "{routes}"
    );
}
