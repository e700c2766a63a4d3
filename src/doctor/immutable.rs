//! `doctor` on a store with `object_lock`: is the bucket able to honour
//! it (Object Lock on), does space come back (a lifecycle rule expiring
//! noncurrent versions), does the lock period cover what the policy keeps,
//! and how far ahead is the newest backup locked.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as ObjPath;

use super::{bounded, timed_out, About, Check};
use crate::error::chain;
use crate::repo::s3_lock::{LifecycleRule, ObjectLockSpec, S3Lock};
use crate::repo::store::{self, Repo};
use crate::retention::policy::{Count, Policy};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// Manifests read, newest first, looking for the newest complete backup.
const NEWEST_TRIES: usize = 5;

pub(super) async fn check(
    about: &About,
    repo: &Repo,
    spec: ObjectLockSpec,
    bucket_lock_enabled: Option<bool>,
    job: &str,
    policy: Option<&Policy>,
) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(lock) = &repo.lock else {
        return out;
    };
    out.push(match bucket_lock_enabled {
        Some(true) => about.ok(
            "object lock configured",
            format!(
                "every backup object is locked {} for {} days ahead",
                spec.mode.as_s3(),
                spec.period.as_secs() / DAY
            ),
        ),
        Some(false) => about.fail(
            "object lock configured",
            "store.object_lock is set but the bucket has no Object Lock: every backup will fail",
            "create the bucket with Object Lock enabled (it turns versioning on), or enable it on the versioned bucket (PutObjectLockConfiguration); see the README's immutable store setup",
        ),
        None => about.fail(
            "object lock configured",
            "cannot tell whether the bucket has Object Lock",
            "the credentials need s3:GetBucketObjectLockConfiguration",
        ),
    });
    out.push(match bounded(lock.lifecycle()).await {
        Some(Ok(rules)) => lifecycle(about, &rules),
        Some(Err(e)) => about.warn(
            "lifecycle",
            format!("cannot tell: {}", chain(&e)),
            "the credentials need s3:GetLifecycleConfiguration to check this",
        ),
        None => about.warn("lifecycle", timed_out(), "check the store's endpoint"),
    });
    if let Some(window) = policy.and_then(shortest_keep_window) {
        out.push(period_covers(about, spec.period, window));
    }
    out.push(match bounded(newest_lock(repo, lock, job)).await {
        Some(Ok(line)) => about.info("newest backup locked", line),
        Some(Err(e)) => about.warn(
            "newest backup locked",
            e,
            "a backup written before object_lock was set is locked by the next retention run",
        ),
        None => about.warn(
            "newest backup locked",
            timed_out(),
            "check the store's endpoint",
        ),
    });
    out
}

fn lifecycle(about: &About, rules: &[LifecycleRule]) -> Check {
    let expiring = rules
        .iter()
        .filter(|r| r.enabled)
        .find_map(|r| r.noncurrent_days.map(|d| (r.id.as_str(), d)));
    match expiring {
        Some((id, days)) => about.ok(
            "lifecycle",
            format!("rule `{id}` removes noncurrent versions {days} days after they stop being current (once their lock has ended)"),
        ),
        None => about.warn(
            "lifecycle",
            "no enabled lifecycle rule expires noncurrent versions: what prune deletes stays stored (and billed) for ever",
            "add a rule with NoncurrentVersionExpiration (see the README's immutable store setup)",
        ),
    }
}

fn period_covers(about: &About, period: Duration, window: Duration) -> Check {
    let days = |d: Duration| d.as_secs().div_ceil(DAY);
    if period >= window {
        about.ok(
            "lock period",
            format!(
                "{} days cover the policy's shortest keep window ({} days)",
                days(period),
                days(window)
            ),
        )
    } else {
        about.warn(
            "lock period",
            format!(
                "{} days are shorter than the policy's shortest keep window ({} days): if retention stops running (a stopped or compromised sidecar), backups the policy keeps lose their lock before the policy lets them go",
                days(period),
                days(window)
            ),
            "raise store.object_lock.period to at least the shortest keep window",
        )
    }
}

/// Pure: the shortest time any time-based `keep_*` rule of `policy` keeps
/// a backup for (`keep_daily: 7` is 7 days, `keep_within: 2w` 14 days).
/// `keep_last` counts backups, not time, and unlimited counts never end:
/// neither gives a window. Months count as 30 days and years as 365.
pub fn shortest_keep_window(policy: &Policy) -> Option<Duration> {
    let counted = |c: Option<Count>, unit: u64| match c {
        Some(Count::Limited(n)) => Some(Duration::from_secs(u64::from(n) * unit)),
        _ => None,
    };
    let within = |d: Option<crate::retention::policy::KeepDuration>| {
        d.filter(|d| !d.is_zero()).map(|d| {
            Duration::from_secs(
                u64::from(d.years) * 365 * DAY
                    + u64::from(d.months) * 30 * DAY
                    + u64::from(d.days) * DAY
                    + u64::from(d.hours) * HOUR,
            )
        })
    };
    [
        counted(policy.keep_hourly, HOUR),
        counted(policy.keep_daily, DAY),
        counted(policy.keep_weekly, 7 * DAY),
        counted(policy.keep_monthly, 30 * DAY),
        counted(policy.keep_yearly, 365 * DAY),
        within(policy.keep_within),
        within(policy.keep_within_hourly),
        within(policy.keep_within_daily),
        within(policy.keep_within_weekly),
        within(policy.keep_within_monthly),
        within(policy.keep_within_yearly),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// The lock of the newest complete backup's manifest, in words.
async fn newest_lock(repo: &Repo, lock: &S3Lock, job: &str) -> Result<String, String> {
    let listed = repo
        .store
        .list_with_delimiter(Some(&ObjPath::from(job)))
        .await
        .map_err(|e| chain(&e).to_string())?;
    let mut ids: Vec<String> = listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_owned))
        .filter(|id| store::backup_id_time(id).is_some())
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    for id in ids.into_iter().take(NEWEST_TRIES) {
        let key = store::manifest_path(job, &id);
        let exists = repo
            .store
            .list(Some(&store::backup_dir(job, &id)))
            .try_any(|m| {
                let hit = m.location == key;
                async move { hit }
            })
            .await
            .map_err(|e| chain(&e).to_string())?;
        if !exists {
            continue;
        }
        return match lock.retention(key.as_ref()).await {
            Ok(Some(r)) if r.until > repo.clock.now() => Ok(format!(
                "{id}: {} until {}",
                r.mode,
                r.until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            Ok(Some(r)) => Err(format!(
                "{id}: its lock ended at {}",
                r.until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            Ok(None) => Err(format!("{id}: its manifest is not locked")),
            Err(e) => Err(chain(&e).to_string()),
        };
    }
    Ok("no complete backup yet".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_time_based_rule_is_the_window() {
        let mut p = Policy {
            keep_last: Some(Count::Limited(3)),
            ..Policy::default()
        };
        assert_eq!(shortest_keep_window(&p), None);
        p.keep_daily = Some(Count::Limited(7));
        p.keep_monthly = Some(Count::Limited(12));
        assert_eq!(shortest_keep_window(&p), Some(Duration::from_secs(7 * DAY)));
        p.keep_within = Some("36h".parse().unwrap());
        assert_eq!(
            shortest_keep_window(&p),
            Some(Duration::from_secs(36 * HOUR))
        );
        let unlimited = Policy {
            keep_yearly: Some(Count::Unlimited),
            ..Policy::default()
        };
        assert_eq!(shortest_keep_window(&unlimited), None);
    }
}
