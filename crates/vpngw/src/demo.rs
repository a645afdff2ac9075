//! `vpngw demo`: a topology in network namespaces built from real vpngw
//! processes, shown step by step, then a tunnel failure under traffic.
//!
//! ```text
//!                                     +-- 203.0.113.1 [onprem-1: vpngw] 10.2.0.1 --+
//!  [host-a] -- [cloud: vpngw] -- [wan]                                              [lan-b bridge] -- [host-b]
//!  10.1.0.2    10.1.0.1          router +-- 198.51.100.1 [onprem-2: vpngw] 10.2.0.3 -+                  10.2.0.2
//!              192.0.2.1
//!  cloud has two active-active tunnels (169.254.21.1 -> .2 and 169.254.22.1 -> .2),
//!  both carrying 10.2.0.0/24: one ECMP route through a kernel nexthop group.
//! ```
//!
//! The failure: onprem-1's gateway is stopped. It deletes its IKE SA on the
//! way out; the cloud gateway takes that tunnel down at once, the nexthop
//! group shrinks to the remaining tunnel in one kernel operation, and the
//! flows that used onprem-1 move to onprem-2. (Site B's hosts return
//! through onprem-2, their default gateway: with static routes there is no
//! routing protocol on site B to move the return path. BGP across the
//! tunnels, a later issue, removes that limit.)
//!
//! Needs root. Everything it creates is removed at the end, also on error.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use vpngw_netns_tests::netns::unique_id;
use vpngw_netns_tests::{veth, wait_until, Netns, Proc, WorkDir};

const PSK: &str = "demo-only-pre-shared-key-0123456789";
const SETUP: Duration = Duration::from_secs(30);

/// One gateway's config file.
struct Conn<'a> {
    name: &'a str,
    remote: &'a str,
    tunnel: &'a str,
    tunnel_peer: &'a str,
    routes: &'a str,
    initiate: bool,
}

fn write_config(
    dir: &WorkDir,
    gw: &str,
    local: &str,
    lan: &str,
    conns: &[Conn<'_>],
) -> std::io::Result<String> {
    let psk = dir.join("demo.psk");
    std::fs::write(&psk, PSK)?;
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600))?;
    let mut text = format!("[gateway]\nlocal_prefixes = [\"{lan}\"]\n");
    for c in conns {
        text.push_str(&format!(
            "\n[[connection]]\nname = \"{}\"\nlocal_address = \"{local}\"\nremote_address = \"{}\"\n\
             psk_file = \"{}\"\ninitiate = {}\ntunnel_address = \"{}\"\ntunnel_peer = \"{}\"\n\
             static_routes = [\"{}\"]\n",
            c.name,
            c.remote,
            psk.display(),
            c.initiate,
            c.tunnel,
            c.tunnel_peer,
            c.routes
        ));
    }
    let path = dir.write(&format!("{gw}.toml"), &text);
    Ok(path.display().to_string())
}

fn step(n: u32, title: &str) {
    println!("\n=== {n}. {title}");
}

fn show(ns: &Netns, what: &str, args: &str) {
    println!("$ {what}");
    match ns.try_ip(args) {
        Ok(out) => print!("{out}"),
        Err(e) => print!("{e}"),
    }
}

