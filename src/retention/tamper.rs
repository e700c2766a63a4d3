//! Tamper evidence from a versioned bucket's history.
//!
//! ccbackup writes every object of a backup once and the manifest last,
//! create-only, and it deletes only what the retention policy no longer
//! keeps. So, reading the version history:
//! - a manifest with more than one version was **rewritten**: ccbackup
//!   never writes a manifest twice;
//! - so was a backup with any other object (an artifact, the signature)
//!   written after its original manifest: ccbackup writes the manifest
//!   last. (A retried upload before the manifest is not counted; a version
//!   dated in the manifest's own second cannot be told from one before it
//!   on a store that keeps whole seconds.)
//! - a delete marker on any object of a backup the policy would still keep
//!   is a **deletion** ccbackup did not make, even when the deletion left
//!   the backup untrusted (its signature gone): the forgeries the caller
//!   leaves out of the policy are only those with no delete marker.
//!
//! How ccbackup tells its own deletes from anyone else's (decision): it
//! keeps no log of them (a log in the same store could be forged or
//! deleted by the same attacker). Instead the policy is evaluated again,
//! now, over every backup whose manifest the history shows (minus those
//! the caller knows to be forgeries): retention only deletes what the
//! policy no longer keeps, and a backup that falls out of a policy stays
//! out as newer backups arrive, so a deleted backup the policy keeps was
//! not deleted by retention. A job without a policy never deletes, so every
//! deletion there is tampering. Limitations: forged backups signed with a
//! key that is still trusted can crowd real ones out of a count rule until
//! the key is rotated (see `signing.public_keys`); backups whose old
//! versions the bucket's lifecycle rule already expired are out of sight.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::repo::s3_versions::ObjectVersion;
use crate::repo::store::{backup_id_time, MANIFEST_NAME};
use crate::retention::planner::{plan, Snapshot};
use crate::retention::policy::Policy;

/// What happened to a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// An object of a backup the policy keeps is delete-marked.
    Deleted,
    /// The manifest has more than one version.
    Rewritten,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deleted => "deleted",
            Kind::Rewritten => "rewritten",
        }
    }
}

/// One tampered backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tampered {
    pub job: String,
    pub id: String,
    pub kind: Kind,
    /// When the store recorded the first tampering with this backup.
    pub at: DateTime<Utc>,
    /// A time to pass to `--as-of` that shows the backup as ccbackup wrote
    /// it: its original manifest, before anything was done to it.
    pub recover_as_of: DateTime<Utc>,
}

impl Tampered {
    /// As `list` and notifications word it.
    pub fn describe(&self) -> String {
        format!(
            "{} at {}, recoverable with --as-of {}",
            self.kind.as_str().to_uppercase(),
            self.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            self.recover_as_of
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    }
}

#[derive(Default)]
struct Dir<'a> {
    manifests: Vec<&'a ObjectVersion>,
    markers: Vec<&'a ObjectVersion>,
    /// Versions of every other object (artifacts, signature).
    others: Vec<&'a ObjectVersion>,
}

