//! The pure core in memory with a simulated clock: the session FSM, the
//! decision process, the policy, and speakers wired to each other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod announce;
mod config;
mod decision;
mod fake;
mod net;
mod policy;
mod reload;
mod session;
mod speaker;
