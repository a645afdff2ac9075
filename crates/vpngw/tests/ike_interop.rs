//! vpngw's IKEv2 against strongSwan (charon with kernel-libipsec), both
//! directions, for the suites the issue names, and the failures a user
//! meets first: a wrong PSK, no common proposal, garbage on the ports.
//! Rekeying both ways: strongSwan forcing a child and an IKE rekey
//! (`swanctl --rekey`), and vpngw rekeying at its (short) soft lifetimes,
//! with and without PFS.
//!
//! ```text
//!   [gw] vpngw  192.0.2.1/24 ---- veth ---- 192.0.2.2/24  charon [peer]
//!            UDP 500 -> 4500 (NAT-T forced: ESP always in UDP)
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use vpngw_netns_tests::netns::unique_id;
use vpngw_netns_tests::strongswan::{Charon, ConnConfig};
use vpngw_netns_tests::{veth, wait_until, Netns, Proc, WorkDir};

const OURS: &str = "192.0.2.1";
const THEIRS: &str = "192.0.2.2";
const PSK: &str = "interop-test-psk-0123456789";
const SETUP: Duration = Duration::from_secs(20);

/// One vpngw and one charon on a shared link. Field order is drop order.
struct Interop {
    vpngw: Option<Proc>,
    charon: Option<Charon>,
    gw: Netns,
    peer: Netns,
    dir: WorkDir,
}

