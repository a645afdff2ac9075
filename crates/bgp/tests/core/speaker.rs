//! Speakers talking to each other in memory: transit, ECMP, collisions,
//! max-prefix with retry.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use vpngw_bgp::session::{DownReason, State, StopReason};
use vpngw_bgp::wire::iana::CeaseSubcode;
use vpngw_bgp::wire::ErrorCode;
use vpngw_bgp::{Event, PeerConfig, PeerId, Speaker, SpeakerConfig, Timers};

use super::fake::net as prefix;
use super::net::Net;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn peer(name: &str, address: &str, local: &str, asn: u32) -> PeerConfig {
    let mut p = PeerConfig::new(name, ip(address), asn);
    p.local_address = Some(ip(local));
    p.timers = Some(Timers {
        keepalive: 3,
        hold: 9,
    });
    p.connect_retry = Duration::from_secs(5);
    p
}

fn speaker(asn: u32, id: u8, own: &[&str], peers: Vec<PeerConfig>) -> Speaker {
    Speaker::new(SpeakerConfig {
        local_as: asn,
        router_id: Ipv4Addr::new(10, 0, 0, id),
        local_prefixes: own.iter().map(|p| prefix(p)).collect(),
        announce: Vec::new(),
        act_as: None,
        peers,
    })
    .unwrap()
}

/// ```text
///   A (65001) .21.1 ──── .21.2 G (65000) .22.2 ──── .22.1 B (65002)
///   own 172.16.1.0/24          own 10.1.0.0/16          own 192.168.2.0/24
/// ```
fn transit_lab() -> Net {
    let a = speaker(
        65001,
        1,
        &["172.16.1.0/24"],
        vec![peer("g", "169.254.21.2", "169.254.21.1", 65000)],
    );
    let g = speaker(
        65000,
        100,
        &["10.1.0.0/16"],
        vec![
            peer("a", "169.254.21.1", "169.254.21.2", 65001),
            peer("b", "169.254.22.1", "169.254.22.2", 65002),
        ],
    );
    let b = speaker(
        65002,
        2,
        &["192.168.2.0/24"],
        vec![peer("g", "169.254.22.2", "169.254.22.1", 65000)],
    );
    let mut net = Net::new(vec![
        (a, vec![ip("169.254.21.1")]),
        (g, vec![ip("169.254.21.2"), ip("169.254.22.2")]),
        (b, vec![ip("169.254.22.1")]),
    ]);
    net.start();
    net
}

fn path_and_next_hop(s: &Speaker, p: &str) -> Option<(String, IpAddr)> {
    let e = s.loc_rib().get(&prefix(p))?;
    Some((e.best.attrs.as_path_text(), e.best.attrs.next_hop))
}

#[test]
fn both_sides_active_collide_and_settle_on_one_connection() {
    let net = transit_lab();
    for (n, peers) in [(0, 1), (1, 2), (2, 1)] {
        let s = &net.nodes[n].speaker;
        for p in 0..peers {
            assert_eq!(
                s.peer(PeerId(p)).unwrap().state,
                State::Established,
                "node {n}"
            );
        }
        let ups = net.nodes[n]
            .events
            .iter()
            .filter(|e| matches!(e, Event::PeerUp { .. }))
            .count();
        assert_eq!(ups, peers, "node {n}: one PeerUp per peer");
        assert!(
            !net.nodes[n].events.iter().any(|e| matches!(
                e,
                Event::PeerDown {
                    was_established: true,
                    ..
                }
            )),
            "node {n}: the collision loser never was the session"
        );
    }
}

#[test]
fn transit_between_three_peers() {
    let mut net = transit_lab();
    let (a, g, b) = (0, 1, 2);
    assert_eq!(
        path_and_next_hop(&net.nodes[b].speaker, "172.16.1.0/24"),
        Some(("65000 65001".into(), ip("169.254.22.2")))
    );
    assert_eq!(
        path_and_next_hop(&net.nodes[a].speaker, "192.168.2.0/24"),
        Some(("65000 65002".into(), ip("169.254.21.2")))
    );
    assert_eq!(
        path_and_next_hop(&net.nodes[b].speaker, "10.1.0.0/16"),
        Some(("65000".into(), ip("169.254.22.2")))
    );
    assert_eq!(
        path_and_next_hop(&net.nodes[g].speaker, "172.16.1.0/24"),
        Some(("65001".into(), ip("169.254.21.1")))
    );
    // A's tunnel fails: G closes the session at once and B loses the route
    // in the same step, without waiting for any timer.
    net.nodes[g]
        .speaker
        .stop_peer(net.now, PeerId(0), StopReason::TransportDown);
    net.run();
    assert_eq!(
        path_and_next_hop(&net.nodes[b].speaker, "172.16.1.0/24"),
        None
    );
    assert!(net.nodes[g].events.contains(&Event::Withdrawn {
        prefix: prefix("172.16.1.0/24")
    }));
    assert!(net.nodes[a]
        .events
        .iter()
        .any(|e| matches!(e, Event::PeerDown { reason: DownReason::NotificationReceived(n), .. } if n.code == ErrorCode::Cease)));
}

