//! One scheduled run: whole-run retries with backoff, then the run's one
//! [`Report`] feeds metrics, the log and notifications.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::job::{run_reported, Attempts, RunResult};
use super::listing::{list_catalog, listed};
use super::run_ctx::RunCtx;
use crate::backup::report::{Outcome, Report};
use crate::backup::runner::{self, RunError};
use crate::progress::Progress;
use crate::retry::{self, Backoff, Class, Transient};

/// One scheduled run with whole-run retries, then metrics, log and
/// notifications, all from one [`Report`] ([`super::job::run_reported`]).
pub(super) async fn execute(ctx: &RunCtx) {
    // The report has fed the metrics, the log and the notifications.
    run_reported(&ctx.cfg, &ctx.repo, &ctx.job, &ctx.client, ctx).await;
    // The run's buffers are free now; give their pages back before the
    // daemon idles until the next tick.
    crate::sys::mem::release_free_memory();
    ctx.metrics.update(&ctx.job.name, |s| s.running = false);
}

#[async_trait]
impl Attempts for RunCtx {
    async fn attempt(&self, run_id: &str) -> (RunResult, u32) {
        attempt_with_retries(self, run_id).await
    }

    fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn recorded(&self, report: &Report, result: &RunResult) {
        record_metrics(self, report, result);
        let kept = Arc::new(report.clone());
        self.metrics
            .update(&self.job.name, |s| s.last_report = Some(kept));
    }

    async fn logged(&self, _report: &Report, result: &RunResult) {
        if self.cancel.is_cancelled() {
            return;
        }
        // The run's one listing, as the run left it; the store is listed
        // again only when the run cannot say what it holds (it failed, or
        // its retention stopped part-way).
        let known = result.as_ref().ok().and_then(|r| r.catalog.as_ref());
        let l = match known {
            Some(cat) => Ok(listed(&self.repo, &self.job, cat)),
            None => list_catalog(&self.repo, &self.job, &self.cancel).await,
        };
        if let Ok(l) = l {
            self.metrics.update(&self.job.name, |s| l.apply(s));
        }
        super::tamper::check(self, known).await;
    }
}

/// Runs the job, retrying transient failures with backoff; returns the
/// last result and the number of attempts made. Once the daemon is
/// stopping no new attempt starts (a backoff sleep ends at once); a run
/// that was hard-cancelled is never retried.
async fn attempt_with_retries(ctx: &RunCtx, run_id: &str) -> (RunResult, u32) {
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

fn record_metrics(ctx: &RunCtx, report: &Report, result: &RunResult) {
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
