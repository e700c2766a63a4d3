//! What became of the last configuration reload (SIGHUP): a rejected file
//! keeps the running configuration, which is safe but easy to miss, so it
//! is exported as metrics, shown in `/readyz`, and notified.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::Daemon;
use crate::backup::report::{self, Outcome, Report};
use crate::config;
use crate::error::chain;
use crate::notify;
use crate::repo::store;

impl Daemon {
    /// SIGHUP: re-reads the configuration; a rejection is recorded, logged
    /// and notified, and the running configuration stays.
    pub(super) async fn reload(&mut self) {
        let Err(e) = self.reload_config().await else {
            return;
        };
        // Recorded before it is logged: whoever reads the log line finds the
        // metrics already saying so.
        self.metrics.record_reload(Err(e.clone()));
        tracing::error!(error = %e, "configuration reload failed; keeping the running configuration");
        let report = rejected_report(&e, self.clock.now());
        let targets = notify::targets_everywhere(&self.cfg, notify::Event::Finish(&report));
        let client = self.client.clone();
        tokio::spawn(async move {
            notify::send(&client, &targets, notify::Event::Finish(&report)).await;
        });
    }

    /// Re-reads the configuration file; `Err` (the reason, for the log, the
    /// metrics and the notification) leaves the running configuration as
    /// it is.
    async fn reload_config(&mut self) -> Result<(), String> {
        let path = self.cfg.path.clone();
        // A password file the (possibly unprivileged) daemon can no longer
        // read is a bad reload, not a configuration that fails every run.
        let new = config::load(&path)
            .and_then(|c| c.require_secrets().map(|()| c))
            .map_err(|e| chain(&e).to_string())?;
        if !self.fixed_repo {
            match store::open(&new.store) {
                Ok(r) => {
                    self.repo = r
                        .with_signing(new.signing.as_ref())
                        .with_clock(self.clock.clone())
                }
                Err(e) => return Err(chain(&e).to_string()),
            }
        }
        warn_if_listen_changed(self.listen_from_config.as_deref(), &new.daemon.listen);
        for (_, id) in self.armed.drain() {
            self.timers.cancel(id).await;
        }
        self.generation += 1;
        self.cfg = Arc::new(new);
        self.seed_metrics().await;
        self.arm_all().await;
        self.metrics.record_reload(Ok(()));
        tracing::info!(path = %path.display(), jobs = self.cfg.jobs.len(), "configuration reloaded");
        Ok(())
    }
}

/// The state of the configuration the daemon runs with.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReloadStatus {
    /// False after a rejected reload, until one succeeds.
    pub reload_success: bool,
    /// RFC 3339: the last reload attempt, or the start of the daemon.
    pub last_reload_at: String,
    /// Why the last reload was rejected.
    pub error: Option<String>,
    #[serde(skip)]
    pub at: DateTime<Utc>,
    #[serde(skip)]
    pub failures: u64,
}

impl ReloadStatus {
    /// The configuration loaded at start.
    pub fn started(at: DateTime<Utc>) -> ReloadStatus {
        ReloadStatus {
            reload_success: true,
            last_reload_at: at.to_rfc3339_opts(SecondsFormat::Secs, true),
            error: None,
            at,
            failures: 0,
        }
    }

    /// Records a reload attempt at `at`.
    pub fn record(&mut self, at: DateTime<Utc>, result: Result<(), String>) {
        self.at = at;
        self.last_reload_at = at.to_rfc3339_opts(SecondsFormat::Secs, true);
        match result {
            Ok(()) => {
                self.reload_success = true;
                self.error = None;
            }
            Err(e) => {
                self.reload_success = false;
                self.error = Some(e);
                self.failures += 1;
            }
        }
    }

    /// The `ccbackup_config_reload_*` families.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP ccbackup_config_reload_success 1 if the last configuration reload (SIGHUP) was applied or none was tried, 0 if it was rejected and the previous configuration still runs.\n\
             # TYPE ccbackup_config_reload_success gauge\n\
             ccbackup_config_reload_success {}\n\
             # HELP ccbackup_config_reload_timestamp_seconds Unix time of the last configuration reload attempt (the start of the daemon if none).\n\
             # TYPE ccbackup_config_reload_timestamp_seconds gauge\n\
             ccbackup_config_reload_timestamp_seconds {}\n\
             # HELP ccbackup_config_reload_failures_total Configuration reloads rejected since the daemon started.\n\
             # TYPE ccbackup_config_reload_failures_total counter\n\
             ccbackup_config_reload_failures_total {}",
            u8::from(self.reload_success),
            self.at.timestamp(),
            self.failures
        );
    }
}

/// The failure report of a rejected reload, for every notification
/// channel of the running configuration (it names no job).
pub fn rejected_report(error: &str, at: DateTime<Utc>) -> Report {
    Report {
        run_id: report::new_run_id(),
        kind: "reload",
        job: String::new(),
        backup_id: None,
        outcome: Outcome::Failure,
        started_at: report::rfc3339(at),
        finished_at: report::rfc3339(at),
        duration_seconds: 0.0,
        stored_bytes: 0,
        raw_bytes: 0,
        attempts: 1,
        deletions: 0,
        error: Some(format!(
            "configuration reload rejected; the daemon keeps running the previous configuration: {error}"
        )),
        host: crate::sys::hostname(),
        reasons: Vec::new(),
        copy_errors: Vec::new(),
    }
}

/// The listener is bound once, at start: rebinding on reload would need
/// the new address free and would drop the healthcheck's address while
/// compose still probes it. Say so rather than silently ignore the change.
fn warn_if_listen_changed(serving: Option<&str>, configured: &str) {
    if let Some(serving) = serving.filter(|s| *s != configured) {
        tracing::warn!(
            serving,
            configured,
            "daemon.listen changed, but the listen address cannot be changed without a restart; still serving on the old address"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_reload_shows_until_one_succeeds() {
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let mut s = ReloadStatus::started(t0);
        let mut out = String::new();
        s.render(&mut out);
        assert!(out.contains("ccbackup_config_reload_success 1\n"), "{out}");
        s.record(t0 + chrono::Duration::seconds(5), Err("bad".into()));
        let mut out = String::new();
        s.render(&mut out);
        assert!(out.contains("ccbackup_config_reload_success 0\n"), "{out}");
        assert!(out.contains("ccbackup_config_reload_timestamp_seconds 1800000005\n"));
        assert!(out.contains("ccbackup_config_reload_failures_total 1"));
        s.record(t0 + chrono::Duration::seconds(9), Ok(()));
        assert!(s.reload_success && s.error.is_none() && s.failures == 1);
    }
}
