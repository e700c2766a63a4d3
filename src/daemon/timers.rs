//! The daemon's timer seam: "send this tick after that delay", and
//! "forget that one".
//!
//! The daemon computes every run time itself (see the module doc of
//! [`super`]) and only needs something to wake it at an instant. In
//! production that is [`CronTimers`], a `tokio-cron-scheduler` one-shot job
//! per armed tick, as the scheduler crate was chosen for. That scheduler
//! polls the real monotonic clock, so tokio's paused time cannot drive it;
//! with a [`crate::clock::Clock`] that follows tokio's time (tests), the
//! daemon arms [`SleepTimers`] instead: one task per tick sleeping on
//! tokio's timer, so `tokio::time::advance()` fires runs exactly when the
//! test's wall clock reaches them. The daemon's own logic (what to arm,
//! missed runs, jitter, skipping overlaps) is the same with either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use uuid::Uuid;

use super::Tick;

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
pub(super) struct CronTimers(JobScheduler);

impl CronTimers {
    pub(super) async fn start() -> Result<CronTimers, JobSchedulerError> {
        let sched = JobScheduler::new().await?;
        sched.start().await?;
        Ok(CronTimers(sched))
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
        let job = Job::new_one_shot_at_instant_async(instant, move |_id, _sched| {
            let tx = tx.clone();
            let tick = tick.clone();
            Box::pin(async move {
                // The receiver is gone only during shutdown.
                let _ = tx.send(tick).await;
            })
        })?;
        self.0.add(job).await
    }

    async fn cancel(&self, id: Uuid) {
        // Already fired one-shots are gone; that error is expected.
        let _ = self.0.remove(&id).await;
    }

    async fn shutdown(&self) {
        // `shutdown` takes `&mut self`; clones share the scheduler.
        let mut sched = self.0.clone();
        if let Err(e) = sched.shutdown().await {
            tracing::warn!(error = %e, "job scheduler did not shut down cleanly");
        }
    }
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
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        armed.retain(|_, h| !h.is_finished());
        armed.insert(id, task.abort_handle());
        Ok(id)
    }

    async fn cancel(&self, id: Uuid) {
        let handle = self
            .armed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some(h) = handle {
            h.abort();
        }
    }

    async fn shutdown(&self) {
        let all: Vec<AbortHandle> = self
            .armed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in all {
            h.abort();
        }
    }
}
