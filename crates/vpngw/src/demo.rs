//! `vpngw demo`: two sites in network namespaces, each a real vpngw
//! process with a LAN behind it, joined by two active-active tunnels with
//! eBGP across each; then one tunnel fails under traffic.
//!
//! ```text
//!  [host-a] ---- [site-a: vpngw] 192.0.2.1 ==== tunnel 1 (169.254.21.1 <-> .2) ====.
//!  10.1.0.2-6    10.1.0.1  AS 65515                                                 [wan] -- 198.51.100.1 [site-b: vpngw] 10.2.0.1 ---- [host-b]
//!                          192.0.2.2 ==== tunnel 2 (169.254.22.1 <-> .2) ====='                  AS 65010                     10.2.0.2
//! ```
//!
//! Site A plays an Azure-style active-active gateway (two public
//! addresses, APIPA BGP addresses); site B the on-premises device (one
//! public address, a tunnel to each of A's). Each side learns the other's
//! LAN over both sessions and installs it as one ECMP route.
//!
//! The failure: site B's operator takes tunnel 2 out of its configuration
//! and reloads. Site B deletes the IKE SA (site A hears the DELETE and
//! takes the tunnel down at once) and its BGP session; both sides' ECMP
//! routes shrink to tunnel 1 and the flows that used tunnel 2 move. The
//! restore puts the connection back with another reload.
//!
//! Needs root. Everything it creates is removed at the end, also on error,
//! unless `--keep` asks to leave it running.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vpngw_netns_tests::netns::unique_id;
use vpngw_netns_tests::{veth, wait_until, Netns, Proc, WorkDir};

/// The demo's pre-shared key (the demo is no place for a real one).
pub const PSK: &str = "demo-only-pre-shared-key-0123456789";
const SETUP: Duration = Duration::from_secs(40);

/// One tunnel as one side configures it.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    /// Connection name.
    pub name: &'static str,
    /// Our outer address.
    pub local: &'static str,
    /// The peer's outer address.
    pub remote: &'static str,
    /// Our tunnel (BGP) address.
    pub tunnel: &'static str,
    /// The peer's tunnel address.
    pub tunnel_peer: &'static str,
    /// The peer's ASN.
    pub peer_asn: u32,
    /// We start IKE.
    pub initiate: bool,
    /// More `key = value` lines for the connection (tests change settings
    /// with it).
    pub extra: &'static str,
}

/// Site A's two connections (to site B over tunnel 1 and tunnel 2).
pub const SITE_A_CONNS: [Conn; 2] = [
    Conn {
        name: "onprem-t1",
        local: "192.0.2.1",
        remote: "198.51.100.1",
        tunnel: "169.254.21.1",
        tunnel_peer: "169.254.21.2",
        peer_asn: 65010,
        initiate: true,
        extra: "",
    },
    Conn {
        name: "onprem-t2",
        local: "192.0.2.2",
        remote: "198.51.100.1",
        tunnel: "169.254.22.1",
        tunnel_peer: "169.254.22.2",
        peer_asn: 65010,
        initiate: true,
        extra: "",
    },
];

/// Site B's two connections.
pub const SITE_B_CONNS: [Conn; 2] = [
    Conn {
        name: "cloud-t1",
        local: "198.51.100.1",
        remote: "192.0.2.1",
        tunnel: "169.254.21.2",
        tunnel_peer: "169.254.21.1",
        peer_asn: 65515,
        initiate: false,
        extra: "",
    },
    Conn {
        name: "cloud-t2",
        local: "198.51.100.1",
        remote: "192.0.2.2",
        tunnel: "169.254.22.2",
        tunnel_peer: "169.254.22.1",
        peer_asn: 65515,
        initiate: false,
        extra: "",
    },
];

/// What one site's config says.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// The gateway's ASN.
    pub asn: u32,
    /// Its own prefixes.
    pub local_prefixes: Vec<&'static str>,
    /// More `[gateway]` lines.
    pub gateway_extra: &'static str,
    /// Its connections.
    pub conns: Vec<Conn>,
}

impl SiteConfig {
    /// Site A: AS 65515, 10.1.0.0/24, Prometheus on 127.0.0.1:9477 (in its
    /// namespace), [`SITE_A_CONNS`].
    pub fn a() -> SiteConfig {
        SiteConfig {
            asn: 65515,
            local_prefixes: vec!["10.1.0.0/24"],
            gateway_extra: "metrics_listen = \"127.0.0.1:9477\"\n",
            conns: SITE_A_CONNS.to_vec(),
        }
    }

