//! Two IKE cores talking in memory: simulated clock, loss, duplication.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::*;
use crate::esp::sa::{InboundSa, OutboundSa, NEXT_IPV4};
use crate::ike::proposal::{parse_esp, parse_ike, DhGroup, Encr};
use crate::ike::wire::{
    Flags, Identification, Message, Notify, NotifyType, Payload, ProtocolId, Spi,
};

/// A deterministic RNG: SHA-256 in counter mode over a seed.
struct TestRng {
    seed: u64,
    counter: u64,
}

impl TestRng {
    fn new(seed: u64) -> TestRng {
        TestRng { seed, counter: 0 }
    }
}

impl Random for TestRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(32) {
            self.counter += 1;
            let mut input = self.seed.to_be_bytes().to_vec();
            input.extend_from_slice(&self.counter.to_be_bytes());
            let d = ring::digest::digest(&ring::digest::SHA256, &input);
            chunk.copy_from_slice(&d.as_ref()[..chunk.len()]);
        }
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const I_ADDR: &str = "192.0.2.1:500";
const R_ADDR: &str = "198.51.100.1:500";

fn config(ike: &str, esp: &str, psk: &str, local: &str, remote: &str) -> SaConfig {
    SaConfig {
        local_id: Identification::ipv4(local.parse().unwrap()),
        remote_id: Identification::ipv4(remote.parse().unwrap()),
        psk: Zeroizing::new(psk.as_bytes().to_vec()),
        ike_proposals: ike.split(',').map(|p| parse_ike(p).unwrap()).collect(),
        esp_proposals: esp.split(',').map(|p| parse_esp(p).unwrap()).collect(),
        dpd_interval: Duration::from_secs(10),
        dpd_timeout: Duration::from_secs(45),
        retransmit_timeout: Duration::from_secs(1),
        retransmit_tries: 5,
        force_encap: true,
        ike_lifetime: Duration::from_secs(24 * 3600),
        child_lifetime: Duration::from_secs(24 * 3600),
        child_lifetime_bytes: 1 << 40,
        child_lifetime_packets: 0,
    }
}

fn pair_configs(ike: &str, esp: &str) -> (SaConfig, SaConfig) {
    (
        config(
            ike,
            esp,
            "a shared secret of decent length",
            "192.0.2.1",
            "198.51.100.1",
        ),
        config(
            ike,
            esp,
            "a shared secret of decent length",
            "198.51.100.1",
            "192.0.2.1",
        ),
    )
}

/// The two ends, the wire between them and the clock.
struct Net {
    now: Instant,
    i: IkeSa,
    r: Option<IkeSa>,
    r_cfg: SaConfig,
    rng_i: TestRng,
    rng_r: TestRng,
    /// Datagrams in flight: (to responder?, transmit).
    wire: Vec<(bool, Transmit)>,
    events_i: Vec<Event>,
    events_r: Vec<Event>,
    /// Every datagram that was sent, in order: (from initiator?, bytes).
    log: Vec<(bool, Vec<u8>)>,
    /// NAT keepalives sent: (from initiator?, when).
    keepalives: Vec<(bool, Instant)>,
    /// The addresses of every datagram sent, as its sender put them:
    /// (from initiator?, local, remote).
    addrs: Vec<(bool, SocketAddr, SocketAddr)>,
    /// A NAT in front of the initiator (it rewrites the source of what
    /// the initiator sends), if any.
    i_nat: Option<Nat>,
    /// A NAT in front of the responder (port forwarding: it rewrites the
    /// destination of what the initiator sends), if any.
    r_nat: Option<Nat>,
}

/// A NAT: address and port mappings between an inside and an outside
/// address. What leaves from an unmapped inside address gets a new port
/// on `public`; what arrives for an unmapped outside address is dropped.
struct Nat {
    public: IpAddr,
    /// (inside, outside).
    mappings: Vec<(SocketAddr, SocketAddr)>,
}

impl Nat {
    fn new(public: &str) -> Nat {
        Nat {
            public: public.parse().unwrap(),
            mappings: Vec::new(),
        }
    }

    /// Static mappings (port forwarding): (inside, outside).
    fn forwarding(public: &str, mappings: &[(&str, &str)]) -> Nat {
        let mut nat = Nat::new(public);
        nat.mappings = mappings.iter().map(|(i, o)| (addr(i), addr(o))).collect();
        nat
    }

    /// The outside address of what leaves from `inside`.
    fn outbound(&mut self, inside: SocketAddr) -> SocketAddr {
        if let Some((_, outside)) = self.mappings.iter().find(|(i, _)| *i == inside) {
            return *outside;
        }
        let port = 40500 + u16::try_from(self.mappings.len()).unwrap();
        let outside = SocketAddr::new(self.public, port);
        self.mappings.push((inside, outside));
        outside
    }

    /// The inside address of what arrives for `outside`, if mapped.
    fn inbound(&self, outside: SocketAddr) -> Option<SocketAddr> {
        self.mappings
            .iter()
            .find(|(_, o)| *o == outside)
            .map(|(i, _)| *i)
    }
}

fn outbound(nat: &mut Option<Nat>, inside: SocketAddr) -> SocketAddr {
    nat.as_mut().map_or(inside, |n| n.outbound(inside))
}

fn inbound(nat: &Option<Nat>, outside: SocketAddr) -> Option<SocketAddr> {
    nat.as_ref().map_or(Some(outside), |n| n.inbound(outside))
}

impl Net {
    fn new(i_cfg: SaConfig, r_cfg: SaConfig) -> Net {
        Net::with_seeds(i_cfg, r_cfg, 1, 2)
    }

    fn with_seeds(i_cfg: SaConfig, r_cfg: SaConfig, seed_i: u64, seed_r: u64) -> Net {
        let now = crate::sim_clock::origin();
        let mut rng_i = TestRng::new(seed_i);
        let i = IkeSa::initiate(i_cfg, addr(I_ADDR), addr(R_ADDR), now, &mut rng_i);
        let mut net = Net {
            now,
            i,
            r: None,
            r_cfg,
            rng_i,
            rng_r: TestRng::new(seed_r),
            wire: Vec::new(),
            events_i: Vec::new(),
            events_r: Vec::new(),
            log: Vec::new(),
            keepalives: Vec::new(),
            addrs: Vec::new(),
            i_nat: None,
            r_nat: None,
        };
        net.collect();
        net
    }

    /// Moves outputs of both ends onto the wire or into the event lists.
    fn collect(&mut self) {
        while let Some(o) = self.i.poll_output() {
            match o {
                Output::Transmit(t) => {
                    self.log.push((true, t.data.clone()));
                    self.addrs.push((true, t.local, t.remote));
                    self.wire.push((true, t));
                }
                Output::NatKeepalive { .. } => self.keepalives.push((true, self.now)),
                Output::Event(e) => self.events_i.push(e),
            }
        }
        if let Some(r) = &mut self.r {
            while let Some(o) = r.poll_output() {
                match o {
                    Output::Transmit(t) => {
                        self.log.push((false, t.data.clone()));
                        self.addrs.push((false, t.local, t.remote));
                        self.wire.push((false, t));
                    }
                    Output::NatKeepalive { .. } => self.keepalives.push((false, self.now)),
                    Output::Event(e) => self.events_r.push(e),
                }
            }
        }
    }

