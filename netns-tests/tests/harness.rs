//! The harness cleans up after itself: on panic, and after a killed run.
//!
//! ```text
//!   [vgt-<pid>-<n>-held]      one namespace, one process inside
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use vpngw_netns_tests::netns::{remove_stale, unique_id};
use vpngw_netns_tests::{wait_until, Netns, Proc, WorkDir};

fn namespace_exists(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|line| line.split_whitespace().next() == Some(name))
}

/// Alive means present in /proc and not a zombie waiting to be reaped.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// A test that panics still deletes its namespaces and stops its processes.
#[test]
fn panicking_test_leaves_no_namespace_or_process() {
    let id = unique_id();
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let dir = WorkDir::new(&id);
        let ns = Netns::new(&id, "panics");
        let sleeper = Proc::spawn(&ns, "sleep", &["sleep", "600"], &[], &dir.join("sleep.log"));
        tx.send((ns.name().to_string(), sleeper.pid())).unwrap();
        panic!("the test fails halfway");
    })
    .join();
    assert!(result.is_err(), "the inner test should have panicked");
    let (name, pid) = rx.recv().unwrap();
    assert!(
        !namespace_exists(&name),
        "namespace {name} survived the panic"
    );
    assert!(!process_alive(pid), "process {pid} survived the panic");
}

/// A test process killed outright (SIGKILL: no destructor runs) leaves its
/// namespace and a process inside it; the next run removes both.
#[test]
fn killed_run_is_cleaned_by_the_next_run() {
    let mut holder = Command::new(env!("CARGO_BIN_EXE_netns-holder"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start netns-holder");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut words = line.split_whitespace();
    let name = words.next().expect("namespace name").to_string();
    let pid: u32 = words.next().expect("pid").parse().unwrap();
    assert!(
        namespace_exists(&name) && process_alive(pid),
        "holder did not set up: {line}"
    );

    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        namespace_exists(&name),
        "a SIGKILLed holder cannot have cleaned up"
    );

    // Another test process may run the same cleanup first; either way the
    // namespace must be gone once ours has run.
    let removed = remove_stale();
    assert!(
        !namespace_exists(&name),
        "{name} not removed as stale (removed: {removed:?})"
    );
    wait_until(
        "the process left inside to die",
        Duration::from_secs(2),
        || {
            if process_alive(pid) {
                Err(format!("{pid} alive"))
            } else {
                Ok(())
            }
        },
    );
}

/// Namespaces of running tests are never taken for stale ones.
#[test]
fn live_namespaces_are_not_stale() {
    let ns = Netns::new(&unique_id(), "live");
    let removed = remove_stale();
    assert!(!removed.contains(&ns.name().to_string()));
    assert!(namespace_exists(ns.name()));
}
