//! Liveness without BFD and without BGP: the tunnel itself tells.
//!
//! ```text
//!                                                   ,== 169.254.21.2 <-> .1 ==> 192.0.2.1 [gw-az0 vpngw] 10.1.0.1 --.
//!  [host-op 10.2.0.2-7] -- [gw-op vpngw] 198.51.100.1                                                        [vnet bridge] -- [host-vnet 10.1.0.2]
//!                                                   `== 169.254.21.6 <-> .5 ==> 192.0.2.2 [gw-az1 vpngw] 10.1.0.3 --'
//!  static routes both ways (ECMP on op); DPD probe after 200 ms of silence, dead after 800 ms; hold-down 2 s
//! ```
//!
//! Inbound ESP is proof of life, so the short DPD timers cost nothing on a
//! busy tunnel and probe only a quiet one. The underlay to az1 goes silent
//! under traffic: op takes the tunnel down within interval + timeout and
//! its ECMP route shrinks. When the underlay comes back the tunnel comes
//! up again, but rejoins the route only after the hold-down (a tunnel that
//! just failed may fail again).
//!
//! With DPD at its defaults (10 s / 45 s) instead: az1's daemon is killed,
//! and its host answers op's next ESP packet with ICMP port unreachable.
//! op takes the tunnel out at once and rejoins it when az1 is back. A
//! forged port unreachable (it quotes op's real SPI and sequence number,
//! as only an on-path attacker could) costs the tunnel a moment, not its
//! SAs; one with a wrong SPI changes nothing.

use super::*;
use std::net::IpAddr;
use vpngw_netns_tests::fabric::Fabric;
use vpngw_netns_tests::traffic::UdpFlows;

const TIMERS: &str = "dpd_interval = \"200ms\"\ndpd_timeout = \"800ms\"\nhold_down = 2";
/// DPD at its defaults: far too slow to be what notices a killed peer.
const DEFAULT_DPD: &str = "dpd_interval = 10\ndpd_timeout = 45";

fn instance(k: u8, timers: &'static str) -> Gw {
    let (name, local, addr, peer_addr) = if k == 0 {
        ("op", "192.0.2.1", "169.254.21.1", "169.254.21.2")
    } else {
        ("op", "192.0.2.2", "169.254.21.5", "169.254.21.6")
    };
    Gw {
        asn: 65515,
        prefixes: vec!["10.1.0.0/24"],
        announce: vec![],
        conn_extra: timers,
        tunnels: vec![Tunnel {
            name,
            local,
            remote: "198.51.100.1",
            addr,
            peer_addr,
            routing: Routing::Static(vec!["10.2.0.0/24"]),
            initiate: true,
        }],
    }
}

