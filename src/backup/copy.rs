//! Second copies (3-2-1): every complete backup of the primary store is
//! copied, byte for byte and under the same keys, to each store in
//! `copies:`, whose retention is then applied by the job's own policy.
//!
//! A copy follows the invariants of a backup. Artifacts stream object by
//! object (get → sha256 and size counting → `WriteMultipart`, so memory is
//! bounded by `(concurrency + 1) * part_size` of the copy store) and are
//! checked against the manifest before their upload is completed: a
//! mismatch aborts the upload, and nothing of it becomes visible. The
//! manifest's signature (when present) and then the manifest itself are
//! written last, as the very bytes read from the primary, the manifest with
//! a create-only put; so a copy store holds a manifest only for a complete,
//! verified copy, and a signature made by the primary's key stays valid.
//! Anything a failed or interrupted copy wrote is removed; what removal
//! misses has no manifest and is swept by prune after `orphan_grace`.
//!
//! Each copy store has its own lock: the job's lease in that store is held
//! while copying into it and pruning it, so a backfill (`ccbackup copy`),
//! the daemon and a sidecar that uses the copy store as its primary never
//! interleave there. The primary is only read: a prune of the primary that
//! deletes a backup while it is being copied makes that copy fail cleanly.
//!
//! A failed copy never touches the primary backup: it stays complete and
//! pruned, and the failure is reported next to it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, JobConfig};
use crate::error::chain;
use crate::repo::lock::{self, LockError};
use crate::repo::manifest::{Manifest, ManifestError};
use crate::repo::store::StoreSpec;
use crate::repo::store::{self, Repo, StoreError};
use crate::retention::prune::{self, PruneError, Pruned};
use crate::retry::{Class, Transient};
use crate::sys::child::KillSwitch;

mod held;
mod source;
mod transfer;
pub use transfer::copy_backup;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Open(#[from] StoreError),
    #[error(transparent)]
    Lock(LockError),
    #[error("cannot read {key} from {store}")]
    Read {
        store: String,
        key: String,
        source: object_store::Error,
    },
    #[error("cannot write {key} to {store}")]
    Write {
        store: String,
        key: String,
        source: object_store::Error,
    },
    #[error("artifact {key} in {store} does not match its manifest (expected {expected_bytes} bytes with sha256 {expected_sha256}, read {found_bytes} bytes{}); the backup was not copied", found_sha256.as_ref().map(|s| format!(" with sha256 {s}")).unwrap_or_default())]
    Mismatch {
        store: String,
        key: String,
        expected_bytes: u64,
        expected_sha256: String,
        found_bytes: u64,
        /// `None` when the read was stopped for being too long.
        found_sha256: Option<String>,
    },
    #[error("backup {job}/{id} in {store} cannot be copied")]
    Source {
        store: String,
        job: String,
        id: String,
        #[source]
        source: ManifestError,
    },
    #[error("the copy of {what} to {store} was stopped; what it had copied was removed")]
    Interrupted { store: String, what: String },
}

impl Transient for CopyError {
    fn class(&self) -> Class {
        match self {
            CopyError::Read { source, .. } | CopyError::Write { source, .. } => source.class(),
            _ => Class::Permanent,
        }
    }
}

/// What copying one backup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copied {
    /// Every artifact and the manifest were written; `repaired` says what
    /// was wrong with the backup the copy store held before, if it held one.
    Copied {
        artifacts: usize,
        bytes: u64,
        repaired: Option<String>,
    },
    /// The copy store already holds this backup's manifest.
    AlreadyPresent,
}

/// One copy store's part of a run or a backfill.
#[derive(Debug)]
pub struct StoreRun {
    /// The copy store's URL without credentials.
    pub store: String,
    /// Opening the store or taking its lock failed: nothing was copied.
    pub setup: Option<CopyError>,
    /// Per backup ID, in the order tried.
    pub backups: Vec<(String, Result<Copied, CopyError>)>,
    /// Retention in the copy store; `None` when it did not run.
    pub prune: Option<Result<Pruned, PruneError>>,
}

impl StoreRun {
    /// Every backup asked for is in the copy store now.
    pub fn copied_all(&self) -> bool {
        self.setup.is_none() && self.backups.iter().all(|(_, r)| r.is_ok())
    }

    /// What failed while copying: setting up the store or a backup.
    pub fn copy_errors(&self) -> impl Iterator<Item = &CopyError> {
        self.setup
            .iter()
            .chain(self.backups.iter().filter_map(|(_, r)| r.as_ref().err()))
    }

    /// Messages for everything that failed, copy and retention alike, each
    /// naming the copy store.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .copy_errors()
            .map(|e| format!("copy to {} failed: {}", self.store, chain(e)))
            .collect();
        if let Some(Err(e)) = &self.prune {
            out.push(format!(
                "retention in copy store {} failed: {}",
                self.store,
                chain(e)
            ));
        }
        out
    }
}

