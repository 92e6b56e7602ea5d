//! The one source of "now". Operations and services read time through a [`Clock`] so that
//! tests (and drills) can run the daemon, settlement and objectives under a manual clock.
//!
//! # Guarantees
//! [`SystemClock`] is the only place lifeboat reads the wall clock (a test keeps it so).
//! [`ManualClock`] never moves unless told to; [`Clock::sleep_until`] on it waits for it to be
//! moved, so a test drives the daemon's schedule without waiting real time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// What [`Clock::sleep_until`] returns.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Tells the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once `now() >= at`. By default a timer for the time left now (the wall
    /// clock); a [`ManualClock`] resolves when it is moved past `at`.
    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep<'_> {
        let left = (at - self.now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(left))
    }
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to: tests and drills. Moving it wakes whatever
/// [`Clock::sleep_until`] a time it has now reached.
#[derive(Debug)]
pub struct ManualClock(tokio::sync::watch::Sender<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock(tokio::sync::watch::Sender::new(start))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        self.0.send_replace(t);
    }

    pub fn advance(&self, by: Duration) {
        self.0.send_modify(|t| {
            *t += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.borrow()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep<'_> {
        let mut moved = self.0.subscribe();
        Box::pin(async move {
            while *moved.borrow_and_update() < at {
                // The sender lives as long as `self`, which this future borrows.
                if moved.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid time");
        let c = ManualClock::new(start);
        assert_eq!(c.now(), start);
        c.advance(std::time::Duration::from_secs(90));
        assert_eq!(c.now(), start + chrono::Duration::seconds(90));
    }

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_moved_past_their_time() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid time");
        let c = ManualClock::new(start);
        let at = start + chrono::Duration::seconds(60);
        let mut sleep = c.sleep_until(at);
        let poll = |s: &mut Sleep<'_>| futures::FutureExt::now_or_never(s.as_mut()).is_some();
        assert!(!poll(&mut sleep), "not before it is moved");
        c.advance(Duration::from_secs(59));
        assert!(!poll(&mut sleep), "not before `at`");
        c.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleep)
            .await
            .expect("woken once the clock reaches `at`");
        assert!(poll(&mut c.sleep_until(start)), "a past time is no wait");
    }
}
