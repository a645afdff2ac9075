//! The reference lab: two sites joined by an underlay, a route-based tunnel
//! between their gateways and eBGP across it.
//!
//! ```text
//!  lan-a host            site-a gateway               wan router              site-b gateway            lan-b host
//!  [host-a] eth0 ---- lan0 [gw-a] wan0 ---------- to-a [wan] to-b ---------- wan0 [gw-b] lan0 ---- eth0 [host-b]
//!  10.1.0.2/24     10.1.0.1/24   192.0.2.1/24   192.0.2.254   198.51.100.254   198.51.100.1/24   10.2.0.1/24   10.2.0.2/24
//!                                 \_____________ IKEv2 + ESP-in-UDP 4500 _____________/
//!                         tunnel if 169.254.21.1/32  <==== eBGP 65010 <-> 65020 ====>  169.254.21.2/32
//! ```
//!
//! Each site's gateway is pluggable ([`GatewayKind`]): today strongSwan +
//! BIRD on both sides (the reference our users run), later vpngw on one side
//! facing the reference on the other. Everything a test asserts is read from
//! the kernel (routes, pings) or asked of the gateway through
//! [`SiteGateway`], so swapping a side changes no assertion.

use std::fmt::Debug;
use std::time::Duration;

use crate::bird::{BgpConfig, Bird};
use crate::netns::unique_id;
use crate::strongswan::{Charon, ConnConfig};
use crate::{veth, wait_until, Netns, WorkDir};

/// The addresses and ASN of one site.
#[derive(Debug, Clone, Copy)]
pub struct SitePlan {
    /// Short name, used in namespace names (`gw-a`, `host-a`).
    pub name: &'static str,
    /// The LAN behind the gateway.
    pub lan: &'static str,
    /// The gateway's address on the LAN (with prefix length).
    pub gw_lan: &'static str,
    /// The LAN host's address.
    pub host: &'static str,
    /// The gateway's outer (underlay) address.
    pub outer: &'static str,
    /// The underlay router's address facing this site.
    pub router: &'static str,
    /// The gateway's /32 BGP address on the tunnel interface.
    pub bgp_addr: &'static str,
    /// The gateway's ASN.
    pub asn: u32,
}

/// Site A: 10.1.0.0/24 behind 192.0.2.1, BGP 169.254.21.1 AS 65010.
pub const SITE_A: SitePlan = SitePlan {
    name: "a",
    lan: "10.1.0.0/24",
    gw_lan: "10.1.0.1/24",
    host: "10.1.0.2",
    outer: "192.0.2.1",
    router: "192.0.2.254",
    bgp_addr: "169.254.21.1",
    asn: 65010,
};

/// Site B: 10.2.0.0/24 behind 198.51.100.1, BGP 169.254.21.2 AS 65020.
pub const SITE_B: SitePlan = SitePlan {
    name: "b",
    lan: "10.2.0.0/24",
    gw_lan: "10.2.0.1/24",
    host: "10.2.0.2",
    outer: "198.51.100.1",
    router: "198.51.100.254",
    bgp_addr: "169.254.21.2",
    asn: 65020,
};

/// What both sides of the tunnel agree on.
#[derive(Debug, Clone)]
pub struct TunnelPlan {
    /// Pre-shared key.
    pub psk: String,
    /// IKE proposals, strongSwan notation.
    pub ike_proposals: String,
    /// ESP proposals, strongSwan notation.
    pub esp_proposals: String,
}

impl Default for TunnelPlan {
    /// AES-GCM-256 with Curve25519, PFS on the child: what the issue asks for.
    fn default() -> Self {
        TunnelPlan {
            psk: "lab-only-psk-0123456789abcdef".into(),
            ike_proposals: "aes256gcm16-prfsha256-x25519".into(),
            esp_proposals: "aes256gcm16-x25519".into(),
        }
    }
}

