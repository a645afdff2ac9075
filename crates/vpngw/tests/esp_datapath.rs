//! The ESP datapath end to end: LAN-to-LAN traffic through vpngw's TUN
//! tunnels, against vpngw and against strongSwan (kernel-libipsec), in both
//! initiation directions; replayed, corrupted, truncated and unknown-SPI ESP
//! dropped and counted.
//!
//! ```text
//!  [host-a] eth0 ---- lan0 [gw-a] eth0 -------- eth0 [gw-b] lan0 ---- eth0 [host-b]
//!  10.1.0.2/24     10.1.0.1/24  192.0.2.1/24    192.0.2.2/24  10.2.0.1/24    10.2.0.2/24
//!                  vpngw: vti-site-b 169.254.21.1 === 169.254.21.2  vpngw (vti-site-a) or charon (ipsec0)
//!                  static routes: 10.2.0.0/24 via the tunnel      10.1.0.0/24 via the tunnel
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use std::time::Duration;

use common::{mbits, Lab, A, B};
use vpngw_netns_tests::{wait_until, Proc};

#[test]
fn vpngw_to_vpngw_carries_ping_and_tcp() {
    let mut lab = Lab::new();
    lab.vpngw(&B, &A, false);
    lab.vpngw(&A, &B, true);
    let route = lab.wait_route_a();
    println!("gw-a: {route}");
    assert!(
        route.contains("vti-site-b") || route.contains("nhid"),
        "{route}"
    );
    let ping = lab.ping();
    println!("{ping}");
    let tcp = lab.iperf();
    println!("iperf3 TCP through vpngw <-> vpngw: {tcp}");
    assert!(mbits(&tcp) > 1.0, "{tcp}");
    let logs = lab.stop_daemons();
    for log in &logs {
        assert!(log.contains("tunnel up"), "{log}");
        assert!(log.contains("datapath counters"), "{log}");
    }
}

#[test]
fn vpngw_initiates_to_strongswan_and_carries_traffic() {
    let mut lab = Lab::new();
    lab.charon(&B, &A, false);
    lab.vpngw(&A, &B, true);
    lab.wait_route_a();
    println!("{}", lab.ping());
    let tcp = lab.iperf();
    println!("iperf3 TCP through vpngw -> strongSwan: {tcp}");
    assert!(mbits(&tcp) > 1.0, "{tcp}");
    let sas = lab.charons[0].list_sas();
    println!("{sas}");
    assert!(!sas.contains(" 0 packets"), "strongSwan saw no ESP:\n{sas}");
}

#[test]
fn strongswan_initiates_to_vpngw_and_carries_traffic() {
    let mut lab = Lab::new();
    lab.vpngw(&A, &B, false);
    lab.charon(&B, &A, true);
    lab.wait_route_a();
    println!("{}", lab.ping());
    let tcp = lab.iperf();
    println!("iperf3 TCP through strongSwan -> vpngw: {tcp}");
    assert!(mbits(&tcp) > 1.0, "{tcp}");
}

