//! The Encrypted (SK, RFC 7296 §3.14) and Encrypted Fragment (SKF,
//! RFC 7383 §2.5) payloads, kept as raw bodies: encryption and integrity
//! are `ike::crypto`'s job. This module builds the octets they authenticate.
//!
//! Sending: the crypto layer knows the body length (IV, ciphertext with
//! padding and Pad Length, ICV) before encrypting, so it calls
//! [`Encrypted::prefix`] (or [`EncryptedFragment::prefix`]) with that
//! length, uses the prefix as the AEAD associated data (or as the start of
//! the HMAC input), then [`assemble`]s prefix and body into the datagram.
//!
//! Receiving: [`Message::decode`](super::Message::decode) returns the SK
//! payload last, with its body; [`Encrypted::authenticated_prefix`] gives
//! the octets before the body (IKE header and SK header).

use super::error::{u16_len, EncodeError};
use super::header::{Framing, Header};
use super::iana::PayloadType;
use super::payload::GENERIC_HEADER_LEN;

/// Encrypted and Authenticated payload (SK).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Initialization Vector                     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                    Encrypted IKE Payloads                     ~
/// +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |               |             Padding (0-255 octets)            |
/// +-+-+-+-+-+-+-+-+                               +-+-+-+-+-+-+-+-+
/// |                                               |  Pad Length   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                    Integrity Checksum Data                    ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Next Payload is the type of the first encrypted payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Encrypted {
    /// Next Payload: the type of the first inner payload.
    pub next_payload: PayloadType,
    /// IV || ciphertext (with padding and Pad Length) || ICV.
    pub body: Vec<u8>,
}

/// Encrypted and Authenticated Fragment payload (SKF, RFC 7383).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |        Fragment Number        |        Total Fragments        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Initialization Vector                     |
/// ~                  Encrypted content, Padding, Pad Length       ~
/// ~                    Integrity Checksum Data                    ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Next Payload is the first inner payload's type in fragment 1 and 0 in
/// the others. Range checks on the numbers are left to the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptedFragment {
    /// Next Payload: the first inner payload's type (fragment 1) or 0.
    pub next_payload: PayloadType,
    /// Fragment Number, from 1.
    pub fragment_number: u16,
    /// Total Fragments.
    pub total_fragments: u16,
    /// IV || ciphertext (with padding and Pad Length) || ICV.
    pub body: Vec<u8>,
}

/// The part of the datagram before `body`, if the datagram ends with it.
fn before_body<'a>(datagram: &'a [u8], body: &[u8]) -> Option<&'a [u8]> {
    let n = datagram.len().checked_sub(body.len())?;
    let (prefix, tail) = datagram.split_at_checked(n)?;
    (tail == body).then_some(prefix)
}

fn prefix(
    header: &Header,
    payload_type: PayloadType,
    next_payload: PayloadType,
    fields: &[u8],
    body_len: usize,
) -> Result<Vec<u8>, EncodeError> {
    let payload_len = GENERIC_HEADER_LEN
        .checked_add(fields.len())
        .and_then(|n| n.checked_add(body_len))
        .ok_or(EncodeError::TooLong {
            what: "payload",
            length: usize::MAX,
        })?;
    let payload_len = u16_len("payload", payload_len)?;
    let length = u32::from(payload_len) + Header::LEN as u32;
    let mut out = Vec::with_capacity(Header::LEN + GENERIC_HEADER_LEN + fields.len());
    header.write(
        Framing {
            next_payload: payload_type,
            length,
        },
        &mut out,
    );
    out.push(next_payload.0);
    out.push(0);
    out.extend_from_slice(&payload_len.to_be_bytes());
    out.extend_from_slice(fields);
    Ok(out)
}

impl Encrypted {
    /// The octets before the body of a message whose only payload is SK:
    /// IKE header (Next Payload SK, Length of the whole message) and SK
    /// generic header. `next_payload` is the first inner payload's type,
    /// `body_len` the length of IV || ciphertext || ICV.
    pub fn prefix(
        header: &Header,
        next_payload: PayloadType,
        body_len: usize,
    ) -> Result<Vec<u8>, EncodeError> {
        prefix(header, PayloadType::SK, next_payload, &[], body_len)
    }

    /// In a received `datagram` whose last payload is this one, the octets
    /// authenticated besides the body: everything before the body. `None`
    /// if the datagram does not end with this body.
    pub fn authenticated_prefix<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        before_body(datagram, &self.body)
    }
}

impl EncryptedFragment {
    /// Like [`Encrypted::prefix`] for a message whose only payload is SKF:
    /// the prefix ends with Fragment Number and Total Fragments, which are
    /// authenticated too (RFC 7383 §2.5).
    pub fn prefix(
        header: &Header,
        next_payload: PayloadType,
        fragment_number: u16,
        total_fragments: u16,
        body_len: usize,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut fields = [0u8; 4];
        let (num, total) = fields.split_at_mut(2);
        num.copy_from_slice(&fragment_number.to_be_bytes());
        total.copy_from_slice(&total_fragments.to_be_bytes());
        prefix(header, PayloadType::SKF, next_payload, &fields, body_len)
    }

    /// Like [`Encrypted::authenticated_prefix`].
    pub fn authenticated_prefix<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        before_body(datagram, &self.body)
    }
}

/// The datagram: `prefix` (from [`Encrypted::prefix`] or
/// [`EncryptedFragment::prefix`]) followed by the body it was built for.
pub fn assemble(mut prefix: Vec<u8>, body: &[u8]) -> Vec<u8> {
    prefix.extend_from_slice(body);
    prefix
}
