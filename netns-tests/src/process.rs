//! Processes run inside a namespace, stopped by PID on drop.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Netns;

/// A process started by a test, with its stdout and stderr in a log file.
///
/// On drop it gets SIGTERM, then SIGKILL if it has not exited within two
/// seconds. If the test is failing, the tail of its log is printed. It is
/// also started with a parent-death signal, so a test process killed
/// outright does not leave it running.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `argv` inside `ns` with extra environment `env`, logging to
    /// `log`. It is killed if this thread dies (a crashed test leaves no
    /// daemon behind).
    pub fn spawn(ns: &Netns, name: &str, argv: &[&str], env: &[(&str, &str)], log: &Path) -> Proc {
        Proc::spawn_with(ns, name, argv, env, log, true)
    }

    /// Like [`Proc::spawn`]; with `die_with_parent` false the process
    /// outlives us (`vpngw demo --keep`).
    pub fn spawn_with(
        ns: &Netns,
        name: &str,
        argv: &[&str],
        env: &[(&str, &str)],
        log: &Path,
        die_with_parent: bool,
    ) -> Proc {
        let (program, args) = argv.split_first().expect("argv has a program");
        let out = File::create(log).expect("create process log");
        let err = out.try_clone().expect("clone log handle");
        let mut cmd: Command = ns.command(program);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if die_with_parent {
            // SAFETY: prctl is async-signal-safe and touches no memory of ours.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({argv:?}) in {}: {e}", ns.name()));
        Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// The process id (the daemon itself: `ip netns exec` and `unshare` exec
    /// into it without forking).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and returns at once (see [`stop`](Self::stop) to wait).
    pub fn terminate(&self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; pid is our child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }

    /// Sends SIGKILL (a crash: no clean shutdown) and returns at once; the
    /// kernel may take a while to tear the process down ([`stop`](Self::stop)
    /// reaps it).
    pub fn kill(&self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; pid is our child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }

    /// Stops the process: SIGTERM, then SIGKILL after two seconds.
    pub fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; pid is our child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "---- last lines of {} ({}) ----",
                self.name,
                self.log.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
