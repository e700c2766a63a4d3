//! One backup of one job: every source, then the manifest, last.
//!
//! This is the single backup code path: `run-now` and the daemon both call
//! [`run_job`]. A failure anywhere returns an error before the manifest is
//! written, removes what this run uploaded (best effort; the sweep catches
//! the rest), and never lets retention run.
//!
//! Before the manifest is written, the shrink guard ([`crate::backup::guard`])
//! compares the new backup with the job's last good one; what it finds is
//! recorded in the manifest ([`GuardMark`]), which the runner reads to skip
//! retention after a suspicious backup.

use std::sync::{Arc, Mutex};

use object_store::path::Path as ObjPath;
use object_store::ObjectStoreExt;

use crate::backup::guard;
use crate::backup::sink::RunCtx;
use crate::config::{JobConfig, SourceKind};
use crate::error::chain;
use crate::progress::Progress;
use crate::repo::catalog;
use crate::repo::manifest::{self, Artifact, GuardMark, Manifest, ManifestError};
use crate::repo::store::{new_backup_id, Repo};
use crate::retry::{Class, Transient};
use crate::sys::child::KillSwitch;

pub use crate::backup::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup {job}/{id}: source `{source_name}` failed")]
    Source {
        job: String,
        id: String,
        source_name: String,
        #[source]
        error: SourceError,
    },
    #[error(
        "backup {job}/{id} was stopped before it completed; no manifest was written; {cleanup}"
    )]
    Cancelled {
        job: String,
        id: String,
        cleanup: Cleanup,
    },
    #[error("backup {job}/{id}")]
    Manifest {
        job: String,
        id: String,
        #[source]
        error: ManifestError,
    },
}

impl Transient for BackupError {
    fn class(&self) -> Class {
        match self {
            BackupError::Source { error, .. } => error.class(),
            BackupError::Manifest { error, .. } => error.class(),
            BackupError::Cancelled { .. } => Class::Permanent,
        }
    }
}

/// What the shrink guard's findings do to this run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shrink {
    /// Findings mark the backup suspicious.
    #[default]
    Guard,
    /// The operator expects a smaller backup (`run-now --accept-shrink`):
    /// findings are recorded as accepted and the backup counts as good.
    Accept,
}

/// Runs one backup of `job` and returns its manifest once committed.
pub async fn run_job(
    repo: &Repo,
    job: &JobConfig,
    progress: Arc<Progress>,
    kill: KillSwitch,
) -> Result<Manifest, BackupError> {
    let earlier = catalog::load(repo, Some(&job.name)).await;
    run_job_with(repo, job, progress, kill, Shrink::Guard, earlier.as_ref()).await
}

