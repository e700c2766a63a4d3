//! The one report of a finished run. The log event, `run-now --json`, the
//! webhook body, the Slack/email text, the healthchecks body and the
//! daemon's metrics are all made from it, so they share one set of field
//! names and one notion of outcome.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::backup::runner::{RunError, RunReport};
use crate::error::chain;

/// How a run ended. Everything but `Success` is reported as a failure to
/// monitors and exits non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A complete backup, and retention (if any) succeeded.
    Success,
    /// No complete backup, or retention failed after one.
    Failure,
    /// A complete backup that looks wrong (a source shrank); the reasons
    /// say why.
    Suspicious,
    /// Another process holds the job's lock; nothing was written.
    Locked,
    /// Stopped by a signal or by the daemon's shutdown.
    Cancelled,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Suspicious,
        Outcome::Locked,
        Outcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Suspicious => "suspicious",
            Outcome::Locked => "locked",
            Outcome::Cancelled => "cancelled",
        }
    }

    pub fn is_success(self) -> bool {
        self == Outcome::Success
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fresh run ID (a random UUID): made once per scheduled or manual run,
/// before any retry, so every attempt and every notification of the run
/// carries the same one. healthchecks.io takes it as `rid`.
pub fn new_run_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// The event field whose value is a JSON object that the JSON log format
/// merges into the event's own fields (`report = %json`).
pub const LOG_REPORT_FIELD: &str = "report";

/// Seconds between two instants, to the millisecond: finer digits are
/// noise in a report.
pub fn duration_seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let ms = (to - from).num_milliseconds().max(0);
    ms as f64 / 1000.0
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The report of one run (all its attempts).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub run_id: String,
    /// `backup` for a backup run, `verify` for a scheduled restore drill.
    pub kind: &'static str,
    pub job: String,
    /// Set whenever a complete backup was written, even if the run then
    /// failed (retention) or is suspicious.
    pub backup_id: Option<String>,
    pub outcome: Outcome,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub attempts: u32,
    pub deletions: usize,
    pub error: Option<String>,
    pub host: String,
    /// Why a complete backup is suspicious; empty otherwise.
    pub reasons: Vec<String>,
    /// Copies (3-2-1) that failed; the backup itself stays complete.
    pub copy_errors: Vec<String>,
}

/// What the caller knows about a run besides its result.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub run_id: String,
    pub job: String,
    pub started_at: DateTime<Utc>,
    pub attempts: u32,
    /// The run was stopped from outside (signal, daemon shutdown).
    pub cancelled: bool,
}

impl Report {
    /// The report of a backup run that ended at `finished`.
    pub fn new(
        facts: &RunFacts,
        result: &Result<RunReport, RunError>,
        finished: DateTime<Utc>,
    ) -> Report {
        let duration = duration_seconds(facts.started_at, finished);
        let mut r = Report {
            run_id: facts.run_id.clone(),
            kind: "backup",
            job: facts.job.clone(),
            backup_id: None,
            outcome: Outcome::Failure,
            started_at: rfc3339(facts.started_at),
            finished_at: rfc3339(finished),
            duration_seconds: duration,
            stored_bytes: 0,
            raw_bytes: 0,
            attempts: facts.attempts,
            deletions: 0,
            error: None,
            host: crate::sys::hostname(),
            reasons: Vec::new(),
            copy_errors: Vec::new(),
        };
        match result {
            Ok(run) => r.complete(run),
            Err(e) => {
                r.outcome = failed_outcome(e, facts.cancelled);
                r.error = Some(chain(e).to_string());
            }
        }
        r
    }

    /// A complete backup was written: a success, unless the shrink guard
    /// marked it (`suspicious`, with its reasons) or retention failed.
    fn complete(&mut self, run: &RunReport) {
        let m = &run.manifest;
        self.backup_id = Some(m.id.clone());
        self.stored_bytes = m.stored_bytes();
        self.raw_bytes = m.raw_bytes();
        self.deletions = run.deletions();
        self.copy_errors = crate::backup::copy::failure_messages(&m.id, &run.copies);
        self.outcome = Outcome::Success;
        if run.is_suspicious() {
            self.outcome = Outcome::Suspicious;
            self.reasons = run.suspicious_reasons().to_vec();
            self.error = Some(format!(
                "backup {}/{} is complete but SUSPICIOUS, so retention did not run: {}. \
                 If the change is deliberate, run `ccbackup run-now --job {} --accept-shrink`.",
                m.job,
                m.id,
                self.reasons.join("; "),
                m.job
            ));
            return;
        }
        if let Some(Err(e)) = &run.prune {
            self.outcome = Outcome::Failure;
            self.error = Some(format!(
                "backup {} is complete, but retention failed: {}",
                m.id,
                chain(e)
            ));
        }
    }

    /// The report as one JSON object, the shape of `run-now --json`.
    pub fn json(&self) -> String {
        // A struct of strings and numbers always serializes; the fallback
        // keeps a log line well-formed if that ever changes.
        serde_json::to_string(self).unwrap_or_else(|e| {
            serde_json::json!({ "run_id": self.run_id, "encode_error": e.to_string() }).to_string()
        })
    }

