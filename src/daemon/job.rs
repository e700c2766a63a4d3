//! One run of a job with its ceremony, the same for `run-now` and the
//! daemon: a run ID, the start notification, the run, one [`Report`],
//! one log event, the finish notification.
//!
//! It lives in the daemon layer because the daemon is its main caller and
//! the command layer (`app`), which sits above the daemon, can call down
//! to it; what differs between the two callers (one attempt with a
//! progress view, or whole-run retries with metrics) comes in through
//! [`Attempts`]. `tests/it/layout.rs` checks that the start/finish
//! notifications are sent from this module only.

use async_trait::async_trait;

use crate::backup::report::{self, Report, RunFacts};
use crate::backup::runner::{RunError, RunReport};
use crate::config::{Config, JobConfig};
use crate::notify;
use crate::repo::store::Repo;

/// What one run's result is, as both callers see it.
pub type RunResult = Result<RunReport, RunError>;

/// How a caller runs the job and what it adds to the ceremony.
#[async_trait]
pub trait Attempts: Send + Sync {
    /// Runs the job (once, or with retries); returns the last result and
    /// the number of attempts made. `run_id` is the run's, made before.
    async fn attempt(&self, run_id: &str) -> (RunResult, u32);

    /// Whether the run was cancelled (a signal, the daemon's grace end).
    fn cancelled(&self) -> bool;

    /// The report is made and not logged yet: whatever must already say
    /// so when the log line appears (the daemon's metrics).
    fn recorded(&self, _report: &Report, _result: &RunResult) {}

    /// The report is logged; the finish notification has not gone out.
    async fn logged(&self, _report: &Report, _result: &RunResult) {}
}

/// Runs `job` through `how` with the full ceremony; returns its report.
pub async fn run_reported(
    cfg: &Config,
    repo: &Repo,
    job: &JobConfig,
    client: &reqwest::Client,
    how: &dyn Attempts,
) -> Report {
    // One ID for the run, made before any attempt: every attempt, log
    // line and notification of this run carries it.
    let run_id = report::new_run_id();
    let started_at = repo.clock.now();
    let pending = notify::begin(
        client,
        cfg,
        job,
        notify::Start::new(&run_id, &job.name, started_at),
    );
    let (result, attempts) = how.attempt(&run_id).await;
    let facts = RunFacts {
        run_id,
        job: job.name.clone(),
        started_at,
        attempts,
        cancelled: how.cancelled(),
    };
    let report = Report::new(&facts, &result, repo.clock.now());
    how.recorded(&report, &result);
    report.log();
    how.logged(&report, &result).await;
    pending.finish(cfg, job, &report).await;
    report
}
