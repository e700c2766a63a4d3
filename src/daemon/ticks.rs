//! What happens to a tick: arming the next one, handling one that fired
//! (too early, late, or with the job's slot busy), and starting its run.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;

use super::execute::execute;
use super::run_ctx::RunCtx;
use super::{drill, slots, Daemon, Running, Tick, TickKind};
use crate::config::JobConfig;
use crate::error::chain;
use crate::repo::gate::gated;
use crate::sys::child::KillSwitch;

/// A random delay up to the job's `jitter`.
pub(super) fn jitter(job: &JobConfig) -> Duration {
    job.jitter.map_or(Duration::ZERO, |j| {
        let ms = j.as_millis() as u64;
        Duration::from_millis(if ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=ms)
        })
    })
}

/// How long before its time a tick arrived, if it did: timers run on the
/// monotonic clock, and the wall clock can be stepped back while they
/// sleep (the production timer is also checked not to wake early, see
/// `timers`). `None` when the tick's time has come.
pub(super) fn early_by(tick: &Tick, now: DateTime<Utc>) -> Option<Duration> {
    (tick.fire_at - now).to_std().ok().filter(|d| !d.is_zero())
}

impl Daemon {
    /// Arms the next tick of `job`'s backup or drill schedule strictly
    /// after `after`; returns its time.
    pub(super) async fn arm(
        &mut self,
        job: &JobConfig,
        after: DateTime<Utc>,
        kind: TickKind,
    ) -> Option<DateTime<Utc>> {
        let schedule = match kind {
            TickKind::Backup => job.schedule.as_ref()?,
            TickKind::Drill => &job.drill.as_ref()?.schedule,
        };
        let now = self.clock.now();
        let mut nominal = schedule
            .next_after(after, job.timezone)?
            .with_timezone(&Utc);
        if nominal < now {
            // Behind (suspended host, long stall): skip what was missed.
            tracing::warn!(job = %job.name, missed = %nominal, "missed scheduled run(s); continuing with the next one");
            nominal = schedule.next_after(now, job.timezone)?.with_timezone(&Utc);
        }
        let delay = match kind {
            TickKind::Backup => jitter(job),
            TickKind::Drill => Duration::ZERO,
        };
        let fire_at = nominal + chrono::Duration::from_std(delay).unwrap_or_default();
        let tick = Tick {
            job: job.name.clone(),
            kind,
            generation: self.generation,
            nominal,
            fire_at,
            rearm: true,
        };
        self.arm_tick(tick).await?;
        if kind == TickKind::Backup {
            self.metrics
                .update(&job.name, |s| s.next_run = Some(nominal));
        }
        tracing::debug!(job = %job.name, next = %nominal.with_timezone(&job.timezone).to_rfc3339_opts(SecondsFormat::Secs, false), "next run armed");
        Some(nominal)
    }

