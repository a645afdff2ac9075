#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The operator's side against running daemons: every show command's
//! `--json`, reload (CLI and SIGHUP) keeping unchanged connections' SAs,
//! refused reloads, and the Prometheus endpoint. Built on the demo's two
//! sites (two active-active tunnels with eBGP), in network namespaces.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vpngw::demo::{SiteConfig, Topology};
use vpngw_netns_tests::wait_until;

const VPNGW: &str = env!("CARGO_BIN_EXE_vpngw");

/// `vpngw ARGS --json --socket SOCKET`, parsed; panics with stderr on
/// failure.
fn json(socket: &Path, args: &[&str]) -> Value {
    let out = Command::new(VPNGW)
        .args(args)
        .args(["--json", "--socket"])
        .arg(socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vpngw {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "vpngw {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `vpngw ARGS --socket SOCKET` expected to fail; its stderr.
fn fails(socket: &Path, args: &[&str]) -> String {
    let out = Command::new(VPNGW)
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "vpngw {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn started() -> Topology {
    let t = Topology::start(VPNGW).unwrap();
    t.wait_ecmp(2).unwrap();
    t
}

fn conn<'a>(report: &'a Value, list: &str, name: &str) -> &'a Value {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {report}"))
}

/// (IKE SPIi, IKE SPIr, child in, child out) of each connection of site A.
fn spis(t: &Topology, name: &str) -> [String; 4] {
    let sas = json(&t.sock_a, &["sas"]);
    let c = conn(&sas, "connections", name);
    [
        c["ike"]["spi_i"].as_str().unwrap().to_string(),
        c["ike"]["spi_r"].as_str().unwrap().to_string(),
        c["child"]["spi_in"].as_str().unwrap().to_string(),
        c["child"]["spi_out"].as_str().unwrap().to_string(),
    ]
}

#[test]
fn every_show_command_answers_json_from_the_running_daemon() {
    let t = started();

    let status = json(&t.sock_a, &["status"]);
    assert_eq!(status["asn"], 65515);
    assert_eq!(status["local_prefixes"][0], "10.1.0.0/24");
    assert_eq!(status["kernel_routes"], 1, "{status}");
    for name in ["onprem-t1", "onprem-t2"] {
        let c = conn(&status, "connections", name);
        assert_eq!(c["tunnel_up"], true, "{c}");
        assert_eq!(c["ike"], "established", "{c}");
        assert_eq!(c["routing"], "bgp");
        assert_eq!(c["bgp_state"], "Established", "{c}");
        assert_eq!(c["prefixes"], 1, "{c}");
        assert_eq!(c["routes"], 1, "{c}");
    }

    let sas = json(&t.sock_a, &["sas"]);
    for name in ["onprem-t1", "onprem-t2"] {
        let c = conn(&sas, "connections", name);
        assert_eq!(c["ike"]["role"], "initiator");
        assert_eq!(c["ike"]["phase"], "established");
        assert_eq!(c["ike"]["algorithms"], "aes256gcm16-prfsha256-x25519");
        assert_eq!(c["ike"]["spi_i"].as_str().unwrap().len(), 16);
        assert_eq!(c["child"]["algorithms"], "aes256gcm16");
        assert_eq!(c["child"]["spi_in"].as_str().unwrap().len(), 8);
        // BGP keepalives have crossed the child SA both ways.
        assert!(c["child"]["packets_in"].as_u64().unwrap() > 0, "{c}");
        assert!(c["datapath"]["tx_packets"].as_u64().unwrap() > 0, "{c}");
        assert_eq!(c["datapath"]["drop_auth"], 0);
    }

    let bgp = json(&t.sock_a, &["bgp"]);
    assert_eq!(bgp["asn"], 65515);
    assert_eq!(bgp["loc_rib"], 1);
    for name in ["onprem-t1", "onprem-t2"] {
        // The summary counts; it lists no routes (a full table would be a
        // million lines per neighbor, per request).
        let n = conn(&bgp, "neighbors", name);
        assert_eq!(n["state"], "Established");
        assert_eq!(n["asn"], 65010);
        assert_eq!(n["accepted_count"], 1, "{n}");
        assert_eq!(n["advertised_count"], 1, "{n}");
        assert_eq!(n["refused_count"], 0, "{n}");
        assert_eq!(n["accepted"].as_array().unwrap().len(), 0, "{n}");
        // Asked about by name, a neighbor lists its routes.
        let n = json(&t.sock_a, &["bgp", name]);
        assert_eq!(n["accepted"][0]["prefix"], "10.2.0.0/24", "{n}");
        assert_eq!(n["accepted"][0]["as_path"], "65010");
        assert_eq!(n["accepted"][0]["best"], true, "ECMP: both are best: {n}");
        assert_eq!(n["advertised"][0]["prefix"], "10.1.0.0/24", "{n}");
        assert_eq!(n["advertised"][0]["as_path"], "65515", "{n}");
        assert_eq!(n["refused"].as_array().unwrap().len(), 0);
    }
    let one = json(&t.sock_a, &["bgp", "onprem-t1"]);
    assert_eq!(one["name"], "onprem-t1");
    assert_eq!(one["address"], "169.254.21.2");
    let err = fails(&t.sock_a, &["bgp", "nobody"]);
    assert!(err.contains("no BGP neighbor named nobody"), "{err}");

    let routes = json(&t.sock_a, &["routes"]);
    assert_eq!(routes["table"], 254);
    let r = &routes["routes"][0];
    assert_eq!(r["prefix"], "10.2.0.0/24", "{routes}");
    assert_eq!(r["source"], "bgp");
    assert_eq!(r["tunnels"], serde_json::json!(["onprem-t1", "onprem-t2"]));

    let why = json(&t.sock_a, &["routes", "10.2.0.0/24"]);
    let e = &why["explain"];
    assert_eq!(e["installed"], true, "{e}");
    let layers: Vec<&str> = e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["layer"].as_str().unwrap())
        .collect();
    for layer in ["tunnel", "sa", "bgp", "policy", "kernel"] {
        assert!(layers.contains(&layer), "{layer} missing: {e}");
    }
    assert!(e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["ok"] == true));
    assert!(e["verdict"].as_str().unwrap().contains("ECMP"), "{e}");

    // An address inside the route is explained through the covering route.
    let host = json(&t.sock_a, &["routes", "10.2.0.2"]);
    let v = host["explain"]["verdict"].as_str().unwrap();
    assert!(v.contains("no connection carries 10.2.0.2/32"), "{v}");
    assert!(v.contains("follows 10.2.0.0/24"), "{v}");

    // Site B announces a prefix identical to site A's own: refused, with
    // the reason, and `routes` says why it is not installed. (Site B gets
    // its own prefixes changed by a reload, without a restart.)
    t.write_site_b(&SiteConfig {
        local_prefixes: vec!["10.2.0.0/24", "10.1.0.0/24"],
        ..SiteConfig::b()
    })
    .unwrap();
    let reload = json(&t.sock_b, &["reload"]);
    assert_eq!(reload["gateway"].as_array().unwrap().len(), 1, "{reload}");
    assert_eq!(reload["unchanged"].as_array().unwrap().len(), 2, "{reload}");
    let refused = wait_until(
        "site A to refuse 10.1.0.0/24",
        Duration::from_secs(10),
        || {
            let n = json(&t.sock_a, &["bgp", "onprem-t1"]);
            match n["refused"].as_array().unwrap().first() {
                Some(r) => Ok(r.clone()),
                None => Err(n.to_string()),
            }
        },
    );
    assert_eq!(refused["prefix"], "10.1.0.0/24");
    assert_eq!(
        refused["reason"], "identical to one of the gateway's own prefixes",
        "{refused}"
    );
    let why = json(&t.sock_a, &["routes", "10.1.0.0/24"]);
    let e = &why["explain"];
    assert_eq!(e["installed"], false);
    assert!(
        e["verdict"].as_str().unwrap().contains("own prefixes"),
        "{e}"
    );
    assert!(
        e["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["layer"] == "policy" && s["ok"] == false),
        "{e}"
    );
}