/// The BGP session's settings.
#[derive(Debug, Clone, Copy)]
pub struct BgpPlan {
    /// BFD 100 ms x 3 on the session.
    pub bfd: bool,
    /// Keepalive, seconds.
    pub keepalive: u16,
    /// Hold time, seconds.
    pub hold: u16,
}

impl Default for BgpPlan {
    /// The cloud gateways' timers (60/180 s), no BFD.
    fn default() -> Self {
        BgpPlan {
            bfd: false,
            keepalive: 60,
            hold: 180,
        }
    }
}

/// Which implementation runs a site's gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayKind {
    /// strongSwan's charon (kernel-libipsec) for IKE/ESP and BIRD 2 for BGP.
    StrongswanBird,
    /// vpngw: IKE, ESP, BGP and kernel routes in one daemon. The binary's
    /// path (tests in the vpngw crate pass `env!("CARGO_BIN_EXE_vpngw")`).
    Vpngw(&'static str),
}

/// Everything a gateway implementation is told when it starts.
#[derive(Debug)]
pub struct GatewaySpec<'a> {
    /// This site.
    pub site: &'a SitePlan,
    /// The site at the other end of the tunnel.
    pub peer: &'a SitePlan,
    /// The tunnel both agree on.
    pub tunnel: &'a TunnelPlan,
    /// The BGP session.
    pub bgp: &'a BgpPlan,
    /// Whether this side initiates IKE.
    pub initiator: bool,
}

/// A running site gateway, whatever implements it.
pub trait SiteGateway: Debug {
    /// The implementation, for test output.
    fn kind(&self) -> GatewayKind;
    /// Ok(status for the test log) once the IKE SA and the child SA are up.
    fn tunnel_up(&self) -> Result<String, String>;
    /// Ok(status for the test log) once the BGP session is established.
    fn bgp_up(&self) -> Result<String, String>;
    /// Ok(status for the test log) once BFD runs on the BGP session.
    fn bfd_up(&self) -> Result<String, String>;
    /// Deletes the IKE SA from this side, as an operator would (the peer
    /// gets an IKE DELETE). Err if the implementation cannot be told to.
    fn delete_tunnel(&self) -> Result<(), String>;
}

/// Starts a gateway of `kind` in namespace `ns`.
pub fn start_gateway(
    kind: GatewayKind,
    ns: &Netns,
    dir: &WorkDir,
    spec: &GatewaySpec<'_>,
) -> Box<dyn SiteGateway> {
    match kind {
        GatewayKind::StrongswanBird => Box::new(StrongswanBird::start(ns, dir, spec)),
        GatewayKind::Vpngw(binary) => Box::new(VpngwSite::start(binary, ns, dir, spec)),
    }
}

/// strongSwan + BIRD on one site: the reference.
#[derive(Debug)]
pub struct StrongswanBird {
    /// BIRD runs BGP across the tunnel.
    pub bird: Bird,
    /// charon runs IKE and (kernel-libipsec) ESP.
    pub charon: Charon,
}

impl StrongswanBird {
    fn start(ns: &Netns, dir: &WorkDir, spec: &GatewaySpec<'_>) -> StrongswanBird {
        let name = format!("gw-{}", spec.site.name);
        let charon = Charon::start(
            ns,
            dir,
            &name,
            &ConnConfig {
                local: spec.site.outer.into(),
                remote: spec.peer.outer.into(),
                psk: spec.tunnel.psk.clone(),
                ike_proposals: spec.tunnel.ike_proposals.clone(),
                esp_proposals: spec.tunnel.esp_proposals.clone(),
                initiator: spec.initiator,
                dual_stack: false,
            },
        );
        let tunnel_if = crate::strongswan::TUNNEL_IF;
        ns.ip(&format!(
            "addr add {}/32 peer {}/32 dev {tunnel_if}",
            spec.site.bgp_addr, spec.peer.bgp_addr
        ));
        ns.ip(&format!("link set {tunnel_if} up"));
        let bird = Bird::start(
            ns,
            dir,
            &name,
            &BgpConfig {
                router_id: spec.site.bgp_addr.into(),
                local_addr: spec.site.bgp_addr.into(),
                local_as: spec.site.asn,
                peer_addr: spec.peer.bgp_addr.into(),
                peer_as: spec.peer.asn,
                tunnel_if: tunnel_if.into(),
                advertise: vec![spec.site.lan.into()],
                originate: Vec::new(),
                bfd: spec.bgp.bfd,
                keepalive: spec.bgp.keepalive,
                hold: spec.bgp.hold,
                ipv6: None,
            },
        );
        StrongswanBird { bird, charon }
    }
}

