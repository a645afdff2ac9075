//! A stand-in for a test process that gets killed halfway: it creates a
//! namespace with the harness, starts a process inside it that is *not* tied
//! to its own life, prints `<namespace> <pid>` and waits to be killed.
//! `tests/harness.rs` kills it with SIGKILL (so no destructor runs) and
//! checks that the next run of the harness removes what it left.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::process::Stdio;

use vpngw_netns_tests::netns::unique_id;
use vpngw_netns_tests::Netns;

fn main() {
    let ns = Netns::new(&unique_id(), "held");
    let mut child = ns
        .command("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sleep in namespace");
    println!("{} {}", ns.name(), child.id());
    std::io::stdout().flush().expect("flush");
    // Wait to be killed; if we are not, reap the child like a good parent.
    let _ = child.wait();
    drop(ns);
}
