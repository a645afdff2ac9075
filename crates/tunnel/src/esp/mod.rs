//! ESP (RFC 4303) in UDP (RFC 3948), sans-IO.
//!
//! - [`sa`]: one child SA's direction: keys, sequence numbers, seal/open into
//!   caller-owned buffers.
//! - [`replay`]: the anti-replay window (RFC 4303 §3.4.3), ESN aware.
//! - [`mss`]: TCP MSS clamping on SYNs through the tunnel.
//! - [`natt`]: what a datagram on UDP 4500 is (IKE, ESP, keepalive).
//! - [`table`]: the SPI → SA table the datapath reads without locking.

pub mod mss;
pub mod natt;
pub mod replay;
pub mod sa;
pub mod table;
