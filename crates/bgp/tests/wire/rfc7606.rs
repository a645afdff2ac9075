//! RFC 7606 outcomes: treat-as-withdraw, attribute discard, session reset.

use ipnet::{Ipv4Net, Ipv6Net};

use vpngw_bgp::wire::iana::UpdateSubcode;
use vpngw_bgp::wire::{
    AttributeType, DecodeError, DiscardReason, DiscardedAttribute, ErrorCode, ErrorHandling,
    Message, Notification, TreatAsWithdraw, Update, UpdateError,
};

use super::{h, NEW, NEW_IBGP, OLD};

const ORIGIN: &str = "40 01 01 00";
const AS_PATH: &str = "40 02 06 02 01 0000fde9";
const NEXT_HOP: &str = "40 03 04 c0000201";
/// 198.51.100.0/24.
const NLRI: &str = "18 c63364";

fn nlri() -> Vec<Ipv4Net> {
    vec!["198.51.100.0/24".parse().unwrap()]
}

/// An UPDATE body from its three fields, lengths filled in.
fn body(withdrawn: &str, attributes: &str, nlri: &str) -> Vec<u8> {
    let (w, a, n) = (h(withdrawn), h(attributes), h(nlri));
    let mut out = Vec::new();
    out.extend_from_slice(&u16::try_from(w.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&w);
    out.extend_from_slice(&u16::try_from(a.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&a);
    out.extend_from_slice(&n);
    out
}

fn attrs(parts: &[&str]) -> String {
    parts.join(" ")
}

/// Decodes and expects treat-as-withdraw of `nlri()` for `reason`.
fn assert_withdrawn(attributes: &str, reason: UpdateError) -> Update {
    let u = Update::decode(&body("", attributes, NLRI), &NEW).unwrap();
    assert_eq!(
        u.treat_as_withdraw,
        Some(TreatAsWithdraw {
            reason,
            ipv4: nlri(),
            ipv6: vec![],
        })
    );
    assert!(u.nlri.is_empty(), "nothing is left to install");
    u
}

fn update_notification(subcode: UpdateSubcode, data: Vec<u8>) -> Notification {
    Notification::new(ErrorCode::UpdateMessage, subcode, data)
}

#[test]
fn well_formed_update_has_no_outcome() {
    let u = Update::decode(&body("", &attrs(&[ORIGIN, AS_PATH, NEXT_HOP]), NLRI), &NEW).unwrap();
    assert_eq!(u.treat_as_withdraw, None);
    assert!(u.discarded_attributes.is_empty());
    assert_eq!(u.nlri, nlri());
}

#[test]
fn malformed_as_path_segments_are_treat_as_withdraw() {
    let cases = [
        // Segment count of zero.
        "40 02 02 02 00",
        // Count overruns the attribute.
        "40 02 06 02 02 0000fde9",
        // A single octet after the last segment.
        "40 02 07 02 01 0000fde9 02",
        // Unknown segment type 5.
        "40 02 06 05 01 0000fde9",
    ];
    for as_path in cases {
        let u = assert_withdrawn(
            &attrs(&[ORIGIN, as_path, NEXT_HOP]),
            UpdateError::MalformedAsPath,
        );
        assert_eq!(u.as_path(), None);
    }
    assert_eq!(
        UpdateError::MalformedAsPath.notification(),
        update_notification(UpdateSubcode::MalformedAsPath, vec![])
    );
}

#[test]
fn two_octet_as_path_read_as_four_octet_is_malformed() {
    // A 2-octet AS_PATH with 3 ASes (6 octets) read with 4-octet ASes.
    let as_path = "40 02 08 02 03 fde9 fdea fdeb";
    let b = body("", &attrs(&[ORIGIN, as_path, NEXT_HOP]), NLRI);
    assert_eq!(Update::decode(&b, &OLD).unwrap().treat_as_withdraw, None);
    let u = Update::decode(&b, &NEW).unwrap();
    assert_eq!(
        u.treat_as_withdraw.unwrap().reason,
        UpdateError::MalformedAsPath
    );
}

#[test]
fn attribute_overrunning_the_list_is_treat_as_withdraw() {
    // RFC 7606 §4, first case: NEXT_HOP claims 8 octets, 4 are left. The
    // NLRI is still found through Total Path Attribute Length.
    let overrun = "40 03 08 c0000201";
    assert_withdrawn(
        &attrs(&[ORIGIN, AS_PATH, overrun]),
        UpdateError::AttributeLength {
            type_code: AttributeType::NextHop,
            attribute: h(overrun),
        },
    );
}

#[test]
fn fewer_than_three_octets_left_is_treat_as_withdraw() {
    // RFC 7606 §4, second case: two stray octets, or an extended-length
    // header cut after three.
    for tail in ["40 01", "50 01 00", "c0"] {
        let u = Update::decode(
            &body("", &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, tail]), NLRI),
            &NEW,
        )
        .unwrap();
        let taw = u.treat_as_withdraw.unwrap();
        assert_eq!(taw.ipv4, nlri());
        assert!(
            matches!(taw.reason, UpdateError::AttributeLength { attribute, .. } if attribute == h(tail))
        );
    }
}

