//! Scheduled restore drills (`jobs[].verify`) and the start-up run
//! (`jobs[].run_at_start`).
//!
//! A drill is `verify --restore-test` (or checksums only, with
//! `restore_test: false`) of the job's newest good backup, on its own
//! schedule. It shares the job's slot in the daemon, so it never overlaps
//! a backup of the same job: a drill due while the backup runs is skipped
//! and counted, like an overlapping backup tick. Its outcome feeds the
//! `ccbackup_verify_*` metrics, `/readyz` (with `verify.max_age`), the log,
//! and notifications on failure.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::backup::report::{self, Outcome, Report, RunFacts};
use crate::config::{JobConfig, RunAtStart};
use crate::error::chain;
use crate::progress::Progress;
use crate::repo::catalog;
use crate::restore::verify::{self, VerifyOptions};
use crate::schedule::Schedule;

use super::metrics::DrillStats;
use super::run_ctx::RunCtx;

/// Pure: whether the daemon backs a job up at start, and why (the reason
/// is logged either way). `interval` is the gap between two scheduled runs.
pub fn start_decision(
    policy: RunAtStart,
    newest_good: Option<DateTime<Utc>>,
    interval: Option<chrono::Duration>,
    now: DateTime<Utc>,
) -> (bool, String) {
    match (policy, newest_good, interval) {
        (RunAtStart::Never, _, _) => (false, "run_at_start is never".into()),
        (RunAtStart::Always, _, _) => (true, "run_at_start is always".into()),
        (RunAtStart::Missed, None, _) => {
            (true, "the store holds no good backup of this job".into())
        }
        (RunAtStart::Missed, Some(t), Some(i)) if now - t > i => (
            true,
            format!(
                "the newest good backup ({}) is older than the schedule's interval ({} s)",
                report::rfc3339(t),
                i.num_seconds()
            ),
        ),
        (RunAtStart::Missed, Some(t), _) => (
            false,
            format!("the newest good backup ({}) is fresh", report::rfc3339(t)),
        ),
    }
}

/// The gap between the next two scheduled runs after `now`.
pub fn interval(
    schedule: &Schedule,
    job: &JobConfig,
    now: DateTime<Utc>,
) -> Option<chrono::Duration> {
    let first = schedule.next_after(now, job.timezone)?.with_timezone(&Utc);
    let second = schedule
        .next_after(first, job.timezone)?
        .with_timezone(&Utc);
    Some(second - first)
}

/// One scheduled drill: verify the newest good backup, record, notify.
pub(super) async fn execute(ctx: &RunCtx, restore_test: bool) {
    let job = &ctx.job;
    let facts = RunFacts {
        run_id: report::new_run_id(),
        job: job.name.clone(),
        started_at: ctx.repo.clock.now(),
        attempts: 1,
        cancelled: false,
    };
    // A drill only reads: when the daemon stops it stops at once (at the
    // next chunk it hashes), instead of holding shutdown for the grace
    // period a backup gets.
    let cancel = ctx.cancel.child_token();
    let link = {
        let (stopping, cancel) = (ctx.stopping.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stopping.cancelled() => cancel.cancel(),
                _ = cancel.cancelled() => {}
            }
        })
    };
    let (backup_id, outcome, error) = drill(ctx, restore_test, &cancel).await;
    link.abort();
    let outcome_name = match (outcome, cancel.is_cancelled()) {
        (_, true) => "cancelled",
        (None, _) => "skipped",
        (Some(true), _) => "success",
        (Some(false), _) => "failure",
    };
    let rep = Report::drill(
        &facts,
        backup_id,
        match outcome_name {
            "success" | "skipped" => Outcome::Success,
            "cancelled" => Outcome::Cancelled,
            _ => Outcome::Failure,
        },
        error.clone(),
        ctx.repo.clock.now(),
    );
    let finished = ctx.repo.clock.now();
    crate::sys::mem::release_free_memory();
    ctx.metrics.update(&job.name, |s| {
        let d = s.drill.get_or_insert_with(DrillStats::default);
        *d.runs.entry(outcome_name).or_default() += 1;
        if outcome_name != "skipped" {
            d.last_outcome = Some(outcome_name);
            d.last_report = Some(Arc::new(rep.clone()));
            d.last_duration = Some(std::time::Duration::from_secs_f64(rep.duration_seconds));
        }
        if outcome_name == "success" {
            d.last_success = Some(finished);
        }
        s.running = false;
    });
    // The drill's report travels as one JSON value (nulls stay nulls, see
    // `Report::log`); `outcome` names the drill's own outcome, `skipped`
    // included, and wins over the report's.
    let report = rep.json();
    match outcome_name {
        "success" => {
            tracing::info!(report = %report, restore_test, outcome = outcome_name, "restore drill finished")
        }
        "skipped" => {
            tracing::warn!(report = %report, restore_test, outcome = outcome_name, reason = %error.as_deref().unwrap_or("nothing to verify"), "restore drill skipped")
        }
        _ => {
            tracing::error!(report = %report, restore_test, outcome = outcome_name, "restore drill finished")
        }
    }
    // Only a failed drill notifies: a successful one is news for metrics,
    // not for people (and must not ping a backup's healthchecks URL).
    if outcome_name == "failure" {
        let targets = crate::notify::targets(&ctx.cfg, job, crate::notify::Event::Finish(&rep));
        crate::notify::send(&ctx.client, &targets, crate::notify::Event::Finish(&rep)).await;
    }
    if !cancel.is_cancelled() {
        super::tamper::check(ctx, None).await;
    }
}

