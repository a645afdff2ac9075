//! Helpers shared by the fuzz targets (`fuzz_targets/`) and the seed
//! generator (`examples/seed.rs`): a deterministic RNG, the SA
//! configuration of the in-memory peers, round-trip checks, and the IKE
//! fixtures that play one end of an exchange by hand (so that the fuzzer can
//! encrypt whatever it wants with the real SK keys of the other end).
//!
//! Only the public APIs of the project's crates are used.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use aes::cipher::{BlockEncrypt, KeyInit};
use ring::{aead, hmac};
use vpngw_tunnel::esp::sa::SaKeys;
use vpngw_tunnel::ike::crypto::{psk_auth, IkeKeys, KeyExchange as Dh, SkCipher};
use vpngw_tunnel::ike::proposal::{
    parse_esp, parse_ike, DhGroup, Encr, IkeAlgorithms, Integ, WireTransform,
};
use vpngw_tunnel::ike::sa::{IkeSa, Output, Phase, Random, SaConfig};
use vpngw_tunnel::ike::wire::{
    assemble, decode_payloads, encode_payloads, AuthMethod, Authentication, Encrypted,
    ExchangeType, Flags, Header, Identification, IkeSpi, KeyExchange, Message, Notify, NotifyType,
    Payload, PayloadType, Proposal, ProtocolId, Spi, TrafficSelector, Transform,
};
use zeroize::Zeroizing;

/// A deterministic RNG: SHA-256 in counter mode over a seed (as the
/// project's own in-memory tests do).
#[derive(Debug, Clone)]
pub struct Rng {
    seed: u64,
    counter: u64,
}

impl Rng {
    /// A fresh stream for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { seed, counter: 0 }
    }
}

