#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end: what operators run BGP over VPN for, in network namespaces
//! with real processes — vpngw against itself and against strongSwan +
//! BIRD as the on-premises device. Each scenario draws its topology and
//! prints what it measured. (`netns_tests::fabric` builds the sites.)

mod active_active;
mod dual_stack;
mod flood;
mod liveness;
mod minimal_prefix;
mod rekey;
mod restart;
mod static_mode;
mod transit;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vpngw_netns_tests::bird::{BgpConfig, Bird};
use vpngw_netns_tests::fabric::Fabric;
use vpngw_netns_tests::strongswan::{Charon, ConnConfig, TUNNEL_IF};
use vpngw_netns_tests::{wait_until, Proc};

pub const VPNGW: &str = env!("CARGO_BIN_EXE_vpngw");
pub const PSK: &str = "e2e-only-pre-shared-key-0123456789";
/// Long enough for IKE + BGP on a busy 2-core machine.
pub const SETUP: Duration = Duration::from_secs(45);

/// What a connection routes.
#[derive(Debug, Clone)]
pub enum Routing {
    /// eBGP with this peer ASN.
    Bgp(u32),
    /// These static prefixes.
    Static(Vec<&'static str>),
}

/// One connection of a vpngw gateway.
#[derive(Debug, Clone)]
pub struct Tunnel {
    pub name: &'static str,
    pub local: &'static str,
    pub remote: &'static str,
    /// Our tunnel (BGP) address, and the peer's.
    pub addr: &'static str,
    pub peer_addr: &'static str,
    pub routing: Routing,
    pub initiate: bool,
}

/// A vpngw gateway's configuration.
#[derive(Debug, Clone)]
pub struct Gw {
    pub asn: u32,
    pub prefixes: Vec<&'static str>,
    pub announce: Vec<&'static str>,
    pub tunnels: Vec<Tunnel>,
    /// Replaces the scenarios' DPD settings in every connection (and may
    /// add keys), e.g. `dpd_interval = "200ms"`.
    pub conn_extra: &'static str,
}

/// BGP timers of every session in these scenarios: keepalive 1 s, hold
/// 3 s. DPD: 1 s interval, 9 s timeout (the shortest the config allows).
pub const KEEPALIVE: u16 = 1;
pub const HOLD: u16 = 3;

impl Gw {
    fn toml(&self, socket: &std::path::Path, psk: &std::path::Path) -> String {
        let list = |v: &[&str]| {
            v.iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut t = format!(
            "[gateway]\nasn = {}\nlocal_prefixes = [{}]\nannounce = [{}]\ncontrol_socket = \"{}\"\n",
            self.asn,
            list(&self.prefixes),
            list(&self.announce),
            socket.display()
        );
        for c in &self.tunnels {
            t.push_str(&format!(
                "\n[[connection]]\nname = \"{}\"\nlocal_address = \"{}\"\nremote_address = \"{}\"\n\
                 psk_file = \"{}\"\ninitiate = {}\ntun_name = \"vti-{}\"\ntunnel_address = \"{}\"\n\
                 tunnel_peer = \"{}\"\n{}\n",
                c.name,
                c.local,
                c.remote,
                psk.display(),
                c.initiate,
                c.name,
                c.addr,
                c.peer_addr,
                if self.conn_extra.is_empty() {
                    "dpd_interval = 1\ndpd_timeout = 9"
                } else {
                    self.conn_extra
                }
            ));
            match &c.routing {
                Routing::Bgp(asn) => t.push_str(&format!(
                    "\n[connection.bgp]\npeer_asn = {asn}\nkeepalive = {KEEPALIVE}\nhold = {HOLD}\n"
                )),
                Routing::Static(p) => t.push_str(&format!("static_routes = [{}]\n", list(p))),
            }
        }
        t
    }
}

/// A running vpngw.
#[derive(Debug)]
pub struct Daemon {
    pub proc: Proc,
    pub site: String,
    pub socket: PathBuf,
    pub config: PathBuf,
}

impl Daemon {
    /// Writes `gw` as `SITE.toml` and starts vpngw in `site`'s gateway.
    pub fn start(f: &Fabric, site: &str, gw: &Gw) -> Daemon {
        use std::os::unix::fs::PermissionsExt;
        let psk = f.dir.write("e2e.psk", PSK);
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let socket = f.dir.join(&format!("{site}.sock"));
        let config = f
            .dir
            .write(&format!("{site}.toml"), &gw.toml(&socket, &psk));
        let proc = Proc::spawn(
            &f.site(site).gw,
            &format!("vpngw {site}"),
            &[VPNGW, "run", "--config", config.to_str().unwrap()],
            &[("RUST_LOG", "info")],
            &f.dir.join(&format!("{site}.vpngw.log")),
        );
        let d = Daemon {
            proc,
            site: site.to_string(),
            socket,
            config,
        };
        wait_until(&format!("vpngw {site} to answer"), SETUP, || {
            // Answering, not just there: a killed daemon leaves its socket.
            if std::os::unix::net::UnixStream::connect(&d.socket).is_ok() {
                Ok(())
            } else {
                Err(d.proc.log())
            }
        });
        d
    }

