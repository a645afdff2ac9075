//! One hand-built fixture per message type, from the RFC layouts, checked
//! both ways.

use std::net::Ipv4Addr;

use vpngw_bgp::wire::iana::{CeaseSubcode, OpenSubcode};
use vpngw_bgp::wire::{
    Afi, AsPath, AttributeType, AttributeValue, Capability, CapabilityCode, Community, ErrorCode,
    Message, MpNextHop, MpReachNlri, MpUnreachNlri, Notification, Open, OptionalParameter, Origin,
    PathAttribute, RouteRefresh, Safi, Update,
};

use super::{both_ways, h, NEW, OLD};

/// Marker.
const M: &str = "ffffffff ffffffff ffffffff ffffffff";

pub(crate) fn keepalive() -> Vec<u8> {
    h(&format!("{M} 0013 04"))
}

#[test]
fn keepalive_both_ways() {
    both_ways(&keepalive(), &Message::Keepalive, &NEW);
}

/// OPEN from AS 65001, hold 90, identifier 10.0.0.1, with multiprotocol
/// IPv4 and IPv6 unicast, route refresh, 4-octet AS and graceful restart
/// (kept raw) in one Capabilities parameter.
pub(crate) fn open() -> (Vec<u8>, Message) {
    let bytes = h(&format!(
        "{M} 0037 01
         04 fde9 005a 0a000001
         1a 02 18
            01 04 0001 00 01
            01 04 0002 00 01
            02 00
            41 04 0000fde9
            40 02 0078"
    ));
    let open = Open {
        my_as: 65001,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 1),
        optional_parameters: vec![OptionalParameter::Capabilities(vec![
            Capability::Multiprotocol {
                afi: Afi::Ipv4,
                safi: Safi::Unicast,
            },
            Capability::Multiprotocol {
                afi: Afi::Ipv6,
                safi: Safi::Unicast,
            },
            Capability::RouteRefresh,
            Capability::FourOctetAs { asn: 65001 },
            Capability::Unknown {
                code: CapabilityCode::GracefulRestart,
                value: vec![0x00, 0x78],
            },
        ])],
    };
    (bytes, Message::Open(open))
}

#[test]
fn open_both_ways() {
    let (bytes, message) = open();
    both_ways(&bytes, &message, &OLD);
    let Message::Open(open) = message else {
        unreachable!()
    };
    assert_eq!(open.asn(), 65001);
    assert_eq!(open.capabilities().count(), 5);
}

#[test]
fn open_with_four_octet_as_and_one_parameter_per_capability() {
    let bytes = h(&format!(
        "{M} 0029 01
         04 5ba0 0000 c0000201
         0c 02 06 41 04 00030d40
            02 02 80 00"
    ));
    let open = Open {
        my_as: 23456,
        hold_time: 0,
        bgp_identifier: Ipv4Addr::new(192, 0, 2, 1),
        optional_parameters: vec![
            OptionalParameter::Capabilities(vec![Capability::FourOctetAs { asn: 200_000 }]),
            OptionalParameter::Capabilities(vec![Capability::Unknown {
                code: CapabilityCode::RouteRefreshCisco,
                value: vec![],
            }]),
        ],
    };
    both_ways(&bytes, &Message::Open(open.clone()), &OLD);
    assert_eq!(open.asn(), 200_000);
    let built = Open::new(
        200_000,
        0,
        Ipv4Addr::new(192, 0, 2, 1),
        vec![Capability::FourOctetAs { asn: 200_000 }],
    );
    assert_eq!(built.my_as, 23456);
    assert_eq!(built.asn(), 200_000);
}

#[test]
fn open_without_optional_parameters() {
    let bytes = h(&format!("{M} 001d 01 04 fde9 00b4 0a000001 00"));
    let open = Open::new(65001, 180, Ipv4Addr::new(10, 0, 0, 1), vec![]);
    both_ways(&bytes, &Message::Open(open), &OLD);
}