    /// Hands `tick` to the timers for its `fire_at`: the one way every
    /// scheduled tick is armed, whichever timers the daemon runs with.
    async fn arm_tick(&mut self, tick: Tick) -> Option<()> {
        let delay = (tick.fire_at - self.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let key = (tick.job.clone(), tick.kind);
        let track = tick.rearm;
        match self.timers.arm(delay, tick, self.tx.clone()).await {
            Ok(id) => {
                if track {
                    self.armed.insert(key, id);
                }
                Some(())
            }
            Err(e) => {
                tracing::error!(job = %key.0, error = %chain(&e), "cannot arm the next run");
                None
            }
        }
    }

    pub(super) async fn on_tick(&mut self, mut tick: Tick) {
        // A scheduled tick armed under a configuration that was reloaded
        // since is stale (the reload armed its own). A start-up run is not
        // part of any schedule: it stays, as long as its job does.
        if tick.rearm && tick.generation != self.generation {
            return;
        }
        let cfg = self.cfg.clone();
        let Some(job) = cfg.job(&tick.job) else {
            return;
        };
        let now = self.clock.now();
        if let Some(early) = early_by(&tick, now) {
            // Woken before its time (wall clock stepped back, or a start-up
            // run's jitter): wait out the rest on the same timers.
            tracing::debug!(job = %job.name, early_ms = early.as_millis() as u64, "tick arrived early; re-armed for the rest");
            self.arm_tick(tick).await;
            return;
        }
        if tick.rearm {
            catch_up(&mut tick, job, now);
            self.armed.remove(&(tick.job.clone(), tick.kind));
            let after = tick.nominal.max(now);
            self.arm(job, after, tick.kind).await;
        }

        let running = self.running.get(&job.name).map(|r| r.kind);
        let queue = self.waiting.entry(job.name.clone()).or_default();
        let queued: Vec<TickKind> = queue.iter().map(|t| t.kind).collect();
        match slots::decide(tick.kind, running, &queued) {
            slots::Decision::Start => self.start(tick),
            slots::Decision::Wait { first } => {
                tracing::info!(job = %job.name, scheduled = %tick.nominal, kind = %tick.kind, "the job's slot is busy; this run waits for it");
                if first {
                    queue.push_front(tick);
                } else {
                    queue.push_back(tick);
                }
            }
            slots::Decision::Skip(reason) => self.skip(&tick, reason),
        }
    }

    /// Logs, counts and notifies a tick that cannot run.
    fn skip(&self, tick: &Tick, reason: &'static str) {
        let Some(job) = self.cfg.job(&tick.job) else {
            return;
        };
        match tick.kind {
            TickKind::Backup => {
                self.metrics.update(&job.name, |s| s.skipped_runs += 1);
                tracing::error!(job = %job.name, scheduled = %tick.nominal, outcome = "skipped", reason, "scheduled backup skipped");
                let report =
                    slots::skipped_report(&job.name, tick.nominal, reason, self.clock.now());
                slots::notify_skipped(&self.client, &self.cfg, job, report);
            }
            TickKind::Drill => {
                self.metrics.update(&job.name, |s| {
                    *s.drill
                        .get_or_insert_with(Default::default)
                        .runs
                        .entry("skipped")
                        .or_default() += 1;
                });
                tracing::warn!(job = %job.name, scheduled = %tick.nominal, outcome = "skipped", reason, "restore drill skipped");
            }
        }
    }

    /// Starts the next tick waiting for `job`'s slot, if any.
    pub(super) fn start_waiting(&mut self, job: &str) {
        if self.stopping.is_cancelled() {
            return;
        }
        let Some(tick) = self.waiting.get_mut(job).and_then(VecDeque::pop_front) else {
            return;
        };
        // Even across a reload: dropping a waiting backup would skip it
        // silently (a job that no longer exists is not started). Its time
        // has come: it waited for the slot after it fired.
        self.start(tick);
    }

    /// Starts the run of a tick whose time has come, in the job's slot.
    fn start(&mut self, tick: Tick) {
        let cfg = self.cfg.clone();
        let Some(job) = cfg.job(&tick.job) else {
            return;
        };
        // The run's branch of the cancellation tree: the grace period's end
        // cancels every run, and a run's copies hang off its token.
        let cancel = self.hard_stop.child_token();
        self.running
            .insert(job.name.clone(), Running { kind: tick.kind });
        self.metrics.update(&job.name, |s| s.running = true);
        let ctx = RunCtx {
            cfg: cfg.clone(),
            repo: gated(&self.repo, cancel.clone()),
            job: job.clone(),
            metrics: self.metrics.clone(),
            client: self.client.clone(),
            kill: KillSwitch::default(),
            cancel,
            stopping: self.stopping.clone(),
        };
        let kind = tick.kind;
        self.tasks.spawn(async move {
            // Cancelling the run kills its child processes too.
            let _watch = crate::interrupt::kill_on_cancel(&ctx.cancel, &ctx.kill);
            match (kind, ctx.job.drill.as_ref()) {
                (TickKind::Drill, Some(d)) => drill::execute(&ctx, d.restore_test).await,
                (TickKind::Drill, None) => {}
                (TickKind::Backup, _) => execute(&ctx).await,
            }
            ctx.job.name.clone()
        });
    }
}

/// A tick handled late (the daemon stalled, or the host was suspended)
/// stands for the latest scheduled time that has come: that run happens,
/// once, now; the times passed over before it are logged.
fn catch_up(tick: &mut Tick, job: &JobConfig, now: DateTime<Utc>) {
    let schedule = match tick.kind {
        TickKind::Backup => job.schedule.as_ref(),
        TickKind::Drill => job.drill.as_ref().map(|d| &d.schedule),
    };
    let Some(schedule) = schedule else {
        return;
    };
    let (due, passed) = schedule.latest_due(tick.nominal, now, job.timezone);
    if passed > 0 {
        tracing::warn!(job = %job.name, kind = %tick.kind, missed = passed, first_missed = %tick.nominal, running_for = %due, "the daemon fell behind; running once now for the latest scheduled time, the earlier ones are not replayed");
        tick.nominal = due;
        tick.fire_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick_at(fire_at: DateTime<Utc>) -> Tick {
        Tick {
            job: "j".into(),
            kind: TickKind::Backup,
            generation: 0,
            nominal: fire_at,
            fire_at,
            rearm: true,
        }
    }

    #[test]
    fn a_tick_is_early_only_before_its_time() {
        let t: DateTime<Utc> = "2027-01-01T01:00:00Z".parse().unwrap();
        let tick = tick_at(t);
        assert_eq!(
            early_by(&tick, t - chrono::Duration::milliseconds(1500)),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(early_by(&tick, t), None);
        assert_eq!(early_by(&tick, t + chrono::Duration::hours(3)), None);
    }
}