    /// `vpngw ARGS --json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = Command::new(VPNGW)
            .args(args)
            .args(["--json", "--socket"])
            .arg(&self.socket)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vpngw {args:?} on {}: {}",
            self.site,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Rewrites the config and reloads; returns the reload report.
    pub fn reload(&self, f: &Fabric, gw: &Gw) -> Value {
        let psk = f.dir.join("e2e.psk");
        std::fs::write(&self.config, gw.toml(&self.socket, &psk)).unwrap();
        self.json(&["reload"])
    }

    /// Our kernel routes: prefix → tunnels.
    pub fn routes(&self) -> BTreeMap<String, Vec<String>> {
        let r = self.json(&["routes"]);
        r["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["prefix"].as_str().unwrap().to_string(),
                    k["tunnels"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_string())
                        .collect(),
                )
            })
            .collect()
    }

    /// Waits until `prefix` goes through exactly these tunnels (any order;
    /// none: not routed); returns how long that took.
    pub fn wait_route(&self, prefix: &str, tunnels: &[&str]) -> Duration {
        let start = Instant::now();
        let mut want: Vec<String> = tunnels.iter().map(|t| t.to_string()).collect();
        want.sort();
        wait_until(
            &format!("{prefix} via {want:?} on {}", self.site),
            SETUP,
            || {
                let routes = self.routes();
                let mut got = routes.get(prefix).cloned().unwrap_or_default();
                got.sort();
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{routes:?}\n{}", tail(&self.proc.log(), 20)))
                }
            },
        );
        start.elapsed()
    }

    /// One BGP neighbor's report.
    pub fn neighbor(&self, name: &str) -> Value {
        self.json(&["bgp", name])
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// strongSwan + BIRD as an on-premises device with one route-based tunnel
/// (kernel-libipsec carries one per charon).
#[derive(Debug)]
pub struct OnPrem {
    pub bird: Bird,
    pub charon: Charon,
}

/// What [`OnPrem::start`] needs.
#[derive(Debug, Clone)]
pub struct OnPremSpec {
    pub site: &'static str,
    pub local: &'static str,
    pub remote: &'static str,
    pub addr: &'static str,
    pub peer_addr: &'static str,
    pub asn: u32,
    pub peer_asn: u32,
    /// Connected prefixes it advertises (its LAN).
    pub advertise: Vec<String>,
    /// Prefixes it announces without routing them.
    pub originate: Vec<String>,
    pub initiator: bool,
    /// Dual-stack: its IPv6 tunnel address, the peer's, and the connected
    /// IPv6 prefixes it advertises (MP-BGP over the IPv4 session).
    pub ipv6: Option<(&'static str, &'static str, Vec<String>)>,
}

impl OnPrem {
    pub fn start(f: &Fabric, s: &OnPremSpec) -> OnPrem {
        let ns = &f.site(s.site).gw;
        let name = format!("onprem-{}", s.site);
        let charon = Charon::start(
            ns,
            &f.dir,
            &name,
            &ConnConfig {
                local: s.local.into(),
                remote: s.remote.into(),
                psk: PSK.into(),
                ike_proposals: "aes256gcm16-prfsha256-x25519".into(),
                esp_proposals: "aes256gcm16".into(),
                initiator: s.initiator,
                dual_stack: s.ipv6.is_some(),
            },
        );
        // Only the /32 of the peer's BGP address is routed into the tunnel;
        // everything else is learned over BGP.
        ns.ip(&format!(
            "addr add {}/32 peer {}/32 dev {TUNNEL_IF}",
            s.addr, s.peer_addr
        ));
        if let Some((addr6, peer6, _)) = &s.ipv6 {
            ns.ip(&format!(
                "-6 addr add {addr6}/128 peer {peer6}/128 dev {TUNNEL_IF} nodad"
            ));
        }
        ns.ip(&format!("link set {TUNNEL_IF} up"));
        let bird = Bird::start(
            ns,
            &f.dir,
            &name,
            &BgpConfig {
                router_id: s.local.into(),
                local_addr: s.addr.into(),
                local_as: s.asn,
                peer_addr: s.peer_addr.into(),
                peer_as: s.peer_asn,
                tunnel_if: TUNNEL_IF.into(),
                advertise: s.advertise.clone(),
                originate: s.originate.clone(),
                bfd: false,
                keepalive: KEEPALIVE,
                hold: HOLD,
                ipv6: s
                    .ipv6
                    .as_ref()
                    .map(|(addr6, _, advertise6)| (addr6.to_string(), advertise6.clone())),
            },
        );
        OnPrem { bird, charon }
    }
}

/// Prints a scenario's measurement so the CI log carries it.
pub fn report(scenario: &str, what: &str) {
    println!("[{scenario}] {what}");
}
