//! A fabric of sites for end-to-end scenarios: any number of gateways,
//! each with a LAN host behind it, joined by one underlay router.
//!
//! ```text
//!  [host-N] eth0 ---- lan0 [gw-N] wan0 ---- to-N [wan] to-M ---- wan0 [gw-M] lan0 ---- eth0 [host-M]
//!  10.N.0.2-6/24    10.N.0.1/24   outer /32s    router          outer /32s   10.M.0.1/24     10.M.0.2-6/24
//! ```
//!
//! Outer (underlay) addresses are /32s from the documentation ranges; a
//! gateway may have several (an Azure-style instance pair on one VM, or
//! one per instance). Every gateway reaches the three documentation /24s
//! through the router, and has no default route: LAN traffic with no
//! tunnel route is dropped at the gateway instead of leaking into the
//! underlay. The router can cut the path between two outer addresses
//! silently (nftables drop, no ICMP, no link change) and restore it.

use std::rc::Rc;
use std::time::Duration;

use crate::netns::unique_id;
use crate::{veth, Netns, WorkDir};

/// The router's address on every link (gateways route the underlay via it).
const ROUTER: &str = "10.255.254.254";
/// The documentation ranges the underlay is made of.
const UNDERLAY: [&str; 3] = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];

/// One site: a gateway namespace and a LAN host namespace.
#[derive(Debug)]
pub struct Site {
    /// Short name (`gw-<name>`, `host-<name>` namespaces).
    pub name: String,
    /// The gateway.
    pub gw: Netns,
    /// The LAN host (10.N.0.2 to 10.N.0.6); the two sites of a pair share it.
    pub host: Rc<Netns>,
    /// The LAN prefix, 10.N.0.0/24.
    pub lan: String,
    /// The host's first address, 10.N.0.2.
    pub host_addr: String,
    /// The gateway's outer addresses.
    pub outer: Vec<String>,
}

/// The fabric. Drop order: sites, then the router, then the files (start
/// daemons after building it and hold them in later variables, so they
/// stop first).
#[derive(Debug)]
pub struct Fabric {
    /// The sites, in the order added.
    pub sites: Vec<Site>,
    /// LAN bridges of pairs.
    pub bridges: Vec<Netns>,
    /// The underlay router.
    pub wan: Netns,
    /// Configs, sockets, logs.
    pub dir: WorkDir,
    id: String,
}

impl Default for Fabric {
    fn default() -> Self {
        Fabric::new()
    }
}

impl Fabric {
    /// An empty fabric: just the router.
    pub fn new() -> Fabric {
        let id = unique_id();
        let dir = WorkDir::new(&id);
        let wan = Netns::new(&id, "wan");
        wan.run_checked_nft("add table inet fabric");
        wan.run_checked_nft(
            "add chain inet fabric forward { type filter hook forward priority 0; policy accept; }",
        );
        Fabric {
            sites: Vec::new(),
            bridges: Vec::new(),
            wan,
            dir,
            id,
        }
    }

    /// Adds a site with LAN 10.`n`.0.0/24 and these outer addresses;
    /// returns its index.
    pub fn add_site(&mut self, name: &str, n: u8, outer: &[&str]) -> usize {
        let gw = Netns::new(&self.id, &format!("gw-{name}"));
        let host = Netns::new(&self.id, &format!("host-{name}"));
        veth(&gw, "lan0", &host, "eth0");
        gw.ip(&format!("addr add 10.{n}.0.1/24 dev lan0"));
        for i in 2..=6 {
            host.ip(&format!("addr add 10.{n}.0.{i}/24 dev eth0"));
        }
        host.ip(&format!("route add default via 10.{n}.0.1"));
        self.link_underlay(&gw, outer);
        self.sites.push(Site {
            name: name.to_string(),
            gw,
            host: Rc::new(host),
            lan: format!("10.{n}.0.0/24"),
            host_addr: format!("10.{n}.0.2"),
            outer: outer.iter().map(|s| s.to_string()).collect(),
        });
        self.sites.len() - 1
    }

    /// Makes `site`'s LAN dual-stack: 2001:db8:`n`::1/64 on its gateway
    /// (forwarding IPv6), 2001:db8:`n`::2/64 on its host with a default
    /// route to it (`n` as in [`Fabric::add_site`]).
    pub fn add_ipv6(&self, site: &str) {
        let s = self.site(site);
        let n = s.lan.split('.').nth(1).expect("LAN 10.n.0.0/24");
        s.gw.sysctl("net.ipv6.conf.all.forwarding", "1");
        s.gw.ip(&format!("-6 addr add 2001:db8:{n}::1/64 dev lan0 nodad"));
        s.host
            .ip(&format!("-6 addr add 2001:db8:{n}::2/64 dev eth0 nodad"));
        s.host
            .ip(&format!("-6 route add default via 2001:db8:{n}::1"));
    }

