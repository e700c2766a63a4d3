//! The status page (`GET /`) and its data (`GET /status.json`).
//!
//! Both are made from what the daemon already keeps in memory: the per-job
//! [`Metrics`] (last run, drills, copies, readiness) and the newest backups
//! of each job ([`super::held`], taken from the catalog the daemon reads at
//! start-up and after every run). A request never lists the store, so a
//! browser left reloading the page costs a copy of that state and a string.
//!
//! [`view`] gathers the state into one [`StatusView`] (serialized as
//! `/status.json`, schema `docs/schema/status.json`); [`html::render`]
//! turns it into the page, a pure function. The page shows what `ccbackup
//! list` shows and no more: run errors are left out (they may name
//! databases, hosts or paths; the log and the notifications carry them),
//! and so is everything that could be a secret. `daemon.status_page:
//! false` turns both routes off.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::held::{self, BackupStatus, HeldBackup, Retention};
use super::metrics::{JobStats, Metrics};
use crate::backup::report::Report;
use crate::config::Config;

mod escape;
pub mod html;
pub mod svg;
pub mod tampering;

/// What the page needs from the configuration, swapped on reload.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// `daemon.status_page`.
    pub enabled: bool,
    /// The configuration file, for the restore commands.
    pub config_path: String,
    pub jobs: Vec<JobSetup>,
}

/// One job's configuration, as the page shows it.
#[derive(Debug, Clone, Default)]
pub struct JobSetup {
    pub name: String,
    pub schedule: Option<String>,
    pub timezone: String,
    /// The retention policy in its one-line form.
    pub retention: Option<String>,
    /// Copy stores, without credentials.
    pub copies: Vec<String>,
    /// The drill schedule (`verify:`).
    pub drill: Option<String>,
}

impl Setup {
    pub fn of(cfg: &Config) -> Setup {
        let copies: Vec<String> = cfg
            .copies
            .iter()
            .map(|c| crate::repo::store::display_url(&c.url))
            .collect();
        Setup {
            enabled: cfg.daemon.status_page,
            // Absolute, so the restore commands work from any directory.
            config_path: std::path::absolute(&cfg.path)
                .unwrap_or_else(|_| cfg.path.clone())
                .display()
                .to_string(),
            jobs: cfg
                .jobs
                .iter()
                .map(|j| JobSetup {
                    name: j.name.clone(),
                    schedule: j.schedule.as_ref().map(|s| s.to_string()),
                    timezone: j.timezone.name().to_owned(),
                    retention: j.retention.as_ref().map(|p| p.to_string()),
                    copies: copies.clone(),
                    drill: j.drill.as_ref().map(|d| d.schedule.to_string()),
                })
                .collect(),
        }
    }
}

/// The configuration the page is served with: set when the daemon starts
/// and after every reload.
#[derive(Debug, Default)]
pub struct Page {
    setup: Mutex<Arc<Setup>>,
}

impl Page {
    pub fn new(cfg: &Config) -> Page {
        Page {
            setup: Mutex::new(Arc::new(Setup::of(cfg))),
        }
    }

    pub fn with_setup(setup: Setup) -> Page {
        Page {
            setup: Mutex::new(Arc::new(setup)),
        }
    }

    pub fn configure(&self, cfg: &Config) {
        *self.setup.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(Setup::of(cfg));
    }

