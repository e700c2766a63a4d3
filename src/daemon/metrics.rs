//! Per-job state of the daemon, rendered as Prometheus text (exposition
//! format 0.0.4) and as the `/readyz` verdict.
//!
//! Hand-written: a dozen gauges and counters with one or two labels do not
//! justify a metrics crate and its registry. Names follow Prometheus
//! conventions: `ccbackup_` prefix, base units in the name (`_seconds`,
//! `_bytes`), counters end in `_total`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// Outcomes counted in `ccbackup_runs_total`, always exported (zero
/// included) so `rate()` and alerts work before the first failure.
pub const OUTCOMES: [&str; 4] = ["success", "failure", "locked", "cancelled"];

#[derive(Debug, Clone, Default)]
pub struct JobStats {
    pub last_success: Option<DateTime<Utc>>,
    pub last_run_duration: Option<Duration>,
    pub last_run_bytes: Option<u64>,
    pub last_outcome: Option<&'static str>,
    pub last_error: Option<String>,
    pub runs: BTreeMap<&'static str, u64>,
    pub backups_stored: Option<u64>,
    /// Backups whose manifest exists but cannot be used.
    pub backups_damaged: Option<u64>,
    pub retention_deletions: u64,
    pub lock_waits: u64,
    pub skipped_runs: u64,
    pub running: bool,
    pub next_run: Option<DateTime<Utc>>,
    /// The first scheduled run after the daemon started (readiness grace).
    pub first_due: Option<DateTime<Utc>>,
    pub max_age: Option<Duration>,
    /// Per copy store (display URL, no credentials).
    pub copies: BTreeMap<String, CopyStats>,
}

/// How copies of a job's backups to one copy store went.
#[derive(Debug, Clone, Default)]
pub struct CopyStats {
    /// Start time of the newest backup copied there.
    pub last_success: Option<DateTime<Utc>>,
    pub failures: u64,
}

impl JobStats {
    /// Records the copy of the backup started at `backup_started` to
    /// `store`: `copied` false counts a failure.
    pub fn record_copy(&mut self, store: &str, copied: bool, backup_started: DateTime<Utc>) {
        let c = self.copies.entry(store.to_owned()).or_default();
        if copied {
            c.last_success = Some(backup_started);
        } else {
            c.failures += 1;
        }
    }
}

/// Shared between the scheduler, the run tasks and the HTTP server. A plain
/// mutex: held only to copy or bump a few fields, never across an await.
#[derive(Debug)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<String, JobStats>>,
    started: DateTime<Utc>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Utc::now())
    }
}

/// One job's entry in the `/readyz` body.
#[derive(Debug, Serialize)]
pub struct JobReadiness {
    pub job: String,
    pub ready: bool,
    pub reason: String,
    pub last_success: Option<String>,
    pub last_outcome: Option<String>,
    pub next_run: Option<String>,
    pub max_age_seconds: Option<u64>,
    pub running: bool,
}

