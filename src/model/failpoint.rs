//! Named points where a run can be made to stall, so crash-safety tests and chaos drills can
//! kill the process at an exact step (`LIFEBOAT_FAILPOINT=before-manifest`).
//!
//! When the variable names the point being passed, lifeboat prints
//! `lifeboat: failpoint NAME reached` to stderr and stalls until it is killed, or until the
//! run is cancelled ([`release`], on SIGINT/SIGTERM): a stalled step then behaves like a slow
//! one, so cancellation can be tested at an exact step too. Unset (the normal case), a
//! failpoint costs one environment lookup.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static RELEASED: AtomicBool = AtomicBool::new(false);

/// Lets every stalled failpoint go on (the process is shutting down).
pub fn release() {
    RELEASED.store(true, Ordering::SeqCst);
}

pub const ENV: &str = "LIFEBOAT_FAILPOINT";

/// Stalls until killed or [`release`]d if `LIFEBOAT_FAILPOINT` equals `name`.
pub fn hit(name: &str) {
    if std::env::var(ENV).is_ok_and(|v| v == name) {
        say(&format!("lifeboat: failpoint {name} reached"));
        while !RELEASED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        say(&format!(
            "lifeboat: failpoint {name} released (the run is being cancelled)"
        ));
    }
}

/// To stderr, ignoring a closed stderr (`eprintln!` would panic).
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