impl Random for Rng {
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

/// Splits a fuzz input into records, as the targets that take several
/// packets read it: a 2-octet length, then that many octets (fewer at the
/// end); at most 64 records.
pub fn records(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [hi, lo, rest @ ..] = data {
        let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
        let (record, rest) = rest.split_at(n);
        out.push(record);
        data = rest;
        if out.len() >= 64 {
            break;
        }
    }
    out
}

/// The pre-shared key of every fixture.
pub const PSK: &[u8] = b"a shared secret of decent length";
/// The IKE proposal of every fixture.
pub const IKE_PROPOSAL: &str = "aes256gcm16-prfsha256-x25519";
/// The ESP proposal of every fixture.
pub const ESP_PROPOSAL: &str = "aes256gcm16";
/// The initiator's address.
pub const I_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The responder's address.
pub const R_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The child SPI the hand-played end uses for its inbound ESP SA.
pub const OUR_CHILD_SPI: u32 = 0x1111_2222;

/// `ip:500`.
pub fn sock(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(ip.into(), 500)
}

/// The configuration of an SA at `local` talking to `remote`.
pub fn sa_config(local: Ipv4Addr, remote: Ipv4Addr) -> SaConfig {
    SaConfig {
        local_id: Identification::ipv4(local),
        remote_id: Identification::ipv4(remote),
        psk: Zeroizing::new(PSK.to_vec()),
        ike_proposals: vec![parse_ike(IKE_PROPOSAL).expect("fixture IKE proposal")],
        esp_proposals: vec![parse_esp(ESP_PROPOSAL).expect("fixture ESP proposal")],
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

fn to_wire(t: &WireTransform) -> Transform {
    match t.key_bits {
        Some(bits) => Transform::with_key_len(t.kind, t.id, bits),
        None => Transform::new(t.kind, t.id),
    }
}

fn from_wire(t: &Transform) -> WireTransform {
    WireTransform {
        kind: t.transform_type,
        id: t.transform_id,
        key_bits: t.key_length,
    }
}

/// The fixture's IKE proposal as an SA payload.
pub fn ike_sa_payload(spi: Spi) -> Payload {
    let p = parse_ike(IKE_PROPOSAL).expect("fixture IKE proposal");
    Payload::Sa(vec![Proposal {
        proposal_num: 1,
        protocol_id: ProtocolId::IKE,
        spi,
        transforms: p.transforms().iter().map(to_wire).collect(),
    }])
}

/// The fixture's ESP proposal as an SA payload, with our child SPI.
pub fn esp_sa_payload(spi: u32, pfs: bool) -> Payload {
    let p = parse_esp(ESP_PROPOSAL).expect("fixture ESP proposal");
    Payload::Sa(vec![Proposal {
        proposal_num: 1,
        protocol_id: ProtocolId::ESP,
        spi: Spi::Child(spi),
        transforms: p.transforms(pfs).iter().map(to_wire).collect(),
    }])
}

/// Every datagram the SA wants to send, and how many events it reported.
/// Anything an SA sends must decode: that is checked here.
pub fn drain(sa: &mut IkeSa) -> (Vec<Vec<u8>>, usize) {
    let mut sent = Vec::new();
    let mut events = 0;
    while let Some(o) = sa.poll_output() {
        match o {
            Output::Transmit(t) => {
                if let Err(e) = Message::decode(&t.data) {
                    panic!("the SA sent a message that does not decode: {e:?}");
                }
                sent.push(t.data);
            }
            Output::NatKeepalive { .. } => {}
            Output::Event(e) => {
                let _ = format!("{e:?}");
                events += 1;
            }
        }
    }
    (sent, events)
}

/// Decodes a payload chain; when it decodes, checks that it encodes and
/// that the encoding decodes to the same payloads (the round trip of the
/// wire codec: reserved bits and the Critical bit of known payloads are not
/// kept, so the bytes may differ, the values may not).
pub fn check_payload_chain(first: PayloadType, bytes: &[u8]) -> Option<Vec<Payload>> {
    let payloads = match decode_payloads(first, bytes) {
        Ok(p) => p,
        Err(e) => {
            let _ = (e.notify_type(), e.to_string());
            return None;
        }
    };
    let (first_again, encoded) =
        encode_payloads(&payloads).expect("a decoded payload chain encodes");
    let again = decode_payloads(first_again, &encoded).expect("an encoded chain decodes");
    assert_eq!(payloads, again, "payload chain round trip");
    if let Some(p) = payloads.first() {
        assert_eq!(first_again, p.payload_type());
    }
    Some(payloads)
}

/// Decodes a whole IKE datagram; when it decodes, checks the round trip
/// and what the SK helpers say about it.
pub fn check_message(datagram: &[u8]) -> Option<Message> {
    let _ = Header::peek(datagram);
    let message = match Message::decode(datagram) {
        Ok(m) => m,
        Err(e) => {
            let _ = (e.notify_type(), e.to_string());
            return None;
        }
    };
    if let Some(Payload::Encrypted(sk)) = message.payloads.last() {
        // The SK payload is last and the header's length is the datagram's:
        // its body is the datagram's tail.
        let prefix = sk
            .authenticated_prefix(datagram)
            .expect("the SK body ends the datagram");
        assert_eq!(prefix.len() + sk.body.len(), datagram.len());
    }
    let encoded = message.encode().expect("a decoded message encodes");
    let again = Message::decode(&encoded).expect("an encoded message decodes");
    assert_eq!(message, again, "message round trip");
    assert_eq!(
        message.encode().ok(),
        again.encode().ok(),
        "encoding is stable"
    );
    if let [Payload::Encrypted(sk)] = message.payloads.as_slice() {
        // What the SK prefix builder writes is what the encoder writes.
        let prefix = Encrypted::prefix(&message.header, sk.next_payload, sk.body.len())
            .expect("prefix of a decoded SK payload");
        assert_eq!(prefix.as_slice(), &encoded[..encoded.len() - sk.body.len()]);
    }
    Some(message)
}

/// Encrypts `inner` (a payload chain starting with a payload of type
/// `first`) into a message with `header` whose only payload is SK.
pub fn seal_message(sk: &SkCipher, header: &Header, first: PayloadType, inner: &[u8]) -> Vec<u8> {
    let body_len = sk.body_len(inner.len());
    let prefix = Encrypted::prefix(header, first, body_len).expect("SK prefix");
    let iv: Vec<u8> = (0..sk.iv_len())
        .map(|i| i as u8 ^ header.message_id as u8)
        .collect();
    let body = sk.protect(&prefix, &iv, inner).expect("SK protect");
    assemble(prefix, &body)
}

/// Encodes a payload chain for [`seal_message`].
pub fn chain(payloads: &[Payload]) -> (PayloadType, Vec<u8>) {
    encode_payloads(payloads).expect("fixture chain encodes")
}

/// Decrypts what an SA sent with `sk` and decodes the inner chain, which
/// must decode (we only check messages with a single SK payload).
pub fn open_sent(sk: &SkCipher, datagram: &[u8]) -> Option<Vec<Payload>> {
    let message = Message::decode(datagram).ok()?;
    let Some(Payload::Encrypted(e)) = message.payloads.last() else {
        return None;
    };
    let prefix = e.authenticated_prefix(datagram)?;
    let inner = sk.unprotect(prefix, &e.body).ok()?;
    match decode_payloads(e.next_payload, &inner) {
        Ok(p) => Some(p),
        Err(err) => panic!("the SA encrypted a chain that does not decode: {err:?}"),
    }
}

/// The hand-played initiator: its IKE_SA_INIT request, the real
/// responder's answer and the IKE SA keys both ends derived.
///
/// The responder is an [`IkeSa`] fed with a fixed RNG seed, so every
/// [`ResponderFixture::responder`] call gives the same SA (same SPI,
/// nonce, DH value, keys) in the state `InitReplied`, ready for IKE_AUTH.
pub struct ResponderFixture {
    /// The instant every call uses.
    pub now: Instant,
    /// Our IKE_SA_INIT request.
    pub init_request: Vec<u8>,
    /// The responder's IKE_SA_INIT response.
    pub init_response: Vec<u8>,
    /// The IKE SPIs.
    pub spi_i: IkeSpi,
    /// The responder's SPI.
    pub spi_r: IkeSpi,
    /// SK_ei/SK_ai: what we send.
    pub to_peer: SkCipher,
    /// SK_er/SK_ar: what the responder sends.
    pub from_peer: SkCipher,
    /// The negotiated algorithms.
    pub algs: IkeAlgorithms,
    /// The inner payloads of a valid IKE_AUTH request (message ID 1).
    pub auth_payloads: Vec<Payload>,
    /// That IKE_AUTH request, encrypted.
    pub auth_request: Vec<u8>,
}

const RESPONDER_SEED: u64 = 2;
const INITIATOR_SEED: u64 = 1;

impl ResponderFixture {
    /// Runs IKE_SA_INIT against a real responder and derives the keys.
    pub fn new() -> ResponderFixture {
        let now = Instant::now();
        let ni: Vec<u8> = (0..32).map(|i| 0xa0 + i as u8).collect();
        let dh = Dh::new(DhGroup::Curve25519, &[0x42; 32]).expect("x25519 key");
        let spi_i = IkeSpi::from(0x0011_2233_4455_6677);
        let header = Header {
            spi_i,
            spi_r: IkeSpi::ZERO,
            exchange_type: ExchangeType::IKE_SA_INIT,
            flags: Flags::INITIATOR,
            message_id: 0,
        };
        let init_request = Message {
            header,
            payloads: vec![
                ike_sa_payload(Spi::Empty),
                Payload::Ke(KeyExchange {
                    dh_group: DhGroup::Curve25519.id(),
                    data: dh.public().to_vec(),
                }),
                Payload::Nonce(ni.clone()),
            ],
        }
        .encode()
        .expect("IKE_SA_INIT request");
        let mut fixture_sa = IkeSa::respond(
            sa_config(R_IP, I_IP),
            sock(R_IP),
            sock(I_IP),
            &init_request,
            now,
            &mut Rng::new(RESPONDER_SEED),
        );
        let (sent, _) = drain(&mut fixture_sa);
        let init_response = sent.into_iter().next().expect("IKE_SA_INIT response");
        let response = Message::decode(&init_response).expect("response decodes");
        let spi_r = response.header.spi_r;
        let mut nr = None;
        let mut ke = None;
        let mut offered = Vec::new();
        for p in &response.payloads {
            match p {
                Payload::Nonce(n) => nr = Some(n.clone()),
                Payload::Ke(k) => ke = Some(k.data.clone()),
                Payload::Sa(ps) => {
                    offered = ps
                        .iter()
                        .flat_map(|p| p.transforms.iter().map(from_wire))
                        .collect()
                }
                _ => {}
            }
        }
        let (nr, ke) = (nr.expect("Nr"), ke.expect("KEr"));
        let algs = parse_ike(IKE_PROPOSAL)
            .expect("proposal")
            .select(&offered)
            .expect("the responder chose our proposal");
        let shared = dh.compute(&ke).expect("shared secret");
        let keys = IkeKeys::derive(&algs, &shared, &ni, &nr, &spi_i.0, &spi_r.0).expect("keys");
        let to_peer = keys.sk_cipher(true).expect("SK_ei");
        let from_peer = keys.sk_cipher(false).expect("SK_er");
        let idi = Identification::ipv4(I_IP);
        let auth = psk_auth(algs.prf, PSK, &init_request, &nr, keys.sk_pi(), &idi.body());
        let auth_payloads = vec![
            Payload::IdI(idi),
            Payload::Auth(Authentication {
                auth_method: AuthMethod::SHARED_KEY_MIC,
                data: auth.to_vec(),
            }),
            Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, Vec::new())),
            esp_sa_payload(OUR_CHILD_SPI, false),
            Payload::TsI(vec![TrafficSelector::ipv4_any()]),
            Payload::TsR(vec![TrafficSelector::ipv4_any()]),
        ];
        let mut f = ResponderFixture {
            now,
            init_request,
            init_response,
            spi_i,
            spi_r,
            to_peer,
            from_peer,
            algs,
            auth_payloads,
            auth_request: Vec::new(),
        };
        let (first, inner) = chain(&f.auth_payloads);
        f.auth_request = seal_message(
            &f.to_peer,
            &f.header(ExchangeType::IKE_AUTH, 1),
            first,
            &inner,
        );
        // The fixture must be what a fresh responder gives every time.
        let mut check = f.responder();
        check.handle(
            f.now,
            sock(I_IP),
            &f.auth_request,
            &mut Rng::new(RESPONDER_SEED),
        );
        assert_eq!(check.phase(), Phase::Established, "fixture IKE_AUTH");
        f
    }

    /// A header of ours (the original initiator's request).
    pub fn header(&self, exchange_type: ExchangeType, message_id: u32) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            exchange_type,
            flags: Flags::INITIATOR,
            message_id,
        }
    }

    /// A fresh responder that answered our IKE_SA_INIT (its answer drained).
    pub fn responder(&self) -> IkeSa {
        let mut sa = IkeSa::respond(
            sa_config(R_IP, I_IP),
            sock(R_IP),
            sock(I_IP),
            &self.init_request,
            self.now,
            &mut Rng::new(RESPONDER_SEED),
        );
        let (sent, _) = drain(&mut sa);
        assert_eq!(
            sent.first(),
            Some(&self.init_response),
            "responder is deterministic"
        );
        sa
    }

    /// A fresh responder after our valid IKE_AUTH: established, with the
    /// child SA whose outbound SPI is [`OUR_CHILD_SPI`].
    pub fn established(&self, rng: &mut Rng) -> IkeSa {
        let mut sa = self.responder();
        sa.handle(self.now, sock(I_IP), &self.auth_request, rng);
        drain(&mut sa);
        sa
    }
}

