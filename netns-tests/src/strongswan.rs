//! strongSwan's charon as a test peer: one instance per namespace.
//!
//! The kernel here has no ESP xfrm, so charon runs with the kernel-libipsec
//! plugin: ESP in user space over one TUN device, `ipsec0`, always in UDP
//! 4500. Each instance gets a private `/run` (charon's pid file path is
//! compiled in), its own `strongswan.conf` (via `STRONGSWAN_CONF`) and its own
//! vici socket in the test's work directory. `plugins.kernel-netlink.fwmark`
//! makes the table-220 default route that libipsec always installs
//! unreachable, which makes the tunnel truly route-based. See
//! `shared/REFERENCES.md`, "Running the real peers here".

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::netns::run_checked;
use crate::{wait_until, Netns, Proc, WorkDir};

/// The TUN device kernel-libipsec creates in charon's namespace.
pub const TUNNEL_IF: &str = "ipsec0";

/// The charon binary in Debian's strongswan-charon package.
pub const CHARON: &str = "/usr/lib/ipsec/charon";

/// One site-to-site connection, as a swanctl.conf says it.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Our outer (underlay) address; also our IKE identity.
    pub local: String,
    /// The peer's outer address; also its IKE identity.
    pub remote: String,
    /// The pre-shared key.
    pub psk: String,
    /// IKE proposals in strongSwan notation, e.g. `aes256gcm16-prfsha256-x25519`.
    pub ike_proposals: String,
    /// ESP proposals, e.g. `aes256gcm16-x25519` (with a DH group: PFS on rekey).
    pub esp_proposals: String,
    /// Initiate at load (`start_action = start`) or only respond.
    pub initiator: bool,
    /// Traffic selectors 0.0.0.0/0 and ::/0 (else IPv4 only).
    pub dual_stack: bool,
}

/// A running charon with its connection loaded.
#[derive(Debug)]
pub struct Charon {
    proc: Proc,
    vici: String,
}

impl Charon {
    /// Writes the configs into `dir`, starts charon in `ns`, waits for its
    /// vici socket and the TUN device, and loads the connection.
    pub fn start(ns: &Netns, dir: &WorkDir, name: &str, conn: &ConnConfig) -> Charon {
        crate::require_program(CHARON, "strongswan-charon");
        crate::require_program("swanctl", "strongswan-swanctl");
        let socket: PathBuf = dir.join(&format!("{name}.vici"));
        let vici = format!("unix://{}", socket.display());
        let conf = dir.write(&format!("{name}.strongswan.conf"), &strongswan_conf(&vici));
        let conf = conf.to_str().expect("utf-8 path");
        let script = format!("mount -t tmpfs {name}-run /run && exec {CHARON}");
        let proc = Proc::spawn(
            ns,
            &format!("charon {name}"),
            &[
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ],
            &[("STRONGSWAN_CONF", conf)],
            &dir.join(&format!("{name}.charon.log")),
        );
        let charon = Charon { proc, vici };
        wait_until("charon's vici socket", Duration::from_secs(10), || {
            if socket.exists() {
                Ok(())
            } else {
                Err(charon.proc.log())
            }
        });
        wait_until("kernel-libipsec's ipsec0", Duration::from_secs(10), || {
            ns.try_ip(&format!("link show {TUNNEL_IF}")).map(drop)
        });
        let swanctl_conf = dir.write(&format!("{name}.swanctl.conf"), &swanctl_conf(conn));
        charon.swanctl(&[
            "--load-all",
            "--file",
            swanctl_conf.to_str().expect("utf-8 path"),
        ]);
        charon
    }

    /// Runs `swanctl ARGS` against this instance; panics unless it succeeds.
    pub fn swanctl(&self, args: &[&str]) -> String {
        run_checked(
            Command::new("swanctl")
                .args(args)
                .args(["--uri", &self.vici]),
        )
    }

    /// `swanctl --list-sas`.
    pub fn list_sas(&self) -> String {
        self.swanctl(&["--list-sas"])
    }

    /// Ok(list-sas) once the IKE SA is ESTABLISHED and the child INSTALLED.
    pub fn established(&self) -> Result<String, String> {
        let sas = self.list_sas();
        if sas.contains("ESTABLISHED") && sas.contains("INSTALLED") {
            Ok(sas)
        } else {
            Err(sas)
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Kills charon (SIGKILL: no DELETE, its state lost, as in a crash)
    /// and waits for it.
    pub fn kill(&mut self) {
        self.proc.kill();
        self.proc.stop();
    }
}

fn strongswan_conf(vici: &str) -> String {
    format!(
        r#"charon {{
    load = random nonce openssl aes sha1 sha2 hmac gcm kdf curve25519 gmp pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
    install_routes = no
    filelog {{
        stderr {{
            default = 1
            ike = 2
            cfg = 1
            time_format = %H:%M:%S
        }}
    }}
    syslog {{
        daemon {{
            default = -1
        }}
    }}
    plugins {{
        vici {{
            socket = {vici}
        }}
        kernel-netlink {{
            fwmark = 0x4c4142
        }}
    }}
}}
"#
    )
}

fn swanctl_conf(c: &ConnConfig) -> String {
    let start_action = if c.initiator { "start" } else { "none" };
    format!(
        r#"connections {{
    site {{
        version = 2
        local_addrs = {local}
        remote_addrs = {remote}
        proposals = {ike}
        encap = yes
        mobike = no
        keyingtries = 0
        dpd_delay = 10s
        local {{
            auth = psk
            id = {local}
        }}
        remote {{
            auth = psk
            id = {remote}
        }}
        children {{
            site {{
                local_ts = {ts}
                remote_ts = {ts}
                esp_proposals = {esp}
                start_action = {start_action}
                dpd_action = restart
            }}
        }}
    }}
}}
secrets {{
    ike-site {{
        id-local = {local}
        id-remote = {remote}
        secret = "{psk}"
    }}
}}
"#,
        local = c.local,
        remote = c.remote,
        ts = if c.dual_stack {
            "0.0.0.0/0,::/0"
        } else {
            "0.0.0.0/0"
        },
        ike = c.ike_proposals,
        esp = c.esp_proposals,
        psk = c.psk,
    )
}
