//! The daemon's timer seam: "send this tick after that delay", and
//! "forget that one".
//!
//! The daemon computes every run time itself (see the module doc of
//! [`super`]), arms every tick through one function (`Daemon::arm_tick`)
//! and, when a tick arrives, checks the wall clock against the tick's time
//! and re-arms it for the rest if it came early. Only the thing that wakes
//! it differs: in production [`CronTimers`], a `tokio-cron-scheduler`
//! one-shot job per armed tick, as the scheduler crate was chosen for; with
//! a [`crate::clock::Clock`] that follows tokio's time (tests),
//! [`SleepTimers`], one task per tick sleeping on tokio's timer, so
//! `tokio::time::advance()` fires runs exactly when the test's wall clock
//! reaches them. That scheduler polls the real clock, which paused tokio
//! time cannot drive; so [`CronTimers`] is kept to the crate call plus the
//! wait that makes it exact, and has real-time tests of its own below
//! (fires not before its instant, not much after, once; a cancelled tick
//! never fires).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Tick;
use crate::clock::Clock;

/// The timers for `clock`: tokio sleeps when it follows tokio's (possibly
/// paused) time, the scheduler crate on the system clock.
pub(super) async fn for_clock(clock: &Clock) -> Result<Box<dyn Timers>, JobSchedulerError> {
    Ok(if clock.is_tokio() {
        Box::new(SleepTimers::default())
    } else {
        Box::new(CronTimers::start().await?)
    })
}

#[async_trait]
pub(super) trait Timers: Send + Sync {
    /// Sends `tick` on `tx` once, `after` from now; returns an ID for
    /// [`Timers::cancel`].
    async fn arm(
        &self,
        after: Duration,
        tick: Tick,
        tx: mpsc::Sender<Tick>,
    ) -> Result<Uuid, JobSchedulerError>;

    /// Forgets an armed tick; one that already fired is no error.
    async fn cancel(&self, id: Uuid);

    /// Stops every timer (daemon shutdown).
    async fn shutdown(&self);
}

/// Production: a `tokio-cron-scheduler` one-shot job per tick.
pub(super) struct CronTimers {
    sched: JobScheduler,
    /// Ticks fired by the scheduler but still waiting out the rest of
    /// their delay, so a cancel reaches them too.
    waiting: Arc<Mutex<HashMap<Uuid, CancellationToken>>>,
}

impl CronTimers {
    pub(super) async fn start() -> Result<CronTimers, JobSchedulerError> {
        let sched = JobScheduler::new().await?;
        sched.start().await?;
        Ok(CronTimers {
            sched,
            waiting: Arc::default(),
        })
    }
}

#[async_trait]
impl Timers for CronTimers {
    async fn arm(
        &self,
        after: Duration,
        tick: Tick,
        tx: mpsc::Sender<Tick>,
    ) -> Result<Uuid, JobSchedulerError> {
        let instant = std::time::Instant::now() + after;
        let stop = CancellationToken::new();
        let waiting = self.waiting.clone();
        let armed_stop = stop.clone();
        // The scheduler keeps the instant in whole seconds of the wall clock
        // and polls twice a second, so it may fire up to about a second
        // early: the job then waits out the rest on the monotonic clock.
        let job = Job::new_one_shot_at_instant_async(instant, move |id, _sched| {
            let (tx, tick, stop) = (tx.clone(), tick.clone(), stop.clone());
            let waiting = waiting.clone();
            Box::pin(async move {
                tokio::select! {
                    // The receiver is gone only during shutdown.
                    () = tokio::time::sleep_until(instant.into()) => { let _ = tx.send(tick).await; }
                    () = stop.cancelled() => {}
                }
                lock(&waiting).remove(&id);
            })
        })?;
        let id = job.guid();
        lock(&self.waiting).insert(id, armed_stop);
        self.sched.add(job).await
    }

