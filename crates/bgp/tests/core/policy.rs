//! The gateway's policy, one test per rule, through a speaker with two
//! hand-played peers:
//!
//! ```text
//!   A (AS 65001) 169.254.21.1 ── .2 [G AS 65000, own 10.1.0.0/16] .2 ── 169.254.22.1 B (AS 65002)
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use vpngw_bgp::config::Profile;
use vpngw_bgp::policy::{ExportRefusal, ImportRefusal, PrefixList, PrefixListEntry};
use vpngw_bgp::session::{ConnectionId, Direction, DownReason, Input, StopReason};
use vpngw_bgp::wire::iana::CeaseSubcode;
use vpngw_bgp::wire::{ErrorCode, Message};
use vpngw_bgp::{Event, Output, PeerConfig, PeerId, Speaker, SpeakerConfig};

use super::fake::{announced, drain, net, sent_to, updates, withdrawn, Fake};

const A: PeerId = PeerId(0);
const B: PeerId = PeerId(1);
const G_ON_B: Ipv4Addr = Ipv4Addr::new(169, 254, 22, 2);
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
    /// What G sent while the lab was built.
    out: Vec<Output>,
}

fn lab(tune: impl FnOnce(&mut PeerConfig, &mut PeerConfig)) -> Lab {
    let (mut pa, mut pb) = (peer("a", 1, 65001), peer("b", 2, 65002));
    tune(&mut pa, &mut pb);
    let mut g = Speaker::new(SpeakerConfig {
        local_as: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 100),
        local_prefixes: vec![net("10.1.0.0/16")],
        announce: Vec::new(),
        act_as: None,
        peers: vec![pa, pb],
    })
    .unwrap();
    let now = Instant::now();
    g.start(now);
    let (a, mut out) = Fake::establish(&mut g, now, A, 1, 65001, Ipv4Addr::new(10, 0, 0, 1));
    let (b, out_b) = Fake::establish(&mut g, now, B, 2, 65002, Ipv4Addr::new(10, 0, 0, 2));
    out.extend(out_b);
    Lab { g, now, a, b, out }
}

fn refused(g: &Speaker, peer: PeerId, prefix: &str) -> Option<ImportRefusal> {
    g.peer(peer)
        .unwrap()
        .adj_rib_in
        .refused()
        .get(&net(prefix))
        .map(|r| r.reason.clone())
}

fn held_back(g: &Speaker, peer: PeerId, prefix: &str) -> Option<ExportRefusal> {
    g.peer(peer)
        .unwrap()
        .adj_rib_out
        .held_back()
        .get(&net(prefix))
        .cloned()
}

#[test]
fn own_prefix_is_advertised_with_next_hop_self() {
    let l = lab(|_, _| {});
    let to_b = announced(&updates(&sent_to(&l.out, B)));
    assert_eq!(to_b.len(), 1);
    let (prefix, attrs) = &to_b[0];
    assert_eq!(*prefix, net("10.1.0.0/16"));
    assert_eq!(attrs.as_path_text(), "65000");
    assert_eq!(attrs.next_hop, IpAddr::V4(G_ON_B));
}

#[test]
fn identical_own_prefix_is_refused_but_a_larger_one_accepted() {
    let mut l = lab(|_, _| {});
    l.a.announce(
        &mut l.g,
        l.now,
        &["10.1.0.0/16", "10.0.0.0/8"],
        &[65001],
        NH_A,
    );
    let out = drain(&mut l.g);
    assert_eq!(
        refused(&l.g, A, "10.1.0.0/16"),
        Some(ImportRefusal::OwnPrefix)
    );
    assert!(l.g.loc_rib().get(&net("10.0.0.0/8")).is_some());
    assert!(l.g.loc_rib().get(&net("10.1.0.0/16")).is_none());
    let reason = out
        .iter()
        .find_map(|o| {
            let Output::Event(Event::Refused { routes, .. }) = o else {
                return None;
            };
            Some(routes[0].1.to_string())
        })
        .unwrap();
    assert_eq!(reason, "identical to one of the gateway's own prefixes");
}

