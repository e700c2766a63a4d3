//! One run of a job, as `run-now` and the daemon both do it: back up, and
//! only if that succeeded and the backup is not suspicious (see
//! [`crate::backup::guard`]), apply retention.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backup::run::{self, BackupError, Shrink};
use crate::config::{Config, JobConfig};
use crate::error::chain;
use crate::progress::Progress;
use crate::repo::catalog::{self, Catalog};
use crate::repo::lock::{self, LockError};
use crate::repo::manifest::Manifest;
use crate::repo::store::Repo;
use crate::retention::prune::{self, PruneError, Pruned};
use crate::retry::{Class, Transient};
use crate::sys::child::KillSwitch;

#[derive(Debug)]
pub struct RunReport {
    pub manifest: Manifest,
    pub duration: Duration,
    /// `None` when the job has no retention policy, or when the backup is
    /// suspicious (retention is skipped then).
    pub prune: Option<Result<Pruned, PruneError>>,
    /// One per copy store: copies never fail the run (see [`crate::backup::copy`]).
    pub copies: Vec<crate::backup::copy::StoreRun>,
    /// The job's catalogue as this run leaves it, from the run's one
    /// listing; `None` when that is not known (the listing failed, or
    /// retention failed part-way), and whoever needs it must list.
    pub catalog: Option<Catalog>,
}

/// How a run goes beyond the job's configuration (`run-now` flags).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Wait this long for a lock held by a live process before failing.
    pub lock_wait: Duration,
    /// What the shrink guard's findings do to this one run.
    pub shrink: Shrink,
}

impl RunReport {
    /// The backup is complete but the shrink guard found it suspicious:
    /// the run did not prune, and it must be reported as not successful.
    pub fn is_suspicious(&self) -> bool {
        self.manifest.guard.is_suspicious()
    }

    /// The guard's reasons, one line each (empty unless suspicious).
    pub fn suspicious_reasons(&self) -> &[String] {
        &self.manifest.guard.suspicious
    }

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
    /// The job's repository lock is held elsewhere (or the store failed
    /// while taking it); nothing was written.
    #[error(transparent)]
    Lock(LockError),
    #[error("the run of job `{job}` was stopped while waiting for its lock; nothing was written")]
    Cancelled { job: String },
}

impl Transient for RunError {
    fn class(&self) -> Class {
        match self {
            RunError::Backup(b) => b.class(),
            RunError::Lock(l) => l.class(),
            RunError::Cancelled { .. } => Class::Permanent,
        }
    }
}

impl RunError {
    /// The lock error, when the run could not take the job's lock.
    pub fn lock_error(&self) -> Option<&LockError> {
        match self {
            RunError::Lock(e) => Some(e),
            RunError::Backup(_) | RunError::Cancelled { .. } => None,
        }
    }
}

/// Backs up `job` and, after a complete backup, prunes it. A failed backup
/// returns before retention is even considered.
///
/// The job's repository lock (see [`crate::repo::lock`]) is held around both, so
/// a manual run, the daemon and a second sidecar never interleave on one
/// job. A lock held elsewhere fails the run at once, naming the holder.
pub async fn run_once(
    cfg: &Config,
    repo: &Repo,
    job: &JobConfig,
    kill: KillSwitch,
    progress: Arc<Progress>,
) -> Result<RunReport, RunError> {
    run_once_with(cfg, repo, job, kill, progress, RunOptions::default()).await
}

