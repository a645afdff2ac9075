//! Scenario 2: active-active with automatic failover, and the full mesh.
//!
//! ```text
//!                                                   ,== 169.254.21.2 <-> .1 ==> 192.0.2.1 [gw-az0 vpngw AS 65515] 10.1.0.1 --.
//!  [host-op 10.2.0.2-7] -- [gw-op vpngw AS 65010] 198.51.100.1                                                            [vnet bridge] -- [host-vnet 10.1.0.2]
//!                                                   `== 169.254.21.6 <-> .5 ==> 192.0.2.2 [gw-az1 vpngw AS 65515] 10.1.0.3 --'
//! ```
//!
//! A gateway pair (two vpngw instances, each with its own outer address
//! and 169.254.21.x BGP address, both announcing the VNet 10.1.0.0/24) and
//! an on-premises gateway with a tunnel to each: its route to the VNet is
//! ECMP over both. The VNet host's default gateway is az0, and each
//! instance falls back to the other when it has no route of its own (the
//! VNet fabric). Under four UDP flows (500 packets/s each, from separate
//! ports, so ECMP spreads them) and a TCP transfer from the on-premises
//! host to the VNet host, the az1 tunnel fails in three ways — az1's
//! process killed, the underlay between op and az1 silently blackholed,
//! and an IKE DELETE (az1 is stopped gracefully, for maintenance) — and
//! comes back after each. Timers: BGP keepalive 1 s / hold 3 s, DPD 1 s /
//! 9 s.
//!
//! The same silent failure between strongSwan + BIRD gateways with the
//! cloud's default BGP timers (60/180 s) is measured next to it.

use super::*;
use std::net::IpAddr;
use vpngw_netns_tests::fabric::Fabric;
use vpngw_netns_tests::traffic::{TcpTransfer, UdpFlows};
use vpngw_netns_tests::{GatewayKind, TwoSiteLab};

fn instance(k: u8) -> Gw {
    let (local, addr, peer_addr) = if k == 0 {
        ("192.0.2.1", "169.254.21.1", "169.254.21.2")
    } else {
        ("192.0.2.2", "169.254.21.5", "169.254.21.6")
    };
    Gw {
        asn: 65515,
        prefixes: vec!["10.1.0.0/24"],
        announce: vec![],
        conn_extra: "",
        tunnels: vec![Tunnel {
            name: "op",
            local,
            remote: "198.51.100.1",
            addr,
            peer_addr,
            routing: Routing::Bgp(65010),
            initiate: true,
        }],
    }
}

fn onprem() -> Gw {
    Gw {
        asn: 65010,
        prefixes: vec!["10.2.0.0/24"],
        announce: vec![],
        conn_extra: "",
        tunnels: vec![
            Tunnel {
                name: "az0",
                local: "198.51.100.1",
                remote: "192.0.2.1",
                addr: "169.254.21.2",
                peer_addr: "169.254.21.1",
                routing: Routing::Bgp(65515),
                initiate: false,
            },
            Tunnel {
                name: "az1",
                local: "198.51.100.1",
                remote: "192.0.2.2",
                addr: "169.254.21.6",
                peer_addr: "169.254.21.5",
                routing: Routing::Bgp(65515),
                initiate: false,
            },
        ],
    }
}

/// How the az1 tunnel fails.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Killed,
    Blackholed,
    Deleted,
}

