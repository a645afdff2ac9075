//! IKEv2 wire format: fixtures checked both ways, round trips, bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vpngw_tunnel::ike::wire::*;

fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<String>()
        .split_whitespace()
        .collect();
    hex::decode(clean).unwrap()
}

fn init_header() -> Header {
    Header {
        spi_i: IkeSpi::from(0x0011_2233_4455_6677),
        spi_r: IkeSpi::ZERO,
        exchange_type: ExchangeType::IKE_SA_INIT,
        flags: Flags::INITIATOR,
        message_id: 0,
    }
}

/// An IKE_SA_INIT request laid out by hand from RFC 7296 §1.2 and §3:
/// HDR, SAi1, KEi, Ni, N(NAT_DETECTION_SOURCE_IP),
/// N(NAT_DETECTION_DESTINATION_IP), N(IKEV2_FRAGMENTATION_SUPPORTED).
const IKE_SA_INIT_REQUEST: &str = "
    0011223344556677 0000000000000000   # SPIi, SPIr
    21 20 22 08 00000000 000000d0       # next SA, v2.0, IKE_SA_INIT, I, msgid 0, len 208
    22 00 0028                          # SA: next KE, len 40
      00 00 0024 01 01 00 03            #   proposal: last, len 36, #1, IKE, SPI size 0, 3 transforms
        03 00 000c 01 00 0014 800e 0100 #     ENCR AES_GCM_16, Key Length 256
        03 00 0008 02 00 0005           #     PRF HMAC_SHA2_256
        00 00 0008 04 00 001f           #     DH Curve25519 (last)
    28 00 0028 001f 0000                # KE: next Nonce, len 40, group 31
      000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
    29 00 0024                          # Nonce: next N, len 36
      a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf
    29 00 001c 00 00 4004               # N(NAT_DETECTION_SOURCE_IP), len 28
      1111111111111111111111111111111111111111
    29 00 001c 00 00 4005               # N(NAT_DETECTION_DESTINATION_IP), len 28
      2222222222222222222222222222222222222222
    00 00 0008 00 00 402e               # N(IKEV2_FRAGMENTATION_SUPPORTED), last
";

fn ike_sa_init_request() -> Message {
    Message {
        header: init_header(),
        payloads: vec![
            Payload::Sa(vec![Proposal {
                proposal_num: 1,
                protocol_id: ProtocolId::IKE,
                spi: Spi::Empty,
                transforms: vec![
                    Transform::with_key_len(1, 20, 256),
                    Transform::new(2, 5),
                    Transform::new(4, 31),
                ],
            }]),
            Payload::Ke(KeyExchange {
                dh_group: 31,
                data: (0..32).collect(),
            }),
            Payload::Nonce((0xa0..0xc0).collect()),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_SOURCE_IP,
                vec![0x11; 20],
            )),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                vec![0x22; 20],
            )),
            Payload::Notify(Notify::new(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                vec![],
            )),
        ],
    }
}

#[test]
fn ike_sa_init_fixture_both_ways() {
    let bytes = unhex(IKE_SA_INIT_REQUEST);
    assert_eq!(bytes.len(), 208);
    assert_eq!(Message::decode(&bytes).unwrap(), ike_sa_init_request());
    assert_eq!(ike_sa_init_request().encode().unwrap(), bytes);
}

