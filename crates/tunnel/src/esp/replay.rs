//! The ESP anti-replay window (RFC 4303 §3.4.3): a cheap check before decryption, a mark after it.