/// [`run_once`] with `run-now`'s options: a lock held by a live process is
/// waited for up to `opts.lock_wait` (`--wait-lock`) before the run fails;
/// `opts.shrink` may accept a deliberate shrink (`--accept-shrink`).
pub async fn run_once_with(
    cfg: &Config,
    repo: &Repo,
    job: &JobConfig,
    kill: KillSwitch,
    progress: Arc<Progress>,
    opts: RunOptions,
) -> Result<RunReport, RunError> {
    let lock_wait = opts.lock_wait;
    let started = Instant::now();
    let mut told = false;
    let acquire = lock::acquire(
        repo,
        &job.name,
        cfg.daemon.lock_ttl,
        "backup",
        lock_wait,
        |e| {
            if !lock_wait.is_zero() && !std::mem::replace(&mut told, true) {
                tracing::info!(job = %job.name, wait_s = lock_wait.as_secs_f64(), holder = %e, "job is locked; waiting for the lock");
            }
        },
    );
    // A cancellation while waiting for the lock (`--wait-lock`) must not
    // wait out the whole duration: nothing has been written yet.
    let guard = tokio::select! {
        g = acquire => g.map_err(RunError::Lock)?,
        () = kill.killed() => return Err(RunError::Cancelled { job: job.name.clone() }),
    };
    // If another owner takes the lease over (we stalled past its expiry),
    // stop the dump: two writers on one job is what the lock prevents.
    let lost = guard.lost();
    let watch_kill = kill.clone();
    let watcher = tokio::spawn(async move {
        lost.cancelled().await;
        watch_kill.kill();
    });
    // The job's catalogue, listed once per run, here: under the lock, so
    // only this run changes it from now on. The guard compares with it;
    // retention, the daemon's metrics and status page then use it with the
    // new backup added and what retention removed taken out, rather than
    // listing the store again after each step.
    let earlier = catalog::load(repo, Some(&job.name)).await;
    let result = backup_and_prune(repo, job, kill.clone(), progress, opts.shrink, earlier).await;
    // Still under the primary lock, so the backup cannot be pruned away
    // by a newer run while it is being copied. A suspicious backup is not
    // copied: copying it would prune the copy stores by it (`copy
    // --from-primary` copies it later if it was fine after all).
    let copies = match &result {
        Ok((m, _, _)) if !m.guard.is_suspicious() => {
            crate::backup::copy::after_backup(cfg, job, repo, m, &kill).await
        }
        _ => Vec::new(),
    };
    watcher.abort();
    if let Err(e) = guard.release().await {
        tracing::warn!(job = %job.name, error = %chain(&e), "could not release the repository lock; it expires on its own");
    }
    let (manifest, prune, catalog) = result?;
    Ok(RunReport {
        manifest,
        duration: started.elapsed(),
        prune,
        copies,
        catalog,
    })
}

/// What a backup and its retention leave: the manifest, retention's
/// outcome, and the catalogue after both.
type Backed = (
    Manifest,
    Option<Result<Pruned, PruneError>>,
    Option<Catalog>,
);

async fn backup_and_prune(
    repo: &Repo,
    job: &JobConfig,
    kill: KillSwitch,
    progress: Arc<Progress>,
    shrink: Shrink,
    earlier: Result<Catalog, catalog::CatalogError>,
) -> Result<Backed, RunError> {
    let manifest = run::run_job_with(repo, job, progress, kill, shrink, earlier.as_ref()).await?;
    // A failed listing made the guard mark the backup suspicious, so
    // nothing below would prune by it.
    let Ok(mut cat) = earlier else {
        return Ok((manifest, None, None));
    };
    // Retention must see the backup that just landed: add it to the
    // catalogue listed before it, rather than listing again.
    cat.add_committed(manifest.clone());
    // After a suspicious backup the good ones are all that is left to
    // restore from: keep every one of them.
    if manifest.guard.is_suspicious() || job.retention.is_none() {
        return Ok((manifest, None, Some(cat)));
    }
    let decision = prune::plan_listed_keeping(job, cat.clone(), &manifest.id, repo.clock.now());
    let prune = match decision {
        Ok(d) => prune::apply(repo, &d).await,
        Err(e) => Err(e),
    };
    let after = match &prune {
        Ok(o) => {
            cat.remove_pruned(&o.deleted, &o.swept);
            Some(cat)
        }
        // A plan refused before deleting leaves the store as listed; one
        // that failed part-way leaves it unknown.
        Err(
            PruneError::NoPolicy { .. }
            | PruneError::WouldDeleteAll { .. }
            | PruneError::WouldDeleteNewest { .. }
            | PruneError::WouldDeleteOwn { .. }
            | PruneError::TooMany { .. },
        ) => Some(cat),
        Err(_) => None,
    };
    Ok((manifest, Some(prune), after))
}
