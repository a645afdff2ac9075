//! Every example in `deploy/examples/` passes `vpngw check-config`, with
//! its PSK files created where it expects them (readable by root only) and
//! its PSK environment variables set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

#[test]
fn every_example_passes_check_config() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples");
    let scratch = std::env::temp_dir().join(format!("vpngw-examples-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        // PSK files live in /etc/vpngw on a gateway; here in a scratch dir.
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("/etc/vpngw/", &format!("{}/", scratch.display()));
        for line in text.lines() {
            if let Some(file) = line
                .trim()
                .strip_prefix("psk_file = \"")
                .and_then(|r| r.split('"').next())
            {
                std::fs::write(file, "example-pre-shared-key-0123456789\n").unwrap();
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        let copy = scratch.join(path.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_vpngw"))
            .args(["check-config", copy.to_str().unwrap()])
            .env("VPNGW_PSK_BRANCH", "example-pre-shared-key-0123456789")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        assert!(
            out.status.success(),
            "{} fails check-config:\n{stdout}{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": ok:"), "{stdout}");
        checked += 1;
    }
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(
        checked >= 4,
        "expected the four examples, checked {checked}"
    );
}
