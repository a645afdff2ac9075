//! Each IKE payload body decoder (SA with its proposals, transforms and
//! attributes, KE, IDi/IDr, AUTH, Nonce, Notify, Delete, Vendor ID,
//! TSi/TSr, SK, SKF, and raw ones) on arbitrary bytes. The body decoders
//! are private to `ike::wire`; the public way in is a one-payload chain
//! through `decode_payloads`, which this target builds:
//!
//! input = selector (index into `PAYLOAD_TYPES`), flags octet (the Critical
//! bit), Next Payload octet (SK and SKF keep it), body.
//!
//! Never panics; what decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpngw_fuzz::{check_payload_chain, PAYLOAD_TYPES};
use vpngw_tunnel::ike::wire::PayloadType;

fuzz_target!(|data: &[u8]| {
    let [selector, flags, next, body @ ..] = data else {
        return;
    };
    let this = PAYLOAD_TYPES[usize::from(*selector) % PAYLOAD_TYPES.len()];
    let next = if this == PayloadType::SK || this == PayloadType::SKF {
        *next
    } else {
        0
    };
    let Ok(length) = u16::try_from(body.len() + 4) else {
        return;
    };
    let mut payload = vec![next, *flags];
    payload.extend_from_slice(&length.to_be_bytes());
    payload.extend_from_slice(body);
    check_payload_chain(this, &payload);
    // The same octets as a whole chain whose first payload is `selector`.
    check_payload_chain(PayloadType(*selector), &data[1..]);
});
