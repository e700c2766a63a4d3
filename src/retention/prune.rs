//! Prune: apply a job's retention policy to its complete backups, and sweep
//! leftovers of failed runs.
//!
//! [`decide`] is pure: from the policy, the catalog and the clock it returns
//! what to delete, or refuses. [`apply`] deletes, manifest first then data,
//! so a backup is either complete or unreachable, never a manifest pointing
//! at missing artifacts. Guards:
//! - only complete backups (with a manifest) are planned; leftovers without a
//!   manifest are swept only when older than the grace period (a younger one
//!   may be a backup in progress);
//! - the newest complete backup is always kept;
//! - a plan that would delete every backup is refused;
//! - a plan that would delete more than `max_deletions` backups is refused
//!   (a mistyped policy should not empty a bucket in one night).

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::chain;
use crate::repo::catalog::{self, CatalogError, Incomplete};
use crate::repo::manifest::Manifest;
use crate::repo::store::{backup_dir, manifest_path, Repo};
use crate::retention::job::RetentionJob;
use crate::retention::locks::{self, LockReport, Retained};
use crate::retention::planner::{self, Plan, Snapshot};
use crate::retention::policy::Policy;
use crate::retry::{self, Backoff};

/// Per delete: a few quick attempts, then it is reported as failed.
const DELETE_BACKOFF: Backoff = Backoff {
    max_attempts: 3,
    initial: Duration::from_millis(400),
    max_delay: Duration::from_secs(2),
    max_elapsed: Duration::from_secs(30),
};

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub job: String,
    pub plan: Plan,
    /// Leftover directories old enough to sweep.
    pub sweep: Vec<String>,
    /// Leftover directories too young to sweep (maybe a running backup).
    pub young_leftovers: Vec<String>,
    #[serde(skip)]
    sweep_objects: Vec<ObjPath>,
    /// The job's `orphan_grace`: open multipart uploads older than this are
    /// aborted too.
    #[serde(skip)]
    pub grace: Duration,
    /// Backups with a damaged manifest: neither counted nor deleted.
    pub damaged: Vec<String>,
}

impl Decision {
    pub fn removed_ids(&self) -> Vec<String> {
        self.plan.removed().map(|e| e.id.clone()).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("job `{job}` has no retention policy: nothing is pruned")]
    NoPolicy { job: String },
    #[error("refusing to prune job `{job}`: the plan would delete all {count} backups")]
    WouldDeleteAll { job: String, count: usize },
    #[error("refusing to prune job `{job}`: the plan would delete the newest backup {id}")]
    WouldDeleteNewest { job: String, id: String },
    #[error("refusing to prune job `{job}`: the plan would delete {id}, the backup this run just wrote, because newer backups outrank it; they are dated ahead by a clock or forged: check `ccbackup list --job {job}`")]
    WouldDeleteOwn { job: String, id: String },
    #[error("refusing to prune job `{job}`: the plan deletes {count} backups, more than max_deletions ({max}); check the policy with `ccbackup prune --dry-run`, then raise max_deletions if it is right")]
    TooMany {
        job: String,
        count: usize,
        max: usize,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("pruning job `{job}` stopped after deleting {deleted} of {planned} backups; every backup is either whole or gone")]
    Interrupted {
        job: String,
        deleted: usize,
        planned: usize,
    },
    #[error("pruning job `{job}`: the locks of {failed} kept object(s) could not be extended, first: {first}")]
    Extend {
        job: String,
        failed: usize,
        first: String,
    },
    #[error("pruning job `{job}`: {failed} deletion(s) failed, first: {first}")]
    Delete {
        job: String,
        failed: usize,
        first: String,
    },
}

/// What pruning did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pruned {
    pub deleted: Vec<String>,
    pub swept: Vec<String>,
    /// Keys of open multipart uploads (S3) aborted as stale, and of
    /// staging files and empty directories (`file://`) removed.
    pub aborted_uploads: Vec<String>,
    /// Why the multipart-upload sweep failed, if it did (not fatal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_sweep_error: Option<String>,
    /// With `store.object_lock`: the locks of the kept backups extended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locks: Option<LockReport>,
    /// Backups removed (or whose removal the store refused) that the store
    /// still retains, as locked versions, until the date given.
    pub retained_by_lock: Vec<Retained>,
}

