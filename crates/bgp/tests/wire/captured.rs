//! Messages captured from a real peer: BIRD 2.0.12.
//!
//! Capture procedure (run as root; nothing leaves the namespace):
//!
//! ```text
//! ip netns add vgh-bgpcap && ip -n vgh-bgpcap link set lo up
//!
//! # bird.conf
//! router id 127.0.0.1;
//! protocol device {}
//! protocol static s4 { ipv4; route 198.51.100.0/24 blackhole;
//!                      route 203.0.113.128/25 blackhole; }
//! protocol static s6 { ipv6; route 2001:db8:100::/48 blackhole; }
//! protocol bgp peer {
//!   local 127.0.0.1 port 1179 as 65001;
//!   neighbor 127.0.0.2 port 179 as 65002;
//!   multihop; hold time 90;
//!   ipv4 { import none; export all; next hop self; };
//!   ipv6 { import none; export all; next hop address 2001:db8::1; };
//! }
//!
//! # A listener on 127.0.0.2:179 inside the namespace (a few lines of
//! # Python standing in for `nc -l`) accepts BIRD's connection, sends an
//! # OPEN (AS 65002, hold 90, id 127.0.0.2, multiprotocol IPv4 and IPv6
//! # unicast, route refresh, 4-octet AS 65002) and a KEEPALIVE, and
//! # records every octet BIRD sends in the next 6 seconds:
//! ip netns exec vgh-bgpcap python3 listen.py &
//! ip netns exec vgh-bgpcap bird -c bird.conf -s bird.ctl -P bird.pid
//! sleep 16; kill $(cat bird.pid); ip netns delete vgh-bgpcap
//! xxd -p peer.bin
//! ```
//!
//! BIRD sent, in order: OPEN, KEEPALIVE, an IPv4 UPDATE, the IPv4
//! End-of-RIB, an IPv6 UPDATE (MP_REACH_NLRI) and the IPv6 End-of-RIB.

use std::net::Ipv4Addr;

use vpngw_bgp::wire::{
    Afi, AsPath, AttributeValue, Capability, CapabilityCode, Message, MessageType, MpNextHop,
    MpReachNlri, Origin, PathAttribute, Safi, Update,
};

use super::{h, NEW};

/// The byte stream BIRD sent, one message a line.
const STREAM: &str = "
    ffffffffffffffffffffffffffffffff 003b 01 04 fde9 005a 7f000001
        1e 02 1c 01040001 0001 01040002 0001 0200 40020078 41040000fde9 4600 4700
    ffffffffffffffffffffffffffffffff 0013 04
    ffffffffffffffffffffffffffffffff 0034 02 0000
        0014 40010100 40020602010000fde9 4003047f000001
        18c63364 19cb007180
    ffffffffffffffffffffffffffffffff 0017 02 0000 0000
    ffffffffffffffffffffffffffffffff 0044 02 0000
        002d 900e001c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80100
             40010100 40020602010000fde9
    ffffffffffffffffffffffffffffffff 001d 02 0000 0006 800f03000201
";

/// Splits the stream with [`Message::frame_length`], as the driver will.
pub(crate) fn frames() -> Vec<Vec<u8>> {
    let stream = h(STREAM);
    let mut rest = stream.as_slice();
    let mut out = Vec::new();
    while let Some(n) = Message::frame_length(rest).unwrap() {
        let (frame, tail) = rest.split_at(n);
        out.push(frame.to_vec());
        rest = tail;
    }
    assert!(rest.is_empty());
    out
}

#[test]
fn bird_stream_frames_and_decodes() {
    let types: Vec<MessageType> = frames()
        .iter()
        .map(|f| Message::decode(f, &NEW).unwrap().message_type())
        .collect();
    use MessageType::{Keepalive as K, Open as O, Update as U};
    assert_eq!(types, vec![O, K, U, U, U, U]);
}

#[test]
fn bird_open() {
    let frames = frames();
    let Message::Open(open) = Message::decode(&frames[0], &NEW).unwrap() else {
        panic!("not an OPEN")
    };
    assert_eq!(open.asn(), 65001);
    assert_eq!(open.hold_time, 90);
    assert_eq!(open.bgp_identifier, Ipv4Addr::new(127, 0, 0, 1));
    let caps: Vec<&Capability> = open.capabilities().collect();
    assert_eq!(
        caps,
        [
            &Capability::Multiprotocol {
                afi: Afi::Ipv4,
                safi: Safi::Unicast
            },
            &Capability::Multiprotocol {
                afi: Afi::Ipv6,
                safi: Safi::Unicast
            },
            &Capability::RouteRefresh,
            &Capability::Unknown {
                code: CapabilityCode::GracefulRestart,
                value: vec![0x00, 0x78]
            },
            &Capability::FourOctetAs { asn: 65001 },
            &Capability::Unknown {
                code: CapabilityCode::EnhancedRouteRefresh,
                value: vec![]
            },
            &Capability::Unknown {
                code: CapabilityCode::LongLivedGracefulRestart,
                value: vec![]
            },
        ]
    );
    assert_eq!(Message::Open(open).to_bytes(&NEW).unwrap(), frames[0]);
}

#[test]
fn bird_ipv4_update() {
    let frames = frames();
    let update = Update {
        path_attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::from_sequence(vec![65001]))),
            PathAttribute::new(AttributeValue::NextHop(Ipv4Addr::new(127, 0, 0, 1))),
        ],
        nlri: vec![
            "198.51.100.0/24".parse().unwrap(),
            "203.0.113.128/25".parse().unwrap(),
        ],
        ..Update::default()
    };
    super::both_ways(&frames[2], &Message::Update(update), &NEW);
}

#[test]
fn bird_end_of_rib() {
    let frames = frames();
    for (frame, family) in [
        (&frames[3], (Afi::Ipv4, Safi::Unicast)),
        (&frames[5], (Afi::Ipv6, Safi::Unicast)),
    ] {
        let Message::Update(u) = Message::decode(frame, &NEW).unwrap() else {
            panic!("not an UPDATE")
        };
        assert_eq!(u.end_of_rib(), Some(family));
        assert_eq!(&Message::Update(u).to_bytes(&NEW).unwrap(), frame);
    }
}

#[test]
fn bird_ipv6_update() {
    let frames = frames();
    let Message::Update(update) = Message::decode(&frames[4], &NEW).unwrap() else {
        panic!("not an UPDATE")
    };
    let want = Update {
        path_attributes: vec![
            PathAttribute::new(AttributeValue::MpReachNlri(MpReachNlri::Ipv6Unicast {
                next_hop: MpNextHop::Ipv6 {
                    global: "2001:db8::1".parse().unwrap(),
                    link_local: None,
                },
                nlri: vec!["2001:db8:100::/48".parse().unwrap()],
            })),
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::from_sequence(vec![65001]))),
        ],
        ..Update::default()
    };
    assert_eq!(update, want);
    // BIRD sends MP_REACH_NLRI with the Extended Length bit although its 28
    // octets fit a one-octet length; we write the one-octet form.
    let ours = Message::Update(update).to_bytes(&NEW).unwrap();
    let expected = h("
        ffffffffffffffffffffffffffffffff 0043 02 0000
        002c 800e1c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80100
             40010100 40020602010000fde9");
    assert_eq!(ours, expected);
    assert_eq!(ours.len() + 1, frames[4].len());
}