#[test]
fn replayed_corrupted_truncated_and_unknown_spi_esp_are_dropped_and_counted() {
    let mut lab = Lab::new();
    lab.vpngw(&B, &A, false);
    lab.vpngw(&A, &B, true);
    lab.wait_route_a();
    // Capture ESP arriving at gw-a while pings flow.
    let pcap = lab.dir.join("esp.pcap");
    let dump = Proc::spawn(
        &lab.gw_a,
        "tcpdump",
        &[
            "tcpdump",
            "-i",
            "eth0",
            // Each packet handed over at once (not after libpcap's block
            // timeout, which the capture's stop would cut off) and written.
            "--immediate-mode",
            "-U",
            "-n",
            "-w",
            pcap.to_str().unwrap(),
            "udp dst port 4500 and src host 192.0.2.2 and udp[8:4] != 0",
        ],
        &[],
        &lab.dir.join("tcpdump.log"),
    );
    // Listening, not just started: under a loaded test run tcpdump can
    // take longer than any fixed pause to open its capture.
    wait_until("tcpdump to listen", Duration::from_secs(10), || {
        let log = dump.log();
        if log.contains("listening on") {
            Ok(())
        } else {
            Err(log)
        }
    });
    lab.ping();
    std::thread::sleep(Duration::from_millis(300));
    drop(dump);
    // Send the first captured ESP datagram again (a replay, twice), a
    // forged one with a new sequence number and a flipped ciphertext byte,
    // one cut to 12 bytes (SPI, sequence number and 4 bytes: ESP to port
    // 4500's classifier, too short for the SA) and one under an SPI gw-a
    // does not have, from gw-b's address.
    let script = format!(
        r#"
import socket, struct
data = open("{pcap}", "rb").read()
off = 24
packets = []
while off + 16 <= len(data):
    caplen = struct.unpack("<I", data[off+8:off+12])[0]
    frame = data[off+16:off+16+caplen]
    off += 16 + caplen
    ihl = (frame[14] & 15) * 4
    packets.append(frame[14+ihl+8:])
esp = packets[0]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{b}", 0))
s.sendto(esp, ("{a}", 4500))
s.sendto(esp, ("{a}", 4500))
# A fresh sequence number passes the replay window; the flipped
# ciphertext byte must then fail the ICV.
bad = bytearray(esp); bad[4:8] = (1000000).to_bytes(4, "big"); bad[20] ^= 1
s.sendto(bytes(bad), ("{a}", 4500))
s.sendto(esp[:12], ("{a}", 4500))
# Any SPI but the captured one (gw-a's only inbound SPI), never zero.
other = b"\x0b\xad\x5e\xa1" if esp[:4] != b"\x0b\xad\x5e\xa1" else b"\x0b\xad\x5e\xa2"
s.sendto(other + esp[4:], ("{a}", 4500))
print(len(packets), "ESP packets captured")
"#,
        pcap = pcap.display(),
        a = A.outer,
        b = B.outer
    );
    let out = lab.gw_b.run("python3", &["-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
    // The unknown SPI is parked for 200 ms (its SA might be on its way)
    // before it counts.
    std::thread::sleep(Duration::from_millis(500));
    // Traffic still flows after the attack.
    lab.ping();
    let logs = lab.stop_daemons();
    let a_log = logs
        .iter()
        .find(|l| l.contains("connection=site-b"))
        .unwrap();
    let line = |what: &str| a_log.lines().find(|l| l.contains(what)).unwrap();
    // `name: 3` in a counter struct's Debug output, `name=3` in a field.
    let field = |line: &str, name: &str, sep: &str| -> u64 {
        let key = format!("{name}{sep}");
        let at = line
            .find(&key)
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            + key.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let counters = line("datapath counters");
    println!("gw-a: {counters}");
    assert!(field(counters, "drop_replay", ": ") >= 2, "{counters}");
    assert!(field(counters, "drop_auth", ": ") >= 1, "{counters}");
    assert!(field(counters, "drop_malformed", ": ") >= 1, "{counters}");
    let port = line("port 4500 counters");
    println!("gw-a: {port}");
    assert!(field(port, "unknown_spi", "=") >= 1, "{port}");
}

/// Make before break: strongSwan forces 20 child rekeys, 400 ms apart,
/// while 1000 UDP datagrams a second flow each way (iperf3 --bidir); not
/// one may be lost. vpngw answers each rekey, so it must keep sending on
/// the old SA until strongSwan has the new one.
#[test]
fn twenty_child_rekeys_lose_no_packet_of_a_1000_pps_stream() {
    let mut lab = Lab::new();
    lab.vpngw(&A, &B, false);
    lab.charon(&B, &A, true);
    lab.wait_route_a();
    lab.ping();
    let server = Proc::spawn(
        &lab.host_b,
        "iperf3 server",
        &["iperf3", "-s", "-1"],
        &[],
        &lab.dir.join("iperf3-udp.log"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let client = lab
        .host_a
        .command("iperf3")
        .args([
            "-c", B.host, "-u", "-b", "800K", "-l", "100", "-t", "11", "--bidir",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    for _ in 0..20 {
        lab.charons[0].swanctl(&["--rekey", "--child", "site"]);
        std::thread::sleep(Duration::from_millis(400));
    }
    let out = client.wait_with_output().unwrap();
    drop(server);
    let text = String::from_utf8_lossy(&out.stdout);
    let receivers: Vec<&str> = text.lines().filter(|l| l.contains("receiver")).collect();
    println!("{}", receivers.join("\n"));
    assert_eq!(
        receivers.len(),
        2,
        "one receiver line per direction:\n{text}"
    );
    for line in &receivers {
        let lost: u64 = line
            .split_whitespace()
            .find_map(|w| {
                w.split_once('/')
                    .and_then(|(l, t)| t.parse::<u64>().ok().map(|_| l))
            })
            .and_then(|l| l.parse().ok())
            .unwrap();
        assert_eq!(lost, 0, "datagrams lost across the rekeys: {line}");
    }
    let logs = lab.stop_daemons();
    let rekeys = logs[0].matches("child SA rekeyed").count();
    println!("vpngw answered {rekeys} child rekeys");
    assert!(rekeys >= 20, "{}", logs[0]);
}

/// The byte lifetime: with `child_lifetime_bytes` at 1 MiB (and hours of
/// time lifetime), a 4 Mbit/s stream makes vpngw rekey the child SA because
/// of the bytes it carried, within the margin before the hard limit, and
/// traffic goes on over the new SA.
#[test]
fn byte_lifetime_triggers_child_rekeys() {
    let mut lab = Lab::new();
    let extra = "child_lifetime_bytes = 1048576";
    lab.vpngw_with(&B, &A, false, extra);
    lab.vpngw_with(&A, &B, true, extra);
    lab.wait_route_a();
    lab.ping();
    let udp = lab.iperf_udp(5, "4M");
    println!("iperf3 UDP: {udp}");
    lab.ping();
    // Read the logs before stopping: a stop deletes the SAs, which the
    // other side logs as a close.
    let logs: Vec<String> = lab.daemons.iter().map(|d| d.log()).collect();
    let rekeys: usize = logs
        .iter()
        .map(|l| l.matches("child SA rekeyed").count())
        .sum();
    println!("child rekeys triggered by the byte lifetime: {rekeys}");
    assert!(rekeys >= 2, "{}", logs.join("\n"));
    for log in &logs {
        assert!(!log.contains("IKE SA closed"), "{log}");
    }
}

/// UDP through the offload paths, both ways a run of datagrams can take:
/// a host's `UDP_SEGMENT` sends reach gw-a's TUN device whole (vpngw
/// cuts them into datagrams), and runs of same-sized datagrams leave gw-b's
/// vpngw as one `GSO_UDP_L4` write. Host B must get exactly the datagrams
/// sent, in order, byte for byte (the kernel drops one whose checksum or
/// length is wrong), and the TUN devices' counters must show that runs
/// went through whole (fewer packets than datagrams).
#[test]
fn udp_runs_cross_the_tunnel_as_the_datagrams_sent() {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use vpngw_netns_tests::traffic::in_netns;

    const RUNS: usize = 30;
    const PER_RUN: usize = 40;
    const SIZE: usize = 1000;
    const LAST: usize = 300;
    let mut lab = Lab::new();
    lab.vpngw(&B, &A, false);
    lab.vpngw(&A, &B, true);
    lab.wait_route_a();
    lab.ping();

    let set = |fd: i32, level: i32, name: i32, value: i32| {
        // SAFETY: setsockopt reads one int from a live local.
        let rc = unsafe { libc::setsockopt(fd, level, name, (&raw const value).cast(), 4) };
        assert_eq!(
            rc,
            0,
            "setsockopt {level}/{name}: {}",
            std::io::Error::last_os_error()
        );
    };
    let sink = in_netns(&lab.host_b, || UdpSocket::bind("0.0.0.0:7000").unwrap());
    set(
        sink.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        8 << 20,
    );
    sink.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let to = format!("{}:7000", B.host);
    let (plain, gso) = in_netns(&lab.host_a, move || {
        let plain = UdpSocket::bind("0.0.0.0:0").unwrap();
        plain.connect(&to).unwrap();
        let gso = UdpSocket::bind("0.0.0.0:0").unwrap();
        gso.connect(&to).unwrap();
        (plain, gso)
    });
    const UDP_SEGMENT: i32 = 103;
    set(gso.as_raw_fd(), libc::SOL_UDP, UDP_SEGMENT, SIZE as i32);
    let tun_packets = |ns: &vpngw_netns_tests::Netns, dev: &str, dir: &str| -> u64 {
        let out = ns.run("ip", &["-s", "-j", "link", "show", "dev", dev]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json[0]["stats64"][dir]["packets"].as_u64().unwrap()
    };
    let read_a = tun_packets(&lab.gw_a, "vti-site-b", "tx");
    let written_b = tun_packets(&lab.gw_b, "vti-site-a", "rx");

    // Datagram `i` of run `r` of socket `s`: its number, then a pattern.
    let datagram = |s: u8, r: usize, i: usize| -> Vec<u8> {
        let len = if i + 1 == PER_RUN { LAST } else { SIZE };
        let mut d: Vec<u8> = (0..len).map(|k| (k * 7 + i + r) as u8).collect();
        d[..4].copy_from_slice(&[s, r as u8, i as u8, 0xee]);
        d
    };
    let mut expected = Vec::new();
    for r in 0..RUNS {
        // A burst of separate sends...
        for i in 0..PER_RUN {
            let d = datagram(1, r, i);
            plain.send(&d).unwrap();
            expected.push(d);
        }
        // ...and the same as one buffer the kernel segments.
        let run: Vec<Vec<u8>> = (0..PER_RUN).map(|i| datagram(2, r, i)).collect();
        gso.send(&run.concat()).unwrap();
        expected.extend(run);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while got.len() < expected.len() {
        match sink.recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(e) => panic!(
                "{} of {} datagrams arrived, then nothing: {e}",
                got.len(),
                expected.len()
            ),
        }
    }
    // Per socket, in the order sent, each exactly as sent.
    for s in [1u8, 2] {
        let want: Vec<&Vec<u8>> = expected.iter().filter(|d| d[0] == s).collect();
        let have: Vec<&Vec<u8>> = got.iter().filter(|d| d[0] == s).collect();
        assert_eq!(have.len(), want.len(), "socket {s}");
        for (k, (h, w)) in have.iter().zip(&want).enumerate() {
            assert!(
                h == w,
                "socket {s}, datagram {k}: {:?} != {:?}",
                &h[..4],
                &w[..4]
            );
        }
    }
    let read_a = tun_packets(&lab.gw_a, "vti-site-b", "tx") - read_a;
    let written_b = tun_packets(&lab.gw_b, "vti-site-a", "rx") - written_b;
    println!(
        "{} datagrams: gw-a's vpngw read {read_a} packets, gw-b's wrote {written_b}",
        expected.len()
    );
    let datagrams = expected.len() as u64;
    // Each UDP_SEGMENT buffer crosses gw-a's TUN as one packet.
    assert!(
        read_a <= datagrams / 2 + RUNS as u64 + 10,
        "runs were cut up before vpngw: {read_a} packets for {datagrams} datagrams"
    );
    assert!(
        written_b < datagrams / 2,
        "runs were written one datagram at a time: {written_b} writes for {datagrams} datagrams"
    );
}

/// `gateway.tx_queues = 2`: each TUN device has two queues, each read by a
/// thread of its own, and the kernel spreads the flows over them. Eight UDP
/// flows and four TCP streams cross without losing a datagram.
#[test]
fn two_tx_queues_per_tunnel_carry_every_flow() {
    use vpngw_netns_tests::traffic::UdpFlows;

    let mut lab = Lab::new();
    lab.vpngw_config(&B, &A, false, "tx_queues = 2", "");
    lab.vpngw_config(&A, &B, true, "tx_queues = 2", "");
    lab.wait_route_a();
    lab.ping();
    let queues = lab.gw_a.run("ls", &["/sys/class/net/vti-site-b/queues"]);
    let queues = String::from_utf8_lossy(&queues.stdout).into_owned();
    println!(
        "gw-a's TUN queues: {}",
        queues.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    assert!(queues.contains("tx-1"), "one queue only: {queues}");
    let pid = lab.daemons[1].pid();
    // gw-a's transmit threads: (name, CPU ticks so far).
    let threads = || -> Vec<(String, u64)> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| {
                let path = t.ok()?.path();
                let name = std::fs::read_to_string(path.join("comm")).ok()?;
                let stat = std::fs::read_to_string(path.join("stat")).ok()?;
                // After the ")" closing the name: state is field 3, utime
                // and stime fields 14 and 15.
                let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                let ticks =
                    rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
                Some((name.trim().to_string(), ticks))
            })
            .filter(|(name, _)| name.starts_with("vpngw-tx"))
            .collect()
    };
    let before = threads();
    println!("gw-a's transmit threads: {before:?}");
    assert_eq!(before.len(), 2, "{before:?}");

    let flows = UdpFlows::start(
        &lab.host_a,
        A.host.parse().unwrap(),
        &lab.host_b,
        B.host.parse().unwrap(),
        8,
        500,
    );
    let tcp = lab.iperf_streams(4);
    let report = flows.stop();
    println!("iperf3 TCP, 4 streams: {tcp}");
    assert!(mbits(&tcp) > 1.0, "{tcp}");
    for flow in &report {
        println!(
            "flow {}: {} sent, {} lost",
            flow.port,
            flow.sent,
            flow.lost()
        );
        assert!(flow.sent > 500, "{flow:?}");
        assert_eq!(flow.lost(), 0, "{flow:?}");
    }
    // The kernel spread the flows: both threads encrypted some.
    let after = threads();
    println!("after the traffic: {after:?}");
    for (name, ticks) in &after {
        let was = before
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, t)| *t);
        assert!(*ticks > was, "{name} did nothing: {before:?} -> {after:?}");
    }
}