impl SiteGateway for StrongswanBird {
    fn delete_tunnel(&self) -> Result<(), String> {
        self.charon.swanctl(&["--terminate", "--ike", "site"]);
        Ok(())
    }

    fn kind(&self) -> GatewayKind {
        GatewayKind::StrongswanBird
    }

    fn tunnel_up(&self) -> Result<String, String> {
        self.charon.established()
    }

    fn bgp_up(&self) -> Result<String, String> {
        self.bird.established()
    }

    fn bfd_up(&self) -> Result<String, String> {
        let sessions = self.bird.birdc("show bfd sessions");
        if sessions.contains(" Up ") {
            Ok(sessions)
        } else {
            Err(sessions)
        }
    }
}

/// vpngw on one site: one connection to the peer site with eBGP across
/// the tunnel, advertising the site's LAN.
#[derive(Debug)]
pub struct VpngwSite {
    /// The daemon.
    pub daemon: crate::Proc,
    binary: &'static str,
}

impl VpngwSite {
    fn start(binary: &'static str, ns: &Netns, dir: &WorkDir, spec: &GatewaySpec<'_>) -> VpngwSite {
        use std::os::unix::fs::PermissionsExt;
        let name = format!("gw-{}", spec.site.name);
        let psk = dir.write(&format!("{name}.psk"), &spec.tunnel.psk);
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).expect("chmod psk");
        let config = format!(
            r#"[gateway]
asn = {asn}
router_id = "{router_id}"
local_prefixes = ["{lan}"]
control_socket = "{sock}"

[[connection]]
name = "site-{peer_name}"
local_address = "{outer}"
remote_address = "{peer_outer}"
psk_file = "{psk}"
initiate = {initiate}
ike_proposals = ["{ike}"]
esp_proposals = ["{esp}"]
tunnel_address = "{bgp_addr}"
tunnel_peer = "{peer_bgp_addr}"
{bfd}
[connection.bgp]
peer_asn = {peer_asn}
keepalive = {keepalive}
hold = {hold}
"#,
            asn = spec.site.asn,
            router_id = spec.site.outer,
            lan = spec.site.lan,
            peer_name = spec.peer.name,
            outer = spec.site.outer,
            peer_outer = spec.peer.outer,
            psk = psk.display(),
            initiate = spec.initiator,
            ike = spec.tunnel.ike_proposals,
            esp = spec.tunnel.esp_proposals,
            bgp_addr = spec.site.bgp_addr,
            peer_bgp_addr = spec.peer.bgp_addr,
            peer_asn = spec.peer.asn,
            keepalive = spec.bgp.keepalive,
            hold = spec.bgp.hold,
            sock = dir.join(&format!("{name}.sock")).display(),
            // BIRD's timers in the lab: 100 ms x 3.
            bfd = if spec.bgp.bfd {
                "\n[connection.bfd]\ninterval = \"100ms\"\nmultiplier = 3\n"
            } else {
                ""
            },
        );
        let conf = dir.write(&format!("{name}.vpngw.toml"), &config);
        let daemon = crate::Proc::spawn(
            ns,
            &format!("vpngw {name}"),
            &[
                binary,
                "run",
                "--config",
                conf.to_str().expect("utf-8 path"),
            ],
            &[("RUST_LOG", "info")],
            &dir.join(&format!("{name}.vpngw.log")),
        );
        wait_until("vpngw to listen", Duration::from_secs(10), || {
            let log = daemon.log();
            if log.contains("IKE listening") {
                Ok(())
            } else {
                Err(log)
            }
        });
        VpngwSite { daemon, binary }
    }

    fn log_has(&self, needle: &str) -> Result<String, String> {
        let log = self.daemon.log();
        if log.contains(needle) {
            Ok(log
                .lines()
                .filter(|l| l.contains(needle))
                .collect::<Vec<_>>()
                .join("\n"))
        } else {
            Err(log)
        }
    }
}

