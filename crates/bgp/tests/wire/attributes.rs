//! One fixture per path attribute, checked both ways.

use std::net::Ipv4Addr;

use vpngw_bgp::wire::{
    Afi, Aggregator, AsPath, AsPathSegment, AsPathSegmentType, AttributeFlags, AttributeType,
    AttributeValue, Community, MpNextHop, MpReachNlri, MpUnreachNlri, Origin, PathAttribute, Safi,
};

use super::{attribute_both_ways, h, NEW, NEW_IBGP, OLD};

fn attr(value: AttributeValue) -> PathAttribute {
    PathAttribute::new(value)
}

#[test]
fn origin() {
    for (v, origin) in [(0, Origin::Igp), (1, Origin::Egp), (2, Origin::Incomplete)] {
        let bytes = [0x40, 0x01, 0x01, v];
        attribute_both_ways(&bytes, &attr(AttributeValue::Origin(origin)), &NEW);
    }
}

#[test]
fn as_path_two_octet_with_set_and_sequence() {
    let bytes = h("40 02 0a  01 02 fde9 fdea  02 01 0064");
    let path = AsPath {
        segments: vec![
            AsPathSegment {
                segment_type: AsPathSegmentType::AsSet,
                asns: vec![65001, 65002],
            },
            AsPathSegment {
                segment_type: AsPathSegmentType::AsSequence,
                asns: vec![100],
            },
        ],
    };
    attribute_both_ways(&bytes, &attr(AttributeValue::AsPath(path)), &OLD);
}

#[test]
fn as_path_four_octet() {
    let bytes = h("40 02 0e  02 03 0000fde9 00030d40 00000064");
    let path = AsPath::from_sequence(vec![65001, 200_000, 100]);
    attribute_both_ways(&bytes, &attr(AttributeValue::AsPath(path)), &NEW);
}

#[test]
fn as_path_confederation_segments() {
    let bytes = h("40 02 0c  03 01 0000fde9  04 01 0000fdea");
    let path = AsPath {
        segments: vec![
            AsPathSegment {
                segment_type: AsPathSegmentType::AsConfedSequence,
                asns: vec![65001],
            },
            AsPathSegment {
                segment_type: AsPathSegmentType::AsConfedSet,
                asns: vec![65002],
            },
        ],
    };
    attribute_both_ways(&bytes, &attr(AttributeValue::AsPath(path)), &NEW);
}

#[test]
fn as_path_empty() {
    attribute_both_ways(
        &h("40 02 00"),
        &attr(AttributeValue::AsPath(AsPath::default())),
        &NEW,
    );
}

#[test]
fn as_path_two_octet_encode_writes_as_trans() {
    let path = attr(AttributeValue::AsPath(AsPath::from_sequence(vec![
        200_000, 65001,
    ])));
    let mut out = Vec::new();
    path.encode(&OLD, &mut out).unwrap();
    assert_eq!(out, h("40 02 06 02 02 5ba0 fde9"));
}

#[test]
fn as_path_long_segment_is_split() {
    let path = attr(AttributeValue::AsPath(AsPath::from_sequence(vec![7; 300])));
    let mut out = Vec::new();
    path.encode(&NEW, &mut out).unwrap();
    // 2 + 255 * 4 + 2 + 45 * 4 = 1204 octets: extended length.
    assert_eq!(out.get(..4), Some(&h("50 02 04b4")[..]));
    let back = PathAttribute::decode(&out, &NEW).unwrap();
    let AttributeValue::AsPath(p) = back.value else {
        panic!("not an AS_PATH")
    };
    assert_eq!(p.segments.len(), 2);
    assert_eq!(p.segments.iter().map(|s| s.asns.len()).sum::<usize>(), 300);
}

#[test]
fn next_hop() {
    let bytes = h("40 03 04 c0000201");
    let a = attr(AttributeValue::NextHop(Ipv4Addr::new(192, 0, 2, 1)));
    attribute_both_ways(&bytes, &a, &NEW);
}

#[test]
fn multi_exit_disc() {
    let bytes = h("80 04 04 00000000");
    attribute_both_ways(&bytes, &attr(AttributeValue::MultiExitDisc(0)), &NEW);
}

#[test]
fn local_pref() {
    let bytes = h("40 05 04 00000064");
    attribute_both_ways(&bytes, &attr(AttributeValue::LocalPref(100)), &NEW_IBGP);
}

#[test]
fn atomic_aggregate() {
    attribute_both_ways(&h("40 06 00"), &attr(AttributeValue::AtomicAggregate), &NEW);
}

#[test]
fn aggregator_two_and_four_octet() {
    let agg = Aggregator {
        asn: 65001,
        address: Ipv4Addr::new(10, 0, 0, 1),
    };
    let a = attr(AttributeValue::Aggregator(agg));
    attribute_both_ways(&h("c0 07 06 fde9 0a000001"), &a, &OLD);
    attribute_both_ways(&h("c0 07 08 0000fde9 0a000001"), &a, &NEW);
}

#[test]
fn communities() {
    let bytes = h("c0 08 08 fde90064 ffffff01");
    let cs = vec![Community::new(65001, 100), Community::NO_EXPORT];
    assert_eq!(cs[0].asn(), 65001);
    assert_eq!(cs[0].value(), 100);
    attribute_both_ways(&bytes, &attr(AttributeValue::Communities(cs)), &NEW);
}

#[test]
fn mp_reach_ipv6_global_only() {
    let bytes = h("80 0e 1a 0002 01 10 20010db8000000000000000000000001 00 20 20010db8");
    let a = attr(AttributeValue::MpReachNlri(MpReachNlri::Ipv6Unicast {
        next_hop: MpNextHop::Ipv6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None,
        },
        nlri: vec!["2001:db8::/32".parse().unwrap()],
    }));
    attribute_both_ways(&bytes, &a, &NEW);
}

