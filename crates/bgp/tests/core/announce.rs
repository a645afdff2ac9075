//! Announced prefixes ([`SpeakerConfig::announce`]): originated and
//! advertised like own prefixes, but not own, so a peer's identical route
//! is accepted. Between speakers:
//!
//! ```text
//!   A (65001) .21.1 ──── .21.2 G (65000) .23.2 ──── .23.1 C (65003)
//! ```
//!
//! and through G with two hand-played peers, as in `reload.rs`:
//!
//! ```text
//!   A (AS 65001) 169.254.21.1 ── .2 [G AS 65000, own 10.1.0.0/16] .2 ── 169.254.22.1 B (AS 65002)
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use vpngw_bgp::config::{ConfigError, ConfigWarning, Profile};
use vpngw_bgp::policy::{ExportRefusal, ImportRefusal, PrefixList, PrefixListEntry};
use vpngw_bgp::session::State;
use vpngw_bgp::wire::Origin;
use vpngw_bgp::{Event, Output, PeerConfig, PeerId, Speaker, SpeakerConfig, Timers};

use super::fake::{announced, drain, net, sent_to, updates, withdrawn, Fake};
use super::net::Net;

fn nets(prefixes: &[&str]) -> Vec<IpNet> {
    prefixes.iter().map(|p| net(p)).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------
// Between speakers.

fn net_peer(name: &str, address: &str, local: &str, asn: u32) -> PeerConfig {
    let mut p = PeerConfig::new(name, ip(address), asn);
    p.local_address = Some(ip(local));
    p.timers = Some(Timers {
        keepalive: 3,
        hold: 9,
    });
    p.connect_retry = Duration::from_secs(5);
    p
}

fn net_speaker(
    asn: u32,
    id: u8,
    own: &[&str],
    announce: &[&str],
    peers: Vec<PeerConfig>,
) -> Speaker {
    Speaker::new(SpeakerConfig {
        local_as: asn,
        router_id: Ipv4Addr::new(10, 0, 0, id),
        local_prefixes: nets(own),
        announce: nets(announce),
        act_as: None,
        peers,
    })
    .unwrap()
}

/// A ── G ── C, all sessions up.
fn chain(a_announces: &[&str], g_own: &str) -> Net {
    let a = net_speaker(
        65001,
        1,
        &["172.16.1.0/24"],
        a_announces,
        vec![net_peer("g", "169.254.21.2", "169.254.21.1", 65000)],
    );
    let g = net_speaker(
        65000,
        100,
        &[g_own],
        &[],
        vec![
            net_peer("a", "169.254.21.1", "169.254.21.2", 65001),
            net_peer("c", "169.254.23.1", "169.254.23.2", 65003),
        ],
    );
    let c = net_speaker(
        65003,
        3,
        &["192.168.3.0/24"],
        &[],
        vec![net_peer("g", "169.254.23.2", "169.254.23.1", 65000)],
    );
    let mut world = Net::new(vec![
        (a, vec![ip("169.254.21.1")]),
        (g, vec![ip("169.254.21.2"), ip("169.254.23.2")]),
        (c, vec![ip("169.254.23.1")]),
    ]);
    world.start();
    world.run_until(20);
    for (n, p) in [(0, 0), (1, 0), (1, 1), (2, 0)] {
        assert_eq!(
            world.nodes[n].speaker.peer(PeerId(p)).unwrap().state,
            State::Established,
            "node {n} peer {p}"
        );
    }
    world
}

const G_A: PeerId = PeerId(0);
const G_C: PeerId = PeerId(1);

fn loc_path(world: &Net, n: usize, prefix: &str) -> Option<String> {
    world.nodes[n]
        .speaker
        .loc_rib()
        .get(&net(prefix))
        .map(|e| e.best.attrs.as_path_text())
}

#[test]
fn announced_default_and_summary_are_installed_by_the_peer_but_only_the_summary_is_passed_on() {
    let world = chain(&["0.0.0.0/0", "10.0.0.0/8"], "10.1.0.0/16");

    // A originates both, as it does its own prefix: empty AS_PATH before
    // its ASN is prepended, IGP, next hop self.
    let a = &world.nodes[0].speaker;
    let to_g = a.advertised_to(PeerId(0));
    for p in ["0.0.0.0/0", "10.0.0.0/8", "172.16.1.0/24"] {
        let attrs = to_g.get(&net(p)).unwrap_or_else(|| panic!("{p}"));
        assert_eq!(attrs.as_path_text(), "65001", "{p}");
        assert_eq!(attrs.origin, Origin::Igp, "{p}");
        assert_eq!(attrs.next_hop, ip("169.254.21.1"), "{p}");
    }
    // They are originated, not routes of A's.
    assert!(a.loc_rib().get(&net("0.0.0.0/0")).is_none());
    assert!(a.loc_rib().get(&net("10.0.0.0/8")).is_none());

    // G accepts and installs them, via A.
    let g = &world.nodes[1];
    for p in ["0.0.0.0/0", "10.0.0.0/8"] {
        assert!(
            g.events.iter().any(|e| matches!(e,
                Event::BestPath { prefix, best, next_hops }
                    if *prefix == net(p)
                        && best.peer == G_A
                        && next_hops.iter().map(|h| h.address).collect::<Vec<_>>()
                            == vec![ip("169.254.21.1")])),
            "{p}: {:#?}",
            g.events
        );
        assert_eq!(loc_path(&world, 1, p).as_deref(), Some("65001"), "{p}");
    }
    assert!(
        !g.events.iter().any(|e| matches!(e, Event::Refused { .. })),
        "{:#?}",
        g.events
    );

    // C hears the summary through G, never the learned default route.
    let to_c = g.speaker.peer(G_C).unwrap().adj_rib_out;
    assert_eq!(
        to_c.held_back().get(&net("0.0.0.0/0")),
        Some(&ExportRefusal::DefaultRoute)
    );
    assert!(to_c.advertised().get(&net("0.0.0.0/0")).is_none());
    assert!(g.events.iter().any(|e| matches!(e,
        Event::HeldBack { peer, routes }
            if *peer == G_C && routes.contains(&(net("0.0.0.0/0"), ExportRefusal::DefaultRoute)))));
    assert_eq!(
        loc_path(&world, 2, "10.0.0.0/8").as_deref(),
        Some("65000 65001")
    );
    assert_eq!(loc_path(&world, 2, "0.0.0.0/0"), None);
    assert!(!world.nodes[2]
        .events
        .iter()
        .any(|e| matches!(e, Event::BestPath { prefix, .. } if *prefix == net("0.0.0.0/0"))));
}

#[test]
fn announcing_the_peers_own_prefix_is_refused_by_it_as_own() {
    // A announces G's own prefix; G announces it to A as its own.
    let world = chain(&["10.1.0.0/16"], "10.1.0.0/16");
    let g = &world.nodes[1];
    let refused = g.speaker.peer(G_A).unwrap().adj_rib_in.refused();
    assert_eq!(
        refused.get(&net("10.1.0.0/16")).map(|r| r.reason.clone()),
        Some(ImportRefusal::OwnPrefix)
    );
    assert!(g.events.iter().any(|e| matches!(e,
        Event::Refused { peer, routes }
            if *peer == G_A && routes.contains(&(net("10.1.0.0/16"), ImportRefusal::OwnPrefix)))));
    assert_eq!(loc_path(&world, 1, "10.1.0.0/16"), None);
    // C hears G's own prefix, originated by G.
    assert_eq!(loc_path(&world, 2, "10.1.0.0/16").as_deref(), Some("65000"));

    // For A the prefix is announced, not own: G's route is accepted, but
    // A's own origination wins and it keeps advertising it.
    let a = &world.nodes[0];
    let from_g = a.speaker.peer(PeerId(0)).unwrap().adj_rib_in;
    assert!(from_g.refused().is_empty(), "{:?}", from_g.refused());
    assert_eq!(
        from_g
            .accepted()
            .get(&net("10.1.0.0/16"))
            .map(|a| a.as_path_text())
            .as_deref(),
        Some("65000")
    );
    assert_eq!(loc_path(&world, 0, "10.1.0.0/16"), None);
    assert!(!a
        .events
        .iter()
        .any(|e| matches!(e, Event::BestPath { prefix, .. } if *prefix == net("10.1.0.0/16"))));
    assert!(a
        .speaker
        .peer(PeerId(0))
        .unwrap()
        .adj_rib_out
        .advertised()
        .contains_key(&net("10.1.0.0/16")));
}

// ---------------------------------------------------------------------------
// Through G, with hand-played peers.

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
    /// What G sent while the lab was built.
    out: Vec<Output>,
}