#[test]
fn path_with_our_asn_is_refused() {
    let mut l = lab(|_, _| {});
    l.a.announce(
        &mut l.g,
        l.now,
        &["172.16.0.0/24"],
        &[65001, 65000, 65009],
        NH_A,
    );
    assert_eq!(
        refused(&l.g, A, "172.16.0.0/24"),
        Some(ImportRefusal::OwnAsInPath { asn: 65000 })
    );
    assert!(l.g.loc_rib().is_empty());
}

#[test]
fn import_prefix_list_with_ge_le() {
    let mut l = lab(|a, _| {
        a.import = Some(PrefixList::new(vec![PrefixListEntry::permit(net(
            "172.16.0.0/12",
        ))
        .ge(16)
        .le(24)]));
    });
    l.a.announce(
        &mut l.g,
        l.now,
        &[
            "172.16.1.0/24",
            "172.16.0.0/12",
            "172.16.2.0/25",
            "192.168.0.0/24",
        ],
        &[65001],
        NH_A,
    );
    assert!(l.g.loc_rib().get(&net("172.16.1.0/24")).is_some());
    for p in ["172.16.0.0/12", "172.16.2.0/25", "192.168.0.0/24"] {
        assert_eq!(
            refused(&l.g, A, p),
            Some(ImportRefusal::ImportPrefixList),
            "{p}"
        );
    }
}

#[test]
fn transit_prepends_our_asn_sets_next_hop_self_and_withdraws_at_once() {
    let mut l = lab(|_, b| b.prepend = 2);
    // A third-party next hop is replaced by ours towards B (eBGP).
    l.a.announce(
        &mut l.g,
        l.now,
        &["172.16.1.0/24"],
        &[65001, 65010],
        Ipv4Addr::new(192, 0, 2, 99),
    );
    let out = drain(&mut l.g);
    let to_b = announced(&updates(&sent_to(&out, B)));
    assert_eq!(to_b.len(), 1);
    assert_eq!(to_b[0].0, net("172.16.1.0/24"));
    assert_eq!(to_b[0].1.as_path_text(), "65000 65000 65000 65001 65010");
    assert_eq!(to_b[0].1.next_hop, IpAddr::V4(G_ON_B));
    assert_eq!(to_b[0].1.med, None);
    // Not sent back to A.
    assert!(updates(&sent_to(&out, A)).is_empty());
    // (Not recorded as held back: a full table would cost a record each.)
    assert_eq!(held_back(&l.g, A, "172.16.1.0/24"), None);
    // And the other way.
    l.b.announce(
        &mut l.g,
        l.now,
        &["192.168.5.0/24"],
        &[65002],
        Ipv4Addr::new(169, 254, 22, 1),
    );
    let out = drain(&mut l.g);
    let to_a = announced(&updates(&sent_to(&out, A)));
    assert_eq!(to_a[0].1.as_path_text(), "65000 65002");
    assert_eq!(
        to_a[0].1.next_hop,
        IpAddr::V4(Ipv4Addr::new(169, 254, 21, 2))
    );
    l.a.withdraw(&mut l.g, l.now, &["172.16.1.0/24"]);
    let out = drain(&mut l.g);
    assert_eq!(
        withdrawn(&updates(&sent_to(&out, B))),
        vec![net("172.16.1.0/24")]
    );
    assert!(out.contains(&Output::Event(Event::Withdrawn {
        prefix: net("172.16.1.0/24")
    })));
}

#[test]
fn learned_default_route_is_kept_but_never_readvertised() {
    let mut l = lab(|_, _| {});
    l.a.announce(&mut l.g, l.now, &["0.0.0.0/0"], &[65001], NH_A);
    let out = drain(&mut l.g);
    assert!(l.g.loc_rib().get(&net("0.0.0.0/0")).is_some());
    assert!(updates(&sent_to(&out, B)).is_empty());
    assert_eq!(
        held_back(&l.g, B, "0.0.0.0/0"),
        Some(ExportRefusal::DefaultRoute)
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::HeldBack { peer: B, routes }) if routes[0].1 == ExportRefusal::DefaultRoute
    )));
}