    /// The one log event of a run, in `run-now` and the daemon alike. The
    /// report travels as one JSON value in the [`LOG_REPORT_FIELD`] field:
    /// tracing's fields cannot hold a null or a list, and the JSON log
    /// format lifts the report's members into the event's fields with their
    /// own types (see `app::logfmt`).
    pub fn log(&self) {
        let report = self.json();
        macro_rules! event {
            ($level:ident) => {
                tracing::$level!(report = %report, "run finished")
            };
        }
        match self.outcome {
            Outcome::Success => event!(info),
            Outcome::Locked | Outcome::Suspicious => event!(warn),
            Outcome::Failure | Outcome::Cancelled => event!(error),
        }
    }

    /// A short title: `concertim: failure`.
    pub fn title(&self) -> String {
        match self.kind {
            "backup" => format!("{}: {}", self.job, self.outcome),
            // An event of the daemon itself (a rejected reload) names no job.
            kind if self.job.is_empty() => format!("ccbackup: {kind} {}", self.outcome),
            kind => format!("{}: {kind} {}", self.job, self.outcome),
        }
    }

    /// The report of a scheduled restore drill of `backup_id`.
    pub fn drill(
        facts: &RunFacts,
        backup_id: Option<String>,
        outcome: Outcome,
        error: Option<String>,
        finished: DateTime<Utc>,
    ) -> Report {
        Report {
            run_id: facts.run_id.clone(),
            kind: "verify",
            job: facts.job.clone(),
            backup_id,
            outcome,
            started_at: rfc3339(facts.started_at),
            finished_at: rfc3339(finished),
            duration_seconds: duration_seconds(facts.started_at, finished),
            stored_bytes: 0,
            raw_bytes: 0,
            attempts: 1,
            deletions: 0,
            error,
            host: crate::sys::hostname(),
            reasons: Vec::new(),
            copy_errors: Vec::new(),
        }
    }

    /// The one line `run-now` ends with, e.g.
    /// `concertim: success, backup 2026...-1a2b3c, 1.2 MiB stored (3.4 MiB read) in 2.5 s`.
    pub fn summary(&self) -> String {
        let mut s = format!("{}: {}", self.job, self.outcome);
        if let Some(id) = &self.backup_id {
            s.push_str(&format!(
                ", backup {id}, {} stored ({} read)",
                crate::progress::human(self.stored_bytes),
                crate::progress::human(self.raw_bytes)
            ));
        }
        s.push_str(&format!(" in {}", human_duration(self.duration_seconds)));
        if !self.reasons.is_empty() {
            s.push_str(&format!(" ({})", self.reasons.join("; ")));
        }
        s
    }

    /// What a person reads in Slack, an email or the healthchecks log.
    pub fn text(&self) -> String {
        let mut out = format!(
            "ccbackup {} of job {} on {}: {}\nsize: {} stored ({} read)\nduration: {}\nbackup ID: {}\nattempts: {}, deletions: {}\nrun ID: {}\nstarted: {}, finished: {}",
            self.kind,
            self.job,
            self.host,
            self.outcome,
            crate::progress::human(self.stored_bytes),
            crate::progress::human(self.raw_bytes),
            human_duration(self.duration_seconds),
            self.backup_id.as_deref().unwrap_or("none"),
            self.attempts,
            self.deletions,
            self.run_id,
            self.started_at,
            self.finished_at,
        );
        for r in &self.reasons {
            out.push_str(&format!("\nsuspicious: {r}"));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("\nerror: {e}"));
        }
        out
    }
}

fn failed_outcome(e: &RunError, cancelled: bool) -> Outcome {
    if cancelled || matches!(e, RunError::Cancelled { .. }) {
        Outcome::Cancelled
    } else if e.lock_error().is_some_and(|l| l.is_held()) {
        Outcome::Locked
    } else {
        Outcome::Failure
    }
}

/// `0.4 s`, `12.3 s`, `4 min 05 s`, `1 h 02 min`.
pub fn human_duration(secs: f64) -> String {
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let s = secs.round() as u64;
    if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_serialize_as_their_names() {
        for o in Outcome::ALL {
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::Value::from(o.as_str())
            );
        }
        assert!(Outcome::ALL
            .iter()
            .all(|o| o.is_success() == (*o == Outcome::Success)));
    }

    #[test]
    fn run_ids_are_fresh_uuids() {
        let a = new_run_id();
        assert_ne!(a, new_run_id());
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    }

    #[test]
    fn durations_are_whole_milliseconds() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t1 = t0 + chrono::Duration::nanoseconds(9_738_866);
        assert_eq!(duration_seconds(t0, t1), 0.009);
        assert_eq!(
            serde_json::to_string(&duration_seconds(t0, t1)).unwrap(),
            "0.009"
        );
        assert_eq!(duration_seconds(t1, t0), 0.0);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(0.42), "0.4 s");
        assert_eq!(human_duration(245.0), "4 min 05 s");
        assert_eq!(human_duration(3720.0), "1 h 02 min");
    }
}
