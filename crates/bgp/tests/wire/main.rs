//! Wire format tests: fixtures checked both ways, RFC 7606 outcomes,
//! truncation at every length, and property round trips.

// Tests may unwrap (clippy.toml): this covers the fixture helpers too, which
// are not `#[test]` functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attributes;
mod captured;
mod errors;
mod messages;
mod proptests;
mod rfc7606;
mod truncation;

use vpngw_bgp::wire::{DecodeContext, Message, PathAttribute};

/// Bytes from hex, whitespace ignored.
pub(crate) fn h(s: &str) -> Vec<u8> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(compact).expect("valid hex in fixture")
}

/// 2-octet AS, external peer.
pub(crate) const OLD: DecodeContext = DecodeContext {
    four_octet_as: false,
    internal_peer: false,
};

/// 4-octet AS, external peer.
pub(crate) const NEW: DecodeContext = DecodeContext {
    four_octet_as: true,
    internal_peer: false,
};

/// 4-octet AS, internal peer.
pub(crate) const NEW_IBGP: DecodeContext = DecodeContext {
    four_octet_as: true,
    internal_peer: true,
};

/// Checks a message fixture both ways.
pub(crate) fn both_ways(bytes: &[u8], message: &Message, ctx: &DecodeContext) {
    assert_eq!(&Message::decode(bytes, ctx).unwrap(), message, "decode");
    assert_eq!(message.to_bytes(ctx).unwrap(), bytes, "encode");
    assert_eq!(Message::frame_length(bytes), Ok(Some(bytes.len())));
}

/// Checks an attribute fixture both ways.
pub(crate) fn attribute_both_ways(bytes: &[u8], attribute: &PathAttribute, ctx: &DecodeContext) {
    assert_eq!(
        &PathAttribute::decode(bytes, ctx).unwrap(),
        attribute,
        "decode"
    );
    let mut out = Vec::new();
    attribute.encode(ctx, &mut out).unwrap();
    assert_eq!(out, bytes, "encode");
}