fn vpngw_config(
    dir: &WorkDir,
    ike: &str,
    esp: &str,
    initiate: bool,
    psk: &str,
    extra: &str,
) -> std::path::PathBuf {
    let psk_path = dir.write("vpngw.psk", psk);
    std::fs::set_permissions(&psk_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    dir.write(
        "vpngw.toml",
        &format!(
            r#"[gateway]
local_prefixes = ["10.1.0.0/24"]
control_socket = "{sock}"

[[connection]]
name = "peer"
local_address = "{OURS}"
remote_address = "{THEIRS}"
psk_file = "{psk}"
initiate = {initiate}
ike_proposals = ["{ike}"]
esp_proposals = ["{esp}"]
static_routes = ["10.2.0.0/24"]
{extra}
"#,
            psk = psk_path.display(),
            sock = dir.join("vpngw.sock").display()
        ),
    )
}

impl Interop {
    fn new() -> Interop {
        let id = unique_id();
        let dir = WorkDir::new(&id);
        let gw = Netns::new(&id, "gw");
        let peer = Netns::new(&id, "peer");
        veth(&gw, "eth0", &peer, "eth0");
        gw.ip(&format!("addr add {OURS}/24 dev eth0"));
        peer.ip(&format!("addr add {THEIRS}/24 dev eth0"));
        Interop {
            vpngw: None,
            charon: None,
            gw,
            peer,
            dir,
        }
    }

    fn start_vpngw(&mut self, ike: &str, esp: &str, initiate: bool, psk: &str) {
        self.start_vpngw_with(ike, esp, initiate, psk, "");
    }

    /// With `extra` lines in the connection's section.
    fn start_vpngw_with(&mut self, ike: &str, esp: &str, initiate: bool, psk: &str, extra: &str) {
        let conf = vpngw_config(&self.dir, ike, esp, initiate, psk, extra);
        let conf = conf.to_str().unwrap().to_string();
        self.vpngw = Some(Proc::spawn(
            &self.gw,
            "vpngw",
            &[env!("CARGO_BIN_EXE_vpngw"), "run", "--config", &conf],
            &[("RUST_LOG", "info")],
            &self.dir.join("vpngw.log"),
        ));
        wait_until("vpngw to listen", SETUP, || {
            let log = self.vpngw_log();
            if log.contains("IKE listening") {
                Ok(())
            } else {
                Err(log)
            }
        });
    }

    fn start_charon(&mut self, ike: &str, esp: &str, initiator: bool, psk: &str) {
        self.charon = Some(Charon::start(
            &self.peer,
            &self.dir,
            "peer",
            &ConnConfig {
                local: THEIRS.into(),
                remote: OURS.into(),
                psk: psk.into(),
                ike_proposals: ike.into(),
                esp_proposals: esp.into(),
                initiator,
                dual_stack: false,
            },
        ));
    }

    fn charon(&self) -> &Charon {
        self.charon.as_ref().unwrap()
    }

    fn vpngw_log(&self) -> String {
        self.vpngw.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// Waits for `needle` in vpngw's log.
    fn wait_log(&self, what: &str, needle: &str) -> String {
        wait_until(what, SETUP, || {
            let log = self.vpngw_log();
            if log.contains(needle) {
                Ok(log)
            } else {
                Err(log)
            }
        })
    }
}

/// Brings up an SA with vpngw initiating or responding, and checks what
/// strongSwan reports.
fn establishes(ike: &str, esp: &str, vpngw_initiates: bool, ike_algs: &str, esp_algs: &str) {
    let mut lab = Interop::new();
    // The responder is loaded first (REFERENCES.md: simultaneous loads can race).
    if vpngw_initiates {
        lab.start_charon(ike, esp, false, PSK);
        lab.start_vpngw(ike, esp, true, PSK);
    } else {
        lab.start_vpngw(ike, esp, false, PSK);
        lab.start_charon(ike, esp, true, PSK);
    }
    let sas = wait_until("strongSwan to report the SAs up", SETUP, || {
        lab.charon().established()
    });
    println!(
        "strongSwan swanctl --list-sas ({ike} / {esp}, vpngw initiates: {vpngw_initiates}):\n{sas}"
    );
    assert!(
        sas.contains(ike_algs),
        "IKE algorithms {ike_algs} not in:\n{sas}"
    );
    assert!(
        sas.contains(esp_algs),
        "ESP algorithms {esp_algs} not in:\n{sas}"
    );
    assert!(
        sas.contains("TUNNEL-in-UDP"),
        "ESP must be UDP-encapsulated:\n{sas}"
    );
    assert!(
        sas.contains(&format!("{OURS}[4500]")),
        "IKE must have floated to 4500:\n{sas}"
    );
    let log = lab.wait_log("vpngw to install the child SA", "child SA installed");
    println!("vpngw log:\n{log}");
    assert!(log.contains("IKE SA established"));
}

#[test]
fn aes256gcm_x25519_vpngw_initiates() {
    establishes(
        "aes256gcm16-prfsha256-x25519",
        "aes256gcm16",
        true,
        "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519",
        "ESP:AES_GCM_16-256",
    );
}

#[test]
fn aes256gcm_x25519_vpngw_responds() {
    establishes(
        "aes256gcm16-prfsha256-x25519",
        "aes256gcm16",
        false,
        "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519",
        "ESP:AES_GCM_16-256",
    );
}

#[test]
fn aes128gcm_ecp256_vpngw_initiates() {
    establishes(
        "aes128gcm16-prfsha256-ecp256",
        "aes128gcm16",
        true,
        "AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256",
        "ESP:AES_GCM_16-128",
    );
}

#[test]
fn aes128gcm_ecp256_vpngw_responds() {
    establishes(
        "aes128gcm16-prfsha256-ecp256",
        "aes128gcm16",
        false,
        "AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256",
        "ESP:AES_GCM_16-128",
    );
}

#[test]
fn aes256cbc_sha256_modp2048_vpngw_initiates() {
    establishes(
        "aes256-sha256-modp2048",
        "aes256-sha256",
        true,
        "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048",
        "ESP:AES_CBC-256/HMAC_SHA2_256_128",
    );
}

#[test]
fn aes256cbc_sha256_modp2048_vpngw_responds() {
    establishes(
        "aes256-sha256-modp2048",
        "aes256-sha256",
        false,
        "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048",
        "ESP:AES_CBC-256/HMAC_SHA2_256_128",
    );
}

#[test]
fn ecp384_with_pfs_child_vpngw_initiates() {
    establishes(
        "aes256-sha384-ecp384",
        "aes256-sha384-ecp384",
        true,
        "AES_CBC-256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_384",
        "ESP:AES_CBC-256/HMAC_SHA2_384_192",
    );
}

#[test]
fn ecp384_with_pfs_child_vpngw_responds() {
    establishes(
        "aes256-sha384-ecp384",
        "aes256-sha384-ecp384",
        false,
        "AES_CBC-256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_384",
        "ESP:AES_CBC-256/HMAC_SHA2_384_192",
    );
}

const SUITE: (&str, &str) = ("aes256gcm16-prfsha256-x25519", "aes256gcm16");

#[test]
fn wrong_psk_is_refused_with_authentication_failed() {
    // vpngw responds and rejects strongSwan's AUTH.
    let mut lab = Interop::new();
    lab.start_vpngw(SUITE.0, SUITE.1, false, PSK);
    lab.start_charon(SUITE.0, SUITE.1, true, "a-different-psk-0123456789");
    let log = lab.wait_log("vpngw to refuse the AUTH", "AUTHENTICATION_FAILED");
    println!("vpngw log:\n{log}");
    assert!(
        log.contains("the peer's AUTH does not verify with our PSK"),
        "{log}"
    );
    assert!(!log.contains("child SA installed"));
    assert!(!lab.charon().list_sas().contains("ESTABLISHED"));
    wait_until("strongSwan to log the refusal", SETUP, || {
        let l = lab.charon().log();
        if l.contains("AUTHENTICATION_FAILED") {
            Ok(())
        } else {
            Err(l)
        }
    });

    // vpngw initiates and strongSwan rejects our AUTH.
    let mut lab = Interop::new();
    lab.start_charon(SUITE.0, SUITE.1, false, "a-different-psk-0123456789");
    lab.start_vpngw(SUITE.0, SUITE.1, true, PSK);
    let log = lab.wait_log("vpngw to be refused", "AUTHENTICATION_FAILED from the peer");
    assert!(!log.contains("child SA installed"), "{log}");
    assert!(!lab.charon().list_sas().contains("ESTABLISHED"));
}

#[test]
fn no_common_proposal_names_both_offers() {
    let mut lab = Interop::new();
    lab.start_vpngw("aes128-sha256-modp2048", "aes128-sha256", false, PSK);
    lab.start_charon(SUITE.0, SUITE.1, true, PSK);
    let log = lab.wait_log("vpngw to refuse the proposal", "NO_PROPOSAL_CHOSEN");
    println!("vpngw log:\n{log}");
    assert!(
        log.contains("we offer [aes128-prfsha256-sha256-modp2048]"),
        "{log}"
    );
    assert!(
        log.contains("the peer offered [aes256gcm16-prfsha256-x25519"),
        "{log}"
    );
    wait_until("strongSwan to see NO_PROPOSAL_CHOSEN", SETUP, || {
        let l = lab.charon().log();
        if l.contains("NO_PROPOSAL_CHOSEN") {
            Ok(())
        } else {
            Err(l)
        }
    });
}

#[test]
fn garbage_on_both_ports_is_dropped_and_the_daemon_keeps_working() {
    let mut lab = Interop::new();
    lab.start_vpngw(SUITE.0, SUITE.1, false, PSK);
    // Random datagrams of every size, IKE-looking headers with bad lengths,
    // markers with nothing behind them, from the peer's address.
    let script = format!(
        r#"
import os, socket
for port in (500, 4500):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for n in range(0, 600, 7):
        s.sendto(os.urandom(n), ("{OURS}", port))
    hdr = os.urandom(16) + bytes([33, 0x20, 34, 0x08]) + bytes(4) + (9999).to_bytes(4, "big")
    s.sendto(hdr, ("{OURS}", port))
    s.sendto(bytes(4) + hdr, ("{OURS}", port))
    s.sendto(bytes(4), ("{OURS}", port))
    s.sendto(b"\xff", ("{OURS}", port))
"#
    );
    let out = lab.peer.run("python3", &["-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        lab.vpngw.as_mut().unwrap().is_running(),
        "vpngw died:\n{}",
        lab.vpngw_log()
    );
    // And it still does its job.
    lab.start_charon(SUITE.0, SUITE.1, true, PSK);
    wait_until("strongSwan to report the SAs up", SETUP, || {
        lab.charon().established()
    });
    lab.wait_log("vpngw to install the child SA", "child SA installed");
    // The garbage was counted, by reason, not logged one by one.
    let vpngw = lab.vpngw.as_mut().unwrap();
    vpngw.stop();
    let log = vpngw.log();
    // `IKE stopped counters=DriverCounters { .., endpoint: Counters { malformed: N, .. } }`
    // and `port 4500 counters unknown_spi=N malformed=N ike=N`.
    let number_after = |text: &str, key: &str| -> u64 {
        text.split(key)
            .nth(1)
            .and_then(|r| {
                r.split(|c: char| !c.is_ascii_digit())
                    .find(|n| !n.is_empty())
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let ike_line = log
        .lines()
        .find(|l| l.contains("IKE stopped"))
        .unwrap_or_default();
    let endpoint = ike_line.split("endpoint:").nth(1).unwrap_or_default();
    let on_500 = number_after(endpoint, "malformed:") + number_after(endpoint, "unknown_spi:");
    let natt_line = log
        .lines()
        .find(|l| l.contains("port 4500 counters"))
        .unwrap_or_default();
    let on_4500 = number_after(natt_line, "unknown_spi=") + number_after(natt_line, "malformed=");
    println!("dropped garbage: {on_500} on port 500, {on_4500} on port 4500");
    assert!(on_500 >= 50, "port 500 garbage not counted:\n{log}");
    assert!(on_4500 >= 50, "port 4500 garbage not counted:\n{log}");
}

/// The SPIs `swanctl --list-sas` shows: the IKE SA's (`spii_i* spir_r`)
/// and the child's inbound and outbound ones.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SwanSpis {
    ike: String,
    child_in: Vec<String>,
    child_out: Vec<String>,
}

fn swan_spis(sas: &str) -> SwanSpis {
    let ike = sas
        .lines()
        .find(|l| l.contains("ESTABLISHED"))
        .and_then(|l| l.split(", ").last())
        .unwrap_or_default()
        .to_string();
    let spi = |prefix: &str| -> Vec<String> {
        sas.lines()
            .map(str::trim)
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|s| s.trim_end_matches(',').to_string())
            .collect()
    };
    SwanSpis {
        ike,
        child_in: spi("in "),
        child_out: spi("out "),
    }
}

/// Ok(list-sas) once strongSwan shows one ESTABLISHED IKE SA and one
/// INSTALLED child, and `changed` says the SPIs are the new ones.
fn settled(lab: &Interop, changed: impl Fn(&SwanSpis) -> bool) -> Result<String, String> {
    let sas = lab.charon().list_sas();
    let one_ike = sas.matches("ESTABLISHED").count() == 1;
    let one_child = sas.matches("INSTALLED").count() == 1
        && !sas.contains("REKEYED")
        && !sas.contains("DELETING")
        && !sas.contains("REKEYING");
    if one_ike && one_child && changed(&swan_spis(&sas)) {
        Ok(sas)
    } else {
        Err(sas)
    }
}

fn count_in(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// strongSwan (the initiator) forces a child rekey, then an IKE rekey;
/// vpngw answers both and the tunnel stays up with new SPIs.
fn strongswan_forces_rekeys(ike: &str, esp: &str) {
    let mut lab = Interop::new();
    lab.start_vpngw(ike, esp, false, PSK);
    lab.start_charon(ike, esp, true, PSK);
    let sas = wait_until("strongSwan to report the SAs up", SETUP, || {
        lab.charon().established()
    });
    lab.wait_log("vpngw to install the child SA", "child SA installed");
    let before = swan_spis(&sas);
    println!("before the child rekey:\n{sas}");

    lab.charon().swanctl(&["--rekey", "--child", "site"]);
    let sas = wait_until("the child to be rekeyed", SETUP, || {
        settled(&lab, |s| {
            s.child_in != before.child_in && s.child_out != before.child_out && s.ike == before.ike
        })
    });
    println!("after swanctl --rekey --child site:\n{sas}");
    let log = lab.wait_log("vpngw to delete the old child", "child SA deleted");
    assert!(log.contains("child SA rekeyed"), "{log}");
    let after_child = swan_spis(&sas);
    // vpngw's new inbound SPI is strongSwan's new outbound one.
    assert!(
        log.contains(&format!("spi_in={}", after_child.child_out[0])),
        "{log}\n{sas}"
    );

    lab.charon().swanctl(&["--rekey", "--ike", "site"]);
    let sas = wait_until("the IKE SA to be rekeyed", SETUP, || {
        settled(&lab, |s| {
            s.ike != before.ike && s.child_in == after_child.child_in
        })
    });
    println!("after swanctl --rekey --ike site:\n{sas}");
    let log = lab.wait_log("vpngw to log the IKE rekey", "IKE SA rekeyed");
    assert!(!log.contains("IKE SA closed"), "{log}");
    // The new IKE SA carries on: another child rekey over it.
    lab.charon().swanctl(&["--rekey", "--child", "site"]);
    let sas = wait_until("the child to be rekeyed on the new IKE SA", SETUP, || {
        settled(&lab, |s| s.child_in != after_child.child_in)
    });
    println!("after a second child rekey:\n{sas}");
    let log = wait_until("vpngw to log the second child rekey", SETUP, || {
        let log = lab.vpngw_log();
        if count_in(&log, "child SA rekeyed") >= 2 {
            Ok(log)
        } else {
            Err(log)
        }
    });
    assert_eq!(count_in(&log, "child SA rekeyed"), 2, "{log}");
    assert!(!log.contains("IKE SA closed"), "{log}");
    println!("vpngw log:\n{log}");
}

#[test]
fn strongswan_forces_child_and_ike_rekey() {
    strongswan_forces_rekeys(SUITE.0, SUITE.1);
}

#[test]
fn strongswan_forces_child_and_ike_rekey_with_pfs() {
    strongswan_forces_rekeys("aes256-sha384-ecp384", "aes256-sha384-ecp384");
}

/// vpngw rekeys the child and the IKE SA itself at its soft lifetimes
/// (child 10 s, IKE 15 s: rekeys at about 8.5–9 s and 12.75–13.5 s).
fn vpngw_rekeys_at_its_lifetimes(ike: &str, esp: &str, vpngw_initiates: bool) {
    let mut lab = Interop::new();
    let lifetimes = "ike_lifetime = 15\nchild_lifetime = 10\n";
    if vpngw_initiates {
        lab.start_charon(ike, esp, false, PSK);
        lab.start_vpngw_with(ike, esp, true, PSK, lifetimes);
    } else {
        lab.start_vpngw_with(ike, esp, false, PSK, lifetimes);
        lab.start_charon(ike, esp, true, PSK);
    }
    let sas = wait_until("strongSwan to report the SAs up", SETUP, || {
        lab.charon().established()
    });
    println!("before:\n{sas}");
    let before = swan_spis(&sas);
    wait_until(
        "vpngw to rekey the child twice and the IKE SA",
        Duration::from_secs(40),
        || {
            let log = lab.vpngw_log();
            if count_in(&log, "child SA rekeyed") >= 2 && log.contains("IKE SA rekeyed") {
                Ok(log)
            } else {
                Err(log)
            }
        },
    );
    let sas = wait_until("strongSwan to settle on the new SAs", SETUP, || {
        settled(&lab, |s| {
            s.ike != before.ike && s.child_in != before.child_in
        })
    });
    println!("after:\n{sas}");
    // The old child of each rekey is deleted one DELETE exchange later.
    let log = wait_until("the two old children to be deleted", SETUP, || {
        let log = lab.vpngw_log();
        if count_in(&log, "child SA deleted") >= 2 {
            Ok(log)
        } else {
            Err(log)
        }
    });
    println!("vpngw log:\n{log}");
    assert!(!log.contains("IKE SA closed"), "{log}");
    let charon = lab.charon().log();
    assert!(
        charon.contains("rekeyed") || charon.contains("rekeying"),
        "strongSwan saw the rekeys:\n{charon}"
    );
}

#[test]
fn vpngw_rekeys_at_its_lifetimes_without_pfs() {
    vpngw_rekeys_at_its_lifetimes(SUITE.0, SUITE.1, false);
}

#[test]
fn vpngw_rekeys_at_its_lifetimes_with_pfs() {
    vpngw_rekeys_at_its_lifetimes("aes256-sha384-ecp384", "aes256-sha384-ecp384", true);
}

/// strongSwan crashes and starts again: its new IKE SA carries
/// INITIAL_CONTACT, and vpngw ends the dead one at once (no DELETE to a
/// peer that lost it, no wait for DPD). The tunnel stays up throughout.
#[test]
fn a_restarted_strongswan_replaces_our_old_sas_at_once() {
    let mut lab = Interop::new();
    lab.start_vpngw("aes256gcm16-prfsha256-x25519", "aes256gcm16", false, PSK);
    lab.start_charon("aes256gcm16-prfsha256-x25519", "aes256gcm16", true, PSK);
    lab.wait_log("vpngw to install the child SA", "child SA installed");
    let sock = lab.dir.join("vpngw.sock");
    let sas = || -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_vpngw"))
            .args(["sas", "--json", "--socket"])
            .arg(&sock)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let old = sas()["connections"][0]["ike"]["spi_i"].clone();

    lab.charon.as_mut().unwrap().kill();
    let restarted = Instant::now();
    lab.start_charon("aes256gcm16-prfsha256-x25519", "aes256gcm16", true, PSK);
    let log = lab.wait_log(
        "vpngw to end the old IKE SA",
        "its new IKE SA (INITIAL_CONTACT) replaces this one",
    );
    let took = restarted.elapsed();
    let now = sas();
    let conn = &now["connections"][0];
    println!(
        "strongSwan restarted: vpngw ended the old IKE SA {:.1} s after charon was started again; now {}",
        took.as_secs_f64(),
        conn["ike"]
    );
    assert_ne!(conn["ike"]["spi_i"], old, "a new IKE SA");
    assert_eq!(conn["ike"]["phase"], "established", "{conn}");
    assert!(conn["child"].is_object(), "a child SA: {conn}");
    assert_eq!(count_in(&log, "child SA installed"), 2, "{log}");
    assert!(
        !log.contains("tunnel down"),
        "the new child took over before the old one went: {log}"
    );
}
