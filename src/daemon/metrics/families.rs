//! The per-job and per-copy families of the metrics exposition, one
//! named step per group, in the order `/metrics` has always printed them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{escape, outcomes, secs, CopyStats, JobStats};

type Samples = Vec<(String, String)>;

/// One metric family: its `HELP` and `TYPE` lines, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: Samples) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// One sample per job that has a value, labelled with the job.
fn per_job(jobs: &BTreeMap<String, JobStats>, f: &dyn Fn(&JobStats) -> Option<String>) -> Samples {
    jobs.iter()
        .filter_map(|(name, s)| f(s).map(|v| (format!("job=\"{}\"", escape(name)), v)))
        .collect()
}

/// One sample per job and copy store that has a value.
fn per_copy(
    jobs: &BTreeMap<String, JobStats>,
    f: &dyn Fn(&CopyStats) -> Option<String>,
) -> Samples {
    jobs.iter()
        .flat_map(|(name, s)| {
            s.copies.iter().filter_map(move |(store, c)| {
                f(c).map(|v| {
                    let labels = format!("job=\"{}\",store=\"{}\"", escape(name), escape(store));
                    (labels, v)
                })
            })
        })
        .collect()
}

/// The families of the jobs' runs, backups and retention.
pub(super) fn render_jobs(out: &mut String, jobs: &BTreeMap<String, JobStats>) {
    family(
        out,
        "ccbackup_last_success_timestamp_seconds",
        "gauge",
        "Unix time when the job's newest good backup (complete, not suspicious) started.",
        per_job(jobs, &|s| s.last_success.map(|t| secs(t).to_string())),
    );
    family(
        out,
        "ccbackup_last_run_duration_seconds",
        "gauge",
        "Wall time of the job's last run (backup and retention).",
        per_job(jobs, &|s| {
            s.last_run_duration
                .map(|d| format!("{:.3}", d.as_secs_f64()))
        }),
    );
    family(
        out,
        "ccbackup_last_run_bytes",
        "gauge",
        "Bytes stored (compressed) by the job's last run.",
        per_job(jobs, &|s| s.last_run_bytes.map(|b| b.to_string())),
    );
    let mut runs = Vec::new();
    for (name, s) in jobs {
        for o in outcomes() {
            runs.push((
                format!("job=\"{}\",outcome=\"{o}\"", escape(name)),
                s.runs.get(o).copied().unwrap_or(0).to_string(),
            ));
        }
    }
    let mut last = Vec::new();
    for (name, s) in jobs {
        if let Some(o) = s.last_outcome {
            last.push((
                format!("job=\"{}\",outcome=\"{o}\"", escape(name)),
                "1".to_owned(),
            ));
        }
    }
    family(
        out,
        "ccbackup_last_run_outcome",
        "gauge",
        "1 for the outcome of the job's last run (alert on outcome=\"failure\").",
        last,
    );
    family(
        out,
        "ccbackup_runs_total",
        "counter",
        "Runs of the job by outcome (success, failure, suspicious, locked, cancelled).",
        runs,
    );
    family(
            out,
            "ccbackup_last_backup_suspicious",
            "gauge",
            "1 when the job's newest complete backup is marked suspicious by the shrink guard (kept, not pruned after, not counted as good).",
            per_job(jobs, &|s| s.last_backup_suspicious.map(|b| u8::from(b).to_string())),
        );
    family(
        out,
        "ccbackup_backups_stored",
        "gauge",
        "Complete backups of the job in the store, as last listed.",
        per_job(jobs, &|s| s.backups_stored.map(|n| n.to_string())),
    );
    family(
            out,
            "ccbackup_backups_damaged",
            "gauge",
            "Backups of the job whose manifest exists but is unreadable or does not match its place; never counted or pruned.",
            per_job(jobs, &|s| s.backups_damaged.map(|n| n.to_string())),
        );
    family(
        out,
        "ccbackup_retention_deletions_total",
        "counter",
        "Backups deleted by retention after successful runs.",
        per_job(jobs, &|s| Some(s.retention_deletions.to_string())),
    );
}

/// The copy families, then lock waits, skipped runs and the schedule.
pub(super) fn render_copies_and_schedule(out: &mut String, jobs: &BTreeMap<String, JobStats>) {
    family(
        out,
        "ccbackup_copy_last_success_timestamp_seconds",
        "gauge",
        "Unix time when the newest backup of the job copied to the copy store started.",
        per_copy(jobs, &|c| c.last_success.map(|t| secs(t).to_string())),
    );
    family(
            out,
            "ccbackup_copy_failures_total",
            "counter",
            "Copies of the job's backups to the copy store that failed (the primary backup stays complete).",
            per_copy(jobs, &|c| Some(c.failures.to_string())),
        );
    family(
        out,
        "ccbackup_lock_waits_total",
        "counter",
        "Times a run found the job's repository lock held by another owner.",
        per_job(jobs, &|s| Some(s.lock_waits.to_string())),
    );
    family(
            out,
            "ccbackup_skipped_runs_total",
            "counter",
            "Scheduled backups that did not run (the previous backup still running); each is logged with its reason and notified as a failure.",
            per_job(jobs, &|s| Some(s.skipped_runs.to_string())),
        );
    family(
        out,
        "ccbackup_job_running",
        "gauge",
        "1 while a run of the job is in progress.",
        per_job(jobs, &|s| Some(u8::from(s.running).to_string())),
    );
    family(
        out,
        "ccbackup_next_run_timestamp_seconds",
        "gauge",
        "Unix time of the job's next scheduled run.",
        per_job(jobs, &|s| s.next_run.map(|t| secs(t).to_string())),
    );
}
