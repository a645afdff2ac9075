//! Two endpoints talking in memory: re-indexing after an IKE rekey, the
//! responder's COOKIE, NAT keepalives on the way out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::*;
use crate::ike::proposal::{parse_esp, parse_ike};
use crate::ike::sa::CloseReason;
use crate::ike::wire::Identification;

struct TestRng(u64);

impl Random for TestRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(32) {
            self.0 += 1;
            let d = ring::digest::digest(&ring::digest::SHA256, &self.0.to_be_bytes());
            chunk.copy_from_slice(&d.as_ref()[..chunk.len()]);
        }
    }
}

const A: &str = "192.0.2.1";
const B: &str = "198.51.100.1";

fn cfg(local: &str, remote: &str) -> SaConfig {
    SaConfig {
        local_id: Identification::ipv4(local.parse().unwrap()),
        remote_id: Identification::ipv4(remote.parse().unwrap()),
        psk: Zeroizing::new(b"a shared secret of decent length".to_vec()),
        ike_proposals: vec![parse_ike("aes256gcm16-prfsha256-x25519").unwrap()],
        esp_proposals: vec![parse_esp("aes256gcm16-x25519").unwrap()],
        dpd_interval: Duration::from_secs(10),
        dpd_timeout: Duration::from_secs(45),
        retransmit_timeout: Duration::from_secs(1),
        retransmit_tries: 5,
        force_encap: true,
        ike_lifetime: Duration::from_secs(3600),
        child_lifetime: Duration::from_secs(3600),
        child_lifetime_bytes: 1 << 40,
        child_lifetime_packets: 0,
    }
}

fn sock(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 500)
}

/// Endpoint `a` initiates to endpoint `b`.
struct Pair {
    now: Instant,
    a: Endpoint,
    b: Endpoint,
    rng_a: TestRng,
    rng_b: TestRng,
    events_a: Vec<(ConnId, Event)>,
    events_b: Vec<(ConnId, Event)>,
    keepalives: usize,
    /// Datagrams in flight: (to b?, transmit).
    wire: Vec<(bool, Transmit)>,
    /// Every datagram sent so far: (to b?, transmit).
    sent: Vec<(bool, Transmit)>,
}

impl Pair {
    fn new(cookie_threshold: usize) -> Pair {
        let now = crate::sim_clock::origin();
        let mut a = Endpoint::new();
        let mut b = Endpoint::new();
        a.add_connection("to-b", cfg(A, B), sock(A), sock(B), true, now);
        b.add_connection("to-a", cfg(B, A), sock(B), sock(A), false, now);
        b.set_cookie_threshold(cookie_threshold);
        Pair {
            now,
            a,
            b,
            rng_a: TestRng(1 << 32),
            rng_b: TestRng(2 << 32),
            events_a: Vec::new(),
            events_b: Vec::new(),
            keepalives: 0,
            wire: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn collect(&mut self) {
        for (to_b, ep, events) in [
            (true, &mut self.a, &mut self.events_a),
            (false, &mut self.b, &mut self.events_b),
        ] {
            while let Some(o) = ep.poll_output() {
                match o {
                    EndpointOutput::Transmit(t) => {
                        self.sent.push((to_b, t.clone()));
                        self.wire.push((to_b, t));
                    }
                    EndpointOutput::NatKeepalive { .. } => self.keepalives += 1,
                    EndpointOutput::Event(c, e) => events.push((c, e)),
                }
            }
        }
    }

    fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            self.collect();
            while !self.wire.is_empty() {
                for (to_b, t) in std::mem::take(&mut self.wire) {
                    if to_b {
                        self.b
                            .handle(self.now, t.remote, t.local, &t.data, &mut self.rng_b);
                    } else {
                        self.a
                            .handle(self.now, t.remote, t.local, &t.data, &mut self.rng_a);
                    }
                }
                self.collect();
            }
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now, &mut self.rng_a);
                    self.b.handle_timeout(self.now, &mut self.rng_b);
                }
                Some(_) | None => break,
            }
        }
    }

    fn status(ep: &Endpoint) -> Status {
        ep.status()[0].2.clone().expect("an SA")
    }
}

