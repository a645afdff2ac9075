//! vpngw-routes against a real kernel: each test builds its own namespaces
//! and runs the route programmer's thread inside the router namespace.
//!
//! The "tunnels" are veth pairs to two namespaces that both own the
//! destination address, so reachability is checked with real pings:
//!
//! ```text
//!                 10.0.1.0/30
//!   [R] r1 .1 -------------------- .2 t1 [T1]   lo 198.51.100.1/32
//!       r2 .1 -------------------- .2 t2 [T2]   lo 198.51.100.1/32
//!                 10.0.2.0/30
//!   R: routes of proto 200 for 198.51.100.0/24 (and more) via t1 / t2
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use vpngw_netns_tests::netns::unique_id;
use vpngw_netns_tests::{veth, wait_until, Netns};
use vpngw_routes::{Command, Config, Event, Handle, IpNet, Mode, Notice, Tunnel, TunnelId};

const DEST: &str = "198.51.100.0/24";
const DEST_HOST: &str = "198.51.100.1";
const WAIT: Duration = Duration::from_secs(5);

struct Lab {
    r: Netns,
    t1: Netns,
    t2: Netns,
}

fn lab(id: &str) -> Lab {
    let lab = Lab {
        r: Netns::new(id, "r"),
        t1: Netns::new(id, "t1"),
        t2: Netns::new(id, "t2"),
    };
    for (n, t, r_if, t_if) in [(1, &lab.t1, "r1", "t1"), (2, &lab.t2, "r2", "t2")] {
        veth(&lab.r, r_if, t, t_if);
        lab.r.ip(&format!("addr add 10.0.{n}.1/30 dev {r_if}"));
        t.ip(&format!("addr add 10.0.{n}.2/30 dev {t_if}"));
        t.ip(&format!("addr add {DEST_HOST}/32 dev lo"));
    }
    lab
}

fn ifindex(ns: &Netns, dev: &str) -> u32 {
    let out = ns.ip(&format!("-o link show dev {dev}"));
    out.split(':').next().unwrap().trim().parse().unwrap()
}

fn tunnel(lab: &Lab, n: u8) -> Tunnel {
    Tunnel {
        id: TunnelId(format!("t{n}")),
        ifindex: ifindex(&lab.r, &format!("r{n}")),
        peer_v4: Some(format!("10.0.{n}.2").parse().unwrap()),
        peer_v6: None,
    }
}

