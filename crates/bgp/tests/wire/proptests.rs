//! Property tests: OPEN and UPDATE survive encode → decode unchanged, and
//! no input makes a decoder panic.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;

use vpngw_bgp::wire::{
    Afi, Aggregator, AsPath, AsPathSegment, AsPathSegmentType, AttributeFlags, AttributeType,
    AttributeValue, Capability, CapabilityCode, Community, DecodeContext, EncodeError, Message,
    MpNextHop, MpReachNlri, MpUnreachNlri, Open, OptionalParameter, Origin, PathAttribute, Safi,
    Update,
};

use super::messages::{open, update_ipv4, update_ipv6};

fn ipv4_net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
}

fn ipv6_net() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())
}

fn host() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>()
        .prop_map(Ipv4Addr::from)
        .prop_filter("a host address", |a| {
            !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast()
        })
}

fn asn(four_octet: bool) -> BoxedStrategy<u32> {
    if four_octet {
        any::<u32>().boxed()
    } else {
        (0u32..=0xffff).boxed()
    }
}

fn as_path(four_octet: bool) -> impl Strategy<Value = AsPath> {
    let segment_type = prop_oneof![
        Just(AsPathSegmentType::AsSet),
        Just(AsPathSegmentType::AsSequence),
        Just(AsPathSegmentType::AsConfedSequence),
        Just(AsPathSegmentType::AsConfedSet),
    ];
    let segment = (segment_type, prop::collection::vec(asn(four_octet), 1..12))
        .prop_map(|(segment_type, asns)| AsPathSegment { segment_type, asns });
    prop::collection::vec(segment, 0..4).prop_map(|segments| AsPath { segments })
}

fn aggregator(four_octet: bool) -> impl Strategy<Value = Aggregator> {
    (asn(four_octet), any::<u32>()).prop_map(|(asn, a)| Aggregator {
        asn,
        address: Ipv4Addr::from(a),
    })
}

fn mp_next_hop() -> impl Strategy<Value = MpNextHop> {
    prop_oneof![
        any::<u32>().prop_map(|a| MpNextHop::Ipv4(Ipv4Addr::from(a))),
        (any::<u128>(), proptest::option::of(any::<u128>())).prop_map(|(g, ll)| {
            MpNextHop::Ipv6 {
                global: Ipv6Addr::from(g),
                link_local: ll.map(Ipv6Addr::from),
            }
        }),
    ]
}

