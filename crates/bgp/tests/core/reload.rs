//! Changing peers and own prefixes while running (a configuration reload),
//! through a speaker with two hand-played peers, and between speakers:
//!
//! ```text
//!   A (AS 65001) 169.254.21.1 ── .2 [G AS 65000, own 10.1.0.0/16] .2 ── 169.254.22.1 B (AS 65002)
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use vpngw_bgp::config::ConfigError;
use vpngw_bgp::policy::ImportRefusal;
use vpngw_bgp::session::{DownReason, Input, State, StopReason};
use vpngw_bgp::wire::iana::CeaseSubcode;
use vpngw_bgp::wire::{ErrorCode, Message};
use vpngw_bgp::{Event, Output, PeerConfig, PeerId, Speaker, SpeakerConfig, Timers};

use super::fake::{announced, drain, net, sent_to, updates, withdrawn, Fake};
use super::net::Net;

const A: PeerId = PeerId(0);
const B: PeerId = PeerId(1);
const NH_A: Ipv4Addr = Ipv4Addr::new(169, 254, 21, 1);

fn peer(name: &str, n: u8, asn: u32) -> PeerConfig {
    let mut p = PeerConfig::new(name, IpAddr::V4(Ipv4Addr::new(169, 254, 20 + n, 1)), asn);
    p.local_address = Some(IpAddr::V4(Ipv4Addr::new(169, 254, 20 + n, 2)));
    p.passive = true;
    p
}

struct Lab {
    g: Speaker,
    now: Instant,
    a: Fake,
    b: Fake,
}

fn lab(own: &[&str]) -> Lab {
    let mut g = Speaker::new(SpeakerConfig {
        local_as: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 100),
        local_prefixes: own.iter().map(|p| net(p)).collect(),
        announce: Vec::new(),
        act_as: None,
        peers: vec![peer("a", 1, 65001), peer("b", 2, 65002)],
    })
    .unwrap();
    let now = Instant::now();
    g.start(now);
    let (a, _) = Fake::establish(&mut g, now, A, 1, 65001, Ipv4Addr::new(10, 0, 0, 1));
    let (b, _) = Fake::establish(&mut g, now, B, 2, 65002, Ipv4Addr::new(10, 0, 0, 2));
    drain(&mut g);
    Lab { g, now, a, b }
}

fn events(out: &[Output]) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            Output::Connect { .. } | Output::Send { .. } | Output::Close { .. } => None,
        })
        .collect()
}

fn refused(g: &Speaker, peer: PeerId, prefix: &str) -> Option<ImportRefusal> {
    g.peer(peer)
        .unwrap()
        .adj_rib_in
        .refused()
        .get(&net(prefix))
        .map(|r| r.reason.clone())
}

fn best_from(g: &Speaker, prefix: &str) -> Option<PeerId> {
    g.loc_rib().get(&net(prefix)).map(|e| e.best.peer)
}

/// The AS_PATH `peer` was last sent for `prefix` in `out`.
fn path_sent(out: &[Output], peer: PeerId, prefix: &str) -> Option<String> {
    announced(&updates(&sent_to(out, peer)))
        .into_iter()
        .rev()
        .find(|(p, _)| *p == net(prefix))
        .map(|(_, attrs)| attrs.as_path_text())
}

fn withdrawn_to(out: &[Output], peer: PeerId) -> Vec<ipnet::IpNet> {
    withdrawn(&updates(&sent_to(out, peer)))
}

