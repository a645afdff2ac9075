//! vpngw-routes: the gateway's routes in the Linux kernel.
//!
//! The daemon says which tunnels each prefix goes through
//! ([`Programmer::set_route`] / [`Command::SetRoute`]) and which tunnels are
//! up; this crate makes the kernel's routing table match, through
//! rtnetlink, so that a tunnel failure costs one kernel operation per
//! affected *group of tunnels*, not one per prefix.
//!
//! - [`nexthop`] (pure): tunnels and nexthop groups — one nexthop object per
//!   tunnel and family (device + peer tunnel address), one group per
//!   distinct set of tunnels, reference-counted by the routes using it.
//!   When a tunnel goes down, each group containing it is replaced by the
//!   group without it, moving every route behind it in one message; a group
//!   left with no tunnel is deleted, and the kernel removes its routes with
//!   it.
//! - [`diff`] (pure): what is installed ([`KernelState`]) against what
//!   should be, as ordered operations: nexthops and groups, then routes,
//!   then deletions.
//! - [`table`] (pure): the desired table (prefix → set of tunnels), the
//!   model, the installed state and the prefixes that may differ; the
//!   driver asks it for each step's operations.
//! - [`netlink`] (the only I/O): [`Programmer`], a synchronous driver over
//!   two NETLINK_ROUTE sockets, and [`Handle`], the same on a dedicated
//!   thread with a non-blocking command channel for the async daemon.
//!
//! Kernel state is owned: routes and nexthops carry our protocol number
//! ([`DEFAULT_PROTOCOL`], 200) in a configurable table (default main) with a
//! configurable metric; installs use replace, and deleting something
//! already gone is not an error. At start, routes and nexthops of our
//! protocol left by an earlier run (also after `kill -9`) are purged — or,
//! with [`Config::adopt`] (graceful restart), taken as installed until
//! [`Programmer::sweep_stale`]. A clean stop removes them. A notification
//! socket puts back routes of ours that someone else deleted, and a tunnel
//! link set down from outside counts as the tunnel down. Kernels without
//! nexthop objects (detected at start by creating a probe) get classic
//! RTA_MULTIPATH routes instead ([`Mode::Multipath`]).
//!
//! Tests: unit tests of the pure modules and the message codec here; real
//! kernel tests in network namespaces in `netns-tests/tests/routes.rs`. The
//! benchmark (100k and 1M routes through one group, against `ip -batch`):
//! `cargo bench -p vpngw-routes --bench kernel` as root.
//!
//! ## Why a hand-written netlink layer
//!
//! `rtnetlink` (0.24) and `netlink-packet-route` (0.34), the current
//! releases, have no nexthop objects: `RTA_NH_ID` exists, but there is no
//! RTM_NEWNEXTHOP message, nor NHA_GROUP / NHA_OIF / NHA_GATEWAY. And
//! `rtnetlink` sends one request at a time and awaits it, where throughput
//! here comes from batching thousands of messages per `sendmsg`. The
//! messages this crate needs are few and small (`rtmsg`, `nhmsg`,
//! `ifinfomsg`, a dozen attributes, acks), so [`netlink`] encodes them
//! itself over a libc socket, with a decoder that never panics.

pub mod diff;
pub mod netlink;
pub mod nexthop;
pub mod table;

pub use diff::{InstalledRoutes, KernelState, Op, RouteTarget};
/// Prefixes are `ipnet` networks; re-exported so callers need not pin it.
pub use ipnet::IpNet;
pub use netlink::{
    enter_netns, ApplyReport, Command, Config, Error, Event, Handle, Notice, OpError, Programmer,
    DEFAULT_METRIC, DEFAULT_PROTOCOL, MAIN_TABLE,
};
pub use nexthop::{Family, NexthopObject, NhId, Path, Tunnel, TunnelId};
pub use table::{Mode, RouteTable};

/// Gives the memory the allocator holds free back to the system (glibc's
/// `malloc_trim`; nothing elsewhere). A full table arriving or leaving
/// frees hundreds of megabytes of batches and queues that glibc would
/// otherwise keep; the route thread calls this after a large apply and the
/// daemon after a burst of BGP changes. It takes a few milliseconds.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
