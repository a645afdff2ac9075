//! IKEv2 wire format (RFC 7296 §3): header and payloads, encode and
//! decode, never panicking on input. No protocol logic lives here.
//!
//! - [`header`]: the IKE header, [`IkeSpi`], [`Flags`].
//! - [`payload`]: [`Payload`] and the payload bodies; payload chains
//!   ([`decode_payloads`], [`encode_payloads`]).
//! - [`sa`]: proposals, transforms, attributes of the SA payload.
//! - [`ts`]: traffic selectors.
//! - [`encrypted`]: the SK and SKF payloads and the octets they authenticate.
//! - [`iana`]: open codepoints (exchange, payload, notify types, ...).
//! - [`error`]: [`DecodeError`] (with the notify to answer) and [`EncodeError`].
//!
//! A whole datagram is a [`Message`]: decode it with [`Message::decode`],
//! build one with [`Message::encode`]. Messages with an SK payload are
//! decoded in two steps: the outer message (whose last payload is
//! [`Payload::Encrypted`]), then, after decryption, the inner chain with
//! [`decode_payloads`] starting at the SK payload's Next Payload.

pub mod encrypted;
pub mod error;
pub mod header;
pub mod iana;
pub mod payload;
mod reader;
pub mod sa;
pub mod ts;

pub use encrypted::{assemble, Encrypted, EncryptedFragment};
pub use error::{DecodeError, EncodeError};
pub use header::{Flags, Framing, Header, IkeSpi};
pub use iana::{AuthMethod, ExchangeType, IdType, NotifyType, PayloadType, ProtocolId, TsType};
pub use payload::{
    decode_payloads, encode_payloads, Authentication, Delete, Identification, KeyExchange, Notify,
    Payload, UnknownPayload, NONCE_LEN,
};
pub use sa::{Attribute, Proposal, Spi, Transform, ATTR_KEY_LENGTH};
pub use ts::TrafficSelector;

use reader::{patch_u32, Reader};

/// One IKE message: the header and its payload chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// The IKE header.
    pub header: Header,
    /// The payloads, in order; an SK or SKF payload can only be last.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Decodes a whole datagram (without the four-octet non-ESP marker of
    /// port 4500). The header's Length must equal the datagram's size.
    pub fn decode(datagram: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader::new(datagram);
        let (header, framing) = Header::read(&mut r)?;
        if usize::try_from(framing.length).ok() != Some(datagram.len()) {
            return Err(DecodeError::LengthMismatch {
                header: framing.length,
                datagram: datagram.len(),
            });
        }
        let payloads = decode_payloads(framing.next_payload, r.rest())?;
        Ok(Message { header, payloads })
    }

    /// Encodes the message; Next Payload and Length are derived.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(512);
        let placeholder = Framing {
            next_payload: PayloadType::NO_NEXT_PAYLOAD,
            length: 0,
        };
        self.header.write(placeholder, &mut out);
        let first = payload::write_payloads(&self.payloads, &mut out)?;
        let length = u32::try_from(out.len()).map_err(|_| EncodeError::TooLong {
            what: "message",
            length: out.len(),
        })?;
        if let Some(np) = out.get_mut(16) {
            *np = first.0;
        }
        patch_u32(&mut out, 24, length);
        Ok(out)
    }
}