#[test]
fn remove_peer_sends_cease_deconfigured_and_withdraws_its_routes() {
    let mut l = lab(&["10.1.0.0/16"]);
    l.a.announce(&mut l.g, l.now, &["172.16.1.0/24"], &[65001], NH_A);
    let out = drain(&mut l.g);
    assert_eq!(path_sent(&out, B, "172.16.1.0/24").unwrap(), "65000 65001");

    l.g.remove_peer(l.now, A);
    let out = drain(&mut l.g);
    let to_a = sent_to(&out, A);
    assert!(
        to_a.iter().any(|m| matches!(m, Message::Notification(n)
            if n.code == ErrorCode::Cease
                && n.subcode == u8::from(CeaseSubcode::PeerDeconfigured))),
        "{to_a:?}"
    );
    assert!(out.contains(&Output::Close {
        peer: A,
        connection: l.a.connection,
    }));
    let ev = events(&out);
    assert!(ev.contains(&Event::PeerDown {
        peer: A,
        name: "a".into(),
        reason: DownReason::Stopped(StopReason::Deconfigured),
        was_established: true,
    }));
    assert!(ev.contains(&Event::Withdrawn {
        prefix: net("172.16.1.0/24")
    }));
    assert_eq!(withdrawn_to(&out, B), vec![net("172.16.1.0/24")]);
    assert!(l.g.loc_rib().get(&net("172.16.1.0/24")).is_none());

    // Forgotten: no id, no address, no timers, inputs ignored.
    assert!(l.g.peer(A).is_none());
    assert_eq!(l.g.peer_ids().collect::<Vec<_>>(), vec![B]);
    assert_eq!(l.g.find_peer(IpAddr::V4(NH_A)), None);
    l.a.announce(&mut l.g, l.now, &["172.16.9.0/24"], &[65001], NH_A);
    l.g.handle(l.now, A, Input::Start);
    assert!(drain(&mut l.g).is_empty());
    assert!(l.g.loc_rib().is_empty());
    // B's session runs on: its timers fire, A's are gone.
    let later = l.now + Duration::from_secs(100);
    l.b.send(&mut l.g, later, &Message::Keepalive);
    l.g.handle_timeout(later);
    let out = drain(&mut l.g);
    assert!(!sent_to(&out, B).is_empty());
    assert!(out.iter().all(|o| match o {
        Output::Send { peer, .. } | Output::Close { peer, .. } | Output::Connect { peer, .. } =>
            *peer == B,
        Output::Event(_) => false,
    }));
    assert_eq!(l.g.peer(B).unwrap().state, State::Established);
}

#[test]
fn removing_an_idle_peer_just_forgets_it() {
    let mut l = lab(&["10.1.0.0/16"]);
    l.g.stop_peer(l.now, B, StopReason::Administrative);
    drain(&mut l.g);
    l.g.remove_peer(l.now, B);
    assert!(events(&drain(&mut l.g)).is_empty());
    assert!(l.g.peer(B).is_none());
    assert_eq!(l.g.peer(A).unwrap().state, State::Established);
    // Twice, or an id never handed out: nothing happens.
    l.g.remove_peer(l.now, B);
    l.g.remove_peer(l.now, PeerId(7));
    assert!(drain(&mut l.g).is_empty());
}

#[test]
fn added_peers_are_checked_and_ids_never_reused() {
    let mut l = lab(&["10.1.0.0/16"]);
    let err = l.g.add_peer(l.now, peer("b-again", 2, 65009)).unwrap_err();
    assert!(matches!(err, ConfigError::DuplicatePeer { .. }), "{err}");
    let err = l.g.add_peer(l.now, peer("reserved", 3, 23456)).unwrap_err();
    assert!(matches!(err, ConfigError::ReservedPeerAs { .. }), "{err}");
    let mut bad_timers = peer("timers", 3, 65003);
    bad_timers.timers = Some(Timers {
        keepalive: 1,
        hold: 2,
    });
    assert!(matches!(
        l.g.add_peer(l.now, bad_timers),
        Err(ConfigError::BadTimers { .. })
    ));
    assert_eq!(l.g.peer_ids().count(), 2, "refused peers leave no trace");

    l.g.remove_peer(l.now, A);
    drain(&mut l.g);
    // A's address is free again, but not its id.
    let again = l.g.add_peer(l.now, peer("a", 1, 65001)).unwrap();
    assert_eq!(again, PeerId(2));
    assert_eq!(l.g.peer(again).unwrap().state, State::Idle);
    assert_eq!(l.g.find_peer(IpAddr::V4(NH_A)), Some(again));
    assert!(drain(&mut l.g).is_empty(), "a new peer waits for Start");
    let c = l.g.add_peer(l.now, peer("c", 3, 65003)).unwrap();
    assert_eq!(c, PeerId(3));
    assert_eq!(l.g.peer_ids().collect::<Vec<_>>(), vec![B, again, c]);

    // Started, the new peer comes up and gets our prefixes and B's.
    l.b.announce(
        &mut l.g,
        l.now,
        &["192.168.2.0/24"],
        &[65002],
        Ipv4Addr::new(169, 254, 22, 1),
    );
    drain(&mut l.g);
    l.g.handle(l.now, again, Input::Start);
    let (_, out) = Fake::establish(&mut l.g, l.now, again, 9, 65001, Ipv4Addr::new(10, 0, 0, 1));
    assert!(events(&out)
        .iter()
        .any(|e| matches!(e, Event::PeerUp { peer, .. } if *peer == again)));
    assert_eq!(path_sent(&out, again, "10.1.0.0/16").unwrap(), "65000");
    assert_eq!(
        path_sent(&out, again, "192.168.2.0/24").unwrap(),
        "65000 65002"
    );
}

