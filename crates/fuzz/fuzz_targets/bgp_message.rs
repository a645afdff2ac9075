//! The BGP message decoder on an arbitrary byte stream, as the session
//! reads it: framed with `Message::frame_length`, each frame decoded with
//! a decode context (4-octet AS numbers negotiated or not, internal peer or
//! not: RFC 6793, RFC 4760 multiprotocol attributes, RFC 7606 handling).
//! Never panics; every error maps to a NOTIFICATION; whatever decodes
//! encodes, and decodes again to the same message (see `check`).
//!
//! input = context octet (bit 0: 4-octet AS, bit 1: internal peer), then
//! the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpngw_bgp::wire::{DecodeContext, Message};

fn check(frame: &[u8], ctx: &DecodeContext) {
    let message = match Message::decode(frame, ctx) {
        Ok(m) => m,
        Err(e) => {
            let _ = (e.notification(), e.to_string());
            return;
        }
    };
    let bytes = message.to_bytes(ctx).expect("a decoded message encodes");
    let again = Message::decode(&bytes, ctx).expect("an encoded message decodes");
    // What RFC 7606 took out on decode (attributes discarded, announcements
    // moved into treat-as-withdraw) is not encoded again.
    let mut expected = message.clone();
    if let Message::Update(u) = &mut expected {
        u.treat_as_withdraw = None;
        u.discarded_attributes.clear();
    }
    assert_eq!(again, expected, "message round trip");
    assert_eq!(again.to_bytes(ctx).ok(), Some(bytes), "encoding is stable");
}

fuzz_target!(|data: &[u8]| {
    let [ctx, stream @ ..] = data else {
        return;
    };
    let ctx = DecodeContext {
        four_octet_as: ctx & 1 != 0,
        internal_peer: ctx & 2 != 0,
    };
    let mut rest = stream;
    loop {
        match Message::frame_length(rest) {
            Ok(Some(n)) if n <= rest.len() => {
                let (frame, tail) = rest.split_at(n);
                check(frame, &ctx);
                rest = tail;
            }
            Ok(Some(_)) | Ok(None) => break,
            Err(e) => {
                let _ = e.notification();
                break;
            }
        }
    }
    // The whole input as one message, whatever its header says.
    check(stream, &ctx);
});