/// Pure: the prune decision for one job.
pub fn decide(
    job: &str,
    policy: &Policy,
    complete: &[Manifest],
    incomplete: &[Incomplete],
    now: DateTime<Utc>,
    max_deletions: usize,
    grace: Duration,
) -> Result<Decision, PruneError> {
    let snaps: Vec<Snapshot> = complete
        .iter()
        .filter(|m| m.job == job)
        .map(|m| Snapshot {
            id: m.id.clone(),
            time: m.started_at,
        })
        .collect();
    let plan = planner::plan(policy, &snaps);
    let removed = plan.removed().count();
    if !snaps.is_empty() && removed == snaps.len() {
        return Err(PruneError::WouldDeleteAll {
            job: job.to_owned(),
            count: removed,
        });
    }
    if let Some(newest) = snaps
        .iter()
        .max_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)))
    {
        if plan.removed().any(|e| e.id == newest.id) {
            return Err(PruneError::WouldDeleteNewest {
                job: job.to_owned(),
                id: newest.id.clone(),
            });
        }
    }
    if removed > max_deletions {
        return Err(PruneError::TooMany {
            job: job.to_owned(),
            count: removed,
            max: max_deletions,
        });
    }
    let grace_std = grace;
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let (old, young): (Vec<&Incomplete>, Vec<&Incomplete>) = incomplete
        .iter()
        .filter(|i| i.job == job)
        .partition(|i| now.signed_duration_since(i.last_modified) > grace);
    Ok(Decision {
        job: job.to_owned(),
        plan,
        sweep: old.iter().map(|i| i.id.clone()).collect(),
        young_leftovers: young.iter().map(|i| i.id.clone()).collect(),
        sweep_objects: old.iter().flat_map(|i| i.objects.iter().cloned()).collect(),
        grace: grace_std,
        damaged: Vec::new(),
    })
}

/// Reads the catalog of a job and decides.
pub async fn plan_job(repo: &Repo, job: &impl RetentionJob) -> Result<Decision, PruneError> {
    let cat = catalog::load(repo, Some(job.name())).await?;
    plan_listed(job, cat, repo.clock.now())
}

/// Decides on a catalogue of the job already listed.
pub fn plan_listed(
    job: &impl RetentionJob,
    cat: catalog::Catalog,
    now: DateTime<Utc>,
) -> Result<Decision, PruneError> {
    let policy = job.policy().ok_or_else(|| PruneError::NoPolicy {
        job: job.name().to_owned(),
    })?;
    let mut d = decide(
        job.name(),
        policy,
        &cat.complete,
        &cat.incomplete,
        now,
        job.max_deletions(),
        job.orphan_grace(),
    )?;
    d.damaged = cat.damaged.into_iter().map(|x| x.id).collect();
    Ok(d)
}

/// [`plan_job`] for the retention that follows a backup: the backup the
/// run just wrote (`own`) is never deleted by it. Newer backups can only
/// outrank it if they are dated ahead of this host (within
/// `store.max_clock_skew`) or forged; the whole plan is refused then, so
/// the run fails instead of reporting a success it deleted.
pub async fn plan_job_keeping(
    repo: &Repo,
    job: &impl RetentionJob,
    own: &str,
) -> Result<Decision, PruneError> {
    let d = plan_job(repo, job).await?;
    keeps(&d, own)?;
    Ok(d)
}

/// [`plan_job_keeping`] on a catalogue already listed (it must hold `own`).
pub fn plan_listed_keeping(
    job: &impl RetentionJob,
    cat: catalog::Catalog,
    own: &str,
    now: DateTime<Utc>,
) -> Result<Decision, PruneError> {
    let d = plan_listed(job, cat, now)?;
    keeps(&d, own)?;
    Ok(d)
}

/// Pure: refuses a decision that removes `own`.
pub fn keeps(d: &Decision, own: &str) -> Result<(), PruneError> {
    if d.plan.removed().any(|e| e.id == own) {
        return Err(PruneError::WouldDeleteOwn {
            job: d.job.clone(),
            id: own.to_owned(),
        });
    }
    Ok(())
}