fn onprem(timers: &'static str) -> Gw {
    let tunnel = |name, remote, addr, peer_addr| Tunnel {
        name,
        local: "198.51.100.1",
        remote,
        addr,
        peer_addr,
        routing: Routing::Static(vec!["10.1.0.0/24"]),
        initiate: false,
    };
    Gw {
        asn: 65010,
        prefixes: vec!["10.2.0.0/24"],
        announce: vec![],
        conn_extra: timers,
        tunnels: vec![
            tunnel("az0", "192.0.2.1", "169.254.21.2", "169.254.21.1"),
            tunnel("az1", "192.0.2.2", "169.254.21.6", "169.254.21.5"),
        ],
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The topology above with `timers` in every connection, both tunnels in
/// op's route: (fabric, op, az0, az1).
fn start_lab(timers: &'static str) -> (Fabric, Daemon, Daemon, Daemon) {
    let mut f = Fabric::new();
    f.add_pair(["az0", "az1"], 1, ["192.0.2.1", "192.0.2.2"]);
    f.add_site("op", 2, &["198.51.100.1"]);
    let op = Daemon::start(&f, "op", &onprem(timers));
    let az0 = Daemon::start(&f, "az0", &instance(0, timers));
    let az1 = Daemon::start(&f, "az1", &instance(1, timers));
    op.wait_route("10.1.0.0/24", &["az0", "az1"]);
    (f, op, az0, az1)
}

/// 4 UDP flows × 500 packets/s from op's host to the VNet host (ECMP
/// spreads them over both tunnels).
fn start_flows(f: &Fabric) -> UdpFlows {
    let from = &f.site("op").host;
    let to = &f.site("az0").host;
    UdpFlows::start(from, ip("10.2.0.2"), to, ip("10.1.0.2"), 4, 500)
}

#[test]
fn a_silent_tunnel_is_detected_by_dpd_and_rejoins_after_its_hold_down() {
    let scenario = "liveness";
    let (f, op, _az0, _az1) = start_lab(TIMERS);

    // Busy tunnels stay up on traffic alone: no probe is needed, none
    // fails, for a few seconds of flows.
    let flows = start_flows(&f);
    std::thread::sleep(Duration::from_secs(3));
    let calm = op.json(&["status"]);
    for c in calm["connections"].as_array().unwrap() {
        assert_eq!(c["tunnel_up"], true, "no false failover: {c}");
    }

    let start = Instant::now();
    f.cut("198.51.100.1", "192.0.2.2");
    op.wait_route("10.1.0.0/24", &["az0"]);
    let withdrawn = start.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let udp = flows.stop();
    let gap = udp.iter().map(|f| f.longest_gap).max().unwrap_or_default();
    report(
        scenario,
        &format!(
            "underlay to az1 silent: tunnel down and route moved after {:.0} ms; UDP (4 flows x 500 pps) longest gap {:.0} ms (DPD 200 ms / 800 ms, no BGP, no BFD)",
            withdrawn.as_secs_f64() * 1000.0,
            gap.as_secs_f64() * 1000.0
        ),
    );
    // Interval + timeout, a tick of the daemon, and scheduling slack.
    assert!(withdrawn < Duration::from_millis(2000), "{withdrawn:?}");
    assert!(gap < Duration::from_millis(2000), "{udp:?}");
    assert!(udp.iter().all(|f| f.received > 0));

    // Back: the tunnel comes up, but joins the route only after 2 s.
    f.mend();
    let up = wait_until("az1's tunnel up again on op", SETUP, || {
        let s = op.json(&["status"]);
        let c = s["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "az1")
            .unwrap()
            .clone();
        if c["tunnel_up"] == true {
            Ok(Instant::now())
        } else {
            Err(c.to_string())
        }
    });
    let routes = op.routes();
    assert_eq!(
        routes.get("10.1.0.0/24").map(Vec::len),
        Some(1),
        "held down: not in the route yet: {routes:?}"
    );
    op.wait_route("10.1.0.0/24", &["az0", "az1"]);
    let held = up.elapsed();
    report(
        scenario,
        &format!(
            "az1 rejoined the ECMP route {:.1} s after its tunnel came back (hold-down 2 s)",
            held.as_secs_f64()
        ),
    );
    assert!(
        held >= Duration::from_millis(1500),
        "rejoined after only {held:?}"
    );
}

/// op's view of its connection `name`: (`sas` entry, `status` entry).
fn op_conn(op: &Daemon, name: &str) -> (Value, Value) {
    let find = |v: Value| {
        v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    (find(op.json(&["sas"])), find(op.json(&["status"])))
}

#[test]
fn a_killed_peer_is_noticed_at_its_first_refused_esp_packet() {
    let scenario = "icmp-failover";
    let (f, op, _az0, mut az1) = start_lab(DEFAULT_DPD);
    let flows = start_flows(&f);
    std::thread::sleep(Duration::from_secs(1));
    let old_spi = op_conn(&op, "az1").0["ike"]["spi_i"].clone();

    // az1's daemon dies; its host (and address) stay.
    let start = Instant::now();
    az1.proc.kill();
    op.wait_route("10.1.0.0/24", &["az0"]);
    let withdrawn = start.elapsed();
    az1.proc.stop();
    let (sas, status) = op_conn(&op, "az1");
    std::thread::sleep(Duration::from_millis(500));
    let udp = flows.stop();
    let gap = udp.iter().map(|f| f.longest_gap).max().unwrap_or_default();
    report(
        scenario,
        &format!(
            "az1's daemon killed: op took its tunnel out of the route after {:.0} ms (ICMP port unreachable; DPD 10 s / 45 s would take 55 s); UDP longest gap {:.0} ms; the IKE SA stays until its liveness check fails: tunnel_up {}",
            withdrawn.as_secs_f64() * 1000.0,
            gap.as_secs_f64() * 1000.0,
            status["tunnel_up"]
        ),
    );
    assert!(
        sas["datapath"]["peer_unreachable"].as_u64().unwrap() >= 1,
        "{sas}"
    );
    // Only an unanswered liveness check ends the IKE SA (RFC 7296 §2.4),
    // and that takes dpd_timeout: it is still there.
    assert_eq!(status["tunnel_up"], true, "{status}");
    // DPD alone would have waited 10 s before its first probe.
    assert!(withdrawn < Duration::from_secs(5), "{withdrawn:?}");
    assert!(udp.iter().all(|f| f.received > 0), "{udp:?}");

    // az1 starts again: its new IKE SA (INITIAL_CONTACT) replaces the old
    // one on op, and the tunnel rejoins.
    let restart = Instant::now();
    let _az1 = Daemon::start(&f, "az1", &instance(1, DEFAULT_DPD));
    op.wait_route("10.1.0.0/24", &["az0", "az1"]);
    let back = restart.elapsed();
    let new_spi = op_conn(&op, "az1").0["ike"]["spi_i"].clone();
    assert_ne!(old_spi, new_spi, "a new IKE SA");
    report(
        scenario,
        &format!(
            "az1 restarted: back in op's ECMP route {:.0} ms after it was started",
            back.as_secs_f64() * 1000.0
        ),
    );
}

/// An ICMP port unreachable from `peer` to `to`, quoting a UDP 4500
/// datagram from `to` carrying ESP with `spi` and `seq`, sent from `ns`.
fn forge_port_unreachable(ns: &vpngw_netns_tests::Netns, peer: &str, to: &str, spi: u32, seq: u32) {
    let script = format!(
        r#"
import socket, struct
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
esp = struct.pack("!II", {spi}, {seq}) + bytes(24)
udp = struct.pack("!HHHH", 4500, 4500, 8 + len(esp), 0)
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(esp), 0, 0x4000, 64, 17, 0,
                 socket.inet_aton("{to}"), socket.inet_aton("{peer}"))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
icmp = struct.pack("!BBHI", 3, 3, 0, 0) + ip + udp + esp
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.bind(("{peer}", 0))
s.sendto(icmp, ("{to}", 0))
"#
    );
    let out = ns.run("python3", &["-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_forged_port_unreachable_costs_a_moment_not_the_tunnel() {
    let scenario = "icmp-forged";
    let (f, op, _az0, _az1) = start_lab(TIMERS);
    let flows = start_flows(&f);
    std::thread::sleep(Duration::from_secs(1));
    let (sas, _) = op_conn(&op, "az1");
    let spi_out = u32::from_str_radix(
        sas["child"]["spi_out"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    let seq = u32::try_from(sas["child"]["packets_out"].as_u64().unwrap()).unwrap();
    let ike_spi = sas["ike"]["spi_i"].clone();
    let az1_ns = &f.site("az1").gw;

    // A wrong SPI: ignored.
    forge_port_unreachable(az1_ns, "192.0.2.2", "198.51.100.1", spi_out ^ 1, seq);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        op.routes().get("10.1.0.0/24").map(Vec::len),
        Some(2),
        "a port unreachable about an SPI op does not use changed nothing"
    );
    assert_eq!(
        op_conn(&op, "az1").0["datapath"]["peer_unreachable"],
        0,
        "not counted"
    );

    // The real SPI and a recent sequence number: out, then back once IKE's
    // check is answered (no ESP comes back from az1 on this one-way flow).
    let start = Instant::now();
    forge_port_unreachable(az1_ns, "192.0.2.2", "198.51.100.1", spi_out, seq);
    op.wait_route("10.1.0.0/24", &["az0"]);
    let out = start.elapsed();
    let (_, held) = op_conn(&op, "az1");
    assert_eq!(
        held["out_of_service"], "peer unreachable (ICMP), checking",
        "`vpngw status` says why: {held}"
    );
    op.wait_route("10.1.0.0/24", &["az0", "az1"]);
    let back = start.elapsed();
    let udp = flows.stop();
    let (sas, status) = op_conn(&op, "az1");
    report(
        scenario,
        &format!(
            "forged port unreachable with op's SPI: az1 out after {:.0} ms, back after {:.1} s (liveness check answered; dpd_timeout 0.8 s); IKE SA unchanged; UDP received {} of {}",
            out.as_secs_f64() * 1000.0,
            back.as_secs_f64(),
            udp.iter().map(|f| f.received).sum::<u64>(),
            udp.iter().map(|f| f.sent).sum::<u64>()
        ),
    );
    assert_eq!(sas["ike"]["spi_i"], ike_spi, "the same IKE SA: {sas}");
    assert_eq!(status["tunnel_up"], true);
    assert_eq!(sas["datapath"]["peer_unreachable"], 1, "{sas}");
    assert!(back < Duration::from_secs(10), "{back:?}");
}