/// One payload of every kind, for round trips.
fn every_payload() -> Vec<Payload> {
    vec![
        Payload::Sa(vec![
            Proposal {
                proposal_num: 1,
                protocol_id: ProtocolId::ESP,
                spi: Spi::Child(0xc001_d00d),
                transforms: vec![
                    Transform::with_key_len(1, 12, 128),
                    Transform::new(3, 12),
                    Transform::new(5, 0),
                    Transform {
                        transform_type: 250,
                        transform_id: 999,
                        key_length: None,
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
                    },
                ],
            },
            Proposal {
                proposal_num: 2,
                protocol_id: ProtocolId::IKE,
                spi: Spi::Ike(IkeSpi::from(42)),
                transforms: vec![],
            },
        ]),
        Payload::Ke(KeyExchange {
            dh_group: 14,
            data: vec![9; 256],
        }),
        Payload::IdI(Identification::ipv4(Ipv4Addr::new(192, 0, 2, 1))),
        Payload::IdR(Identification::fqdn("vpn.example.com")),
        Payload::IdI(Identification::ipv6(Ipv6Addr::LOCALHOST)),
        Payload::IdR(Identification::rfc822("a@example.com")),
        Payload::IdI(Identification::key_id(b"key")),
        Payload::Auth(Authentication {
            auth_method: AuthMethod::SHARED_KEY_MIC,
            data: vec![5; 32],
        }),
        Payload::Nonce(vec![3; 16]),
        Payload::Nonce(vec![4; 256]),
        Payload::Notify(Notify::with_spi(
            ProtocolId::ESP,
            Spi::Child(0x1234_5678),
            NotifyType::REKEY_SA,
            vec![],
        )),
        Payload::Notify(Notify::new(NotifyType::COOKIE, vec![1; 8])),
        Payload::Notify(Notify::with_spi(
            ProtocolId::IKE,
            Spi::Ike(IkeSpi::from(7)),
            NotifyType(40000),
            vec![1],
        )),
        Payload::Delete(Delete::ike()),
        Payload::Delete(Delete::esp(vec![1, 2, 0xffff_ffff])),
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
        Payload::TsR(vec![]),
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

#[test]
fn every_payload_round_trips_alone() {
    for p in every_payload() {
        let (first, bytes) = encode_payloads(std::slice::from_ref(&p)).unwrap();
        assert_eq!(first, p.payload_type());
        assert_eq!(
            decode_payloads(first, &bytes).unwrap(),
            vec![p.clone()],
            "{p:?}"
        );
        let msg = Message {
            header: init_header(),
            payloads: vec![p],
        };
        let datagram = msg.encode().unwrap();
        assert_eq!(Message::decode(&datagram).unwrap(), msg);
    }
}

#[test]
fn every_payload_round_trips_in_one_chain() {
    let mut payloads = every_payload();
    payloads.retain(|p| !matches!(p, Payload::EncryptedFragment(_)));
    let msg = Message {
        header: init_header(),
        payloads,
    };
    let datagram = msg.encode().unwrap();
    assert_eq!(Message::decode(&datagram).unwrap(), msg);
    assert_eq!(
        Message::decode(&datagram).unwrap().encode().unwrap(),
        datagram
    );
}

#[test]
fn truncation_at_every_length_is_an_error() {
    let bytes = unhex(IKE_SA_INIT_REQUEST);
    let datagram = {
        let mut payloads = every_payload();
        payloads.retain(|p| !matches!(p, Payload::EncryptedFragment(_)));
        Message {
            header: init_header(),
            payloads,
        }
        .encode()
        .unwrap()
    };
    for full in [bytes, datagram] {
        for n in 0..full.len() {
            let cut = &full[..n];
            assert!(Message::decode(cut).is_err(), "length {n}");
            // Same cut with a consistent header Length, so the payload
            // chain itself is what runs out.
            if n >= Header::LEN {
                let mut fixed = cut.to_vec();
                fixed[24..28].copy_from_slice(&(n as u32).to_be_bytes());
                let err = Message::decode(&fixed).unwrap_err();
                assert_eq!(
                    err.notify_type(),
                    NotifyType::INVALID_SYNTAX,
                    "length {n}: {err}"
                );
            }
        }
    }
}

#[test]
fn every_single_byte_change_never_panics() {
    let bytes = unhex(IKE_SA_INIT_REQUEST);
    for i in 0..bytes.len() {
        for v in [0u8, 1, 2, 3, 4, 0x7f, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            let _ = Message::decode(&b);
            let _ = decode_payloads(PayloadType::SA, &b[Header::LEN..]);
        }
    }
}

#[test]
fn unknown_critical_payload_is_rejected() {
    let unknown = Payload::Unknown(UnknownPayload {
        payload_type: PayloadType(150),
        critical: true,
        body: vec![1, 2, 3],
    });
    let msg = Message {
        header: init_header(),
        payloads: vec![Payload::Nonce(vec![1; 16]), unknown],
    };
    let err = Message::decode(&msg.encode().unwrap()).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnsupportedCriticalPayload {
            payload_type: PayloadType(150)
        }
    );
    assert_eq!(err.notify_type(), NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD);
    assert_eq!(err.notify_data(), vec![150]);
}

#[test]
fn unknown_non_critical_payload_is_kept() {
    let bytes = unhex(
        "
        0011223344556677 0000000000000000 96 20 25 20 00000005 00000037
        28 00 0007 616263                 # type 150, not critical, next Nonce
        00 80 0014 00000000000000000000000000000000 # Nonce with C set (ignored)
        ",
    );
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(msg.header.exchange_type, ExchangeType::INFORMATIONAL);
    assert!(msg.header.flags.response());
    assert_eq!(
        msg.payloads,
        vec![
            Payload::Unknown(UnknownPayload {
                payload_type: PayloadType(150),
                critical: false,
                body: b"abc".to_vec(),
            }),
            Payload::Nonce(vec![0; 16]),
        ]
    );
}

fn with_header(chain_first: u8, chain: &str) -> Vec<u8> {
    let chain = unhex(chain);
    let mut out = Vec::new();
    let framing = Framing {
        next_payload: PayloadType(chain_first),
        length: (28 + chain.len()) as u32,
    };
    init_header().write(framing, &mut out);
    out.extend_from_slice(&chain);
    out
}

#[test]
fn structural_errors_map_to_invalid_syntax() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("payload length < 4", with_header(43, "00 00 0003 00")),
        (
            "payload length past the end",
            with_header(43, "00 00 0009 0000"),
        ),
        (
            "trailing garbage after the chain",
            with_header(43, "00 00 0005 01 ff"),
        ),
        (
            "next payload announced, none there",
            with_header(43, "2b 00 0004"),
        ),
        (
            "nonce too short",
            with_header(40, "00 00 0013 000102030405060708090a0b0c0d0e"),
        ),
        (
            "transform length past proposal",
            with_header(
                33,
                "00 00 0014 00 00 0010 01 01 00 01 00 00 0010 01 00 000c",
            ),
        ),
        (
            "transform length < 8",
            with_header(
                33,
                "00 00 0014 00 00 0010 01 01 00 01 00 00 0004 01 00 000c",
            ),
        ),
        (
            "fewer transforms than announced",
            with_header(
                33,
                "00 00 0014 00 00 0010 01 01 00 02 00 00 0008 01 00 000c",
            ),
        ),
        (
            "more transforms than announced",
            with_header(
                33,
                "00 00 001c 00 00 0018 01 01 00 01 03 00 0008 01 00 000c 00 00 0008 02 00 0005",
            ),
        ),
        (
            "proposal says more, none there",
            with_header(33, "00 00 000c 02 00 0008 01 01 00 00"),
        ),
        (
            "bad proposal last substruc",
            with_header(33, "00 00 000c 05 00 0008 01 01 00 00"),
        ),
        (
            "bad SPI size",
            with_header(41, "00 00 000b 03 03 4000 aabbcc"),
        ),
        (
            "delete for IKE with SPIs",
            with_header(42, "00 00 000c 01 00 0001 00000001"),
        ),
        (
            "delete SPI count too big",
            with_header(42, "00 00 000c 03 04 0002 00000001"),
        ),
        (
            "IPv4 TS with wrong length",
            with_header(
                44,
                "00 00 001c 01 000000 07 00 0014 0000 ffff 00000000 ffffffff 00000000",
            ),
        ),
        ("TS count too big", with_header(44, "00 00 0008 02 000000")),
        ("data after SK", with_header(46, "29 00 0008 01020304 ff")),
        ("KE too short", with_header(34, "00 00 0006 001f")),
    ];
    for (what, bytes) in cases {
        let err = Message::decode(&bytes).expect_err(what);
        assert_eq!(
            err.notify_type(),
            NotifyType::INVALID_SYNTAX,
            "{what}: {err}"
        );
        assert_eq!(err.notify_data(), Vec::<u8>::new());
    }
}