/// Runs the demo; `vpngw` is the path of this binary.
pub fn run(vpngw: &Path) -> Result<(), String> {
    vpngw_netns_tests::require_root();
    let vpngw = vpngw.to_str().ok_or("binary path is not UTF-8")?;
    let id = unique_id();
    let dir = WorkDir::new(&id);

    step(1, "building the topology in network namespaces");
    let host_a = Netns::new(&id, "host-a");
    let cloud = Netns::new(&id, "cloud");
    let wan = Netns::new(&id, "wan");
    let onprem1 = Netns::new(&id, "onprem-1");
    let onprem2 = Netns::new(&id, "onprem-2");
    let lan_b = Netns::new(&id, "lan-b");
    let host_b = Netns::new(&id, "host-b");

    veth(&host_a, "eth0", &cloud, "lan0");
    host_a.ip("addr add 10.1.0.2/24 dev eth0");
    for extra in 3..=6 {
        host_a.ip(&format!("addr add 10.1.0.{extra}/24 dev eth0"));
    }
    host_a.ip("route add default via 10.1.0.1");
    cloud.ip("addr add 10.1.0.1/24 dev lan0");

    veth(&cloud, "wan0", &wan, "to-cloud");
    cloud.ip("addr add 192.0.2.1/24 dev wan0");
    wan.ip("addr add 192.0.2.254/24 dev to-cloud");
    for (gw, wan_if, outer, router) in [
        (&onprem1, "to-onprem1", "203.0.113.1", "203.0.113.254"),
        (&onprem2, "to-onprem2", "198.51.100.1", "198.51.100.254"),
    ] {
        veth(gw, "wan0", &wan, wan_if);
        gw.ip(&format!("addr add {outer}/24 dev wan0"));
        wan.ip(&format!("addr add {router}/24 dev {wan_if}"));
        gw.ip(&format!("route add 192.0.2.1/32 via {router}"));
        cloud.ip(&format!("route add {outer}/32 via 192.0.2.254"));
    }
    lan_b.ip("link add br0 type bridge");
    lan_b.ip("link set br0 up");
    for (gw, port, addr) in [(&onprem1, "p1", "10.2.0.1"), (&onprem2, "p2", "10.2.0.3")] {
        veth(gw, "lan0", &lan_b, port);
        lan_b.ip(&format!("link set {port} master br0"));
        gw.ip(&format!("addr add {addr}/24 dev lan0"));
    }
    veth(&host_b, "eth0", &lan_b, "p3");
    lan_b.ip("link set p3 master br0");
    host_b.ip("addr add 10.2.0.2/24 dev eth0");
    host_b.ip("route add default via 10.2.0.3");
    // Hash flows on addresses and ports, as deploy/sysctl.d recommends.
    cloud.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
    println!("host-a 10.1.0.2 -- cloud 192.0.2.1 -- wan -- onprem-1 203.0.113.1 / onprem-2 198.51.100.1 -- host-b 10.2.0.2");

    step(
        2,
        "starting three vpngw daemons (onprem-1 and onprem-2 respond, cloud initiates)",
    );
    let conf_cloud = write_config(
        &dir,
        "cloud",
        "192.0.2.1",
        "10.1.0.0/24",
        &[
            Conn {
                name: "onprem-1",
                remote: "203.0.113.1",
                tunnel: "169.254.21.1",
                tunnel_peer: "169.254.21.2",
                routes: "10.2.0.0/24",
                initiate: true,
            },
            Conn {
                name: "onprem-2",
                remote: "198.51.100.1",
                tunnel: "169.254.22.1",
                tunnel_peer: "169.254.22.2",
                routes: "10.2.0.0/24",
                initiate: true,
            },
        ],
    )
    .map_err(|e| e.to_string())?;
    let conf_1 = write_config(
        &dir,
        "onprem-1",
        "203.0.113.1",
        "10.2.0.0/24",
        &[Conn {
            name: "cloud",
            remote: "192.0.2.1",
            tunnel: "169.254.21.2",
            tunnel_peer: "169.254.21.1",
            routes: "10.1.0.0/24",
            initiate: false,
        }],
    )
    .map_err(|e| e.to_string())?;
    let conf_2 = write_config(
        &dir,
        "onprem-2",
        "198.51.100.1",
        "10.2.0.0/24",
        &[Conn {
            name: "cloud",
            remote: "192.0.2.1",
            tunnel: "169.254.22.2",
            tunnel_peer: "169.254.22.1",
            routes: "10.1.0.0/24",
            initiate: false,
        }],
    )
    .map_err(|e| e.to_string())?;
    let env = [("RUST_LOG", "info")];
    let mut d1 = Proc::spawn(
        &onprem1,
        "vpngw onprem-1",
        &[vpngw, "run", "--config", &conf_1],
        &env,
        &dir.join("onprem-1.log"),
    );
    let d2 = Proc::spawn(
        &onprem2,
        "vpngw onprem-2",
        &[vpngw, "run", "--config", &conf_2],
        &env,
        &dir.join("onprem-2.log"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let dc = Proc::spawn(
        &cloud,
        "vpngw cloud",
        &[vpngw, "run", "--config", &conf_cloud],
        &env,
        &dir.join("cloud.log"),
    );

    step(
        3,
        "IKEv2 SAs and child SAs up, both tunnels carrying 10.2.0.0/24 (cloud's log)",
    );
    let log = wait_until("both tunnels up on cloud", SETUP, || {
        let log = dc.log();
        if log.matches("tunnel up").count() >= 2 {
            Ok(log)
        } else {
            Err(log)
        }
    });
    for line in log.lines().filter(|l| {
        l.contains("IKE SA established")
            || l.contains("child SA installed")
            || l.contains("tunnel up")
    }) {
        println!(
            "{}",
            line.split_once("  INFO ").map_or(line, |(_, rest)| rest)
        );
    }

    step(
        4,
        "the kernel's routes on cloud: one ECMP route through a nexthop group",
    );
    wait_until("the ECMP group with both tunnels", SETUP, || {
        let groups = cloud.try_ip("nexthop show").unwrap_or_default();
        if groups
            .lines()
            .any(|l| l.contains("group") && l.contains('/'))
        {
            Ok(())
        } else {
            Err(groups)
        }
    });
    show(
        &cloud,
        "ip route show 10.2.0.0/24",
        "route show 10.2.0.0/24",
    );
    show(&cloud, "ip nexthop show", "nexthop show");

    step(5, "LAN to LAN: host-a pings host-b through the tunnels");
    let out = host_a.run("ping", &["-n", "-c", "3", "-i", "0.2", "10.2.0.2"]);
    print!("{}", String::from_utf8_lossy(&out.stdout));

    step(
        6,
        "traffic: five flows from host-a to host-b, one ping every 10 ms each",
    );
    let flows: Vec<(String, String)> = (2..=6)
        .map(|i| {
            let src = format!("10.1.0.{i}");
            let via = cloud
                .try_ip(&format!("route get 10.2.0.2 from {src} iif lan0"))
                .ok()
                .and_then(|r| {
                    r.split_whitespace()
                        .skip_while(|w| *w != "dev")
                        .nth(1)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "?".into());
            (src, via)
        })
        .collect();
    for (src, via) in &flows {
        println!("flow from {src}: via {via}");
    }
    let pingers: Vec<(String, std::process::Child)> = flows
        .iter()
        .map(|(src, _)| {
            let child = host_a
                .command("ping")
                .args(["-n", "-q", "-i", "0.01", "-c", "500", "-I", src, "10.2.0.2"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string());
            child.map(|c| (src.clone(), c))
        })
        .collect::<Result<_, _>>()?;

    std::thread::sleep(Duration::from_secs(2));
    step(
        7,
        "failure: onprem-1's gateway goes away (it deletes its SAs on the way out)",
    );
    let cut = Instant::now();
    d1.terminate();
    let withdrawn = wait_until("cloud to take the tunnel down", SETUP, || {
        let log = dc.log();
        if log
            .lines()
            .any(|l| l.contains("tunnel down") && l.contains("onprem-1"))
        {
            Ok(cut.elapsed())
        } else {
            Err(log)
        }
    });
    println!("cloud took tunnel onprem-1 down {withdrawn:?} after onprem-1 was told to stop");
    d1.stop();
    show(&cloud, "ip nexthop show", "nexthop show");
    show(
        &cloud,
        "ip route show 10.2.0.0/24",
        "route show 10.2.0.0/24",
    );

    step(8, "what the flows saw (each sends 500 pings, 10 ms apart)");
    for (src, child) in pingers {
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let summary = text
            .lines()
            .find(|l| l.contains("transmitted"))
            .unwrap_or("no summary");
        let via = flows
            .iter()
            .find(|(s, _)| *s == src)
            .map_or("?", |(_, v)| v.as_str());
        let lost = summary
            .split(", ")
            .find_map(|p| {
                p.strip_suffix(" received")
                    .and_then(|r| r.parse::<u32>().ok())
            })
            .map(|received| 500u32.saturating_sub(received));
        match lost {
            Some(lost) => println!("flow from {src} (was via {via}): {summary}: {lost} lost = about {} ms without service", lost * 10),
            None => println!("flow from {src} (was via {via}): {summary}"),
        }
    }

    step(9, "tearing down");
    drop(dc);
    drop(d2);
    Ok(())
}