/// Pure: the tampered backups of `job`, from the history of every object
/// under the store (`versions`, full keys; `prefix` is the store's key
/// prefix with a trailing `/`, or empty). `not_counted` are backups known
/// to be forgeries, left out of the policy's evaluation.
pub fn detect(
    job: &str,
    policy: Option<&Policy>,
    versions: &[ObjectVersion],
    prefix: &str,
    not_counted: &BTreeSet<String>,
) -> Vec<Tampered> {
    let job_prefix = format!("{prefix}{job}/");
    let mut dirs: BTreeMap<&str, Dir<'_>> = BTreeMap::new();
    for v in versions {
        let Some(rest) = v.key.strip_prefix(&job_prefix) else {
            continue;
        };
        let Some((id, below)) = rest.split_once('/') else {
            continue;
        };
        if backup_id_time(id).is_none() {
            continue;
        }
        let d = dirs.entry(id).or_default();
        if v.delete_marker {
            d.markers.push(v);
        } else if below == MANIFEST_NAME {
            d.manifests.push(v);
        } else {
            d.others.push(v);
        }
    }
    // Backups that ever had a manifest: what retention saw, at some time.
    let snapshots: Vec<Snapshot> = dirs
        .iter()
        .filter(|(id, d)| {
            // A backup made untrusted by a deletion (its signature
            // delete-marked) is ccbackup's, not a forgery: it counts.
            !d.manifests.is_empty() && (!not_counted.contains(**id) || !d.markers.is_empty())
        })
        .filter_map(|(id, _)| {
            Some(Snapshot {
                id: (*id).to_owned(),
                time: backup_id_time(id)?,
            })
        })
        .collect();
    let kept: BTreeSet<String> = match policy {
        Some(p) => plan(p, &snapshots).kept().map(|e| e.id.clone()).collect(),
        None => snapshots.iter().map(|s| s.id.clone()).collect(),
    };
    let mut out = Vec::new();
    for (id, d) in &dirs {
        let Some(original) = d.manifests.iter().map(|v| v.last_modified).min() else {
            continue;
        };
        let manifest_rewritten = (d.manifests.len() > 1).then(|| {
            let mut times: Vec<DateTime<Utc>> =
                d.manifests.iter().map(|v| v.last_modified).collect();
            times.sort();
            times[1]
        });
        let object_rewritten = d
            .others
            .iter()
            .map(|v| v.last_modified)
            .filter(|t| *t > original)
            .min();
        let rewritten = match (manifest_rewritten, object_rewritten) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deleted = kept
            .contains(*id)
            .then(|| d.markers.iter().map(|v| v.last_modified).min())
            .flatten();
        let (kind, at) = match (deleted, rewritten) {
            (Some(d), Some(r)) if r <= d => (Kind::Rewritten, r),
            (Some(d), _) => (Kind::Deleted, d),
            (None, Some(r)) => (Kind::Rewritten, r),
            (None, None) => continue,
        };
        // Just before the first tampering, but never before the original
        // manifest (the store may date both within the same second).
        let recover_as_of = (at - chrono::Duration::milliseconds(1)).max(original);
        out.push(Tampered {
            job: job.to_owned(),
            id: (*id).to_owned(),
            kind,
            at,
            recover_as_of,
        });
    }
    out
}

/// Pure: one `--as-of` time that shows every tampered backup as it was:
/// the earliest of their recovery times.
pub fn recovery_time(tampered: &[Tampered]) -> Option<DateTime<Utc>> {
    tampered.iter().map(|t| t.recover_as_of).min()
}