#[test]
fn header_length_must_equal_datagram_length() {
    let mut bytes = unhex(IKE_SA_INIT_REQUEST);
    bytes.push(0);
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::LengthMismatch {
            header: 208,
            datagram: 209
        })
    );
    bytes.truncate(100);
    assert!(matches!(
        Message::decode(&bytes),
        Err(DecodeError::LengthMismatch { .. })
    ));
    assert!(matches!(
        Message::decode(&bytes[..27]),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn bad_major_version_maps_to_invalid_major_version() {
    let mut bytes = unhex(IKE_SA_INIT_REQUEST);
    bytes[17] = 0x10;
    let err = Message::decode(&bytes).unwrap_err();
    assert_eq!(err, DecodeError::InvalidMajorVersion { major: 1 });
    assert_eq!(err.notify_type(), NotifyType::INVALID_MAJOR_VERSION);
}

#[test]
fn sk_prefix_is_what_the_message_encoder_writes() {
    let mut header = init_header();
    header.exchange_type = ExchangeType::IKE_AUTH;
    header.message_id = 1;
    let body: Vec<u8> = (0..80).collect();
    let prefix = Encrypted::prefix(&header, PayloadType::IDI, body.len()).unwrap();
    assert_eq!(prefix.len(), Header::LEN + 4);
    let datagram = assemble(prefix.clone(), &body);
    let msg = Message {
        header,
        payloads: vec![Payload::Encrypted(Encrypted {
            next_payload: PayloadType::IDI,
            body,
        })],
    };
    assert_eq!(msg.encode().unwrap(), datagram);

    let decoded = Message::decode(&datagram).unwrap();
    let Some(Payload::Encrypted(sk)) = decoded.payloads.last() else {
        panic!("no SK")
    };
    assert_eq!(sk.authenticated_prefix(&datagram), Some(&prefix[..]));
    assert_eq!(sk.authenticated_prefix(&datagram[..50]), None);

    // After decryption, the inner chain starts at the SK's Next Payload.
    let inner = vec![
        Payload::IdI(Identification::ipv4(Ipv4Addr::new(192, 0, 2, 1))),
        Payload::Auth(Authentication {
            auth_method: AuthMethod::SHARED_KEY_MIC,
            data: vec![1; 32],
        }),
        Payload::Sa(vec![]),
        Payload::TsI(vec![TrafficSelector::ipv4_any()]),
        Payload::TsR(vec![TrafficSelector::ipv4_any()]),
    ];
    let (first, plain) = encode_payloads(&inner).unwrap();
    assert_eq!(first, PayloadType::IDI);
    assert_eq!(decode_payloads(first, &plain).unwrap(), inner);
}

#[test]
fn skf_prefix_includes_fragment_fields() {
    let header = init_header();
    let body = vec![7u8; 33];
    let prefix = EncryptedFragment::prefix(&header, PayloadType::IDI, 1, 2, body.len()).unwrap();
    assert_eq!(prefix.len(), Header::LEN + 8);
    assert_eq!(prefix[Header::LEN..], [35, 0, 0, 41, 0, 1, 0, 2]);
    let datagram = assemble(prefix.clone(), &body);
    let msg = Message::decode(&datagram).unwrap();
    let expected = EncryptedFragment {
        next_payload: PayloadType::IDI,
        fragment_number: 1,
        total_fragments: 2,
        body,
    };
    assert_eq!(
        msg.payloads,
        vec![Payload::EncryptedFragment(expected.clone())]
    );
    assert_eq!(expected.authenticated_prefix(&datagram), Some(&prefix[..]));
}

#[test]
fn encode_errors() {
    let sk = Payload::Encrypted(Encrypted {
        next_payload: PayloadType::IDI,
        body: vec![],
    });
    assert_eq!(
        encode_payloads(&[sk, Payload::Nonce(vec![0; 16])]),
        Err(EncodeError::EncryptedNotLast)
    );
    assert!(encode_payloads(&[Payload::Nonce(vec![0; 15])]).is_err());
    assert!(encode_payloads(&[Payload::VendorId(vec![0; 65532])]).is_err());
    assert!(encode_payloads(&[Payload::VendorId(vec![0; 65531])]).is_ok());
    assert!(encode_payloads(&[Payload::TsI(vec![TrafficSelector::ipv4_any(); 256])]).is_err());
    assert!(Encrypted::prefix(&init_header(), PayloadType::IDI, 65532).is_err());
    let d = Delete {
        protocol_id: ProtocolId::IKE,
        spis: vec![1],
    };
    assert!(encode_payloads(&[Payload::Delete(d)]).is_err());
}

#[test]
fn any_selectors() {
    let TrafficSelector::Ipv4AddrRange {
        start_port,
        end_port,
        starting_address,
        ending_address,
        ..
    } = TrafficSelector::ipv4_any()
    else {
        panic!()
    };
    assert_eq!((start_port, end_port), (0, 65535));
    assert_eq!(starting_address, Ipv4Addr::UNSPECIFIED);
    assert_eq!(ending_address, Ipv4Addr::BROADCAST);
    assert_eq!(
        TrafficSelector::ipv6_any().ts_type(),
        TsType::TS_IPV6_ADDR_RANGE
    );
    assert_eq!(TrafficSelector::ipv4_any().describe(), "0.0.0.0/0");
    assert_eq!(TrafficSelector::ipv6_any().describe(), "::/0");
    let v4 = |a: &str, b: &str, proto: u8, ports: (u16, u16)| TrafficSelector::Ipv4AddrRange {
        ip_protocol_id: proto,
        start_port: ports.0,
        end_port: ports.1,
        starting_address: a.parse().unwrap(),
        ending_address: b.parse().unwrap(),
    };
    assert_eq!(
        v4("10.1.0.0", "10.1.255.255", 0, (0, 65535)).describe(),
        "10.1.0.0/16"
    );
    assert_eq!(
        v4("10.1.0.7", "10.1.0.7", 0, (0, 65535)).describe(),
        "10.1.0.7/32"
    );
    assert_eq!(
        v4("10.1.0.1", "10.1.0.9", 0, (0, 65535)).describe(),
        "10.1.0.1-10.1.0.9"
    );
    assert_eq!(
        v4("10.1.0.0", "10.1.0.255", 6, (443, 443)).describe(),
        "10.1.0.0/24[6/443-443]"
    );
}

// ---- proptest ----

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn spi() -> impl Strategy<Value = Spi> {
    prop_oneof![
        Just(Spi::Empty),
        any::<u32>().prop_map(Spi::Child),
        any::<[u8; 8]>().prop_map(|a| Spi::Ike(IkeSpi(a))),
    ]
}

fn attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        // Type 14 in TV form is the Key Length field.
        (0u16..0x8000, any::<u16>())
            .prop_filter("key length", |(t, _)| *t != ATTR_KEY_LENGTH)
            .prop_map(|(attribute_type, value)| Attribute::Tv {
                attribute_type,
                value
            }),
        (0u16..0x8000, bytes(8)).prop_map(|(attribute_type, value)| Attribute::Tlv {
            attribute_type,
            value
        }),
    ]
}

