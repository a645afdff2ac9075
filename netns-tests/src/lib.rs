//! The network-namespace test harness for vpngw.
//!
//! End-to-end tests build small networks out of Linux network namespaces
//! joined by veth links, run real daemons inside them (vpngw, strongSwan's
//! charon, BIRD) and assert what a user would see: SAs, kernel routes,
//! pings, failover times.
//!
//! Everything a test creates is owned by a value that tears it down on drop,
//! also when the test panics: [`Netns`] deletes its namespace, [`Proc`] stops
//! its process by PID. Names are unique per test process and per test
//! (`vgt-<pid>-<seq>-<tag>`), so tests run in parallel without colliding, and
//! the first namespace a test process creates removes whatever an earlier,
//! killed run left behind (namespaces whose owning PID is gone, the processes
//! still inside them, and their work directories).
//!
//! The harness needs root (namespaces, veth, TUN); [`require_root`] says so
//! clearly instead of failing obscurely.
//!
//! Test code panics to fail, so this library uses `expect` freely.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod bench_lab;
pub mod bench_util;
pub mod bgp_feed;
pub mod bird;
pub mod bird_peer;
pub mod fabric;
pub mod failover_lab;
pub mod lab;
pub mod netns;
pub mod process;
pub mod route_watch;
pub mod strongswan;
pub mod traffic;
pub mod wait;
pub mod workdir;

pub use lab::{GatewayKind, SiteGateway, TwoSiteLab};
pub use netns::{veth, Netns};
pub use process::Proc;
pub use wait::wait_until;
pub use workdir::WorkDir;

/// Panics with a clear message unless the test runs as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "network-namespace tests need root (namespaces, veth, TUN): run them as root, \
         e.g. `sudo .ci/run`"
    );
}

/// Panics with a clear message if a program the test needs is missing.
pub fn require_program(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
        || std::path::Path::new(program).is_file();
    assert!(
        found,
        "`{program}` is not installed: install the Debian package `{package}` \
         (.ci/run installs everything the tests need)"
    );
}