#[test]
fn set_local_prefixes_advertises_new_and_withdraws_old() {
    let mut l = lab(&["10.1.0.0/16", "10.2.0.0/16"]);
    l.g.set_local_prefixes(l.now, vec![net("10.2.0.0/16"), net("10.3.0.0/16")]);
    let out = drain(&mut l.g);
    for p in [A, B] {
        assert_eq!(withdrawn_to(&out, p), vec![net("10.1.0.0/16")], "{p}");
        let sent: Vec<_> = announced(&updates(&sent_to(&out, p)))
            .into_iter()
            .map(|(n, a)| (n, a.as_path_text()))
            .collect();
        assert_eq!(sent, vec![(net("10.3.0.0/16"), "65000".to_string())], "{p}");
        let advertised: Vec<_> =
            l.g.peer(p)
                .unwrap()
                .adj_rib_out
                .advertised()
                .keys()
                .collect();
        assert_eq!(advertised, vec![net("10.2.0.0/16"), net("10.3.0.0/16")]);
    }
    // Own prefixes are not routes: no Loc-RIB event.
    assert!(events(&out).is_empty(), "{:?}", events(&out));
    // The same set again changes nothing.
    l.g.set_local_prefixes(l.now, vec![net("10.3.0.0/16"), net("10.2.0.0/16")]);
    assert!(drain(&mut l.g).is_empty());
}

#[test]
fn set_local_prefixes_reevaluates_received_routes_both_ways() {
    let mut l = lab(&["10.1.0.0/16", "10.8.0.0/16"]);
    l.a.announce(
        &mut l.g,
        l.now,
        &["10.1.0.0/16", "10.9.0.0/16"],
        &[65001],
        NH_A,
    );
    // Our own ASN in the path as well: refused for two reasons.
    l.a.announce(&mut l.g, l.now, &["10.8.0.0/16"], &[65001, 65000], NH_A);
    drain(&mut l.g);
    assert_eq!(
        refused(&l.g, A, "10.1.0.0/16"),
        Some(ImportRefusal::OwnPrefix)
    );
    assert_eq!(
        refused(&l.g, A, "10.8.0.0/16"),
        Some(ImportRefusal::OwnPrefix)
    );
    assert_eq!(best_from(&l.g, "10.9.0.0/16"), Some(A));

    // 10.1 stops being ours, 10.9 becomes ours.
    l.g.set_local_prefixes(l.now, vec![net("10.9.0.0/16")]);
    let out = drain(&mut l.g);
    let ev = events(&out);
    // The route refused as our own is accepted and becomes the best path.
    assert_eq!(refused(&l.g, A, "10.1.0.0/16"), None);
    assert_eq!(best_from(&l.g, "10.1.0.0/16"), Some(A));
    assert!(ev.iter().any(|e| matches!(e,
        Event::BestPath { prefix, best, .. } if *prefix == net("10.1.0.0/16") && best.peer == A)));
    // B now hears 10.1 through us from A; A no longer hears it from us.
    assert_eq!(path_sent(&out, B, "10.1.0.0/16").unwrap(), "65000 65001");
    assert!(withdrawn_to(&out, A).contains(&net("10.1.0.0/16")));
    let to_a = l.g.peer(A).unwrap().adj_rib_out;
    assert!(to_a.advertised().get(&net("10.1.0.0/16")).is_none());
    // Not sending a peer its own route back is not recorded as held back.
    assert!(to_a.held_back().get(&net("10.1.0.0/16")).is_none());
    // Still refused, now for the path: only the own-prefix rule changed.
    assert_eq!(
        refused(&l.g, A, "10.8.0.0/16"),
        Some(ImportRefusal::OwnAsInPath { asn: 65000 })
    );
    assert!(l.g.loc_rib().get(&net("10.8.0.0/16")).is_none());
    // The accepted route identical to the new own prefix is refused and
    // leaves the Loc-RIB; both peers get our own 10.9 instead.
    assert_eq!(
        refused(&l.g, A, "10.9.0.0/16"),
        Some(ImportRefusal::OwnPrefix)
    );
    assert!(l.g.loc_rib().get(&net("10.9.0.0/16")).is_none());
    assert!(ev.contains(&Event::Withdrawn {
        prefix: net("10.9.0.0/16")
    }));
    assert!(ev.iter().any(|e| matches!(e,
        Event::Refused { peer, routes } if *peer == A && routes.contains(&(net("10.9.0.0/16"), ImportRefusal::OwnPrefix)))));
    assert_eq!(path_sent(&out, B, "10.9.0.0/16").unwrap(), "65000");
    assert_eq!(path_sent(&out, A, "10.9.0.0/16").unwrap(), "65000");
    // 10.8 is neither ours nor learned any more: withdrawn from both.
    assert!(withdrawn_to(&out, A).contains(&net("10.8.0.0/16")));
    assert!(withdrawn_to(&out, B).contains(&net("10.8.0.0/16")));

    // And back: the same routes swap again.
    l.g.set_local_prefixes(l.now, vec![net("10.1.0.0/16")]);
    let out = drain(&mut l.g);
    let ev = events(&out);
    assert_eq!(
        refused(&l.g, A, "10.1.0.0/16"),
        Some(ImportRefusal::OwnPrefix)
    );
    assert!(ev.contains(&Event::Withdrawn {
        prefix: net("10.1.0.0/16")
    }));
    assert_eq!(path_sent(&out, B, "10.1.0.0/16").unwrap(), "65000");
    assert_eq!(path_sent(&out, A, "10.1.0.0/16").unwrap(), "65000");
    assert_eq!(best_from(&l.g, "10.9.0.0/16"), Some(A));
    assert_eq!(path_sent(&out, B, "10.9.0.0/16").unwrap(), "65000 65001");
    assert!(withdrawn_to(&out, A).contains(&net("10.9.0.0/16")));
}