#[test]
fn keepalives_keep_sessions_up_over_time() {
    let mut net = transit_lab();
    net.run_until(60);
    for n in 0..3 {
        assert!(
            !net.nodes[n].events.iter().any(|e| matches!(
                e,
                Event::PeerDown {
                    was_established: true,
                    ..
                }
            )),
            "node {n}"
        );
    }
}

/// ```text
///   A1 (65001, id .1) .21.1 ──── .21.2 ┐
///                                      G (65000)
///   A2 (65001, id .2) .22.1 ──── .22.2 ┘
///   both own 172.16.0.0/16
/// ```
#[test]
fn equal_paths_over_two_tunnels_are_ecmp() {
    let a1 = speaker(
        65001,
        1,
        &["172.16.0.0/16"],
        vec![peer("g", "169.254.21.2", "169.254.21.1", 65000)],
    );
    let a2 = speaker(
        65001,
        2,
        &["172.16.0.0/16"],
        vec![peer("g", "169.254.22.2", "169.254.22.1", 65000)],
    );
    let g = speaker(
        65000,
        100,
        &["10.1.0.0/16"],
        vec![
            peer("a1", "169.254.21.1", "169.254.21.2", 65001),
            peer("a2", "169.254.22.1", "169.254.22.2", 65001),
        ],
    );
    let mut net = Net::new(vec![
        (a1, vec![ip("169.254.21.1")]),
        (a2, vec![ip("169.254.22.1")]),
        (g, vec![ip("169.254.21.2"), ip("169.254.22.2")]),
    ]);
    net.start();
    let entry = net.nodes[2]
        .speaker
        .loc_rib()
        .get(&prefix("172.16.0.0/16"))
        .unwrap()
        .clone();
    let hops: Vec<IpAddr> = entry.next_hops().iter().map(|h| h.address).collect();
    assert_eq!(hops, vec![ip("169.254.21.1"), ip("169.254.22.1")]);
    let last = net.nodes[2]
        .events
        .iter()
        .rev()
        .find_map(|e| {
            let Event::BestPath {
                prefix: p,
                next_hops,
                ..
            } = e
            else {
                return None;
            };
            (*p == prefix("172.16.0.0/16")).then_some(next_hops.len())
        })
        .unwrap();
    assert_eq!(last, 2);
    // The path that lost only the router-id tie-break keeps its reason.
    let decision = net.nodes[2]
        .speaker
        .decision(&prefix("172.16.0.0/16"))
        .unwrap();
    assert_eq!(decision.entry, entry);
    assert_eq!(decision.lost.len(), 1);
    assert!(decision.lost[0].1.keeps_ecmp());
    // One tunnel fails: the set shrinks to the other next hop.
    net.nodes[2]
        .speaker
        .stop_peer(net.now, PeerId(0), StopReason::TransportDown);
    net.run();
    let Some(Event::BestPath { next_hops, .. }) = net.nodes[2].events.last() else {
        panic!("{:?}", net.nodes[2].events.last())
    };
    assert_eq!(next_hops.len(), 1);
    assert_eq!(next_hops[0].address, ip("169.254.22.1"));
}

#[test]
fn max_prefix_cease_and_retry_after_the_interval() {
    let a = speaker(
        65001,
        1,
        &[
            "172.16.1.0/24",
            "172.16.2.0/24",
            "172.16.3.0/24",
            "172.16.4.0/24",
        ],
        vec![peer("g", "169.254.21.2", "169.254.21.1", 65000)],
    );
    let mut to_a = peer("a", "169.254.21.1", "169.254.21.2", 65001);
    to_a.max_prefixes = 3;
    to_a.max_prefix_restart = Duration::from_secs(30);
    let g = speaker(65000, 100, &["10.1.0.0/16"], vec![to_a]);
    let mut net = Net::new(vec![
        (a, vec![ip("169.254.21.1")]),
        (g, vec![ip("169.254.21.2")]),
    ]);
    net.start();
    let is_max_prefix_cease = |e: &Event| {
        matches!(e, Event::PeerDown { reason: DownReason::NotificationReceived(n), .. }
            if n.code == ErrorCode::Cease
                && n.subcode == u8::from(CeaseSubcode::MaximumNumberOfPrefixesReached))
    };
    let count = |net: &Net| {
        net.nodes[0]
            .events
            .iter()
            .filter(|e| is_max_prefix_cease(e))
            .count()
    };
    assert_eq!(count(&net), 1, "{:?}", net.nodes[0].events);
    assert!(net.nodes[1].speaker.loc_rib().is_empty());
    // A keeps trying every couple of seconds; G refuses until 30 s passed.
    net.run_until(29);
    assert_eq!(count(&net), 1);
    assert_ne!(
        net.nodes[1].speaker.peer(PeerId(0)).unwrap().state,
        State::Established
    );
    net.run_until(40);
    assert_eq!(
        count(&net),
        2,
        "G retried after the interval, and closed again"
    );
}