fn lab(announce: &[&str], tune: impl FnOnce(&mut PeerConfig, &mut PeerConfig)) -> Lab {
    let (mut pa, mut pb) = (peer("a", 1, 65001), peer("b", 2, 65002));
    tune(&mut pa, &mut pb);
    let mut g = Speaker::new(SpeakerConfig {
        local_as: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 100),
        local_prefixes: vec![net("10.1.0.0/16")],
        announce: nets(announce),
        act_as: None,
        peers: vec![pa, pb],
    })
    .unwrap();
    let now = Instant::now();
    g.start(now);
    let (a, mut out) = Fake::establish(&mut g, now, A, 1, 65001, Ipv4Addr::new(10, 0, 0, 1));
    let (_, out_b) = Fake::establish(&mut g, now, B, 2, 65002, Ipv4Addr::new(10, 0, 0, 2));
    out.extend(out_b);
    Lab { g, now, a, out }
}

fn events(out: &[Output]) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            Output::Connect { .. } | Output::Send { .. } | Output::Close { .. } => None,
        })
        .collect()
}

/// Each prefix sent to `peer` in `out`, with its AS_PATH.
fn paths_sent(out: &[Output], peer: PeerId) -> Vec<(IpNet, String)> {
    announced(&updates(&sent_to(out, peer)))
        .into_iter()
        .map(|(n, a)| (n, a.as_path_text()))
        .collect()
}