#[test]
fn export_prefix_list_holds_back() {
    let mut l = lab(|_, b| {
        b.export = Some(PrefixList::new(vec![PrefixListEntry::permit(net(
            "10.0.0.0/8",
        ))
        .le(24)]));
    });
    l.a.announce(
        &mut l.g,
        l.now,
        &["172.16.1.0/24", "10.2.0.0/16"],
        &[65001],
        NH_A,
    );
    let out = drain(&mut l.g);
    let to_b: Vec<_> = announced(&updates(&sent_to(&out, B)))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(to_b, vec![net("10.2.0.0/16")]);
    assert_eq!(
        held_back(&l.g, B, "172.16.1.0/24"),
        Some(ExportRefusal::ExportPrefixList)
    );
}

#[test]
fn path_through_the_peers_as_is_held_back_from_it() {
    let mut l = lab(|_, _| {});
    l.a.announce(&mut l.g, l.now, &["172.16.1.0/24"], &[65001, 65002], NH_A);
    let out = drain(&mut l.g);
    assert!(updates(&sent_to(&out, B)).is_empty());
    assert_eq!(
        held_back(&l.g, B, "172.16.1.0/24"),
        Some(ExportRefusal::PeerAsInPath { asn: 65002 })
    );
}

fn prefixes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("172.16.{i}.0/24")).collect()
}

#[test]
fn aws_profile_caps_what_we_send_and_says_what_it_held_back() {
    let mut l = lab(|_, b| b.profile = Some(Profile::Aws));
    let all = prefixes(150);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    l.a.announce(&mut l.g, l.now, &refs, &[65001], NH_A);
    let out = drain(&mut l.g);
    let b = l.g.peer(B).unwrap();
    // Our own prefix plus 99 learned ones: the AWS cap of 100.
    assert_eq!(b.adj_rib_out.advertised().len(), 100);
    assert_eq!(announced(&updates(&sent_to(&out, B))).len(), 99);
    let capped = b
        .adj_rib_out
        .held_back()
        .values()
        .filter(|r| {
            matches!(
                r,
                ExportRefusal::PeerCap {
                    cap: 100,
                    profile: Profile::Aws
                }
            )
        })
        .count();
    assert_eq!(capped, 51);
    let text = held_back(&l.g, B, "172.16.149.0/24").unwrap().to_string();
    assert!(text.contains("accepts at most 100 prefixes"), "{text}");
    // Room freed by a withdrawal goes to what was held back.
    l.a.withdraw(&mut l.g, l.now, &refs[..10]);
    let out = drain(&mut l.g);
    let sent = updates(&sent_to(&out, B));
    assert_eq!(withdrawn(&sent).len(), 10);
    assert_eq!(announced(&sent).len(), 10);
    assert_eq!(l.g.peer(B).unwrap().adj_rib_out.advertised().len(), 100);
}