    async fn cancel(&self, id: Uuid) {
        if let Some(stop) = lock(&self.waiting).remove(&id) {
            stop.cancel();
        }
        // Already fired one-shots are gone; that error is expected.
        let _ = self.sched.remove(&id).await;
    }

    async fn shutdown(&self) {
        for (_, stop) in lock(&self.waiting).drain() {
            stop.cancel();
        }
        // `shutdown` takes `&mut self`; clones share the scheduler.
        let mut sched = self.sched.clone();
        if let Err(e) = sched.shutdown().await {
            tracing::warn!(error = %e, "job scheduler did not shut down cleanly");
        }
    }
}

/// The map's lock; a panic elsewhere leaves it usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tests: a task per tick sleeping on tokio's (pausable) clock.
#[derive(Default)]
pub(super) struct SleepTimers {
    armed: Mutex<HashMap<Uuid, AbortHandle>>,
    next: AtomicU64,
}

#[async_trait]
impl Timers for SleepTimers {
    async fn arm(
        &self,
        after: Duration,
        tick: Tick,
        tx: mpsc::Sender<Tick>,
    ) -> Result<Uuid, JobSchedulerError> {
        let at = tokio::time::Instant::now() + after;
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = tx.send(tick).await;
        });
        let id = Uuid::from_u64_pair(0, self.next.fetch_add(1, Ordering::Relaxed));
        let mut armed = lock(&self.armed);
        armed.retain(|_, h| !h.is_finished());
        armed.insert(id, task.abort_handle());
        Ok(id)
    }

    async fn cancel(&self, id: Uuid) {
        let handle = lock(&self.armed).remove(&id);
        if let Some(h) = handle {
            h.abort();
        }
    }

    async fn shutdown(&self) {
        let all: Vec<AbortHandle> = lock(&self.armed).drain().map(|(_, h)| h).collect();
        for h in all {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use chrono::Utc;

    use super::*;
    use crate::daemon::TickKind;

    fn tick(job: &str) -> Tick {
        let now = Utc::now();
        Tick {
            job: job.to_owned(),
            kind: TickKind::Backup,
            generation: 0,
            nominal: now,
            fire_at: now,
            rearm: true,
        }
    }

    /// The production timers on the real clock: each tick arrives not
    /// before its delay, not much after it (the scheduler polls twice a
    /// second; the bound is generous so a busy machine does not fail it),
    /// exactly once; a cancelled tick never arrives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cron_timers_fire_on_time_once_and_never_when_cancelled() {
        let timers = CronTimers::start().await.unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let t0 = Instant::now();
        let delays = [("a", 300), ("b", 800), ("c", 1300)];
        for (job, ms) in delays {
            timers
                .arm(Duration::from_millis(ms), tick(job), tx.clone())
                .await
                .unwrap();
        }
        let gone = timers
            .arm(Duration::from_millis(500), tick("cancelled"), tx.clone())
            .await
            .unwrap();
        timers.cancel(gone).await;
        let late_cancel = timers
            .arm(Duration::from_millis(1600), tick("late-cancel"), tx.clone())
            .await
            .unwrap();
        drop(tx);
        let mut got = Vec::new();
        let end = tokio::time::Instant::now() + Duration::from_secs(4);
        let mut cancelled_late = false;
        while let Ok(Some(t)) = tokio::time::timeout_at(end, rx.recv()).await {
            got.push((t.job.clone(), t0.elapsed()));
            if t.job == "b" && !cancelled_late {
                // Cancelled within its last second: the scheduler may
                // already have fired it and be waiting out the rest.
                timers.cancel(late_cancel).await;
                cancelled_late = true;
            }
        }
        timers.shutdown().await;
        let names: Vec<&str> = got.iter().map(|(j, _)| j.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"], "{got:?}");
        for ((_, at), (_, ms)) in got.iter().zip(delays) {
            let due = Duration::from_millis(ms);
            assert!(*at >= due, "fired early: {at:?} < {due:?}");
            assert!(
                *at < due + Duration::from_millis(1500),
                "fired late: {at:?} for {due:?}"
            );
        }
    }
}