fn net_peer(name: &str, address: &str, local: &str, asn: u32) -> PeerConfig {
    let mut p = PeerConfig::new(name, address.parse().unwrap(), asn);
    p.local_address = Some(local.parse().unwrap());
    p.timers = Some(Timers {
        keepalive: 3,
        hold: 9,
    });
    p.connect_retry = Duration::from_secs(5);
    p
}

fn net_speaker(asn: u32, id: u8, own: &str, peers: Vec<PeerConfig>) -> Speaker {
    Speaker::new(SpeakerConfig {
        local_as: asn,
        router_id: Ipv4Addr::new(10, 0, 0, id),
        local_prefixes: vec![net(own)],
        announce: Vec::new(),
        act_as: None,
        peers,
    })
    .unwrap()
}

/// ```text
///   A (65001) .21.1 ──── .21.2 G (65000) .23.2 ┄┄┄┄ .23.1 C (65003)
/// ```
/// C is configured towards G from the start; G learns of C at runtime.
#[test]
fn add_peer_after_start_brings_up_a_new_session() {
    let a = net_speaker(
        65001,
        1,
        "172.16.1.0/24",
        vec![net_peer("g", "169.254.21.2", "169.254.21.1", 65000)],
    );
    let g = net_speaker(
        65000,
        100,
        "10.1.0.0/16",
        vec![net_peer("a", "169.254.21.1", "169.254.21.2", 65001)],
    );
    let c = net_speaker(
        65003,
        3,
        "192.168.3.0/24",
        vec![net_peer("g", "169.254.23.2", "169.254.23.1", 65000)],
    );
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let mut world = Net::new(vec![
        (a, vec![ip("169.254.21.1")]),
        (g, vec![ip("169.254.21.2"), ip("169.254.23.2")]),
        (c, vec![ip("169.254.23.1")]),
    ]);
    world.start();
    world.run_until(12);
    assert_ne!(
        world.nodes[2].speaker.peer(PeerId(0)).unwrap().state,
        State::Established
    );

    let to_c = world.nodes[1]
        .speaker
        .add_peer(
            world.now,
            net_peer("c", "169.254.23.1", "169.254.23.2", 65003),
        )
        .unwrap();
    assert_eq!(to_c, PeerId(1));
    world.handle(1, to_c, Input::Start);
    world.run();
    world.run_until(20);

    let g = &world.nodes[1];
    assert_eq!(g.speaker.peer(to_c).unwrap().state, State::Established);
    assert!(g
        .events
        .iter()
        .any(|e| matches!(e, Event::PeerUp { peer, .. } if *peer == to_c)));
    let path = |n: usize, p: &str| {
        world.nodes[n]
            .speaker
            .loc_rib()
            .get(&net(p))
            .map(|e| e.best.attrs.as_path_text())
    };
    assert_eq!(path(2, "172.16.1.0/24").as_deref(), Some("65000 65001"));
    assert_eq!(path(2, "10.1.0.0/16").as_deref(), Some("65000"));
    assert_eq!(path(0, "192.168.3.0/24").as_deref(), Some("65000 65003"));
    // The session to A never went down.
    assert!(!world.nodes[1]
        .events
        .iter()
        .any(|e| matches!(e, Event::PeerDown { peer, .. } if *peer == PeerId(0))));
}
