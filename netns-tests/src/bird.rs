//! BIRD 2 as a test peer: one instance per namespace, eBGP across a tunnel.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::netns::run_checked;
use crate::{wait_until, Netns, Proc, WorkDir};

/// One eBGP session and what BIRD advertises on it.
#[derive(Debug, Clone)]
pub struct BgpConfig {
    /// Router id (we use the local BGP address).
    pub router_id: String,
    /// Local BGP address (a /32 on the tunnel interface).
    pub local_addr: String,
    /// Local ASN.
    pub local_as: u32,
    /// The peer's BGP address.
    pub peer_addr: String,
    /// The peer's ASN.
    pub peer_as: u32,
    /// The tunnel interface the session runs over (for BFD).
    pub tunnel_if: String,
    /// Prefixes to advertise; each must be a connected route in the namespace.
    pub advertise: Vec<String>,
    /// More prefixes to announce though nothing here routes them
    /// (a default route, a supernet): static blackholes, kept out of the
    /// kernel, exported to the peer.
    pub originate: Vec<String>,
    /// BFD on the session (100 ms x 3), as REFERENCES.md measures it.
    pub bfd: bool,
    /// Keepalive time, seconds.
    pub keepalive: u16,
    /// Hold time, seconds.
    pub hold: u16,
    /// IPv6 over the same session (MP-BGP): BIRD's IPv6 address on the
    /// tunnel interface (the next hop it announces) and the connected IPv6
    /// prefixes it advertises.
    pub ipv6: Option<(String, Vec<String>)>,
}

/// A running BIRD.
#[derive(Debug)]
pub struct Bird {
    proc: Proc,
    ctl: PathBuf,
}

/// The name of the BGP protocol in the generated config.
pub const PEER: &str = "peer";

impl Bird {
    /// Writes the config into `dir` and starts BIRD in `ns`.
    pub fn start(ns: &Netns, dir: &WorkDir, name: &str, bgp: &BgpConfig) -> Bird {
        crate::require_program("bird", "bird2");
        let conf = dir.write(&format!("{name}.bird.conf"), &bird_conf(bgp));
        let ctl = dir.join(&format!("{name}.bird.ctl"));
        let pid = dir.join(&format!("{name}.bird.pid"));
        let proc = Proc::spawn(
            ns,
            &format!("bird {name}"),
            &[
                "bird",
                "-f",
                "-c",
                conf.to_str().expect("utf-8 path"),
                "-s",
                ctl.to_str().expect("utf-8 path"),
                "-P",
                pid.to_str().expect("utf-8 path"),
            ],
            &[],
            &dir.join(&format!("{name}.bird.log")),
        );
        let bird = Bird { proc, ctl };
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

    /// Ok(details) once the BGP session is Established.
    pub fn established(&self) -> Result<String, String> {
        let out = self.birdc(&format!("show protocols all {PEER}"));
        if out.contains("BGP state:          Established") {
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

fn bird_conf(b: &BgpConfig) -> String {
    let prefixes = b.advertise.join(", ");
    let statics: String = b
        .originate
        .iter()
        .map(|p| format!("    route {p} blackhole;\n"))
        .collect();
    let static_protocol = if statics.is_empty() {
        String::new()
    } else {
        format!("protocol static originated {{\n    ipv4;\n{statics}}}\n")
    };
    let (bfd_protocol, bfd_on) = if b.bfd {
        (
            format!(
                "protocol bfd {{\n    interface \"{}\" {{\n        min rx interval 100 ms;\n        min tx interval 100 ms;\n        multiplier 3;\n    }};\n}}\n",
                b.tunnel_if
            ),
            "    bfd on;\n",
        )
    } else {
        (String::new(), "")
    };
    format!(
        r#"router id {router_id};
log stderr all;

protocol device {{
    scan time 1;
}}

protocol direct {{
    ipv4;{direct6}
}}

# Only routes learned over BGP go into the kernel; connected ones are there.
protocol kernel {{
    ipv4 {{
        import none;
        export where source = RTS_BGP;
    }};
    merge paths on;
}}
{kernel6}
{bfd_protocol}{static_protocol}
protocol bgp {PEER} {{
    local {local} as {local_as};
    neighbor {peer} as {peer_as};
    keepalive time {keepalive};
    hold time {hold};
    connect delay time 1;
    connect retry time 2;
    error wait time 1, 5;
    graceful restart off;
{bfd_on}    ipv4 {{
        import all;
        export where (source = RTS_DEVICE && net ~ [ {prefixes} ]) || source = RTS_STATIC;
    }};{channel6}
}}
"#,
        router_id = b.router_id,
        direct6 = if b.ipv6.is_some() { "\n    ipv6;" } else { "" },
        kernel6 = match &b.ipv6 {
            Some(_) => "\nprotocol kernel {\n    ipv6 {\n        import none;\n        export where source = RTS_BGP;\n    };\n    merge paths on;\n}\n".to_string(),
            None => String::new(),
        },
        channel6 = match &b.ipv6 {
            Some((next_hop, advertise)) => format!(
                "\n    ipv6 {{\n        import all;\n        export where source = RTS_DEVICE && net ~ [ {} ];\n        next hop address {next_hop};\n    }};",
                advertise.join(", ")
            ),
            None => String::new(),
        },
        local = b.local_addr,
        local_as = b.local_as,
        peer = b.peer_addr,
        peer_as = b.peer_as,
        keepalive = b.keepalive,
        hold = b.hold,
    )
}
