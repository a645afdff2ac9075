//! A throwaway network namespace for tests that need root: the calling
//! thread enters it (sockets and TUN devices it creates live there) and
//! leaves it, and the namespace is deleted, when the guard drops — also when
//! the test panics.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};

/// A namespace `vgt-<pid>-<tag>` the current thread is in.
pub(crate) struct NetNs {
    name: String,
    /// The thread's namespace before, to return to.
    original: Option<File>,
}

impl NetNs {
    /// Creates the namespace, enters it with the calling thread and brings
    /// its loopback up.
    pub(crate) fn enter(tag: &str) -> NetNs {
        let name = format!("vgt-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip");
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        // From here on the guard deletes the namespace, whatever happens.
        let mut ns = NetNs {
            name,
            original: None,
        };
        let original = File::open("/proc/thread-self/ns/net").expect("own netns");
        let target = File::open(format!("/run/netns/{}", ns.name)).expect("new netns");
        // SAFETY: setns(2) on two descriptors we own.
        let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        ns.original = Some(original);
        ns.ip_ok(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> args…`.
    pub(crate) fn ip(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("ip")
    }

    /// `ip -n <ns> args…`, which must succeed.
    pub(crate) fn ip_ok(&self, args: &[&str]) -> String {
        let out = self.ip(args);
        assert!(out.status.success(), "ip {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether interface `name` exists in the namespace.
    #[allow(dead_code)] // not every test file needs it
    pub(crate) fn has_link(&self, name: &str) -> bool {
        self.ip(&["link", "show", "dev", name]).status.success()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Some(original) = self.original.take() {
            // SAFETY: setns(2) on a descriptor we own.
            unsafe { libc::setns(original.as_raw_fd(), libc::CLONE_NEWNET) };
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
