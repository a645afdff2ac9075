//! Decode and encode errors, and the notify a responder answers with.

use super::iana::{NotifyType, PayloadType};

/// Why a datagram or payload chain could not be decoded.
///
/// Structural errors map to INVALID_SYNTAX; see [`DecodeError::notify_type`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended while reading `what`.
    #[error("truncated: input ends inside the {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// A length field that is too small for its structure, or larger than
    /// the data it sits in.
    #[error("bad length {length} in the {what}")]
    BadLength {
        /// The structure whose length field is wrong.
        what: &'static str,
        /// The length it claims.
        length: usize,
    },
    /// The IKE header's Length differs from the datagram's size.
    #[error("IKE header says {header} bytes, datagram has {datagram}")]
    LengthMismatch {
        /// The header's Length field.
        header: u32,
        /// The size of the datagram.
        datagram: usize,
    },
    /// The IKE header's major version is not 2.
    #[error("unsupported IKE major version {major}")]
    InvalidMajorVersion {
        /// The major version received.
        major: u8,
    },
    /// A payload we do not understand with the Critical bit set.
    #[error("unsupported critical payload type {payload_type:?}")]
    UnsupportedCriticalPayload {
        /// Its payload type.
        payload_type: PayloadType,
    },
    /// Bytes left over after a structure that should have consumed them.
    #[error("{extra} trailing bytes after the {what}")]
    TrailingData {
        /// The structure that should have ended the data.
        what: &'static str,
        /// How many bytes are left.
        extra: usize,
    },
    /// A field with a value the format forbids.
    #[error("invalid {what}: {value}")]
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The value received.
        value: u32,
    },
}

impl DecodeError {
    /// The notify a responder answers with (RFC 7296 §2.21, §3.10.1).
    pub fn notify_type(&self) -> NotifyType {
        match self {
            DecodeError::InvalidMajorVersion { .. } => NotifyType::INVALID_MAJOR_VERSION,
            DecodeError::UnsupportedCriticalPayload { .. } => {
                NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD
            }
            DecodeError::Truncated { .. }
            | DecodeError::BadLength { .. }
            | DecodeError::LengthMismatch { .. }
            | DecodeError::TrailingData { .. }
            | DecodeError::InvalidValue { .. } => NotifyType::INVALID_SYNTAX,
        }
    }

    /// The Notification Data of that notify: the one-octet payload type for
    /// UNSUPPORTED_CRITICAL_PAYLOAD, empty otherwise.
    pub fn notify_data(&self) -> Vec<u8> {
        match self {
            DecodeError::UnsupportedCriticalPayload { payload_type } => vec![payload_type.0],
            DecodeError::Truncated { .. }
            | DecodeError::BadLength { .. }
            | DecodeError::LengthMismatch { .. }
            | DecodeError::InvalidMajorVersion { .. }
            | DecodeError::TrailingData { .. }
            | DecodeError::InvalidValue { .. } => Vec::new(),
        }
    }
}

/// Why a message could not be encoded: a value that does not fit its field.
/// These are bugs of the caller, reported instead of sending a bad message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A structure longer than its length field can say.
    #[error("{what} too long: {length} bytes")]
    TooLong {
        /// The structure.
        what: &'static str,
        /// Its length.
        length: usize,
    },
    /// More elements than their count field can say.
    #[error("too many {what}: {count}")]
    TooMany {
        /// The elements.
        what: &'static str,
        /// How many there are.
        count: usize,
    },
    /// A field with a value the format forbids (e.g. a Nonce outside 16..=256 bytes).
    #[error("invalid {what}: {value}")]
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The value.
        value: usize,
    },
    /// An Encrypted (SK or SKF) payload that is not the last of its chain.
    #[error("the Encrypted payload must be the last payload")]
    EncryptedNotLast,
}

/// A length for a 16-bit length field.
pub(crate) fn u16_len(what: &'static str, length: usize) -> Result<u16, EncodeError> {
    u16::try_from(length).map_err(|_| EncodeError::TooLong { what, length })
}

/// A count for an 8-bit count field.
pub(crate) fn u8_count(what: &'static str, count: usize) -> Result<u8, EncodeError> {
    u8::try_from(count).map_err(|_| EncodeError::TooMany { what, count })
}
