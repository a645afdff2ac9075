//! Test support: the origin of the simulated clock the protocol cores'
//! tests advance by hand. `Instant` has no constructor but `now()`, so the
//! origin is read here once per test, outside the sans-IO cores (which
//! never read the clock).

use std::time::Instant;

/// An arbitrary starting instant for simulated time.
pub(crate) fn origin() -> Instant {
    Instant::now()
}