#[test]
fn open_with_rfc9072_extended_parameters() {
    // Opt Parm Len 255, Non-Ext OP Type 255, Extended Opt. Parm. Length 8,
    // then a Capabilities parameter with a two-octet length.
    let bytes = h(&format!(
        "{M} 0029 01
         04 fde9 005a 0a000001
         ff ff 0009
            02 0006 41 04 0000fde9"
    ));
    let Message::Open(open) = Message::decode(&bytes, &OLD).unwrap() else {
        panic!("not an OPEN")
    };
    assert_eq!(open.asn(), 65001);
    // Short parameters are re-encoded in the ordinary form.
    let mut out = Vec::new();
    open.encode(&mut out).unwrap();
    assert_eq!(out, h("04 fde9 005a 0a000001 08 02 06 41 04 0000fde9"));

    // Parameters longer than 255 octets switch to the extended form.
    let big = Open::new(
        65001,
        90,
        Ipv4Addr::new(10, 0, 0, 1),
        vec![
            Capability::Unknown {
                code: CapabilityCode::Fqdn,
                value: vec![7; 250],
            };
            2
        ],
    );
    let bytes = Message::Open(big.clone()).to_bytes(&OLD).unwrap();
    assert_eq!(bytes.get(28..33), Some(&[0xff, 0xff, 0x01, 0xfb, 0x02][..]));
    assert_eq!(Message::decode(&bytes, &OLD).unwrap(), Message::Open(big));
}

/// UPDATE withdrawing 10.1.0.0/16 and announcing 10.2.0.0/16 and
/// 192.168.1.0/24 with ORIGIN, a 4-octet AS_PATH, NEXT_HOP, MED and
/// COMMUNITIES.
pub(crate) fn update_ipv4() -> (Vec<u8>, Message) {
    let bytes = h(&format!(
        "{M} 0047 02
         0003 10 0a01
         0026
            40 01 01 00
            40 02 0a 02 02 0000fde9 0000fdea
            40 03 04 a9fe1501
            80 04 04 00000064
            c0 08 04 fde90064
         10 0a02
         18 c0a801"
    ));
    let update = Update {
        withdrawn_routes: vec!["10.1.0.0/16".parse().unwrap()],
        path_attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::from_sequence(vec![
                65001, 65002,
            ]))),
            PathAttribute::new(AttributeValue::NextHop(Ipv4Addr::new(169, 254, 21, 1))),
            PathAttribute::new(AttributeValue::MultiExitDisc(100)),
            PathAttribute::new(AttributeValue::Communities(vec![Community::new(
                65001, 100,
            )])),
        ],
        nlri: vec![
            "10.2.0.0/16".parse().unwrap(),
            "192.168.1.0/24".parse().unwrap(),
        ],
        ..Update::default()
    };
    (bytes, Message::Update(update))
}

#[test]
fn update_ipv4_both_ways() {
    let (bytes, message) = update_ipv4();
    both_ways(&bytes, &message, &NEW);
    let Message::Update(update) = message else {
        unreachable!()
    };
    assert_eq!(update.origin(), Some(Origin::Igp));
    assert_eq!(update.next_hop(), Some(Ipv4Addr::new(169, 254, 21, 1)));
    assert_eq!(update.as_path().map(|p| p.segments.len()), Some(1));
    assert!(update.attribute(AttributeType::Communities).is_some());
    assert_eq!(update.end_of_rib(), None);
}

/// UPDATE announcing 2001:db8:1::/48 in MP_REACH_NLRI with a global and a
/// link-local next hop.
pub(crate) fn update_ipv6() -> (Vec<u8>, Message) {
    let bytes = h(&format!(
        "{M} 0053 02
         0000
         003c
            80 0e 2c 0002 01 20
                20010db8000000000000000000000001
                fe800000000000000000000000000001
                00
                30 20010db80001
            40 01 01 00
            40 02 06 02 01 0000fde9"
    ));
    let update = Update {
        path_attributes: vec![
            PathAttribute::new(AttributeValue::MpReachNlri(MpReachNlri::Ipv6Unicast {
                next_hop: MpNextHop::Ipv6 {
                    global: "2001:db8::1".parse().unwrap(),
                    link_local: Some("fe80::1".parse().unwrap()),
                },
                nlri: vec!["2001:db8:1::/48".parse().unwrap()],
            })),
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::from_sequence(vec![65001]))),
        ],
        ..Update::default()
    };
    (bytes, Message::Update(update))
}

#[test]
fn update_ipv6_both_ways() {
    let (bytes, message) = update_ipv6();
    both_ways(&bytes, &message, &NEW);
}

