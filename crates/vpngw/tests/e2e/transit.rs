//! Scenario 3: transit.
//!
//! Hub: two on-premises sites on one gateway learn each other's prefixes
//! through it and their traffic flows through it.
//!
//! ```text
//!  [host-p1 10.2.0.2] -- [gw-p1 AS 65010] 198.51.100.1 == 169.254.21.2 <-> .1 ==.
//!                                                                              [gw-g vpngw AS 65515] 192.0.2.1 -- [host-g 10.1.0.2]
//!  [host-p2 10.3.0.2] -- [gw-p2 AS 65020] 203.0.113.1  == 169.254.21.6 <-> .5 =='
//! ```
//!
//! Chain: routes cross several gateways.
//!
//! ```text
//!  [a 10.1/24 AS 65001] == [gw1 10.2/24 AS 65002] == [gw2 10.3/24 AS 65003] == [b 10.4/24 AS 65004]
//!   192.0.2.1               192.0.2.2                 198.51.100.1              203.0.113.1
//! ```
//!
//! Triangle: x, y, z each with tunnels to the other two; AS path loop
//! prevention keeps every prefix on its direct path, the two-hop path
//! stands by, and a withdrawn prefix disappears everywhere.
//!
//! ```text
//!            [x 10.1/24 AS 65001 192.0.2.1]
//!            //                          \\
//!  [y 10.2/24 AS 65002 198.51.100.1] == [z 10.3/24 AS 65003 203.0.113.1]
//! ```

use super::*;
use vpngw_netns_tests::fabric::Fabric;

fn tunnel(
    name: &'static str,
    local: &'static str,
    remote: &'static str,
    addr: &'static str,
    peer_addr: &'static str,
    peer_asn: u32,
    initiate: bool,
) -> Tunnel {
    Tunnel {
        name,
        local,
        remote,
        addr,
        peer_addr,
        routing: Routing::Bgp(peer_asn),
        initiate,
    }
}

fn gw(asn: u32, prefix: &'static str, tunnels: Vec<Tunnel>) -> Gw {
    Gw {
        asn,
        prefixes: vec![prefix],
        announce: vec![],
        conn_extra: "",
        tunnels,
    }
}

fn hub() -> Gw {
    gw(
        65515,
        "10.1.0.0/24",
        vec![
            tunnel(
                "p1",
                "192.0.2.1",
                "198.51.100.1",
                "169.254.21.1",
                "169.254.21.2",
                65010,
                true,
            ),
            tunnel(
                "p2",
                "192.0.2.1",
                "203.0.113.1",
                "169.254.21.5",
                "169.254.21.6",
                65020,
                true,
            ),
        ],
    )
}

fn hub_fabric() -> Fabric {
    let mut f = Fabric::new();
    f.add_site("g", 1, &["192.0.2.1"]);
    f.add_site("p1", 2, &["198.51.100.1"]);
    f.add_site("p2", 3, &["203.0.113.1"]);
    f
}