impl Default for ResponderFixture {
    fn default() -> Self {
        ResponderFixture::new()
    }
}

/// The hand-played responder: a real initiator's IKE_SA_INIT request, our
/// answer, and the keys; [`InitiatorFixture::initiator`] gives a fresh
/// initiator in `AuthSent`, its IKE_AUTH request (message ID 1) in flight.
pub struct InitiatorFixture {
    /// The instant every call uses.
    pub now: Instant,
    /// The initiator's IKE_SA_INIT request.
    pub init_request: Vec<u8>,
    /// Our IKE_SA_INIT response.
    pub init_response: Vec<u8>,
    /// The initiator's SPI.
    pub spi_i: IkeSpi,
    /// Ours.
    pub spi_r: IkeSpi,
    /// SK_er/SK_ar: what we send.
    pub to_peer: SkCipher,
    /// SK_ei/SK_ai: what the initiator sends.
    pub from_peer: SkCipher,
    /// The initiator's IKE_AUTH request, as sent.
    pub auth_request: Vec<u8>,
    /// The inner payloads of a valid IKE_AUTH response.
    pub auth_payloads: Vec<Payload>,
    /// That response, encrypted.
    pub auth_response: Vec<u8>,
}

impl InitiatorFixture {
    /// Answers a real initiator's IKE_SA_INIT and derives the keys.
    pub fn new() -> InitiatorFixture {
        let now = Instant::now();
        let mut sa = Self::start(now);
        let (sent, _) = drain(&mut sa);
        let init_request = sent.into_iter().next().expect("IKE_SA_INIT request");
        let request = Message::decode(&init_request).expect("request decodes");
        let spi_i = request.header.spi_i;
        let spi_r = IkeSpi::from(0x8899_aabb_ccdd_eeff);
        let mut ni = None;
        let mut ke = None;
        let mut offered = Vec::new();
        for p in &request.payloads {
            match p {
                Payload::Nonce(n) => ni = Some(n.clone()),
                Payload::Ke(k) => ke = Some(k.data.clone()),
                Payload::Sa(ps) => {
                    offered = ps
                        .iter()
                        .flat_map(|p| p.transforms.iter().map(from_wire))
                        .collect()
                }
                _ => {}
            }
        }
        let (ni, ke) = (ni.expect("Ni"), ke.expect("KEi"));
        let algs = parse_ike(IKE_PROPOSAL)
            .expect("proposal")
            .select(&offered)
            .expect("the initiator offered our proposal");
        let nr: Vec<u8> = (0..32).map(|i| 0x50 + i as u8).collect();
        let dh = Dh::new(DhGroup::Curve25519, &[0x24; 32]).expect("x25519 key");
        let init_response = Message {
            header: Header {
                spi_i,
                spi_r,
                exchange_type: ExchangeType::IKE_SA_INIT,
                flags: Flags::RESPONSE,
                message_id: 0,
            },
            payloads: vec![
                ike_sa_payload(Spi::Empty),
                Payload::Ke(KeyExchange {
                    dh_group: DhGroup::Curve25519.id(),
                    data: dh.public().to_vec(),
                }),
                Payload::Nonce(nr.clone()),
            ],
        }
        .encode()
        .expect("IKE_SA_INIT response");
        let shared = dh.compute(&ke).expect("shared secret");
        let keys = IkeKeys::derive(&algs, &shared, &ni, &nr, &spi_i.0, &spi_r.0).expect("keys");
        let to_peer = keys.sk_cipher(false).expect("SK_er");
        let from_peer = keys.sk_cipher(true).expect("SK_ei");
        let idr = Identification::ipv4(R_IP);
        let auth = psk_auth(
            algs.prf,
            PSK,
            &init_response,
            &ni,
            keys.sk_pr(),
            &idr.body(),
        );
        let auth_payloads = vec![
            Payload::IdR(idr),
            Payload::Auth(Authentication {
                auth_method: AuthMethod::SHARED_KEY_MIC,
                data: auth.to_vec(),
            }),
            esp_sa_payload(OUR_CHILD_SPI, false),
            Payload::TsI(vec![TrafficSelector::ipv4_any()]),
            Payload::TsR(vec![TrafficSelector::ipv4_any()]),
        ];
        let mut f = InitiatorFixture {
            now,
            init_request,
            init_response,
            spi_i,
            spi_r,
            to_peer,
            from_peer,
            auth_request: Vec::new(),
            auth_payloads,
            auth_response: Vec::new(),
        };
        let (first, inner) = chain(&f.auth_payloads);
        f.auth_response = seal_message(
            &f.to_peer,
            &f.header(ExchangeType::IKE_AUTH, 1),
            first,
            &inner,
        );
        let mut check = f.initiator();
        f.auth_request = check.1;
        check.0.handle(
            f.now,
            sock(R_IP),
            &f.auth_response,
            &mut Rng::new(INITIATOR_SEED),
        );
        assert_eq!(check.0.phase(), Phase::Established, "fixture IKE_AUTH");
        f
    }

