//! One slot per job: what a tick does when the job is busy.
//!
//! A backup and a restore drill of one job never run at the same time (a
//! drill reads what retention may be deleting, and both load the same
//! database server), and two backups of one job never overlap. A tick that
//! finds the slot busy waits for it: at most one waiting backup and one
//! waiting drill per job, the backup first. A backup tick is skipped only
//! when a backup is already waiting (the job's runs take longer than two
//! periods); a drill tick when a drill is running or waiting. A skipped
//! backup is logged with that reason, counted and notified as a failure.

use chrono::{DateTime, Utc};

use super::TickKind;
use crate::backup::report::{self, Outcome, Report};
use crate::config::{Config, JobConfig};
use crate::notify;

/// What a tick does, given what the job's slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    Start,
    /// Wait for the running one; `true`: ahead of a waiting drill.
    Wait {
        first: bool,
    },
    Skip(&'static str),
}

/// The pure rule. `running` is the kind in the slot, `waiting` the kinds
/// already queued behind it.
pub(super) fn decide(tick: TickKind, running: Option<TickKind>, waiting: &[TickKind]) -> Decision {
    let Some(running) = running else {
        return Decision::Start;
    };
    match (tick, running) {
        (TickKind::Backup, _) if waiting.contains(&TickKind::Backup) => Decision::Skip(
            "the previous backup of this job is still running and the next one is already waiting for it",
        ),
        (TickKind::Drill, TickKind::Drill) => {
            Decision::Skip("the previous restore drill of this job is still running")
        }
        (TickKind::Drill, TickKind::Backup) if waiting.contains(&TickKind::Drill) => {
            Decision::Skip("a restore drill of this job is already waiting")
        }
        // A run that overran (or started late, after a stall) delays the
        // next one instead of costing it its turn.
        (TickKind::Backup, _) => Decision::Wait { first: true },
        (TickKind::Drill, TickKind::Backup) => Decision::Wait { first: false },
    }
}

/// The failure report of a scheduled backup that did not run, for the
/// job's notification channels (a healthchecks `fail` ping, webhooks...).
pub(super) fn skipped_report(
    job: &str,
    scheduled: DateTime<Utc>,
    reason: &str,
    now: DateTime<Utc>,
) -> Report {
    Report {
        run_id: report::new_run_id(),
        kind: "backup",
        job: job.to_owned(),
        backup_id: None,
        outcome: Outcome::Failure,
        started_at: report::rfc3339(now),
        finished_at: report::rfc3339(now),
        duration_seconds: 0.0,
        stored_bytes: 0,
        raw_bytes: 0,
        attempts: 0,
        deletions: 0,
        error: Some(format!(
            "the backup scheduled for {} was skipped: {reason}",
            report::rfc3339(scheduled)
        )),
        host: crate::sys::hostname(),
        reasons: Vec::new(),
        copy_errors: Vec::new(),
    }
}

/// Sends a skipped backup's failure report in the background: the
/// scheduler loop does not wait for notification channels.
pub(super) fn notify_skipped(
    client: &reqwest::Client,
    cfg: &Config,
    job: &JobConfig,
    report: Report,
) {
    let targets = notify::targets(cfg, job, notify::Event::Finish(&report));
    if targets.is_empty() {
        return;
    }
    let client = client.clone();
    tokio::spawn(async move {
        notify::send(&client, &targets, notify::Event::Finish(&report)).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use TickKind::{Backup, Drill};

    #[test]
    fn a_backup_is_never_skipped_for_a_drill() {
        assert_eq!(decide(Backup, None, &[]), Decision::Start);
        assert_eq!(
            decide(Backup, Some(Drill), &[]),
            Decision::Wait { first: true }
        );
        assert_eq!(
            decide(Backup, Some(Drill), &[Drill]),
            Decision::Wait { first: true }
        );
        // An overrunning (or late) backup delays the next one, once.
        assert_eq!(
            decide(Backup, Some(Backup), &[]),
            Decision::Wait { first: true }
        );
        assert!(
            matches!(decide(Backup, Some(Backup), &[Backup]), Decision::Skip(r) if r.contains("still running"))
        );
        assert!(matches!(
            decide(Backup, Some(Drill), &[Backup]),
            Decision::Skip(_)
        ));
    }

    #[test]
    fn a_drill_waits_for_a_backup_once() {
        assert_eq!(decide(Drill, None, &[]), Decision::Start);
        assert_eq!(
            decide(Drill, Some(Backup), &[]),
            Decision::Wait { first: false }
        );
        assert!(matches!(
            decide(Drill, Some(Backup), &[Drill]),
            Decision::Skip(_)
        ));
        assert!(matches!(decide(Drill, Some(Drill), &[]), Decision::Skip(_)));
    }

    #[test]
    fn a_skipped_backup_reports_a_failure_with_its_reason() {
        let t = DateTime::parse_from_rfc3339("2027-01-01T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = skipped_report(
            "j",
            t,
            "the previous backup of this job is still running",
            t,
        );
        assert_eq!(r.outcome, Outcome::Failure);
        let e = r.error.unwrap();
        assert!(
            e.contains("2027-01-01T02:00:00Z") && e.contains("still running"),
            "{e}"
        );
    }
}
