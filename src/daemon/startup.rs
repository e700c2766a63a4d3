//! What the daemon does once at start and again after a reload: read what
//! the store holds into the metrics, arm every schedule, and (at start
//! only) decide which jobs run at once.

use chrono::SecondsFormat;
use tokio_util::sync::CancellationToken;

use super::listing::list_catalog;
use super::ticks::jitter;
use super::{drill, Daemon, Tick, TickKind};
use crate::config;
use crate::error::chain;

impl Daemon {
    /// Per-job settings and what the store already holds, so `/readyz` and
    /// the metrics are right from the start: a restart does not forget the
    /// last good backup, and does not forgive a job that has none.
    pub(super) async fn seed_metrics(&self) {
        let metrics = &self.metrics;
        let names: Vec<String> = self.cfg.jobs.iter().map(|j| j.name.clone()).collect();
        metrics.retain(&names);
        self.page.configure(&self.cfg);
        metrics.set_authenticated(self.repo.verifier.is_some());
        for job in &self.cfg.jobs {
            metrics.update(&job.name, |s| s.max_age = job.max_age);
            match list_catalog(&self.repo, job, &CancellationToken::new()).await {
                Ok(l) => metrics.update(&job.name, |s| l.apply(s)),
                Err(e) => {
                    tracing::warn!(job = %job.name, error = %chain(&e), "cannot list existing backups at start-up");
                    metrics.update(&job.name, |s| {
                        if s.last_success.is_none() {
                            s.store_error = Some(chain(&e).to_string());
                        }
                    });
                }
            }
        }
    }

    /// Arms the next backup and drill tick of every scheduled job.
    pub(super) async fn arm_all(&mut self) {
        let now = self.clock.now();
        let cfg = self.cfg.clone();
        for job in &cfg.jobs {
            if job.schedule.is_none() {
                tracing::info!(job = %job.name, "job has no schedule; the daemon will not run it");
                continue;
            }
            if let Some(t) = self.arm(job, now, TickKind::Backup).await {
                self.metrics.update(&job.name, |s| s.first_due = Some(t));
            }
            if let Some(d) = &job.drill {
                let max_age = d.max_age;
                let due = self.arm(job, now, TickKind::Drill).await;
                self.metrics.update(&job.name, |s| {
                    let stats = s.drill.get_or_insert_with(Default::default);
                    stats.first_due = due;
                    stats.max_age = max_age;
                });
            }
        }
    }

    /// `run_at_start`: at daemon start (not on reload), back up each job
    /// whose newest good backup is older than its schedule's interval (or
    /// missing), or every job with `always`, once, after its jitter.
    pub(super) async fn start_up_runs(&self) {
        let now = self.clock.now();
        let known = self.metrics.snapshot();
        for job in &self.cfg.jobs {
            let Some(schedule) = &job.schedule else {
                continue;
            };
            let newest = known.get(&job.name).and_then(|s| s.last_success);
            let unknown = known
                .get(&job.name)
                .is_some_and(|s| s.store_error.is_some());
            let (run, why) = if unknown && job.run_at_start == config::RunAtStart::Missed {
                (
                    false,
                    "the store could not be listed, so freshness is unknown".to_owned(),
                )
            } else {
                drill::start_decision(
                    job.run_at_start,
                    newest,
                    drill::interval(schedule, job, now),
                    now,
                )
            };
            if !run {
                tracing::info!(job = %job.name, reason = %why, "no start-up run");
                continue;
            }
            let fire_at = now + chrono::Duration::from_std(jitter(job)).unwrap_or_default();
            tracing::info!(job = %job.name, reason = %why, at = %fire_at.to_rfc3339_opts(SecondsFormat::Secs, true), "start-up run");
            // Sent now; the tick's own time is checked when it is handled,
            // which re-arms it for the jitter (see `on_tick`).
            let tick = Tick {
                job: job.name.clone(),
                kind: TickKind::Backup,
                generation: self.generation,
                nominal: now,
                fire_at,
                rearm: false,
            };
            let _ = self.tx.send(tick).await;
        }
    }
}