#[test]
fn truncated_mp_reach_is_session_reset() {
    // MP_REACH_NLRI cut short by the end of the list: its NLRI cannot be
    // found, so treat-as-withdraw is impossible.
    let cut = "80 0e 20 0002 01 10 20010db8";
    let e = Update::decode(&body("", &attrs(&[ORIGIN, AS_PATH, cut]), ""), &NEW).unwrap_err();
    assert_eq!(
        e,
        UpdateError::AttributeLength {
            type_code: AttributeType::MpReachNlri,
            attribute: h(cut),
        }
    );
    assert_eq!(e.subcode(), UpdateSubcode::AttributeLengthError);
}

#[test]
fn malformed_mp_reach_is_session_reset() {
    let cases = [
        // Next hop of 5 octets for IPv6.
        "80 0e 0a 0002 01 05 0102030405 00",
        // Next hop of 4 octets for IPv6.
        "80 0e 09 0002 01 04 c0000201 00",
        // Prefix length 129.
        "80 0e 17 0002 01 10 20010db8000000000000000000000001 00 81 20",
        // Prefix overruns the attribute.
        "80 0e 17 0002 01 10 20010db8000000000000000000000001 00 40 20",
        // No reserved octet.
        "80 0e 04 0002 01 00",
    ];
    for mp in cases {
        let b = body("", &attrs(&[mp, ORIGIN, AS_PATH]), "");
        let bytes = {
            let mut m = vec![0xff; 16];
            m.extend_from_slice(&u16::try_from(19 + b.len()).unwrap().to_be_bytes());
            m.push(2);
            m.extend_from_slice(&b);
            m
        };
        let e = Message::decode(&bytes, &NEW).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Update(UpdateError::OptionalAttribute {
                type_code: AttributeType::MpReachNlri,
                attribute: h(mp),
            }),
            "{mp}"
        );
        // RFC 4760 §7: UPDATE Message Error / Optional Attribute Error.
        assert_eq!(
            e.notification(),
            update_notification(UpdateSubcode::OptionalAttributeError, h(mp))
        );
    }
}

#[test]
fn malformed_mp_unreach_is_session_reset() {
    let mp = "80 0f 05 0002 01 40 20";
    let e = Update::decode(&body("", mp, ""), &NEW).unwrap_err();
    assert_eq!(e.subcode(), UpdateSubcode::OptionalAttributeError);
}

#[test]
fn repeated_mp_attribute_is_session_reset() {
    let mp = "80 0f 03 0002 01";
    let e = Update::decode(&body("", &attrs(&[mp, mp]), ""), &NEW).unwrap_err();
    assert_eq!(e, UpdateError::MalformedAttributeList);
    assert_eq!(
        e.notification(),
        update_notification(UpdateSubcode::MalformedAttributeList, vec![])
    );
}

#[test]
fn repeated_attribute_keeps_the_first() {
    let u = Update::decode(
        &body(
            "",
            &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, "40 01 01 02"]),
            NLRI,
        ),
        &NEW,
    )
    .unwrap();
    assert_eq!(u.treat_as_withdraw, None);
    assert_eq!(u.origin(), Some(vpngw_bgp::wire::Origin::Igp));
    assert_eq!(
        u.discarded_attributes,
        vec![DiscardedAttribute {
            type_code: AttributeType::Origin,
            reason: DiscardReason::Duplicate
        }]
    );
}

