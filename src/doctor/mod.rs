//! `ccbackup doctor`: proves a site is ready by doing, on a small scale,
//! what a backup and a restore will do: talk to every store, database,
//! path, key file and notification endpoint a job uses. Each kind of check
//! is a small module returning [`Check`]s, so more can be added beside
//! them; `app::doctor` prints the result.

mod immutable;
mod keys;
mod notify;
mod paths;
mod postgres;
mod store;

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, JobConfig, SourceKind};

/// How long one network check may take: doctor answers even when a server
/// swallows packets.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Worth knowing, not a failure (e.g. a store without versioning).
    Info,
    /// Worth acting on, not a failure (e.g. storage that never shrinks).
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub job: String,
    /// What was checked: `store s3://bucket/prefix`, `source db`, ...
    pub subject: String,
    /// Which check: `list`, `connect`, `pg_dump`, ...
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// What to do about a failure.
    pub hint: Option<String>,
}

/// The job and subject the next checks are about.
#[derive(Debug, Clone)]
pub(crate) struct About {
    job: String,
    subject: String,
}

impl About {
    pub(crate) fn new(job: &str, subject: impl Into<String>) -> About {
        About {
            job: job.to_owned(),
            subject: subject.into(),
        }
    }

    fn make(&self, check: &str, status: Status, detail: String, hint: Option<String>) -> Check {
        Check {
            job: self.job.clone(),
            subject: self.subject.clone(),
            check: check.to_owned(),
            status,
            detail,
            hint,
        }
    }

    pub(crate) fn ok(&self, check: &str, detail: impl Into<String>) -> Check {
        self.make(check, Status::Ok, detail.into(), None)
    }

    pub(crate) fn info(&self, check: &str, detail: impl Into<String>) -> Check {
        self.make(check, Status::Info, detail.into(), None)
    }

    pub(crate) fn warn(
        &self,
        check: &str,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        self.make(check, Status::Warn, detail.into(), Some(hint.into()))
    }

    pub(crate) fn fail(
        &self,
        check: &str,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        self.make(check, Status::Fail, detail.into(), Some(hint.into()))
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Also send a test message to webhooks, Slack and email.
    pub notify_test: bool,
}

/// Every check for `jobs`, in a stable order: stores, sources, key files,
/// notifications.
pub async fn run(cfg: &Config, jobs: &[&JobConfig], opts: Options) -> Vec<Check> {
    let mut out = Vec::new();
    for job in jobs {
        out.extend(store::check(job, "store", &cfg.store).await);
        for (i, copy) in cfg.copies.iter().enumerate() {
            out.extend(store::check(job, &format!("copy store {i}"), copy).await);
        }
        for s in &job.sources {
            let about = About::new(&job.name, format!("source {}", s.name));
            match &s.kind {
                SourceKind::Postgres(pg) => out.extend(postgres::check(&about, pg).await),
                SourceKind::Rrd(r) => out.extend(paths::check(&about, &r.path, true)),
                SourceKind::Files(f) => out.extend(paths::check(&about, &f.path, false)),
            }
        }
        out.extend(keys::check(&job.name, job, cfg.signing.as_ref()));
        out.extend(notify::check(cfg, job, opts).await);
    }
    out
}

/// How many checks failed.
pub fn failures(checks: &[Check]) -> usize {
    checks.iter().filter(|c| c.status == Status::Fail).count()
}

/// `fut` bounded by [`CHECK_TIMEOUT`]; `None` when it took longer.
pub(crate) async fn bounded<T>(fut: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(CHECK_TIMEOUT, fut).await.ok()
}

pub(crate) fn timed_out() -> String {
    format!("no answer within {}s", CHECK_TIMEOUT.as_secs())
}