#[test]
fn reload_restarts_only_the_changed_connection() {
    let t = started();
    let t1 = spis(&t, "onprem-t1");
    let t2 = spis(&t, "onprem-t2");

    // onprem-t2 gets another DPD interval: it is restarted; onprem-t1 not.
    let mut changed = SiteConfig::a();
    changed.conns[1].extra = "dpd_interval = 5\n";
    t.write_site_a(&changed).unwrap();
    let report = json(&t.sock_a, &["reload"]);
    assert_eq!(
        report["changed"],
        serde_json::json!(["onprem-t2"]),
        "{report}"
    );
    assert_eq!(report["unchanged"], serde_json::json!(["onprem-t1"]));
    assert_eq!(report["added"], serde_json::json!([]));
    assert_eq!(report["removed"], serde_json::json!([]));
    t.wait_ecmp(2).unwrap();
    wait_until("onprem-t2 to be up again", Duration::from_secs(30), || {
        let s = json(&t.sock_a, &["status"]);
        let c = conn(&s, "connections", "onprem-t2").clone();
        if c["tunnel_up"] == true && c["bgp_state"] == "Established" {
            Ok(())
        } else {
            Err(c.to_string())
        }
    });
    assert_eq!(
        spis(&t, "onprem-t1"),
        t1,
        "the unchanged connection kept its SAs"
    );
    let new_t2 = spis(&t, "onprem-t2");
    assert_ne!(new_t2[0], t2[0], "the changed connection has a new IKE SA");
    assert_ne!(new_t2[2], t2[2], "and a new child SA");
    let bgp = json(&t.sock_a, &["bgp"]);
    let n1 = conn(&bgp, "neighbors", "onprem-t1");
    assert_eq!(n1["state"], "Established");
    assert_eq!(
        n1["last_down"],
        Value::Null,
        "onprem-t1's session never went down: {n1}"
    );

    // SIGHUP does the same: back to the original config.
    t.write_site_a(&SiteConfig::a()).unwrap();
    let pid = t.daemon_a.pid().to_string();
    let kill = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(kill.success());
    wait_until("the SIGHUP reload", Duration::from_secs(10), || {
        let log = t.daemon_a.log();
        if log.matches("configuration reloaded").count() >= 2 {
            Ok(())
        } else {
            Err(log)
        }
    });
    t.wait_ecmp(2).unwrap();
    assert_eq!(spis(&t, "onprem-t1"), t1, "still the same SAs after SIGHUP");
    assert_ne!(spis(&t, "onprem-t2")[0], new_t2[0]);

    // A config that does not load changes nothing and says why.
    std::fs::write(t.dir.join("site-a.toml"), "[gateway]\nasn = \"x\"\n").unwrap();
    let err = fails(&t.sock_a, &["reload"]);
    assert!(
        err.contains("site-a.toml:2"),
        "names the file and line: {err}"
    );
    assert!(err.contains("asn"), "names the key: {err}");
    // What only a restart can change is refused as a whole.
    t.write_site_a(&SiteConfig {
        asn: 65516,
        ..SiteConfig::a()
    })
    .unwrap();
    let err = fails(&t.sock_a, &["reload"]);
    assert!(
        err.contains("gateway.asn") && err.contains("restart"),
        "{err}"
    );
    assert_eq!(spis(&t, "onprem-t1"), t1, "refused reloads touch nothing");
    let s = json(&t.sock_a, &["status"]);
    assert_eq!(s["asn"], 65515);

    // Removing a connection takes its tunnel and routes away at once.
    t.write_site_a(&SiteConfig {
        conns: vec![SiteConfig::a().conns[0]],
        ..SiteConfig::a()
    })
    .unwrap();
    let report = json(&t.sock_a, &["reload"]);
    assert_eq!(
        report["removed"],
        serde_json::json!(["onprem-t2"]),
        "{report}"
    );
    let routes = json(&t.sock_a, &["routes"]);
    assert_eq!(
        routes["routes"][0]["tunnels"],
        serde_json::json!(["onprem-t1"]),
        "{routes}"
    );
    assert!(
        t.site_a.try_ip("link show vti-onprem-t2").is_err(),
        "the TUN device is gone"
    );
    assert_eq!(spis(&t, "onprem-t1"), t1);
}

