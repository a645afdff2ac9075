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
//!   path, prefix lists, what a peer would refuse.
//! - [`config`]: the speaker's and peers' configuration, cloud profiles, and
//!   the checks that refuse or warn.
//! - [`speaker`]: the pure core the daemon drives: every session, the RIBs
//!   and the policy, emitting route and peer events.
//! - [`driver`]: TCP listener/connector bound to the tunnel addresses; the
//!   only I/O in this crate.

pub mod config;
pub mod decision;
pub mod driver;
pub mod policy;
pub mod rib;
pub mod session;
pub mod speaker;
pub mod wire;

pub use config::{PeerConfig, Profile, SpeakerConfig, Timers};
pub use speaker::{Event, LocRibView, Output, Speaker};

/// A peer of the speaker: its index in [`SpeakerConfig::peers`], then
/// counting on through [`Speaker::add_peer`]. Ids are never reused: a
/// removed peer's id stays retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub usize);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer#{}", self.0)
    }
}
