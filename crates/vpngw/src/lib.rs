//! The vpngw daemon as a library: configuration, wiring of the tunnel, BGP
//! and route drivers, the control socket. The `vpngw` binary is a thin CLI
//! over it; the netns tests use it too.
//!
//! The daemon composes the three driver crates — tunnels (`vpngw-tunnel`),
//! BGP (`vpngw-bgp`) and kernel routes (`vpngw-routes`) — passing their
//! events and commands between them. It owns the clock, the timers, the
//! signals, the config and the control socket.

pub mod config;
pub mod daemon;
pub mod demo;