/// (backup verified, Some(ok) or None when there was nothing to verify,
/// what went wrong).
async fn drill(
    ctx: &RunCtx,
    restore_test: bool,
    cancel: &tokio_util::sync::CancellationToken,
) -> (Option<String>, Option<bool>, Option<String>) {
    let job = &ctx.job;
    let cat = match catalog::load(&ctx.repo, Some(&job.name)).await {
        Ok(c) => c,
        Err(e) => {
            return (
                None,
                Some(false),
                Some(format!("cannot list the store: {}", chain(&e))),
            )
        }
    };
    let Some(m) = cat.complete.iter().rev().find(|m| !m.guard.is_suspicious()) else {
        return (
            None,
            None,
            Some("the store holds no good backup of this job yet".into()),
        );
    };
    let identities = if restore_test && crate::crypto::any_encrypted(&m.artifacts) {
        match job
            .encryption
            .as_ref()
            .and_then(|e| e.identity_file.as_deref())
        {
            Some(p) => match crate::crypto::Identities::load(p) {
                Ok(i) => Some(Arc::new(i)),
                Err(e) => return (Some(m.id.clone()), Some(false), Some(chain(&e).to_string())),
            },
            None => None,
        }
    } else {
        None
    };
    let opts = VerifyOptions {
        restore_test,
        identities,
        cancel: cancel.clone(),
        progress: Arc::new(Progress::new()),
    };
    let report = verify::verify_backup(&ctx.repo, job, m, &opts).await;
    match report.failure_summary() {
        None => (Some(m.id.clone()), Some(true), None),
        Some(why) => (Some(m.id.clone()), Some(false), Some(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn start_decisions() {
        let now = at("2026-12-01T12:00:00Z");
        let day = Some(chrono::Duration::days(1));
        let fresh = Some(at("2026-12-01T02:00:00Z"));
        let stale = Some(at("2026-11-29T02:00:00Z"));
        assert!(start_decision(RunAtStart::Missed, None, day, now).0);
        assert!(start_decision(RunAtStart::Missed, stale, day, now).0);
        let (run, why) = start_decision(RunAtStart::Missed, fresh, day, now);
        assert!(!run && why.contains("fresh"), "{why}");
        assert!(start_decision(RunAtStart::Always, fresh, day, now).0);
        assert!(!start_decision(RunAtStart::Never, None, day, now).0);
    }

    #[test]
    fn interval_of_a_daily_schedule() {
        use std::str::FromStr;
        let s = Schedule::from_str("0 2 * * *").unwrap();
        let job = JobConfig {
            name: "j".into(),
            schedule: Some(s.clone()),
            timezone: chrono_tz::Tz::UTC,
            retention: None,
            compression: Default::default(),
            jitter: None,
            max_age: None,
            max_deletions: 1,
            orphan_grace: std::time::Duration::from_secs(1),
            notify: Default::default(),
            encryption: None,
            guard: Default::default(),
            drill: None,
            run_at_start: RunAtStart::Missed,
            sources: Vec::new(),
        };
        assert_eq!(
            interval(&s, &job, at("2026-12-01T12:00:00Z")),
            Some(chrono::Duration::days(1))
        );
    }
}
