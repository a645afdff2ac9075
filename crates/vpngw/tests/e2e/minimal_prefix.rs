//! Scenario 1: the minimal prefix, and what gets through.
//!
//! ```text
//!                                      ,== t1 169.254.21.1 <-> .2 ==> 198.51.100.1 [gw-p1 AS 65010] -- [host-p1 10.2.0.2]
//!  [host-g 10.1.0.2] -- [gw-g vpngw AS 65515, own 10.1.0.0/24 + 10.1.1.0/24] 192.0.2.1                   announces 10.2.0.0/24 (its LAN), 10.0.0.0/8 (supernet),
//!                                      |                                   10.1.1.0/24 (gw-g's own), 0.0.0.0/0 (default)
//!                                      `== t2 169.254.21.5 <-> .6 ==> 203.0.113.1  [gw-p2 vpngw AS 65020] -- [host-p2 10.3.0.2]
//! ```
//!
//! The on-premises side p1 routes only the /32 of gw-g's BGP address into
//! its tunnel and learns the rest by BGP. gw-g accepts p1's LAN, the
//! supernet and the default route, installs them, and refuses the prefix
//! identical to its own (the reason shows in `vpngw bgp`); it passes p1's
//! routes on to p2, except the default route. p1 is vpngw, or (scenario 5)
//! strongSwan + BIRD with gw-g initiating or responding.

use super::*;
use vpngw_netns_tests::fabric::Fabric;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P1 {
    Vpngw,
    /// strongSwan + BIRD; gw-g initiates IKE.
    ReferenceResponding,
    /// strongSwan + BIRD initiates IKE.
    ReferenceInitiating,
}

/// What p1 announces besides its LAN: a supernet of gw-g's prefixes, a
/// prefix identical to gw-g's second own prefix (LAN traffic uses the
/// first), and a default route.
const ODD: [&str; 3] = ["10.0.0.0/8", "10.1.1.0/24", "0.0.0.0/0"];

fn gw_g(initiate_t1: bool) -> Gw {
    Gw {
        asn: 65515,
        prefixes: vec!["10.1.0.0/24", "10.1.1.0/24"],
        announce: vec![],
        conn_extra: "",
        tunnels: vec![
            Tunnel {
                name: "p1",
                local: "192.0.2.1",
                remote: "198.51.100.1",
                addr: "169.254.21.1",
                peer_addr: "169.254.21.2",
                routing: Routing::Bgp(65010),
                initiate: initiate_t1,
            },
            Tunnel {
                name: "p2",
                local: "192.0.2.1",
                remote: "203.0.113.1",
                addr: "169.254.21.5",
                peer_addr: "169.254.21.6",
                routing: Routing::Bgp(65020),
                initiate: true,
            },
        ],
    }
}

fn gw_p1() -> Gw {
    Gw {
        asn: 65010,
        prefixes: vec!["10.2.0.0/24"],
        announce: ODD.to_vec(),
        conn_extra: "",
        tunnels: vec![Tunnel {
            name: "g",
            local: "198.51.100.1",
            remote: "192.0.2.1",
            addr: "169.254.21.2",
            peer_addr: "169.254.21.1",
            routing: Routing::Bgp(65515),
            initiate: false,
        }],
    }
}

fn gw_p2() -> Gw {
    Gw {
        asn: 65020,
        prefixes: vec!["10.3.0.0/24"],
        announce: vec![],
        conn_extra: "",
        tunnels: vec![Tunnel {
            name: "g",
            local: "203.0.113.1",
            remote: "192.0.2.1",
            addr: "169.254.21.6",
            peer_addr: "169.254.21.5",
            routing: Routing::Bgp(65515),
            initiate: false,
        }],
    }
}