fn transform() -> impl Strategy<Value = Transform> {
    (
        any::<u8>(),
        any::<u16>(),
        any::<Option<u16>>(),
        prop::collection::vec(attribute(), 0..3),
    )
        .prop_map(
            |(transform_type, transform_id, key_length, attributes)| Transform {
                transform_type,
                transform_id,
                key_length,
                attributes,
            },
        )
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (
        any::<u8>(),
        any::<u8>(),
        spi(),
        prop::collection::vec(transform(), 0..5),
    )
        .prop_map(|(proposal_num, protocol, spi, transforms)| Proposal {
            proposal_num,
            protocol_id: ProtocolId(protocol),
            spi,
            transforms,
        })
}

fn selector() -> impl Strategy<Value = TrafficSelector> {
    prop_oneof![
        (
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<[u8; 4]>()
        )
            .prop_map(|(p, s, e, a, b)| TrafficSelector::Ipv4AddrRange {
                ip_protocol_id: p,
                start_port: s,
                end_port: e,
                starting_address: a.into(),
                ending_address: b.into(),
            }),
        (
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>()
        )
            .prop_map(|(p, s, e, a, b)| TrafficSelector::Ipv6AddrRange {
                ip_protocol_id: p,
                start_port: s,
                end_port: e,
                starting_address: a.into(),
                ending_address: b.into(),
            }),
        (
            any::<u8>().prop_filter("known", |t| *t != 7 && *t != 8),
            any::<u8>(),
            bytes(12)
        )
            .prop_map(|(t, octet1, data)| TrafficSelector::Unknown {
                ts_type: TsType(t),
                octet1,
                data
            }),
    ]
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        prop::collection::vec(proposal(), 0..3).prop_map(Payload::Sa),
        (any::<u16>(), bytes(64))
            .prop_map(|(dh_group, data)| Payload::Ke(KeyExchange { dh_group, data })),
        (any::<u8>(), bytes(20), any::<bool>()).prop_map(|(t, data, i)| {
            let id = Identification {
                id_type: IdType(t),
                data,
            };
            if i {
                Payload::IdI(id)
            } else {
                Payload::IdR(id)
            }
        }),
        (any::<u8>(), bytes(40)).prop_map(|(m, data)| Payload::Auth(Authentication {
            auth_method: AuthMethod(m),
            data
        })),
        prop::collection::vec(any::<u8>(), 16..=256).prop_map(Payload::Nonce),
        (any::<u8>(), spi(), any::<u16>(), bytes(24)).prop_map(|(p, spi, t, data)| {
            Payload::Notify(Notify::with_spi(ProtocolId(p), spi, NotifyType(t), data))
        }),
        prop_oneof![
            Just(Delete::ike()),
            (2u8.., prop::collection::vec(any::<u32>(), 0..4)).prop_map(|(p, spis)| Delete {
                protocol_id: ProtocolId(p),
                spis
            }),
        ]
        .prop_map(Payload::Delete),
        bytes(20).prop_map(Payload::VendorId),
        (prop::collection::vec(selector(), 0..4), any::<bool>()).prop_map(|(ts, i)| if i {
            Payload::TsI(ts)
        } else {
            Payload::TsR(ts)
        }),
        (any::<u8>(), any::<bool>(), bytes(16))
            .prop_filter("decoded types", |(t, c, _)| {
                !matches!(t, 0 | 33..=36 | 39..=46 | 53) && (!*c || PayloadType(*t).is_recognized())
            })
            .prop_map(|(t, critical, body)| Payload::Unknown(UnknownPayload {
                payload_type: PayloadType(t),
                critical,
                body
            })),
    ]
}

