//! The ESP datapath end to end: LAN-to-LAN traffic through vpngw's TUN
//! tunnels, against vpngw and against strongSwan (kernel-libipsec), in both
//! initiation directions; replayed and corrupted ESP dropped and counted.
//!
//! ```text
//!  [host-a] eth0 ---- lan0 [gw-a] eth0 -------- eth0 [gw-b] lan0 ---- eth0 [host-b]
//!  10.1.0.2/24     10.1.0.1/24  192.0.2.1/24    192.0.2.2/24  10.2.0.1/24    10.2.0.2/24
//!                  vpngw: vti-site-b 169.254.21.1 === 169.254.21.2  vpngw (vti-site-a) or charon (ipsec0)
//!                  static routes: 10.2.0.0/24 via the tunnel      10.1.0.0/24 via the tunnel
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use vpngw_netns_tests::netns::unique_id;
use vpngw_netns_tests::strongswan::{Charon, ConnConfig};
use vpngw_netns_tests::{veth, wait_until, Netns, Proc, WorkDir};

const PSK: &str = "datapath-test-psk-0123456789";
const SETUP: Duration = Duration::from_secs(20);

struct Side {
    name: &'static str,
    outer: &'static str,
    lan: &'static str,
    gw_lan: &'static str,
    host: &'static str,
    tunnel: &'static str,
}

const A: Side = Side {
    name: "site-a",
    outer: "192.0.2.1",
    lan: "10.1.0.0/24",
    gw_lan: "10.1.0.1",
    host: "10.1.0.2",
    tunnel: "169.254.21.1",
};
const B: Side = Side {
    name: "site-b",
    outer: "192.0.2.2",
    lan: "10.2.0.0/24",
    gw_lan: "10.2.0.1",
    host: "10.2.0.2",
    tunnel: "169.254.21.2",
};

/// Field order is drop order: processes, then namespaces, then logs.
struct Lab {
    daemons: Vec<Proc>,
    charon: Option<Charon>,
    gw_a: Netns,
    gw_b: Netns,
    host_a: Netns,
    host_b: Netns,
    dir: WorkDir,
}

impl Lab {
    fn new() -> Lab {
        let id = unique_id();
        let dir = WorkDir::new(&id);
        let gw_a = Netns::new(&id, "gw-a");
        let gw_b = Netns::new(&id, "gw-b");
        let host_a = Netns::new(&id, "host-a");
        let host_b = Netns::new(&id, "host-b");
        veth(&gw_a, "eth0", &gw_b, "eth0");
        gw_a.ip(&format!("addr add {}/24 dev eth0", A.outer));
        gw_b.ip(&format!("addr add {}/24 dev eth0", B.outer));
        for (gw, host, side) in [(&gw_a, &host_a, &A), (&gw_b, &host_b, &B)] {
            veth(gw, "lan0", host, "eth0");
            gw.ip(&format!("addr add {}/24 dev lan0", side.gw_lan));
            host.ip(&format!("addr add {}/24 dev eth0", side.host));
            host.ip(&format!("route add default via {}", side.gw_lan));
        }
        Lab {
            daemons: Vec::new(),
            charon: None,
            gw_a,
            gw_b,
            host_a,
            host_b,
            dir,
        }
    }

    /// Starts vpngw on `me`'s gateway, with a tunnel to `peer` carrying
    /// `peer`'s LAN as a static route.
    fn vpngw(&mut self, me: &Side, peer: &Side, initiate: bool) {
        let psk = self.dir.write(&format!("{}.psk", me.name), PSK);
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let conf = self.dir.write(
            &format!("{}.toml", me.name),
            &format!(
                r#"[gateway]
local_prefixes = ["{my_lan}"]

[[connection]]
name = "{peer_name}"
local_address = "{me_outer}"
remote_address = "{peer_outer}"
psk_file = "{psk}"
initiate = {initiate}
tunnel_address = "{me_tunnel}"
tunnel_peer = "{peer_tunnel}"
static_routes = ["{peer_lan}"]
"#,
                my_lan = me.lan,
                peer_name = peer.name,
                me_outer = me.outer,
                peer_outer = peer.outer,
                psk = psk.display(),
                me_tunnel = me.tunnel,
                peer_tunnel = peer.tunnel,
                peer_lan = peer.lan,
            ),
        );
        let ns = if me.name == A.name {
            &self.gw_a
        } else {
            &self.gw_b
        };
        let p = Proc::spawn(
            ns,
            &format!("vpngw {}", me.name),
            &[
                env!("CARGO_BIN_EXE_vpngw"),
                "run",
                "--config",
                conf.to_str().unwrap(),
            ],
            &[("RUST_LOG", "info")],
            &self.dir.join(&format!("{}.vpngw.log", me.name)),
        );
        wait_until("vpngw to listen", SETUP, || {
            if p.log().contains("IKE listening") {
                Ok(())
            } else {
                Err(p.log())
            }
        });
        self.daemons.push(p);
    }