    /// Delivers everything in flight, except what `drop` says to lose.
    fn deliver(&mut self, mut drop: impl FnMut(bool, &[u8]) -> bool) {
        let batch = std::mem::take(&mut self.wire);
        for (to_r, t) in batch {
            if drop(to_r, &t.data) {
                continue;
            }
            // Through the NATs, if any: the source and destination as the
            // receiver sees them. A NAT drops what it has no mapping for.
            let (from, to) = if to_r {
                (
                    outbound(&mut self.i_nat, t.local),
                    inbound(&self.r_nat, t.remote),
                )
            } else {
                (
                    outbound(&mut self.r_nat, t.local),
                    inbound(&self.i_nat, t.remote),
                )
            };
            let Some(to) = to else {
                continue;
            };
            if to_r {
                // Like an endpoint: a closed responder keeps nothing, so a
                // new IKE_SA_INIT request creates a new one.
                let is_init = Header::peek(&t.data).is_ok_and(|(h, _)| {
                    h.exchange_type == ExchangeType::IKE_SA_INIT && h.spi_r.is_zero()
                });
                match &mut self.r {
                    Some(r) if !(r.is_closed() && is_init) => {
                        r.handle(self.now, from, &t.data, &mut self.rng_r)
                    }
                    Some(_) | None => {
                        self.r = Some(IkeSa::respond(
                            self.r_cfg.clone(),
                            to,
                            from,
                            &t.data,
                            self.now,
                            &mut self.rng_r,
                        ))
                    }
                }
            } else {
                self.i.handle(self.now, from, &t.data, &mut self.rng_i);
            }
        }
        self.collect();
    }

    /// Runs until nothing is in flight, advancing time to each timeout,
    /// for at most `limit` of simulated time.
    fn run(&mut self, limit: Duration, mut drop: impl FnMut(bool, &[u8]) -> bool) {
        let end = self.now + limit;
        loop {
            while !self.wire.is_empty() {
                self.deliver(&mut drop);
            }
            let next = [
                self.i.poll_timeout(),
                self.r.as_ref().and_then(IkeSa::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.i.handle_timeout(self.now, &mut self.rng_i);
                    if let Some(r) = &mut self.r {
                        r.handle_timeout(self.now, &mut self.rng_r);
                    }
                    self.collect();
                }
                Some(_) | None => break,
            }
        }
    }

    fn r(&self) -> &IkeSa {
        self.r.as_ref().expect("responder exists")
    }
}

fn child(events: &[Event]) -> &ChildSa {
    events
        .iter()
        .find_map(|e| {
            if let Event::ChildInstalled(c) = e {
                Some(c)
            } else {
                None
            }
        })
        .expect("a child SA was installed")
}

fn closed(events: &[Event]) -> Option<&CloseReason> {
    events.iter().find_map(|e| {
        if let Event::Closed(r) = e {
            Some(r)
        } else {
            None
        }
    })
}

fn never(_: bool, _: &[u8]) -> bool {
    false
}

/// Both ends' child SAs carry packets to each other with the derived keys.
fn assert_esp_works(i: &ChildSa, r: &ChildSa) {
    assert_eq!(i.spi_out, r.spi_in);
    assert_eq!(i.spi_in, r.spi_out);
    assert_eq!(i.algorithms, r.algorithms);
    for (from, to) in [(i, r), (r, i)] {
        let tx = OutboundSa::new(
            from.spi_out,
            from.algorithms.esn == crate::ike::proposal::Esn::On,
            &from.keys_out,
        )
        .unwrap();
        let mut rx = InboundSa::new(
            to.spi_in,
            to.algorithms.esn == crate::ike::proposal::Esn::On,
            &to.keys_in,
        )
        .unwrap();
        let mut buf = [0u8; 256];
        let n = tx
            .seal(b"an inner IPv4 packet", NEXT_IPV4, &mut buf)
            .unwrap();
        let opened = rx.open(&mut buf[..n]).unwrap();
        assert_eq!(&buf[opened.inner], b"an inner IPv4 packet");
    }
}

fn establish(ike: &str, esp: &str) -> Net {
    let (ic, rc) = pair_configs(ike, esp);
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    assert_established(&net);
    net
}

fn assert_established(net: &Net) {
    assert_eq!(
        net.i.phase(),
        Phase::Established,
        "initiator: {:?}",
        closed(&net.events_i)
    );
    assert_eq!(
        net.r().phase(),
        Phase::Established,
        "responder: {:?}",
        closed(&net.events_r)
    );
}

#[test]
fn setup_with_every_required_suite() {
    for (ike, esp, encr, group) in [
        (
            "aes256gcm16-prfsha256-x25519",
            "aes256gcm16",
            Encr::AesGcm16 { key_bits: 256 },
            DhGroup::Curve25519,
        ),
        (
            "aes128gcm16-prfsha256-ecp256",
            "aes128gcm16",
            Encr::AesGcm16 { key_bits: 128 },
            DhGroup::Ecp256,
        ),
        (
            "aes256-sha256-modp2048",
            "aes256-sha256",
            Encr::AesCbc { key_bits: 256 },
            DhGroup::Modp2048,
        ),
        (
            "aes256-sha384-ecp384",
            "aes256-sha512-ecp384-esn",
            Encr::AesCbc { key_bits: 256 },
            DhGroup::Ecp384,
        ),
    ] {
        let net = establish(ike, esp);
        let (i, r) = (child(&net.events_i), child(&net.events_r));
        assert_esp_works(i, r);
        assert_eq!(i.algorithms.encr, encr, "{esp}");
        assert_eq!(net.i.status().algorithms.unwrap().dh, group);
        assert!(i.udp_encap && r.udp_encap, "ESP must run in UDP");
        assert!(net.i.status().nat, "forced NAT-T floats to 4500");
        assert_eq!(net.i.status().local.port(), NATT_PORT);
        // IKE_AUTH went to port 4500.
        assert!(net.log.len() >= 4);
    }
}

