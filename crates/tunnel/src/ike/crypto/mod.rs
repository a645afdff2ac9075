//! IKEv2 cryptography, pure: no I/O, no clock, no RNG.
//!
//! - [`prf`](mod@prf): the negotiated PRF, `prf+` (RFC 7296 §2.13) and a
//!   constant-time comparison.
//! - [`keys`]: SKEYSEED and the IKE SA keys `SK_*` (§2.14), their rekeyed
//!   successors (§2.18), child SA keying material (§2.17) and the PSK AUTH
//!   octets (§2.15).
//! - [`dh`]: Diffie-Hellman (MODP 2048, ECP 256/384, Curve25519) with the
//!   caller's random bytes as the private value.
//! - [`sk`]: protection of the Encrypted payload `SK {...}` (§3.14 with
//!   AES-CBC + HMAC, RFC 5282 with AES-GCM).
//!
//! Randomness is an argument: [`KeyExchange::new`] takes
//! [`secret_len`]`(group)` random bytes and [`SkCipher::protect`] takes the
//! IV; the state machine draws both from its caller. All key material lives
//! in [`Zeroizing`](zeroize::Zeroizing) buffers and no key type prints its
//! contents with `Debug`.

pub mod dh;
pub mod keys;
pub mod prf;
pub mod sk;

#[cfg(test)]
mod strongswan_kat;

pub use dh::{secret_len, KeyExchange};
pub use keys::{psk_auth, skeyseed, verify_psk_auth, ChildKeys, IkeKeys};
pub use prf::{ct_eq, prf, prf_plus};
pub use sk::SkCipher;

use crate::ike::proposal::DhGroup;

/// What went wrong in a cryptographic operation. Errors caused by the peer
/// (bad public value, failed ICV, bad padding) map to dropping the message
/// or to INVALID_SYNTAX / INVALID_KE_PAYLOAD; the others are local bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// prf+ can produce at most 255 blocks of PRF output.
    #[error("prf+ asked for {requested} bytes, at most {max} are possible")]
    PrfPlusTooLong {
        /// Bytes asked for.
        requested: usize,
        /// 255 × the PRF's output length.
        max: usize,
    },
    /// A key handed to a cipher or MAC has the wrong length.
    #[error("{what} key must be {expected} bytes, got {got}")]
    KeyLength {
        /// Which key.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// The caller supplied the wrong number of random bytes for a DH secret.
    #[error("{group:?} needs {expected} random bytes for its private value, got {got}")]
    SecretLength {
        /// The group.
        group: DhGroup,
        /// [`secret_len`] of the group.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// The random bytes are not a usable private value (zero or not below the
    /// group order); draw new bytes and retry.
    #[error("the random bytes are not a valid {group:?} private value; retry with fresh ones")]
    InvalidSecret {
        /// The group.
        group: DhGroup,
    },
    /// The peer's KE data has the wrong length for the group.
    #[error("peer's {group:?} public value must be {expected} bytes, got {got}")]
    PeerPublicLength {
        /// The group.
        group: DhGroup,
        /// [`DhGroup::public_len`].
        expected: usize,
        /// Received length.
        got: usize,
    },
    /// The peer's KE data is not a valid public value.
    #[error("peer's {group:?} public value is invalid: {reason}")]
    PeerPublicInvalid {
        /// The group.
        group: DhGroup,
        /// Why (not on the curve, out of range, ...).
        reason: &'static str,
    },
    /// The DH result is degenerate (all-zero X25519 output, RFC 8031 §2.3).
    #[error("{group:?} shared secret is all zero (peer sent a low-order point)")]
    DegenerateSharedSecret {
        /// The group.
        group: DhGroup,
    },
    /// The IV handed to `protect` has the wrong length.
    #[error("IV must be {expected} bytes, got {got}")]
    IvLength {
        /// [`SkCipher::iv_len`].
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// The Encrypted payload body is too short to hold IV, data and ICV.
    #[error("encrypted payload body of {len} bytes is shorter than the minimum {min}")]
    ShortBody {
        /// Body length.
        len: usize,
        /// Smallest acceptable body.
        min: usize,
    },
    /// The ciphertext is not a whole number of cipher blocks.
    #[error("ciphertext of {len} bytes is not a multiple of the {block}-byte block")]
    NotBlockAligned {
        /// Ciphertext length.
        len: usize,
        /// Block size.
        block: usize,
    },
    /// The Pad Length octet points before the start of the plaintext.
    #[error("pad length {pad_len} does not fit in {len} decrypted bytes")]
    BadPadding {
        /// The Pad Length octet.
        pad_len: u8,
        /// Decrypted length, including padding and Pad Length.
        len: usize,
    },
    /// The integrity check value (or GCM tag) does not verify.
    #[error("integrity check failed")]
    AuthFailed,
    /// The underlying cipher library refused an operation that should not
    /// fail (a bug, not the peer's doing).
    #[error("cipher failure: {0}")]
    Cipher(&'static str),
}
