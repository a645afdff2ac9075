//! Decode and encode errors, and what each one puts on the wire.
//!
//! Every decode error names the NOTIFICATION that answers it
//! ([`DecodeError::notification`], RFC 4271 §6.1–6.3). UPDATE errors that
//! RFC 7606 softens never surface as an `Err`: [`Update::decode`] returns the
//! message with [`Update::treat_as_withdraw`] or
//! [`Update::discarded_attributes`] filled in, and only the errors that call
//! for a session reset come back as [`UpdateError`] in an `Err`.
//! [`ErrorHandling::for_attribute`] is the RFC 7606 classification itself.
//!
//! [`Update::decode`]: super::Update::decode
//! [`Update::treat_as_withdraw`]: super::Update::treat_as_withdraw
//! [`Update::discarded_attributes`]: super::Update::discarded_attributes

use std::net::Ipv4Addr;

use thiserror::Error;

use super::iana::{
    AttributeType, ErrorCode, MessageHeaderSubcode, OpenSubcode, ParameterType, UpdateSubcode,
};
use super::message::Notification;
use super::DecodeContext;

/// A received message that cannot be accepted; the session answers it with
/// [`DecodeError::notification`] and closes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Error)]
pub enum DecodeError {
    /// The message header is wrong (RFC 4271 §6.1).
    #[error("message header error: {0}")]
    Header(#[from] HeaderError),
    /// The OPEN message is wrong (RFC 4271 §6.2).
    #[error("OPEN message error: {0}")]
    Open(#[from] OpenError),
    /// The UPDATE message is wrong in a way that RFC 7606 answers with a
    /// session reset (RFC 4271 §6.3).
    #[error("UPDATE message error: {0}")]
    Update(#[from] UpdateError),
}

impl DecodeError {
    /// The NOTIFICATION to send for this error.
    pub fn notification(&self) -> Notification {
        match self {
            Self::Header(e) => e.notification(),
            Self::Open(e) => e.notification(),
            Self::Update(e) => e.notification(),
        }
    }
}

/// Message Header Error (RFC 4271 §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Error)]
pub enum HeaderError {
    /// The marker is not all ones.
    #[error("connection not synchronized (marker is not all ones)")]
    ConnectionNotSynchronized,
    /// The length field is out of range for the message type.
    #[error("bad message length {length}")]
    BadMessageLength {
        /// The length field as received.
        length: u16,
    },
    /// The message type is not one we know.
    #[error("bad message type {message_type}")]
    BadMessageType {
        /// The type field as received.
        message_type: u8,
    },
    /// Fewer octets than a message header were given.
    #[error("{available} octets are too few for a message header")]
    Truncated {
        /// Octets given.
        available: usize,
    },
    /// The buffer does not hold exactly the message its header announces.
    #[error("header announces {length} octets, {available} given")]
    LengthMismatch {
        /// The length field.
        length: u16,
        /// Octets given.
        available: usize,
    },
}

impl HeaderError {
    /// The NOTIFICATION to send for this error.
    pub fn notification(&self) -> Notification {
        let (subcode, data) = match self {
            Self::ConnectionNotSynchronized => {
                (MessageHeaderSubcode::ConnectionNotSynchronized, Vec::new())
            }
            Self::BadMessageLength { length } | Self::LengthMismatch { length, .. } => (
                MessageHeaderSubcode::BadMessageLength,
                length.to_be_bytes().to_vec(),
            ),
            Self::Truncated { available } => {
                let length = u16::try_from(*available).unwrap_or(u16::MAX);
                (
                    MessageHeaderSubcode::BadMessageLength,
                    length.to_be_bytes().to_vec(),
                )
            }
            Self::BadMessageType { message_type } => {
                (MessageHeaderSubcode::BadMessageType, vec![*message_type])
            }
        };
        Notification::new(ErrorCode::MessageHeader, subcode, data)
    }
}

/// OPEN Message Error (RFC 4271 §6.2, RFC 5492, RFC 7607).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Error)]
pub enum OpenError {
    /// The version is not 4.
    #[error("unsupported version number {version}")]
    UnsupportedVersionNumber {
        /// The version the peer bid.
        version: u8,
    },
    /// The peer's AS number is not acceptable (AS 0, RFC 7607).
    #[error("bad peer AS {asn}")]
    BadPeerAs {
        /// The AS number as received.
        asn: u32,
    },
    /// The BGP identifier is not acceptable (zero, RFC 6286).
    #[error("bad BGP identifier {identifier}")]
    BadBgpIdentifier {
        /// The identifier as received.
        identifier: Ipv4Addr,
    },
    /// An optional parameter other than Capabilities.
    #[error("unsupported optional parameter {parameter_type:?}")]
    UnsupportedOptionalParameter {
        /// The parameter type.
        parameter_type: ParameterType,
    },
    /// A hold time of 1 or 2 seconds.
    #[error("unacceptable hold time {hold_time}")]
    UnacceptableHoldTime {
        /// The hold time as received.
        hold_time: u16,
    },
    /// The optional parameters or a capability do not parse.
    #[error("malformed {what}")]
    Malformed {
        /// What did not parse.
        what: &'static str,
    },
}

impl OpenError {
    /// The NOTIFICATION to send for this error.
    pub fn notification(&self) -> Notification {
        let (subcode, data) = match self {
            // The data is the largest version we support (RFC 4271 §6.2).
            Self::UnsupportedVersionNumber { .. } => (
                OpenSubcode::UnsupportedVersionNumber,
                u16::from(super::BGP_VERSION).to_be_bytes().to_vec(),
            ),
            Self::BadPeerAs { .. } => (OpenSubcode::BadPeerAs, Vec::new()),
            Self::BadBgpIdentifier { .. } => (OpenSubcode::BadBgpIdentifier, Vec::new()),
            Self::UnsupportedOptionalParameter { .. } => {
                (OpenSubcode::UnsupportedOptionalParameter, Vec::new())
            }
            Self::UnacceptableHoldTime { .. } => (OpenSubcode::UnacceptableHoldTime, Vec::new()),
            Self::Malformed { .. } => (OpenSubcode::Unspecific, Vec::new()),
        };
        Notification::new(ErrorCode::OpenMessage, subcode, data)
    }
}

/// UPDATE Message Error (RFC 4271 §6.3): one variant per subcode. Where the
/// RFC puts the erroneous attribute in the data, `attribute` holds it as
/// received: flags, type code, length and value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Error)]
pub enum UpdateError {
    /// The withdrawn routes, attribute and NLRI lengths do not add up, or
    /// MP_REACH_NLRI / MP_UNREACH_NLRI appears twice.
    #[error("malformed attribute list")]
    MalformedAttributeList,
    /// A well-known (non-optional) attribute we do not know.
    #[error("unrecognized well-known attribute {type_code:?}")]
    UnrecognizedWellKnownAttribute {
        /// Its type code.
        type_code: AttributeType,
        /// The attribute as received.
        attribute: Vec<u8>,
    },
    /// ORIGIN, AS_PATH or NEXT_HOP is absent from an UPDATE announcing routes.
    #[error("missing well-known attribute {type_code:?}")]
    MissingWellKnownAttribute {
        /// The missing attribute.
        type_code: AttributeType,
    },
    /// The Optional or Transitive flag contradicts the attribute type.
    #[error("attribute flags error in {type_code:?}")]
    AttributeFlags {
        /// Its type code.
        type_code: AttributeType,
        /// The attribute as received.
        attribute: Vec<u8>,
    },
    /// The length does not fit the attribute type, or overruns the list.
    #[error("attribute length error in {type_code:?}")]
    AttributeLength {
        /// Its type code.
        type_code: AttributeType,
        /// The attribute as received (possibly cut short).
        attribute: Vec<u8>,
    },
    /// ORIGIN has an undefined value.
    #[error("invalid ORIGIN")]
    InvalidOrigin {
        /// The attribute as received.
        attribute: Vec<u8>,
    },
    /// NEXT_HOP is not a valid host address.
    #[error("invalid NEXT_HOP")]
    InvalidNextHop {
        /// The attribute as received.
        attribute: Vec<u8>,
    },
    /// A recognized optional attribute does not parse.
    #[error("optional attribute error in {type_code:?}")]
    OptionalAttribute {
        /// Its type code.
        type_code: AttributeType,
        /// The attribute as received.
        attribute: Vec<u8>,
    },
    /// A prefix in the withdrawn routes or NLRI field does not parse.
    #[error("invalid network field")]
    InvalidNetworkField,
    /// An AS_PATH (or AS4_PATH) segment does not parse.
    #[error("malformed AS_PATH")]
    MalformedAsPath,
}

impl UpdateError {
    /// The UPDATE Message Error subcode.
    pub fn subcode(&self) -> UpdateSubcode {
        match self {
            Self::MalformedAttributeList => UpdateSubcode::MalformedAttributeList,
            Self::UnrecognizedWellKnownAttribute { .. } => {
                UpdateSubcode::UnrecognizedWellKnownAttribute
            }
            Self::MissingWellKnownAttribute { .. } => UpdateSubcode::MissingWellKnownAttribute,
            Self::AttributeFlags { .. } => UpdateSubcode::AttributeFlagsError,
            Self::AttributeLength { .. } => UpdateSubcode::AttributeLengthError,
            Self::InvalidOrigin { .. } => UpdateSubcode::InvalidOriginAttribute,
            Self::InvalidNextHop { .. } => UpdateSubcode::InvalidNextHopAttribute,
            Self::OptionalAttribute { .. } => UpdateSubcode::OptionalAttributeError,
            Self::InvalidNetworkField => UpdateSubcode::InvalidNetworkField,
            Self::MalformedAsPath => UpdateSubcode::MalformedAsPath,
        }
    }

    /// The NOTIFICATION data field (RFC 4271 §6.3).
    pub fn data(&self) -> Vec<u8> {
        match self {
            Self::MalformedAttributeList | Self::InvalidNetworkField | Self::MalformedAsPath => {
                Vec::new()
            }
            Self::MissingWellKnownAttribute { type_code } => vec![u8::from(*type_code)],
            Self::UnrecognizedWellKnownAttribute { attribute, .. }
            | Self::AttributeFlags { attribute, .. }
            | Self::AttributeLength { attribute, .. }
            | Self::InvalidOrigin { attribute }
            | Self::InvalidNextHop { attribute }
            | Self::OptionalAttribute { attribute, .. } => attribute.clone(),
        }
    }

    /// The NOTIFICATION to send when this error resets the session.
    pub fn notification(&self) -> Notification {
        Notification::new(ErrorCode::UpdateMessage, self.subcode(), self.data())
    }
}

/// The approach RFC 7606 §2 prescribes for an error in an UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorHandling {
    /// Send the NOTIFICATION and close the session.
    SessionReset,
    /// Withdraw every route the UPDATE announces, as if listed in its
    /// withdrawn routes; the session stays up.
    TreatAsWithdraw,
    /// Drop the attribute and go on with the UPDATE.
    AttributeDiscard,
}

impl ErrorHandling {
    /// The approach RFC 7606 §7 (and RFC 6793 §6 for the AS4 attributes)
    /// prescribes for a malformed attribute of `type_code`, including a flags
    /// error (RFC 7606 §3 c). `announces_ipv4` says whether the UPDATE has a
    /// non-empty IPv4 NLRI field: without one, NEXT_HOP is ignored (RFC 4760
    /// §3). An attribute of unknown type is only ever in error when it claims
    /// to be well-known, which resets the session (RFC 4271 §6.3).
    pub fn for_attribute(
        type_code: AttributeType,
        ctx: &DecodeContext,
        announces_ipv4: bool,
    ) -> ErrorHandling {
        match type_code {
            AttributeType::Origin
            | AttributeType::AsPath
            | AttributeType::MultiExitDisc
            | AttributeType::Communities
            | AttributeType::OriginatorId
            | AttributeType::ClusterList
            | AttributeType::ExtendedCommunities
            | AttributeType::LargeCommunities
            | AttributeType::OnlyToCustomer => Self::TreatAsWithdraw,
            AttributeType::NextHop if announces_ipv4 => Self::TreatAsWithdraw,
            AttributeType::NextHop => Self::AttributeDiscard,
            AttributeType::LocalPref if ctx.internal_peer => Self::TreatAsWithdraw,
            AttributeType::LocalPref => Self::AttributeDiscard,
            AttributeType::AtomicAggregate
            | AttributeType::Aggregator
            | AttributeType::As4Path
            | AttributeType::As4Aggregator => Self::AttributeDiscard,
            // The NLRI inside cannot be located reliably (RFC 7606 §7.11,
            // §5.3): session reset, the stronger of the two options.
            AttributeType::MpReachNlri | AttributeType::MpUnreachNlri => Self::SessionReset,
            AttributeType::Unknown(_) => Self::SessionReset,
        }
    }
}

/// A message that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Error)]
pub enum EncodeError {
    /// The message exceeds 4096 octets (RFC 4271 §4.1); split it.
    #[error("message of {length} octets exceeds the maximum of 4096")]
    MessageTooLong {
        /// The length it would have had.
        length: usize,
    },
    /// A field does not fit its length field.
    #[error("{field} of {length} octets does not fit its length field")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        length: usize,
    },
}