struct Measured {
    withdrawn: Duration,
    worst_gap: Duration,
    lost: u64,
    tcp_stall: Duration,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Fails the az1 tunnel under traffic; returns what the traffic saw.
fn fail(f: &Fabric, op: &Daemon, az1: &mut Daemon, how: Failure) -> Measured {
    let from = &f.site("op").host;
    let to = &f.site("az0").host;
    let flows = UdpFlows::start(from, ip("10.2.0.2"), to, ip("10.1.0.2"), 4, 500);
    let tcp = TcpTransfer::start(from, ip("10.2.0.4"), to, ip("10.1.0.2"));
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    match how {
        Failure::Killed => {
            // SIGKILL: no DELETE, no Cease; the peer must notice.
            az1.proc.kill();
        }
        Failure::Blackholed => f.cut("198.51.100.1", "192.0.2.2"),
        // A graceful stop (maintenance): az1 deletes its IKE SA.
        Failure::Deleted => az1.proc.terminate(),
    }
    op.wait_route("10.1.0.0/24", &["az0"]);
    let withdrawn = start.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let udp = flows.stop();
    let tcp = tcp.stop();
    assert!(
        tcp.error.is_none(),
        "{how:?}: the TCP transfer broke: {tcp:?}"
    );
    assert!(tcp.bytes > 0);
    for flow in &udp {
        assert!(flow.received > 0, "{how:?}: {flow:?}");
    }
    Measured {
        withdrawn,
        worst_gap: udp.iter().map(|f| f.longest_gap).max().unwrap_or_default(),
        lost: udp.iter().map(|f| f.lost()).sum(),
        tcp_stall: tcp.longest_stall,
    }
}

/// Undoes a failure and waits until the az1 tunnel carries the VNet again.
fn restore(f: &Fabric, op: &Daemon, az1: &mut Daemon, how: Failure) -> Duration {
    let start = Instant::now();
    match how {
        Failure::Killed | Failure::Deleted => {
            az1.proc.stop();
            *az1 = Daemon::start(f, "az1", &instance(1));
        }
        Failure::Blackholed => f.mend(),
    }
    op.wait_route("10.1.0.0/24", &["az0", "az1"]);
    start.elapsed()
}

#[test]
fn active_active_fails_over_three_ways() {
    let scenario = "active-active";
    let mut f = Fabric::new();
    f.add_pair(["az0", "az1"], 1, ["192.0.2.1", "192.0.2.2"]);
    f.add_site("op", 2, &["198.51.100.1"]);
    let op = Daemon::start(&f, "op", &onprem());
    let az0 = Daemon::start(&f, "az0", &instance(0));
    let mut az1 = Daemon::start(&f, "az1", &instance(1));
    op.wait_route("10.1.0.0/24", &["az0", "az1"]);
    az0.wait_route("10.2.0.0/24", &["op"]);
    az1.wait_route("10.2.0.0/24", &["op"]);
    // Both tunnels carry traffic.
    let from = &f.site("op").host;
    let flows = UdpFlows::start(
        from,
        ip("10.2.0.2"),
        &f.site("az0").host,
        ip("10.1.0.2"),
        8,
        200,
    );
    std::thread::sleep(Duration::from_secs(1));
    flows.stop();
    let sas = op.json(&["sas"]);
    for c in sas["connections"].as_array().unwrap() {
        assert!(
            c["datapath"]["tx_packets"].as_u64().unwrap() > 50,
            "ECMP uses both: {c}"
        );
    }

    for how in [Failure::Killed, Failure::Blackholed, Failure::Deleted] {
        let m = fail(&f, &op, &mut az1, how);
        let bound = match how {
            // Detected by the BGP hold timer (or DPD, whichever first).
            Failure::Killed | Failure::Blackholed => Duration::from_secs(u64::from(HOLD)),
            // Told at once.
            Failure::Deleted => Duration::ZERO,
        } + Duration::from_secs(1);
        report(
            scenario,
            &format!(
                "{how:?}: routes via az1 withdrawn on op after {:.0} ms; UDP (4 flows x 500 pps): longest gap {:.0} ms, {} packets lost; TCP: longest stall {:.0} ms, no reset (hold {HOLD} s, keepalive {KEEPALIVE} s, DPD 1/9 s)",
                m.withdrawn.as_secs_f64() * 1000.0,
                m.worst_gap.as_secs_f64() * 1000.0,
                m.lost,
                m.tcp_stall.as_secs_f64() * 1000.0
            ),
        );
        assert!(
            m.withdrawn < bound,
            "{how:?}: withdrawn after {:?}, bound {bound:?}",
            m.withdrawn
        );
        assert!(
            m.worst_gap < bound,
            "{how:?}: traffic interrupted {:?}, bound {bound:?}",
            m.worst_gap
        );
        let back = restore(&f, &op, &mut az1, how);
        report(
            scenario,
            &format!(
                "{how:?}: az1 rejoined (ECMP again) {:.1} s after the restore",
                back.as_secs_f64()
            ),
        );
        az1.wait_route("10.2.0.0/24", &["op"]);
    }
}

#[test]
fn full_mesh_two_devices_by_two_instances() {
    let scenario = "full mesh";
    let mut f = Fabric::new();
    f.add_pair(["az0", "az1"], 1, ["192.0.2.1", "192.0.2.2"]);
    f.add_site("op1", 2, &["198.51.100.1"]);
    f.add_site("op2", 3, &["203.0.113.1"]);
    // Tunnel addresses: instance k to device d uses 169.254.21.(8d+4k+1/2).
    let addr = |d: u8, k: u8, ours_is_instance: bool| -> &'static str {
        let base = 8 * d + 4 * k + if ours_is_instance { 1 } else { 2 };
        Box::leak(format!("169.254.21.{base}").into_boxed_str())
    };
    let outer_dev = ["198.51.100.1", "203.0.113.1"];
    let outer_inst = ["192.0.2.1", "192.0.2.2"];
    let inst = |k: u8| Gw {
        asn: 65515,
        prefixes: vec!["10.1.0.0/24"],
        announce: vec![],
        conn_extra: "",
        tunnels: (0..2u8)
            .map(|d| Tunnel {
                name: ["op1", "op2"][usize::from(d)],
                local: outer_inst[usize::from(k)],
                remote: outer_dev[usize::from(d)],
                addr: addr(d, k, true),
                peer_addr: addr(d, k, false),
                routing: Routing::Bgp(65010 + u32::from(d)),
                initiate: true,
            })
            .collect(),
    };
    let dev = |d: u8| Gw {
        asn: 65010 + u32::from(d),
        prefixes: vec![["10.2.0.0/24", "10.3.0.0/24"][usize::from(d)]],
        announce: vec![],
        conn_extra: "",
        tunnels: (0..2u8)
            .map(|k| Tunnel {
                name: ["az0", "az1"][usize::from(k)],
                local: outer_dev[usize::from(d)],
                remote: outer_inst[usize::from(k)],
                addr: addr(d, k, false),
                peer_addr: addr(d, k, true),
                routing: Routing::Bgp(65515),
                initiate: false,
            })
            .collect(),
    };
    let op1 = Daemon::start(&f, "op1", &dev(0));
    let op2 = Daemon::start(&f, "op2", &dev(1));
    let az0 = Daemon::start(&f, "az0", &inst(0));
    let az1 = Daemon::start(&f, "az1", &inst(1));
    let took = op1.wait_route("10.1.0.0/24", &["az0", "az1"]);
    op2.wait_route("10.1.0.0/24", &["az0", "az1"]);
    for az in [&az0, &az1] {
        az.wait_route("10.2.0.0/24", &["op1"]);
        az.wait_route("10.3.0.0/24", &["op2"]);
        let status = az.json(&["status"]);
        for c in status["connections"].as_array().unwrap() {
            assert_eq!(c["bgp_state"], "Established", "{c}");
        }
    }
    // Each device learns the other's LAN through both instances: one ECMP
    // route over its two tunnels.
    op1.wait_route("10.3.0.0/24", &["az0", "az1"]);
    report(
        scenario,
        &format!(
            "four tunnels, ECMP on both devices {:.1} s after the instances started",
            took.as_secs_f64()
        ),
    );
    f.wait_ping("op1", "10.1.0.2", SETUP);
    f.wait_ping("op2", "10.1.0.2", SETUP);
    let ping = f.wait_ping("op1", "10.3.0.2", SETUP);
    report(scenario, ping.lines().last().unwrap_or_default());
}

