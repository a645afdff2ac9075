//! BGP wire format: OPEN (with capabilities), UPDATE (with path attributes),
//! KEEPALIVE, NOTIFICATION, ROUTE-REFRESH.
//!
//! Pure encode/decode, no logic and no I/O. Decoding never panics: every
//! error is typed and names what goes on the wire — a NOTIFICATION
//! ([`DecodeError::notification`]) or, for UPDATE attribute errors, the
//! RFC 7606 outcome carried in the decoded [`Update`].
//!
//! - [`Message::frame_length`] and [`Message::decode`] take bytes from the
//!   TCP stream; [`Message::encode`] appends one message to a buffer.
//! - [`DecodeContext`] carries what the session negotiated (4-octet AS) and
//!   what kind of peer it is; it is used both ways.
//! - Codepoints live in [`iana`]; unknown values are kept, not rejected,
//!   wherever the RFCs allow it.
//!
//! RFCs: 4271 (BGP-4), 5492 (capabilities), 4760 (multiprotocol), 2918
//! (route refresh), 6793 (4-octet AS), 1997 (communities), 7606 (revised
//! UPDATE error handling), 7607 (AS 0), 9072 (extended OPEN parameters).

#![warn(clippy::indexing_slicing)]

mod attribute;
mod capability;
mod error;
pub mod iana;
mod message;
mod mp;
mod nlri;
mod open;
mod reader;
mod update;
mod writer;

pub use attribute::{
    Aggregator, AsPath, AsPathSegment, AsPathSegmentType, AttributeFlags, AttributeValue,
    Community, Origin, PathAttribute,
};
pub use capability::Capability;
pub use error::{DecodeError, EncodeError, ErrorHandling, HeaderError, OpenError, UpdateError};
pub use iana::{Afi, AttributeType, CapabilityCode, ErrorCode, MessageType, Safi, AS_TRANS};
pub use message::{Header, Message, Notification, RouteRefresh};
pub use mp::{MpNextHop, MpReachNlri, MpUnreachNlri};
pub use open::{Open, OptionalParameter};
pub use update::{DiscardReason, DiscardedAttribute, TreatAsWithdraw, Update};

/// The BGP version this speaker talks.
pub const BGP_VERSION: u8 = 4;
/// The header marker: 16 octets of ones.
pub const MARKER: [u8; 16] = [0xff; 16];
/// Length of the message header.
pub const HEADER_LEN: u8 = 19;
/// Largest message (RFC 4271 §4.1; RFC 8654 extended messages are not
/// supported).
pub const MAX_MESSAGE_LEN: u16 = 4096;

/// What the session knows that changes how messages are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DecodeContext {
    /// Both sides advertised the 4-octet AS capability (RFC 6793): AS_PATH
    /// and AGGREGATOR carry 4-octet AS numbers, and AS4_PATH /
    /// AS4_AGGREGATOR are discarded on receipt.
    pub four_octet_as: bool,
    /// The peer is in our AS (iBGP). From an external peer LOCAL_PREF is
    /// discarded on receipt (RFC 4271 §5.1.5, RFC 7606 §7.5).
    pub internal_peer: bool,
}