    fn start(now: Instant) -> IkeSa {
        IkeSa::initiate(
            sa_config(I_IP, R_IP),
            sock(I_IP),
            sock(R_IP),
            now,
            &mut Rng::new(INITIATOR_SEED),
        )
    }

    /// A header of ours (the original responder's response).
    pub fn header(&self, exchange_type: ExchangeType, message_id: u32) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            exchange_type,
            flags: Flags::RESPONSE,
            message_id,
        }
    }

    /// A fresh initiator that got our IKE_SA_INIT response and sent its
    /// IKE_AUTH request (returned beside it).
    pub fn initiator(&self) -> (IkeSa, Vec<u8>) {
        let mut sa = Self::start(self.now);
        let (sent, _) = drain(&mut sa);
        assert_eq!(
            sent.first(),
            Some(&self.init_request),
            "initiator is deterministic"
        );
        sa.handle(
            self.now,
            sock(R_IP),
            &self.init_response,
            &mut Rng::new(INITIATOR_SEED),
        );
        let (sent, _) = drain(&mut sa);
        let auth = sent.into_iter().next().expect("IKE_AUTH request");
        (sa, auth)
    }

    /// A fresh initiator after our valid IKE_AUTH response: established.
    pub fn established(&self, rng: &mut Rng) -> IkeSa {
        let (mut sa, _) = self.initiator();
        sa.handle(self.now, sock(R_IP), &self.auth_response, rng);
        drain(&mut sa);
        sa
    }
}