#[test]
fn gateway_pair_against_two_strongswan_bird_devices() {
    let scenario = "active-active vs strongSwan + BIRD";
    let mut f = Fabric::new();
    f.add_pair(["az0", "az1"], 1, ["192.0.2.1", "192.0.2.2"]);
    f.add_pair(["opa", "opb"], 2, ["198.51.100.1", "203.0.113.1"]);
    let device = |site: &'static str,
                  local: &'static str,
                  remote: &'static str,
                  addr: &'static str,
                  peer_addr: &'static str| OnPremSpec {
        site,
        local,
        remote,
        addr,
        peer_addr,
        asn: 65010,
        peer_asn: 65515,
        advertise: vec!["10.2.0.0/24".into()],
        originate: vec![],
        initiator: false,
        ipv6: None,
    };
    let _opa = OnPrem::start(
        &f,
        &device(
            "opa",
            "198.51.100.1",
            "192.0.2.1",
            "169.254.21.2",
            "169.254.21.1",
        ),
    );
    let _opb = OnPrem::start(
        &f,
        &device(
            "opb",
            "203.0.113.1",
            "192.0.2.2",
            "169.254.21.6",
            "169.254.21.5",
        ),
    );
    let mut az0_gw = instance(0);
    az0_gw.tunnels[0].name = "opa";
    let mut az1_gw = instance(1);
    az1_gw.tunnels[0].name = "opb";
    az1_gw.tunnels[0].remote = "203.0.113.1";
    let az0 = Daemon::start(&f, "az0", &az0_gw);
    let az1 = Daemon::start(&f, "az1", &az1_gw);
    let took = az0.wait_route("10.2.0.0/24", &["opa"]);
    az1.wait_route("10.2.0.0/24", &["opb"]);
    report(
        scenario,
        &format!(
            "both devices' routes in both instances {:.1} s after start",
            took.as_secs_f64()
        ),
    );
    for site in ["opa", "opb"] {
        wait_until(&format!("10.1.0.0/24 in {site}'s kernel"), SETUP, || {
            f.site(site)
                .gw
                .route("10.1.0.0/24")
                .ok_or_else(|| f.site(site).gw.routes())
        });
    }
    f.wait_ping("az0", "10.2.0.2", SETUP);
    f.wait_ping("opa", "10.1.0.2", SETUP);

    // The underlay to device a goes silent: az0 withdraws within its hold
    // time and the VNet reaches the on-premises LAN through az1 and b.
    let from = &f.site("az0").host;
    let to = &f.site("opa").host;
    let flows = UdpFlows::start(from, ip("10.1.0.2"), to, ip("10.2.0.2"), 4, 500);
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    f.cut("198.51.100.1", "192.0.2.1");
    az0.wait_route("10.2.0.0/24", &[]);
    let withdrawn = start.elapsed();
    std::thread::sleep(Duration::from_secs(4));
    let udp = flows.stop();
    let gap = udp.iter().map(|f| f.longest_gap).max().unwrap_or_default();
    report(
        scenario,
        &format!(
            "device a blackholed: az0 withdrew its route after {:.0} ms; VNet -> on-premises flows interrupted at most {:.0} ms (both sides' hold {HOLD} s)",
            withdrawn.as_secs_f64() * 1000.0,
            gap.as_secs_f64() * 1000.0
        ),
    );
    assert!(withdrawn < Duration::from_secs(u64::from(HOLD) + 1));
    // BIRD on device a keeps its route to the VNet until its own hold
    // timer (3 s); then on-premises return traffic goes through b.
    assert!(gap < Duration::from_secs(u64::from(HOLD) + 2), "{udp:?}");
    assert!(udp.iter().all(|f| f.received > 0));
}

#[test]
fn reference_strongswan_bird_keeps_routes_through_a_silent_failure() {
    // The reference on both sides, with the cloud's default BGP timers
    // (keepalive 60 s, hold 180 s) and no BFD: nothing tells the routes to
    // go when the underlay goes silent.
    let lab = TwoSiteLab::start(&vpngw_netns_tests::lab::LabOptions {
        a: GatewayKind::StrongswanBird,
        b: GatewayKind::StrongswanBird,
        ..Default::default()
    });
    lab.wait_lan_routes(SETUP);
    lab.blackhole_underlay();
    let watched = Duration::from_secs(u64::from(HOLD) + 3);
    std::thread::sleep(watched);
    let still = lab.any_lan_route();
    assert!(
        still.is_some(),
        "the reference withdrew its routes within {watched:?}"
    );
    report(
        "reference",
        &format!(
            "strongSwan + BIRD (hold 180 s, keepalive 60 s): routes still installed {} s after the underlay went silent (they stay until the hold timer, ~180 s); vpngw with hold {HOLD} s withdraws within it",
            watched.as_secs()
        ),
    );
}