#[test]
fn rekey_command_rekeys_the_child_or_the_ike_sa() {
    let t = started();
    let before = spis(&t, "onprem-t1");
    let other = spis(&t, "onprem-t2");
    let out = Command::new(VPNGW)
        .args(["rekey", "onprem-t1", "--socket"])
        .arg(&t.sock_a)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("child SA rekey of onprem-t1 started"));
    let child = wait_until("a new child SA", Duration::from_secs(10), || {
        let now = spis(&t, "onprem-t1");
        if now[2] != before[2] {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    });
    assert_eq!(child[..2], before[..2], "same IKE SA");
    let out = Command::new(VPNGW)
        .args(["rekey", "onprem-t1", "--ike", "--socket"])
        .arg(&t.sock_a)
        .output()
        .unwrap();
    assert!(out.status.success());
    wait_until("a new IKE SA", Duration::from_secs(10), || {
        let now = spis(&t, "onprem-t1");
        if now[0] != before[0] {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    });
    assert_eq!(
        spis(&t, "onprem-t2"),
        other,
        "the other connection is untouched"
    );
    let err = fails(&t.sock_a, &["rekey", "nobody"]);
    assert!(err.contains("no connection named nobody"), "{err}");
}

#[test]
fn prometheus_endpoint_reports_tunnels_sas_and_bgp() {
    let t = started();
    // Inside site A's namespace (the endpoint listens on its loopback).
    let out = t.site_a.run(
        "bash",
        &[
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9477; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
    for line in [
        "vpngw_tunnel_up{connection=\"onprem-t1\"} 1",
        "vpngw_tunnel_up{connection=\"onprem-t2\"} 1",
        "vpngw_tunnel_in_service{connection=\"onprem-t1\"} 1",
        "vpngw_tunnel_peer_unreachable_total{connection=\"onprem-t1\"} 0",
        "vpngw_kernel_routes 1",
        "vpngw_bgp_session_established{peer=\"onprem-t1\"} 1",
        "vpngw_bgp_prefixes{peer=\"onprem-t2\",kind=\"accepted\"} 1",
        "vpngw_tunnel_drops_total{connection=\"onprem-t1\",reason=\"auth\"} 0",
        "# TYPE vpngw_tunnel_packets_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    let out = t.site_a.run(
        "bash",
        &[
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9477; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.0 404"));
}

#[test]
fn control_socket_is_root_only_and_a_second_daemon_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let t = Topology::start(VPNGW).unwrap();
    wait_until("site A's socket", Duration::from_secs(10), || {
        if t.sock_a.exists() {
            Ok(())
        } else {
            Err(t.daemon_a.log())
        }
    });
    let mode = std::fs::metadata(&t.sock_a).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    // The first daemon answers (a socket file alone could be a dead one's).
    assert_eq!(json(&t.sock_a, &["status"])["asn"], 65515);
    // A second daemon on the same config finds the socket taken and says
    // so. (Bounded: if it wrongly took over, the test fails, not hangs.)
    let out = t.site_a.run(
        "timeout",
        &[
            "30",
            VPNGW,
            "run",
            "--config",
            t.dir.join("site-a.toml").to_str().unwrap(),
        ],
    );
    assert!(
        !out.status.success() && out.status.code() != Some(124),
        "the second daemon ran: {}\nfirst daemon: {}",
        String::from_utf8_lossy(&out.stderr),
        t.daemon_a.log()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another vpngw answers there"), "{err}");
    // The first one still answers.
    let s = json(&t.sock_a, &["status"]);
    assert_eq!(s["asn"], 65515);
    // No daemon: a clear message, not a stack trace.
    let err = fails(&t.dir.join("nothing.sock"), &["status"]);
    assert!(err.contains("cannot reach the daemon"), "{err}");
}

/// Secrets never reach the logs: both daemons at the most verbose level
/// through setup, BGP, a child rekey and an IKE rekey; then no PSK bytes,
/// no long hex strings (keys), no byte-array dumps in either log.
#[test]
fn secrets_stay_out_of_the_most_verbose_logs() {
    // Read by Topology::start for the daemons' RUST_LOG (this test runs in
    // its own process under nextest).
    std::env::set_var("VPNGW_DEMO_LOG", "trace");
    let t = started();
    let before = spis(&t, "onprem-t1");
    for args in [
        ["rekey", "onprem-t1", "--ike"],
        ["rekey", "onprem-t2", "--"],
    ] {
        let args: Vec<&str> = args.iter().copied().filter(|a| *a != "--").collect();
        let out = Command::new(VPNGW)
            .args(&args)
            .arg("--socket")
            .arg(&t.sock_a)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_until("the rekeys", Duration::from_secs(10), || {
        let now = spis(&t, "onprem-t1");
        if now[0] != before[0] {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    });
    t.wait_ecmp(2).unwrap();
    let psk = vpngw::demo::PSK;
    let mut lines = 0;
    for log in [t.daemon_a.log(), t.daemon_b.log()] {
        lines += log.lines().count();
        assert!(!log.contains(psk), "the PSK is in the log");
        let psk_hex: String = psk.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            !log.contains(&psk_hex[..16]),
            "the PSK, in hex, is in the log"
        );
        for line in log.lines() {
            let mut run = 0;
            for c in line.chars() {
                run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
                assert!(run < 32, "a long hex string (a key?) in: {line}");
            }
            let numbers = line
                .split(['[', ']'])
                .map(|part| part.split(", ").filter(|n| n.parse::<u8>().is_ok()).count())
                .max()
                .unwrap_or(0);
            assert!(numbers < 16, "a byte array in: {line}");
        }
    }
    let all = format!("{}{}", t.daemon_a.log(), t.daemon_b.log());
    assert!(
        all.contains(" DEBUG ") || all.contains(" TRACE "),
        "the most verbose level was on"
    );
    println!("{lines} log lines at trace level, no secret in them");
}
