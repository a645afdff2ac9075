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
    let section = |from: &str, to: &str| -> String {
        let rest = stdout.split(from).nth(1).unwrap_or_default();
        rest.split(to).next().unwrap_or_default().to_string()
    };
    // Both sites route the other's LAN over both tunnels (one ECMP route),
    // learned over BGP.
    let ecmp = section("=== 4.", "=== 5.");
    for dev in [
        "vti-onprem-t1",
        "vti-onprem-t2",
        "vti-cloud-t1",
        "vti-cloud-t2",
    ] {
        assert!(
            ecmp.contains(&format!("dev {dev}")),
            "{dev} missing:\n{ecmp}"
        );
    }
    assert!(ecmp.contains("onprem-t1, onprem-t2  ECMP"), "{ecmp}");
    let shown = section("=== 3.", "=== 4.");
    assert!(
        shown.matches("Established").count() >= 4,
        "two sessions in status and bgp:\n{shown}"
    );
    // The failure: site A takes tunnel 2 down and routes through tunnel 1.
    let failure = section("=== 7.", "=== 8.");
    assert!(failure.contains("removed: cloud-t2"), "{failure}");
    assert!(failure.contains("tunnel onprem-t2 down"), "{failure}");
    assert!(
        !failure.contains("dev vti-onprem-t2"),
        "onprem-t2 still routed:\n{failure}"
    );
    assert!(
        !failure.contains("dev vti-cloud-t2"),
        "cloud-t2 still routed:\n{failure}"
    );
    // Every flow kept working: a flow on the failed tunnel may lose a few
    // pings (10 ms apart) while it moves, never more than 200 ms worth.
    let flows = section("=== 8.", "=== 9.");
    let lost: Vec<u32> = flows
        .lines()
        .filter(|l| l.starts_with("flow from"))
        .map(|l| {
            l.split(": ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no loss count in {l}"))
        })
        .collect();
    assert_eq!(lost.len(), 5, "{flows}");
    assert!(lost.iter().all(|l| *l <= 20), "{flows}");
    // Restored: ECMP again.
    let restore = section("=== 9.", "=== 10.");
    assert!(
        restore.contains("dev vti-onprem-t1") && restore.contains("dev vti-onprem-t2"),
        "{restore}"
    );
    // Nothing left behind.
    let id = stdout
        .split('[')
        .find_map(|p| p.split_once("-site-a]").map(|(id, _)| id.to_string()))
        .unwrap();
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(!names.contains(&id), "namespaces of {id} left:\n{names}");
}
