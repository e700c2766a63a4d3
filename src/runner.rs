//! One run of a job, as `run-now` and the daemon both do it: back up, and
//! only if that succeeded, apply retention.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backup::{self, BackupError};
use crate::config::{Config, JobConfig};
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::prune::{self, Outcome, PruneError};
use crate::source::child::KillSwitch;
use crate::store::Repo;

#[derive(Debug)]
pub struct RunReport {
    pub manifest: Manifest,
    pub duration: Duration,
    /// `None` when the job has no retention policy.
    pub prune: Option<Result<Outcome, PruneError>>,
}

impl RunReport {
    /// Deletions made by retention in this run.
    pub fn deletions(&self) -> usize {
        match &self.prune {
            Some(Ok(o)) => o.deleted.len(),
            _ => 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Backup(#[from] BackupError),
}

/// Backs up `job` and, after a complete backup, prunes it. A failed backup
/// returns before retention is even considered.
pub async fn run_once(
    _cfg: &Config,
    repo: &Repo,
    job: &JobConfig,
    kill: KillSwitch,
    progress: Arc<Progress>,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let manifest = backup::run_job(repo, job, progress, kill).await?;
    let prune = match &job.retention {
        None => None,
        Some(_) => Some(prune_after_backup(repo, job).await),
    };
    Ok(RunReport {
        manifest,
        duration: started.elapsed(),
        prune,
    })
}

async fn prune_after_backup(repo: &Repo, job: &JobConfig) -> Result<Outcome, PruneError> {
    let decision = prune::plan_job(repo, job).await?;
    prune::apply(repo, &decision).await
}