/// Deletes `key`, retrying transient failures only; an object already
/// gone counts as deleted.
async fn delete_with_retry(
    repo: &Repo,
    key: &ObjPath,
    cancel: &CancellationToken,
) -> Result<(), object_store::Error> {
    let what = format!("deleting {key}");
    match retry::retry(DELETE_BACKOFF, &what, cancel, || repo.store.delete(key)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Everything stored under a backup's directory (artifacts, stray parts).
async fn list_dir(repo: &Repo, job: &str, id: &str) -> Result<Vec<ObjPath>, object_store::Error> {
    let dir = backup_dir(job, id);
    repo.store
        .list(Some(&dir))
        .map_ok(|m| m.location)
        .try_collect()
        .await
}

/// Deletes what the decision removes: for each backup the manifest first,
/// then its data; then the sweep. Failures are retried and reported; a
/// backup whose manifest could not be deleted keeps its data.
pub async fn apply(repo: &Repo, d: &Decision) -> Result<Pruned, PruneError> {
    apply_until(repo, d, &CancellationToken::new()).await
}

/// [`apply`], stopping between two backups once `cancel` fires: a backup is
/// never left half deleted by an interruption (its manifest goes first, so
/// at worst its data is unreachable and swept later).
pub async fn apply_until(
    repo: &Repo,
    d: &Decision,
    cancel: &CancellationToken,
) -> Result<Pruned, PruneError> {
    let mut out = Pruned::default();
    let mut failures: Vec<String> = Vec::new();
    // Kept backups first: their protection matters more than the deletes.
    let kept: Vec<String> = d.plan.kept().map(|e| e.id.clone()).collect();
    out.locks = locks::extend_kept(repo, &d.job, &kept).await;
    let planned = d.removed_ids();
    for id in planned.iter().cloned() {
        if cancel.is_cancelled() {
            return Err(PruneError::Interrupted {
                job: d.job.clone(),
                deleted: out.deleted.len(),
                planned: planned.len(),
            });
        }
        let manifest = manifest_path(&d.job, &id);
        let retained = locks::retained_until(repo, manifest.as_ref()).await;
        if let Some(until) = retained {
            out.retained_by_lock.push(Retained {
                backup_id: id.clone(),
                until,
            });
        }
        if let Err(e) = delete_with_retry(repo, &manifest, cancel).await {
            // On a versioned bucket a plain DELETE only adds a delete
            // marker; a store that refuses it for a locked object keeps
            // the backup, which is what the lock is for, not a failure.
            let refused = matches!(e, object_store::Error::PermissionDenied { .. })
                || chain(&e).to_string().contains("AccessDenied");
            if retained.is_none() || !refused {
                failures.push(format!("manifest of {}/{id}: {}", d.job, chain(&e)));
            } else {
                tracing::info!(job = %d.job, backup = %id, "the store refused to delete a locked backup; retained by lock");
            }
            continue;
        }
        // From here the backup no longer exists; leftover data is only
        // unreachable, and the next sweep removes it.
        match list_dir(repo, &d.job, &id).await {
            Ok(keys) => {
                for k in keys {
                    if let Err(e) = delete_with_retry(repo, &k, cancel).await {
                        failures.push(format!("{k}: {}", chain(&e)));
                    }
                }
            }
            Err(e) => failures.push(format!("listing {}/{id}: {}", d.job, chain(&e))),
        }
        tracing::info!(job = %d.job, backup = %id, store = %repo.display, "backup deleted by retention");
        out.deleted.push(id);
    }
    sweep_objects(repo, d, &mut failures).await;
    sweep_open_uploads(repo, d, &mut out).await;
    let lock_failures = out.locks.as_ref().map_or(&[][..], |l| l.failed.as_slice());
    if failures.is_empty() && !lock_failures.is_empty() {
        return Err(PruneError::Extend {
            job: d.job.clone(),
            failed: lock_failures.len(),
            first: lock_failures[0].clone(),
        });
    }
    if failures.is_empty() {
        out.swept = d.sweep.clone();
        for id in &out.swept {
            tracing::info!(job = %d.job, leftover = %id, store = %repo.display, "swept objects of an incomplete backup");
        }
        Ok(out)
    } else {
        Err(PruneError::Delete {
            job: d.job.clone(),
            failed: failures.len(),
            first: failures.swap_remove(0),
        })
    }
}

/// Deletes the objects of incomplete backups the plan found; a failure is
/// added to `failures`.
async fn sweep_objects(repo: &Repo, d: &Decision, failures: &mut Vec<String>) {
    let sweep: Vec<Result<ObjPath, object_store::Error>> =
        d.sweep_objects.iter().cloned().map(Ok).collect();
    let mut results = repo
        .store
        .delete_stream(futures::stream::iter(sweep).boxed());
    while let Some(r) = results.next().await {
        match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => failures.push(format!("sweep: {}", chain(&e))),
        }
    }
}

/// Aborts the uploads a killed process left open (S3 multipart uploads,
/// `file://` staging files) into `out`.
async fn sweep_open_uploads(repo: &Repo, d: &Decision, out: &mut Pruned) {
    // Uploads a killed process left open hold billed parts but no object,
    // so the catalog never sees them.
    if let Some(s3) = &repo.s3 {
        match s3.sweep_job(&d.job, d.grace, repo.clock.now()).await {
            Ok(keys) => out.aborted_uploads = keys,
            Err(e) => {
                tracing::warn!(job = %d.job, store = %repo.display, error = %chain(&e), "open multipart uploads were not swept");
                out.upload_sweep_error = Some(chain(&e).to_string());
            }
        }
    }
    // The file:// counterpart: staging files of uploads a killed process
    // left, and empty directories, which no listing shows.
    if let Some(root) = &repo.local_root {
        let grace = chrono::Duration::from_std(d.grace).unwrap_or(chrono::Duration::MAX);
        let cutoff = repo
            .clock
            .now()
            .checked_sub_signed(grace)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        match crate::repo::local::sweep_staging(root.clone(), d.job.clone(), cutoff).await {
            Ok(keys) => out.aborted_uploads.extend(keys),
            Err(e) => {
                tracing::warn!(job = %d.job, error = %chain(&e), "staging files were not swept");
                out.upload_sweep_error = Some(chain(&e).to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::policy::{Count, Policy};

    fn policy(last: u32) -> Policy {
        Policy {
            keep_last: Some(Count::Limited(last)),
            ..Policy::default()
        }
    }

    fn manifest(id: &str, hour: u32) -> Manifest {
        let t = DateTime::parse_from_rfc3339(&format!("2026-01-01T{hour:02}:00:00Z"))
            .unwrap()
            .with_timezone(&Utc);
        crate::repo::manifest::fixture::manifest_at(id, t)
    }

    fn leftover(id: &str, age_h: i64, now: DateTime<Utc>) -> Incomplete {
        Incomplete {
            job: "j".into(),
            id: id.into(),
            objects: vec![ObjPath::from(format!("j/{id}/x"))],
            last_modified: now - chrono::Duration::hours(age_h),
        }
    }

    #[test]
    fn regression_issue22_a_plan_that_deletes_the_runs_own_backup_is_refused() {
        // Two backups dated after the run's own (forged, or a clock ahead)
        // outrank it under keep_last 2.
        let ms = vec![
            manifest("own", 1),
            manifest("ahead1", 2),
            manifest("ahead2", 3),
        ];
        let d = decide("j", &policy(2), &ms, &[], Utc::now(), 3, Duration::ZERO).unwrap();
        let err = keeps(&d, "own").unwrap_err();
        assert!(matches!(err, PruneError::WouldDeleteOwn { .. }), "{err}");
        assert!(err.to_string().contains("just wrote"), "{err}");
        keeps(&d, "ahead2").unwrap();
    }

    #[test]
    fn keeps_policy_and_sweeps_only_old_leftovers() {
        let now = Utc::now();
        let ms: Vec<Manifest> = (0..5).map(|h| manifest(&format!("b{h}"), h)).collect();
        let inc = vec![leftover("old", 48, now), leftover("young", 1, now)];
        let d = decide(
            "j",
            &policy(2),
            &ms,
            &inc,
            now,
            10,
            Duration::from_secs(24 * 3600),
        )
        .unwrap();
        assert_eq!(d.removed_ids(), vec!["b0", "b1", "b2"]);
        assert_eq!(d.sweep, vec!["old"]);
        assert_eq!(d.young_leftovers, vec!["young"]);
    }

    #[test]
    fn refuses_more_than_max_deletions() {
        let ms: Vec<Manifest> = (0..6).map(|h| manifest(&format!("b{h}"), h)).collect();
        let err = decide("j", &policy(1), &ms, &[], Utc::now(), 3, Duration::ZERO).unwrap_err();
        assert!(
            matches!(
                err,
                PruneError::TooMany {
                    count: 5,
                    max: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn other_jobs_and_empty_history_are_left_alone() {
        let mut m = manifest("x", 1);
        m.job = "other".into();
        let d = decide("j", &policy(1), &[m], &[], Utc::now(), 3, Duration::ZERO).unwrap();
        assert!(d.plan.entries.is_empty());
    }
}
