//! Liveness without BFD and without BGP: the tunnel itself tells.
//!
//! ```text
//!                                                   ,== 169.254.21.2 <-> .1 ==> 192.0.2.1 [gw-az0 vpngw] 10.1.0.1 --.
//!  [host-op 10.2.0.2-7] -- [gw-op vpngw] 198.51.100.1                                                        [vnet bridge] -- [host-vnet 10.1.0.2]
//!                                                   `== 169.254.21.6 <-> .5 ==> 192.0.2.2 [gw-az1 vpngw] 10.1.0.3 --'
//!  static routes both ways (ECMP on op); DPD probe after 200 ms of silence, dead after 800 ms; hold-down 2 s
//! ```
//!
//! Inbound ESP is proof of life, so the short DPD timers cost nothing on a
//! busy tunnel and probe only a quiet one. The underlay to az1 goes silent
//! under traffic: op takes the tunnel down within interval + timeout and
//! its ECMP route shrinks. When the underlay comes back the tunnel comes
//! up again, but rejoins the route only after the hold-down (a tunnel that
//! just failed may fail again).

use super::*;
use std::net::IpAddr;
use vpngw_netns_tests::fabric::Fabric;
use vpngw_netns_tests::traffic::UdpFlows;

const TIMERS: &str = "dpd_interval = \"200ms\"\ndpd_timeout = \"800ms\"\nhold_down = 2";

fn instance(k: u8) -> Gw {
    let (name, local, addr, peer_addr) = if k == 0 {
        ("op", "192.0.2.1", "169.254.21.1", "169.254.21.2")
    } else {
        ("op", "192.0.2.2", "169.254.21.5", "169.254.21.6")
    };
    Gw {
        asn: 65515,
        prefixes: vec!["10.1.0.0/24"],
        announce: vec![],
        conn_extra: TIMERS,
        tunnels: vec![Tunnel {
            name,
            local,
            remote: "198.51.100.1",
            addr,
            peer_addr,
            routing: Routing::Static(vec!["10.2.0.0/24"]),
            initiate: true,
        }],
    }
}

fn onprem() -> Gw {
    let tunnel = |name, remote, addr, peer_addr| Tunnel {
        name,
        local: "198.51.100.1",
        remote,
        addr,
        peer_addr,
        routing: Routing::Static(vec!["10.1.0.0/24"]),
        initiate: false,
    };
    Gw {
        asn: 65010,
        prefixes: vec!["10.2.0.0/24"],
        announce: vec![],
        conn_extra: TIMERS,
        tunnels: vec![
            tunnel("az0", "192.0.2.1", "169.254.21.2", "169.254.21.1"),
            tunnel("az1", "192.0.2.2", "169.254.21.6", "169.254.21.5"),
        ],
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_silent_tunnel_is_detected_by_dpd_and_rejoins_after_its_hold_down() {
    let scenario = "liveness";
    let mut f = Fabric::new();
    f.add_pair(["az0", "az1"], 1, ["192.0.2.1", "192.0.2.2"]);
    f.add_site("op", 2, &["198.51.100.1"]);
    let op = Daemon::start(&f, "op", &onprem());
    let _az0 = Daemon::start(&f, "az0", &instance(0));
    let _az1 = Daemon::start(&f, "az1", &instance(1));
    op.wait_route("10.1.0.0/24", &["az0", "az1"]);

    // Busy tunnels stay up on traffic alone: no probe is needed, none
    // fails, for a few seconds of flows.
    let from = &f.site("op").host;
    let to = &f.site("az0").host;
    let flows = UdpFlows::start(from, ip("10.2.0.2"), to, ip("10.1.0.2"), 4, 500);
    std::thread::sleep(Duration::from_secs(3));
    let calm = op.json(&["status"]);
    for c in calm["connections"].as_array().unwrap() {
        assert_eq!(c["tunnel_up"], true, "no false failover: {c}");
    }

    let start = Instant::now();
    f.cut("198.51.100.1", "192.0.2.2");
    op.wait_route("10.1.0.0/24", &["az0"]);
    let withdrawn = start.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let udp = flows.stop();
    let gap = udp.iter().map(|f| f.longest_gap).max().unwrap_or_default();
    report(
        scenario,
        &format!(
            "underlay to az1 silent: tunnel down and route moved after {:.0} ms; UDP (4 flows x 500 pps) longest gap {:.0} ms (DPD 200 ms / 800 ms, no BGP, no BFD)",
            withdrawn.as_secs_f64() * 1000.0,
            gap.as_secs_f64() * 1000.0
        ),
    );
    // Interval + timeout, a tick of the daemon, and scheduling slack.
    assert!(withdrawn < Duration::from_millis(2000), "{withdrawn:?}");
    assert!(gap < Duration::from_millis(2000), "{udp:?}");
    assert!(udp.iter().all(|f| f.received > 0));

    // Back: the tunnel comes up, but joins the route only after 2 s.
    f.mend();
    let up = wait_until("az1's tunnel up again on op", SETUP, || {
        let s = op.json(&["status"]);
        let c = s["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "az1")
            .unwrap()
            .clone();
        if c["tunnel_up"] == true {
            Ok(Instant::now())
        } else {
            Err(c.to_string())
        }
    });
    let routes = op.routes();
    assert_eq!(
        routes.get("10.1.0.0/24").map(Vec::len),
        Some(1),
        "held down: not in the route yet: {routes:?}"
    );
    op.wait_route("10.1.0.0/24", &["az0", "az1"]);
    let held = up.elapsed();
    report(
        scenario,
        &format!(
            "az1 rejoined the ECMP route {:.1} s after its tunnel came back (hold-down 2 s)",
            held.as_secs_f64()
        ),
    );
    assert!(
        held >= Duration::from_millis(1500),
        "rejoined after only {held:?}"
    );
}