/// Traffic between the spokes goes through the hub's tunnels: the hub's
/// datapath counters grow on both.
fn assert_transit_traffic(f: &Fabric, g: &Daemon, scenario: &str) {
    let before = g.json(&["sas"]);
    let ping = f.wait_ping("p1", "10.3.0.2", SETUP);
    let ping = f.ping("p1", 2, "10.3.0.2", 5).unwrap_or(ping);
    let after = g.json(&["sas"]);
    for name in ["p1", "p2"] {
        let count = |v: &Value| {
            v["connections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .unwrap()["datapath"]["rx_packets"]
                .as_u64()
                .unwrap()
        };
        assert!(
            count(&after) >= count(&before) + 5,
            "{name}: {before} -> {after}"
        );
    }
    report(
        scenario,
        &format!(
            "p1 -> p2 through the hub: {}",
            ping.lines().last().unwrap_or_default()
        ),
    );
}

#[test]
fn two_sites_reach_each_other_through_the_gateway() {
    let scenario = "transit hub";
    let f = hub_fabric();
    let p1 = Daemon::start(
        &f,
        "p1",
        &gw(
            65010,
            "10.2.0.0/24",
            vec![tunnel(
                "g",
                "198.51.100.1",
                "192.0.2.1",
                "169.254.21.2",
                "169.254.21.1",
                65515,
                false,
            )],
        ),
    );
    let p2 = Daemon::start(
        &f,
        "p2",
        &gw(
            65020,
            "10.3.0.0/24",
            vec![tunnel(
                "g",
                "203.0.113.1",
                "192.0.2.1",
                "169.254.21.6",
                "169.254.21.5",
                65515,
                false,
            )],
        ),
    );
    let g = Daemon::start(&f, "g", &hub());
    p1.wait_route("10.3.0.0/24", &["g"]);
    p2.wait_route("10.2.0.0/24", &["g"]);
    let path = p1.neighbor("g")["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "10.3.0.0/24")
        .unwrap()["as_path"]
        .clone();
    assert_eq!(path, "65515 65020", "p1 sees p2's LAN through the hub");
    assert_transit_traffic(&f, &g, scenario);
}

#[test]
fn transit_between_two_strongswan_bird_sites_vpngw_initiating() {
    transit_with_reference_spokes(false);
}

#[test]
fn transit_between_two_strongswan_bird_sites_vpngw_responding() {
    transit_with_reference_spokes(true);
}

/// The hub with two strongSwan + BIRD spokes; `spokes_initiate` picks who
/// starts IKE.
fn transit_with_reference_spokes(spokes_initiate: bool) {
    let scenario = if spokes_initiate {
        "transit hub, spokes strongSwan + BIRD initiating"
    } else {
        "transit hub, spokes strongSwan + BIRD responding"
    };
    let f = hub_fabric();
    let spoke = |site: &'static str,
                 local: &'static str,
                 addr: &'static str,
                 peer_addr: &'static str,
                 asn: u32,
                 lan: &str| OnPremSpec {
        site,
        local,
        remote: "192.0.2.1",
        addr,
        peer_addr,
        asn,
        peer_asn: 65515,
        advertise: vec![lan.into()],
        originate: vec![],
        initiator: spokes_initiate,
        ipv6: None,
    };
    let _p1 = OnPrem::start(
        &f,
        &spoke(
            "p1",
            "198.51.100.1",
            "169.254.21.2",
            "169.254.21.1",
            65010,
            "10.2.0.0/24",
        ),
    );
    let _p2 = OnPrem::start(
        &f,
        &spoke(
            "p2",
            "203.0.113.1",
            "169.254.21.6",
            "169.254.21.5",
            65020,
            "10.3.0.0/24",
        ),
    );
    let mut hub = hub();
    for t in &mut hub.tunnels {
        t.initiate = !spokes_initiate;
    }
    let g = Daemon::start(&f, "g", &hub);
    g.wait_route("10.2.0.0/24", &["p1"]);
    g.wait_route("10.3.0.0/24", &["p2"]);
    // BIRD on p1 installed p2's LAN, learned through the hub.
    let route = wait_until("10.3.0.0/24 in p1's kernel", SETUP, || {
        f.site("p1")
            .gw
            .route("10.3.0.0/24")
            .ok_or_else(|| f.site("p1").gw.routes())
    });
    report(scenario, &format!("p1's kernel: {}", route.trim()));
    assert_transit_traffic(&f, &g, scenario);
}

#[test]
fn routes_cross_a_chain_of_gateways() {
    let scenario = "transit chain";
    let mut f = Fabric::new();
    f.add_site("a", 1, &["192.0.2.1"]);
    f.add_site("gw1", 2, &["192.0.2.2"]);
    f.add_site("gw2", 3, &["198.51.100.1"]);
    f.add_site("b", 4, &["203.0.113.1"]);
    let b = Daemon::start(
        &f,
        "b",
        &gw(
            65004,
            "10.4.0.0/24",
            vec![tunnel(
                "gw2",
                "203.0.113.1",
                "198.51.100.1",
                "169.254.21.10",
                "169.254.21.9",
                65003,
                false,
            )],
        ),
    );
    let gw2 = Daemon::start(
        &f,
        "gw2",
        &gw(
            65003,
            "10.3.0.0/24",
            vec![
                tunnel(
                    "gw1",
                    "198.51.100.1",
                    "192.0.2.2",
                    "169.254.21.6",
                    "169.254.21.5",
                    65002,
                    false,
                ),
                tunnel(
                    "b",
                    "198.51.100.1",
                    "203.0.113.1",
                    "169.254.21.9",
                    "169.254.21.10",
                    65004,
                    true,
                ),
            ],
        ),
    );
    let gw1 = Daemon::start(
        &f,
        "gw1",
        &gw(
            65002,
            "10.2.0.0/24",
            vec![
                tunnel(
                    "a",
                    "192.0.2.2",
                    "192.0.2.1",
                    "169.254.21.2",
                    "169.254.21.1",
                    65001,
                    false,
                ),
                tunnel(
                    "gw2",
                    "192.0.2.2",
                    "198.51.100.1",
                    "169.254.21.5",
                    "169.254.21.6",
                    65003,
                    true,
                ),
            ],
        ),
    );
    let a = Daemon::start(
        &f,
        "a",
        &gw(
            65001,
            "10.1.0.0/24",
            vec![tunnel(
                "gw1",
                "192.0.2.1",
                "192.0.2.2",
                "169.254.21.1",
                "169.254.21.2",
                65002,
                true,
            )],
        ),
    );
    let took = a.wait_route("10.4.0.0/24", &["gw1"]);
    b.wait_route("10.1.0.0/24", &["gw2"]);
    a.wait_route("10.3.0.0/24", &["gw1"]);
    let path = a.neighbor("gw1")["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "10.4.0.0/24")
        .unwrap()["as_path"]
        .clone();
    assert_eq!(path, "65002 65003 65004");
    report(
        scenario,
        &format!(
            "b's LAN reached a over three hops (AS path {path}) {:.1} s after a started",
            took.as_secs_f64()
        ),
    );
    let ping = f.wait_ping("a", "10.4.0.2", SETUP);
    report(scenario, ping.lines().last().unwrap_or_default());
    // The middle of the chain carries the traffic.
    for d in [&gw1, &gw2] {
        let sas = d.json(&["sas"]);
        for c in sas["connections"].as_array().unwrap() {
            assert!(c["datapath"]["rx_packets"].as_u64().unwrap() > 0, "{c}");
        }
    }
}

#[test]
fn as_path_loop_prevention_holds_in_a_triangle() {
    let scenario = "transit triangle";
    let mut f = Fabric::new();
    f.add_site("x", 1, &["192.0.2.1"]);
    f.add_site("y", 2, &["198.51.100.1"]);
    f.add_site("z", 3, &["203.0.113.1"]);
    let x_gw = gw(
        65001,
        "10.1.0.0/24",
        vec![
            tunnel(
                "y",
                "192.0.2.1",
                "198.51.100.1",
                "169.254.21.1",
                "169.254.21.2",
                65002,
                true,
            ),
            tunnel(
                "z",
                "192.0.2.1",
                "203.0.113.1",
                "169.254.21.5",
                "169.254.21.6",
                65003,
                true,
            ),
        ],
    );
    let y_gw = gw(
        65002,
        "10.2.0.0/24",
        vec![
            tunnel(
                "x",
                "198.51.100.1",
                "192.0.2.1",
                "169.254.21.2",
                "169.254.21.1",
                65001,
                false,
            ),
            tunnel(
                "z",
                "198.51.100.1",
                "203.0.113.1",
                "169.254.21.9",
                "169.254.21.10",
                65003,
                true,
            ),
        ],
    );
    let z = Daemon::start(
        &f,
        "z",
        &gw(
            65003,
            "10.3.0.0/24",
            vec![
                tunnel(
                    "x",
                    "203.0.113.1",
                    "192.0.2.1",
                    "169.254.21.6",
                    "169.254.21.5",
                    65001,
                    false,
                ),
                tunnel(
                    "y",
                    "203.0.113.1",
                    "198.51.100.1",
                    "169.254.21.10",
                    "169.254.21.9",
                    65002,
                    false,
                ),
            ],
        ),
    );
    let y = Daemon::start(&f, "y", &y_gw);
    let x = Daemon::start(&f, "x", &x_gw);
    // Every prefix on its direct path; the way round stands by.
    x.wait_route("10.2.0.0/24", &["y"]);
    x.wait_route("10.3.0.0/24", &["z"]);
    y.wait_route("10.1.0.0/24", &["x"]);
    z.wait_route("10.1.0.0/24", &["x"]);
    let via_z = wait_until("x to hear y's LAN from z too", SETUP, || {
        let n = x.neighbor("z");
        n["accepted"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == "10.2.0.0/24")
            .cloned()
            .ok_or_else(|| n.to_string())
    });
    assert_eq!(via_z["as_path"], "65003 65002");
    assert_eq!(via_z["best"], false, "the longer path stands by: {via_z}");
    // No gateway is offered its own prefix back, nor a path through itself.
    for d in [&x, &y, &z] {
        let bgp = d.json(&["bgp"]);
        let own = bgp["asn"].as_u64().unwrap().to_string();
        for n in bgp["neighbors"].as_array().unwrap() {
            assert_eq!(n["refused"].as_array().unwrap().len(), 0, "{n}");
            for r in n["accepted"].as_array().unwrap() {
                let path = r["as_path"].as_str().unwrap();
                assert!(
                    !path.split(' ').any(|a| a == own),
                    "loop on {}: {r}",
                    d.site
                );
            }
        }
    }
    f.wait_ping("x", "10.2.0.2", SETUP);

    // x loses its direct tunnel to y: y's LAN moves to the way round.
    let mut x_without_y = x_gw.clone();
    x_without_y.tunnels.retain(|t| t.name != "y");
    let cut = Instant::now();
    x.reload(&f, &x_without_y);
    x.wait_route("10.2.0.0/24", &["z"]);
    report(
        scenario,
        &format!(
            "x reaches y's LAN through z {:.0} ms after dropping the direct tunnel",
            cut.elapsed().as_secs_f64() * 1000.0
        ),
    );
    let ping = f.wait_ping("x", "10.2.0.2", SETUP);
    report(scenario, ping.lines().last().unwrap_or_default());

    // y withdraws its LAN: it disappears everywhere, no path lingers.
    let mut y_silent = y_gw.clone();
    y_silent.prefixes.clear();
    y.reload(&f, &y_silent);
    let gone = x.wait_route("10.2.0.0/24", &[]);
    z.wait_route("10.2.0.0/24", &[]);
    report(
        scenario,
        &format!(
            "a withdrawn prefix left every table within {:.0} ms",
            gone.as_secs_f64() * 1000.0
        ),
    );
}