impl SiteGateway for VpngwSite {
    fn kind(&self) -> GatewayKind {
        GatewayKind::Vpngw(self.binary)
    }

    fn tunnel_up(&self) -> Result<String, String> {
        self.log_has("child SA installed")
    }

    fn bgp_up(&self) -> Result<String, String> {
        self.log_has("BGP session established")
    }

    fn bfd_up(&self) -> Result<String, String> {
        self.log_has("BFD up")
    }

    fn delete_tunnel(&self) -> Result<(), String> {
        Err("vpngw has no control socket yet".into())
    }
}

/// One site of the lab: its gateway namespace and the LAN host behind it.
#[derive(Debug)]
pub struct Site {
    /// Addresses and ASN.
    pub plan: SitePlan,
    /// The gateway's namespace.
    pub gw: Netns,
    /// The LAN host's namespace.
    pub host: Netns,
}

/// How to build a [`TwoSiteLab`].
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Site A's gateway (the IKE initiator).
    pub a: GatewayKind,
    /// Site B's gateway (the IKE responder, started first).
    pub b: GatewayKind,
    /// The tunnel.
    pub tunnel: TunnelPlan,
    /// The BGP session.
    pub bgp: BgpPlan,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            a: GatewayKind::StrongswanBird,
            b: GatewayKind::StrongswanBird,
            tunnel: TunnelPlan::default(),
            bgp: BgpPlan::default(),
        }
    }
}

/// The running lab. Dropping it stops the gateways, then deletes the
/// namespaces, then the work directory (kept if the test failed).
#[derive(Debug)]
pub struct TwoSiteLab {
    // Field order is drop order: processes before namespaces, logs last.
    /// Site A's gateway implementation.
    pub gw_a: Box<dyn SiteGateway>,
    /// Site B's gateway implementation.
    pub gw_b: Box<dyn SiteGateway>,
    /// Site A (10.1.0.0/24).
    pub a: Site,
    /// Site B (10.2.0.0/24).
    pub b: Site,
    /// The underlay router between the sites.
    pub wan: Netns,
    /// Configs, sockets and logs.
    pub dir: WorkDir,
}

impl TwoSiteLab {
    /// Builds the topology and starts both gateways (B, the responder, first).
    pub fn start(opts: &LabOptions) -> TwoSiteLab {
        let id = unique_id();
        let dir = WorkDir::new(&id);
        let wan = Netns::new(&id, "wan");
        let a = build_site(&id, &SITE_A, &wan, "to-a");
        let b = build_site(&id, &SITE_B, &wan, "to-b");
        let spec_b = GatewaySpec {
            site: &SITE_B,
            peer: &SITE_A,
            tunnel: &opts.tunnel,
            bgp: &opts.bgp,
            initiator: false,
        };
        let gw_b = start_gateway(opts.b, &b.gw, &dir, &spec_b);
        let spec_a = GatewaySpec {
            site: &SITE_A,
            peer: &SITE_B,
            initiator: true,
            ..spec_b
        };
        let gw_a = start_gateway(opts.a, &a.gw, &dir, &spec_a);
        TwoSiteLab {
            gw_a,
            gw_b,
            a,
            b,
            wan,
            dir,
        }
    }