fn last_payload() -> impl Strategy<Value = Option<Payload>> {
    prop_oneof![
        Just(None),
        (any::<u8>(), bytes(64)).prop_map(|(n, body)| Some(Payload::Encrypted(Encrypted {
            next_payload: PayloadType(n),
            body
        }))),
        (any::<u8>(), any::<u16>(), any::<u16>(), bytes(64)).prop_map(|(n, f, t, body)| Some(
            Payload::EncryptedFragment(EncryptedFragment {
                next_payload: PayloadType(n),
                fragment_number: f,
                total_fragments: t,
                body
            })
        )),
    ]
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(|(i, r, x, f, m)| Header {
            spi_i: IkeSpi::from(i),
            spi_r: IkeSpi::from(r),
            exchange_type: ExchangeType(x),
            flags: Flags(f),
            message_id: m,
        })
}

proptest! {
    #[test]
    fn message_round_trip(
        header in header(),
        mut payloads in prop::collection::vec(payload(), 0..8),
        last in last_payload(),
    ) {
        payloads.extend(last);
        let msg = Message { header, payloads };
        let datagram = msg.encode().unwrap();
        prop_assert_eq!(Message::decode(&datagram).unwrap(), msg);
    }

    #[test]
    fn random_bytes_never_panic(data in bytes(400), first in any::<u8>()) {
        let _ = Message::decode(&data);
        let _ = decode_payloads(PayloadType(first), &data);
        let _ = Header::peek(&data);
    }
}