#[test]
fn wrong_psk_is_authentication_failed_on_both_sides() {
    let (ic, mut rc) = pair_configs("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    rc.psk = Zeroizing::new(b"another secret of decent length!".to_vec());
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    assert_eq!(
        closed(&net.events_r),
        Some(&CloseReason::AuthenticationFailed { by_peer: false })
    );
    assert_eq!(
        closed(&net.events_i),
        Some(&CloseReason::AuthenticationFailed { by_peer: true })
    );
    assert!(!net
        .events_i
        .iter()
        .any(|e| matches!(e, Event::ChildInstalled(_))));
    let text = closed(&net.events_r).unwrap().to_string();
    assert!(
        text.contains("AUTHENTICATION_FAILED") && text.contains("PSK"),
        "{text}"
    );
}

#[test]
fn no_common_ike_proposal_names_both_offers() {
    let (ic, _) = pair_configs("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let (_, rc) = pair_configs("aes128-sha256-modp2048", "aes256gcm16");
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    let Some(CloseReason::NoProposalChosen {
        sa,
        ours,
        theirs,
        by_peer: false,
    }) = closed(&net.events_r)
    else {
        panic!("responder: {:?}", closed(&net.events_r));
    };
    assert_eq!(
        (*sa, ours.as_str(), theirs.as_str()),
        (
            "IKE",
            "aes128-prfsha256-sha256-modp2048",
            "aes256gcm16-prfsha256-x25519"
        )
    );
    assert!(matches!(
        closed(&net.events_i),
        Some(CloseReason::NoProposalChosen { by_peer: true, .. })
    ));
    let text = closed(&net.events_r).unwrap().to_string();
    assert!(
        text.contains("we offer [aes128") && text.contains("peer offered [aes256gcm16"),
        "{text}"
    );
}

#[test]
fn no_common_esp_proposal_is_reported() {
    let (ic, _) = pair_configs("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let (_, rc) = pair_configs("aes256gcm16-prfsha256-x25519", "aes128-sha256");
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    assert!(matches!(
        closed(&net.events_r),
        Some(CloseReason::NoProposalChosen {
            sa: "ESP",
            by_peer: false,
            ..
        })
    ));
    assert!(matches!(
        closed(&net.events_i),
        Some(CloseReason::NoProposalChosen {
            sa: "ESP",
            by_peer: true,
            ..
        })
    ));
}

#[test]
fn invalid_ke_payload_retries_with_the_group_asked_for() {
    let (ic, _) = pair_configs("aes256gcm16-prfsha256-x25519-ecp256", "aes256gcm16");
    let (_, rc) = pair_configs("aes256gcm16-prfsha256-ecp256", "aes256gcm16");
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    assert_eq!(
        net.i.phase(),
        Phase::Established,
        "{:?}",
        closed(&net.events_i)
    );
    assert_eq!(net.i.status().algorithms.unwrap().dh, DhGroup::Ecp256);
    // The first responder refused and kept no state; a second one answered.
    let inits = net
        .log
        .iter()
        .filter(|(from_i, d)| *from_i && Message::decode(d).is_ok())
        .count();
    assert!(inits >= 2);
}

#[test]
fn cookie_challenge_is_answered_with_the_cookie() {
    let (ic, rc) = pair_configs("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let mut net = Net::new(ic, rc);
    // Play a busy responder: answer the first IKE_SA_INIT with a COOKIE.
    let (_, first) = net.wire.remove(0);
    let request = Message::decode(&first.data).unwrap();
    let cookie = Message {
        header: Header {
            flags: Flags::RESPONSE,
            ..request.header
        },
        payloads: vec![Payload::Notify(Notify::new(
            NotifyType::COOKIE,
            b"a cookie".to_vec(),
        ))],
    };
    net.i.handle(
        net.now,
        addr(R_ADDR),
        &cookie.encode().unwrap(),
        &mut net.rng_i,
    );
    net.collect();
    let retry = Message::decode(&net.wire[0].1.data).unwrap();
    let Payload::Notify(n) = &retry.payloads[0] else {
        panic!("COOKIE must come first")
    };
    assert_eq!(
        (n.notify_type, n.data.as_slice()),
        (NotifyType::COOKIE, &b"a cookie"[..])
    );
    net.run(Duration::from_secs(5), never);
    assert_eq!(net.i.phase(), Phase::Established);
}

#[test]
fn lost_auth_request_is_retransmitted() {
    let (ic, rc) = pair_configs("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let mut net = Net::new(ic, rc);
    let mut dropped = 0;
    net.run(Duration::from_secs(30), |to_r, d| {
        let auth = Header::peek(d).is_ok_and(|(h, _)| h.exchange_type == ExchangeType::IKE_AUTH);
        if to_r && auth && dropped < 2 {
            dropped += 1;
            return true;
        }
        false
    });
    assert_eq!(dropped, 2);
    assert_eq!(net.i.phase(), Phase::Established);
    assert_eq!(net.r().phase(), Phase::Established);
}

#[test]
fn lost_auth_response_is_resent_byte_for_byte() {
    let (ic, rc) = pair_configs("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let mut net = Net::new(ic, rc);
    let mut dropped = None;
    net.run(Duration::from_secs(30), |to_r, d| {
        let auth = Header::peek(d).is_ok_and(|(h, _)| h.exchange_type == ExchangeType::IKE_AUTH);
        if !to_r && auth && dropped.is_none() {
            dropped = Some(d.to_vec());
            return true;
        }
        false
    });
    assert_eq!(net.i.phase(), Phase::Established);
    let responses: Vec<&Vec<u8>> = net
        .log
        .iter()
        .filter(|(from_i, d)| {
            !from_i && Header::peek(d).is_ok_and(|(h, _)| h.exchange_type == ExchangeType::IKE_AUTH)
        })
        .map(|(_, d)| d)
        .collect();
    assert_eq!(responses.len(), 2, "one answer, one resend");
    assert_eq!(
        responses[0], responses[1],
        "the resend is the cached response"
    );
    assert_eq!(Some(responses[0].clone()), dropped);
    // The responder processed IKE_AUTH once: one child.
    assert_eq!(
        net.events_r
            .iter()
            .filter(|e| matches!(e, Event::ChildInstalled(_)))
            .count(),
        1
    );
}

#[test]
fn unanswered_setup_times_out() {
    let (ic, rc) = pair_configs("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(600), |to_r, _| to_r);
    assert_eq!(closed(&net.events_i), Some(&CloseReason::Timeout));
    let sent = net.log.iter().filter(|(from_i, _)| *from_i).count();
    assert_eq!(sent, 6, "the request and five retransmissions");
}

#[test]
fn liveness_checks_keep_a_quiet_sa_up() {
    let mut net = establish("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    net.run(Duration::from_secs(120), never);
    assert_eq!(net.i.phase(), Phase::Established);
    assert_eq!(net.r().phase(), Phase::Established);
    let informational = net
        .log
        .iter()
        .filter(|(_, d)| {
            Header::peek(d).is_ok_and(|(h, _)| h.exchange_type == ExchangeType::INFORMATIONAL)
        })
        .count();
    assert!(
        informational >= 2,
        "liveness checks were exchanged: {informational}"
    );
}

#[test]
fn a_silent_peer_is_declared_dead() {
    let mut net = establish("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let established = net.now;
    net.run(Duration::from_secs(120), |_, _| true);
    assert_eq!(closed(&net.events_i), Some(&CloseReason::DeadPeer));
    assert!(net
        .events_i
        .iter()
        .any(|e| matches!(e, Event::ChildDeleted { .. })));
    let _ = established;
}

#[test]
fn a_liveness_check_on_demand_goes_out_at_once_and_ends_a_silent_peer() {
    let mut net = establish("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let informational = |net: &Net| {
        net.log
            .iter()
            .filter(|(from_i, d)| {
                *from_i
                    && Header::peek(d)
                        .is_ok_and(|(h, _)| h.exchange_type == ExchangeType::INFORMATIONAL)
            })
            .count()
    };
    // Answered: the SA stays.
    net.i.check_liveness(net.now);
    net.collect();
    assert_eq!(
        informational(&net),
        1,
        "sent at once, not after dpd_interval"
    );
    net.run(Duration::from_secs(1), never);
    assert_eq!(net.i.phase(), Phase::Established);
    // A second call while one is in flight adds nothing.
    net.i.check_liveness(net.now);
    net.i.check_liveness(net.now);
    net.collect();
    assert_eq!(informational(&net), 2);
    net.run(Duration::from_secs(1), never);
    // Unanswered: dead within dpd_timeout (45 s). A check left to
    // dpd_interval (10 s) would only end it after 55 s.
    net.i.check_liveness(net.now);
    net.collect();
    net.run(Duration::from_secs(46), |to_r, _| to_r);
    assert_eq!(closed(&net.events_i), Some(&CloseReason::DeadPeer));
}

#[test]
fn esp_traffic_counts_as_liveness() {
    let mut net = establish("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let start = net.log.len();
    for _ in 0..10 {
        net.now += Duration::from_secs(5);
        net.i.note_inbound_traffic(net.now);
        if let Some(r) = &mut net.r {
            r.note_inbound_traffic(net.now);
        }
        net.run(Duration::from_secs(5), never);
    }
    assert_eq!(net.log.len(), start, "no DPD while ESP flows");
}

#[test]
fn delete_ends_both_sides() {
    let mut net = establish("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    net.i.close(net.now);
    net.collect();
    net.run(Duration::from_secs(5), never);
    assert_eq!(closed(&net.events_i), Some(&CloseReason::DeletedLocally));
    assert_eq!(closed(&net.events_r), Some(&CloseReason::DeletedByPeer));
    assert!(net
        .events_r
        .iter()
        .any(|e| matches!(e, Event::ChildDeleted { .. })));
}

#[test]
fn garbage_and_duplicates_change_nothing() {
    let mut net = establish("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let before = net.log.len();
    let real = net
        .log
        .iter()
        .find(|(from_i, _)| !from_i)
        .unwrap()
        .1
        .clone();
    let mut rng = TestRng::new(9);
    for len in 0..200 {
        let mut junk = vec![0u8; len];
        rng.fill(&mut junk);
        net.i.handle(net.now, addr(R_ADDR), &junk, &mut net.rng_i);
        // Junk with our SPIs in front.
        let mut framed = real.clone();
        framed.truncate(len.min(real.len()));
        framed.extend_from_slice(&junk);
        net.i.handle(net.now, addr(R_ADDR), &framed, &mut net.rng_i);
    }
    // An old response replayed.
    net.i.handle(net.now, addr(R_ADDR), &real, &mut net.rng_i);
    net.collect();
    assert_eq!(net.log.len(), before, "nothing answered");
    assert_eq!(net.i.phase(), Phase::Established);
    assert!(closed(&net.events_i).is_none());
}

/// RFC 7296 §2.2: a retransmission of the last request gets the cached
/// response, byte for byte, and changes nothing; an older request replayed
/// (or arriving late, out of order) is dropped without an answer.
#[test]
fn a_replayed_last_request_gets_the_cached_response_and_older_ones_none() {
    let mut net = establish("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let mut requests = Vec::new();
    let mut responses = Vec::new();
    for _ in 0..3 {
        let start = net.log.len();
        net.i.check_liveness(net.now);
        net.collect();
        net.run(Duration::from_secs(1), never);
        let new = &net.log[start..];
        requests.push(new.iter().find(|(from_i, _)| *from_i).unwrap().1.clone());
        responses.push(new.iter().find(|(from_i, _)| !from_i).unwrap().1.clone());
    }
    let answers = |net: &mut Net, request: &[u8]| {
        let start = net.log.len();
        let r = net.r.as_mut().unwrap();
        r.handle(net.now, addr(I_ADDR), request, &mut net.rng_r);
        net.collect();
        net.log[start..]
            .iter()
            .map(|(_, d)| d.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        answers(&mut net, &requests[2]),
        vec![responses[2].clone()],
        "the last request again: its cached response"
    );
    assert!(answers(&mut net, &requests[0]).is_empty(), "an old request");
    assert!(answers(&mut net, &requests[1]).is_empty(), "an old request");
    // Nothing changed: the next exchange still works, both stay up.
    net.i.check_liveness(net.now);
    net.collect();
    net.run(Duration::from_secs(1), never);
    assert_eq!(net.i.phase(), Phase::Established);
    assert_eq!(net.r().phase(), Phase::Established);
    assert!(closed(&net.events_i).is_none() && closed(&net.events_r).is_none());
}

// ---------------------------------------------------------------------------
// Rekeying (CREATE_CHILD_SA), lifetimes, NAT keepalives.

const IKE: &str = "aes256gcm16-prfsha256-x25519";

/// What a datapath fed with one side's events holds: every inbound SA
/// installed and not yet deleted, and the outbound SA in use.
#[derive(Debug, Default)]
struct Datapath<'a> {
    inbound: Vec<&'a ChildSa>,
    outbound: Option<&'a ChildSa>,
}

fn datapath(events: &[Event]) -> Datapath<'_> {
    let mut d = Datapath::default();
    for e in events {
        if let Event::ChildInstalled(c) = e {
            d.inbound.push(c);
            d.outbound = Some(c);
        } else if let Event::ChildRekeyed {
            old_spi_in, new, ..
        } = e
        {
            assert!(
                d.inbound.iter().any(|c| c.spi_in == *old_spi_in),
                "a rekey replaces an installed child"
            );
            d.inbound.push(new);
            d.outbound = Some(new);
        } else if let Event::ChildDeleted { spi_in, spi_out } = e {
            let before = d.inbound.len();
            d.inbound.retain(|c| c.spi_in != *spi_in);
            assert_eq!(d.inbound.len() + 1, before, "deleted {spi_in:08x} once");
            if d.outbound.is_some_and(|c| c.spi_out == *spi_out) {
                d.outbound = None;
            }
        }
    }
    d
}

/// Both datapaths hold exactly one child, the same pair, and it carries
/// ESP both ways. Returns the initiator's and the responder's copy.
fn one_live_child(net: &Net) -> (&ChildSa, &ChildSa) {
    let (di, dr) = (datapath(&net.events_i), datapath(&net.events_r));
    assert_eq!(di.inbound.len(), 1, "initiator inbound: {:?}", di.inbound);
    assert_eq!(dr.inbound.len(), 1, "responder inbound: {:?}", dr.inbound);
    let (i, r) = (di.inbound[0], dr.inbound[0]);
    assert_eq!(di.outbound.map(|c| c.spi_out), Some(i.spi_out));
    assert_eq!(dr.outbound.map(|c| c.spi_out), Some(r.spi_out));
    assert_esp_works(i, r);
    let si = net.i.status().child.unwrap();
    let sr = net.r().status().child.unwrap();
    assert_eq!(
        (si.0, si.1),
        (i.spi_in, i.spi_out),
        "status follows the child"
    );
    assert_eq!((sr.0, sr.1), (r.spi_in, r.spi_out));
    (i, r)
}

fn count(events: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| f(e)).count()
}

fn rekeyed(e: &Event) -> bool {
    matches!(e, Event::ChildRekeyed { .. })
}

fn exchanges(net: &Net, t: ExchangeType) -> usize {
    net.log
        .iter()
        .filter(|(_, d)| Header::peek(d).is_ok_and(|(h, _)| h.exchange_type == t))
        .count()
}

fn rekey_child_by(net: &mut Net, initiator: bool) {
    if initiator {
        net.i.rekey_child(net.now, &mut net.rng_i);
    } else {
        let now = net.now;
        let r = net.r.as_mut().unwrap();
        r.rekey_child(now, &mut net.rng_r);
    }
    net.collect();
}

fn rekey_ike_by(net: &mut Net, initiator: bool) {
    if initiator {
        net.i.rekey_ike(net.now, &mut net.rng_i);
    } else {
        let now = net.now;
        let r = net.r.as_mut().unwrap();
        r.rekey_ike(now, &mut net.rng_r);
    }
    net.collect();
}

#[test]
fn child_rekey_by_either_side_with_and_without_pfs() {
    for (esp, pfs) in [
        ("aes256gcm16", None),
        ("aes256gcm16-x25519", Some(DhGroup::Curve25519)),
        ("aes256-sha512-ecp384-esn", Some(DhGroup::Ecp384)),
    ] {
        for by_initiator in [true, false] {
            let mut net = establish(IKE, esp);
            let (old_i, old_r) = {
                let (i, r) = one_live_child(&net);
                (i.spi_in, r.spi_in)
            };
            assert_eq!(
                child(&net.events_i).algorithms.dh,
                None,
                "IKE_AUTH has no PFS"
            );
            rekey_child_by(&mut net, by_initiator);
            net.run(Duration::from_secs(5), never);
            let what = format!("{esp}, rekey by the initiator: {by_initiator}");
            let (i, r) = one_live_child(&net);
            let new_i = i.spi_in;
            assert_ne!(i.spi_in, old_i, "{what}");
            assert_ne!(r.spi_in, old_r, "{what}");
            assert_eq!(i.algorithms.dh, pfs, "{what}");
            assert!(i.udp_encap && r.udp_encap);
            for events in [&net.events_i, &net.events_r] {
                assert_eq!(count(events, rekeyed), 1, "{what}");
                assert!(
                    events.iter().any(|e| matches!(e,
                        Event::ChildDeleted { spi_in, .. } if *spi_in == old_i || *spi_in == old_r)),
                    "{what}: the old child is deleted"
                );
                assert!(closed(events).is_none());
            }
            // One CREATE_CHILD_SA and one INFORMATIONAL (the delete).
            assert_eq!(exchanges(&net, ExchangeType::CREATE_CHILD_SA), 2, "{what}");
            assert_eq!(exchanges(&net, ExchangeType::INFORMATIONAL), 2, "{what}");
            // And again, on the new child.
            rekey_child_by(&mut net, !by_initiator);
            net.run(Duration::from_secs(5), never);
            let (i2, _) = one_live_child(&net);
            assert_ne!(i2.spi_in, new_i);
        }
    }
}

#[test]
fn invalid_ke_during_a_pfs_child_rekey_retries_with_the_group_asked_for() {
    let (ic, _) = pair_configs(IKE, "aes256gcm16-x25519-ecp256");
    let (_, rc) = pair_configs(IKE, "aes256gcm16-ecp256");
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    rekey_child_by(&mut net, true);
    net.run(Duration::from_secs(5), never);
    let (i, _) = one_live_child(&net);
    assert_eq!(i.algorithms.dh, Some(DhGroup::Ecp256));
    // x25519 refused with INVALID_KE_PAYLOAD, then ecp256: two exchanges.
    let requests = net
        .log
        .iter()
        .filter(|(from_i, d)| {
            *from_i
                && Header::peek(d).is_ok_and(|(h, _)| {
                    h.exchange_type == ExchangeType::CREATE_CHILD_SA && !h.flags.response()
                })
        })
        .count();
    assert_eq!(requests, 2);
}

#[test]
fn additional_child_requests_are_refused_with_no_additional_sas() {
    let mut net = establish(IKE, "aes256gcm16");
    // The responder asks for a CREATE_CHILD_SA without REKEY_SA.
    let r = net.r.as_mut().unwrap();
    let mid = r.next_message_id;
    let data = r
        .encrypt(ExchangeType::CREATE_CHILD_SA, r.flags(false), mid, &[])
        .unwrap();
    net.i
        .handle(net.now, addr("198.51.100.1:4500"), &data, &mut net.rng_i);
    net.collect();
    let (_, t) = net.wire.last().unwrap();
    let payloads = net.r().decrypt(&t.data).ok().unwrap();
    assert!(
        matches!(&payloads[..], [Payload::Notify(n)] if n.notify_type == NotifyType::NO_ADDITIONAL_SAS)
    );
    assert_eq!(net.i.phase(), Phase::Established);
}

#[test]
fn a_rekey_of_an_unknown_child_is_child_sa_not_found() {
    let mut net = establish(IKE, "aes256gcm16");
    let r = net.r.as_mut().unwrap();
    let mid = r.next_message_id;
    let rekey = Payload::Notify(Notify::with_spi(
        ProtocolId::ESP,
        Spi::Child(0x1234_5678),
        NotifyType::REKEY_SA,
        Vec::new(),
    ));
    let data = r
        .encrypt(ExchangeType::CREATE_CHILD_SA, r.flags(false), mid, &[rekey])
        .unwrap();
    net.i
        .handle(net.now, addr("198.51.100.1:4500"), &data, &mut net.rng_i);
    net.collect();
    let (_, t) = net.wire.last().unwrap();
    let payloads = net.r().decrypt(&t.data).ok().unwrap();
    assert!(
        matches!(&payloads[..], [Payload::Notify(n)] if n.notify_type == NotifyType::CHILD_SA_NOT_FOUND)
    );
}

#[test]
fn a_rekey_of_a_child_being_deleted_is_temporary_failure() {
    let mut net = establish(IKE, "aes256gcm16");
    let old_r_spi_in = net.r().status().child.unwrap().0;
    // The initiator rekeys; its DELETE of the old child is held back.
    rekey_child_by(&mut net, true);
    net.deliver(never); // request
    net.deliver(never); // response; the initiator sends its DELETE
    assert!(net.wire.iter().any(|(to_r, t)| *to_r
        && Header::peek(&t.data)
            .is_ok_and(|(h, _)| h.exchange_type == ExchangeType::INFORMATIONAL)));
    // Meanwhile the responder asks to rekey the old child.
    let r = net.r.as_mut().unwrap();
    let mid = r.next_message_id;
    let rekey = Payload::Notify(Notify::with_spi(
        ProtocolId::ESP,
        Spi::Child(old_r_spi_in),
        NotifyType::REKEY_SA,
        Vec::new(),
    ));
    let data = r
        .encrypt(ExchangeType::CREATE_CHILD_SA, r.flags(false), mid, &[rekey])
        .unwrap();
    net.i
        .handle(net.now, addr("198.51.100.1:4500"), &data, &mut net.rng_i);
    net.collect();
    let (_, t) = net.wire.last().unwrap();
    let payloads = net.r().decrypt(&t.data).ok().unwrap();
    assert!(
        matches!(&payloads[..], [Payload::Notify(n)] if n.notify_type == NotifyType::TEMPORARY_FAILURE),
        "{payloads:?}"
    );
}

#[test]
fn ike_rekey_by_either_side_then_liveness_and_child_rekey_on_the_new_sa() {
    for by_initiator in [true, false] {
        let mut net = establish(IKE, "aes256gcm16-x25519");
        let old = (net.i.status().spi_i, net.i.status().spi_r);
        let child_before = one_live_child(&net).0.spi_in;
        rekey_ike_by(&mut net, by_initiator);
        net.run(Duration::from_secs(5), never);
        let (si, sr) = (net.i.status(), net.r().status());
        assert_eq!((si.spi_i, si.spi_r), (sr.spi_i, sr.spi_r), "both on one SA");
        assert_ne!(si.spi_i, old.0);
        assert_ne!(si.spi_r, old.1);
        assert_eq!(si.phase, Phase::Established);
        // The rekey initiator is the new SA's original initiator (§2.18).
        let expect = if by_initiator {
            (Role::Initiator, Role::Responder)
        } else {
            (Role::Responder, Role::Initiator)
        };
        assert_eq!((si.role, sr.role), expect);
        assert_eq!(
            net.i.local_spi(),
            if by_initiator { si.spi_i } else { si.spi_r }
        );
        for events in [&net.events_i, &net.events_r] {
            assert_eq!(
                count(events, |e| matches!(e, Event::IkeRekeyed { spi_i, spi_r }
                    if (*spi_i, *spi_r) == (si.spi_i, si.spi_r))),
                1
            );
            assert!(closed(events).is_none(), "{:?}", closed(events));
        }
        // The child lives on unchanged; the old SA is gone (its DELETE done).
        assert_eq!(one_live_child(&net).0.spi_in, child_before);
        assert!(net.i.other_local_spis().is_empty());
        assert!(net.r().other_local_spis().is_empty());
        // Liveness checks run on the new SA, and a child rekey uses its SK_d.
        let before = net.log.len();
        net.run(Duration::from_secs(60), never);
        // Message IDs restart at 0 on the new SA.
        let first_on_new = net
            .log
            .iter()
            .filter_map(|(_, d)| Header::peek(d).ok().map(|(h, _)| h))
            .find(|h| h.spi_i == si.spi_i)
            .unwrap();
        assert_eq!(first_on_new.message_id, 0);
        assert_eq!(net.i.phase(), Phase::Established);
        assert!(net.log[before..]
            .iter()
            .any(|(_, d)| Header::peek(d).is_ok_and(|(h, _)| {
                h.exchange_type == ExchangeType::INFORMATIONAL && h.spi_i == si.spi_i
            })));
        rekey_child_by(&mut net, !by_initiator);
        net.run(Duration::from_secs(5), never);
        let (i, _) = one_live_child(&net);
        assert_ne!(i.spi_in, child_before);
        // And the new SA rekeys again.
        rekey_ike_by(&mut net, by_initiator);
        net.run(Duration::from_secs(5), never);
        assert_ne!(net.i.status().spi_i, si.spi_i);
        assert_eq!(net.i.status().spi_i, net.r().status().spi_i);
        assert!(closed(&net.events_i).is_none() && closed(&net.events_r).is_none());
    }
}

/// Runs a collision with several seeds so that each side wins sometimes.
#[test]
fn simultaneous_child_rekey_leaves_exactly_one_new_child() {
    let mut winners = std::collections::HashSet::new();
    for seed in 0..8 {
        let (ic, rc) = pair_configs(IKE, "aes256gcm16-x25519");
        let mut net = Net::with_seeds(ic, rc, 10 + seed, 20 + seed);
        net.run(Duration::from_secs(5), never);
        let (old_i, old_r) = {
            let (i, r) = one_live_child(&net);
            (i.spi_in, r.spi_in)
        };
        // Both requests are on the wire before either is delivered.
        net.i.rekey_child(net.now, &mut net.rng_i);
        rekey_child_by(&mut net, false);
        net.collect();
        assert_eq!(net.wire.len(), 2);
        net.run(Duration::from_secs(5), never);
        let (i, r) = one_live_child(&net);
        assert!(i.spi_in != old_i && r.spi_in != old_r, "seed {seed}");
        // Who created the survivor: its inbound SPI at the initiator came
        // from the initiator's own request or from its answer.
        let i_created = net
            .events_i
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::ChildRekeyed { new, .. } if new.spi_in == i.spi_in => Some(true),
                Event::ChildInstalled(_)
                | Event::ChildRekeyed { .. }
                | Event::ChildDeleted { .. }
                | Event::Established(_)
                | Event::IkeRekeyed { .. }
                | Event::Closed(_) => None,
            })
            .is_some();
        winners.insert(i_created);
        assert!(closed(&net.events_i).is_none() && closed(&net.events_r).is_none());
        // Nothing left to clean up on either side.
        for sa in [&net.i, net.r()] {
            assert!(sa.retiring.is_empty() && sa.redundant.is_empty() && sa.child_rekey.is_none());
        }
        // The survivor rekeys normally afterwards.
        rekey_child_by(&mut net, true);
        net.run(Duration::from_secs(5), never);
        one_live_child(&net);
    }
    assert!(!winners.is_empty());
}

#[test]
fn simultaneous_child_rekey_both_outcomes_of_the_nonce_comparison() {
    // Which side's exchange holds the lowest nonce depends on the random
    // bytes; over these seeds both happen.
    let mut i_won = 0;
    let mut r_won = 0;
    for seed in 0..16 {
        let (ic, rc) = pair_configs(IKE, "aes256gcm16");
        let mut net = Net::with_seeds(ic, rc, 100 + seed, 200 + seed);
        net.run(Duration::from_secs(5), never);
        net.i.rekey_child(net.now, &mut net.rng_i);
        rekey_child_by(&mut net, false);
        net.collect();
        net.run(Duration::from_secs(5), never);
        one_live_child(&net);
        // The loser deleted its own new child: it sent a DELETE naming an
        // SPI that never reached its datapath.
        let installed_i: Vec<u32> = net
            .events_i
            .iter()
            .filter_map(|e| {
                if let Event::ChildRekeyed { new, .. } = e {
                    Some(new.spi_in)
                } else {
                    None
                }
            })
            .collect();
        let installed_r: Vec<u32> = net
            .events_r
            .iter()
            .filter_map(|e| {
                if let Event::ChildRekeyed { new, .. } = e {
                    Some(new.spi_in)
                } else {
                    None
                }
            })
            .collect();
        // The winner installed both new children, the loser one.
        match (installed_i.len(), installed_r.len()) {
            (2, 1) => i_won += 1,
            (1, 2) => r_won += 1,
            other => panic!("seed {seed}: {other:?}"),
        }
    }
    assert!(i_won > 0 && r_won > 0, "i won {i_won}, r won {r_won}");
}

#[test]
fn simultaneous_ike_rekey_leaves_exactly_one_new_sa() {
    let mut outcomes = std::collections::HashSet::new();
    for seed in 0..12 {
        let (ic, rc) = pair_configs(IKE, "aes256gcm16-x25519");
        let mut net = Net::with_seeds(ic, rc, 300 + seed, 400 + seed);
        net.run(Duration::from_secs(5), never);
        let old = net.i.status().spi_i;
        net.i.rekey_ike(net.now, &mut net.rng_i);
        rekey_ike_by(&mut net, false);
        net.collect();
        assert_eq!(net.wire.len(), 2);
        net.run(Duration::from_secs(5), never);
        let (si, sr) = (net.i.status(), net.r().status());
        assert_eq!((si.spi_i, si.spi_r), (sr.spi_i, sr.spi_r), "seed {seed}");
        assert_ne!(si.spi_i, old);
        outcomes.insert(si.role == Role::Initiator);
        assert!(net.i.other_local_spis().is_empty(), "seed {seed}");
        assert!(net.r().other_local_spis().is_empty(), "seed {seed}");
        assert!(closed(&net.events_i).is_none() && closed(&net.events_r).is_none());
        assert_eq!(
            count(&net.events_i, |e| matches!(e, Event::IkeRekeyed { .. })),
            1
        );
        assert_eq!(
            count(&net.events_r, |e| matches!(e, Event::IkeRekeyed { .. })),
            1
        );
        // Consistent keys: the child rekeys over the survivor, and liveness works.
        rekey_child_by(&mut net, false);
        net.run(Duration::from_secs(60), never);
        assert_eq!(net.i.phase(), Phase::Established);
        assert_eq!(net.r().phase(), Phase::Established);
        one_live_child(&net);
    }
    assert_eq!(outcomes.len(), 2, "each side's rekey won for some seed");
}

#[test]
fn lost_rekey_messages_are_retransmitted() {
    for ike in [false, true] {
        let mut net = establish(IKE, "aes256gcm16-x25519");
        let old = net.i.status().spi_i;
        let child_before = one_live_child(&net).0.spi_in;
        if ike {
            rekey_ike_by(&mut net, true);
        } else {
            rekey_child_by(&mut net, true);
        }
        // Lose the first request and the first response, and the first
        // DELETE request that follows.
        let (mut req, mut resp, mut del) = (0, 0, 0);
        net.run(Duration::from_secs(30), |to_r, d| {
            let Ok((h, _)) = Header::peek(d) else {
                return false;
            };
            if h.exchange_type == ExchangeType::CREATE_CHILD_SA {
                if to_r && req == 0 {
                    req += 1;
                    return true;
                }
                if !to_r && resp == 0 {
                    resp += 1;
                    return true;
                }
            }
            if h.exchange_type == ExchangeType::INFORMATIONAL && to_r && del == 0 {
                del += 1;
                return true;
            }
            false
        });
        assert_eq!((req, resp, del), (1, 1, 1));
        let (i, _) = one_live_child(&net);
        if ike {
            assert_ne!(net.i.status().spi_i, old);
            assert_eq!(net.i.status().spi_i, net.r().status().spi_i);
            assert!(net.r().other_local_spis().is_empty());
        } else {
            assert_ne!(i.spi_in, child_before);
        }
        // The responder processed the request once.
        let n = if ike {
            count(&net.events_r, |e| matches!(e, Event::IkeRekeyed { .. }))
        } else {
            count(&net.events_r, rekeyed)
        };
        assert_eq!(n, 1);
        assert!(closed(&net.events_i).is_none() && closed(&net.events_r).is_none());
    }
}

#[test]
fn the_soft_lifetime_rekeys_with_jitter_and_the_sa_lives_on() {
    let (mut ic, mut rc) = pair_configs(IKE, "aes256gcm16-x25519");
    for c in [&mut ic, &mut rc] {
        c.child_lifetime = Duration::from_secs(100);
        c.ike_lifetime = Duration::from_secs(300);
    }
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    let start = net.now;
    // Step through time and note when each rekey happened.
    let mut child_rekeys = Vec::new();
    let mut ike_rekeys = Vec::new();
    let (mut seen_child, mut seen_ike) = (0, 0);
    while net.now < start + Duration::from_secs(700) {
        net.run(Duration::from_secs(1), never);
        net.now += Duration::from_secs(1);
        net.run(Duration::ZERO, never);
        let c = count(&net.events_i, rekeyed);
        if c > seen_child {
            seen_child = c;
            child_rekeys.push(net.now - start);
        }
        let k = count(&net.events_i, |e| matches!(e, Event::IkeRekeyed { .. }));
        if k > seen_ike {
            seen_ike = k;
            ike_rekeys.push(net.now - start);
        }
    }
    assert!(
        closed(&net.events_i).is_none(),
        "{:?}",
        closed(&net.events_i)
    );
    assert!(closed(&net.events_r).is_none());
    // Child: every 85..90 s (10% margin, up to 5% jitter), never the hard 100 s.
    assert!(child_rekeys.len() >= 7, "{child_rekeys:?}");
    let mut last = Duration::ZERO;
    for t in &child_rekeys {
        let gap = *t - last;
        assert!(
            gap >= Duration::from_secs(84) && gap <= Duration::from_secs(91),
            "{child_rekeys:?}"
        );
        last = *t;
    }
    // Not all at the same offset: jitter.
    let gaps: std::collections::HashSet<u64> = child_rekeys
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert!(gaps.len() > 1, "{child_rekeys:?}");
    // IKE: at 255..270 s, then again.
    assert!(ike_rekeys.len() >= 2, "{ike_rekeys:?}");
    assert!(
        ike_rekeys[0] >= Duration::from_secs(254) && ike_rekeys[0] <= Duration::from_secs(271),
        "{ike_rekeys:?}"
    );
    one_live_child(&net);
}

#[test]
fn the_hard_lifetime_ends_an_sa_that_cannot_be_rekeyed() {
    // The responder insists on PFS, the initiator has none: IKE_AUTH works
    // (no DH there), every CREATE_CHILD_SA fails with NO_PROPOSAL_CHOSEN.
    let (mut ic, _) = pair_configs(IKE, "aes256gcm16");
    let (_, mut rc) = pair_configs(IKE, "aes256gcm16-x25519");
    ic.child_lifetime = Duration::from_secs(60);
    rc.child_lifetime = Duration::from_secs(600);
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    let start = net.now;
    net.run(Duration::from_secs(120), never);
    assert_eq!(
        closed(&net.events_i),
        Some(&CloseReason::LifetimeExpired { sa: "child" })
    );
    assert_eq!(closed(&net.events_r), Some(&CloseReason::DeletedByPeer));
    assert!(net.now - start >= Duration::from_secs(60));
    // It tried at the soft lifetime (and the peer, whose lifetime is
    // longer, did not get to).
    assert!(exchanges(&net, ExchangeType::CREATE_CHILD_SA) >= 2);
    assert_eq!(count(&net.events_i, rekeyed), 0);
    assert!(closed(&net.events_i)
        .unwrap()
        .to_string()
        .contains("hard lifetime"));
}

#[test]
fn an_sa_expiring_with_a_silent_peer_waits_for_its_delete_without_spinning() {
    let (mut ic, rc) = pair_configs(IKE, "aes256gcm16");
    ic.child_lifetime = Duration::from_secs(60);
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    let start = net.now;
    let mut steps = 0;
    while net.i.phase() != Phase::Closed && net.now < start + Duration::from_secs(300) {
        let next = net.i.poll_timeout().unwrap();
        assert!(next > net.now || steps == 0, "poll_timeout in the past");
        net.now = next.max(net.now);
        net.i.handle_timeout(net.now, &mut net.rng_i);
        net.collect();
        net.wire.clear();
        steps += 1;
        assert!(steps < 1000, "spinning");
    }
    // The rekey went unanswered: the peer is dead before the DELETE is.
    assert_eq!(closed(&net.events_i), Some(&CloseReason::DeadPeer));
}

#[test]
fn the_byte_lifetime_triggers_a_child_rekey() {
    let (mut ic, rc) = pair_configs(IKE, "aes256gcm16");
    ic.child_lifetime_bytes = 1_000_000;
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    net.i.note_child_bytes(net.now, 800_000);
    assert!(net.i.poll_timeout().unwrap() > net.now, "below 90%");
    net.i.note_child_bytes(net.now, 950_000);
    assert_eq!(net.i.poll_timeout(), Some(net.now));
    net.run(Duration::from_secs(5), never);
    assert_eq!(count(&net.events_i, rekeyed), 1);
    one_live_child(&net);
}

#[test]
fn nat_keepalives_go_out_after_20_seconds_of_silence() {
    let (mut ic, mut rc) = pair_configs(IKE, "aes256gcm16");
    // No DPD in this window, so nothing else is sent.
    ic.dpd_interval = Duration::from_secs(300);
    rc.dpd_interval = Duration::from_secs(300);
    ic.dpd_timeout = Duration::from_secs(400);
    rc.dpd_timeout = Duration::from_secs(400);
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    let start = net.now;
    net.run(Duration::from_secs(65), never);
    let from_i: Vec<Duration> = net
        .keepalives
        .iter()
        .filter(|(i, _)| *i)
        .map(|(_, t)| *t - start)
        .collect();
    assert_eq!(from_i.len(), 3, "{from_i:?}");
    assert!(from_i[0] <= Duration::from_secs(20));
    assert_eq!(from_i[1] - from_i[0], NAT_KEEPALIVE_INTERVAL);
    assert_eq!(net.keepalives.iter().filter(|(i, _)| !*i).count(), 3);
    // Sending anything else postpones them.
    net.keepalives.clear();
    let now = net.now;
    net.i.rekey_child(now, &mut net.rng_i);
    net.collect();
    net.run(Duration::from_secs(19), never);
    assert!(net
        .keepalives
        .iter()
        .all(|(_, t)| *t - now >= Duration::from_secs(19)));
}

/// FQDN and KEY_ID identities authenticate like addresses; a peer that
/// presents another identity than configured is refused.
#[test]
fn fqdn_and_key_id_identities() {
    let (mut ic, mut rc) = pair_configs("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    ic.local_id = Identification::fqdn("branch.example.net");
    rc.remote_id = Identification::fqdn("branch.example.net");
    rc.local_id = Identification::key_id(b"cloud-gw-1");
    ic.remote_id = Identification::key_id(b"cloud-gw-1");
    let mut net = Net::new(ic.clone(), rc.clone());
    net.run(Duration::from_secs(5), never);
    assert_eq!(
        net.i.phase(),
        Phase::Established,
        "{:?}",
        closed(&net.events_i)
    );
    assert_eq!(net.r().phase(), Phase::Established);

    rc.remote_id = Identification::fqdn("other.example.net");
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    assert_eq!(
        closed(&net.events_r),
        Some(&CloseReason::IdentityMismatch {
            presented: "branch.example.net".into()
        })
    );
    assert_eq!(
        closed(&net.events_i),
        Some(&CloseReason::AuthenticationFailed { by_peer: true })
    );
}

#[test]
fn the_packet_lifetime_triggers_a_child_rekey() {
    let (mut ic, rc) = pair_configs(IKE, "aes256gcm16");
    ic.child_lifetime_packets = 10_000;
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    net.i.note_child_usage(net.now, 1000, 8_000);
    assert!(net.i.poll_timeout().unwrap() > net.now, "below 90%");
    net.i.note_child_usage(net.now, 1000, 9_500);
    assert_eq!(net.i.poll_timeout(), Some(net.now));
    net.run(Duration::from_secs(5), never);
    assert_eq!(count(&net.events_i, rekeyed), 1);
    one_live_child(&net);
}

/// Past the hard byte lifetime (the rekey did not come in time) the child
/// may not carry on: the SA ends, as at the hard time lifetime.
#[test]
fn the_hard_byte_lifetime_ends_the_sa() {
    let (mut ic, rc) = pair_configs(IKE, "aes256gcm16");
    ic.child_lifetime_bytes = 1_000_000;
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    // The peer does not answer the rekey in time, and the bytes run out.
    net.i.note_child_usage(net.now, 950_000, 0);
    net.i.handle_timeout(net.now, &mut net.rng_i);
    net.collect();
    net.wire.clear();
    net.i.note_child_usage(net.now, 1_000_000, 0);
    assert_eq!(net.i.poll_timeout(), Some(net.now));
    net.run(Duration::from_secs(60), never);
    assert_eq!(
        closed(&net.events_i),
        Some(&CloseReason::LifetimeExpired { sa: "child" })
    );
}

/// Configurations with `force_encap` as given for each end.
fn encap_configs(force_i: bool, force_r: bool) -> (SaConfig, SaConfig) {
    let (mut ic, mut rc) = pair_configs(IKE, "aes256gcm16");
    ic.force_encap = force_i;
    rc.force_encap = force_r;
    (ic, rc)
}

/// Both ends agree that there is a NAT: IKE moved to port 4500 after
/// IKE_SA_INIT, and ESP runs in UDP.
fn assert_both_on_natt(net: &Net) {
    let (i, r) = (net.i.status(), net.r().status());
    assert!(i.nat, "the initiator sees a NAT");
    assert!(r.nat, "the responder sees a NAT");
    assert_eq!(i.local.port(), NATT_PORT);
    assert_eq!(i.remote.port(), NATT_PORT);
    assert_eq!(r.local.port(), NATT_PORT);
    let (ci, cr) = (child(&net.events_i), child(&net.events_r));
    assert!(ci.udp_encap && cr.udp_encap, "ESP must run in UDP");
    assert_esp_works(ci, cr);
    // IKE_SA_INIT on port 500, everything after it on 4500.
    let (init, rest) = net.addrs.split_at(2);
    assert!(
        init.iter().all(|(_, l, _)| l.port() == IKE_PORT),
        "{:?}",
        net.addrs
    );
    assert!(!rest.is_empty());
    assert!(
        rest.iter().all(|(_, l, _)| l.port() == NATT_PORT),
        "{:?}",
        net.addrs
    );
}

/// Without a NAT and without forced encapsulation, the NAT detection
/// hashes match on both ends (§2.23: the initiator's are over the
/// request's SPIs, SPIr zero; the responder's over the response's), so
/// IKE stays on port 500 and ESP is not encapsulated.
#[test]
fn without_a_nat_ike_stays_on_port_500() {
    let (ic, rc) = encap_configs(false, false);
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    assert_established(&net);
    let (i, r) = (net.i.status(), net.r().status());
    assert!(!i.nat, "the initiator sees no NAT");
    assert!(!r.nat, "the responder sees no NAT");
    assert_eq!((i.local, i.remote), (addr(I_ADDR), addr(R_ADDR)));
    assert_eq!((r.local, r.remote), (addr(R_ADDR), addr(I_ADDR)));
    let (ci, cr) = (child(&net.events_i), child(&net.events_r));
    assert!(!ci.udp_encap && !cr.udp_encap, "ESP must not run in UDP");
    assert_esp_works(ci, cr);
    // Liveness checks keep it up, still on port 500, with no keepalives.
    net.run(Duration::from_secs(60), never);
    assert_eq!(net.i.phase(), Phase::Established);
    assert_eq!(net.r().phase(), Phase::Established);
    assert!(exchanges(&net, ExchangeType::INFORMATIONAL) > 0);
    assert!(net.keepalives.is_empty(), "{:?}", net.keepalives);
    assert!(net.addrs.len() >= 4);
    for (from_i, local, remote) in &net.addrs {
        assert_eq!(
            (local.port(), remote.port()),
            (IKE_PORT, IKE_PORT),
            "from initiator: {from_i}"
        );
    }
}

/// A NAT in front of the initiator: the responder sees another source
/// than the one the initiator hashed, and the initiator learns that its
/// address was rewritten. Both float to 4500, and the responder follows
/// the NAT's mapping of the initiator's port 4500.
#[test]
fn a_nat_in_front_of_the_initiator_is_detected_by_both() {
    let (ic, rc) = encap_configs(false, false);
    let mut net = Net::new(ic, rc);
    net.i_nat = Some(Nat::new("203.0.113.7"));
    net.run(Duration::from_secs(5), never);
    assert_established(&net);
    assert_both_on_natt(&net);
    let nat = net.i_nat.as_ref().unwrap();
    let mut from_4500 = addr(I_ADDR);
    from_4500.set_port(NATT_PORT);
    let outside = nat.mappings.iter().find(|(i, _)| *i == from_4500);
    assert_eq!(net.r().status().remote, outside.unwrap().1);
    assert_eq!(net.i.status().remote, addr("198.51.100.1:4500"));
}

/// A NAT in front of the responder (port forwarding to a private
/// address): the initiator sees the responder's source hash over another
/// address than it sent to, the responder sees the initiator's
/// destination hash over another address than its own.
#[test]
fn a_nat_in_front_of_the_responder_is_detected_by_both() {
    let (ic, rc) = encap_configs(false, false);
    let mut net = Net::new(ic, rc);
    net.r_nat = Some(Nat::forwarding(
        "198.51.100.1",
        &[
            ("10.1.1.1:500", "198.51.100.1:500"),
            ("10.1.1.1:4500", "198.51.100.1:4500"),
        ],
    ));
    net.run(Duration::from_secs(5), never);
    assert_established(&net);
    assert_both_on_natt(&net);
    assert_eq!(net.r().status().local, addr("10.1.1.1:4500"));
    assert_eq!(net.r().status().remote, addr("192.0.2.1:4500"));
    assert_eq!(net.i.status().remote, addr("198.51.100.1:4500"));
}

/// With `force_encap` on either end (or both), a NAT is claimed even when
/// there is none, and both ends use UDP encapsulation on port 4500.
#[test]
fn force_encap_on_either_end_claims_a_nat() {
    for (force_i, force_r) in [(true, true), (true, false), (false, true)] {
        let (ic, rc) = encap_configs(force_i, force_r);
        let mut net = Net::new(ic, rc);
        net.run(Duration::from_secs(5), never);
        assert_established(&net);
        assert_both_on_natt(&net);
    }
}

/// A closing SA behind a NAT (its DELETE unanswered) is not woken for a
/// NAT keepalive it does not send: the IKE driver would spin on it until
/// the DELETE gave up.
#[test]
fn a_closing_sa_behind_a_nat_is_not_woken_for_nothing() {
    let (ic, rc) = encap_configs(true, false);
    let mut net = Net::new(ic, rc);
    net.run(Duration::from_secs(5), never);
    assert_both_on_natt(&net);
    net.i.close(net.now);
    // The peer answers nothing from now on.
    let mut now = net.now;
    let mut wakeups = 0;
    while let Some(t) = net.i.poll_timeout() {
        now = now.max(t);
        net.i.handle_timeout(now, &mut net.rng_i);
        while net.i.poll_output().is_some() {}
        wakeups += 1;
        assert!(
            net.i.poll_timeout().is_none_or(|next| next > now),
            "woken at {:?} and due again at once",
            now - net.now
        );
        assert!(wakeups < 100, "{wakeups} wake-ups");
    }
    assert_eq!(net.i.phase(), Phase::Closed);
}
