//! Header and OPEN errors, and the NOTIFICATION each maps to (RFC 4271
//! §6.1, §6.2).

use std::net::Ipv4Addr;

use vpngw_bgp::wire::iana::{MessageHeaderSubcode, OpenSubcode, ParameterType};
use vpngw_bgp::wire::{
    AsPath, AttributeValue, DecodeError, EncodeError, ErrorCode, HeaderError, Message,
    Notification, OpenError, PathAttribute, Update,
};

use super::{h, NEW, OLD};

const M: &str = "ffffffff ffffffff ffffffff ffffffff";

fn decode_err(hex: &str) -> DecodeError {
    Message::decode(&h(hex), &NEW).unwrap_err()
}

fn header_notification(subcode: MessageHeaderSubcode, data: Vec<u8>) -> Notification {
    Notification::new(ErrorCode::MessageHeader, subcode, data)
}

#[test]
fn marker_not_all_ones() {
    let e = decode_err("ffffffff ffffffff ffffffff fffffffe 0013 04");
    assert_eq!(
        e,
        DecodeError::Header(HeaderError::ConnectionNotSynchronized)
    );
    assert_eq!(
        e.notification(),
        header_notification(MessageHeaderSubcode::ConnectionNotSynchronized, vec![])
    );
}

#[test]
fn length_out_of_range() {
    for (length, hex) in [(18u16, "0012"), (4097, "1001"), (0, "0000")] {
        let e = Message::frame_length(&h(&format!("{M} {hex} 04"))).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Header(HeaderError::BadMessageLength { length })
        );
        assert_eq!(
            e.notification(),
            header_notification(
                MessageHeaderSubcode::BadMessageLength,
                length.to_be_bytes().to_vec()
            )
        );
    }
}

#[test]
fn length_wrong_for_the_type() {
    let cases = [
        ("0014 04 00", 0x14),            // KEEPALIVE of 20
        ("001c 01", 0x1c),               // OPEN of 28
        ("0016 02", 0x16),               // UPDATE of 22
        ("0014 03 06", 0x14),            // NOTIFICATION of 20
        ("0018 05 0001 00 01 00", 0x18), // ROUTE-REFRESH of 24
    ];
    for (rest, length) in cases {
        let bytes = h(&format!("{M} {rest}"));
        let e = Message::frame_length(&bytes).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Header(HeaderError::BadMessageLength { length })
        );
    }
}

#[test]
fn unknown_message_type() {
    let e = decode_err(&format!("{M} 0013 09"));
    assert_eq!(
        e.notification(),
        header_notification(MessageHeaderSubcode::BadMessageType, vec![9])
    );
}

#[test]
fn buffer_must_hold_exactly_one_message() {
    let e = decode_err(&format!("{M} 0013 04 00"));
    assert_eq!(
        e,
        DecodeError::Header(HeaderError::LengthMismatch {
            length: 19,
            available: 20
        })
    );
    assert_eq!(e.notification().subcode, 2);
}

fn open_err(body: &str) -> DecodeError {
    let body = h(body);
    let mut bytes = h(M);
    bytes.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    bytes.push(1);
    bytes.extend_from_slice(&body);
    Message::decode(&bytes, &OLD).unwrap_err()
}

fn open_notification(subcode: OpenSubcode, data: Vec<u8>) -> Notification {
    Notification::new(ErrorCode::OpenMessage, subcode, data)
}

#[test]
fn open_unsupported_version() {
    let e = open_err("03 fde9 005a 0a000001 00");
    assert_eq!(
        e,
        DecodeError::Open(OpenError::UnsupportedVersionNumber { version: 3 })
    );
    // The data is the version we support.
    assert_eq!(
        e.notification(),
        open_notification(OpenSubcode::UnsupportedVersionNumber, vec![0, 4])
    );
}

#[test]
fn open_bad_peer_as_zero() {
    let e = open_err("04 0000 005a 0a000001 00");
    assert_eq!(
        e.notification(),
        open_notification(OpenSubcode::BadPeerAs, vec![])
    );
    // AS 0 in the 4-octet AS capability too (RFC 7607).
    let e = open_err("04 5ba0 005a 0a000001 08 02 06 41 04 00000000");
    assert_eq!(e, DecodeError::Open(OpenError::BadPeerAs { asn: 0 }));
}

#[test]
fn open_unacceptable_hold_time() {
    for hold in ["0001", "0002"] {
        let e = open_err(&format!("04 fde9 {hold} 0a000001 00"));
        assert_eq!(
            e.notification(),
            open_notification(OpenSubcode::UnacceptableHoldTime, vec![])
        );
    }
}

#[test]
fn open_bad_bgp_identifier() {
    let e = open_err("04 fde9 005a 00000000 00");
    assert_eq!(
        e,
        DecodeError::Open(OpenError::BadBgpIdentifier {
            identifier: Ipv4Addr::UNSPECIFIED
        })
    );
    assert_eq!(
        e.notification(),
        open_notification(OpenSubcode::BadBgpIdentifier, vec![])
    );
}

#[test]
fn open_unsupported_optional_parameter() {
    // Type 1, the deprecated authentication parameter.
    let e = open_err("04 fde9 005a 0a000001 04 01 02 abcd");
    assert_eq!(
        e,
        DecodeError::Open(OpenError::UnsupportedOptionalParameter {
            parameter_type: ParameterType::Authentication
        })
    );
    assert_eq!(
        e.notification(),
        open_notification(OpenSubcode::UnsupportedOptionalParameter, vec![])
    );
}

#[test]
fn open_malformed_parameters_and_capabilities() {
    let cases = [
        // Opt Parm Len beyond the message.
        "04 fde9 005a 0a000001 05 02 02 02 00",
        // Octets after the optional parameters.
        "04 fde9 005a 0a000001 02 02 00 ff",
        // Parameter length beyond Opt Parm Len.
        "04 fde9 005a 0a000001 02 02 05",
        // Capability length beyond its parameter.
        "04 fde9 005a 0a000001 04 02 02 01 04",
        // Multiprotocol capability of 3 octets.
        "04 fde9 005a 0a000001 07 02 05 01 03 0001 00",
        // Route refresh capability with a value.
        "04 fde9 005a 0a000001 05 02 03 02 01 00",
        // 4-octet AS capability of 2 octets.
        "04 fde9 005a 0a000001 06 02 04 41 02 fde9",
    ];
    for body in cases {
        let e = open_err(body);
        assert!(
            matches!(e, DecodeError::Open(OpenError::Malformed { .. })),
            "{body}: {e:?}"
        );
        assert_eq!(
            e.notification(),
            open_notification(OpenSubcode::Unspecific, vec![])
        );
    }
}

#[test]
fn encode_refuses_oversized_messages() {
    let update = Update {
        path_attributes: vec![PathAttribute::new(AttributeValue::AsPath(
            AsPath::from_sequence(vec![1; 1100]),
        ))],
        ..Update::default()
    };
    let mut out = vec![1, 2, 3];
    let e = Message::Update(update).encode(&NEW, &mut out).unwrap_err();
    assert!(matches!(e, EncodeError::MessageTooLong { length } if length > 4096));
    assert_eq!(out, vec![1, 2, 3], "the buffer is left as it was");
}

#[test]
fn errors_display() {
    let e = open_err("03 fde9 005a 0a000001 00");
    assert_eq!(
        e.to_string(),
        "OPEN message error: unsupported version number 3"
    );
}