/// After a complete backup: copies it to every copy store and prunes each.
/// Never fails: what went wrong is in the reports (and logged).
pub async fn after_backup(
    cfg: &Config,
    job: &JobConfig,
    primary: &Repo,
    m: &Manifest,
    kill: &KillSwitch,
) -> Vec<StoreRun> {
    if cfg.copies.is_empty() {
        return Vec::new();
    }
    // The copies' branch of the run's cancellation tree.
    let cancel = kill.child_token();
    let mut out = Vec::new();
    for c in &cfg.copies {
        let ids = std::slice::from_ref(&m.id);
        let run = to_store_keeping(cfg, c, job, primary, ids, Some(&m.id), &cancel).await;
        log_run(job, &run);
        out.push(run);
    }
    out
}

fn log_run(job: &JobConfig, run: &StoreRun) {
    if let Some(e) = &run.setup {
        tracing::error!(job = %job.name, store = %run.store, error = %chain(e), "copy failed; the backup in the primary store is complete");
    }
    for (id, r) in &run.backups {
        match r {
            Ok(Copied::Copied {
                artifacts,
                bytes,
                repaired,
            }) => {
                let repaired = repaired.as_deref().unwrap_or("");
                tracing::info!(job = %job.name, backup = %id, store = %run.store, artifacts, bytes, repaired, "backup copied")
            }
            Ok(Copied::AlreadyPresent) => {
                tracing::info!(job = %job.name, backup = %id, store = %run.store, "backup already in the copy store")
            }
            Err(e) => {
                tracing::error!(job = %job.name, backup = %id, store = %run.store, error = %chain(e), "copy failed; the backup in the primary store is complete")
            }
        }
    }
    if let Some(Err(e)) = &run.prune {
        tracing::error!(job = %job.name, store = %run.store, error = %chain(e), "retention in the copy store failed");
    }
}

/// Copies `ids` (oldest first) of `job` into one copy store under its lock,
/// skipping backups it holds already, then applies the job's retention
/// there if every copy succeeded.
pub async fn to_store(
    cfg: &Config,
    copy: &StoreSpec,
    job: &JobConfig,
    primary: &Repo,
    ids: &[String],
    cancel: &CancellationToken,
) -> StoreRun {
    to_store_keeping(cfg, copy, job, primary, ids, None, cancel).await
}

/// [`to_store`]; the copy store's retention never deletes `own`, the
/// backup the current run wrote (see [`prune::plan_job_keeping`]).
async fn to_store_keeping(
    cfg: &Config,
    copy: &StoreSpec,
    job: &JobConfig,
    primary: &Repo,
    ids: &[String],
    own: Option<&str>,
    cancel: &CancellationToken,
) -> StoreRun {
    let mut run = StoreRun {
        store: store::display_url(&copy.url),
        setup: None,
        backups: Vec::new(),
        prune: None,
    };
    let dst = match store::open(copy) {
        Ok(r) => r.with_signing(cfg.signing.as_ref()),
        Err(e) => {
            run.setup = Some(e.into());
            return run;
        }
    };
    let guard = match lock::acquire(
        &dst,
        &job.name,
        cfg.daemon.lock_ttl,
        "copy",
        Duration::ZERO,
        |_| {},
    )
    .await
    {
        Ok(g) => g,
        Err(e) => {
            run.setup = Some(CopyError::Lock(e));
            return run;
        }
    };
    // Losing the copy store's lease stops writing there, like a backup.
    let cancel = cancel.child_token();
    let lost = guard.lost();
    let on_lost = cancel.clone();
    let watcher = tokio::spawn(async move {
        lost.cancelled().await;
        on_lost.cancel();
    });
    let dst = crate::repo::gate::gated(&dst, cancel.clone());
    for id in ids {
        if cancel.is_cancelled() {
            break;
        }
        let r = copy_backup(primary, &dst, &job.name, id, &cancel).await;
        run.backups.push((id.clone(), r));
    }
    if job.retention.is_some() && !cancel.is_cancelled() && run.copied_all() {
        run.prune = Some(prune_copy(&dst, job, own, &cancel).await);
    }
    watcher.abort();
    if let Err(e) = guard.release().await {
        tracing::warn!(job = %job.name, store = %run.store, error = %chain(&e), "could not release the copy store's lock; it expires on its own");
    }
    run
}

async fn prune_copy(
    dst: &Repo,
    job: &JobConfig,
    own: Option<&str>,
    cancel: &CancellationToken,
) -> Result<Pruned, PruneError> {
    let decision = match own {
        Some(own) => prune::plan_job_keeping(dst, job, own).await?,
        None => prune::plan_job(dst, job).await?,
    };
    prune::apply_until(dst, &decision, cancel).await
}

/// One line per copy that failed, and per copy store whose retention
/// failed, for run-now's exit status and the run report.
pub fn failure_messages(id: &str, runs: &[StoreRun]) -> Vec<String> {
    let mut out = Vec::new();
    for r in runs {
        for e in r.copy_errors() {
            out.push(format!(
                "backup {id} is complete; copy to {} failed: {}",
                r.store,
                chain(e)
            ));
        }
        if let Some(Err(e)) = &r.prune {
            out.push(format!(
                "backup {id} is complete and copied to {}, but retention there failed: {}",
                r.store,
                chain(e)
            ));
        }
    }
    out
}
