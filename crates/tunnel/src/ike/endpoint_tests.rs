//! Two endpoints talking in memory: re-indexing after an IKE rekey, the
//! responder's COOKIE, NAT keepalives on the way out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::*;
use crate::ike::proposal::{parse_esp, parse_ike};
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
    events_a: Vec<Event>,
    events_b: Vec<Event>,
    keepalives: usize,
    /// Datagrams in flight: (to b?, transmit).
    wire: Vec<(bool, Transmit)>,
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
        }
    }

    fn collect(&mut self) {
        for (to_b, ep, events) in [
            (true, &mut self.a, &mut self.events_a),
            (false, &mut self.b, &mut self.events_b),
        ] {
            while let Some(o) = ep.poll_output() {
                match o {
                    EndpointOutput::Transmit(t) => self.wire.push((to_b, t)),
                    EndpointOutput::NatKeepalive { .. } => self.keepalives += 1,
                    EndpointOutput::Event(_, e) => events.push(e),
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

fn closed(events: &[Event]) -> bool {
    events.iter().any(|e| matches!(e, Event::Closed(_)))
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
        assert_eq!(responder.conns[0].current, Some(key[0]));
        // The rest: the answer, the DELETE of the old SA.
        p.run(Duration::from_secs(5));
        let (sa, sb) = (Pair::status(&p.a), Pair::status(&p.b));
        assert_eq!((sa.spi_i, sa.spi_r), (sb.spi_i, sb.spi_r));
        assert_ne!(sa.spi_i, before.spi_i);
        for ep in [&p.a, &p.b] {
            assert_eq!(ep.sas.len(), 1, "one SA per side");
            assert!(ep.aliases.is_empty(), "the old SA is gone");
            let key = *ep.sas.keys().next().unwrap();
            assert_eq!(ep.conns[0].current, Some(key));
            assert_eq!(ep.sas[&key].1.local_spi(), key);
        }
        assert!(p
            .events_a
            .iter()
            .any(|e| matches!(e, Event::IkeRekeyed { .. })));
        // It keeps working: liveness for a minute, then a child rekey.
        p.run(Duration::from_secs(60));
        p.a.rekey_child(ConnId(0), p.now, &mut p.rng_a);
        p.run(Duration::from_secs(5));
        assert!(p
            .events_b
            .iter()
            .any(|e| matches!(e, Event::ChildRekeyed { .. })));
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
        .any(|e| matches!(e, Event::ChildInstalled(_))));
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
    for c in [&mut p.a.conns[0].cfg, &mut p.b.conns[0].cfg] {
        c.dpd_interval = Duration::from_secs(600);
        c.dpd_timeout = Duration::from_secs(900);
    }
    p.run(Duration::from_secs(5));
    p.run(Duration::from_secs(45));
    assert_eq!(p.keepalives, 4, "two per side");
}
