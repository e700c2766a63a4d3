//! Per-job state of the daemon, rendered as Prometheus text (exposition
//! format 0.0.4) and as the `/readyz` verdict.
//!
//! Hand-written: about two dozen gauge and counter families with one or two
//! labels do not justify a metrics crate and its registry. Names follow Prometheus
//! conventions: `ccbackup_` prefix, base units in the name (`_seconds`,
//! `_bytes`), counters end in `_total`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::clock::Clock;

mod families;
pub mod tampered;

/// Outcomes counted in `ccbackup_runs_total`, always exported (zero
/// included) so `rate()` and alerts work before the first failure.
/// Every run outcome, exported as zero until it happens.
pub fn outcomes() -> impl Iterator<Item = &'static str> {
    crate::backup::report::Outcome::ALL
        .iter()
        .map(|o| o.as_str())
}

#[derive(Debug, Clone, Default)]
pub struct JobStats {
    /// Start of the job's newest good backup (complete, trusted, not
    /// suspicious), from the store at start-up and after every run.
    pub last_success: Option<DateTime<Utc>>,
    /// Whether the job's newest complete backup is marked suspicious.
    pub last_backup_suspicious: Option<bool>,
    /// The oldest trace in the store of an attempt that did not give a
    /// good backup (a suspicious backup, a leftover, a damaged manifest);
    /// with no good backup at all, readiness counts from here.
    pub first_attempt: Option<DateTime<Utc>>,
    /// The store could not be listed at start-up, so the last good
    /// backup is unknown.
    pub store_error: Option<String>,
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
    /// Scheduled restore drills, for jobs with `verify:`.
    pub drill: Option<DrillStats>,
    /// The last tamper check on a versioned store (see
    /// [`super::tamper`]): one line per tampered backup; `None` before a
    /// check, or when the store keeps no versions.
    pub tampered: Option<Vec<String>>,
    /// The same check's findings, for the status page.
    pub tampered_backups: Vec<crate::retention::tamper::Tampered>,
    /// The report of the last run since the daemon started (status page).
    pub last_report: Option<std::sync::Arc<crate::backup::report::Report>>,
    /// The newest backups in the store, as last listed (status page).
    pub held: Option<std::sync::Arc<super::held::Held>>,
}

/// What the daemon knows about a job's restore drills.
#[derive(Debug, Clone, Default)]
pub struct DrillStats {
    pub last_success: Option<DateTime<Utc>>,
    pub last_outcome: Option<&'static str>,
    pub last_duration: Option<Duration>,
    pub runs: BTreeMap<&'static str, u64>,
    /// The first drill due after start-up (readiness grace).
    pub first_due: Option<DateTime<Utc>>,
    pub max_age: Option<Duration>,
    /// The last drill's report (status page).
    pub last_report: Option<std::sync::Arc<crate::backup::report::Report>>,
}