    /// Pings `to` (IPv6) from `site`'s host: Ok(output) if replies came
    /// back within `count` tries.
    pub fn ping6(&self, site: &str, to: &str, count: u32) -> Result<String, String> {
        let out = self.site(site).host.run(
            "ping",
            &[
                "-6",
                "-n",
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-W",
                "1",
                to,
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Joins a gateway to the router with these outer addresses.
    fn link_underlay(&self, gw: &Netns, outer: &[&str]) {
        let link = format!("to-{}", self.sites.len());
        veth(gw, "wan0", &self.wan, &link);
        self.wan.ip(&format!("addr add {ROUTER}/32 dev {link}"));
        gw.ip(&format!("route add {ROUTER}/32 dev wan0"));
        for addr in outer {
            gw.ip(&format!("addr add {addr}/32 dev wan0"));
            self.wan.ip(&format!("route add {addr}/32 dev {link}"));
        }
        for range in UNDERLAY {
            gw.ip(&format!("route add {range} via {ROUTER} dev wan0"));
        }
        // Hash flows on addresses and ports, as deploy/sysctl.d recommends.
        gw.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
    }

    /// Adds an active-active pair: two gateways (`names[0]` at 10.`n`.0.1,
    /// `names[1]` at 10.`n`.0.3) on one LAN 10.`n`.0.0/24 (a bridge) with
    /// one host (10.`n`.0.2, .4 to .7) whose default gateway is the first.
    /// Each gateway falls back to the other for 10.0.0.0/8 (metric 1000)
    /// when it has no route of its own: the LAN fabric of a cloud VNet, or
    /// the on-premises LAN behind two devices.
    pub fn add_pair(&mut self, names: [&str; 2], n: u8, outer: [&str; 2]) {
        let lan = Netns::new(&self.id, &format!("lan-{n}"));
        lan.ip("link add br0 type bridge");
        lan.ip("link set br0 up");
        let host = Rc::new(Netns::new(&self.id, &format!("host-{n}")));
        veth(&host, "eth0", &lan, "to-host");
        lan.ip("link set to-host master br0");
        for i in [2, 4, 5, 6, 7] {
            host.ip(&format!("addr add 10.{n}.0.{i}/24 dev eth0"));
        }
        host.ip(&format!("route add default via 10.{n}.0.1"));
        for (k, (name, addr)) in names.iter().zip(outer).enumerate() {
            let gw = Netns::new(&self.id, &format!("gw-{name}"));
            let port = format!("p{k}");
            veth(&gw, "lan0", &lan, &port);
            lan.ip(&format!("link set {port} master br0"));
            let (me, other) = if k == 0 { (1, 3) } else { (3, 1) };
            gw.ip(&format!("addr add 10.{n}.0.{me}/24 dev lan0"));
            gw.ip(&format!(
                "route add 10.0.0.0/8 via 10.{n}.0.{other} metric 1000"
            ));
            // What the other gateway hands over stays on the LAN: no
            // redirects to the host.
            gw.sysctl("net.ipv4.conf.all.send_redirects", "0");
            gw.sysctl("net.ipv4.conf.lan0.send_redirects", "0");
            self.link_underlay(&gw, &[addr]);
            self.sites.push(Site {
                name: name.to_string(),
                gw,
                host: Rc::clone(&host),
                lan: format!("10.{n}.0.0/24"),
                host_addr: format!("10.{n}.0.2"),
                outer: vec![addr.to_string()],
            });
        }
        self.bridges.push(lan);
    }

    /// The site named `name`.
    pub fn site(&self, name: &str) -> &Site {
        self.sites
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no site {name}"))
    }

    /// Silently drops everything between outer addresses `a` and `b`, both
    /// ways (a cable cut somewhere in the provider's network).
    pub fn cut(&self, a: &str, b: &str) {
        for (from, to) in [(a, b), (b, a)] {
            self.wan.run_checked_nft(&format!(
                "add rule inet fabric forward ip saddr {from} ip daddr {to} drop"
            ));
        }
    }

    /// Undoes every [`Fabric::cut`].
    pub fn mend(&self) {
        self.wan.run_checked_nft("flush chain inet fabric forward");
    }

    /// Drops `percent` % of everything the router forwards, at random, on
    /// every path both ways (a lossy provider network); 0 ends it. Its own
    /// chain: [`Fabric::mend`] leaves it in place.
    pub fn lossy(&self, percent: f64) {
        let per_10k = (percent * 100.0).round().clamp(0.0, 10_000.0) as u32;
        self.wan.run_checked_nft(
            "add chain inet fabric loss { type filter hook forward priority 10; policy accept; }",
        );
        self.wan.run_checked_nft("flush chain inet fabric loss");
        if per_10k > 0 {
            self.wan.run_checked_nft(&format!(
                "add rule inet fabric loss numgen random mod 10000 < {per_10k} drop"
            ));
        }
    }

    /// Pings `to` from `site`'s host (from its address `.{src}`):
    /// Ok(output) if replies came back within `count` tries.
    pub fn ping(&self, site: &str, src: u8, to: &str, count: u32) -> Result<String, String> {
        let s = self.site(site);
        let from = s.host_addr.replace(".0.2", &format!(".0.{src}"));
        let out = s.host.run(
            "ping",
            &[
                "-n",
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-W",
                "1",
                "-I",
                &from,
                to,
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Waits (up to `timeout`) until `site`'s host can ping `to`.
    pub fn wait_ping(&self, site: &str, to: &str, timeout: Duration) -> String {
        crate::wait_until(&format!("{site} to reach {to}"), timeout, || {
            self.ping(site, 2, to, 1)
        })
    }
}

impl Netns {
    /// Runs `nft CMD` in the namespace; panics with its output on failure.
    pub fn run_checked_nft(&self, cmd: &str) {
        crate::require_program("nft", "nftables");
        let args: Vec<&str> = cmd.split_whitespace().collect();
        let out = self.run("nft", &args);
        assert!(
            out.status.success(),
            "nft {cmd} in {}: {}",
            self.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