fn closed(events: &[(ConnId, Event)]) -> bool {
    events.iter().any(|(_, e)| matches!(e, Event::Closed(_)))
}

#[test]
fn an_ike_rekey_reindexes_the_sa_under_its_new_spi() {
    for rekeyed_by_a in [true, false] {
        let mut p = Pair::new(COOKIE_THRESHOLD);
        p.run(Duration::from_secs(5));
        let before = Pair::status(&p.a);
        assert_eq!(before.phase, Phase::Established);
        let old_a = p.a.sas.keys().copied().collect::<Vec<_>>();
        assert_eq!(old_a, vec![before.spi_i]);
        if rekeyed_by_a {
            p.a.rekey_ike(ConnId(0), p.now, &mut p.rng_a);
        } else {
            p.b.rekey_ike(ConnId(0), p.now, &mut p.rng_b);
        }
        // Right after the exchange, before the old SA's DELETE: the new SA
        // is indexed under its SPI and the old SPI is an alias.
        p.collect();
        let request = p.wire.clone();
        for (to_b, t) in request {
            if to_b {
                p.b.handle(p.now, t.remote, t.local, &t.data, &mut p.rng_b);
            } else {
                p.a.handle(p.now, t.remote, t.local, &t.data, &mut p.rng_a);
            }
        }
        p.wire.clear();
        p.collect();
        let (responder, old_spi) = if rekeyed_by_a {
            (&p.b, before.spi_r)
        } else {
            (&p.a, before.spi_i)
        };
        let new = Pair::status(responder);
        assert_ne!((new.spi_i, new.spi_r), (before.spi_i, before.spi_r));
        let key = responder.sas.keys().copied().collect::<Vec<_>>();
        assert_eq!(key.len(), 1);
        assert_ne!(key[0], old_spi);
        assert_eq!(responder.aliases.get(&old_spi), Some(&key[0]));
        assert_eq!(responder.conns[0].as_ref().unwrap().current, Some(key[0]));
        // The rest: the answer, the DELETE of the old SA.
        p.run(Duration::from_secs(5));
        let (sa, sb) = (Pair::status(&p.a), Pair::status(&p.b));
        assert_eq!((sa.spi_i, sa.spi_r), (sb.spi_i, sb.spi_r));
        assert_ne!(sa.spi_i, before.spi_i);
        for ep in [&p.a, &p.b] {
            assert_eq!(ep.sas.len(), 1, "one SA per side");
            assert!(ep.aliases.is_empty(), "the old SA is gone");
            let key = *ep.sas.keys().next().unwrap();
            assert_eq!(ep.conns[0].as_ref().unwrap().current, Some(key));
            assert_eq!(ep.sas[&key].1.local_spi(), key);
        }
        assert!(p
            .events_a
            .iter()
            .any(|(_, e)| matches!(e, Event::IkeRekeyed { .. })));
        // It keeps working: liveness for a minute, then a child rekey.
        p.run(Duration::from_secs(60));
        p.a.rekey_child(ConnId(0), p.now, &mut p.rng_a);
        p.run(Duration::from_secs(5));
        assert!(p
            .events_b
            .iter()
            .any(|(_, e)| matches!(e, Event::ChildRekeyed { .. })));
        assert!(!closed(&p.events_a) && !closed(&p.events_b));
        assert_eq!(p.a.counters().unknown_spi, 0);
        assert_eq!(p.b.counters().unknown_spi, 0);
    }
}

#[test]
fn a_busy_responder_demands_a_cookie_and_accepts_it() {
    // Threshold 0: every new initiator must return a cookie.
    let mut p = Pair::new(0);
    p.run(Duration::from_secs(5));
    assert_eq!(p.b.counters().cookie_challenges, 1);
    assert_eq!(Pair::status(&p.a).phase, Phase::Established);
    assert_eq!(Pair::status(&p.b).phase, Phase::Established);
    assert!(p
        .events_b
        .iter()
        .any(|(_, e)| matches!(e, Event::ChildInstalled(_))));
}

#[test]
fn a_responder_below_the_threshold_asks_for_no_cookie() {
    let mut p = Pair::new(1);
    p.run(Duration::from_secs(5));
    assert_eq!(p.b.counters().cookie_challenges, 0);
    assert_eq!(Pair::status(&p.b).phase, Phase::Established);
}

