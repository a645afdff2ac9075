//! Two IKE cores talking in memory: simulated clock, loss, duplication.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::*;
use crate::esp::sa::{InboundSa, OutboundSa, NEXT_IPV4};
use crate::ike::proposal::{parse_esp, parse_ike, DhGroup, Encr};
use crate::ike::wire::{Flags, Identification, Message, Notify, NotifyType, Payload};

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
}

impl Net {
    fn new(i_cfg: SaConfig, r_cfg: SaConfig) -> Net {
        let now = Instant::now();
        let mut rng_i = TestRng::new(1);
        let i = IkeSa::initiate(i_cfg, addr(I_ADDR), addr(R_ADDR), now, &mut rng_i);
        let mut net = Net {
            now,
            i,
            r: None,
            r_cfg,
            rng_i,
            rng_r: TestRng::new(2),
            wire: Vec::new(),
            events_i: Vec::new(),
            events_r: Vec::new(),
            log: Vec::new(),
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
                    self.wire.push((true, t));
                }
                Output::Event(e) => self.events_i.push(e),
            }
        }
        if let Some(r) = &mut self.r {
            while let Some(o) = r.poll_output() {
                match o {
                    Output::Transmit(t) => {
                        self.log.push((false, t.data.clone()));
                        self.wire.push((false, t));
                    }
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
            if to_r {
                // Like an endpoint: a closed responder keeps nothing, so a
                // new IKE_SA_INIT request creates a new one.
                let is_init = Header::peek(&t.data).is_ok_and(|(h, _)| {
                    h.exchange_type == ExchangeType::IKE_SA_INIT && h.spi_r.is_zero()
                });
                match &mut self.r {
                    Some(r) if !(r.is_closed() && is_init) => {
                        r.handle(self.now, t.local, &t.data, &mut self.rng_r)
                    }
                    Some(_) | None => {
                        self.r = Some(IkeSa::respond(
                            self.r_cfg.clone(),
                            t.remote,
                            t.local,
                            &t.data,
                            self.now,
                            &mut self.rng_r,
                        ))
                    }
                }
            } else {
                self.i.handle(self.now, t.local, &t.data, &mut self.rng_i);
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
                    self.i.handle_timeout(self.now);
                    if let Some(r) = &mut self.r {
                        r.handle_timeout(self.now);
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
    net
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

#[test]
fn peer_rekey_requests_are_refused_cleanly() {
    let mut net = establish("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    // The responder asks for a CREATE_CHILD_SA (payloads do not matter).
    let r = net.r.as_mut().unwrap();
    let mid = r.next_message_id;
    let data = r
        .encrypt(ExchangeType::CREATE_CHILD_SA, r.flags(false), mid, &[])
        .unwrap();
    net.i
        .handle(net.now, addr("198.51.100.1:4500"), &data, &mut net.rng_i);
    net.collect();
    let (_, t) = net.wire.last().unwrap();
    let r = net.r.as_ref().unwrap();
    let payloads = r.decrypt(&t.data).ok().unwrap();
    assert!(
        matches!(&payloads[..], [Payload::Notify(n)] if n.notify_type == NotifyType::NO_ADDITIONAL_SAS)
    );
    assert_eq!(net.i.phase(), Phase::Established);
}
