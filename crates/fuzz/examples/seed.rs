//! Writes the seed corpora, `corpus/<target>/<name>`, from the project's
//! own test fixtures and from real exchanges in memory:
//!
//! - the hex fixtures of `crates/tunnel/tests/ike_wire.rs` (a hand-made
//!   IKE_SA_INIT and one captured from strongSwan) and of
//!   `crates/bgp/tests/wire/*.rs` (the BIRD capture, every message and
//!   attribute fixture), read from those files;
//! - the datagrams of real IKE_SA_INIT and IKE_AUTH exchanges with the
//!   project's `IkeSa` (`vpngw_fuzz::ResponderFixture`/`InitiatorFixture`),
//!   and the inner payloads of IKE_AUTH, CREATE_CHILD_SA and INFORMATIONAL;
//! - ESP packets sealed with the `esp_open` keys;
//! - runs of UDP datagrams and TCP segments of one flow for `offload`, and
//!   super-packets as a TUN device with offloads hands them over;
//! - `deploy/examples/*.toml`, as they are and with `psk_env` instead of
//!   `psk_file` (so that parsing goes past the key).
//!
//! Run by `seed.sh` (`cargo run --example seed`, from `crates/fuzz`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use vpngw_bgp::wire::{DecodeContext, Message as BgpMessage, PathAttribute};
use vpngw_fuzz::*;
use vpngw_tunnel::esp::sa::{OutboundSa, NEXT_IPV4, NEXT_IPV6, NEXT_NONE};
use vpngw_tunnel::ike::crypto::KeyExchange as Dh;
use vpngw_tunnel::ike::proposal::DhGroup;
use vpngw_tunnel::ike::wire::*;

/// Seeds by target, then by name.
#[derive(Default)]
struct Corpus(BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>);

impl Corpus {
    fn add(&mut self, target: &'static str, name: impl Into<String>, data: Vec<u8>) {
        let files = self.0.entry(target).or_default();
        if !files.values().any(|d| *d == data) {
            files.insert(name.into(), data);
        }
    }

    fn write(&self, dir: &Path) {
        for (target, files) in &self.0 {
            let d = dir.join(target);
            fs::create_dir_all(&d).unwrap();
            for (name, data) in files {
                fs::write(d.join(name), data).unwrap();
            }
            println!("{target}: {} seeds", files.len());
        }
    }
}

/// The string literals of a Rust source file (no raw strings; escapes are
/// kept as written, which is all hex fixtures need).
fn string_literals(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = src.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        if c == '"' && prev != '\'' {
            let mut lit = String::new();
            let mut escaped = false;
            for c in chars.by_ref() {
                if escaped {
                    lit.push(c);
                    escaped = false;
                } else if c == '\\' {
                    lit.push(c);
                    escaped = true;
                } else if c == '"' {
                    break;
                } else {
                    lit.push(c);
                }
            }
            out.push(lit);
            prev = '"';
        } else if c == '/' && chars.peek() == Some(&'/') {
            // A line comment: skip to its end (it may quote).
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
            prev = '\n';
        } else {
            prev = c;
        }
    }
    out
}

/// A literal as hex bytes: `#` comments and whitespace dropped, `{M}` (the
/// BGP tests' marker) spelled out. `None` if anything else is in it.
fn hex_literal(lit: &str) -> Option<Vec<u8>> {
    let lit = lit.replace("{M}", &"ff".repeat(16));
    let clean: String = lit
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<String>()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if clean.len() < 2
        || !clean.len().is_multiple_of(2)
        || !clean.chars().all(|c| c.is_ascii_hexdigit())
    {
        return None;
    }
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).ok())
        .collect()
}