#[test]
fn a_wrong_cookie_is_challenged_again_and_keeps_no_state() {
    let mut p = Pair::new(0);
    let mut rng = TestRng(99);
    // A hand-made IKE_SA_INIT with a cookie we never issued.
    let mut sa = IkeSa::initiate(cfg(A, B), sock(A), sock(B), p.now, &mut rng);
    let Some(Output::Transmit(t)) = sa.poll_output() else {
        panic!("IKE_SA_INIT")
    };
    let mut m = Message::decode(&t.data).unwrap();
    m.payloads.insert(
        0,
        Payload::Notify(Notify::new(NotifyType::COOKIE, vec![0u8; 33])),
    );
    let data = m.encode().unwrap();
    for _ in 0..3 {
        p.b.handle(p.now, sock(B), sock(A), &data, &mut p.rng_b);
    }
    assert_eq!(p.b.counters().cookie_challenges, 3);
    assert!(p.b.sas.is_empty(), "no state for unproven initiators");
    // The challenge carries a cookie that verifies for this request only.
    let Some(EndpointOutput::Transmit(challenge)) = p.b.poll_output() else {
        panic!("a challenge")
    };
    let reply = Message::decode(&challenge.data).unwrap();
    let Payload::Notify(n) = &reply.payloads[0] else {
        panic!("N(COOKIE)")
    };
    assert_eq!(n.notify_type, NotifyType::COOKIE);
    assert_eq!(n.data.len(), 33);
    assert!(reply.header.flags.response() && reply.header.spi_r.is_zero());
}

#[test]
fn nat_keepalives_leave_the_endpoint() {
    let mut p = Pair::new(COOKIE_THRESHOLD);
    for c in [
        &mut p.a.conns[0].as_mut().unwrap().cfg,
        &mut p.b.conns[0].as_mut().unwrap().cfg,
    ] {
        c.dpd_interval = Duration::from_secs(600);
        c.dpd_timeout = Duration::from_secs(900);
    }
    p.run(Duration::from_secs(5));
    p.run(Duration::from_secs(45));
    assert_eq!(p.keepalives, 4, "two per side");
}

/// The events of `conn`.
fn of(events: &[(ConnId, Event)], conn: ConnId) -> Vec<&Event> {
    events
        .iter()
        .filter(|(c, _)| *c == conn)
        .map(|(_, e)| e)
        .collect()
}

fn child_deleted(events: &[&Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::ChildDeleted { .. }))
}

fn closed_with(events: &[&Event], reason: &CloseReason) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Closed(r) if r == reason))
}

fn established(events: &[&Event]) -> bool {
    events.iter().any(|e| matches!(e, Event::Established(_)))
}

#[test]
fn a_removed_connection_sends_delete_and_is_gone() {
    let mut p = Pair::new(COOKIE_THRESHOLD);
    p.run(Duration::from_secs(5));
    assert_eq!(Pair::status(&p.a).phase, Phase::Established);
    p.events_a.clear();
    p.events_b.clear();
    p.a.remove_connection(ConnId(0), p.now);
    // Gone at once for the operator.
    assert!(p.a.status().is_empty());
    assert_eq!(p.a.name(ConnId(0)), "?");
    // A DELETE leaves for the peer.
    p.collect();
    let delete = p.wire.iter().any(|(to_b, t)| {
        *to_b
            && Header::peek(&t.data)
                .is_ok_and(|(h, _)| h.exchange_type == ExchangeType::INFORMATIONAL)
    });
    assert!(delete, "an INFORMATIONAL (DELETE) to b: {:?}", p.wire);
    p.run(Duration::from_secs(5));
    // The closing SA's events still name the connection.
    let a = of(&p.events_a, ConnId(0));
    assert!(child_deleted(&a), "{a:?}");
    assert!(closed_with(&a, &CloseReason::DeletedLocally), "{a:?}");
    let b = of(&p.events_b, ConnId(0));
    assert!(child_deleted(&b), "{b:?}");
    assert!(closed_with(&b, &CloseReason::DeletedByPeer), "{b:?}");
    assert!(p.a.sas.is_empty() && p.a.aliases.is_empty());
    assert!(p.b.sas.is_empty());
    // Datagrams for its SA are now unknown (b's IKE_SA_INIT response, again).
    let (_, old) = p.sent.iter().find(|(to_b, _)| !*to_b).unwrap().clone();
    let unknown = p.a.counters().unknown_spi;
    p.a.handle(p.now, old.remote, old.local, &old.data, &mut p.rng_a);
    assert_eq!(p.a.counters().unknown_spi, unknown + 1);
    assert!(p.a.poll_output().is_none());
}

