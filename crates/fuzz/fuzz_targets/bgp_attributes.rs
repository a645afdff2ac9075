//! Path attributes and UPDATE bodies with the RFC 7606 error handling, on
//! arbitrary bytes: `PathAttribute::decode` (one attribute, flags checked)
//! and `Update::decode` (withdrawn routes, the attribute list with
//! treat-as-withdraw and attribute discard, NLRI). Never panics; what
//! decodes round-trips; the RFC 7606 outcome is consistent (nothing is
//! announced by an UPDATE treated as withdraw; discarded attributes are
//! not kept).
//!
//! input = context octet (bit 0: 4-octet AS, bit 1: internal peer), then
//! the attribute or UPDATE body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpngw_bgp::wire::{
    AttributeType, AttributeValue, DecodeContext, ErrorHandling, PathAttribute, Update,
};

fn attribute(buf: &[u8], ctx: &DecodeContext) {
    match PathAttribute::decode(buf, ctx) {
        Ok(a) => {
            let mut out = Vec::new();
            a.encode(ctx, &mut out)
                .expect("a decoded attribute encodes");
            let again = PathAttribute::decode(&out, ctx).expect("an encoded attribute decodes");
            assert_eq!(again, a, "attribute round trip");
            let _ = a.flags.is_partial();
        }
        Err(e) => {
            let _ = (e.notification(), e.subcode(), e.data(), e.to_string());
            if let [_, t, ..] = buf {
                let t = AttributeType::from(*t);
                let _ = ErrorHandling::for_attribute(t, ctx, true);
                let _ = ErrorHandling::for_attribute(t, ctx, false);
            }
        }
    }
}

fn update(body: &[u8], ctx: &DecodeContext) {
    let u = match Update::decode(body, ctx) {
        Ok(u) => u,
        Err(e) => {
            let _ = (e.notification(), e.to_string());
            return;
        }
    };
    if u.treat_as_withdraw.is_some() {
        assert!(u.nlri.is_empty(), "treat-as-withdraw keeps no NLRI");
        assert!(
            u.mp_reach_nlri().is_none(),
            "treat-as-withdraw keeps no MP_REACH_NLRI"
        );
    }
    for d in &u.discarded_attributes {
        let kept = u
            .path_attributes
            .iter()
            .filter(|a| a.type_code() == d.type_code)
            .count();
        assert!(kept <= 1, "a discarded attribute type is kept at most once");
    }
    let _ = (
        u.origin(),
        u.as_path(),
        u.next_hop(),
        u.mp_unreach_nlri(),
        u.end_of_rib(),
        u.attribute(AttributeType::Communities)
            .map(|v| matches!(v, AttributeValue::Communities(_))),
    );
    let mut out = Vec::new();
    u.encode(ctx, &mut out).expect("a decoded UPDATE encodes");
    let again = Update::decode(&out, ctx).expect("an encoded UPDATE decodes");
    assert_eq!(again.withdrawn_routes, u.withdrawn_routes);
    assert_eq!(again.path_attributes, u.path_attributes);
    assert_eq!(again.nlri, u.nlri);
    assert!(again.discarded_attributes.is_empty(), "{again:?}");
    assert!(again.treat_as_withdraw.is_none(), "{again:?}");
}

fuzz_target!(|data: &[u8]| {
    let [ctx, body @ ..] = data else {
        return;
    };
    let ctx = DecodeContext {
        four_octet_as: ctx & 1 != 0,
        internal_peer: ctx & 2 != 0,
    };
    attribute(body, &ctx);
    update(body, &ctx);
});