fn ipv6_next_hop() -> impl Strategy<Value = MpNextHop> {
    mp_next_hop().prop_filter("IPv6", |n| matches!(n, MpNextHop::Ipv6 { .. }))
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn mp_reach() -> impl Strategy<Value = MpReachNlri> {
    prop_oneof![
        (mp_next_hop(), prop::collection::vec(ipv4_net(), 0..6))
            .prop_map(|(next_hop, nlri)| MpReachNlri::Ipv4Unicast { next_hop, nlri }),
        (ipv6_next_hop(), prop::collection::vec(ipv6_net(), 0..6))
            .prop_map(|(next_hop, nlri)| MpReachNlri::Ipv6Unicast { next_hop, nlri }),
        (any::<u8>(), bytes(20), bytes(20)).prop_map(|(safi, next_hop, nlri)| {
            MpReachNlri::Other {
                afi: Afi::Unknown(25),
                safi: Safi::from(safi),
                next_hop,
                nlri,
            }
        }),
    ]
}

fn mp_unreach() -> impl Strategy<Value = MpUnreachNlri> {
    prop_oneof![
        prop::collection::vec(ipv4_net(), 0..6).prop_map(MpUnreachNlri::Ipv4Unicast),
        prop::collection::vec(ipv6_net(), 0..6).prop_map(MpUnreachNlri::Ipv6Unicast),
        (any::<u8>(), bytes(20)).prop_map(|(safi, withdrawn)| MpUnreachNlri::Other {
            afi: Afi::Unknown(25),
            safi: Safi::from(safi),
            withdrawn,
        }),
    ]
}

fn unknown() -> impl Strategy<Value = PathAttribute> {
    let flags = prop_oneof![Just(0x80u8), Just(0xa0), Just(0xc0), Just(0xe0)];
    (flags, 100u8..=200, bytes(300)).prop_map(|(flags, code, value)| PathAttribute {
        flags: AttributeFlags(flags),
        value: AttributeValue::Unknown {
            type_code: AttributeType::from(code),
            value,
        },
    })
}

fn other_attribute(ctx: DecodeContext) -> BoxedStrategy<PathAttribute> {
    let four = ctx.four_octet_as;
    let mut choices: Vec<BoxedStrategy<AttributeValue>> = vec![
        any::<u32>().prop_map(AttributeValue::MultiExitDisc).boxed(),
        Just(AttributeValue::AtomicAggregate).boxed(),
        aggregator(four)
            .prop_map(AttributeValue::Aggregator)
            .boxed(),
        prop::collection::vec(any::<u32>().prop_map(Community), 1..20)
            .prop_map(AttributeValue::Communities)
            .boxed(),
        mp_reach().prop_map(AttributeValue::MpReachNlri).boxed(),
        mp_unreach().prop_map(AttributeValue::MpUnreachNlri).boxed(),
    ];
    if ctx.internal_peer {
        choices.push(any::<u32>().prop_map(AttributeValue::LocalPref).boxed());
    }
    if !four {
        choices.push(as_path(true).prop_map(AttributeValue::As4Path).boxed());
        choices.push(
            aggregator(true)
                .prop_map(AttributeValue::As4Aggregator)
                .boxed(),
        );
    }
    let known = proptest::strategy::Union::new(choices).prop_map(PathAttribute::new);
    let partial = any::<bool>();
    prop_oneof![
        3 => (known, partial).prop_map(|(mut a, p)| {
            // P is kept on optional transitive attributes.
            if p && a.flags == AttributeFlags::OPTIONAL_TRANSITIVE {
                a.flags = a.flags.with_partial();
            }
            a
        }),
        1 => unknown(),
    ]
    .boxed()
}

fn context() -> impl Strategy<Value = DecodeContext> {
    (any::<bool>(), any::<bool>()).prop_map(|(four_octet_as, internal_peer)| DecodeContext {
        four_octet_as,
        internal_peer,
    })
}

fn update(ctx: DecodeContext) -> impl Strategy<Value = Update> {
    let origin = prop_oneof![
        Just(Origin::Igp),
        Just(Origin::Egp),
        Just(Origin::Incomplete)
    ];
    (
        prop::collection::vec(ipv4_net(), 0..8),
        prop::collection::vec(ipv4_net(), 0..8),
        any::<bool>(),
        origin,
        as_path(ctx.four_octet_as),
        host(),
        prop::collection::vec(other_attribute(ctx), 0..6),
    )
        .prop_map(
            |(withdrawn_routes, nlri, mandatory, origin, path, next_hop, others)| {
                let announces = !nlri.is_empty()
                    || others
                        .iter()
                        .any(|a| a.type_code() == AttributeType::MpReachNlri);
                let mut path_attributes = Vec::new();
                if mandatory || announces {
                    path_attributes.push(PathAttribute::new(AttributeValue::Origin(origin)));
                    path_attributes.push(PathAttribute::new(AttributeValue::AsPath(path)));
                    path_attributes.push(PathAttribute::new(AttributeValue::NextHop(next_hop)));
                }
                path_attributes.extend(others);
                let mut seen = HashSet::new();
                path_attributes.retain(|a| seen.insert(u8::from(a.type_code())));
                Update {
                    withdrawn_routes,
                    path_attributes,
                    nlri,
                    ..Update::default()
                }
            },
        )
}

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        (any::<u16>(), any::<u8>()).prop_map(|(afi, safi)| Capability::Multiprotocol {
            afi: Afi::from(afi),
            safi: Safi::from(safi),
        }),
        Just(Capability::RouteRefresh),
        (1u32..).prop_map(|asn| Capability::FourOctetAs { asn }),
        (any::<u8>(), bytes(16))
            .prop_filter("not a decoded capability", |(code, _)| ![1, 2, 65]
                .contains(code))
            .prop_map(|(code, value)| Capability::Unknown {
                code: CapabilityCode::from(code),
                value,
            }),
    ]
}

fn open_message() -> impl Strategy<Value = Open> {
    (
        1u16..,
        prop_oneof![Just(0u16), 3u16..],
        1u32..,
        prop::collection::vec(prop::collection::vec(capability(), 0..6), 0..3),
    )
        .prop_map(|(my_as, hold_time, id, params)| Open {
            my_as,
            hold_time,
            bgp_identifier: Ipv4Addr::from(id),
            optional_parameters: params
                .into_iter()
                .map(OptionalParameter::Capabilities)
                .collect(),
        })
}

fn fixtures() -> Vec<Vec<u8>> {
    vec![open().0, update_ipv4().0, update_ipv6().0]
}

proptest! {
    #[test]
    fn update_round_trips((ctx, update) in context().prop_flat_map(|c| (Just(c), update(c)))) {
        let message = Message::Update(update);
        let bytes = match message.to_bytes(&ctx) {
            Ok(bytes) => bytes,
            Err(EncodeError::MessageTooLong { .. }) => return Err(TestCaseError::reject("too long")),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        prop_assert_eq!(Message::decode(&bytes, &ctx), Ok(message));
    }

    #[test]
    fn open_round_trips(open in open_message()) {
        let message = Message::Open(open);
        let bytes = message.to_bytes(&DecodeContext::default()).unwrap();
        prop_assert_eq!(Message::decode(&bytes, &DecodeContext::default()), Ok(message));
    }

    #[test]
    fn random_bodies_never_panic(body in bytes(600), kind in 1u8..=6, ctx in context()) {
        let _ = Update::decode(&body, &ctx);
        let _ = Open::decode(&body);
        let _ = PathAttribute::decode(&body, &ctx);
        let mut message = vec![0xff; 16];
        message.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
        message.push(kind);
        message.extend_from_slice(&body);
        if let Ok(decoded) = Message::decode(&message, &ctx) {
            // Whatever decodes also encodes.
            let _ = decoded.to_bytes(&ctx);
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..3,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ctx in context(),
    ) {
        let mut bytes = fixtures().swap_remove(which);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(Message::Update(u)) = Message::decode(&bytes, &ctx) {
            // An outcome never leaves routes both announced and withdrawn.
            if u.treat_as_withdraw.is_some() {
                prop_assert!(u.nlri.is_empty() && u.mp_reach_nlri().is_none());
            }
        }
    }
}