fn run(p1: P1) {
    let scenario = format!("minimal prefix, p1 {p1:?}");
    let mut f = Fabric::new();
    f.add_site("g", 1, &["192.0.2.1"]);
    f.add_site("p1", 2, &["198.51.100.1"]);
    f.add_site("p2", 3, &["203.0.113.1"]);
    let p2 = Daemon::start(&f, "p2", &gw_p2());
    let (_p1_vpngw, _p1_reference) = match p1 {
        P1::Vpngw => (Some(Daemon::start(&f, "p1", &gw_p1())), None),
        P1::ReferenceResponding | P1::ReferenceInitiating => {
            let spec = OnPremSpec {
                site: "p1",
                local: "198.51.100.1",
                remote: "192.0.2.1",
                addr: "169.254.21.2",
                peer_addr: "169.254.21.1",
                asn: 65010,
                peer_asn: 65515,
                advertise: vec!["10.2.0.0/24".into()],
                originate: ODD.iter().map(|s| s.to_string()).collect(),
                initiator: p1 == P1::ReferenceInitiating,
                ipv6: None,
            };
            (None, Some(OnPrem::start(&f, &spec)))
        }
    };
    let g = Daemon::start(&f, "g", &gw_g(p1 != P1::ReferenceInitiating));

    // What gw-g installs: p1's LAN, the supernet and the default route
    // through p1; p2's LAN through p2; never its own prefix.
    let took = g.wait_route("10.2.0.0/24", &["p1"]);
    report(
        &scenario,
        &format!(
            "p1's LAN routed on gw-g {:.1} s after gw-g started",
            took.as_secs_f64()
        ),
    );
    g.wait_route("10.0.0.0/8", &["p1"]);
    g.wait_route("0.0.0.0/0", &["p1"]);
    g.wait_route("10.3.0.0/24", &["p2"]);
    let routes = g.routes();
    assert!(
        !routes.contains_key("10.1.1.0/24"),
        "own prefix installed: {routes:?}"
    );
    assert!(
        f.site("g").gw.route("0.0.0.0/0").is_some() || f.site("g").gw.route("default").is_some(),
        "the default route is in gw-g's kernel: {}",
        f.site("g").gw.routes()
    );

    // The identical prefix is refused, with the reason, in `vpngw bgp`.
    let n = g.neighbor("p1");
    let refused: Vec<&Value> = n["refused"].as_array().unwrap().iter().collect();
    assert_eq!(refused.len(), 1, "{n}");
    assert_eq!(refused[0]["prefix"], "10.1.1.0/24");
    assert_eq!(
        refused[0]["reason"],
        "identical to one of the gateway's own prefixes"
    );
    let accepted: Vec<&str> = n["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap())
        .collect();
    for p in ["0.0.0.0/0", "10.0.0.0/8", "10.2.0.0/24"] {
        assert!(accepted.contains(&p), "{p} not accepted: {n}");
    }
    let why = g.json(&["routes", "10.1.1.0/24"]);
    assert_eq!(why["explain"]["installed"], false);
    assert!(
        why["explain"]["verdict"]
            .as_str()
            .unwrap()
            .contains("own prefixes"),
        "{why}"
    );

    // Passed on to p2: gw-g's own prefix and p1's LAN and supernet; never
    // the learned default route.
    p2.wait_route("10.2.0.0/24", &["g"]);
    p2.wait_route("10.0.0.0/8", &["g"]);
    p2.wait_route("10.1.0.0/24", &["g"]);
    p2.wait_route("10.1.1.0/24", &["g"]);
    let advertised: Vec<String> = g.neighbor("p2")["advertised"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !advertised.contains(&"0.0.0.0/0".to_string()),
        "{advertised:?}"
    );
    assert!(!p2.routes().contains_key("0.0.0.0/0"));
    report(&scenario, &format!("gw-g advertises to p2: {advertised:?}"));

    // LAN to LAN.
    let ping = f.wait_ping("g", "10.2.0.2", SETUP);
    report(&scenario, ping.lines().last().unwrap_or_default());
    f.wait_ping("p1", "10.1.0.2", SETUP);
}

#[test]
fn minimal_prefix_vpngw_both_sides() {
    run(P1::Vpngw);
}

#[test]
fn minimal_prefix_against_strongswan_bird_vpngw_initiating() {
    run(P1::ReferenceResponding);
}

#[test]
fn minimal_prefix_against_strongswan_bird_vpngw_responding() {
    run(P1::ReferenceInitiating);
}