fn hex_fixtures(file: &Path) -> Vec<Vec<u8>> {
    let src = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    string_literals(&src)
        .iter()
        .filter_map(|l| hex_literal(l))
        .collect()
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

const CONTEXTS: [(u8, DecodeContext); 3] = [
    (
        0,
        DecodeContext {
            four_octet_as: false,
            internal_peer: false,
        },
    ),
    (
        1,
        DecodeContext {
            four_octet_as: true,
            internal_peer: false,
        },
    ),
    (
        3,
        DecodeContext {
            four_octet_as: true,
            internal_peer: true,
        },
    ),
];

fn with(prefix: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(data);
    v
}

fn bgp(c: &mut Corpus, root: &Path) {
    let wire = root.join("crates/bgp/tests/wire");
    let mut files: Vec<PathBuf> = fs::read_dir(&wire)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    // ORIGIN IGP, AS_PATH 65001, NEXT_HOP 192.0.2.1, and 198.51.100.0/24:
    // what an attribute fixture is wrapped in to make an UPDATE of it.
    let base = hex_literal("40010100 40020602010000fde9 400304c0000201").unwrap();
    let nlri = hex_literal("18c63364").unwrap();
    for file in files {
        let name = stem(&file);
        for (i, bytes) in hex_fixtures(&file).into_iter().enumerate() {
            if let Ok(Some(n)) = BgpMessage::frame_length(&bytes) {
                // A message, or a stream of them (the BIRD capture).
                c.add(
                    "bgp_message",
                    format!("{name}-{i:02}-stream"),
                    with(&[1], &bytes),
                );
                let mut rest = bytes.as_slice();
                let mut k = 0;
                while let Ok(Some(n)) = BgpMessage::frame_length(rest) {
                    if n > rest.len() {
                        break;
                    }
                    let (frame, tail) = rest.split_at(n);
                    for (x, ctx) in CONTEXTS {
                        if BgpMessage::decode(frame, &ctx).is_ok() || x == 1 {
                            c.add(
                                "bgp_message",
                                format!("{name}-{i:02}-{k}-ctx{x}"),
                                with(&[x], frame),
                            );
                        }
                    }
                    if frame.get(18) == Some(&2) {
                        c.add(
                            "bgp_attributes",
                            format!("{name}-{i:02}-{k}-update"),
                            with(&[1], &frame[19..]),
                        );
                        c.add(
                            "bgp_attributes",
                            format!("{name}-{i:02}-{k}-update-old"),
                            with(&[0], &frame[19..]),
                        );
                    }
                    rest = tail;
                    k += 1;
                }
                let _ = n;
                continue;
            }
            // Attribute fixtures: alone, and inside an UPDATE.
            let any = CONTEXTS
                .iter()
                .find(|(_, ctx)| PathAttribute::decode(&bytes, ctx).is_ok());
            let x = any.map_or(1, |(x, _)| *x);
            c.add(
                "bgp_attributes",
                format!("{name}-{i:02}-attr"),
                with(&[x], &bytes),
            );
            if bytes.len() < 4000 {
                let mut attrs = base.clone();
                attrs.extend_from_slice(&bytes);
                let mut body = vec![0, 0];
                body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
                body.extend_from_slice(&attrs);
                body.extend_from_slice(&nlri);
                c.add(
                    "bgp_attributes",
                    format!("{name}-{i:02}-in-update"),
                    with(&[x], &body),
                );
            }
        }
    }
}

fn ike_payload_list() -> Vec<Payload> {
    let dh = Dh::new(DhGroup::Curve25519, &[9; 32]).unwrap();
    vec![
        ike_sa_payload(Spi::Empty),
        ike_sa_payload(Spi::Ike(IkeSpi::from(42))),
        esp_sa_payload(OUR_CHILD_SPI, true),
        Payload::Sa(vec![Proposal {
            proposal_num: 2,
            protocol_id: ProtocolId::ESP,
            spi: Spi::Child(7),
            transforms: vec![Transform {
                transform_type: 250,
                transform_id: 999,
                key_length: Some(128),
                attributes: vec![
                    Attribute::Tv {
                        attribute_type: 1,
                        value: 7,
                    },
                    Attribute::Tlv {
                        attribute_type: 2,
                        value: vec![1, 2, 3],
                    },
                ],
            }],
        }]),
        Payload::Ke(KeyExchange {
            dh_group: 31,
            data: dh.public().to_vec(),
        }),
        Payload::IdI(Identification::ipv4(I_IP)),
        Payload::IdR(Identification::fqdn("vpn.example.com")),
        Payload::IdI(Identification::ipv6(std::net::Ipv6Addr::LOCALHOST)),
        Payload::IdR(Identification::rfc822("a@example.com")),
        Payload::IdI(Identification::key_id(b"key")),
        Payload::Auth(Authentication {
            auth_method: AuthMethod::SHARED_KEY_MIC,
            data: vec![5; 32],
        }),
        Payload::Nonce(vec![3; 32]),
        Payload::Notify(Notify::with_spi(
            ProtocolId::ESP,
            Spi::Child(OUR_CHILD_SPI),
            NotifyType::REKEY_SA,
            vec![],
        )),
        Payload::Notify(Notify::new(NotifyType::COOKIE, vec![1; 8])),
        Payload::Notify(Notify::new(NotifyType::INVALID_KE_PAYLOAD, vec![0, 31])),
        Payload::Notify(Notify::with_spi(
            ProtocolId::IKE,
            Spi::Ike(IkeSpi::from(7)),
            NotifyType(40000),
            vec![1],
        )),
        Payload::Delete(Delete::ike()),
        Payload::Delete(Delete::esp(vec![OUR_CHILD_SPI, 2])),
        Payload::VendorId(b"strongSwan".to_vec()),
        Payload::TsI(vec![
            TrafficSelector::ipv4_any(),
            TrafficSelector::ipv6_any(),
        ]),
        Payload::TsR(vec![
            TrafficSelector::Ipv4AddrRange {
                ip_protocol_id: 6,
                start_port: 179,
                end_port: 179,
                starting_address: Ipv4Addr::new(169, 254, 21, 1),
                ending_address: Ipv4Addr::new(169, 254, 21, 1),
            },
            TrafficSelector::Unknown {
                ts_type: TsType(9),
                octet1: 0,
                data: vec![1, 2, 3, 4],
            },
        ]),
        Payload::Unknown(UnknownPayload {
            payload_type: PayloadType::CERTREQ,
            critical: false,
            body: vec![4, 1, 2],
        }),
        Payload::Unknown(UnknownPayload {
            payload_type: PayloadType::CP,
            critical: true,
            body: vec![1, 0, 0, 0],
        }),
        Payload::Unknown(UnknownPayload {
            payload_type: PayloadType(200),
            critical: false,
            body: vec![],
        }),
        Payload::Encrypted(Encrypted {
            next_payload: PayloadType::IDI,
            body: vec![0xee; 48],
        }),
        Payload::EncryptedFragment(EncryptedFragment {
            next_payload: PayloadType::NO_NEXT_PAYLOAD,
            fragment_number: 2,
            total_fragments: 3,
            body: vec![0xdd; 40],
        }),
    ]
}

fn name_of(p: &Payload) -> String {
    match p {
        Payload::Notify(n) => format!("n-{:?}", n.notify_type),
        other => format!("{:?}", other.payload_type()),
    }
    .to_lowercase()
    .replace(['(', ')'], "")
}

fn ike(c: &mut Corpus, root: &Path) {
    let r = ResponderFixture::new();
    let i = InitiatorFixture::new();

    // Whole datagrams: the fixtures of the wire tests, and real exchanges.
    for (k, bytes) in hex_fixtures(&root.join("crates/tunnel/tests/ike_wire.rs"))
        .into_iter()
        .enumerate()
    {
        if Message::decode(&bytes).is_ok() {
            c.add("ike_message", format!("ike_wire-{k:02}"), bytes);
        }
    }
    let mut rng = Rng::new(99);
    let mut responder = r.responder();
    responder.handle(r.now, sock(I_IP), &r.auth_request, &mut rng);
    let (auth_response, _) = drain(&mut responder);
    let mut datagrams = vec![
        ("r-init-request", r.init_request.clone()),
        ("r-init-response", r.init_response.clone()),
        ("r-auth-request", r.auth_request.clone()),
        ("i-init-request", i.init_request.clone()),
        ("i-init-response", i.init_response.clone()),
        ("i-auth-request", i.auth_request.clone()),
        ("i-auth-response", i.auth_response.clone()),
    ];
    for (k, d) in auth_response.into_iter().enumerate() {
        datagrams.push(if k == 0 {
            ("r-auth-response", d)
        } else {
            ("r-after-auth", d)
        });
    }
    for (name, d) in &datagrams {
        c.add("ike_message", *name, d.clone());
        c.add(
            "ike_message",
            format!("{name}-4500"),
            with(&[0, 0, 0, 0], d),
        );
    }

    // One payload at a time.
    let mut payloads = ike_payload_list();
    for (_, d) in &datagrams {
        payloads.extend(Message::decode(d).unwrap().payloads);
    }
    payloads.extend(r.auth_payloads.clone());
    payloads.extend(i.auth_payloads.clone());
    for (k, p) in payloads.iter().enumerate() {
        if let Some(input) = payload_input(p) {
            c.add("ike_payloads", format!("{k:02}-{}", name_of(p)), input);
        }
    }

    // Inner chains, as the SK payload carries them. Header octets: mode,
    // exchange, tweaks (see fuzz_targets/ike_sk.rs).
    const AUTH: u8 = 0;
    const CREATE_CHILD_SA: u8 = 1;
    const INFORMATIONAL: u8 = 2;
    let mut sk = |name: &str, mode: u8, exchange: u8, payloads: &[Payload]| {
        let (first, inner) = chain(payloads);
        let mut v = vec![mode, exchange, 0, first.0];
        v.extend_from_slice(&inner);
        c.add("ike_sk", name.to_string(), v);
    };
    let new_dh = Dh::new(DhGroup::Curve25519, &[0x33; 32]).unwrap();
    let ke = Payload::Ke(KeyExchange {
        dh_group: 31,
        data: new_dh.public().to_vec(),
    });
    let child_rekey = vec![
        Payload::Notify(Notify::with_spi(
            ProtocolId::ESP,
            Spi::Child(OUR_CHILD_SPI),
            NotifyType::REKEY_SA,
            Vec::new(),
        )),
        esp_sa_payload(0x3333_4444, false),
        Payload::Nonce(vec![0x77; 32]),
        Payload::TsI(vec![TrafficSelector::ipv4_any()]),
        Payload::TsR(vec![TrafficSelector::ipv4_any()]),
    ];
    let ike_rekey = vec![
        ike_sa_payload(Spi::Ike(IkeSpi::from(0x5555_6666_7777_8888))),
        Payload::Nonce(vec![0x66; 32]),
        ke,
    ];
    sk("r-auth", 0, AUTH, &r.auth_payloads);
    sk("r-auth-then-timers", 4, AUTH, &r.auth_payloads);
    sk("r-auth-twice", 8, AUTH, &r.auth_payloads);
    sk("r-auth-bad", 0, AUTH, &r.auth_payloads[..1]);
    sk("r-liveness", 2, INFORMATIONAL, &[]);
    sk(
        "r-delete-child",
        2,
        INFORMATIONAL,
        &[Payload::Delete(Delete::esp(vec![OUR_CHILD_SPI]))],
    );
    sk(
        "r-delete-ike",
        2,
        INFORMATIONAL,
        &[Payload::Delete(Delete::ike())],
    );
    sk("r-rekey-child", 2, CREATE_CHILD_SA, &child_rekey);
    sk("r-rekey-ike", 2, CREATE_CHILD_SA, &ike_rekey);
    sk("r-rekey-ike-timers", 6, CREATE_CHILD_SA, &ike_rekey);
    sk("i-auth", 1, AUTH, &i.auth_payloads);
    sk("i-auth-then-timers", 5, AUTH, &i.auth_payloads);
    sk(
        "i-auth-refused",
        1,
        AUTH,
        &[Payload::Notify(Notify::new(
            NotifyType::AUTHENTICATION_FAILED,
            Vec::new(),
        ))],
    );
    sk("i-liveness", 3, INFORMATIONAL, &[]);
    sk(
        "i-delete-child",
        3,
        INFORMATIONAL,
        &[Payload::Delete(Delete::esp(vec![OUR_CHILD_SPI]))],
    );
    sk(
        "i-delete-ike",
        3,
        INFORMATIONAL,
        &[Payload::Delete(Delete::ike())],
    );
    sk("i-rekey-child", 3, CREATE_CHILD_SA, &child_rekey);
    sk("i-rekey-ike", 3, CREATE_CHILD_SA, &ike_rekey);

    // The endpoint: records of a control octet, a length, a datagram.
    let record = |ctl: u8, d: &[u8]| {
        let mut v = vec![ctl];
        v.extend_from_slice(&(d.len() as u16).to_be_bytes());
        v.extend_from_slice(d);
        v
    };
    let init = &r.init_request;
    c.add("ike_endpoint", "init", with(&[0], &record(0, init)));
    c.add("ike_endpoint", "init-cookie", with(&[1], &record(0, init)));
    c.add(
        "ike_endpoint",
        "init-4500",
        with(&[0], &record(2, &with(&[0; 4], init))),
    );
    let mut twice = record(0, init);
    twice.extend(record(4 << 2, init));
    twice.extend(record(0, &r.auth_request));
    c.add("ike_endpoint", "init-retransmit-auth", with(&[0], &twice));
    let mut b = record(1, &i.init_response);
    b.extend(record(60 << 2, &i.auth_response));
    c.add("ike_endpoint", "peer-b-answers", with(&[0], &b));
}

/// An IPv4 packet of `proto` from 10.1.0.2 to 10.2.0.2 with `l4` (the
/// transport header and payload) and a valid header checksum.
fn ipv4(proto: u8, id: u16, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&[10, 1, 0, 2]);
    p[16..20].copy_from_slice(&[10, 2, 0, 2]);
    let sum: u32 = p.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    let c = !(((sum & 0xffff) + (sum >> 16)) as u16);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(l4);
    p
}