#[test]
fn mp_reach_ipv4_with_ipv6_next_hop() {
    // RFC 8950: IPv4 NLRI with an IPv6 next hop.
    let bytes = h("80 0e 19 0001 01 10 20010db8000000000000000000000001 00 18 c63364");
    let a = attr(AttributeValue::MpReachNlri(MpReachNlri::Ipv4Unicast {
        next_hop: MpNextHop::Ipv6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None,
        },
        nlri: vec!["198.51.100.0/24".parse().unwrap()],
    }));
    attribute_both_ways(&bytes, &a, &NEW);
}

#[test]
fn mp_reach_other_family_is_kept_raw() {
    let bytes = h("80 0e 08 0019 41 02 abcd 00 ee");
    let reach = MpReachNlri::Other {
        afi: Afi::Unknown(25),
        safi: Safi::Unknown(65),
        next_hop: vec![0xab, 0xcd],
        nlri: vec![0xee],
    };
    assert_eq!(reach.afi(), Afi::Unknown(25));
    attribute_both_ways(&bytes, &attr(AttributeValue::MpReachNlri(reach)), &NEW);
}

#[test]
fn mp_unreach() {
    let bytes = h("80 0f 07 0001 01 18 c63364");
    let a = attr(AttributeValue::MpUnreachNlri(MpUnreachNlri::Ipv4Unicast(
        vec!["198.51.100.0/24".parse().unwrap()],
    )));
    attribute_both_ways(&bytes, &a, &NEW);
    let bytes = h("80 0f 04 0002 80 aa");
    let a = attr(AttributeValue::MpUnreachNlri(MpUnreachNlri::Other {
        afi: Afi::Ipv6,
        safi: Safi::Unknown(128),
        withdrawn: vec![0xaa],
    }));
    attribute_both_ways(&bytes, &a, &NEW);
}

#[test]
fn as4_path_and_as4_aggregator() {
    let bytes = h("c0 11 0a 02 02 00030d40 00030d41");
    let a = attr(AttributeValue::As4Path(AsPath::from_sequence(vec![
        200_000, 200_001,
    ])));
    attribute_both_ways(&bytes, &a, &OLD);
    let bytes = h("c0 12 08 00030d40 0a000001");
    let a = attr(AttributeValue::As4Aggregator(Aggregator {
        asn: 200_000,
        address: Ipv4Addr::new(10, 0, 0, 1),
    }));
    attribute_both_ways(&bytes, &a, &OLD);
}

#[test]
fn unknown_attributes_keep_flags_and_value() {
    // Optional transitive with Partial set, type 99.
    let bytes = h("e0 63 03 010203");
    let a = PathAttribute {
        flags: AttributeFlags::OPTIONAL_TRANSITIVE.with_partial(),
        value: AttributeValue::Unknown {
            type_code: AttributeType::Unknown(99),
            value: vec![1, 2, 3],
        },
    };
    attribute_both_ways(&bytes, &a, &NEW);
    assert!(a.flags.is_partial() && a.flags.is_optional() && a.flags.is_transitive());

    // Optional non-transitive, empty.
    let a = PathAttribute {
        flags: AttributeFlags::OPTIONAL_NON_TRANSITIVE,
        value: AttributeValue::Unknown {
            type_code: AttributeType::Unknown(250),
            value: vec![],
        },
    };
    attribute_both_ways(&h("80 fa 00"), &a, &NEW);

    // A registered attribute we do not decode (LARGE_COMMUNITY) is kept raw.
    let bytes = h("c0 20 0c 0000fde9 00000001 00000002");
    let a = attr(AttributeValue::Unknown {
        type_code: AttributeType::LargeCommunities,
        value: h("0000fde9 00000001 00000002"),
    });
    attribute_both_ways(&bytes, &a, &NEW);
}

#[test]
fn partial_bit_is_passed_through_on_known_attributes() {
    let bytes = h("e0 08 04 fde90064");
    let a = PathAttribute {
        flags: AttributeFlags::OPTIONAL_TRANSITIVE.with_partial(),
        value: AttributeValue::Communities(vec![Community::new(65001, 100)]),
    };
    attribute_both_ways(&bytes, &a, &NEW);
}

#[test]
fn extended_length_is_chosen_by_size() {
    // 64 communities: 256 octets, one more than fits a one-octet length.
    let cs: Vec<Community> = (0..64).map(|i| Community::new(65001, i)).collect();
    let a = attr(AttributeValue::Communities(cs.clone()));
    let mut out = Vec::new();
    a.encode(&NEW, &mut out).unwrap();
    assert_eq!(out.len(), 4 + 256);
    assert_eq!(out.get(..4), Some(&h("d0 08 0100")[..]));
    assert_eq!(PathAttribute::decode(&out, &NEW).unwrap(), a);

    // 63 communities: 252 octets, one-octet length.
    let a = attr(AttributeValue::Communities(cs[..63].to_vec()));
    let mut out = Vec::new();
    a.encode(&NEW, &mut out).unwrap();
    assert_eq!(out.get(..3), Some(&h("c0 08 fc")[..]));
}

#[test]
fn extended_length_on_a_short_attribute_is_accepted() {
    // ORIGIN sent with a two-octet length: legal, re-encoded short.
    let a = PathAttribute::decode(&h("50 01 0001 00"), &NEW).unwrap();
    assert_eq!(a, attr(AttributeValue::Origin(Origin::Igp)));
    let mut out = Vec::new();
    a.encode(&NEW, &mut out).unwrap();
    assert_eq!(out, h("40 01 01 00"));
}