/// An IKE_SA_INIT request from strongSwan 5.9.8 (Debian 12 charon), captured in network
/// namespaces: charon in `wirecap-a` (192.0.2.1) with `proposals =
/// aes256gcm16-prfsha256-x25519` and `encap = yes` initiating to 192.0.2.2
/// over a veth pair (no responder), the strongswan.conf and swanctl.conf of
/// `netns-tests/src/strongswan.rs`;
/// `ip netns exec wirecap-a tcpdump -i wc-a -c 1 -w init.pcap udp port 500`,
/// then the UDP payload of the one packet, in hex.
const STRONGSWAN_IKE_SA_INIT: &str = "
    8c9dafb30755aa0d00000000000000002120220800000000000000e822000028
    00000024010100030300000c01000014800e0100030000080200000500000008
    0400001f28000028001f0000ef2317c03a9efaffdfb55fad726803542914e5e2
    75f87638fcc1557c7f5372302900002419de2e4e22dc2807584ff768079bdf2f
    40c587c879609de447950b850702b49f2900001c000040045c8d4ffc998b5cc7
    3b9ab2f442e8d36e58b7335c2900001c0000400569412d43076a535b62c51f95
    a9cce8b81dde0335290000080000402e290000100000402f0002000300040005
    0000000800004016