/// [`run_job`], choosing what the shrink guard's findings do, against the
/// job's catalogue as the caller listed it (under the job's lock, so
/// nothing but this run changes it): the guard compares with it.
pub async fn run_job_with(
    repo: &Repo,
    job: &JobConfig,
    progress: Arc<Progress>,
    kill: KillSwitch,
    shrink: Shrink,
    earlier: Result<&catalog::Catalog, &catalog::CatalogError>,
) -> Result<Manifest, BackupError> {
    let started_at = repo.clock.now();
    let id = new_backup_id(started_at);
    let ctx = RunCtx {
        repo: repo.clone(),
        job: job.name.clone(),
        id: id.clone(),
        compression: job.compression,
        encryption: job.encryption.as_ref().map(|e| e.recipients.clone()),
        progress,
        kill,
        uploaded: Mutex::new(Vec::new()),
    };
    tracing::info!(job = %job.name, backup = %id, "backup started");

    let mut artifacts = Vec::new();
    for src in &job.sources {
        match backup_source(&ctx, &src.name, &src.kind).await {
            Ok(mut a) => artifacts.append(&mut a),
            // A source stopped by cancellation failed because we stopped
            // it: say that, not the pipe error it died of.
            Err(_) if ctx.kill.is_killed() => {
                return Err(BackupError::Cancelled {
                    job: job.name.clone(),
                    id,
                    cleanup: cleanup(&ctx).await,
                });
            }
            Err(error) => {
                cleanup(&ctx).await;
                return Err(BackupError::Source {
                    job: job.name.clone(),
                    id,
                    source_name: src.name.clone(),
                    error,
                });
            }
        }
    }

    let guard = guard_mark(job, earlier, &artifacts, shrink);
    // A cancellation that arrived after the last source finished (or while
    // the guard read the catalog) must still stop the commit: a cancelled
    // run never writes a manifest.
    if ctx.kill.is_killed() {
        return Err(BackupError::Cancelled {
            job: job.name.clone(),
            id,
            cleanup: cleanup(&ctx).await,
        });
    }
    let m = Manifest {
        format: manifest::FORMAT,
        job: job.name.clone(),
        id: id.clone(),
        started_at,
        finished_at: repo.clock.now(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        host: crate::sys::hostname(),
        artifacts,
        guard,
    };
    if let Err(error) = manifest::write(repo, &m).await {
        // A lost create-only race means another writer owns this ID (its
        // artifacts share our keys); an unconfirmed write may still land
        // and make these artifacts a complete backup: leave them alone.
        if !error.keeps_artifacts() {
            cleanup(&ctx).await;
        }
        return Err(BackupError::Manifest {
            job: job.name.clone(),
            id,
            error,
        });
    }
    Ok(m)
}

/// The guard's verdict on `artifacts`, against the job's last good backup.
/// A store that cannot list the earlier backups leaves nothing to compare
/// with: that alone marks the backup suspicious, so it prunes nothing.
fn guard_mark(
    job: &JobConfig,
    earlier: Result<&catalog::Catalog, &catalog::CatalogError>,
    artifacts: &[Artifact],
    shrink: Shrink,
) -> GuardMark {
    let reasons: Vec<String> = match earlier {
        Ok(cat) => guard::compare(
            guard::baseline(&cat.complete, &job.name),
            artifacts,
            &job.guard,
        )
        .iter()
        .map(ToString::to_string)
        .collect(),
        Err(e) => vec![format!(
            "the earlier backups could not be read to compare with: {e}"
        )],
    };
    match shrink {
        Shrink::Guard => GuardMark {
            suspicious: reasons,
            accepted: Vec::new(),
        },
        Shrink::Accept => GuardMark {
            suspicious: Vec::new(),
            accepted: reasons,
        },
    }
}

async fn backup_source(
    ctx: &RunCtx,
    name: &str,
    kind: &SourceKind,
) -> Result<Vec<Artifact>, SourceError> {
    crate::backup::source::registry::produce(kind, ctx, name).await
}

/// What removing a failed run's objects achieved.
#[derive(Debug, Clone, Default)]
pub struct Cleanup {
    pub removed: usize,
    /// Objects that could not be removed (the sweep takes them later).
    pub left: Vec<String>,
}

impl std::fmt::Display for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "removed the {} object(s) it had uploaded", self.removed)?;
        match self.left.as_slice() {
            [] => write!(f, "; nothing was left in the store"),
            left => write!(
                f,
                "; LEFT {} object(s) that prune sweeps after orphan_grace: {}",
                left.len(),
                left.join(", ")
            ),
        }
    }
}

/// Removes what a failed run uploaded. Failures are only logged: without a
/// manifest these objects are unreachable, and the sweep removes leftovers.
async fn cleanup(ctx: &RunCtx) -> Cleanup {
    let keys: Vec<ObjPath> = ctx.uploaded.lock().map(|u| u.clone()).unwrap_or_default();
    let mut out = Cleanup::default();
    for key in keys {
        match ctx.repo.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => out.removed += 1,
            Err(e) => {
                tracing::warn!(key = %key, error = %chain(&e), "could not remove an object of a failed backup");
                out.left.push(key.to_string());
            }
        }
    }
    out
}