fn offload(c: &mut Corpus) {
    let record = |d: &[u8]| {
        let mut v = (d.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(d);
        v
    };
    let udp = |id: u16, sport: u16, len: usize| {
        let mut l4 = vec![0u8; 8 + len];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&5201u16.to_be_bytes());
        l4[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
        for (i, b) in l4[8..].iter_mut().enumerate() {
            *b = i as u8;
        }
        ipv4(17, id, &l4)
    };
    let tcp = |seq: u32, flags: u8, len: usize| {
        let mut l4 = vec![0u8; 20 + len];
        l4[0..2].copy_from_slice(&40000u16.to_be_bytes());
        l4[2..4].copy_from_slice(&5201u16.to_be_bytes());
        l4[4..8].copy_from_slice(&seq.to_be_bytes());
        l4[12] = 5 << 4;
        l4[13] = flags;
        ipv4(6, 1, &l4)
    };
    // Mode 0: a UDP run ending short, another flow, a longer datagram.
    let mut m = vec![0u8];
    for d in [udp(1, 40000, 200), udp(2, 40000, 200), udp(3, 40000, 90), udp(4, 40001, 200)] {
        m.extend(record(&d));
    }
    m.extend(record(&udp(5, 40001, 300)));
    c.add("offload", "udp-runs", m.clone());
    m[0] = 2;
    c.add("offload", "udp-runs-tcp-only", m);
    // Mode 0: TCP segments in order, a gap, a PSH.
    let mut m = vec![0u8];
    for (seq, flags, len) in [(100, 0x10, 300), (400, 0x10, 300), (700, 0x18, 100), (2000, 0x10, 300)] {
        m.extend(record(&tcp(seq, flags, len)));
    }
    c.add("offload", "tcp-segments", m);
    // Mode 1: a UDP GSO super-packet and a TCP TSO one, as TUN reads.
    let mut m = vec![1u8];
    let mut gso_udp = vec![1u8, 5, 28, 0, 200, 0, 20, 0, 6, 0];
    let mut big = udp(1, 40000, 700);
    big[24..26].copy_from_slice(&708u16.to_be_bytes());
    gso_udp.extend(big);
    m.extend(record(&gso_udp));
    let mut tso = vec![1u8, 1, 40, 0, 200, 0, 20, 0, 16, 0];
    tso.extend(tcp(100, 0x18, 700));
    m.extend(record(&tso));
    c.add("offload", "tun-reads", m);
}

fn esp(c: &mut Corpus) {
    let ipv4 = hex_literal("4500001c000100004001f7c9c0000201c6336401 0800f7ff00000000").unwrap();
    let ipv6 = hex_literal("6000000000083a40 20010db8000000000000000000000001 20010db8000000000000000000000002 8000 7fff 0000 0000").unwrap();
    let record = |d: &[u8]| {
        let mut v = (d.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(d);
        v
    };
    for (s, (encr, integ)) in ESP_SUITES.iter().enumerate() {
        let s = s as u8;
        for esn in [0u8, 8] {
            let k = esp_keys(*encr, *integ);
            let tx = OutboundSa::new(ESP_SPI, esn != 0, &k).unwrap();
            // Mode 0: sealed packets, the second one twice (a replay).
            let mut packets = Vec::new();
            for (inner, nh) in [(&ipv4, NEXT_IPV4), (&ipv6, NEXT_IPV6), (&ipv4, NEXT_NONE)] {
                let mut p = vec![0u8; tx.sealed_len(inner.len())];
                tx.seal(inner, nh, &mut p).unwrap();
                packets.push(p);
            }
            let mut raw = vec![s | esn];
            for p in [&packets[0], &packets[1], &packets[1], &packets[2]] {
                raw.extend(record(p));
            }
            c.add("esp_open", format!("s{s}-esn{}-sealed", esn / 8), raw);
            // Mode 1: inner packets to seal and open.
            let mut m1 = vec![s | esn | 0x10];
            m1.extend(record(&with(&[NEXT_IPV4], &ipv4)));
            m1.extend(record(&with(&[NEXT_IPV6], &ipv6)));
            m1.extend(record(&[NEXT_NONE]));
            c.add("esp_open", format!("s{s}-esn{}-round-trip", esn / 8), m1);
            // Mode 2: forged around a well-padded plaintext, sequence 1, 5, 3.
            let mut m2 = vec![s | esn | 0x20];
            for seq in [1u32, 5, 3] {
                let align = if integ.is_some() { 16 } else { 4 };
                let mut body = ipv4.clone();
                let pad = (align - (body.len() + 2) % align) % align;
                body.extend((1..=pad as u8).collect::<Vec<_>>());
                body.extend([pad as u8, NEXT_IPV4]);
                m2.extend(record(&with(&seq.to_be_bytes(), &body)));
            }
            c.add("esp_open", format!("s{s}-esn{}-forged", esn / 8), m2);
            // Mode 3: one octet changed.
            let mut m3 = vec![s | esn | 0x30];
            m3.extend(record(&with(&[9, 0x80], &ipv4)));
            c.add("esp_open", format!("s{s}-esn{}-changed", esn / 8), m3);
        }
    }
}

fn config(c: &mut Corpus, root: &Path) {
    let dir = root.join("deploy/examples");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        let name = stem(&f);
        c.add("config", name.clone(), text.clone().into_bytes());
        let env: String = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("psk_file") {
                    "psk_env = \"FUZZ_PSK\"".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        c.add("config", format!("{name}-psk-env"), env.into_bytes());
    }
}

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here.join("../..");
    let out = std::env::args()
        .nth(1)
        .map_or_else(|| here.join("corpus"), PathBuf::from);
    let mut c = Corpus::default();
    bgp(&mut c, &root);
    ike(&mut c, &root);
    esp(&mut c);
    offload(&mut c);
    config(&mut c, &root);
    c.write(&out);
}