";

#[test]
fn strongswan_ike_sa_init_request() {
    let bytes = unhex(STRONGSWAN_IKE_SA_INIT);
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(
        msg.header,
        Header {
            spi_i: IkeSpi::from(0x8c9d_afb3_0755_aa0d),
            spi_r: IkeSpi::ZERO,
            exchange_type: ExchangeType::IKE_SA_INIT,
            flags: Flags::INITIATOR,
            message_id: 0,
        }
    );
    let types: Vec<_> = msg
        .payloads
        .iter()
        .map(|p| {
            if let Payload::Notify(n) = p {
                format!("N({:?})", n.notify_type)
            } else {
                format!("{:?}", p.payload_type())
            }
        })
        .collect();
    assert_eq!(
        types,
        [
            "SA",
            "KE",
            "NONCE",
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)",
            "N(IKEV2_FRAGMENTATION_SUPPORTED)",
            "N(SIGNATURE_HASH_ALGORITHMS)",
            "N(NotifyType(16406))", // REDIRECT_SUPPORTED (RFC 5685)
        ]
    );
    assert_eq!(
        msg.payloads[0],
        Payload::Sa(vec![Proposal {
            proposal_num: 1,
            protocol_id: ProtocolId::IKE,
            spi: Spi::Empty,
            transforms: vec![
                Transform::with_key_len(1, 20, 256),
                Transform::new(2, 5),
                Transform::new(4, 31),
            ],
        }])
    );
    let Payload::Ke(ke) = &msg.payloads[1] else {
        panic!("KE")
    };
    assert_eq!((ke.dh_group, ke.data.len()), (31, 32));
    let Payload::Nonce(nonce) = &msg.payloads[2] else {
        panic!("Nonce")
    };
    assert_eq!(nonce.len(), 32);
    let Payload::Notify(hash_algs) = &msg.payloads[6] else {
        panic!("N")
    };
    assert_eq!(hash_algs.data, [0, 2, 0, 3, 0, 4, 0, 5]);
    assert_eq!(msg.encode().unwrap(), bytes);
}