fn withdrawn_to(out: &[Output], peer: PeerId) -> Vec<IpNet> {
    withdrawn(&updates(&sent_to(out, peer)))
}

fn advertised(g: &Speaker, peer: PeerId) -> Vec<IpNet> {
    g.peer(peer)
        .unwrap()
        .adj_rib_out
        .advertised()
        .keys()
        .collect()
}

fn path(prefix: &str, as_path: &str) -> (IpNet, String) {
    (net(prefix), as_path.to_string())
}

#[test]
fn set_announce_advertises_new_and_withdraws_removed() {
    let mut l = lab(&[], |_, _| {});
    for p in [A, B] {
        assert_eq!(advertised(&l.g, p), nets(&["10.1.0.0/16"]), "{p}");
    }

    l.g.set_announce(l.now, nets(&["10.5.0.0/16", "0.0.0.0/0"]));
    assert_eq!(l.g.announced().len(), 2);
    let out = drain(&mut l.g);
    for (p, next_hop) in [(A, "169.254.21.2"), (B, "169.254.22.2")] {
        let sent = announced(&updates(&sent_to(&out, p)));
        assert_eq!(
            sent.iter()
                .map(|(n, a)| (*n, a.as_path_text()))
                .collect::<Vec<_>>(),
            vec![path("0.0.0.0/0", "65000"), path("10.5.0.0/16", "65000")],
            "{p}"
        );
        assert!(
            sent.iter().all(|(_, a)| a.next_hop == ip(next_hop)),
            "{p}: {sent:?}"
        );
        assert_eq!(
            advertised(&l.g, p),
            nets(&["0.0.0.0/0", "10.1.0.0/16", "10.5.0.0/16"]),
            "{p}"
        );
    }
    // Originated, not routes: no Loc-RIB event.
    assert!(events(&out).is_empty(), "{:?}", events(&out));
    assert!(l.g.loc_rib().is_empty());
    // The same set again changes nothing.
    l.g.set_announce(l.now, nets(&["0.0.0.0/0", "10.5.0.0/16"]));
    assert!(drain(&mut l.g).is_empty());

    l.g.set_announce(l.now, nets(&["10.5.0.0/16"]));
    let out = drain(&mut l.g);
    for p in [A, B] {
        assert_eq!(withdrawn_to(&out, p), nets(&["0.0.0.0/0"]), "{p}");
        assert!(paths_sent(&out, p).is_empty(), "{p}");
    }
    l.g.set_announce(l.now, Vec::new());
    let out = drain(&mut l.g);
    for p in [A, B] {
        assert_eq!(withdrawn_to(&out, p), nets(&["10.5.0.0/16"]), "{p}");
        assert_eq!(advertised(&l.g, p), nets(&["10.1.0.0/16"]), "{p}");
    }
    assert!(events(&out).is_empty(), "{:?}", events(&out));
}

#[test]
fn announced_prefixes_go_out_when_sessions_come_up() {
    let l = lab(&["0.0.0.0/0"], |_, _| {});
    for p in [A, B] {
        assert_eq!(
            paths_sent(&l.out, p),
            vec![path("0.0.0.0/0", "65000"), path("10.1.0.0/16", "65000")],
            "{p}"
        );
    }
}

