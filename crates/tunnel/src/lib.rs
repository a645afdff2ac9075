//! vpngw-tunnel: the tunnels of a route-based IPsec gateway.
//!
//! This crate owns everything between a connection's configuration and the
//! encrypted packets on the wire:
//!
//! - [`ike`]: IKEv2 (RFC 7296) with pre-shared keys — wire format, the IKE SA
//!   state machine, key derivation and proposal matching. Pure: fed with
//!   datagrams, time and randomness, it returns datagrams to send, timers and
//!   events ("child SA installed", "tunnel down").
//! - [`esp`]: ESP (RFC 4303) in UDP (RFC 3948) — seal/open of packets,
//!   anti-replay windows and the read-mostly SA table of the datapath. Pure
//!   crypto transforms into caller-owned buffers.
//! - [`driver`]: the only part that does I/O — the UDP 500/4500 sockets, one
//!   TUN device per connection (behaving like a VTI) and the datapath threads.
//!
//! The protocol cores never import the driver, never read a clock and never
//! touch a socket (see `DESIGN.md`, "Protocol cores are sans-IO").

pub mod driver;
pub mod esp;
pub mod ike;
#[cfg(test)]
mod sim_clock;
