//! Scenario 4: static mode — scenario 1 without BGP.
//!
//! ```text
//!  [host-g 10.1.0.2] -- [gw-g vpngw] 192.0.2.1 == t1 169.254.21.1 <-> .2 == 198.51.100.1 [gw-p1 vpngw] -- [host-p1 10.2.0.2]
//!                        static_routes = 10.2.0.0/24, 10.20.0.0/16          static_routes = 10.1.0.0/24
//! ```
//!
//! The configured prefixes enter the kernel when the tunnel comes up and
//! leave it when the tunnel goes down (the peer stops and deletes its SA),
//! and come back with it.

use super::*;
use vpngw_netns_tests::fabric::Fabric;

fn gw(
    asn: u32,
    prefix: &'static str,
    local: &'static str,
    remote: &'static str,
    addrs: (&'static str, &'static str),
    statics: Vec<&'static str>,
    initiate: bool,
) -> Gw {
    Gw {
        asn,
        prefixes: vec![prefix],
        announce: vec![],
        conn_extra: "",
        tunnels: vec![Tunnel {
            name: "t1",
            local,
            remote,
            addr: addrs.0,
            peer_addr: addrs.1,
            routing: Routing::Static(statics),
            initiate,
        }],
    }
}

#[test]
fn static_routes_follow_the_tunnel() {
    let scenario = "static mode";
    let mut f = Fabric::new();
    f.add_site("g", 1, &["192.0.2.1"]);
    f.add_site("p1", 2, &["198.51.100.1"]);
    let gw_p1 = gw(
        65010,
        "10.2.0.0/24",
        "198.51.100.1",
        "192.0.2.1",
        ("169.254.21.2", "169.254.21.1"),
        vec!["10.1.0.0/24"],
        false,
    );
    let mut p1 = Daemon::start(&f, "p1", &gw_p1);
    let g = Daemon::start(
        &f,
        "g",
        &gw(
            65515,
            "10.1.0.0/24",
            "192.0.2.1",
            "198.51.100.1",
            ("169.254.21.1", "169.254.21.2"),
            vec!["10.2.0.0/24", "10.20.0.0/16"],
            true,
        ),
    );
    let took = g.wait_route("10.2.0.0/24", &["t1"]);
    g.wait_route("10.20.0.0/16", &["t1"]);
    p1.wait_route("10.1.0.0/24", &["t1"]);
    report(
        scenario,
        &format!(
            "static routes in the kernel {:.2} s after gw-g started",
            took.as_secs_f64()
        ),
    );
    let status = g.json(&["status"]);
    assert_eq!(status["connections"][0]["routing"], "static");
    assert_eq!(status["connections"][0]["prefixes"], 2);
    assert_eq!(status["connections"][0]["bgp_state"], Value::Null);
    f.wait_ping("g", "10.2.0.2", SETUP);
    f.wait_ping("p1", "10.1.0.2", SETUP);
    let why = g.json(&["routes", "10.20.0.0/16"]);
    assert!(
        why["explain"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["layer"] == "static" && s["ok"] == true),
        "{why}"
    );

    // The peer goes away (deleting its SA on the way out): the routes go.
    let cut = Instant::now();
    p1.proc.stop();
    g.wait_route("10.2.0.0/24", &[]);
    g.wait_route("10.20.0.0/16", &[]);
    report(
        scenario,
        &format!(
            "routes withdrawn {:.0} ms after the peer was told to stop",
            cut.elapsed().as_secs_f64() * 1000.0
        ),
    );
    assert!(
        f.site("g").gw.route("10.2.0.0/24").is_none(),
        "{}",
        f.site("g").gw.routes()
    );
    let why = g.json(&["routes", "10.2.0.0/24"]);
    let v = why["explain"]["verdict"].as_str().unwrap();
    assert!(
        v.contains("t1: tunnel"),
        "the verdict names the down tunnel: {v}"
    );

    // And come back with the tunnel.
    let _p1_again = Daemon::start(&f, "p1", &gw_p1);
    let back = g.wait_route("10.2.0.0/24", &["t1"]);
    report(
        scenario,
        &format!("back {:.1} s after the peer restarted", back.as_secs_f64()),
    );
    f.wait_ping("g", "10.2.0.2", SETUP);
}
