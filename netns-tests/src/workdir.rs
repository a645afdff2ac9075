//! A per-test work directory for configs, sockets and logs.

use std::path::{Path, PathBuf};

/// Where the work directories live; each is named like the test's namespaces.
pub const ROOT: &str = "/tmp/vpngw-netns";

/// A directory that is removed on drop when the test passed, and kept (with
/// its path printed) when it failed, so the daemons' logs can be read.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates `ROOT/<name>`, replacing anything there.
    pub fn new(name: &str) -> WorkDir {
        let path = Path::new(ROOT).join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create work dir");
        WorkDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents).expect("write file in work dir");
        path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed: logs and configs kept in {}",
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