#[test]
fn invalid_origin_is_treat_as_withdraw() {
    let bad = "40 01 01 03";
    assert_withdrawn(
        &attrs(&[bad, AS_PATH, NEXT_HOP]),
        UpdateError::InvalidOrigin { attribute: h(bad) },
    );
    // RFC 4271 would have sent Invalid ORIGIN with the attribute.
    assert_eq!(
        UpdateError::InvalidOrigin { attribute: h(bad) }.notification(),
        update_notification(UpdateSubcode::InvalidOriginAttribute, h(bad))
    );
    let long = "40 01 02 00 00";
    assert_withdrawn(
        &attrs(&[long, AS_PATH, NEXT_HOP]),
        UpdateError::AttributeLength {
            type_code: AttributeType::Origin,
            attribute: h(long),
        },
    );
}

#[test]
fn flags_conflict_is_treat_as_withdraw() {
    // ORIGIN marked optional; MED marked well-known.
    for (bad, type_code) in [
        ("c0 01 01 00", AttributeType::Origin),
        ("40 04 04 00000001", AttributeType::MultiExitDisc),
    ] {
        let list = if type_code == AttributeType::Origin {
            attrs(&[bad, AS_PATH, NEXT_HOP])
        } else {
            attrs(&[ORIGIN, AS_PATH, NEXT_HOP, bad])
        };
        let reason = UpdateError::AttributeFlags {
            type_code,
            attribute: h(bad),
        };
        assert_eq!(reason.subcode(), UpdateSubcode::AttributeFlagsError);
        assert_withdrawn(&list, reason);
    }
}

#[test]
fn missing_well_known_attributes_are_treat_as_withdraw() {
    let cases = [
        (attrs(&[AS_PATH, NEXT_HOP]), AttributeType::Origin),
        (attrs(&[ORIGIN, NEXT_HOP]), AttributeType::AsPath),
        (attrs(&[ORIGIN, AS_PATH]), AttributeType::NextHop),
        (String::new(), AttributeType::Origin),
    ];
    for (list, type_code) in cases {
        assert_withdrawn(&list, UpdateError::MissingWellKnownAttribute { type_code });
    }
    assert_eq!(
        UpdateError::MissingWellKnownAttribute {
            type_code: AttributeType::AsPath
        }
        .notification(),
        update_notification(UpdateSubcode::MissingWellKnownAttribute, vec![2])
    );
}

#[test]
fn next_hop_is_not_needed_without_ipv4_nlri() {
    let mp = "80 0e 1a 0002 01 10 20010db8000000000000000000000001 00 20 20010db8";
    let u = Update::decode(&body("", &attrs(&[mp, ORIGIN, AS_PATH]), ""), &NEW).unwrap();
    assert_eq!(u.treat_as_withdraw, None);
    // But ORIGIN is.
    let u = Update::decode(&body("", &attrs(&[mp, AS_PATH]), ""), &NEW).unwrap();
    let taw = u.treat_as_withdraw.clone().unwrap();
    assert_eq!(
        taw.reason,
        UpdateError::MissingWellKnownAttribute {
            type_code: AttributeType::Origin
        }
    );
    let v6: Vec<Ipv6Net> = vec!["2001:db8::/32".parse().unwrap()];
    assert_eq!(taw.ipv6, v6);
    assert_eq!(u.mp_reach_nlri(), None, "MP_REACH_NLRI is taken out");
}

#[test]
fn malformed_next_hop() {
    // Wrong length with IPv4 NLRI: treat-as-withdraw.
    let long = "40 03 05 c000020100";
    assert_withdrawn(
        &attrs(&[ORIGIN, AS_PATH, long]),
        UpdateError::AttributeLength {
            type_code: AttributeType::NextHop,
            attribute: h(long),
        },
    );
    // Not a host address: treat-as-withdraw with Invalid NEXT_HOP.
    for addr in ["00000000", "e0000005", "ffffffff"] {
        let bad = format!("40 03 04 {addr}");
        let reason = UpdateError::InvalidNextHop { attribute: h(&bad) };
        assert_eq!(reason.subcode(), UpdateSubcode::InvalidNextHopAttribute);
        assert_withdrawn(&attrs(&[ORIGIN, AS_PATH, &bad]), reason);
    }
    // Without IPv4 NLRI it is ignored (RFC 4760 §3): attribute discard.
    let mp = "80 0e 1a 0002 01 10 20010db8000000000000000000000001 00 20 20010db8";
    let u = Update::decode(&body("", &attrs(&[mp, ORIGIN, AS_PATH, long]), ""), &NEW).unwrap();
    assert_eq!(u.treat_as_withdraw, None);
    assert_eq!(u.discarded_attributes.len(), 1);
    assert!(u.mp_reach_nlri().is_some());
}