/// Every tampered backup of `jobs` (name and policy), from one pass over
/// the store's version history. `None` when the store keeps no versions
/// (not S3, or bucket versioning never switched on): there is nothing to
/// read the evidence from.
pub async fn scan(
    repo: &crate::repo::store::Repo,
    jobs: &[(&str, Option<&Policy>)],
    not_counted: &BTreeSet<String>,
) -> Result<Option<Vec<Tampered>>, crate::repo::s3_versions::VersionsError> {
    use crate::repo::s3_versions::{self, VersionsError};
    let Some(s3) = repo.s3.as_deref() else {
        return Ok(None);
    };
    match s3_versions::require_versioning(s3).await {
        Ok(()) => {}
        Err(VersionsError::Unversioned { .. }) => return Ok(None),
        Err(e) => return Err(e),
    }
    let prefix = match s3.key_prefix() {
        "" => String::new(),
        p => format!("{p}/"),
    };
    let versions = s3_versions::list_versions(s3, &prefix).await?;
    Ok(Some(
        jobs.iter()
            .flat_map(|(job, policy)| detect(job, *policy, &versions, &prefix, not_counted))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn v(key: &str, at: &str, marker: bool) -> ObjectVersion {
        ObjectVersion {
            key: key.to_owned(),
            version_id: format!("{key}@{at}"),
            last_modified: t(at),
            size: 1,
            e_tag: None,
            delete_marker: marker,
            is_latest: false,
        }
    }

    const A: &str = "20261201T020000Z-aaaaaa";
    const B: &str = "20261202T020000Z-bbbbbb";
    const C: &str = "20261203T020000Z-cccccc";

    fn history() -> Vec<ObjectVersion> {
        vec![
            v(&format!("p/j/{A}/db.zst"), "2026-12-01T02:00:10Z", false),
            v(
                &format!("p/j/{A}/manifest.json"),
                "2026-12-01T02:00:11Z",
                false,
            ),
            v(
                &format!("p/j/{B}/manifest.json"),
                "2026-12-02T02:00:11Z",
                false,
            ),
            v(
                &format!("p/j/{C}/manifest.json"),
                "2026-12-03T02:00:11Z",
                false,
            ),
        ]
    }

    fn keep_last(n: u64) -> Policy {
        crate::retention::policy::parse_policy_str(
            &format!("keep_last: {n}\n"),
            std::path::Path::new("test"),
        )
        .unwrap()
    }

    #[test]
    fn an_untouched_history_shows_nothing() {
        assert!(detect("j", Some(&keep_last(1)), &history(), "p/", &BTreeSet::new()).is_empty());
    }

    #[test]
    fn retention_deletes_are_not_tampering_other_deletes_are() {
        let mut h = history();
        // Retention (keep_last 2) removed A; an attacker deleted C's manifest.
        h.push(v(
            &format!("p/j/{A}/manifest.json"),
            "2026-12-03T03:00:00Z",
            true,
        ));
        h.push(v(&format!("p/j/{A}/db.zst"), "2026-12-03T03:00:01Z", true));
        h.push(v(
            &format!("p/j/{C}/manifest.json"),
            "2026-12-04T09:00:00Z",
            true,
        ));
        let found = detect("j", Some(&keep_last(2)), &h, "p/", &BTreeSet::new());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id, C);
        assert_eq!(found[0].kind, Kind::Deleted);
        assert_eq!(found[0].at, t("2026-12-04T09:00:00Z"));
        assert_eq!(found[0].recover_as_of, t("2026-12-04T08:59:59.999Z"));
        assert!(found[0]
            .describe()
            .starts_with("DELETED at 2026-12-04T09:00:00.000Z"));
        // Without a policy nothing is ever pruned: both deletions count.
        let found = detect("j", None, &h, "p/", &BTreeSet::new());
        assert_eq!(
            found.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            vec![A, C]
        );
        // Another job's history is not this job's.
        assert!(detect("k", None, &h, "p/", &BTreeSet::new()).is_empty());
    }

    #[test]
    fn attack_an_artifact_written_after_the_manifest_is_a_rewrite_a_retry_before_is_not() {
        let mut h = history();
        // A retried upload before the manifest: ccbackup's own.
        h.push(v(&format!("p/j/{A}/db.zst"), "2026-12-01T02:00:10Z", false));
        assert!(detect("j", None, &h, "p/", &BTreeSet::new()).is_empty());
        h.push(v(&format!("p/j/{A}/db.zst"), "2026-12-06T00:00:00Z", false));
        let found = detect("j", None, &h, "p/", &BTreeSet::new());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].id.as_str(), found[0].kind), (A, Kind::Rewritten));
        assert_eq!(found[0].recover_as_of, t("2026-12-05T23:59:59.999Z"));
    }

    #[test]
    fn attack_a_signature_deleted_to_make_a_backup_untrusted_is_a_deletion() {
        let mut h = history();
        h.push(v(
            &format!("p/j/{C}/manifest.json.minisig"),
            "2026-12-06T00:00:00Z",
            true,
        ));
        // The catalog calls C untrusted now; it is still ccbackup's.
        let untrusted: BTreeSet<String> = [C.to_owned()].into();
        let found = detect("j", Some(&keep_last(1)), &h, "p/", &untrusted);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].id.as_str(), found[0].kind), (C, Kind::Deleted));
    }

    #[test]
    fn a_second_manifest_version_is_a_rewrite_and_forgeries_do_not_crowd_out() {
        let mut h = history();
        h.push(v(
            &format!("p/j/{B}/manifest.json"),
            "2026-12-02T02:00:11Z",
            false,
        ));
        let found = detect("j", Some(&keep_last(1)), &h, "p/", &BTreeSet::new());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, Kind::Rewritten);
        // Same second as the original: recovery never goes before it.
        assert_eq!(found[0].recover_as_of, t("2026-12-02T02:00:11Z"));

        // A forged newer backup would push C out of keep_last 1 and make
        // its deletion look like retention's, unless it is known forged.
        let f = "20261209T020000Z-ffffff";
        let mut h = history();
        h.push(v(
            &format!("p/j/{f}/manifest.json"),
            "2026-12-05T00:00:00Z",
            false,
        ));
        h.push(v(
            &format!("p/j/{C}/manifest.json"),
            "2026-12-05T00:00:01Z",
            true,
        ));
        assert!(detect("j", Some(&keep_last(1)), &h, "p/", &BTreeSet::new()).is_empty());
        let forged: BTreeSet<String> = [f.to_owned()].into();
        let found = detect("j", Some(&keep_last(1)), &h, "p/", &forged);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, C);
        assert_eq!(recovery_time(&found), Some(t("2026-12-05T00:00:00.999Z")));
    }
}
