//! Scenario 6: a dual-stack tunnel (issue 12, first part).
//!
//! ```text
//!  [host-g 10.1.0.2        ] -- [gw-g vpngw] 192.0.2.1 == t1 == 198.51.100.1 [gw-p1 vpngw] -- [host-p1 10.2.0.2        ]
//!  [       2001:db8:1::2/64]                169.254.21.1 <-> .2                                 [        2001:db8:2::2/64]
//!                                            2001:db8:ff::1 / ::2 (tunnel_address6)
//! ```
//!
//! One IPv4 eBGP session across the tunnel carries both families (MP-BGP,
//! RFC 4760): each gateway announces its IPv4 and IPv6 LAN, the IPv6 one
//! with its `tunnel_address6` as next hop (RFC 2545). The child SA covers
//! 0.0.0.0/0 and ::/0; IPv6 routes go into the kernel through the tunnel
//! device as the IPv4 ones do, hosts ping each other over both families,
//! and when the tunnel goes both families' routes go with it.

use super::*;
use vpngw_netns_tests::fabric::Fabric;

/// A gateway with one BGP tunnel: `outer` is (local, remote), `addrs` the
/// tunnel's (ours, the peer's).
fn gw(
    asn: u32,
    prefixes: Vec<&'static str>,
    outer: (&'static str, &'static str),
    addrs: (&'static str, &'static str),
    extra: &'static str,
    peer_asn: u32,
    initiate: bool,
) -> Gw {
    Gw {
        asn,
        prefixes,
        announce: vec![],
        conn_extra: extra,
        tunnels: vec![Tunnel {
            name: "t1",
            local: outer.0,
            remote: outer.1,
            addr: addrs.0,
            peer_addr: addrs.1,
            routing: Routing::Bgp(peer_asn),
            initiate,
        }],
    }
}

/// Sites g (10.1.0.0/24, 2001:db8:1::/64) and p1 (10.2.0.0/24,
/// 2001:db8:2::/64), each with these outer addresses.
fn two_sites(g_outer: &[&str], p1_outer: &[&str]) -> Fabric {
    let mut f = Fabric::new();
    f.add_site("g", 1, g_outer);
    f.add_site("p1", 2, p1_outer);
    f.add_ipv6("g");
    f.add_ipv6("p1");
    f
}

/// gw-g (AS 65515) with one dual-stack tunnel t1 to p1 (AS 65010) between
/// `outer` (ours, the peer's); it initiates.
fn gw_g(outer: (&'static str, &'static str)) -> Gw {
    gw(
        65515,
        vec!["10.1.0.0/24", "2001:db8:1::/64"],
        outer,
        ("169.254.21.1", "169.254.21.2"),
        "dpd_interval = 1\ndpd_timeout = 9\ntunnel_address6 = \"2001:db8:ff::1\"",
        65010,
        true,
    )
}

/// gw-p1 (AS 65010), the other end of [`gw_g`]'s tunnel; it responds.
fn gw_p1(outer: (&'static str, &'static str)) -> Gw {
    gw(
        65010,
        vec!["10.2.0.0/24", "2001:db8:2::/64"],
        outer,
        ("169.254.21.2", "169.254.21.1"),
        "dpd_interval = 1\ndpd_timeout = 9\ntunnel_address6 = \"2001:db8:ff::2\"",
        65515,
        false,
    )
}