#[test]
fn local_pref() {
    let lp = "40 05 04 00000064";
    // From an external peer: always discarded.
    let u = Update::decode(
        &body("", &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, lp]), NLRI),
        &NEW,
    )
    .unwrap();
    assert_eq!(u.treat_as_withdraw, None);
    assert_eq!(
        u.discarded_attributes,
        vec![DiscardedAttribute {
            type_code: AttributeType::LocalPref,
            reason: DiscardReason::LocalPrefFromExternalPeer
        }]
    );
    assert_eq!(u.attribute(AttributeType::LocalPref), None);
    // From an internal peer: kept, and malformed is treat-as-withdraw.
    let u = Update::decode(
        &body("", &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, lp]), NLRI),
        &NEW_IBGP,
    )
    .unwrap();
    assert!(u.attribute(AttributeType::LocalPref).is_some());
    let bad = "40 05 03 000064";
    let u = Update::decode(
        &body("", &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, bad]), NLRI),
        &NEW_IBGP,
    )
    .unwrap();
    assert_eq!(u.treat_as_withdraw.unwrap().ipv4, nlri());
}

#[test]
fn attribute_discard_cases() {
    let cases = [
        ("40 06 01 00", AttributeType::AtomicAggregate),
        ("c0 07 07 0000fde9 0a0000", AttributeType::Aggregator),
        ("c0 07 06 fde9 0a000001", AttributeType::Aggregator), // 2-octet on a 4-octet session
        ("80 07 08 0000fde9 0a000001", AttributeType::Aggregator), // flags
    ];
    for (bad, type_code) in cases {
        let u = Update::decode(
            &body("", &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, bad]), NLRI),
            &NEW,
        )
        .unwrap();
        assert_eq!(u.treat_as_withdraw, None, "{bad}");
        assert_eq!(u.nlri, nlri());
        let [d] = u.discarded_attributes.as_slice() else {
            panic!("{bad}: {:?}", u.discarded_attributes)
        };
        assert_eq!(d.type_code, type_code);
        assert!(matches!(d.reason, DiscardReason::Malformed(_)));
    }
}

#[test]
fn as4_attributes() {
    let as4_path = "c0 11 06 02 01 00030d40";
    let as4_agg = "c0 12 08 00030d40 0a000001";
    let list = attrs(&[ORIGIN, "40 02 04 02 01 5ba0", NEXT_HOP, as4_path, as4_agg]);
    // From a 2-octet peer they are kept.
    let u = Update::decode(&body("", &list, NLRI), &OLD).unwrap();
    assert!(u.discarded_attributes.is_empty());
    assert!(u.attribute(AttributeType::As4Path).is_some());
    // From a 4-octet peer they are discarded (RFC 6793 §4.1).
    let u = Update::decode(
        &body(
            "",
            &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, as4_path, as4_agg]),
            NLRI,
        ),
        &NEW,
    )
    .unwrap();
    assert_eq!(u.discarded_attributes.len(), 2);
    assert!(u
        .discarded_attributes
        .iter()
        .all(|d| d.reason == DiscardReason::As4FromFourOctetPeer));
    // Malformed ones are discarded, not withdrawn (RFC 6793 §6).
    for bad in [
        "c0 11 02 02 00",
        "c0 11 03 02 01 00",
        "c0 12 06 fde9 0a000001",
    ] {
        let list = attrs(&[ORIGIN, "40 02 04 02 01 5ba0", NEXT_HOP, bad]);
        let u = Update::decode(&body("", &list, NLRI), &OLD).unwrap();
        assert_eq!(u.treat_as_withdraw, None, "{bad}");
        assert_eq!(u.discarded_attributes.len(), 1, "{bad}");
    }
}

#[test]
fn malformed_communities_are_treat_as_withdraw() {
    for bad in ["c0 08 06 fde90064 0001", "c0 08 00"] {
        assert_withdrawn(
            &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, bad]),
            UpdateError::AttributeLength {
                type_code: AttributeType::Communities,
                attribute: h(bad),
            },
        );
    }
}