#[test]
fn export_prefix_list_applies_to_announced_prefixes() {
    let l = lab(&["0.0.0.0/0", "10.0.0.0/8"], |_, b| {
        b.export = Some(PrefixList::new(vec![PrefixListEntry::permit(net(
            "10.0.0.0/8",
        ))
        .le(16)]));
    });
    assert_eq!(
        advertised(&l.g, A),
        nets(&["0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16"])
    );
    assert_eq!(advertised(&l.g, B), nets(&["10.0.0.0/8", "10.1.0.0/16"]));
    assert_eq!(
        l.g.peer(B)
            .unwrap()
            .adj_rib_out
            .held_back()
            .get(&net("0.0.0.0/0")),
        Some(&ExportRefusal::ExportPrefixList)
    );
}

#[test]
fn our_announcement_wins_over_an_identical_learned_route() {
    let mut l = lab(&["0.0.0.0/0", "10.0.0.0/8"], |_, _| {});
    l.a.announce(
        &mut l.g,
        l.now,
        &["0.0.0.0/0", "10.0.0.0/8"],
        &[65001],
        NH_A,
    );
    let out = drain(&mut l.g);
    // Accepted (not own), but not selected: our origination is preferred.
    let from_a = l.g.peer(A).unwrap().adj_rib_in;
    assert!(from_a.refused().is_empty(), "{:?}", from_a.refused());
    assert_eq!(from_a.accepted().len(), 2);
    assert!(l.g.loc_rib().is_empty());
    assert!(events(&out).is_empty(), "{:?}", events(&out));
    // Both peers, A included, keep our origination; nothing new is sent.
    assert!(sent_to(&out, A).is_empty() && sent_to(&out, B).is_empty());
    for p in [A, B] {
        let rib_out = l.g.advertised_to(p);
        assert_eq!(
            rib_out.get(&net("0.0.0.0/0")).unwrap().as_path_text(),
            "65000",
            "{p}"
        );
    }

    // No longer announced: A's routes are selected; B hears the summary
    // through us from A, the learned default route not at all.
    l.g.set_announce(l.now, Vec::new());
    let out = drain(&mut l.g);
    let ev = events(&out);
    for p in ["0.0.0.0/0", "10.0.0.0/8"] {
        assert!(
            ev.iter().any(|e| matches!(e,
                Event::BestPath { prefix, best, .. } if *prefix == net(p) && best.peer == A)),
            "{p}: {ev:?}"
        );
    }
    assert_eq!(paths_sent(&out, B), vec![path("10.0.0.0/8", "65000 65001")]);
    assert_eq!(withdrawn_to(&out, B), nets(&["0.0.0.0/0"]));
    assert!(ev.iter().any(|e| matches!(e,
        Event::HeldBack { peer, routes }
            if *peer == B && routes.contains(&(net("0.0.0.0/0"), ExportRefusal::DefaultRoute)))));
    assert_eq!(withdrawn_to(&out, A), nets(&["0.0.0.0/0", "10.0.0.0/8"]));

    // Announced again: ours wins once more, the learned routes leave the
    // Loc-RIB.
    l.g.set_announce(l.now, nets(&["0.0.0.0/0", "10.0.0.0/8"]));
    let out = drain(&mut l.g);
    let ev = events(&out);
    for p in ["0.0.0.0/0", "10.0.0.0/8"] {
        assert!(ev.contains(&Event::Withdrawn { prefix: net(p) }), "{p}");
    }
    assert!(l.g.loc_rib().is_empty());
    for p in [A, B] {
        let mut sent = paths_sent(&out, p);
        sent.sort();
        assert_eq!(
            sent,
            vec![path("0.0.0.0/0", "65000"), path("10.0.0.0/8", "65000")],
            "{p}"
        );
    }
}

#[test]
fn a_prefix_both_own_and_announced_is_own() {
    let mut l = lab(&["10.1.0.0/16"], |_, _| {});
    l.a.announce(&mut l.g, l.now, &["10.1.0.0/16"], &[65001], NH_A);
    drain(&mut l.g);
    assert_eq!(
        l.g.peer(A)
            .unwrap()
            .adj_rib_in
            .refused()
            .get(&net("10.1.0.0/16"))
            .map(|r| r.reason.clone()),
        Some(ImportRefusal::OwnPrefix)
    );
    // No longer own, still announced: accepted, still not selected, still
    // advertised.
    l.g.set_local_prefixes(l.now, Vec::new());
    let out = drain(&mut l.g);
    assert!(l
        .g
        .peer(A)
        .unwrap()
        .adj_rib_in
        .accepted()
        .contains_key(&net("10.1.0.0/16")));
    assert!(l.g.loc_rib().is_empty());
    assert!(events(&out).is_empty(), "{:?}", events(&out));
    for p in [A, B] {
        assert!(withdrawn_to(&out, p).is_empty(), "{p}");
        assert_eq!(advertised(&l.g, p), nets(&["10.1.0.0/16"]), "{p}");
    }
}

