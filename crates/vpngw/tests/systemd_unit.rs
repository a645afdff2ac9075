#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails
//! `deploy/vpngw.service` passes `systemd-analyze verify`, grants exactly
//! the capabilities the daemon uses, and reloads with SIGHUP.
//!
//! `systemd-analyze verify` checks that every Exec*= binary exists, so it
//! runs on a copy of the unit whose `/usr/local/sbin/vpngw` is the binary
//! cargo just built. It exits 0 even for unknown keys, bad values and
//! misspelt syscall groups (it logs them and ignores the line), so any
//! line of its output naming the unit fails the test too. It drops
//! misspelt capability names without a word, hence the exact comparison of
//! the capability sets.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the unit runs the daemon from, as in deploy/README.md.
const INSTALLED_BINARY: &str = "/usr/local/sbin/vpngw";

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/vpngw.service")
}

fn unit_text() -> String {
    std::fs::read_to_string(unit_path()).unwrap()
}

/// The values of `key` in `[section]`, in order; comments and other
/// sections are skipped. The unit uses no line continuations.
fn values(text: &str, section: &str, key: &str) -> Vec<String> {
    let mut current = String::new();
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "line continuation in the unit: {line}"
        );
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
        } else if current == section {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    found.push(v.trim().to_owned());
                }
            }
        }
    }
    found
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let vpngw = env!("CARGO_BIN_EXE_vpngw");
    // Exec*= lines split on whitespace and expand `%` specifiers.
    assert!(
        !vpngw.contains(char::is_whitespace) && !vpngw.contains('%'),
        "the built binary's path {vpngw:?} cannot be written unquoted in a unit file"
    );
    let text = unit_text();
    assert!(
        text.matches(INSTALLED_BINARY).count() >= 2,
        "the unit should run {INSTALLED_BINARY} (ExecStartPre= and ExecStart=)"
    );
    let scratch = std::env::temp_dir().join(format!("vpngw-systemd-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    // Same file name: the unit's name comes from it.
    let copy = scratch.join("vpngw.service");
    std::fs::write(&copy, text.replace(INSTALLED_BINARY, vpngw)).unwrap();

    let mut command = Command::new("systemd-analyze");
    command.arg("verify").arg(&copy);
    let output = command.output();
    let _ = std::fs::remove_dir_all(&scratch);
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "systemd-analyze is not installed: run `.ci/deps` as root \
             (it installs the Debian package systemd)"
        ),
        Err(e) => panic!("cannot run {command:?}: {e}"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!(
        "{command:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let about_unit: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.contains("vpngw.service") || l.contains(&*scratch.to_string_lossy()))
        .collect();
    assert!(
        output.status.success() && about_unit.is_empty(),
        "systemd-analyze verify {} failed ({}):\n{}\n(full stderr:\n{stderr})",
        unit_path().display(),
        output.status,
        about_unit.join("\n"),
    );
}

#[test]
fn unit_grants_exactly_net_admin_and_net_bind_service() {
    let text = unit_text();
    for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
        let lines = values(&text, "Service", key);
        assert_eq!(
            lines.len(),
            1,
            "{key}= should be set exactly once: {lines:?}"
        );
        let mut caps: Vec<&str> = lines[0].split_whitespace().collect();
        caps.sort_unstable();
        assert_eq!(
            caps,
            ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"],
            "{key}= (systemd drops misspelt names silently)"
        );
    }
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RuntimeDirectory", "vpngw"),
        ("DevicePolicy", "closed"),
        ("DeviceAllow", "/dev/net/tun rw"),
        (
            "RestrictAddressFamilies",
            "AF_INET AF_INET6 AF_NETLINK AF_UNIX",
        ),
    ] {
        assert_eq!(
            values(&text, "Service", key),
            [value],
            "{key}= in deploy/vpngw.service"
        );
    }
    assert!(
        values(&text, "Service", "SystemCallFilter").contains(&"@system-service".to_owned()),
        "SystemCallFilter=@system-service in deploy/vpngw.service"
    );
}

#[test]
fn reload_sends_sighup_to_the_daemon() {
    assert_eq!(
        values(&unit_text(), "Service", "ExecReload"),
        ["/bin/kill -HUP $MAINPID"],
        "vpngw rereads its configuration on SIGHUP"
    );
}
