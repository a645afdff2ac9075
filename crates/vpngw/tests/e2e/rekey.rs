//! Rekeys under load lose nothing.
//!
//! ```text
//!  [host-a 10.1.0.2] -- [gw-a vpngw] 192.0.2.1 == 169.254.21.1 <-> .2 == 198.51.100.1 [gw-b vpngw] -- [host-b 10.2.0.2]
//! ```
//!
//! A steady UDP stream both ways (500 packets/s each way) while both
//! gateways are told to rekey the child SA over and over — from one side,
//! from the other, and every tenth time from both at once (simultaneous
//! rekeys, RFC 7296 §2.8.1) — until a thousand child rekeys and fifty IKE
//! rekeys have completed. Make before break on both sides: not one packet
//! may be lost.

use super::*;
use std::net::IpAddr;
use vpngw::control::{request, Request};
use vpngw_netns_tests::fabric::Fabric;
use vpngw_netns_tests::traffic::UdpFlows;

const CHILD_REKEYS: usize = 1000;
const IKE_REKEYS: usize = 50;

fn gw(asn: u32, prefix: &'static str, t: Tunnel) -> Gw {
    Gw {
        asn,
        prefixes: vec![prefix],
        announce: vec![],
        conn_extra: "",
        tunnels: vec![t],
    }
}

fn rekey(d: &Daemon, connection: &str, ike: bool) {
    let _ = request(
        &d.socket,
        &Request::Rekey {
            connection: connection.into(),
            ike,
        },
    );
}

fn count(d: &Daemon, what: &str) -> usize {
    d.proc.log().matches(what).count()
}

#[test]
fn a_thousand_child_and_fifty_ike_rekeys_under_load_lose_no_packet() {
    let scenario = "rekeys under load";
    let mut f = Fabric::new();
    f.add_site("a", 1, &["192.0.2.1"]);
    f.add_site("b", 2, &["198.51.100.1"]);
    let b = Daemon::start(
        &f,
        "b",
        &gw(
            65020,
            "10.2.0.0/24",
            Tunnel {
                name: "a",
                local: "198.51.100.1",
                remote: "192.0.2.1",
                addr: "169.254.21.2",
                peer_addr: "169.254.21.1",
                routing: Routing::Static(vec!["10.1.0.0/24"]),
                initiate: false,
            },
        ),
    );
    let a = Daemon::start(
        &f,
        "a",
        &gw(
            65010,
            "10.1.0.0/24",
            Tunnel {
                name: "b",
                local: "192.0.2.1",
                remote: "198.51.100.1",
                addr: "169.254.21.1",
                peer_addr: "169.254.21.2",
                routing: Routing::Static(vec!["10.2.0.0/24"]),
                initiate: true,
            },
        ),
    );
    a.wait_route("10.2.0.0/24", &["b"]);
    b.wait_route("10.1.0.0/24", &["a"]);
    f.wait_ping("a", "10.2.0.2", SETUP);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let ab = UdpFlows::start(
        &f.site("a").host,
        ip("10.1.0.2"),
        &f.site("b").host,
        ip("10.2.0.2"),
        1,
        500,
    );
    let ba = UdpFlows::start(
        &f.site("b").host,
        ip("10.2.0.2"),
        &f.site("a").host,
        ip("10.1.0.2"),
        1,
        500,
    );
    std::thread::sleep(Duration::from_millis(500));

    let start = Instant::now();
    let done = |what: &str| count(&a, what) + count(&b, what);
    let mut i = 0usize;
    while (done("child SA rekeyed") < 2 * CHILD_REKEYS || done("IKE SA rekeyed") < 2 * IKE_REKEYS)
        && start.elapsed() < Duration::from_secs(240)
    {
        let ike = i % 20 == 19 && done("IKE SA rekeyed") < 2 * IKE_REKEYS;
        match i % 10 {
            9 => {
                // Both at once.
                rekey(&a, "b", ike);
                rekey(&b, "a", ike);
            }
            k if k % 2 == 0 => rekey(&a, "b", ike),
            _ => rekey(&b, "a", ike),
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(if ike { 60 } else { 15 }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let flows: Vec<_> = ab.stop().into_iter().chain(ba.stop()).collect();
    // Each side logs every rekey it takes part in.
    let child = done("child SA rekeyed") / 2;
    let ike = done("IKE SA rekeyed") / 2;
    let sent: u64 = flows.iter().map(|f| f.sent).sum();
    let lost: u64 = flows.iter().map(|f| f.lost()).sum();
    report(
        scenario,
        &format!(
            "{child} child and {ike} IKE rekeys ({i} requests, every tenth from both sides at once) in {:.0} s under 2 x 500 pps: {sent} packets sent, {lost} lost",
            start.elapsed().as_secs_f64()
        ),
    );
    for d in [&a, &b] {
        let sas = d.json(&["sas"]);
        println!(
            "{}: unmatched {} datapath {} ike {}",
            d.site, sas["unmatched"], sas["connections"][0]["datapath"], sas["ike"]
        );
    }
    println!("{flows:?}");
    assert!(child >= CHILD_REKEYS, "{child} child rekeys");
    assert!(ike >= IKE_REKEYS, "{ike} IKE rekeys");
    assert_eq!(lost, 0, "{flows:?}");
    // The tunnel is still the one tunnel, carrying traffic.
    f.wait_ping("b", "10.1.0.2", SETUP);
}
