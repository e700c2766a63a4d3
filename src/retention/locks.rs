//! Retention on a store with `object_lock`: what the policy keeps stays
//! locked `period` ahead, and what it deletes is reported with the date
//! until which the store still retains it.
//!
//! Extending is allowed in both lock modes; shortening is not (and needs a
//! bypass permission in governance mode that the sidecar must not have),
//! so a lock is only ever moved later. A backup the policy no longer keeps
//! is simply not extended: its lock runs out, then the bucket's lifecycle
//! rule frees its noncurrent versions.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::Serialize;

use crate::error::chain;
use crate::repo::s3_lock::Extension;
use crate::repo::store::{backup_dir, Repo};

/// What extending the locks of the kept backups did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LockReport {
    /// Every kept object is to be locked at least until this date.
    pub until: Option<DateTime<Utc>>,
    /// Objects whose lock was moved to `until`.
    pub extended: usize,
    /// Objects already locked at least that far ahead.
    pub already_locked: usize,
    /// Objects whose lock could not be read or moved, with the reason.
    pub failed: Vec<String>,
}

/// A deleted (or undeletable) backup the store keeps until its lock ends.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Retained {
    pub backup_id: String,
    pub until: DateTime<Utc>,
}

/// Extends the lock of every object of every backup in `kept` to at least
/// `now + period`. `None` when the store has no `object_lock`.
pub async fn extend_kept(repo: &Repo, job: &str, kept: &[String]) -> Option<LockReport> {
    let (Some(lock), Some(spec)) = (&repo.lock, repo.object_lock) else {
        return None;
    };
    let until = spec.until(repo.clock.now());
    let mut report = LockReport {
        until: Some(until),
        ..LockReport::default()
    };
    for id in kept {
        let keys: Result<Vec<_>, _> = repo
            .store
            .list(Some(&backup_dir(job, id)))
            .map_ok(|m| m.location)
            .try_collect()
            .await;
        let keys = match keys {
            Ok(k) => k,
            Err(e) => {
                report
                    .failed
                    .push(format!("listing {job}/{id}: {}", chain(&e)));
                continue;
            }
        };
        for key in keys {
            match lock.extend(key.as_ref(), spec.mode, until).await {
                Ok(Extension::Extended) => report.extended += 1,
                Ok(Extension::AlreadyCovered(_)) => report.already_locked += 1,
                Err(e) => report.failed.push(chain(&e).to_string()),
            }
        }
    }
    if report.extended > 0 || !report.failed.is_empty() {
        tracing::info!(job, store = %repo.display, extended = report.extended, already = report.already_locked, failed = report.failed.len(), until = %until, "locks of kept backups extended");
    }
    Some(report)
}

/// The date until which the store retains `key` whatever is deleted, if
/// it is locked beyond `now`; `None` without `object_lock`, without a lock
/// on the object, or when the lock cannot be read (then the delete's own
/// result is what is reported).
pub async fn retained_until(repo: &Repo, key: &str) -> Option<DateTime<Utc>> {
    let lock = repo.lock.as_ref().filter(|_| repo.object_lock.is_some())?;
    match lock.retention(key).await {
        Ok(Some(r)) if r.until > repo.clock.now() => Some(r.until),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(store = %repo.display, key, error = %chain(&e), "cannot read the lock of a backup being deleted");
            None
        }
    }
}