#[test]
fn a_removed_initiator_is_never_restarted() {
    let mut p = Pair::new(COOKIE_THRESHOLD);
    p.run(Duration::from_secs(5));
    p.a.remove_connection(ConnId(0), p.now);
    p.run(Duration::from_secs(5));
    let sent = p.sent.len();
    p.events_a.clear();
    p.run(Duration::from_secs(300));
    assert_eq!(p.a.poll_timeout(), None, "no restart scheduled");
    assert_eq!(p.sent.len(), sent, "nothing more sent");
    assert!(p.events_a.is_empty(), "{:?}", p.events_a);
    assert!(p.a.sas.is_empty());
    // Removing it again, or an unknown connection, changes nothing.
    p.a.remove_connection(ConnId(0), p.now);
    p.a.remove_connection(ConnId(7), p.now);
    assert!(p.a.poll_output().is_none());
}

#[test]
fn a_half_open_sa_of_a_removed_connection_closes_at_once() {
    let mut p = Pair::new(COOKIE_THRESHOLD);
    p.a.handle_timeout(p.now, &mut p.rng_a);
    assert_eq!(p.a.sas.len(), 1, "IKE_SA_INIT sent");
    p.a.remove_connection(ConnId(0), p.now);
    assert!(p.a.sas.is_empty());
    assert_eq!(p.a.poll_timeout(), None);
    p.collect();
    let a = of(&p.events_a, ConnId(0));
    assert!(closed_with(&a, &CloseReason::DeletedLocally), "{a:?}");
}

#[test]
fn a_responder_does_not_match_a_removed_connection() {
    let mut p = Pair::new(COOKIE_THRESHOLD);
    p.run(Duration::from_secs(5));
    p.events_a.clear();
    p.events_b.clear();
    p.b.remove_connection(ConnId(0), p.now);
    assert!(p.b.status().is_empty());
    // a learns of the DELETE and keeps trying to come back; b, having no
    // connection for it any more, refuses every IKE_SA_INIT.
    p.run(Duration::from_secs(60));
    let a = of(&p.events_a, ConnId(0));
    assert!(closed_with(&a, &CloseReason::DeletedByPeer), "{a:?}");
    assert!(!established(&a), "{a:?}");
    let b = of(&p.events_b, ConnId(0));
    assert!(child_deleted(&b), "{b:?}");
    assert!(closed_with(&b, &CloseReason::DeletedLocally), "{b:?}");
    assert!(
        p.b.sas.is_empty(),
        "no responder SA for a removed connection"
    );
    assert!(p.b.counters().unknown_peer >= 2, "{:?}", p.b.counters());
    assert_eq!(p.b.counters().cookie_challenges, 0);
}