fn tid(name: &str) -> TunnelId {
    TunnelId::from(name)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn start(ns: &Netns, config: Config) -> (Handle, Receiver<Notice>) {
    let (tx, rx) = mpsc::channel();
    let netns = PathBuf::from(format!("/run/netns/{}", ns.name()));
    let handle = Handle::spawn(config, Some(netns), move |notice| {
        let _ = tx.send(notice);
    })
    .expect("start the route programmer");
    (handle, rx)
}

fn ours(ns: &Netns) -> String {
    let v4 = ns.ip("-4 route show table all proto 200");
    let v6 = ns.ip("-6 route show table all proto 200");
    format!("{v4}{v6}")
}

fn nexthops(ns: &Netns) -> String {
    ns.ip("nexthop show")
}

fn ping(ns: &Netns, addr: &str) -> Result<(), String> {
    let out = ns.run("ping", &["-c1", "-W1", "-n", addr]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The `nhid` a route points at.
fn nhid(route: &str) -> u32 {
    let mut words = route.split_whitespace();
    while let Some(word) = words.next() {
        if word == "nhid" {
            return words.next().unwrap().parse().unwrap();
        }
    }
    panic!("no nhid in {route:?}");
}

/// Install and withdraw through one tunnel; a clean stop leaves nothing.
#[test]
fn install_and_withdraw() {
    let lab = lab(&unique_id());
    let (handle, _events) = start(&lab.r, Config::default());
    assert_eq!(handle.mode(), Mode::NexthopObjects);
    assert!(ping(&lab.r, DEST_HOST).is_err(), "no route yet");

    handle
        .send(Command::SetTunnel(tunnel(&lab, 1), true))
        .unwrap();
    handle
        .send(Command::SetRoute(net(DEST), vec![tid("t1")]))
        .unwrap();
    handle
        .send(Command::SetRoute(net("2001:db8:7::/48"), vec![tid("t1")]))
        .unwrap();
    let report = handle.sync().unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.routes_replaced, 2);

    let route = lab.r.route(DEST).expect("route installed");
    assert!(route.contains("proto 200"), "{route}");
    assert!(route.contains("metric 20"), "{route}");
    let group = nhid(&route);
    let nh = nexthops(&lab.r);
    assert!(nh.contains(&format!("id {group} group")), "{nh}");
    assert!(nh.contains("via 10.0.1.2 dev r1"), "{nh}");
    let v6 = lab.r.ip("-6 route show 2001:db8:7::/48");
    assert!(v6.contains("nhid") && v6.contains("proto 200"), "{v6}");
    wait_until("ping through t1", WAIT, || ping(&lab.r, DEST_HOST));

    handle.send(Command::Withdraw(net(DEST))).unwrap();
    let report = handle.sync().unwrap();
    assert_eq!(report.routes_deleted, 1, "{report:?}");
    assert!(lab.r.route(DEST).is_none());
    assert!(ping(&lab.r, DEST_HOST).is_err());
    // The IPv4 group is gone with its last route; the IPv6 one stays.
    assert!(!nexthops(&lab.r).contains(&format!("id {group} ")));

    handle.stop(false).unwrap();
    assert_eq!(ours(&lab.r), "", "a clean stop removes our routes");
    assert_eq!(nexthops(&lab.r), "", "and our nexthops");
}

/// Two tunnels: one ECMP route through one group. One tunnel down (the
/// daemon says so): the group shrinks in place, every route keeps its nhid
/// and stays reachable through the other. The other's link set down from
/// outside: routes gone. Link back up: routes back.
#[test]
fn ecmp_group_shrinks_then_routes_go() {
    let lab = lab(&unique_id());
    let (handle, events) = start(&lab.r, Config::default());
    handle
        .send(Command::SetTunnel(tunnel(&lab, 1), true))
        .unwrap();
    handle
        .send(Command::SetTunnel(tunnel(&lab, 2), true))
        .unwrap();
    let mut prefixes = vec![net(DEST)];
    prefixes.extend((0..200).map(|i| net(&format!("10.{}.{}.0/24", 100 + i / 256, i % 256))));
    for prefix in &prefixes {
        handle
            .send(Command::SetRoute(*prefix, vec![tid("t1"), tid("t2")]))
            .unwrap();
    }
    let report = handle.sync().unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.routes_replaced, prefixes.len());
    // Two singles and one group.
    assert_eq!(report.nexthops_replaced, 3);

    let route = lab.r.route(DEST).unwrap();
    let group = nhid(&route);
    assert!(route.contains("via 10.0.1.2 dev r1"), "{route}");
    assert!(route.contains("via 10.0.2.2 dev r2"), "{route}");
    let all = lab.r.ip("-4 route show proto 200");
    assert_eq!(
        all.lines()
            .filter(|l| l.contains(&format!("nhid {group} ")))
            .count(),
        prefixes.len(),
        "every route points at the one group:\n{all}"
    );
    wait_until("ping over ECMP", WAIT, || ping(&lab.r, DEST_HOST));

    // Tunnel 1 down: one group replace, no route touched.
    handle.send(Command::SetTunnelUp(tid("t1"), false)).unwrap();
    let report = handle.sync().unwrap();
    assert_eq!(report.nexthops_replaced, 1, "{report:?}");
    assert_eq!(report.routes_replaced + report.routes_deleted, 0);
    let nh = lab.r.ip(&format!("nexthop show id {group}"));
    assert_eq!(nh.matches('/').count(), 0, "one member left: {nh}");
    let route = lab.r.route(DEST).unwrap();
    assert_eq!(nhid(&route), group);
    assert!(!route.contains("dev r1"), "{route}");
    assert_eq!(
        lab.r.ip("-4 route show proto 200").matches("nhid").count(),
        prefixes.len()
    );
    // Only T2 can answer now: T1 loses the address.
    lab.t1.ip(&format!("addr del {DEST_HOST}/32 dev lo"));
    wait_until("ping through t2 alone", WAIT, || ping(&lab.r, DEST_HOST));

    // Tunnel 2's link set down from outside: counts as tunnel down.
    lab.r.ip("link set r2 down");
    wait_until("routes gone after both tunnels are down", WAIT, || {
        let now = ours(&lab.r);
        if now.is_empty() {
            Ok(())
        } else {
            Err(now)
        }
    });
    let got: Vec<Notice> = events.try_iter().collect();
    assert!(
        got.iter().any(
            |n| matches!(n, Notice::Event(Event::Link { tunnel, up: false }) if tunnel.0 == "t2")
        ),
        "{got:?}"
    );
    assert!(ping(&lab.r, DEST_HOST).is_err());

    // Link back up: the routes come back through t2.
    lab.r.ip("link set r2 up");
    wait_until("routes back through t2", WAIT, || {
        let now = lab.r.ip("-4 route show proto 200");
        if now.matches("nhid").count() == prefixes.len() && now.contains("dev r2") {
            Ok(())
        } else {
            Err(now)
        }
    });
    wait_until("ping through t2 again", WAIT, || ping(&lab.r, DEST_HOST));
    handle.stop(false).unwrap();
    assert_eq!(ours(&lab.r), "");
}

/// Routes and nexthops of proto 200 left by an earlier run (as a `kill -9`
/// leaves them) are purged at start, in any table; others' routes stay.
#[test]
fn stale_routes_from_a_killed_run_are_purged() {
    let lab = lab(&unique_id());
    lab.r
        .ip("route add 10.99.0.0/24 via 10.0.1.2 proto 200 metric 20");
    lab.r
        .ip("route add 10.99.1.0/24 via 10.0.1.2 proto 200 table 100");
    lab.r
        .ip("nexthop add id 4242 via 10.0.2.2 dev r2 proto 200");
    lab.r.ip("nexthop add id 4243 group 4242 proto 200");
    lab.r
        .ip("route add 10.99.2.0/24 nhid 4243 proto 200 metric 20");
    lab.r.ip("route add 10.98.0.0/24 via 10.0.1.2 proto static");
    lab.r.ip("nexthop add id 77 via 10.0.1.2 dev r1");
    assert_ne!(ours(&lab.r), "");

    let (handle, _events) = start(&lab.r, Config::default());
    assert_eq!(ours(&lab.r), "", "purged at start");
    let nh = nexthops(&lab.r);
    assert!(!nh.contains("proto 200"), "{nh}");
    assert!(nh.contains("id 77 "), "someone else's nexthop stays: {nh}");
    assert!(
        lab.r.route("10.98.0.0/24").is_some(),
        "someone else's route stays"
    );
    handle.stop(false).unwrap();
}

/// Graceful restart: with `adopt`, what an earlier run left stays until the
/// sweep, and what is set again moves over.
#[test]
fn adopted_routes_stay_until_the_sweep() {
    let lab = lab(&unique_id());
    let (first, _e) = start(&lab.r, Config::default());
    first
        .send(Command::SetTunnel(tunnel(&lab, 1), true))
        .unwrap();
    for prefix in [DEST, "10.50.0.0/24"] {
        first
            .send(Command::SetRoute(net(prefix), vec![tid("t1")]))
            .unwrap();
    }
    first.sync().unwrap();
    first.stop(true).unwrap();
    assert!(lab.r.route("10.50.0.0/24").is_some(), "kept at stop");

    let config = Config {
        adopt: true,
        ..Config::default()
    };
    let (second, _e) = start(&lab.r, config);
    assert!(lab.r.route("10.50.0.0/24").is_some(), "adopted at start");
    second
        .send(Command::SetTunnel(tunnel(&lab, 1), true))
        .unwrap();
    second
        .send(Command::SetRoute(net(DEST), vec![tid("t1")]))
        .unwrap();
    second.sync().unwrap();
    assert!(lab.r.route("10.50.0.0/24").is_some(), "not swept yet");
    wait_until("ping during the restart", WAIT, || ping(&lab.r, DEST_HOST));
    second.send(Command::SweepStale).unwrap();
    second.sync().unwrap();
    assert!(lab.r.route("10.50.0.0/24").is_none(), "swept");
    assert!(lab.r.route(DEST).is_some());
    let nh = nexthops(&lab.r);
    assert_eq!(nh.lines().count(), 2, "one nexthop and one group: {nh}");
    second.stop(false).unwrap();
    assert_eq!(ours(&lab.r), "");
}

/// A route of ours deleted by someone else comes back; so do the routes of
/// a group someone deleted.
#[test]
fn a_route_deleted_behind_our_back_comes_back() {
    let lab = lab(&unique_id());
    let (handle, events) = start(&lab.r, Config::default());
    handle
        .send(Command::SetTunnel(tunnel(&lab, 1), true))
        .unwrap();
    handle
        .send(Command::SetTunnel(tunnel(&lab, 2), true))
        .unwrap();
    for prefix in [DEST, "10.60.0.0/24", "10.61.0.0/24"] {
        handle
            .send(Command::SetRoute(net(prefix), vec![tid("t1"), tid("t2")]))
            .unwrap();
    }
    handle.sync().unwrap();

    lab.r.ip(&format!("route del {DEST} proto 200"));
    wait_until("the deleted route is back", WAIT, || {
        lab.r.route(DEST).ok_or_else(|| ours(&lab.r))
    });
    assert!(events
        .try_iter()
        .any(|n| matches!(n, Notice::Event(Event::RoutesLost { count: 1 }))));
    wait_until("ping", WAIT, || ping(&lab.r, DEST_HOST));

    let group = nhid(&lab.r.route(DEST).unwrap());
    lab.r.ip(&format!("nexthop del id {group}"));
    wait_until("routes of a deleted group are back", WAIT, || {
        let now = lab.r.ip("-4 route show proto 200");
        if now.matches("nhid").count() == 3 {
            Ok(())
        } else {
            Err(now)
        }
    });
    handle.stop(false).unwrap();
}

/// Without nexthop objects (forced here), ECMP is a classic multipath
/// route, and a tunnel down rewrites it.
#[test]
fn multipath_fallback() {
    let lab = lab(&unique_id());
    let config = Config {
        mode: Some(Mode::Multipath),
        ..Config::default()
    };
    let (handle, _e) = start(&lab.r, config);
    handle
        .send(Command::SetTunnel(tunnel(&lab, 1), true))
        .unwrap();
    handle
        .send(Command::SetTunnel(tunnel(&lab, 2), true))
        .unwrap();
    handle
        .send(Command::SetRoute(net(DEST), vec![tid("t1"), tid("t2")]))
        .unwrap();
    handle.sync().unwrap();
    let route = lab.r.route(DEST).unwrap();
    assert!(!route.contains("nhid"), "{route}");
    assert!(
        route.contains("nexthop via 10.0.1.2 dev r1")
            && route.contains("nexthop via 10.0.2.2 dev r2"),
        "{route}"
    );
    assert_eq!(nexthops(&lab.r), "");
    wait_until("ping over multipath", WAIT, || ping(&lab.r, DEST_HOST));

    handle.send(Command::SetTunnelUp(tid("t2"), false)).unwrap();
    let report = handle.sync().unwrap();
    assert_eq!(report.routes_replaced, 1, "{report:?}");
    let route = lab.r.route(DEST).unwrap();
    assert!(
        route.contains("via 10.0.1.2 dev r1") && !route.contains("r2"),
        "{route}"
    );
    lab.t2.ip(&format!("addr del {DEST_HOST}/32 dev lo"));
    wait_until("ping through t1 alone", WAIT, || ping(&lab.r, DEST_HOST));

    handle.send(Command::SetTunnelUp(tid("t1"), false)).unwrap();
    handle.sync().unwrap();
    assert!(lab.r.route(DEST).is_none());
    handle.stop(false).unwrap();
    assert_eq!(ours(&lab.r), "");
}
