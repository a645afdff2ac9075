//! vpngw: a route-based IPsec site-to-site VPN gateway with an integrated
//! BGP speaker. This crate is the daemon and its command line: the
//! configuration, the wiring of the tunnel, BGP and route crates, the
//! control socket and the demo.

pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod metrics;
mod report;
pub mod show;
