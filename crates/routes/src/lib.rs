//! vpngw-routes: the gateway's routes in the Linux kernel.
//!
//! - [`diff`]: the desired table (from the Loc-RIB and static routes) against
//!   what is installed, as a batch of changes. Pure.
//! - [`nexthop`]: the nexthop-group model — routes point at a group of tunnel
//!   next hops, so a tunnel failure is one group change, not one per prefix.
//! - [`netlink`]: the driver — rtnetlink routes, nexthop objects and link
//!   events, tagged with our protocol number and purged of stale entries at
//!   start. The only I/O in this crate.

pub mod diff;
pub mod netlink;
pub mod nexthop;