    /// Site B: AS 65010, 10.2.0.0/24, [`SITE_B_CONNS`].
    pub fn b() -> SiteConfig {
        SiteConfig {
            asn: 65010,
            local_prefixes: vec!["10.2.0.0/24"],
            gateway_extra: "",
            conns: SITE_B_CONNS.to_vec(),
        }
    }
}

/// Writes a site's config (`file` under `dir`) and returns its path.
fn write_config(
    dir: &WorkDir,
    file: &str,
    socket: &Path,
    site: &SiteConfig,
) -> std::io::Result<String> {
    let psk = dir.join("demo.psk");
    std::fs::write(&psk, PSK)?;
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600))?;
    let prefixes: Vec<String> = site
        .local_prefixes
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect();
    let mut text = format!(
        "[gateway]\nasn = {}\nlocal_prefixes = [{}]\ncontrol_socket = \"{}\"\n{}",
        site.asn,
        prefixes.join(", "),
        socket.display(),
        site.gateway_extra
    );
    for c in &site.conns {
        text.push_str(&format!(
            "\n[[connection]]\nname = \"{}\"\nlocal_address = \"{}\"\nremote_address = \"{}\"\n\
             psk_file = \"{}\"\ninitiate = {}\ntun_name = \"vti-{}\"\ntunnel_address = \"{}\"\n\
             tunnel_peer = \"{}\"\n{}\n[connection.bgp]\npeer_asn = {}\nkeepalive = 3\nhold = 9\n",
            c.name,
            c.local,
            c.remote,
            psk.display(),
            c.initiate,
            c.name,
            c.tunnel,
            c.tunnel_peer,
            c.extra,
            c.peer_asn,
        ));
    }
    let path = dir.write(file, &text);
    Ok(path.display().to_string())
}

fn step(n: u32, title: &str) {
    println!("\n=== {n}. {title}");
}

fn show(ns: &Netns, what: &str, args: &str) {
    println!("$ {what}   [{}]", ns.name());
    match ns.try_ip(args) {
        Ok(out) => print!("{out}"),
        Err(e) => print!("{e}"),
    }
}

/// `ip route show PREFIX` and the nexthop objects behind it: with
/// vpngw's routes the route names only its group (`nhid`), the group its
/// members, each member its tunnel device.
fn show_route(ns: &Netns, prefix: &str) {
    show(
        ns,
        &format!("ip route show {prefix}"),
        &format!("route show {prefix}"),
    );
    show(
        ns,
        "ip nexthop show protocol 200",
        "nexthop show protocol 200",
    );
}

/// Runs `vpngw ARGS --socket SOCKET` and prints what it says.
fn cli(vpngw: &str, site: &str, socket: &Path, args: &[&str]) {
    println!("$ vpngw {}   [{site}]", args.join(" "));
    let out = std::process::Command::new(vpngw)
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output();
    match out {
        Ok(o) => {
            print!("{}", String::from_utf8_lossy(&o.stdout));
            print!("{}", String::from_utf8_lossy(&o.stderr));
        }
        Err(e) => println!("cannot run vpngw: {e}"),
    }
}