#[test]
fn unrecognized_well_known_attribute_is_session_reset() {
    let bad = "40 63 01 00";
    let e = Update::decode(
        &body("", &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, bad]), NLRI),
        &NEW,
    )
    .unwrap_err();
    assert_eq!(
        e.notification(),
        update_notification(UpdateSubcode::UnrecognizedWellKnownAttribute, h(bad))
    );
    // The same type marked optional is kept.
    let ok = "c0 63 01 00";
    let u = Update::decode(
        &body("", &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, ok]), NLRI),
        &NEW,
    )
    .unwrap();
    assert!(u.attribute(AttributeType::Unknown(0x63)).is_some());
}

#[test]
fn length_fields_overrunning_the_message_are_session_reset() {
    for b in [
        h("0005 10 0a"),            // withdrawn routes length overruns
        h("0000 0009 40 01 01 00"), // total attribute length overruns
        h("00"),                    // no room for the lengths
        h("0000"),                  // no total attribute length
    ] {
        assert_eq!(
            Update::decode(&b, &NEW),
            Err(UpdateError::MalformedAttributeList)
        );
    }
}

#[test]
fn bad_prefixes_are_session_reset() {
    for (withdrawn, nlri) in [
        ("21 0a000000 00", ""),
        ("", "21 0a000000 00"),
        ("18 0a00", ""),
        ("", "18 0a"),
    ] {
        let b = body(withdrawn, &attrs(&[ORIGIN, AS_PATH, NEXT_HOP]), nlri);
        let e = Update::decode(&b, &NEW).unwrap_err();
        assert_eq!(e, UpdateError::InvalidNetworkField);
        assert_eq!(
            e.notification(),
            update_notification(UpdateSubcode::InvalidNetworkField, vec![])
        );
    }
}

#[test]
fn treat_as_withdraw_keeps_withdrawals_and_collects_mp_routes() {
    let mp_reach = "80 0e 19 0001 01 10 20010db8000000000000000000000001 00 18 cb0071";
    let mp_unreach = "80 0f 08 0002 01 20 20010db8";
    let u = Update::decode(
        &body(
            "10 0a01",
            &attrs(&[mp_reach, mp_unreach, "40 01 01 07", AS_PATH, NEXT_HOP]),
            NLRI,
        ),
        &NEW,
    )
    .unwrap();
    assert_eq!(
        u.withdrawn_routes,
        vec!["10.1.0.0/16".parse::<Ipv4Net>().unwrap()]
    );
    assert!(
        u.mp_unreach_nlri().is_some(),
        "MP_UNREACH_NLRI still applies"
    );
    assert!(u.mp_reach_nlri().is_none());
    let taw = u.treat_as_withdraw.unwrap();
    let mut want = nlri();
    want.insert(0, "203.0.113.0/24".parse().unwrap());
    let mut got = taw.ipv4.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn errors_in_an_update_without_routes_change_nothing() {
    let u = Update::decode(&body("10 0a01", "40 01 01 07", ""), &NEW).unwrap();
    let taw = u.treat_as_withdraw.unwrap();
    assert!(taw.ipv4.is_empty() && taw.ipv6.is_empty());
    assert_eq!(u.withdrawn_routes.len(), 1);
}

#[test]
fn classification_table() {
    use AttributeType as T;
    use ErrorHandling::{AttributeDiscard as D, SessionReset as R, TreatAsWithdraw as W};
    let cases = [
        (T::Origin, W),
        (T::AsPath, W),
        (T::MultiExitDisc, W),
        (T::Communities, W),
        (T::AtomicAggregate, D),
        (T::Aggregator, D),
        (T::As4Path, D),
        (T::As4Aggregator, D),
        (T::MpReachNlri, R),
        (T::MpUnreachNlri, R),
        (T::Unknown(99), R),
    ];
    for (t, want) in cases {
        assert_eq!(ErrorHandling::for_attribute(t, &NEW, true), want, "{t:?}");
    }
    assert_eq!(ErrorHandling::for_attribute(T::NextHop, &NEW, true), W);
    assert_eq!(ErrorHandling::for_attribute(T::NextHop, &NEW, false), D);
    assert_eq!(ErrorHandling::for_attribute(T::LocalPref, &NEW, true), D);
    assert_eq!(
        ErrorHandling::for_attribute(T::LocalPref, &NEW_IBGP, true),
        W
    );
}
