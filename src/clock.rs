//! Wall-clock time for the library, behind one seam.
//!
//! Everything that stamps or judges a time (lease expiry, manifest times,
//! prune's grace, the daemon's schedule, `/readyz` staleness) asks a
//! [`Clock`] instead of calling `Utc::now()`. The clock travels with the
//! values that need it: [`crate::repo::store::Repo`] carries one (locks,
//! backups and prune all take a `Repo`), and the daemon's `Options` and
//! metrics hold the daemon's. Pure decision functions take `now` as a
//! parameter and never read a clock at all.
//!
//! [`Clock::system`] reads the system clock; it is the default and the
//! only one production builds. [`Clock::following_tokio`] is for tests: it
//! reports a fixed UTC start plus the time elapsed on tokio's clock since
//! it was made, so under `tokio::time::pause()` (or
//! `#[tokio::test(start_paused = true)]`) `advance()` moves wall time and
//! every tokio timer together, and a test of "the lease expires after its
//! TTL" or "the run fires at 02:00" takes no real time. [`Clock::jump`]
//! moves only its wall time (a host that was suspended, or an NTP step),
//! which no timer sees.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// A source of the current UTC time. Cheap to clone; clones share state.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    follows: Option<Arc<Following>>,
}

#[derive(Debug)]
struct Following {
    start_wall: DateTime<Utc>,
    start: tokio::time::Instant,
    /// Added by [`Clock::jump`], invisible to tokio's timers.
    jumped: Mutex<chrono::Duration>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { follows: None }
    }

    /// A clock that reads `start` now and then moves with tokio's clock
    /// (paused or not). Must be called inside a tokio runtime when time is
    /// paused, so that its starting instant is the paused one.
    pub fn following_tokio(start: DateTime<Utc>) -> Clock {
        Clock {
            follows: Some(Arc::new(Following {
                start_wall: start,
                start: tokio::time::Instant::now(),
                jumped: Mutex::new(chrono::Duration::zero()),
            })),
        }
    }

    /// Whether this clock follows tokio's time (so timers must be tokio's
    /// too for the two to agree).
    pub fn is_tokio(&self) -> bool {
        self.follows.is_some()
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.follows {
            None => Utc::now(),
            Some(f) => {
                let elapsed =
                    chrono::Duration::from_std(f.start.elapsed()).unwrap_or(chrono::Duration::MAX);
                let jumped = *f.jumped.lock().unwrap_or_else(|p| p.into_inner());
                f.start_wall + elapsed + jumped
            }
        }
    }

    /// Moves a tokio-following clock's wall time by `by` without moving
    /// tokio's timers; does nothing to the system clock.
    pub fn jump(&self, by: chrono::Duration) {
        if let Some(f) = &self.follows {
            *f.jumped.lock().unwrap_or_else(|p| p.into_inner()) += by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn following_clock_moves_with_paused_tokio_time() {
        let start = DateTime::parse_from_rfc3339("2027-03-28T00:59:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = Clock::following_tokio(start);
        assert_eq!(c.now(), start);
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!(c.now(), start + chrono::Duration::seconds(90));
        c.clone().jump(chrono::Duration::hours(1));
        assert_eq!(c.now(), start + chrono::Duration::seconds(3690));
    }

    #[test]
    fn system_clock_is_the_default() {
        let c = Clock::default();
        assert!(!c.is_tokio());
        let before = Utc::now();
        assert!(c.now() >= before);
    }
}