/// Outcomes of a drill, exported as zero until they happen.
pub const DRILL_OUTCOMES: [&str; 4] = ["success", "failure", "skipped", "cancelled"];

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
    /// What `/readyz` judges staleness against.
    clock: Clock,
    /// The daemon is still reading the store at start-up: nothing is known
    /// about the jobs' last good backups yet.
    seeding: AtomicBool,
    /// The last configuration reload (SIGHUP).
    reload: Mutex<super::reload::ReloadStatus>,
    /// Manifests are signed and only signed ones count
    /// (`ccbackup_store_authenticated`).
    authenticated: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::with_clock(Clock::system())
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
    /// Why it is not ready, naming each job that is not; null when ready.
    pub reason: Option<String>,
    pub jobs: Vec<JobReadiness>,
    /// The configuration the daemon runs with: a rejected reload shows
    /// here (it does not make the daemon unready: the previous
    /// configuration still runs).
    pub config: super::reload::ReloadStatus,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Metrics {
    /// Metrics of a daemon started at `started`, judging readiness by the
    /// system clock.
    pub fn new(started: DateTime<Utc>) -> Self {
        Self {
            jobs: Mutex::new(BTreeMap::new()),
            started,
            clock: Clock::system(),
            seeding: AtomicBool::new(false),
            reload: Mutex::new(super::reload::ReloadStatus::started(started)),
            authenticated: AtomicBool::new(false),
        }
    }

    /// Metrics of a daemon starting now by `clock`, judging readiness by it.
    pub fn with_clock(clock: Clock) -> Self {
        Self::new(clock.now()).clocked(clock)
    }

    fn clocked(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Records a configuration reload attempt (`Err`: why it was rejected).
    pub fn record_reload(&self, result: Result<(), String>) {
        let now = self.clock.now();
        self.reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(now, result);
    }

    /// The last configuration reload.
    pub fn reload_status(&self) -> super::reload::ReloadStatus {
        self.reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The time readiness is judged at.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Marks the start-up listing of the store as running (`true`) or
    /// done; while it runs `/readyz` is not ready.
    pub fn set_seeding(&self, seeding: bool) {
        self.seeding.store(seeding, Ordering::SeqCst);
    }

    /// Whether the store's manifests are checked against a signing key.
    pub fn set_authenticated(&self, yes: bool) {
        self.authenticated.store(yes, Ordering::SeqCst);
    }

    pub fn authenticated(&self) -> bool {
        self.authenticated.load(Ordering::SeqCst)
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

    pub fn snapshot(&self) -> BTreeMap<String, JobStats> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The `/readyz` rule, per job with a `max_age`:
    /// * it has a good backup (the newest complete, trusted, not suspicious
    ///   one in the store, read at start-up and after every run): ready
    ///   while `now - last_success <= max_age`;
    /// * it has none: ready until `max_age` after the earlier of its first
    ///   scheduled run after start-up (start-up itself without a schedule)
    ///   and the oldest failed attempt the store shows (a suspicious
    ///   backup, a leftover, a damaged manifest), so a fresh deployment is
    ///   not unready before it had a chance, while one that keeps failing
    ///   across restarts still turns unready;
    /// * the store could not be listed at start-up and no run succeeded
    ///   since: not ready (the last good backup is unknown).
    ///
    /// Jobs without `max_age` are always ready. While the start-up listing
    /// runs nothing is known yet, so nothing is ready.
    pub fn readiness(&self, now: DateTime<Utc>) -> Readiness {
        if self.seeding.load(Ordering::SeqCst) {
            return Readiness {
                ready: false,
                reason: Some("starting: reading the store for each job's last good backup".into()),
                jobs: Vec::new(),
                config: self.reload_status(),
            };
        }
        let jobs: Vec<JobReadiness> = self
            .snapshot()
            .into_iter()
            .map(|(name, s)| {
                let (mut ready, mut reason) = job_readiness(&s, self.started, now);
                if let Some(t) = s.tampered.as_ref().filter(|t| !t.is_empty()) {
                    let treason = tampered::readiness_reason(t);
                    reason = if ready {
                        treason
                    } else {
                        format!("{reason}; {treason}")
                    };
                    ready = false;
                }
                if let Some(d) = &s.drill {
                    let (dready, dreason) = drill_readiness(d, self.started, now);
                    if !dready {
                        reason = if ready {
                            dreason
                        } else {
                            format!("{reason}; {dreason}")
                        };
                        ready = false;
                    }
                }
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
        let unready: Vec<String> = jobs
            .iter()
            .filter(|j| !j.ready)
            .map(|j| format!("job `{}`: {}", j.job, j.reason))
            .collect();
        Readiness {
            ready: unready.is_empty(),
            reason: (!unready.is_empty()).then(|| unready.join("; ")),
            jobs,
            config: self.reload_status(),
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let jobs = self.snapshot();
        let mut out = String::with_capacity(4096);
        families::render_jobs(&mut out, &jobs);
        families::render_copies_and_schedule(&mut out, &jobs);
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
        let _ = writeln!(
            out,
            "# HELP ccbackup_store_authenticated 1 when manifests are signed and only signed ones count; 0 when anyone who can write to the store can plant backups that list, restore and retention trust.\n\
             # TYPE ccbackup_store_authenticated gauge\n\
             ccbackup_store_authenticated {}",
            u8::from(self.authenticated.load(Ordering::SeqCst))
        );
        self.reload_status().render(&mut out);
        render_drills(&mut out, &jobs);
        tampered::render(&mut out, &jobs);
        super::process::render(&mut out, &super::process::read());
        out
    }
}

/// One job's verdict and its reason (see [`Metrics::readiness`]).
fn job_readiness(s: &JobStats, started: DateTime<Utc>, now: DateTime<Utc>) -> (bool, String) {
    let Some(max) = s.max_age else {
        return (true, "no max_age set".to_owned());
    };
    let max_c = chrono::Duration::from_std(max).unwrap_or(chrono::Duration::MAX);
    if let Some(t) = s.last_success {
        let age = (now - t).num_seconds();
        return if now - t <= max_c {
            (true, format!("last success {age} s ago"))
        } else {
            (
                false,
                format!(
                    "last success {} ({age} s ago) is older than max_age {} s",
                    ts(t),
                    max.as_secs()
                ),
            )
        };
    }
    if let Some(e) = &s.store_error {
        return (
            false,
            format!("the store could not be listed at start-up, so the last good backup is unknown: {e}"),
        );
    }
    let due = s.first_due.unwrap_or(started);
    let (from, what) = match s.first_attempt {
        Some(a) if a < due => (
            a,
            "the store shows a failed attempt (suspicious or incomplete backup) at",
        ),
        _ => (due, "first run was due"),
    };
    let deadline = from
        .checked_add_signed(max_c)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if now > deadline {
        (false, format!("no successful backup; {what} {}", ts(from)))
    } else {
        (
            true,
            format!("no successful backup yet; overdue after {}", ts(deadline)),
        )
    }
}

/// The `ccbackup_verify_*` families, for jobs with scheduled drills.
fn render_drills(out: &mut String, jobs: &BTreeMap<String, JobStats>) {
    let drills: Vec<(&String, &DrillStats)> = jobs
        .iter()
        .filter_map(|(n, s)| s.drill.as_ref().map(|d| (n, d)))
        .collect();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let label = |n: &str| format!("job=\"{}\"", escape(n));
    family(
        "ccbackup_verify_last_success_timestamp_seconds",
        "gauge",
        "Unix time when the job's last successful restore drill finished.",
        drills
            .iter()
            .filter_map(|(n, d)| d.last_success.map(|t| (label(n), secs(t).to_string())))
            .collect(),
    );
    family(
        "ccbackup_verify_last_outcome",
        "gauge",
        "1 for the outcome of the job's last restore drill (alert on outcome=\"failure\").",
        drills
            .iter()
            .filter_map(|(n, d)| {
                d.last_outcome
                    .map(|o| (format!("{},outcome=\"{o}\"", label(n)), "1".to_owned()))
            })
            .collect(),
    );
    family(
        "ccbackup_verify_last_duration_seconds",
        "gauge",
        "Wall time of the job's last restore drill.",
        drills
            .iter()
            .filter_map(|(n, d)| {
                d.last_duration
                    .map(|x| (label(n), format!("{:.3}", x.as_secs_f64())))
            })
            .collect(),
    );
    let mut runs = Vec::new();
    for (n, d) in &drills {
        for o in DRILL_OUTCOMES {
            runs.push((
                format!("{},outcome=\"{o}\"", label(n)),
                d.runs.get(o).copied().unwrap_or(0).to_string(),
            ));
        }
    }
    family(
        "ccbackup_verify_runs_total",
        "counter",
        "Restore drills of the job by outcome (success, failure, skipped, cancelled).",
        runs,
    );
}

/// Pure: whether a job's restore drills are recent enough for `/readyz`.
/// Without `verify.max_age` drills never affect readiness; with it, the
/// last successful drill must be younger, and a job whose drills never
/// succeeded is given until `max_age` after its first drill was due.
fn drill_readiness(d: &DrillStats, started: DateTime<Utc>, now: DateTime<Utc>) -> (bool, String) {
    let Some(max) = d.max_age else {
        return (true, "no verify.max_age set".to_owned());
    };
    let max_c = chrono::Duration::from_std(max).unwrap_or(chrono::Duration::MAX);
    match d.last_success {
        Some(t) if now - t <= max_c => (
            true,
            format!(
                "last restore drill succeeded {} s ago",
                (now - t).num_seconds()
            ),
        ),
        Some(t) => (
            false,
            format!(
                "last successful restore drill {} is older than verify.max_age {} s",
                ts(t),
                max.as_secs()
            ),
        ),
        None => {
            let from = d.first_due.unwrap_or(started);
            let deadline = from
                .checked_add_signed(max_c)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            if now > deadline {
                (
                    false,
                    format!(
                        "no successful restore drill; the first was due {}",
                        ts(from)
                    ),
                )
            } else {
                (
                    true,
                    format!("no restore drill yet; overdue after {}", ts(deadline)),
                )
            }
        }
    }
}

fn secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// Label values escape backslash, double quote and newline.
pub(super) fn escape(v: &str) -> String {
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
        assert!(text.contains("process_resident_memory_bytes "));
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
    fn drills_gate_readiness_only_with_their_max_age() {
        let start = at("2026-11-25T00:00:00Z");
        let mut d = DrillStats {
            first_due: Some(at("2026-11-25T01:00:00Z")),
            ..Default::default()
        };
        assert!(drill_readiness(&d, start, at("2026-12-25T00:00:00Z")).0);
        d.max_age = Some(Duration::from_secs(3600));
        assert!(drill_readiness(&d, start, at("2026-11-25T01:59:00Z")).0);
        let (ready, why) = drill_readiness(&d, start, at("2026-11-25T02:01:00Z"));
        assert!(
            !ready && why.contains("no successful restore drill"),
            "{why}"
        );
        d.last_success = Some(at("2026-11-25T02:00:00Z"));
        assert!(drill_readiness(&d, start, at("2026-11-25T02:30:00Z")).0);
        assert!(!drill_readiness(&d, start, at("2026-11-25T03:30:00Z")).0);

        let m = Metrics::new(start);
        m.update("a", |s| s.drill = Some(d.clone()));
        assert!(!m.readiness(at("2026-11-25T03:30:00Z")).ready);
        let text = m.render();
        assert!(
            text.contains("ccbackup_verify_last_success_timestamp_seconds{job=\"a\"}"),
            "{text}"
        );
        assert!(text.contains("ccbackup_verify_runs_total{job=\"a\",outcome=\"failure\"} 0"));
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

    #[test]
    fn a_job_without_a_good_backup_turns_unready_after_its_first_run_plus_max_age() {
        // A crash-looping sidecar restarts often; the first due run moves
        // with every start, but a failed attempt in the store does not.
        let m = Metrics::new(at("2026-11-25T10:00:00Z"));
        m.update("a", |s| {
            s.max_age = Some(Duration::from_secs(3600));
            s.first_due = Some(at("2026-11-26T03:00:00Z"));
        });
        let r = m.readiness(at("2026-11-26T03:59:59Z"));
        assert!(r.ready, "{r:?}");
        assert_eq!(r.reason, None);
        let r = m.readiness(at("2026-11-26T04:00:01Z"));
        assert!(!r.ready);
        assert_eq!(
            r.reason.as_deref(),
            Some("job `a`: no successful backup; first run was due 2026-11-26T03:00:00Z")
        );
        m.update("a", |s| s.first_attempt = Some(at("2026-11-25T08:00:00Z")));
        let r = m.readiness(at("2026-11-25T10:00:00Z"));
        assert!(!r.ready);
        assert!(r.jobs[0].reason.contains("failed attempt"), "{r:?}");
        // An attempt after the first due run does not shorten the grace.
        m.update("a", |s| s.first_attempt = Some(at("2026-11-26T03:30:00Z")));
        assert!(m.readiness(at("2026-11-26T03:59:00Z")).ready);
    }

    #[test]
    fn unknown_store_and_start_up_are_not_ready() {
        let m = Metrics::new(at("2026-11-25T10:00:00Z"));
        m.update("a", |s| {
            s.max_age = Some(Duration::from_secs(3600));
            s.store_error = Some("cannot list s3://b".into());
        });
        let r = m.readiness(at("2026-11-25T10:00:01Z"));
        assert!(!r.ready && r.jobs[0].reason.contains("cannot list s3://b"));
        // A job without max_age does not care.
        m.update("a", |s| s.max_age = None);
        assert!(m.readiness(at("2026-11-25T10:00:01Z")).ready);
        m.set_seeding(true);
        let r = m.readiness(at("2026-11-25T10:00:01Z"));
        assert!(!r.ready && r.jobs.is_empty(), "{r:?}");
        m.set_seeding(false);
        assert!(m.readiness(at("2026-11-25T10:00:01Z")).ready);
    }

    #[test]
    fn suspicious_runs_are_counted_and_flagged() {
        let m = Metrics::new(at("2026-11-25T00:00:00Z"));
        m.update("j", |s| {
            *s.runs.entry("suspicious").or_default() += 1;
            s.last_backup_suspicious = Some(true);
        });
        let text = m.render();
        assert!(text.contains("ccbackup_runs_total{job=\"j\",outcome=\"suspicious\"} 1"));
        assert!(text.contains("ccbackup_runs_total{job=\"j\",outcome=\"success\"} 0"));
        assert!(text.contains("ccbackup_last_backup_suspicious{job=\"j\"} 1"));
    }
}