#[test]
fn ipv6_prefixes_cross_an_ipv4_session_and_ipv6_traffic_the_tunnel() {
    let scenario = "dual stack";
    let f = two_sites(&["192.0.2.1"], &["198.51.100.1"]);
    let mut p1 = Daemon::start(&f, "p1", &gw_p1(("198.51.100.1", "192.0.2.1")));
    let started = Instant::now();
    let g = Daemon::start(&f, "g", &gw_g(("192.0.2.1", "198.51.100.1")));
    g.wait_route("2001:db8:2::/64", &["t1"]);
    p1.wait_route("2001:db8:1::/64", &["t1"]);
    g.wait_route("10.2.0.0/24", &["t1"]);
    report(
        scenario,
        &format!(
            "both families' routes in both kernels {:.2} s after gw-g started",
            started.elapsed().as_secs_f64()
        ),
    );
    // One session, two families: the IPv6 route came with the RFC 2545
    // next hop, and is in the kernel through the tunnel device.
    let n = g.json(&["bgp", "t1"]);
    let v6 = n["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "2001:db8:2::/64")
        .unwrap_or_else(|| panic!("no IPv6 route accepted: {n}"))
        .clone();
    assert_eq!(v6["next_hop"], "2001:db8:ff::2", "{n}");
    assert_eq!(v6["as_path"], "65010");
    assert_eq!(n["accepted_count"], 2, "{n}");
    let kernel = f
        .site("g")
        .gw
        .try_ip("-6 route show 2001:db8:2::/64 proto 200")
        .unwrap();
    assert!(kernel.contains("2001:db8:2::/64"), "{kernel}");
    // The child SA covers both families, both ways.
    let sas = g.json(&["sas"]);
    let child = &sas["connections"][0]["child"];
    let both = serde_json::json!(["0.0.0.0/0", "::/0"]);
    assert_eq!(child["selectors_local"], both, "{sas}");
    assert_eq!(child["selectors_remote"], both, "{sas}");

    // IPv6 (and IPv4) traffic host to host, both ways, through the tunnel.
    wait_until("host-g to ping host-p1 over IPv6", SETUP, || {
        f.ping6("g", "2001:db8:2::2", 1)
    });
    let out = f.ping6("p1", "2001:db8:1::2", 5).unwrap();
    assert!(out.contains("5 received"), "{out}");
    f.wait_ping("g", "10.2.0.2", SETUP);
    let before = g.json(&["status"])["connections"][0]["routes"].clone();
    assert_eq!(before, 2, "both families' routes counted: {before}");

    // The peer goes (deleting its SA): both families' routes leave together.
    let cut = Instant::now();
    p1.proc.stop();
    g.wait_route("2001:db8:2::/64", &[]);
    g.wait_route("10.2.0.0/24", &[]);
    report(
        scenario,
        &format!(
            "IPv4 and IPv6 routes withdrawn {:.0} ms after the peer was told to stop",
            cut.elapsed().as_secs_f64() * 1000.0
        ),
    );
    let left = f.site("g").gw.try_ip("-6 route show proto 200").unwrap();
    assert!(
        left.trim().is_empty(),
        "no IPv6 route of ours is left: {left}"
    );
}

/// The two sites joined by one tunnel over an IPv6 underlay (a direct
/// link between the gateways, 2001:db8:100::1 and ::2); returns the fabric,
/// p1's and g's daemons, and when g was started, once g routes both LANs
/// of p1 into the tunnel.
fn ipv6_underlay() -> (Fabric, Daemon, Daemon, Instant) {
    let f = two_sites(&["192.0.2.1"], &["198.51.100.1"]);
    vpngw_netns_tests::veth(&f.site("g").gw, "u6", &f.site("p1").gw, "u6");
    f.site("g")
        .gw
        .ip("-6 addr add 2001:db8:100::1/64 dev u6 nodad");
    f.site("p1")
        .gw
        .ip("-6 addr add 2001:db8:100::2/64 dev u6 nodad");
    let p1 = Daemon::start(&f, "p1", &gw_p1(("2001:db8:100::2", "2001:db8:100::1")));
    let started = Instant::now();
    let g = Daemon::start(&f, "g", &gw_g(("2001:db8:100::1", "2001:db8:100::2")));
    g.wait_route("10.2.0.0/24", &["t1"]);
    g.wait_route("2001:db8:2::/64", &["t1"]);
    (f, p1, g, started)
}

/// The same two sites with the tunnel over an IPv6 underlay: IKE and ESP
/// (in UDP 4500) between 2001:db8:100::1 and ::2, carrying IPv4 and IPv6.
#[test]
fn an_ipv6_underlay_carries_both_families() {
    let scenario = "IPv6 underlay";
    let (f, _p1, g, started) = ipv6_underlay();
    report(
        scenario,
        &format!(
            "tunnel over IPv6 up, both families routed {:.2} s after gw-g started",
            started.elapsed().as_secs_f64()
        ),
    );
    let sas = g.json(&["sas"]);
    let ike = &sas["connections"][0]["ike"];
    assert_eq!(ike["remote"], "[2001:db8:100::2]:4500", "{sas}");
    f.wait_ping("g", "10.2.0.2", SETUP);
    wait_until("host-g to ping host-p1 over IPv6", SETUP, || {
        f.ping6("g", "2001:db8:2::2", 1)
    });
    let out = f.ping6("p1", "2001:db8:1::2", 5).unwrap();
    assert!(out.contains("5 received"), "{out}");
    // The traffic went through the tunnel: its child SA counted it.
    let sas = g.json(&["sas"]);
    let packets_in = sas["connections"][0]["child"]["packets_in"]
        .as_u64()
        .unwrap();
    assert!(packets_in >= 10, "{sas}");
}

/// ICMP failover over an IPv6 underlay: p1's daemon is killed while
/// traffic flows, its host answers the next ESP datagram with an ICMPv6
/// port unreachable (read through `IPV6_RECVERR`), and gw-g takes the
/// tunnel out of its routes at once. BGP's hold time (3 s) and DPD (9 s)
/// would take seconds.
#[test]
fn a_killed_peer_over_an_ipv6_underlay_is_noticed_by_icmpv6() {
    use vpngw_netns_tests::traffic::UdpFlows;

    let scenario = "IPv6 underlay, ICMP failover";
    let (f, p1, g, _) = ipv6_underlay();
    f.wait_ping("g", "10.2.0.2", SETUP);
    let flows = UdpFlows::start(
        &f.site("g").host,
        "10.1.0.2".parse().unwrap(),
        &f.site("p1").host,
        "10.2.0.2".parse().unwrap(),
        2,
        500,
    );
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    p1.proc.kill();
    g.wait_route("10.2.0.0/24", &[]);
    g.wait_route("2001:db8:2::/64", &[]);
    let withdrawn = start.elapsed();
    let _ = flows.stop();
    let sas = g.json(&["sas"]);
    let hints = sas["connections"][0]["datapath"]["peer_unreachable"]
        .as_u64()
        .unwrap();
    report(
        scenario,
        &format!(
            "p1's daemon killed: gw-g withdrew both families' routes after {:.0} ms ({hints} verified ICMPv6 port unreachable)",
            withdrawn.as_secs_f64() * 1000.0
        ),
    );
    assert!(hints >= 1, "no ICMPv6 error was taken: {sas}");
    assert!(
        withdrawn < Duration::from_secs(2),
        "{withdrawn:?}: as slow as BGP's hold time"
    );
}

/// Two dual-stack tunnels between the sites (ECMP for both families); one
/// is taken out (the peer drops it from its config: IKE DELETE): IPv6
/// routes move to the other tunnel as the IPv4 ones do.
#[test]
fn ipv6_routes_fail_over_with_the_ipv4_ones() {
    let scenario = "dual-stack failover";
    let f = two_sites(
        &["192.0.2.1", "192.0.2.11"],
        &["198.51.100.1", "198.51.100.11"],
    );
    let extra = "dpd_interval = 1\ndpd_timeout = 9\ntunnel_address6 = \"2001:db8:ff::2\"";
    let tunnel = |name, local, remote, addr, peer_addr| Tunnel {
        name,
        local,
        remote,
        addr,
        peer_addr,
        routing: Routing::Bgp(65515),
        initiate: false,
    };
    let both = Gw {
        asn: 65010,
        prefixes: vec!["10.2.0.0/24", "2001:db8:2::/64"],
        announce: vec![],
        conn_extra: extra,
        tunnels: vec![
            tunnel(
                "t1",
                "198.51.100.1",
                "192.0.2.1",
                "169.254.21.2",
                "169.254.21.1",
            ),
            tunnel(
                "t2",
                "198.51.100.11",
                "192.0.2.11",
                "169.254.22.2",
                "169.254.22.1",
            ),
        ],
    };
    let p1 = Daemon::start(&f, "p1", &both);
    let g_tunnel = |name, local, remote, addr, peer_addr| Tunnel {
        name,
        local,
        remote,
        addr,
        peer_addr,
        routing: Routing::Bgp(65010),
        initiate: true,
    };
    let g = Daemon::start(
        &f,
        "g",
        &Gw {
            asn: 65515,
            prefixes: vec!["10.1.0.0/24", "2001:db8:1::/64"],
            announce: vec![],
            conn_extra: "dpd_interval = 1\ndpd_timeout = 9\ntunnel_address6 = \"2001:db8:ff::1\"",
            tunnels: vec![
                g_tunnel(
                    "t1",
                    "192.0.2.1",
                    "198.51.100.1",
                    "169.254.21.1",
                    "169.254.21.2",
                ),
                g_tunnel(
                    "t2",
                    "192.0.2.11",
                    "198.51.100.11",
                    "169.254.22.1",
                    "169.254.22.2",
                ),
            ],
        },
    );
    g.wait_route("2001:db8:2::/64", &["t1", "t2"]);
    g.wait_route("10.2.0.0/24", &["t1", "t2"]);
    wait_until("host-g to ping host-p1 over IPv6", SETUP, || {
        f.ping6("g", "2001:db8:2::2", 1)
    });

    // p1 drops t2: both families leave it at once, and keep working.
    let only_t1 = Gw {
        tunnels: vec![both.tunnels[0].clone()],
        ..both.clone()
    };
    let cut = Instant::now();
    p1.reload(&f, &only_t1);
    g.wait_route("2001:db8:2::/64", &["t1"]);
    let v6 = cut.elapsed();
    g.wait_route("10.2.0.0/24", &["t1"]);
    report(
        scenario,
        &format!(
            "IPv6 route down to one tunnel {:.0} ms after p1's reload began, IPv4 {:.0} ms",
            v6.as_secs_f64() * 1000.0,
            cut.elapsed().as_secs_f64() * 1000.0
        ),
    );
    let out = f.ping6("g", "2001:db8:2::2", 3).unwrap();
    assert!(out.contains("3 received"), "{out}");
    let kernel = f
        .site("g")
        .gw
        .try_ip("-6 route show 2001:db8:2::/64")
        .unwrap();
    assert!(kernel.contains("nhid"), "through a nexthop group: {kernel}");

    // And back.
    p1.reload(&f, &both);
    g.wait_route("2001:db8:2::/64", &["t1", "t2"]);
    g.wait_route("10.2.0.0/24", &["t1", "t2"]);
}

/// The on-premises side as strongSwan (selectors 0.0.0.0/0 and ::/0) and
/// BIRD (IPv4 and IPv6 channels on one session, `next hop address` its
/// IPv6 tunnel address), vpngw initiating: each side learns and installs
/// the other's IPv6 LAN, and the hosts ping over IPv6 through the tunnel.
#[test]
fn ipv6_with_strongswan_and_bird_on_premises() {
    with_strongswan_and_bird(false);
}

/// The same with strongSwan initiating: vpngw, responding, takes both
/// families' selectors.
#[test]
fn ipv6_with_strongswan_and_bird_initiating() {
    with_strongswan_and_bird(true);
}

fn with_strongswan_and_bird(onprem_initiates: bool) {
    let scenario = if onprem_initiates {
        "dual stack, strongSwan + BIRD initiating"
    } else {
        "dual stack, strongSwan + BIRD responding"
    };
    let f = two_sites(&["192.0.2.1"], &["198.51.100.1"]);
    let onprem = OnPrem::start(
        &f,
        &OnPremSpec {
            site: "p1",
            local: "198.51.100.1",
            remote: "192.0.2.1",
            addr: "169.254.21.2",
            peer_addr: "169.254.21.1",
            asn: 65010,
            peer_asn: 65515,
            advertise: vec!["10.2.0.0/24".into()],
            originate: vec![],
            initiator: onprem_initiates,
            ipv6: Some((
                "2001:db8:ff::2",
                "2001:db8:ff::1",
                vec!["2001:db8:2::/64".into()],
            )),
        },
    );
    let started = Instant::now();
    let mut g_config = gw_g(("192.0.2.1", "198.51.100.1"));
    g_config.tunnels[0].initiate = !onprem_initiates;
    let g = Daemon::start(&f, "g", &g_config);
    g.wait_route("2001:db8:2::/64", &["t1"]);
    g.wait_route("10.2.0.0/24", &["t1"]);
    let both = serde_json::json!(["0.0.0.0/0", "::/0"]);
    let sas = g.json(&["sas"]);
    assert_eq!(
        sas["connections"][0]["child"]["selectors_local"], both,
        "{sas}"
    );
    // BIRD installed ours, via our IPv6 tunnel address.
    let p1_gw = &f.site("p1").gw;
    let theirs = wait_until("BIRD to install 2001:db8:1::/64", SETUP, || {
        match p1_gw.try_ip("-6 route show 2001:db8:1::/64") {
            Ok(r) if r.contains("proto bird") => Ok(r),
            Ok(r) => Err(format!("{r}\n{}", onprem.bird.log())),
            Err(e) => Err(e),
        }
    });
    assert!(theirs.contains("via 2001:db8:ff::1"), "{theirs}");
    report(
        scenario,
        &format!(
            "IPv6 LANs installed on both sides {:.1} s after gw-g started",
            started.elapsed().as_secs_f64()
        ),
    );
    // strongSwan agreed to both families.
    let sas = onprem.charon.list_sas();
    assert!(sas.contains("::/0"), "{sas}");
    wait_until("host-g to ping host-p1 over IPv6", SETUP, || {
        f.ping6("g", "2001:db8:2::2", 1)
    });
    let out = f.ping6("p1", "2001:db8:1::2", 3).unwrap();
    assert!(out.contains("3 received"), "{out}");
    f.wait_ping("g", "10.2.0.2", SETUP);
}

/// An IPv6-only tunnel: the BGP session runs between IPv6 tunnel
/// addresses (2001:db8:fe::1 and ::2; vpngw routes the peer's /128 into
/// the tunnel, there being no IPv6 point-to-point pair), the IPv6 LANs are
/// exchanged with those addresses as next hops, and the IPv4 LANs, with no
/// IPv4 next hop to give, are held back with the reason.
#[test]
fn a_bgp_session_between_ipv6_tunnel_addresses() {
    let scenario = "IPv6 BGP session";
    let f = two_sites(&["192.0.2.1"], &["198.51.100.1"]);
    let v6_only = |asn, prefixes, outer, addrs, peer_asn, initiate| {
        gw(
            asn,
            prefixes,
            outer,
            addrs,
            "dpd_interval = 1\ndpd_timeout = 9",
            peer_asn,
            initiate,
        )
    };
    let _p1 = Daemon::start(
        &f,
        "p1",
        &v6_only(
            65010,
            vec!["10.2.0.0/24", "2001:db8:2::/64"],
            ("198.51.100.1", "192.0.2.1"),
            ("2001:db8:fe::2", "2001:db8:fe::1"),
            65515,
            false,
        ),
    );
    let started = Instant::now();
    let g = Daemon::start(
        &f,
        "g",
        &v6_only(
            65515,
            vec!["10.1.0.0/24", "2001:db8:1::/64"],
            ("192.0.2.1", "198.51.100.1"),
            ("2001:db8:fe::1", "2001:db8:fe::2"),
            65010,
            true,
        ),
    );
    g.wait_route("2001:db8:2::/64", &["t1"]);
    report(
        scenario,
        &format!(
            "IPv6 LAN learned over the IPv6 session {:.2} s after gw-g started",
            started.elapsed().as_secs_f64()
        ),
    );
    let n = g.json(&["bgp", "t1"]);
    assert_eq!(n["address"], "2001:db8:fe::2", "{n}");
    assert_eq!(n["state"], "Established", "{n}");
    let v6 = n["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "2001:db8:2::/64")
        .unwrap_or_else(|| panic!("{n}"))
        .clone();
    assert_eq!(v6["next_hop"], "2001:db8:fe::2", "{n}");
    // Only the IPv6 LAN is advertised; the IPv4 one has no next hop here.
    assert_eq!(n["advertised_count"], 1, "{n}");
    assert!(!g.routes().contains_key("10.2.0.0/24"), "{:?}", g.routes());
    wait_until("host-g to ping host-p1 over IPv6", SETUP, || {
        f.ping6("g", "2001:db8:2::2", 1)
    });
    let out = f.ping6("p1", "2001:db8:1::2", 3).unwrap();
    assert!(out.contains("3 received"), "{out}");
}
