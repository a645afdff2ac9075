//! IKEv2 (RFC 7296), sans-IO.
//!
//! - [`wire`]: encode/decode of headers and payloads, no logic.
//! - [`crypto`]: prf, prf+, SKEYSEED and key material, the SK payload AEAD.
//! - [`proposal`]: transforms, proposals in strongSwan notation, selection.
//! - [`sa`]: the IKE SA state machine (exchanges, retransmission, DPD).
//! - [`endpoint`]: every connection's IKE SAs behind one pair of ports:
//!   SPI dispatch, responders for configured peers, restarts.

pub mod crypto;
pub mod endpoint;
pub mod proposal;
pub mod sa;
pub mod wire;