impl Default for InitiatorFixture {
    fn default() -> Self {
        InitiatorFixture::new()
    }
}

/// The payload types `ike_payloads` picks from with its first octet (the
/// ones with a decoder of their own, then some kept raw).
pub const PAYLOAD_TYPES: [PayloadType; 16] = [
    PayloadType::SA,
    PayloadType::KE,
    PayloadType::IDI,
    PayloadType::IDR,
    PayloadType::AUTH,
    PayloadType::NONCE,
    PayloadType::NOTIFY,
    PayloadType::DELETE,
    PayloadType::VENDOR_ID,
    PayloadType::TSI,
    PayloadType::TSR,
    PayloadType::SK,
    PayloadType::SKF,
    PayloadType::CERTREQ,
    PayloadType::CP,
    PayloadType(200),
];

/// The `ike_payloads` input for one payload: selector, flags octet, the
/// Next Payload octet (used by SK and SKF only), then the body.
pub fn payload_input(p: &Payload) -> Option<Vec<u8>> {
    let t = p.payload_type();
    let selector = PAYLOAD_TYPES.iter().position(|x| *x == t)?;
    let (_, bytes) = encode_payloads(std::slice::from_ref(p)).ok()?;
    let mut out = vec![selector as u8, bytes[1], bytes[0]];
    out.extend_from_slice(&bytes[4..]);
    Some(out)
}