// ---------------------------------------------------------------------------
// Configuration.

fn config(announce: &[&str]) -> SpeakerConfig {
    SpeakerConfig {
        local_as: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        local_prefixes: nets(&["10.1.0.0/16"]),
        announce: nets(announce),
        act_as: None,
        peers: vec![PeerConfig::new("p", ip("169.254.21.1"), 65001)],
    }
}

#[test]
fn announce_with_host_bits_is_refused() {
    assert!(config(&["0.0.0.0/0", "10.0.0.0/8", "::/0"])
        .validate()
        .is_ok());
    for bad in ["10.0.0.1/8", "0.0.0.1/0", "2001:db8::1/32"] {
        let err = config(&["10.0.0.0/8", bad]).validate().unwrap_err();
        assert_eq!(
            err,
            ConfigError::HostBitsSet {
                list: "announce",
                prefix: net(bad),
            }
        );
        assert!(Speaker::new(config(&[bad])).is_err(), "{bad}");
    }
    assert_eq!(
        config(&["10.0.0.1/8"]).validate().unwrap_err().to_string(),
        "announce: 10.0.0.1/8 has host bits set; expected 10.0.0.0/8"
    );
}

#[test]
fn the_peer_cap_counts_announced_prefixes_too() {
    let v4 = |i: u32| format!("10.{}.{}.0/24", 100 + i / 256, i % 256);
    let own: Vec<String> = (0..60).map(v4).collect();
    let mut c = config(&[]);
    c.local_prefixes = own.iter().map(|p| net(p)).collect();
    c.peers[0].profile = Some(Profile::Aws);
    let over = |c: &SpeakerConfig| -> Option<usize> {
        c.validate().unwrap().iter().find_map(|w| {
            let ConfigWarning::OwnPrefixesOverPeerCap { prefixes, cap, .. } = w else {
                return None;
            };
            assert_eq!(*cap, 100);
            Some(*prefixes)
        })
    };
    assert_eq!(over(&c), None);
    // 50 more, 10 of them already own: 100 distinct, still fits.
    c.announce = (50..100).map(|i| net(&v4(i))).collect();
    assert_eq!(over(&c), None);
    c.announce.push(net("0.0.0.0/0"));
    assert_eq!(over(&c), Some(101));
}

#[test]
fn a_path_announced_again_with_new_attributes_is_passed_on() {
    // The Loc-RIB keeps only which peer's path is selected: the same peer
    // announcing the prefix again, with another AS_PATH and next hop, must
    // still reach the kernel (a best-path event) and the other peers.
    let mut l = lab(&[], |_, _| {});
    l.a.announce(&mut l.g, l.now, &["172.16.9.0/24"], &[65001], NH_A);
    let out = drain(&mut l.g);
    assert_eq!(
        paths_sent(&out, B),
        vec![path("172.16.9.0/24", "65000 65001")]
    );

    let moved = Ipv4Addr::new(169, 254, 21, 9);
    l.a.announce(&mut l.g, l.now, &["172.16.9.0/24"], &[65001, 65009], moved);
    let out = drain(&mut l.g);
    assert_eq!(
        paths_sent(&out, B),
        vec![path("172.16.9.0/24", "65000 65001 65009")]
    );
    assert!(events(&out).iter().any(|e| matches!(e,
        Event::BestPath { prefix, next_hops, .. }
            if *prefix == net("172.16.9.0/24") && next_hops[0].address == IpAddr::V4(moved))));
    let entry = l.g.loc_rib().get(&net("172.16.9.0/24")).unwrap();
    assert_eq!(entry.best.attrs.as_path_text(), "65001 65009");

    // The same announcement once more changes nothing anyone cares about
    // but is passed on (we keep no copy to compare with): harmless.
    l.a.announce(&mut l.g, l.now, &["172.16.9.0/24"], &[65001, 65009], moved);
    let out = drain(&mut l.g);
    assert_eq!(
        paths_sent(&out, B),
        vec![path("172.16.9.0/24", "65000 65001 65009")]
    );
}
