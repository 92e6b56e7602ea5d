//! Named points where a run can be made to stall, so crash-safety tests and chaos drills can
//! kill the process at an exact step (`LIFEBOAT_FAILPOINT=before-manifest`).
//!
//! When the variable names the point being passed, lifeboat prints
//! `lifeboat: failpoint NAME reached` to stderr and stalls until it is killed. Unset (the
//! normal case), a failpoint costs one environment lookup.

use std::time::Duration;

pub const ENV: &str = "LIFEBOAT_FAILPOINT";

/// Stalls forever if `LIFEBOAT_FAILPOINT` equals `name`.
pub fn hit(name: &str) {
    if std::env::var(ENV).is_ok_and(|v| v == name) {
        eprintln!("lifeboat: failpoint {name} reached");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}
