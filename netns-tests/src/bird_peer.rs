//! BIRD 2 as a BGP peer with a config built per test: several sessions,
//! static prefixes to announce, passive or active. (`bird.rs` keeps the
//! fixed single-session config the tunnel labs use.)

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::netns::run_checked;
use crate::{wait_until, Netns, Proc, WorkDir};

/// One BGP session of a BIRD peer.
#[derive(Debug, Clone)]
pub struct BirdSession {
    /// Protocol name (what `birdc show protocols` calls it).
    pub name: String,
    /// BIRD's address on the session.
    pub local_addr: String,
    /// The neighbor's address.
    pub peer_addr: String,
    /// The neighbor's ASN.
    pub peer_as: u32,
    /// Wait for the neighbor to connect.
    pub passive: bool,
}

impl BirdSession {
    /// An active session named `name`.
    pub fn new(name: &str, local_addr: &str, peer_addr: &str, peer_as: u32) -> BirdSession {
        BirdSession {
            name: name.to_string(),
            local_addr: local_addr.to_string(),
            peer_addr: peer_addr.to_string(),
            peer_as,
            passive: false,
        }
    }
}

/// A BIRD configuration: router id, ASN, sessions, and the prefixes it
/// originates (static blackhole routes exported to every session).
#[derive(Debug, Clone)]
pub struct BirdPeerConfig {
    /// Router id.
    pub router_id: String,
    /// Local ASN.
    pub local_as: u32,
    /// Sessions.
    pub sessions: Vec<BirdSession>,
    /// Prefixes to originate.
    pub originate: Vec<String>,
    /// Also pass BGP-learned routes on to the other sessions.
    pub transit: bool,
}

impl BirdPeerConfig {
    /// The config file text.
    pub fn render(&self) -> String {
        let mut out = format!(
            "router id {};\nlog stderr all;\n\nprotocol device {{\n    scan time 1;\n}}\n\n",
            self.router_id
        );
        out.push_str("protocol static originated {\n    ipv4;\n");
        for p in &self.originate {
            out.push_str(&format!("    route {p} blackhole;\n"));
        }
        out.push_str("}\n");
        let export = if self.transit {
            "where source = RTS_STATIC || source = RTS_BGP"
        } else {
            "where source = RTS_STATIC"
        };
        for s in &self.sessions {
            out.push_str(&format!(
                r#"
protocol bgp {name} {{
    local {local} as {local_as};
    neighbor {peer} as {peer_as};
{passive}    hold time 9;
    keepalive time 3;
    connect delay time 1;
    connect retry time 2;
    error wait time 1, 5;
    graceful restart off;
    ipv4 {{
        import all;
        export {export};
    }};
}}
"#,
                name = s.name,
                local = s.local_addr,
                local_as = self.local_as,
                peer = s.peer_addr,
                peer_as = s.peer_as,
                passive = if s.passive { "    passive on;\n" } else { "" },
            ));
        }
        out
    }
}

/// A running BIRD with a generated config.
#[derive(Debug)]
pub struct BirdPeer {
    proc: Proc,
    ctl: PathBuf,
}

impl BirdPeer {
    /// Writes the config into `dir` and starts BIRD in `ns`.
    pub fn start(ns: &Netns, dir: &WorkDir, name: &str, config: &BirdPeerConfig) -> BirdPeer {
        crate::require_program("bird", "bird2");
        let conf = dir.write(&format!("{name}.bird.conf"), &config.render());
        let ctl = dir.join(&format!("{name}.bird.ctl"));
        let pid = dir.join(&format!("{name}.bird.pid"));
        let path = |p: &PathBuf| p.to_str().expect("utf-8 path").to_string();
        let proc = Proc::spawn(
            ns,
            &format!("bird {name}"),
            &[
                "bird",
                "-f",
                "-c",
                &path(&conf),
                "-s",
                &path(&ctl),
                "-P",
                &path(&pid),
            ],
            &[],
            &dir.join(&format!("{name}.bird.log")),
        );
        let bird = BirdPeer { proc, ctl };
        wait_until("BIRD's control socket", Duration::from_secs(10), || {
            if bird.ctl.exists() {
                Ok(())
            } else {
                Err(bird.proc.log())
            }
        });
        bird
    }

    /// Runs a `birdc` command; panics unless birdc succeeds.
    pub fn birdc(&self, command: &str) -> String {
        run_checked(
            Command::new("birdc")
                .args(["-s", self.ctl.to_str().expect("utf-8 path")])
                .args(command.split_whitespace()),
        )
    }

    /// Ok(details) once session `name` is Established.
    pub fn established(&self, name: &str) -> Result<String, String> {
        let out = self.birdc(&format!("show protocols all {name}"));
        if out.contains("BGP state:          Established") {
            Ok(out)
        } else {
            Err(out)
        }
    }

    /// `show route all for <prefix>`: Ok when BIRD has a route for exactly
    /// `prefix`.
    pub fn route(&self, prefix: &str) -> Result<String, String> {
        // birdc fails with "Network not found" when nothing covers it.
        let out = Command::new("birdc")
            .args(["-s", self.ctl.to_str().expect("utf-8 path")])
            .args(["show", "route", "all", "for", prefix])
            .output()
            .expect("run birdc");
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.lines().any(|l| l.starts_with(prefix)) {
            Ok(out)
        } else {
            Err(out)
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }
}