#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub jobs: Vec<JobReadiness>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Metrics {
    pub fn new(started: DateTime<Utc>) -> Self {
        Self {
            jobs: Mutex::new(BTreeMap::new()),
            started,
        }
    }

    pub fn started(&self) -> DateTime<Utc> {
        self.started
    }

    /// Runs `f` on the stats of `job`, creating them if needed.
    pub fn update<R>(&self, job: &str, f: impl FnOnce(&mut JobStats) -> R) -> R {
        // A poisoned lock only means a panic elsewhere mid-update; the
        // counters are still usable.
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        f(jobs.entry(job.to_owned()).or_default())
    }

    pub fn get(&self, job: &str) -> Option<JobStats> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.get(job).cloned()
    }

    /// Keeps only the named jobs (after a reload removed some).
    pub fn retain(&self, names: &[String]) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.retain(|k, _| names.contains(k));
    }

    fn snapshot(&self) -> BTreeMap<String, JobStats> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The `/readyz` rule, per job with a `max_age`:
    /// * it has a known success (from the store at start-up, or since):
    ///   ready while `now - last_success <= max_age`;
    /// * it has none: ready until `max_age` after its first scheduled run
    ///   after start-up (or after start-up itself when it has no schedule),
    ///   so a fresh deployment is not unready before it had a chance.
    ///
    /// Jobs without `max_age` are always ready.
    pub fn readiness(&self, now: DateTime<Utc>) -> Readiness {
        let mut all = true;
        let jobs = self
            .snapshot()
            .into_iter()
            .map(|(name, s)| {
                let (ready, reason) = match s.max_age {
                    None => (true, "no max_age set".to_owned()),
                    Some(max) => {
                        let max_c =
                            chrono::Duration::from_std(max).unwrap_or(chrono::Duration::MAX);
                        match s.last_success {
                            Some(t) if now - t <= max_c => (
                                true,
                                format!("last success {} s ago", (now - t).num_seconds()),
                            ),
                            Some(t) => (
                                false,
                                format!(
                                    "last success {} s ago is older than max_age {} s",
                                    (now - t).num_seconds(),
                                    max.as_secs()
                                ),
                            ),
                            None => {
                                let due = s.first_due.unwrap_or(self.started);
                                let deadline = due + max_c;
                                if now > deadline {
                                    (
                                        false,
                                        format!(
                                            "no successful backup; first run was due {}",
                                            ts(due)
                                        ),
                                    )
                                } else {
                                    (
                                        true,
                                        format!(
                                            "no successful backup yet; overdue after {}",
                                            ts(deadline)
                                        ),
                                    )
                                }
                            }
                        }
                    }
                };
                all &= ready;
                JobReadiness {
                    job: name,
                    ready,
                    reason,
                    last_success: s.last_success.map(ts),
                    last_outcome: s.last_outcome.map(str::to_owned),
                    next_run: s.next_run.map(ts),
                    max_age_seconds: s.max_age.map(|d| d.as_secs()),
                    running: s.running,
                }
            })
            .collect();
        Readiness { ready: all, jobs }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let jobs = self.snapshot();
        let mut out = String::with_capacity(4096);
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        let per_job = |f: &dyn Fn(&JobStats) -> Option<String>| -> Vec<(String, String)> {
            jobs.iter()
                .filter_map(|(name, s)| f(s).map(|v| (format!("job=\"{}\"", escape(name)), v)))
                .collect()
        };

        family(
            "ccbackup_last_success_timestamp_seconds",
            "gauge",
            "Unix time when the job's last successful backup started.",
            per_job(&|s| s.last_success.map(|t| secs(t).to_string())),
        );
        family(
            "ccbackup_last_run_duration_seconds",
            "gauge",
            "Wall time of the job's last run (backup and retention).",
            per_job(&|s| {
                s.last_run_duration
                    .map(|d| format!("{:.3}", d.as_secs_f64()))
            }),
        );
        family(
            "ccbackup_last_run_bytes",
            "gauge",
            "Bytes stored (compressed) by the job's last run.",
            per_job(&|s| s.last_run_bytes.map(|b| b.to_string())),
        );
        let mut runs = Vec::new();
        for (name, s) in &jobs {
            for o in OUTCOMES {
                runs.push((
                    format!("job=\"{}\",outcome=\"{o}\"", escape(name)),
                    s.runs.get(o).copied().unwrap_or(0).to_string(),
                ));
            }
        }
        family(
            "ccbackup_runs_total",
            "counter",
            "Runs of the job by outcome (success, failure, locked, cancelled).",
            runs,
        );
        family(
            "ccbackup_backups_stored",
            "gauge",
            "Complete backups of the job in the store, as last listed.",
            per_job(&|s| s.backups_stored.map(|n| n.to_string())),
        );
        family(
            "ccbackup_backups_damaged",
            "gauge",
            "Backups of the job whose manifest exists but is unreadable or does not match its place; never counted or pruned.",
            per_job(&|s| s.backups_damaged.map(|n| n.to_string())),
        );
        family(
            "ccbackup_retention_deletions_total",
            "counter",
            "Backups deleted by retention after successful runs.",
            per_job(&|s| Some(s.retention_deletions.to_string())),
        );
        let per_copy = |f: &dyn Fn(&CopyStats) -> Option<String>| -> Vec<(String, String)> {
            jobs.iter()
                .flat_map(|(name, s)| {
                    s.copies.iter().filter_map(move |(store, c)| {
                        f(c).map(|v| {
                            let labels =
                                format!("job=\"{}\",store=\"{}\"", escape(name), escape(store));
                            (labels, v)
                        })
                    })
                })
                .collect()
        };
        family(
            "ccbackup_copy_last_success_timestamp_seconds",
            "gauge",
            "Unix time when the newest backup of the job copied to the copy store started.",
            per_copy(&|c| c.last_success.map(|t| secs(t).to_string())),
        );
        family(
            "ccbackup_copy_failures_total",
            "counter",
            "Copies of the job's backups to the copy store that failed (the primary backup stays complete).",
            per_copy(&|c| Some(c.failures.to_string())),
        );
        family(
            "ccbackup_lock_waits_total",
            "counter",
            "Times a run found the job's repository lock held by another owner.",
            per_job(&|s| Some(s.lock_waits.to_string())),
        );
        family(
            "ccbackup_skipped_runs_total",
            "counter",
            "Scheduled ticks skipped because the previous run of the job was still going.",
            per_job(&|s| Some(s.skipped_runs.to_string())),
        );
        family(
            "ccbackup_job_running",
            "gauge",
            "1 while a run of the job is in progress.",
            per_job(&|s| Some(u8::from(s.running).to_string())),
        );
        family(
            "ccbackup_next_run_timestamp_seconds",
            "gauge",
            "Unix time of the job's next scheduled run.",
            per_job(&|s| s.next_run.map(|t| secs(t).to_string())),
        );
        let _ = writeln!(
            out,
            "# HELP ccbackup_start_time_seconds Unix time the daemon started.\n\
             # TYPE ccbackup_start_time_seconds gauge\n\
             ccbackup_start_time_seconds {}",
            secs(self.started)
        );
        let _ = writeln!(
            out,
            "# HELP ccbackup_build_info Version of the running ccbackup.\n\
             # TYPE ccbackup_build_info gauge\n\
             ccbackup_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }
}

fn secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn renders_families_with_labels() {
        let m = Metrics::new(at("2026-11-25T00:00:00Z"));
        m.update("db \"x\"", |s| {
            s.last_success = Some(at("2026-11-25T01:00:00Z"));
            *s.runs.entry("success").or_default() += 2;
            s.last_run_bytes = Some(1234);
        });
        let text = m.render();
        assert!(text.contains("# TYPE ccbackup_runs_total counter"));
        assert!(text.contains("ccbackup_runs_total{job=\"db \\\"x\\\"\",outcome=\"success\"} 2"));
        assert!(text.contains("ccbackup_runs_total{job=\"db \\\"x\\\"\",outcome=\"failure\"} 0"));
        assert!(text.contains("ccbackup_last_run_bytes{job=\"db \\\"x\\\"\"} 1234"));
        assert!(text
            .contains("ccbackup_last_success_timestamp_seconds{job=\"db \\\"x\\\"\"} 1795568400"));
    }

    #[test]
    fn copy_metrics_are_labelled_by_job_and_store() {
        let m = Metrics::new(at("2026-11-25T00:00:00Z"));
        m.update("j", |s| {
            s.record_copy("s3://b/p", true, at("2026-11-25T01:00:00Z"));
            s.record_copy("file:///x/", false, at("2026-11-25T01:00:00Z"));
            s.record_copy("file:///x/", false, at("2026-11-25T02:00:00Z"));
        });
        let text = m.render();
        assert!(text.contains("# TYPE ccbackup_copy_failures_total counter"));
        assert!(text.contains(
            "ccbackup_copy_last_success_timestamp_seconds{job=\"j\",store=\"s3://b/p\"} 1795568400"
        ));
        assert!(text.contains("ccbackup_copy_failures_total{job=\"j\",store=\"s3://b/p\"} 0"));
        assert!(text.contains("ccbackup_copy_failures_total{job=\"j\",store=\"file:///x/\"} 2"));
        assert!(!text.contains(
            "ccbackup_copy_last_success_timestamp_seconds{job=\"j\",store=\"file:///x/\"}"
        ));
    }

    #[test]
    fn readiness_follows_max_age_and_first_due() {
        let start = at("2026-11-25T00:00:00Z");
        let m = Metrics::new(start);
        m.update("a", |s| {
            s.max_age = Some(Duration::from_secs(3600));
            s.first_due = Some(at("2026-11-25T02:00:00Z"));
        });
        assert!(m.readiness(at("2026-11-25T02:59:00Z")).ready);
        assert!(!m.readiness(at("2026-11-25T03:01:00Z")).ready);
        m.update("a", |s| s.last_success = Some(at("2026-11-25T03:00:00Z")));
        assert!(m.readiness(at("2026-11-25T03:30:00Z")).ready);
        assert!(!m.readiness(at("2026-11-25T04:30:00Z")).ready);
        m.update("b", |_| {});
        let r = m.readiness(at("2026-11-25T03:30:00Z"));
        assert_eq!(r.jobs.len(), 2);
    }
}