    /// Waits until both gateways report the tunnel up; returns their status.
    pub fn wait_tunnel_up(&self, timeout: Duration) -> [String; 2] {
        [&self.gw_a, &self.gw_b]
            .map(|gw| wait_until("the tunnel to come up", timeout, || gw.tunnel_up()))
    }

    /// Waits until both gateways report BGP established; returns their status.
    pub fn wait_bgp_up(&self, timeout: Duration) -> [String; 2] {
        [&self.gw_a, &self.gw_b]
            .map(|gw| wait_until("BGP to be established", timeout, || gw.bgp_up()))
    }

    /// Waits until each LAN's prefix is in the other site's kernel table;
    /// returns the two routes (A's route to B's LAN, B's route to A's LAN).
    pub fn wait_lan_routes(&self, timeout: Duration) -> [String; 2] {
        [(&self.a, &self.b), (&self.b, &self.a)].map(|(here, there)| {
            wait_until(
                &format!("{} in gw-{}'s kernel table", there.plan.lan, here.plan.name),
                timeout,
                || {
                    here.gw
                        .route(there.plan.lan)
                        .ok_or_else(|| here.gw.routes())
                },
            )
        })
    }

    /// Waits until both gateways report their BFD session up (only for
    /// gateways that run BFD); returns site A's view.
    pub fn wait_bfd_up(&self, timeout: Duration) -> String {
        let [a, _] = [&self.gw_a, &self.gw_b]
            .map(|gw| wait_until("BFD to come up", timeout, || gw.bfd_up()));
        a
    }

    /// Whether either site still has a route to the other site's LAN.
    pub fn any_lan_route(&self) -> Option<String> {
        self.a
            .gw
            .route(self.b.plan.lan)
            .or_else(|| self.b.gw.route(self.a.plan.lan))
    }

    /// Pings host B from host A: Ok(ping output) if replies came back.
    pub fn ping_a_to_b(&self, count: u32) -> Result<String, String> {
        let count = count.to_string();
        let out = self.a.host.run(
            "ping",
            &["-n", "-c", &count, "-i", "0.2", "-W", "1", SITE_B.host],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Silently cuts the underlay: the router drops everything between the
    /// two gateways' outer addresses (no link goes down, no packet says so).
    pub fn blackhole_underlay(&self) {
        self.wan
            .ip(&format!("route add blackhole {}/32", SITE_A.outer));
        self.wan
            .ip(&format!("route add blackhole {}/32", SITE_B.outer));
    }
}

/// Creates a site's gateway and host namespaces, the LAN link and the
/// gateway's link to the underlay router.
fn build_site(id: &str, plan: &SitePlan, wan: &Netns, wan_if: &str) -> Site {
    let gw = Netns::new(id, &format!("gw-{}", plan.name));
    let host = Netns::new(id, &format!("host-{}", plan.name));
    veth(&gw, "lan0", &host, "eth0");
    gw.ip(&format!("addr add {} dev lan0", plan.gw_lan));
    host.ip(&format!("addr add {}/24 dev eth0", plan.host));
    let gw_lan_addr = plan.gw_lan.split('/').next().expect("address/len");
    host.ip(&format!("route add default via {gw_lan_addr}"));
    veth(&gw, "wan0", wan, wan_if);
    gw.ip(&format!("addr add {}/24 dev wan0", plan.outer));
    wan.ip(&format!("addr add {}/24 dev {wan_if}", plan.router));
    // Only the other site's outer address goes via the underlay: with no
    // default route, LAN traffic without a tunnel route is dropped here
    // instead of leaking into the underlay.
    let other = if plan.name == SITE_A.name {
        SITE_B.outer
    } else {
        SITE_A.outer
    };
    gw.ip(&format!("route add {other}/32 via {}", plan.router));
    Site {
        plan: *plan,
        gw,
        host,
    }
}