/// Asks the daemon at `socket` for a report.
pub fn report<T: serde::de::DeserializeOwned>(
    socket: &Path,
    request: crate::control::Request,
) -> Result<T, String> {
    let v = crate::control::request(socket, &request).map_err(|e| e.to_string())?;
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// Waits until `socket`'s daemon routes `prefix` through `tunnels` tunnels.
pub fn wait_route(socket: &Path, prefix: &str, tunnels: usize) -> Result<(), String> {
    let prefix: ipnet::IpNet = prefix.parse().map_err(|e| format!("{e}"))?;
    let deadline = Instant::now() + SETUP;
    loop {
        // The daemon may still be starting: its socket not there yet.
        let r: Result<crate::control::RoutesReport, String> =
            report(socket, crate::control::Request::Routes { prefix: None });
        if r.as_ref().is_ok_and(|r| {
            r.routes
                .iter()
                .any(|k| k.prefix == prefix && k.tunnels.len() == tunnels)
        }) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{prefix} not through {tunnels} tunnel(s) within {SETUP:?}: {r:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The demo's two sites, running: namespaces, daemons, configs. Dropping
/// it stops the daemons, then deletes the namespaces, then the files.
#[derive(Debug)]
pub struct Topology {
    // Field order is drop order.
    /// Site A's daemon.
    pub daemon_a: Proc,
    /// Site B's daemon.
    pub daemon_b: Proc,
    /// Host on site A's LAN (10.1.0.2-6).
    pub host_a: Netns,
    /// Site A's gateway.
    pub site_a: Netns,
    /// The underlay router.
    pub wan: Netns,
    /// Site B's gateway.
    pub site_b: Netns,
    /// Host on site B's LAN (10.2.0.2).
    pub host_b: Netns,
    /// Site A's control socket.
    pub sock_a: PathBuf,
    /// Site B's control socket.
    pub sock_b: PathBuf,
    /// Configs, sockets, logs.
    pub dir: WorkDir,
}

impl Topology {
    /// Builds the namespaces, writes both configs (from [`SITE_A_CONNS`] and
    /// [`SITE_B_CONNS`]) and starts both daemons (site B, the responder,
    /// first). Does not wait for the tunnels.
    pub fn start(vpngw: &str) -> Result<Topology, String> {
        Topology::start_with(vpngw, false)
    }

    /// [`Topology::start`]; with `detached` the daemons outlive this
    /// process (`--keep`). `VPNGW_DEMO_LOG` sets their log filter
    /// (default `info`).
    pub fn start_with(vpngw: &str, detached: bool) -> Result<Topology, String> {
        let id = unique_id();
        let dir = WorkDir::new(&id);
        let host_a = Netns::new(&id, "host-a");
        let site_a = Netns::new(&id, "site-a");
        let wan = Netns::new(&id, "wan");
        let site_b = Netns::new(&id, "site-b");
        let host_b = Netns::new(&id, "host-b");
        veth(&host_a, "eth0", &site_a, "lan0");
        for i in 2..=6 {
            host_a.ip(&format!("addr add 10.1.0.{i}/24 dev eth0"));
        }
        host_a.ip("route add default via 10.1.0.1");
        site_a.ip("addr add 10.1.0.1/24 dev lan0");
        veth(&site_a, "wan0", &wan, "to-a");
        site_a.ip("addr add 192.0.2.1/24 dev wan0");
        site_a.ip("addr add 192.0.2.2/24 dev wan0");
        site_a.ip("route add 198.51.100.0/24 via 192.0.2.254");
        wan.ip("addr add 192.0.2.254/24 dev to-a");
        veth(&site_b, "wan0", &wan, "to-b");
        site_b.ip("addr add 198.51.100.1/24 dev wan0");
        site_b.ip("route add 192.0.2.0/24 via 198.51.100.254");
        wan.ip("addr add 198.51.100.254/24 dev to-b");
        veth(&host_b, "eth0", &site_b, "lan0");
        host_b.ip("addr add 10.2.0.2/24 dev eth0");
        host_b.ip("route add default via 10.2.0.1");
        site_b.ip("addr add 10.2.0.1/24 dev lan0");
        // Hash flows on addresses and ports, as deploy/sysctl.d recommends.
        site_a.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
        site_b.sysctl("net.ipv4.fib_multipath_hash_policy", "1");

        let sock_a = dir.join("site-a.sock");
        let sock_b = dir.join("site-b.sock");
        let conf_a = write_config(&dir, "site-a.toml", &sock_a, &SiteConfig::a())
            .map_err(|e| e.to_string())?;
        let conf_b = write_config(&dir, "site-b.toml", &sock_b, &SiteConfig::b())
            .map_err(|e| e.to_string())?;
        let filter = std::env::var("VPNGW_DEMO_LOG").unwrap_or_else(|_| "info".into());
        let env = [("RUST_LOG", filter.as_str())];
        let daemon_b = Proc::spawn_with(
            &site_b,
            "vpngw site-b",
            &[vpngw, "run", "--config", &conf_b],
            &env,
            &dir.join("site-b.log"),
            !detached,
        );
        wait_until("site-b to listen", SETUP, || {
            if sock_b.exists() {
                Ok(())
            } else {
                Err(daemon_b.log())
            }
        });
        let daemon_a = Proc::spawn_with(
            &site_a,
            "vpngw site-a",
            &[vpngw, "run", "--config", &conf_a],
            &env,
            &dir.join("site-a.log"),
            !detached,
        );
        Ok(Topology {
            daemon_a,
            daemon_b,
            host_a,
            site_a,
            wan,
            site_b,
            host_b,
            sock_a,
            sock_b,
            dir,
        })
    }

    /// Rewrites site A's config (reload to apply).
    pub fn write_site_a(&self, site: &SiteConfig) -> Result<String, String> {
        write_config(&self.dir, "site-a.toml", &self.sock_a, site).map_err(|e| e.to_string())
    }

    /// Rewrites site B's config (reload to apply).
    pub fn write_site_b(&self, site: &SiteConfig) -> Result<String, String> {
        write_config(&self.dir, "site-b.toml", &self.sock_b, site).map_err(|e| e.to_string())
    }

    /// Waits until both sites route the other's LAN through `tunnels`
    /// tunnels.
    pub fn wait_ecmp(&self, tunnels: usize) -> Result<(), String> {
        wait_route(&self.sock_a, "10.2.0.0/24", tunnels)?;
        wait_route(&self.sock_b, "10.1.0.0/24", tunnels)
    }
}

/// Runs the demo; `vpngw` is the path of this binary. With `keep`, the
/// topology stays up for exploration.
pub fn run(vpngw: &Path, keep: bool) -> Result<(), String> {
    vpngw_netns_tests::require_root();
    let vpngw = vpngw.to_str().ok_or("binary path is not UTF-8")?;
    step(
        1,
        "building two sites and an underlay in network namespaces",
    );
    println!("host-a 10.1.0.2-6 -- site-a 192.0.2.1 + 192.0.2.2 (AS 65515) -- wan -- 198.51.100.1 site-b (AS 65010) -- host-b 10.2.0.2");
    step(2, "starting vpngw on both sites from generated configs");
    let t = Topology::start_with(vpngw, keep)?;
    let result = demo(vpngw, &t, keep);
    if result.is_err() {
        for log in ["site-a.log", "site-b.log"] {
            let text = std::fs::read_to_string(t.dir.join(log)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- last lines of {log}:");
            for l in lines.iter().skip(lines.len().saturating_sub(15)) {
                eprintln!("{l}");
            }
        }
    }
    if keep && result.is_ok() {
        // Everything stays: no drop runs.
        std::mem::forget(t);
        return Ok(());
    }
    step(10, "tearing down");
    drop(t);
    println!("stopped both daemons; namespaces and files removed");
    result
}

fn demo(vpngw: &str, t: &Topology, keep: bool) -> Result<(), String> {
    let (site_a, site_b, host_a) = (&t.site_a, &t.site_b, &t.host_a);
    let (sock_a, sock_b) = (&t.sock_a, &t.sock_b);
    let da = &t.daemon_a;
    let conf_b = t.dir.join("site-b.toml");
    println!(
        "site-b's config ({}):\n    {}",
        conf_b.display(),
        std::fs::read_to_string(&conf_b)
            .unwrap_or_default()
            .trim_end()
            .replace('\n', "\n    ")
    );
    step(3, "two tunnels up, eBGP established across each");
    let up = Instant::now();
    wait_route(sock_a, "10.2.0.0/24", 2)?;
    wait_route(sock_b, "10.1.0.0/24", 2)?;
    println!(
        "(both sites route the other's LAN over both tunnels {:.1} s after site-a started)\n",
        up.elapsed().as_secs_f64()
    );
    cli(vpngw, "site-a", sock_a, &["status"]);
    println!();
    cli(vpngw, "site-a", sock_a, &["sas"]);
    println!();
    cli(vpngw, "site-a", sock_a, &["bgp"]);
    println!();
    cli(vpngw, "site-a", sock_a, &["bgp", "onprem-t1"]);

    step(
        4,
        "the kernel's routes: one ECMP route through a nexthop group, on both sites",
    );
    cli(vpngw, "site-a", sock_a, &["routes"]);
    cli(vpngw, "site-a", sock_a, &["routes", "10.2.0.0/24"]);
    show_route(site_a, "10.2.0.0/24");
    show_route(site_b, "10.1.0.0/24");

    step(5, "LAN to LAN: host-a pings host-b through the tunnels");
    let out = host_a.run("ping", &["-n", "-c", "3", "-i", "0.2", "10.2.0.2"]);
    print!("{}", String::from_utf8_lossy(&out.stdout));

    step(
        6,
        "traffic: five flows from host-a to host-b, a ping every 10 ms each",
    );
    let via = |src: &str| {
        site_a
            .try_ip(&format!("route get 10.2.0.2 from {src} iif lan0"))
            .ok()
            .and_then(|r| {
                r.split_whitespace()
                    .skip_while(|w| *w != "dev")
                    .nth(1)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "?".into())
    };
    let flows: Vec<(String, String)> = (2..=6)
        .map(|i| {
            let src = format!("10.1.0.{i}");
            let v = via(&src);
            (src, v)
        })
        .collect();
    for (src, v) in &flows {
        println!("flow from {src}: via {v}");
    }
    const PINGS: u32 = 400;
    let pingers: Vec<(String, std::process::Child)> = flows
        .iter()
        .map(|(src, _)| {
            host_a
                .command("ping")
                .args([
                    "-n",
                    "-q",
                    "-i",
                    "0.01",
                    "-c",
                    &PINGS.to_string(),
                    "-I",
                    src,
                    "10.2.0.2",
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .map(|c| (src.clone(), c))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    std::thread::sleep(Duration::from_secs(1));

    step(
        7,
        "failure: site-b takes tunnel 2 out of its config and reloads",
    );
    t.write_site_b(&SiteConfig {
        conns: SITE_B_CONNS[..1].to_vec(),
        ..SiteConfig::b()
    })?;
    let cut = Instant::now();
    cli(vpngw, "site-b", sock_b, &["reload"]);
    let down = wait_until("site-a to take tunnel 2 down", SETUP, || {
        let log = da.log();
        if log
            .lines()
            .any(|l| l.contains("tunnel down") && l.contains("onprem-t2"))
        {
            Ok(cut.elapsed())
        } else {
            Err(log)
        }
    });
    wait_route(sock_a, "10.2.0.0/24", 1)?;
    println!("site-a: tunnel onprem-t2 down {:.0} ms after site-b's reload began; 10.2.0.0/24 now only through onprem-t1", down.as_secs_f64() * 1000.0);
    cli(vpngw, "site-a", sock_a, &["routes", "10.2.0.0/24"]);
    show_route(site_a, "10.2.0.0/24");
    show_route(site_b, "10.1.0.0/24");

    step(
        8,
        &format!("what the flows saw ({PINGS} pings each, 10 ms apart)"),
    );
    for (src, child) in pingers {
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let summary = text
            .lines()
            .find(|l| l.contains("transmitted"))
            .unwrap_or("no summary");
        let was = flows
            .iter()
            .find(|(s, _)| *s == src)
            .map_or("?", |(_, v)| v.as_str());
        let lost = summary.split(", ").find_map(|p| {
            p.strip_suffix(" received")
                .and_then(|r| r.parse::<u32>().ok())
                .map(|received| PINGS.saturating_sub(received))
        });
        match lost {
            Some(lost) => println!(
                "flow from {src} (was via {was}, now via {}): {lost} lost = about {} ms without service",
                via(&src),
                lost * 10
            ),
            None => println!("flow from {src} (was via {was}): {summary}"),
        }
    }

    step(9, "restore: tunnel 2 back in site-b's config, reload");
    t.write_site_b(&SiteConfig::b())?;
    let back = Instant::now();
    cli(vpngw, "site-b", sock_b, &["reload"]);
    wait_route(sock_a, "10.2.0.0/24", 2)?;
    wait_route(sock_b, "10.1.0.0/24", 2)?;
    println!(
        "ECMP over both tunnels again {:.1} s after the reload (IKE, then BGP)",
        back.elapsed().as_secs_f64()
    );
    show_route(site_a, "10.2.0.0/24");

    if keep {
        step(10, "left running (--keep)");
        println!("look around:");
        println!("  sudo vpngw status --socket {}", sock_a.display());
        println!("  sudo vpngw bgp onprem-t1 --socket {}", sock_a.display());
        println!(
            "  sudo vpngw routes 10.2.0.0/24 --socket {}",
            sock_a.display()
        );
        println!("  sudo vpngw sas --json --socket {}", sock_b.display());
        println!("  sudo ip netns exec {} ping 10.2.0.2", host_a.name());
        println!("  sudo ip netns exec {} ip route", site_a.name());
        println!(
            "  sudo ip netns exec {} curl -s http://127.0.0.1:9477/metrics",
            site_a.name()
        );
        println!(
            "  logs: {} and {}",
            t.dir.join("site-a.log").display(),
            t.dir.join("site-b.log").display()
        );
        println!(
            "  edit {} and run: sudo vpngw reload --socket {}",
            conf_b.display(),
            sock_b.display()
        );
        println!("clean up:");
        println!("  sudo kill {} {}", da.pid(), t.daemon_b.pid());
        println!(
            "  for ns in {}; do sudo ip netns del $ns; done; sudo rm -r {}",
            [host_a, site_a, &t.wan, site_b, &t.host_b]
                .map(|n| n.name().to_string())
                .join(" "),
            t.dir.path().display()
        );
        println!(
            "(a later vpngw demo or test run also removes namespaces whose creator has exited)"
        );
    }
    Ok(())
}