#[test]
fn update_ipv6_withdrawal_both_ways() {
    let bytes = h(&format!(
        "{M} 0024 02
         0000 000d
            80 0f 0a 0002 01 30 20010db80001"
    ));
    let update = Update {
        path_attributes: vec![PathAttribute::new(AttributeValue::MpUnreachNlri(
            MpUnreachNlri::Ipv6Unicast(vec!["2001:db8:1::/48".parse().unwrap()]),
        ))],
        ..Update::default()
    };
    both_ways(&bytes, &Message::Update(update), &NEW);
}

#[test]
fn end_of_rib_markers() {
    let ipv4 = h(&format!("{M} 0017 02 0000 0000"));
    let Message::Update(update) = Message::decode(&ipv4, &NEW).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(update, Update::default());
    assert_eq!(update.end_of_rib(), Some((Afi::Ipv4, Safi::Unicast)));
    both_ways(&ipv4, &Message::Update(Update::default()), &NEW);

    let ipv6 = h(&format!("{M} 001d 02 0000 0006 80 0f 03 0002 01"));
    let Message::Update(update) = Message::decode(&ipv6, &NEW).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(update.end_of_rib(), Some((Afi::Ipv6, Safi::Unicast)));
    assert_eq!(update.treat_as_withdraw, None);
}

pub(crate) fn notification() -> (Vec<u8>, Message) {
    let bytes = h(&format!("{M} 0015 03 06 02"));
    let n = Notification::cease(CeaseSubcode::AdministrativeShutdown);
    (bytes, Message::Notification(n))
}

#[test]
fn notification_both_ways() {
    let (bytes, message) = notification();
    both_ways(&bytes, &message, &NEW);

    let bytes = h(&format!("{M} 0017 03 02 01 0004"));
    let n = Notification::new(
        ErrorCode::OpenMessage,
        OpenSubcode::UnsupportedVersionNumber,
        vec![0, 4],
    );
    both_ways(&bytes, &Message::Notification(n), &NEW);

    // Unknown codes survive.
    let bytes = h(&format!("{M} 0016 03 63 07 aa"));
    let n = Notification::new(ErrorCode::Unknown(0x63), 7, vec![0xaa]);
    both_ways(&bytes, &Message::Notification(n), &NEW);
}

pub(crate) fn route_refresh() -> (Vec<u8>, Message) {
    let bytes = h(&format!("{M} 0017 05 0002 00 01"));
    let rr = RouteRefresh {
        afi: Afi::Ipv6,
        safi: Safi::Unicast,
    };
    (bytes, Message::RouteRefresh(rr))
}

#[test]
fn route_refresh_both_ways() {
    let (bytes, message) = route_refresh();
    both_ways(&bytes, &message, &NEW);
    let bytes = h(&format!("{M} 0017 05 4001 00 80"));
    let rr = RouteRefresh {
        afi: Afi::Unknown(0x4001),
        safi: Safi::Unknown(0x80),
    };
    both_ways(&bytes, &Message::RouteRefresh(rr), &NEW);
}

#[test]
fn frame_length_waits_for_a_header() {
    let bytes = keepalive();
    for n in 0..19 {
        assert_eq!(Message::frame_length(&bytes[..n]), Ok(None));
    }
    let mut stream = update_ipv4().0;
    stream.extend_from_slice(&bytes);
    assert_eq!(Message::frame_length(&stream), Ok(Some(0x47)));
}

#[test]
fn ipv4_routes_in_mp_reach() {
    let bytes = h(&format!(
        "{M} 0034 02 0000 001d
            80 0e 0d 0001 01 04 c0000201 00 18 c63364
            40 01 01 02
            40 02 00
            80 0f 03 0001 01"
    ));
    let update = Update {
        path_attributes: vec![
            PathAttribute::new(AttributeValue::MpReachNlri(MpReachNlri::Ipv4Unicast {
                next_hop: MpNextHop::Ipv4(Ipv4Addr::new(192, 0, 2, 1)),
                nlri: vec!["198.51.100.0/24".parse().unwrap()],
            })),
            PathAttribute::new(AttributeValue::Origin(Origin::Incomplete)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::default())),
            PathAttribute::new(AttributeValue::MpUnreachNlri(MpUnreachNlri::Ipv4Unicast(
                vec![],
            ))),
        ],
        ..Update::default()
    };
    both_ways(&bytes, &Message::Update(update), &NEW);
}
