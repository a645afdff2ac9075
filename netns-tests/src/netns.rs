//! Network namespaces that delete themselves, and veth links between them.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// Every namespace the harness creates starts with this prefix.
pub const PREFIX: &str = "vgt-";

static SEQ: AtomicU32 = AtomicU32::new(0);
static CLEAN_STALE: Once = Once::new();

/// A unique id for one test's namespaces and work directory:
/// `vgt-<pid>-<seq>`. Tests in one process (cargo test threads) differ by
/// `seq`; tests in different processes (nextest) by `pid`.
pub fn unique_id() -> String {
    CLEAN_STALE.call_once(|| {
        remove_stale();
    });
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}{}-{seq}", std::process::id())
}

/// A network namespace, deleted on drop.
///
/// The name is `<id>-<tag>` with `id` from [`unique_id`]. Loopback is up, and
/// forwarding and reverse-path filtering are set for a router: forwarding on,
/// rp_filter off (tunnel interfaces make strict rp_filter drop decrypted
/// traffic).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `<id>-<tag>`.
    pub fn new(id: &str, tag: &str) -> Netns {
        crate::require_root();
        let name = format!("{id}-{tag}");
        run_checked(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip("link set lo up");
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ] {
            ns.sysctl(key, value);
        }
        ns
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args` inside the namespace and returns its output,
    /// whatever its exit status.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.name))
    }

    /// Runs `program args` inside the namespace; panics unless it succeeds.
    /// Returns its standard output.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        run_checked(self.command(program).args(args))
    }

    /// `ip -n <ns> <args>` (split on whitespace); panics unless it succeeds.
    pub fn ip(&self, args: &str) -> String {
        run_checked(
            Command::new("ip")
                .args(["-n", &self.name])
                .args(args.split_whitespace()),
        )
    }

    /// `ip -n <ns> <args>`, returning standard output or standard error.
    pub fn try_ip(&self, args: &str) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args.split_whitespace())
            .output()
            .expect("run ip");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")]);
    }

    /// The IPv4 routes of the main table, one per line.
    pub fn routes(&self) -> String {
        self.ip("-4 route show table main")
    }

    /// The route for exactly `prefix` in the main table, if there is one.
    pub fn route(&self, prefix: &str) -> Option<String> {
        let out = self.ip(&format!("-4 route show table main to exact {prefix}"));
        let out = out.trim();
        (!out.is_empty()).then(|| out.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_all_inside(&self.name);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Joins `a` and `b` with a veth pair: `a_if` in `a`, `b_if` in `b`, both up.
/// The pair is created inside `a`, so its names never collide with another
/// test's in the root namespace; it disappears with either namespace.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    a.ip(&format!(
        "link add {a_if} type veth peer name {b_if} netns {}",
        b.name()
    ));
    a.ip(&format!("link set {a_if} up"));
    b.ip(&format!("link set {b_if} up"));
}

/// Runs a command; panics with its stderr unless it succeeds.
pub fn run_checked(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills (SIGKILL) every process still inside namespace `name`. Only our own
/// namespaces are passed here, so only processes our tests started are hit.
fn kill_all_inside(name: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<libc::pid_t>() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Removes what killed test runs left: namespaces named `vgt-<pid>-…` whose
/// test process `pid` is gone (with any process still inside them), and
/// their work directories. Runs once per test process before its first
/// namespace; returns the namespaces it removed.
pub fn remove_stale() -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return removed;
    };
    let list = String::from_utf8_lossy(&out.stdout);
    for name in list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        if owner_is_gone(name) {
            eprintln!("netns harness: removing stale namespace {name} from a killed run");
            kill_all_inside(name);
            let _ = Command::new("ip").args(["netns", "del", name]).status();
            removed.push(name.to_string());
        }
    }
    if let Ok(dirs) = std::fs::read_dir(crate::workdir::ROOT) {
        for dir in dirs.flatten() {
            if owner_is_gone(&dir.file_name().to_string_lossy()) {
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
    }
    removed
}

/// Whether `name` is one of ours (`vgt-<pid>-…`) and its process is gone.
fn owner_is_gone(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else {
        return false;
    };
    pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}