    pub fn setup(&self) -> Arc<Setup> {
        self.setup.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Everything the page shows (`/status.json`).
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub generated_at: String,
    pub version: &'static str,
    pub daemon_started_at: String,
    /// `/readyz`'s verdict.
    pub ready: bool,
    pub ready_reason: Option<String>,
    /// Manifests are checked against a signing key.
    pub authenticated: bool,
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub job: String,
    pub schedule: Option<String>,
    pub timezone: String,
    pub retention_policy: Option<String>,
    pub running: bool,
    pub next_run: Option<String>,
    pub ready: bool,
    pub readiness_reason: String,
    /// The last tamper check of a versioned store; null before one, or
    /// when the store keeps no versions.
    pub tampering: Option<tampering::TamperingView>,
    pub last_success: Option<String>,
    /// The last run since the daemon started.
    pub last_run: Option<RunView>,
    /// Runs since the daemon started, by outcome (outcomes that did not
    /// happen are left out).
    pub runs: std::collections::BTreeMap<String, u64>,
    /// Scheduled backups that did not run since the daemon started.
    pub skipped_runs: u64,
    pub drill_schedule: Option<String>,
    pub last_drill: Option<DrillView>,
    pub copies: Vec<CopyView>,
    /// When the store was last listed for this job; null before that.
    pub listed_at: Option<String>,
    /// Backups in the store (null until listed); `backups` holds the
    /// newest of them.
    pub backups_total: Option<usize>,
    pub backups: Vec<BackupView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub run_id: String,
    pub outcome: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub attempts: u32,
    pub backup_id: Option<String>,
    /// The shrink guard's reasons for a suspicious backup.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillView {
    pub outcome: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    pub backup_id: Option<String>,
    pub last_success: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyView {
    pub store: String,
    /// Start of the newest backup copied there since the daemon started.
    pub newest_copied: Option<String>,
    /// How far the copy trails the store's newest backup, in seconds of
    /// backup time; 0 when it holds it.
    pub lag_seconds: Option<i64>,
    pub failures: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupView {
    #[serde(flatten)]
    pub held: HeldBackup,
    /// `ccbackup restore ...` for this backup (with `--as-of` for a
    /// tampered one); null when it cannot be restored.
    pub restore_command: Option<String>,
    /// When the store recorded the tampering; null for an untouched one.
    pub tampered_at: Option<String>,
    /// The `--as-of` time that shows it as ccbackup wrote it.
    pub recover_as_of: Option<String>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Gathers the page's data from the daemon's memory at `now`.
pub fn view(metrics: &Metrics, setup: &Setup, now: DateTime<Utc>) -> StatusView {
    let readiness = metrics.readiness(now);
    let stats = metrics.snapshot();
    let jobs = setup
        .jobs
        .iter()
        .map(|j| {
            let r = readiness.jobs.iter().find(|r| r.job == j.name);
            let verdict = match r {
                Some(r) => (r.ready, held::clip(&r.reason)),
                None => (
                    false,
                    readiness
                        .reason
                        .clone()
                        .unwrap_or_else(|| "not known yet".into()),
                ),
            };
            let empty = JobStats::default();
            let s = stats.get(&j.name).unwrap_or(&empty);
            job_view(j, s, verdict, &setup.config_path)
        })
        .collect();
    StatusView {
        generated_at: ts(now),
        version: env!("CARGO_PKG_VERSION"),
        daemon_started_at: ts(metrics.started()),
        ready: readiness.ready,
        ready_reason: readiness.reason.as_deref().map(held::clip),
        authenticated: metrics.authenticated(),
        jobs,
    }
}

fn job_view(j: &JobSetup, s: &JobStats, verdict: (bool, String), config: &str) -> JobView {
    let held = s.held.as_deref();
    let newest = held.and_then(|h| {
        h.rows
            .iter()
            .find(|b| b.status.restorable())
            .and_then(|b| b.started_at)
    });
    let mut stores: Vec<&str> = j.copies.iter().map(String::as_str).collect();
    for k in s.copies.keys() {
        if !stores.contains(&k.as_str()) {
            stores.push(k);
        }
    }
    let copies = stores
        .into_iter()
        .map(|store| {
            let c = s.copies.get(store);
            let copied = c.and_then(|c| c.last_success);
            CopyView {
                store: store.to_owned(),
                newest_copied: copied.map(ts),
                lag_seconds: match (newest, copied) {
                    (Some(n), Some(c)) => Some((n - c).num_seconds().max(0)),
                    _ => None,
                },
                failures: c.map_or(0, |c| c.failures),
            }
        })
        .collect();
    let backups = held
        .map(|h| {
            h.rows
                .iter()
                .map(|b| BackupView {
                    restore_command: b
                        .status
                        .restorable()
                        .then(|| restore_command(config, &j.name, &b.backup_id)),
                    held: b.clone(),
                    tampered_at: None,
                    recover_as_of: None,
                })
                .collect()
        })
        .unwrap_or_default();
    let backups = tampering::apply(backups, &s.tampered_backups, config, &j.name);
    JobView {
        job: j.name.clone(),
        schedule: j.schedule.clone(),
        timezone: j.timezone.clone(),
        retention_policy: j.retention.clone(),
        running: s.running,
        next_run: s.next_run.map(ts),
        ready: verdict.0,
        readiness_reason: verdict.1,
        tampering: tampering::state(s.tampered.is_some(), &s.tampered_backups),
        last_success: s.last_success.map(ts),
        last_run: s.last_report.as_deref().map(run_view),
        runs: s
            .runs
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(o, n)| ((*o).to_owned(), *n))
            .collect(),
        skipped_runs: s.skipped_runs,
        drill_schedule: j.drill.clone(),
        last_drill: s.drill.as_ref().and_then(|d| {
            d.last_report.as_deref().map(|r| DrillView {
                outcome: d.last_outcome.unwrap_or(r.outcome.as_str()).to_owned(),
                finished_at: r.finished_at.clone(),
                duration_seconds: r.duration_seconds,
                backup_id: r.backup_id.as_deref().map(held::clip),
                last_success: d.last_success.map(ts),
            })
        }),
        copies,
        listed_at: held.and_then(|h| h.listed_at).map(ts),
        backups_total: held.map(|h| h.total),
        backups,
    }
}

fn run_view(r: &Report) -> RunView {
    RunView {
        run_id: r.run_id.clone(),
        outcome: r.outcome.as_str().to_owned(),
        started_at: r.started_at.clone(),
        finished_at: r.finished_at.clone(),
        duration_seconds: r.duration_seconds,
        stored_bytes: r.stored_bytes,
        raw_bytes: r.raw_bytes,
        attempts: r.attempts,
        backup_id: r.backup_id.as_deref().map(held::clip),
        reasons: r.reasons.iter().take(50).map(|s| held::clip(s)).collect(),
    }
}

/// The command that restores backup `id` of `job` with the daemon's
/// configuration file, each argument quoted for a POSIX shell.
pub fn restore_command(config: &str, job: &str, id: &str) -> String {
    format!(
        "ccbackup --config {} restore --job {} --backup {}",
        shell_quote(config),
        shell_quote(job),
        shell_quote(id)
    )
}

/// `s` as one POSIX shell word: left bare when it holds only characters
/// no shell treats specially, single-quoted otherwise.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The backups the chart draws: the newest complete ones, oldest first.
pub fn chart_points(job: &JobView, max: usize) -> Vec<svg::Point> {
    let mut pts: Vec<svg::Point> = job
        .backups
        .iter()
        .map(|b| &b.held)
        .filter(|b| b.status.restorable())
        .take(max)
        .map(|b| svg::Point {
            label: b.backup_id.clone(),
            when: b
                .started_at
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default(),
            stored_bytes: b.stored_bytes,
            duration_seconds: b.duration_seconds.unwrap_or(0.0),
            suspicious: b.status == BackupStatus::Suspicious,
        })
        .collect();
    pts.reverse();
    pts
}

/// How retention treats a backup, in words.
pub fn retention_words(r: &Retention) -> String {
    match r {
        Retention::Kept { rules } if rules.is_empty() => "kept".to_owned(),
        Retention::Kept { rules } => format!("kept: {}", rules.join(", ")),
        Retention::Removed => "removed at the next prune".to_owned(),
        Retention::NoPolicy => "kept (no retention policy)".to_owned(),
        Retention::NeverPruned => "never pruned automatically".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_commands_quote_what_a_shell_would_read() {
        assert_eq!(
            restore_command("/etc/ccbackup/config.yaml", "site", "20260101T000000Z-abcdef"),
            "ccbackup --config /etc/ccbackup/config.yaml restore --job site --backup 20260101T000000Z-abcdef"
        );
        assert_eq!(shell_quote("my conf.yaml"), "'my conf.yaml'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(shell_quote(""), "''");
    }

    /// Review attack: credentials written into a copy store's URL (user
    /// info, or a query such as an S3 session token or an Azure SAS
    /// signature) never reach the page or its JSON.
    #[test]
    fn copy_store_credentials_in_the_url_stay_off_the_page() {
        let text = "store:\n  url: file:///tmp/a\ncopies:\n  - url: s3://AKIAUSER:Pa55word@b/p?x-amz-security-token=T0ken#Fr4g\n  - url: az://c/p?sv=2024-01-01&sig=SasS1gnature\njobs:\n  - name: j\n    sources:\n      - name: e\n        files: {path: /tmp}\n";
        let cfg = crate::config::parse(text, std::path::Path::new("c.yaml")).unwrap();
        let setup = Setup::of(&cfg);
        let start = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let m = Metrics::new(start);
        // The copy step reports its store the way the copy code names it.
        for c in &cfg.copies {
            let shown = crate::repo::store::display_url(&c.url);
            m.update("j", |s| s.record_copy(&shown, false, start));
        }
        let v = view(&m, &setup, start);
        let page = html::render(&v);
        let json = serde_json::to_string(&v).unwrap();
        for secret in ["AKIAUSER", "Pa55word", "T0ken", "Fr4g", "SasS1gnature"] {
            assert!(!page.contains(secret), "{secret} in the page");
            assert!(!json.contains(secret), "{secret} in {json}");
        }
        let stores: Vec<&str> = v.jobs[0].copies.iter().map(|c| c.store.as_str()).collect();
        assert_eq!(stores, ["s3://b/p", "az://c/p"]);
    }

    #[test]
    fn the_view_joins_configuration_metrics_and_the_store() {
        let start = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let m = Metrics::new(start);
        let row = |id: &str, status| HeldBackup {
            backup_id: id.into(),
            started_at: crate::repo::store::backup_id_time(id),
            duration_seconds: Some(2.0),
            stored_bytes: 10,
            raw_bytes: 20,
            sources: vec!["etc".into()],
            status,
            problem: None,
            suspicious: Vec::new(),
            shrink_accepted: Vec::new(),
            trust: Some("unchecked"),
            retention: Retention::NoPolicy,
        };
        m.update("j", |s| {
            s.held = Some(Arc::new(held::Held {
                rows: vec![
                    row("20261201T020000Z-bbbbbb", BackupStatus::Damaged),
                    row("20261201T010000Z-aaaaaa", BackupStatus::Complete),
                ],
                total: 2,
                listed_at: Some(start),
            }));
            s.record_copy("s3://b/p", true, start);
            s.runs.insert("success", 2);
            s.runs.insert("failure", 0);
        });
        let setup = Setup {
            enabled: true,
            config_path: "/c.yaml".into(),
            jobs: vec![JobSetup {
                name: "j".into(),
                copies: vec!["s3://b/p".into(), "file:///x/".into()],
                ..Default::default()
            }],
        };
        let v = view(&m, &setup, start + chrono::Duration::hours(3));
        let j = &v.jobs[0];
        assert_eq!(j.backups_total, Some(2));
        assert_eq!(
            serde_json::to_value(&j.runs).unwrap(),
            serde_json::json!({"success": 2})
        );
        assert_eq!(j.backups[0].restore_command, None);
        assert_eq!(
            j.backups[1].restore_command.as_deref(),
            Some("ccbackup --config /c.yaml restore --job j --backup 20261201T010000Z-aaaaaa")
        );
        assert_eq!(j.copies.len(), 2);
        assert_eq!(j.copies[0].lag_seconds, Some(3600));
        assert_eq!(j.copies[1].newest_copied, None);
        let pts = chart_points(j, 30);
        assert_eq!(pts.len(), 1);
        assert!(v.ready, "{v:?}");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["jobs"][0]["backups"][0]["status"], "damaged");
        assert_eq!(
            json["jobs"][0]["backups"][1]["retention"]["decision"],
            "no_policy"
        );
    }
}
