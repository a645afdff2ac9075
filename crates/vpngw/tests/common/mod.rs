//! A two-site lab for vpngw's datapath tests and benchmarks (shared by
//! `tests/esp_datapath.rs` and `benches/throughput.rs`).
//!
//! ```text
//!  [host-a] eth0 ---- lan0 [gw-a] eth0 -------- eth0 [gw-b] lan0 ---- eth0 [host-b]
//!  10.1.0.2/24     10.1.0.1/24  192.0.2.1/24    192.0.2.2/24  10.2.0.1/24    10.2.0.2/24
//!                  tunnel 169.254.21.1 ========== 169.254.21.2
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use vpngw_netns_tests::netns::unique_id;
use vpngw_netns_tests::strongswan::{Charon, ConnConfig};
use vpngw_netns_tests::{veth, wait_until, Netns, Proc, WorkDir};

pub const PSK: &str = "datapath-test-psk-0123456789";
pub const SETUP: Duration = Duration::from_secs(20);

pub struct Side {
    pub name: &'static str,
    pub outer: &'static str,
    pub lan: &'static str,
    pub gw_lan: &'static str,
    pub host: &'static str,
    pub tunnel: &'static str,
}

pub const A: Side = Side {
    name: "site-a",
    outer: "192.0.2.1",
    lan: "10.1.0.0/24",
    gw_lan: "10.1.0.1",
    host: "10.1.0.2",
    tunnel: "169.254.21.1",
};
pub const B: Side = Side {
    name: "site-b",
    outer: "192.0.2.2",
    lan: "10.2.0.0/24",
    gw_lan: "10.2.0.1",
    host: "10.2.0.2",
    tunnel: "169.254.21.2",
};

/// Field order is drop order: processes, then namespaces, then logs.
pub struct Lab {
    pub daemons: Vec<Proc>,
    pub charons: Vec<Charon>,
    pub gw_a: Netns,
    pub gw_b: Netns,
    pub host_a: Netns,
    pub host_b: Netns,
    pub dir: WorkDir,
}

impl Lab {
    pub fn new() -> Lab {
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
            charons: Vec::new(),
            gw_a,
            gw_b,
            host_a,
            host_b,
            dir,
        }
    }

    /// Starts vpngw on `me`'s gateway, with a tunnel to `peer` carrying
    /// `peer`'s LAN as a static route.
    pub fn vpngw(&mut self, me: &Side, peer: &Side, initiate: bool) {
        self.vpngw_with(me, peer, initiate, "");
    }

    /// Like [`vpngw`](Self::vpngw) with extra keys in the connection.
    pub fn vpngw_with(&mut self, me: &Side, peer: &Side, initiate: bool, extra: &str) {
        self.vpngw_config(me, peer, initiate, "", extra);
    }

    /// Like [`vpngw`](Self::vpngw) with extra keys in the gateway section
    /// and in the connection.
    pub fn vpngw_config(
        &mut self,
        me: &Side,
        peer: &Side,
        initiate: bool,
        gateway: &str,
        extra: &str,
    ) {
        let psk = self.dir.write(&format!("{}.psk", me.name), PSK);
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let conf = self.dir.write(
            &format!("{}.toml", me.name),
            &format!(
                r#"[gateway]
local_prefixes = ["{my_lan}"]
control_socket = "{sock}"
{gateway}

[[connection]]
name = "{peer_name}"
local_address = "{me_outer}"
remote_address = "{peer_outer}"
psk_file = "{psk}"
initiate = {initiate}
tunnel_address = "{me_tunnel}"
tunnel_peer = "{peer_tunnel}"
static_routes = ["{peer_lan}"]
{extra}
"#,
                my_lan = me.lan,
                peer_name = peer.name,
                me_outer = me.outer,
                peer_outer = peer.outer,
                psk = psk.display(),
                me_tunnel = me.tunnel,
                peer_tunnel = peer.tunnel,
                peer_lan = peer.lan,
                sock = self.dir.join(&format!("{}.sock", me.name)).display(),
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

    /// strongSwan on `me`'s gateway, routing `peer`'s LAN into its ipsec0.
    pub fn charon(&mut self, me: &Side, peer: &Side, initiator: bool) {
        let ns = if me.name == A.name {
            &self.gw_a
        } else {
            &self.gw_b
        };
        let charon = Charon::start(
            ns,
            &self.dir,
            me.name,
            &ConnConfig {
                local: me.outer.into(),
                remote: peer.outer.into(),
                psk: PSK.into(),
                ike_proposals: "aes256gcm16-prfsha256-x25519".into(),
                esp_proposals: "aes256gcm16".into(),
                initiator,
                dual_stack: false,
            },
        );
        ns.ip(&format!(
            "addr add {}/32 peer {}/32 dev ipsec0",
            me.tunnel, peer.tunnel
        ));
        ns.ip("link set ipsec0 up");
        ns.ip(&format!("route add {} dev ipsec0", peer.lan));
        self.charons.push(charon);
    }

    /// Plain routing between the LANs over the underlay, no tunnel.
    pub fn plain_routes(&self) {
        self.gw_a
            .ip(&format!("route add {} via {}", B.lan, B.outer));
        self.gw_b
            .ip(&format!("route add {} via {}", A.lan, A.outer));
    }

    pub fn wait_route_a(&self) -> String {
        wait_until("site B's LAN routed into the tunnel on gw-a", SETUP, || {
            self.gw_a.route(B.lan).ok_or_else(|| self.gw_a.routes())
        })
    }

    pub fn ping(&self) -> String {
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
    pub fn iperf(&self) -> String {
        self.iperf_for(3)
    }

    /// A single-stream TCP iperf3 of `seconds` from host A to host B.
    pub fn iperf_for(&self, seconds: u32) -> String {
        self.iperf_args(seconds, &[])
    }

    /// TCP iperf3 over `streams` connections for 3 s; the receivers' sum.
    pub fn iperf_streams(&self, streams: u32) -> String {
        let n = streams.to_string();
        let out = self.iperf_args(3, &["-P", &n]);
        out.lines()
            .filter(|l| l.contains("SUM"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn iperf_args(&self, seconds: u32, extra: &[&str]) -> String {
        let secs = seconds.to_string();
        let server = Proc::spawn(
            &self.host_b,
            "iperf3 server",
            &["iperf3", "-s", "-1"],
            &[],
            &self.dir.join("iperf3.log"),
        );
        let out = wait_until("iperf3 to run", SETUP, || {
            let mut args = vec!["-c", B.host, "-t", &secs, "-f", "m"];
            args.extend_from_slice(extra);
            let out = self.host_a.run("iperf3", &args);
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

    /// A UDP iperf3 from host A to host B at `rate` (e.g. "4M") for
    /// `seconds`; returns the receiver's summary line.
    pub fn iperf_udp(&self, seconds: u32, rate: &str) -> String {
        let server = Proc::spawn(
            &self.host_b,
            "iperf3 server",
            &["iperf3", "-s", "-1"],
            &[],
            &self.dir.join("iperf3-udp.log"),
        );
        let secs = seconds.to_string();
        let out = wait_until("iperf3 to run", SETUP, || {
            let out = self
                .host_a
                .run("iperf3", &["-c", B.host, "-u", "-b", rate, "-t", &secs]);
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

    pub fn stop_daemons(&mut self) -> Vec<String> {
        self.daemons
            .iter_mut()
            .map(|d| {
                d.stop();
                d.log()
            })
            .collect()
    }
}

pub fn mbits(summary: &str) -> f64 {
    summary
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1] == "Mbits/sec")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0.0)
}
