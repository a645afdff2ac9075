//! Waiting for a condition with a deadline.

use std::time::{Duration, Instant};

/// How often [`wait_until`] polls.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns `Ok`, and returns its value.
///
/// `check` returns `Err(state)` describing what it saw while the condition
/// does not hold yet; on timeout the test panics with `what` and the last
/// state, which is what makes a failing netns test readable.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(state) => {
                if start.elapsed() >= timeout {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen:\n{state}");
                }
            }
        }
        std::thread::sleep(POLL);
    }
}