/// The SPI of the `esp_open` SAs.
pub const ESP_SPI: u32 = 0xc0de_0001;

/// The suites `esp_open` picks from with the low three bits of its first
/// octet (modulo their number).
pub const ESP_SUITES: [(Encr, Option<Integ>); 5] = [
    (Encr::AesGcm16 { key_bits: 128 }, None),
    (Encr::AesGcm16 { key_bits: 256 }, None),
    (Encr::AesCbc { key_bits: 128 }, Some(Integ::HmacSha256_128)),
    (Encr::AesCbc { key_bits: 256 }, Some(Integ::HmacSha384_192)),
    (Encr::AesCbc { key_bits: 256 }, Some(Integ::HmacSha512_256)),
];

/// The fixed keys of an `esp_open` SA.
pub fn esp_keys(encr: Encr, integ: Option<Integ>) -> SaKeys {
    SaKeys {
        encr,
        integ,
        encr_key: Zeroizing::new((0..encr.keymat_len()).map(|i| 0x30 + i as u8).collect()),
        integ_key: Zeroizing::new(
            (0..integ.map_or(0, Integ::key_len))
                .map(|i| 0x90 ^ i as u8)
                .collect(),
        ),
    }
}

/// An ESP packet with a valid ICV around `body`, the plaintext (payload,
/// padding, Pad Length, Next Header: whole 4-octet words for GCM, whole
/// blocks for CBC; the rest is cut), for sequence number `seq` (high half 0
/// with ESN: where a fresh window puts it).
pub fn esp_forge(k: &SaKeys, esn: bool, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut packet = ESP_SPI.to_be_bytes().to_vec();
    packet.extend_from_slice(&seq.to_be_bytes());
    match k.integ {
        None => {
            // GCM: IV, `body` encrypted, tag.
            let body = &body[..body.len() / 4 * 4];
            let n = k.encr_key.len() - 4;
            let alg = if n == 16 {
                &aead::AES_128_GCM
            } else {
                &aead::AES_256_GCM
            };
            let key = aead::LessSafeKey::new(
                aead::UnboundKey::new(alg, &k.encr_key[..n]).expect("GCM key"),
            );
            let iv = (u64::from(seq) ^ 0x5a5a).to_be_bytes();
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&k.encr_key[n..]);
            nonce[4..].copy_from_slice(&iv);
            let mut aad = ESP_SPI.to_be_bytes().to_vec();
            if esn {
                aad.extend_from_slice(&0u32.to_be_bytes());
            }
            aad.extend_from_slice(&seq.to_be_bytes());
            let mut ct = body.to_vec();
            let tag = key
                .seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(&aad),
                    &mut ct,
                )
                .expect("GCM seal");
            packet.extend_from_slice(&iv);
            packet.extend_from_slice(&ct);
            packet.extend_from_slice(tag.as_ref());
        }
        Some(integ) => {
            // CBC: an IV, `body` (whole blocks) encrypted, then the ICV.
            let body = &body[..body.len() / 16 * 16];
            let mut prev = [0u8; 16];
            prev[..4].copy_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&prev);
            for block in body.chunks_exact(16) {
                let mut b = [0u8; 16];
                for (x, (p, c)) in b.iter_mut().zip(prev.iter().zip(block)) {
                    *x = p ^ c;
                }
                let mut ga = aes::cipher::generic_array::GenericArray::from(b);
                if k.encr_key.len() == 16 {
                    aes::Aes128::new_from_slice(&k.encr_key)
                        .expect("AES-128 key")
                        .encrypt_block(&mut ga);
                } else {
                    aes::Aes256::new_from_slice(&k.encr_key)
                        .expect("AES-256 key")
                        .encrypt_block(&mut ga);
                }
                prev.copy_from_slice(&ga);
                packet.extend_from_slice(&prev);
            }
            let alg = match integ {
                Integ::HmacSha256_128 => hmac::HMAC_SHA256,
                Integ::HmacSha384_192 => hmac::HMAC_SHA384,
                Integ::HmacSha512_256 => hmac::HMAC_SHA512,
            };
            let mut ctx = hmac::Context::with_key(&hmac::Key::new(alg, &k.integ_key));
            ctx.update(&packet);
            if esn {
                ctx.update(&0u32.to_be_bytes());
            }
            let tag = ctx.sign();
            packet.extend_from_slice(&tag.as_ref()[..integ.icv_len()]);
        }
    }
    packet
}
