//! One scheduled run: whole-run retries with backoff, then the run's one
//! [`Report`] feeds metrics, the log and notifications.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::listing::list_catalog;
use super::metrics::Metrics;
use crate::backup::report::{self, Outcome, Report, RunFacts};
use crate::backup::runner::{self, RunError};
use crate::config::{Config, JobConfig};
use crate::notify;
use crate::progress::Progress;
use crate::repo::store::Repo;
use crate::retry::{self, Backoff, Class, Transient};
use crate::sys::child::KillSwitch;

/// What one run task needs.
pub(super) struct RunCtx {
    pub(super) cfg: Arc<Config>,
    pub(super) repo: Repo,
    pub(super) job: JobConfig,
    pub(super) metrics: Arc<Metrics>,
    pub(super) client: reqwest::Client,
    pub(super) kill: KillSwitch,
    /// Hard cancel of this run (after the grace period).
    pub(super) cancel: CancellationToken,
    /// The daemon is shutting down: start no new attempt.
    pub(super) stopping: CancellationToken,
}

/// One scheduled run with whole-run retries, then metrics, log and
/// notifications, all from one [`Report`].
pub(super) async fn execute(ctx: &RunCtx) {
    let job = &ctx.job;
    // One ID for the run, made before the retry loop: every attempt, log
    // line and notification of this run carries it.
    let run_id = report::new_run_id();
    let started_at = ctx.repo.clock.now();
    let pending = notify::begin(
        &ctx.client,
        &ctx.cfg,
        job,
        notify::Start::new(&run_id, &job.name, started_at),
    );
    let (result, attempts) = attempt_with_retries(ctx, &run_id).await;
    let facts = RunFacts {
        run_id,
        job: job.name.clone(),
        started_at,
        attempts,
        cancelled: ctx.cancel.is_cancelled(),
    };
    let report = Report::new(&facts, &result, ctx.repo.clock.now());
    record_metrics(ctx, &report, &result);
    let kept = Arc::new(report.clone());
    ctx.metrics
        .update(&job.name, |s| s.last_report = Some(kept));
    report.log();

    if !ctx.cancel.is_cancelled() {
        if let Ok(l) = list_catalog(&ctx.repo, job, &ctx.cancel).await {
            ctx.metrics.update(&job.name, |s| l.apply(s));
        }
        super::tamper::check(ctx).await;
    }
    pending.finish(&ctx.cfg, job, &report).await;
    // The run's buffers are free now; give their pages back before the
    // daemon idles until the next tick.
    crate::sys::mem::release_free_memory();
    ctx.metrics.update(&job.name, |s| s.running = false);
}

/// Runs the job, retrying transient failures with backoff; returns the
/// last result and the number of attempts made. Once the daemon is
/// stopping no new attempt starts (a backoff sleep ends at once); a run
/// that was hard-cancelled is never retried.
async fn attempt_with_retries(
    ctx: &RunCtx,
    run_id: &str,
) -> (Result<runner::RunReport, RunError>, u32) {
    let job = &ctx.job;
    let what = format!("run {run_id} of job {}", job.name);
    retry::retry_with(
        Backoff::RUN,
        &what,
        &ctx.stopping,
        |e: &RunError| {
            if ctx.cancel.is_cancelled() {
                Class::Permanent
            } else {
                e.class()
            }
        },
        || {
            let progress = Arc::new(Progress::new());
            runner::run_once(&ctx.cfg, &ctx.repo, job, ctx.kill.clone(), progress)
        },
    )
    .await
}

fn record_metrics(ctx: &RunCtx, report: &Report, result: &Result<runner::RunReport, RunError>) {
    let outcome = report.outcome.as_str();
    ctx.metrics.update(&ctx.job.name, |s| {
        *s.runs.entry(outcome).or_default() += 1;
        s.last_outcome = Some(outcome);
        s.last_error = report.error.clone();
        s.last_run_duration = Some(Duration::from_secs_f64(report.duration_seconds));
        s.last_run_bytes = Some(report.stored_bytes);
        if report.outcome == Outcome::Locked {
            s.lock_waits += 1;
        }
        // A complete backup counts for freshness even when retention
        // failed after it (the data is in the store), unless the shrink
        // guard flagged it.
        if let Ok(r) = result {
            s.last_backup_suspicious = Some(r.is_suspicious());
            if !r.is_suspicious() {
                s.last_success = Some(r.manifest.started_at);
                s.store_error = None;
            }
            s.retention_deletions += r.deletions() as u64;
            for c in &r.copies {
                s.record_copy(&c.store, c.copied_all(), r.manifest.started_at);
            }
        }
    });
}
