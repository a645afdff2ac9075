//! Cut every valid fixture at every length: decoding gives an error, never
//! a panic.

use vpngw_bgp::wire::{Message, Open, PathAttribute, Update, UpdateError};

use super::messages::{keepalive, notification, open, route_refresh, update_ipv4, update_ipv6};
use super::{h, NEW, OLD};

fn messages() -> Vec<Vec<u8>> {
    let mut all = vec![
        keepalive(),
        open().0,
        update_ipv4().0,
        update_ipv6().0,
        notification().0,
        route_refresh().0,
    ];
    all.extend(super::captured::frames());
    all
}

#[test]
fn every_prefix_of_a_message_is_an_error() {
    for bytes in messages() {
        for n in 0..bytes.len() {
            let cut = &bytes[..n];
            assert!(Message::decode(cut, &NEW).is_err(), "{n} of {bytes:02x?}");
            assert!(Message::decode(cut, &OLD).is_err());
            let _ = Message::frame_length(cut);
        }
    }
}

/// Cut the message and make the header agree with the cut, so the body
/// decoders see the short input.
fn with_length(bytes: &[u8], n: usize) -> Vec<u8> {
    let mut cut = bytes[..n].to_vec();
    cut[16..18].copy_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
    cut
}

#[test]
fn every_cut_open_is_an_error() {
    let (bytes, _) = open();
    for n in 19..bytes.len() {
        assert!(
            Message::decode(&with_length(&bytes, n), &OLD).is_err(),
            "{n}"
        );
        assert!(Open::decode(&bytes[19..n]).is_err(), "{n}");
    }
}

#[test]
fn every_cut_update_is_an_error_until_the_nlri() {
    for (bytes, message) in [update_ipv4(), update_ipv6()] {
        let Message::Update(full) = message else {
            unreachable!()
        };
        let body = &bytes[19..];
        let withdrawn = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let attributes = usize::from(u16::from_be_bytes([
            body[2 + withdrawn],
            body[3 + withdrawn],
        ]));
        let nlri_start = 4 + withdrawn + attributes;
        for n in 0..body.len() {
            let cut = &body[..n];
            for ctx in [NEW, OLD] {
                let decoded = Update::decode(cut, &ctx);
                if n < nlri_start {
                    assert_eq!(decoded, Err(UpdateError::MalformedAttributeList), "{n}");
                } else if let Ok(u) = decoded {
                    // Cut on a prefix boundary: a shorter, valid NLRI.
                    assert!(full.nlri.starts_with(&u.nlri), "{n}");
                } else {
                    assert_eq!(decoded, Err(UpdateError::InvalidNetworkField), "{n}");
                }
            }
            if n >= 4 {
                let _ = Message::decode(&with_length(&bytes, 19 + n), &NEW);
            }
        }
    }
}

#[test]
fn every_cut_attribute_is_an_error() {
    let fixtures = [
        "40 01 01 00",
        "40 02 0e 02 03 0000fde9 00030d40 00000064",
        "40 03 04 c0000201",
        "80 04 04 00000000",
        "40 05 04 00000064",
        "c0 07 08 0000fde9 0a000001",
        "c0 08 08 fde90064 ffffff01",
        "80 0e 1a 0002 01 10 20010db8000000000000000000000001 00 20 20010db8",
        "80 0f 07 0001 01 18 c63364",
        "c0 11 0a 02 02 00030d40 00030d41",
        "c0 12 08 00030d40 0a000001",
        "e0 63 03 010203",
        "50 01 0001 00",
    ];
    for fixture in fixtures {
        let bytes = h(fixture);
        assert!(PathAttribute::decode(&bytes, &NEW).is_ok(), "{fixture}");
        for n in 0..bytes.len() {
            assert!(
                PathAttribute::decode(&bytes[..n], &NEW).is_err(),
                "{fixture} at {n}"
            );
        }
    }
}