#[test]
fn a_connection_added_after_a_removal_gets_a_fresh_id_and_works() {
    let mut p = Pair::new(COOKIE_THRESHOLD);
    p.run(Duration::from_secs(5));
    p.a.remove_connection(ConnId(0), p.now);
    p.run(Duration::from_secs(5));
    p.b.remove_connection(ConnId(0), p.now);
    p.events_a.clear();
    p.events_b.clear();
    // Both sides reload: the ids are new.
    let id_b =
        p.b.add_connection("to-a-again", cfg(B, A), sock(B), sock(A), false, p.now);
    let id_a =
        p.a.add_connection("to-b-again", cfg(A, B), sock(A), sock(B), true, p.now);
    assert_eq!((id_a, id_b), (ConnId(1), ConnId(1)));
    p.run(Duration::from_secs(5));
    for (ep, name) in [(&p.a, "to-b-again"), (&p.b, "to-a-again")] {
        let status = ep.status();
        assert_eq!(status.len(), 1);
        let (id, n, sa) = &status[0];
        assert_eq!((*id, *n), (ConnId(1), name));
        assert_eq!(sa.as_ref().map(|s| s.phase), Some(Phase::Established));
        assert_eq!(ep.name(ConnId(1)), name);
        assert_eq!(ep.name(ConnId(0)), "?");
    }
    for events in [&p.events_a, &p.events_b] {
        assert!(events.iter().all(|(c, _)| *c == ConnId(1)), "{events:?}");
        assert!(events
            .iter()
            .any(|(_, e)| matches!(e, Event::ChildInstalled(_))));
    }
    // It keeps working (liveness, a child rekey) under its new id.
    p.run(Duration::from_secs(60));
    p.a.rekey_child(ConnId(1), p.now, &mut p.rng_a);
    p.run(Duration::from_secs(5));
    assert!(p
        .events_b
        .iter()
        .any(|(c, e)| *c == ConnId(1) && matches!(e, Event::ChildRekeyed { .. })));
    assert!(!closed(&p.events_a) && !closed(&p.events_b));
    // Ids are never reused.
    let next =
        p.a.add_connection("third", cfg(A, B), sock(A), sock(B), false, p.now);
    assert_eq!(next, ConnId(2));
}

/// A peer that restarted (its state lost) sets up a new IKE SA with
/// INITIAL_CONTACT: the old SA ends at once, without a DELETE the peer
/// could not answer (RFC 7296 §2.4), and its child goes with it.
#[test]
fn initial_contact_from_a_restarted_peer_ends_the_old_sa_at_once() {
    let mut p = Pair::new(COOKIE_THRESHOLD);
    p.run(Duration::from_secs(5));
    let before = Pair::status(&p.b);
    // A moment later (before any liveness check is due) a restarts: a
    // fresh endpoint on the same addresses.
    p.now += Duration::from_secs(5);
    p.a = Endpoint::new();
    p.a.add_connection("to-b", cfg(A, B), sock(A), sock(B), true, p.now);
    p.events_b.clear();
    let sent = p.sent.len();
    p.run(Duration::from_secs(1));
    let after = Pair::status(&p.b);
    assert_eq!(after.phase, Phase::Established);
    assert_ne!(after.spi_i, before.spi_i);
    assert_eq!(p.b.sas.len(), 1, "the old SA is gone at once");
    let to_a = p.sent[sent..].iter().filter(|(to_b, _)| !to_b).count();
    assert_eq!(
        to_a, 2,
        "b answered IKE_SA_INIT and IKE_AUTH, and sent no DELETE"
    );
    let superseded = p
        .events_b
        .iter()
        .any(|(_, e)| matches!(e, Event::Closed(CloseReason::Superseded)));
    assert!(superseded, "{:?}", p.events_b);
    let deleted = p
        .events_b
        .iter()
        .filter(|(_, e)| matches!(e, Event::ChildDeleted { .. }))
        .count();
    assert_eq!(deleted, 1, "the old child went with it");
}

/// Both ends initiating at the same moment, in lock step: each ends up
/// with the other's SA as its newest and deletes the one the other kept.
/// The restarts are jittered, so the next attempt is not in lock step and
/// both ends settle on one SA.
#[test]
fn both_ends_initiating_at_once_settle_on_one_sa() {
    let mut p = Pair::new(COOKIE_THRESHOLD);
    p.b = Endpoint::new();
    p.b.add_connection("to-a", cfg(B, A), sock(B), sock(A), true, p.now);
    p.run(Duration::from_secs(60));
    let (sa, sb) = (Pair::status(&p.a), Pair::status(&p.b));
    assert_eq!(sa.phase, Phase::Established);
    assert_eq!(
        (sa.spi_i, sa.spi_r),
        (sb.spi_i, sb.spi_r),
        "the same SA on both ends"
    );
    assert_eq!(p.a.sas.len(), 1, "{:?}", p.a.sas.keys());
    assert_eq!(p.b.sas.len(), 1, "{:?}", p.b.sas.keys());
}
