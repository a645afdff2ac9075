//! vpngw-bgp: the BGP-4 speaker that runs across each tunnel.
//!
//! - [`wire`]: BGP messages and path attributes (RFC 4271 §4, RFC 6793,
//!   RFC 5492, RFC 4760, RFC 2918), encode/decode, never panicking on input;
//!   errors map to NOTIFICATION codes or RFC 7606 treat-as-withdraw.
//! - [`session`]: the RFC 4271 §8 FSM per peer, fed with `(now, input)`,
//!   returning bytes to send, timers and events.
//! - [`rib`]: Adj-RIB-In per peer, Loc-RIB and Adj-RIB-Out, with shared path
//!   attributes.
//! - [`decision`]: the decision process (RFC 4271 §9.1), ECMP sets, and why a
//!   path lost.
//! - [`policy`]: the gateway's policy — own prefixes refused, own ASN in the
//!   path, max prefixes, prefix lists, prepend, transit.
//! - [`driver`]: TCP listener/connector bound to the tunnel addresses; the
//!   only I/O in this crate.

pub mod decision;
pub mod driver;
pub mod policy;
pub mod rib;
pub mod session;
pub mod wire;