#[test]
fn max_prefix_closes_with_cease_and_retries_after_the_interval() {
    let mut l = lab(|a, _| {
        a.max_prefixes = 3;
        a.max_prefix_restart = Duration::from_secs(30);
    });
    l.a.announce(
        &mut l.g,
        l.now,
        &["172.16.1.0/24", "172.16.2.0/24"],
        &[65001],
        NH_A,
    );
    assert_eq!(l.g.loc_rib().len(), 2);
    let _ = drain(&mut l.g);
    l.a.announce(
        &mut l.g,
        l.now,
        &["172.16.3.0/24", "172.16.4.0/24"],
        &[65001],
        NH_A,
    );
    let out = drain(&mut l.g);
    let cease = sent_to(&out, A)
        .into_iter()
        .find_map(|m| {
            let Message::Notification(n) = m else {
                return None;
            };
            Some(n)
        })
        .unwrap();
    assert_eq!(
        (cease.code, cease.subcode),
        (
            ErrorCode::Cease,
            u8::from(CeaseSubcode::MaximumNumberOfPrefixesReached)
        )
    );
    assert!(out.contains(&Output::Close {
        peer: A,
        connection: ConnectionId(1)
    }));
    assert!(out.contains(&Output::Event(Event::PeerDown {
        peer: A,
        name: "a".into(),
        reason: DownReason::Stopped(StopReason::MaxPrefixes { limit: 3 }),
        was_established: true,
    })));
    // Its routes are gone, and withdrawn from B.
    assert!(l.g.loc_rib().is_empty());
    assert_eq!(withdrawn(&updates(&sent_to(&out, B))).len(), 2);
    // Until the interval has passed, A cannot come back.
    let try_connect = |g: &mut Speaker, now, c| {
        g.handle(
            now,
            A,
            Input::TcpConnected {
                connection: ConnectionId(c),
                direction: Direction::Inbound,
                local: "169.254.21.2:179".parse().unwrap(),
                remote: "169.254.21.1:40001".parse().unwrap(),
            },
        );
        drain(g)
    };
    let out = try_connect(&mut l.g, l.now + Duration::from_secs(29), 10);
    assert_eq!(
        out,
        vec![Output::Close {
            peer: A,
            connection: ConnectionId(10)
        }]
    );
    let later = l.now + Duration::from_secs(30);
    l.g.handle_timeout(later);
    let out = try_connect(&mut l.g, later, 11);
    assert!(matches!(sent_to(&out, A)[0], Message::Open(_)));
}

#[test]
fn malformed_update_is_treat_as_withdraw_with_a_visible_reason() {
    let mut l = lab(|_, _| {});
    l.a.announce(&mut l.g, l.now, &["198.51.100.0/24"], &[65001], NH_A);
    assert!(l.g.loc_rib().get(&net("198.51.100.0/24")).is_some());
    let _ = drain(&mut l.g);
    // The same prefix again with an AS_PATH segment of type 5.
    let mut msg = vec![0xff; 16];
    let attrs = [
        0x40, 1, 1, 0, 0x40, 2, 6, 5, 1, 0, 0, 0xfd, 0xe9, 0x40, 3, 4, 169, 254, 21, 1,
    ];
    let body_len = 2 + 2 + attrs.len() + 4;
    msg.extend(u16::try_from(19 + body_len).unwrap().to_be_bytes());
    msg.push(2);
    msg.extend([0, 0]);
    msg.extend(u16::try_from(attrs.len()).unwrap().to_be_bytes());
    msg.extend(attrs);
    msg.extend([24, 198, 51, 100]);
    l.a.send_bytes(&mut l.g, l.now, &msg);
    let out = drain(&mut l.g);
    assert!(l.g.loc_rib().is_empty(), "withdrawn");
    assert_eq!(
        l.g.peer(A).unwrap().state,
        vpngw_bgp::session::State::Established
    );
    let reason = refused(&l.g, A, "198.51.100.0/24").unwrap();
    assert!(matches!(reason, ImportRefusal::Malformed(_)));
    assert_eq!(
        reason.to_string(),
        "malformed UPDATE treated as withdraw (RFC 7606): malformed AS_PATH"
    );
    assert!(sent_to(&out, A).is_empty(), "no NOTIFICATION");
}

#[test]
fn attributes_are_shared_between_prefixes() {
    let mut l = lab(|_, _| {});
    let all = prefixes(200);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    l.a.announce(&mut l.g, l.now, &refs, &[65001], NH_A);
    let a = l.g.peer(A).unwrap();
    let first = a.adj_rib_in.get(&net("172.16.0.0/24")).unwrap();
    let last = a.adj_rib_in.get(&net("172.16.199.0/24")).unwrap();
    assert!(std::sync::Arc::ptr_eq(first, last));
    // Received set, exported set for B, own prefix sets for A and B.
    assert!(l.g.attribute_sets() <= 4, "{}", l.g.attribute_sets());
    // And the 200 routes reach B in one UPDATE.
    let out = drain(&mut l.g);
    let to_b = updates(&sent_to(&out, B));
    assert_eq!(to_b.len(), 1);
    assert_eq!(to_b[0].nlri.len(), 200);
}
