//! vpngw-bfd: Bidirectional Forwarding Detection (RFC 5880) for IP over
//! single hops (RFC 5881), to notice a dead tunnel in a fraction of a
//! second instead of a BGP hold time.
//!
//! - [`wire`]: the Control packet (RFC 5880 §4.1), encode/decode with the
//!   context-free reception checks; never panics on input. No
//!   authentication: packets with the A bit are discarded.
//! - [`session`]: one session in Asynchronous mode, sans-IO: fed with
//!   packets, time and commands, it returns packets to send, its next
//!   timeout and Up/Down events. Handshake, detection time, slow rate while
//!   not Up, Poll/Final, jitter.
//! - [`driver`]: the tokio driver for single-hop sessions over UDP (port
//!   3784, TTL 255 both ways); the only I/O in this crate.

#![warn(missing_docs)]

pub mod driver;
pub mod session;
pub mod wire;

pub use driver::{AddSessionError, Bfd, Counters, DriverConfig, Handle, SessionId, SessionStatus};
pub use session::{Event, Session, SessionConfig};
pub use wire::{ControlPacket, Diagnostic, State};
