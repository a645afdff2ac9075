//! `vpngw demo` as a user runs it: it must build the topology, bring both
//! tunnels up, show the ECMP group, survive the failure without losing the
//! flows, and clean up after itself. (The topology is drawn in
//! `src/demo.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::process::Command;

#[test]
fn demo_runs_and_fails_over() {
    let out = Command::new(env!("CARGO_BIN_EXE_vpngw"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both tunnels in one nexthop group before the failure...
    assert!(
        stdout.contains("dev vti-onprem-1") && stdout.contains("dev vti-onprem-2"),
        "{stdout}"
    );
    let before = stdout.split("=== 7.").next().unwrap();
    assert!(
        before
            .lines()
            .any(|l| l.contains(" group ") && l.contains('/')),
        "no ECMP group:\n{before}"
    );
    // ...and only onprem-2 after it.
    let after = stdout.split("=== 7.").nth(1).unwrap();
    assert!(after.contains("took tunnel onprem-1 down"), "{after}");
    let routes_after = after.split("=== 8.").next().unwrap();
    assert!(
        !routes_after.contains("vti-onprem-1"),
        "onprem-1 still routed:\n{routes_after}"
    );
    // Every flow kept working: at most a few pings of 500 lost.
    for line in stdout
        .lines()
        .filter(|l| l.starts_with("flow from") && l.contains("transmitted"))
    {
        let received: u32 = line
            .split(", ")
            .find_map(|p| p.strip_suffix(" received"))
            .and_then(|r| r.parse().ok())
            .unwrap();
        assert!(received >= 480, "{line}");
    }
    // Nothing left behind.
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(!names.contains("-onprem-1"), "namespaces left:\n{names}");
}