    /// strongSwan on site B, routing site A's LAN into its ipsec0.
    fn charon_b(&mut self, initiator: bool) {
        let charon = Charon::start(
            &self.gw_b,
            &self.dir,
            "gw-b",
            &ConnConfig {
                local: B.outer.into(),
                remote: A.outer.into(),
                psk: PSK.into(),
                ike_proposals: "aes256gcm16-prfsha256-x25519".into(),
                esp_proposals: "aes256gcm16".into(),
                initiator,
            },
        );
        self.gw_b.ip(&format!(
            "addr add {}/32 peer {}/32 dev ipsec0",
            B.tunnel, A.tunnel
        ));
        self.gw_b.ip("link set ipsec0 up");
        self.gw_b.ip(&format!("route add {} dev ipsec0", A.lan));
        self.charon = Some(charon);
    }

    fn wait_route_a(&self) -> String {
        wait_until("site B's LAN routed into the tunnel on gw-a", SETUP, || {
            self.gw_a.route(B.lan).ok_or_else(|| self.gw_a.routes())
        })
    }

    fn ping(&self) -> String {
        wait_until("LAN-to-LAN ping", SETUP, || {
            let out = self
                .host_a
                .run("ping", &["-n", "-c", "3", "-i", "0.2", "-W", "1", B.host]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                Ok(text)
            } else {
                Err(text)
            }
        })
    }

    /// A 3-second single-stream TCP iperf3 from host A to host B; returns
    /// the receiver's summary line.
    fn iperf(&self) -> String {
        let server = Proc::spawn(
            &self.host_b,
            "iperf3 server",
            &["iperf3", "-s", "-1"],
            &[],
            &self.dir.join("iperf3.log"),
        );
        let out = wait_until("iperf3 to run", SETUP, || {
            let out = self
                .host_a
                .run("iperf3", &["-c", B.host, "-t", "3", "-f", "m"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                Ok(text)
            } else {
                std::thread::sleep(Duration::from_millis(200));
                Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
            }
        });
        drop(server);
        out.lines()
            .filter(|l| l.contains("receiver"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn stop_daemons(&mut self) -> Vec<String> {
        self.daemons
            .iter_mut()
            .map(|d| {
                d.stop();
                d.log()
            })
            .collect()
    }
}

fn mbits(summary: &str) -> f64 {
    summary
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1] == "Mbits/sec")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0.0)
}

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
    lab.charon_b(false);
    lab.vpngw(&A, &B, true);
    lab.wait_route_a();
    println!("{}", lab.ping());
    let tcp = lab.iperf();
    println!("iperf3 TCP through vpngw -> strongSwan: {tcp}");
    assert!(mbits(&tcp) > 1.0, "{tcp}");
    let sas = lab.charon.as_ref().unwrap().list_sas();
    println!("{sas}");
    assert!(!sas.contains(" 0 packets"), "strongSwan saw no ESP:\n{sas}");
}

#[test]
fn strongswan_initiates_to_vpngw_and_carries_traffic() {
    let mut lab = Lab::new();
    lab.vpngw(&A, &B, false);
    lab.charon_b(true);
    lab.wait_route_a();
    println!("{}", lab.ping());
    let tcp = lab.iperf();
    println!("iperf3 TCP through strongSwan -> vpngw: {tcp}");
    assert!(mbits(&tcp) > 1.0, "{tcp}");
}

#[test]
fn replayed_and_corrupted_esp_are_dropped_and_counted() {
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
            "-U",
            "-n",
            "-w",
            pcap.to_str().unwrap(),
            "udp dst port 4500 and src host 192.0.2.2 and udp[8:4] != 0",
        ],
        &[],
        &lab.dir.join("tcpdump.log"),
    );
    std::thread::sleep(Duration::from_millis(500));
    lab.ping();
    std::thread::sleep(Duration::from_millis(300));
    drop(dump);
    // Send the first captured ESP datagram again (a replay, twice) and a
    // forged one with a new sequence number and a flipped ciphertext byte,
    // from gw-b's address.
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
    std::thread::sleep(Duration::from_millis(300));
    // Traffic still flows after the attack.
    lab.ping();
    let logs = lab.stop_daemons();
    let a_log = logs
        .iter()
        .find(|l| l.contains("connection=site-b"))
        .unwrap();
    let counters = a_log
        .lines()
        .find(|l| l.contains("datapath counters"))
        .unwrap();
    println!("gw-a: {counters}");
    let field = |name: &str| -> u64 {
        let at = counters.find(&format!("{name}: ")).unwrap() + name.len() + 2;
        counters[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(field("drop_replay") >= 2, "{counters}");
    assert!(field("drop_auth") >= 1, "{counters}");
}
