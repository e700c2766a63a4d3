//! Pure checks the catalog makes of each readable manifest against the
//! listing it already has and the clock, and how it tells a store that
//! stopped answering from one object the store will not hand out.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::repo::manifest::Manifest;

/// Why a backup is not counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub problem: String,
    pub untrusted: bool,
    pub future: bool,
}

impl Verdict {
    pub fn damaged(problem: String) -> Verdict {
        Verdict {
            problem,
            untrusted: false,
            future: false,
        }
    }
}

/// Whether a readable manifest describes a backup that may be counted:
/// `None` when it may. A backup dated after `now + skew` cannot have been
/// written by this host with a sane clock, and counted it would outrank
/// every real backup in retention; a manifest whose artifacts are not all
/// listed at the size it records is a phantom (or was tampered with), and
/// counted it would hold a keep slot a restorable backup needs.
pub fn judge(
    m: &Manifest,
    listed: &[(String, u64)],
    now: DateTime<Utc>,
    skew: Duration,
) -> Option<Verdict> {
    let limit = now + chrono::Duration::from_std(skew).unwrap_or(chrono::Duration::MAX);
    let latest = m.started_at.max(m.finished_at);
    if latest > limit {
        return Some(Verdict {
            problem: format!(
                "dated {}, later than now plus store.max_clock_skew ({}s); a clock far ahead or a forgery",
                latest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                skew.as_secs()
            ),
            untrusted: false,
            future: true,
        });
    }
    let sizes: HashMap<&str, u64> = listed.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    for a in &m.artifacts {
        match sizes.get(a.key.as_str()) {
            None => {
                return Some(Verdict::damaged(format!(
                    "artifact {} is missing from the store",
                    a.key
                )))
            }
            Some(&n) if n != a.stored_bytes => {
                return Some(Verdict::damaged(format!(
                    "artifact {} has {n} bytes in the store, its manifest says {}",
                    a.key, a.stored_bytes
                )))
            }
            Some(_) => {}
        }
    }
    None
}

/// Whether the request never got an answer (connection refused or reset,
/// timeout), as opposed to an answer refusing this one object.
pub fn store_unreachable(e: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            return matches!(
                h.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        cur = err.source();
    }
    false
}

/// The innermost cause: what the store or file system actually said,
/// without the layers that guess at a reason for the whole store (such as
/// blaming credentials that just listed the same bucket).
pub fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Pure: the legacy (unsigned) backups that are not older than every
/// signed backup of their job, each with why it is not counted. Unsigned
/// backups are admitted only as the store's history from before it moved
/// to signing; one dated at or after a signed backup would let whoever can
/// write to the store outrank real backups in retention (a newer backup
/// of the same day, a `keep_last` slot), so it is untrusted instead.
/// `first_signed` holds, per job, the oldest backup whose signature
/// verified, counted or not (a signed backup the memory budget or a missing
/// artifact kept out of the catalogue still dates the switch to signing).
pub fn legacy_after_signed(
    complete: &[Manifest],
    legacy: &std::collections::BTreeSet<(String, String)>,
    first_signed: &HashMap<String, (DateTime<Utc>, String)>,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for m in complete {
        if !legacy.contains(&(m.job.clone(), m.id.clone())) {
            continue;
        }
        if let Some((t, id)) = first_signed.get(m.job.as_str()) {
            if m.started_at >= *t {
                out.push((
                    m.job.clone(),
                    m.id.clone(),
                    format!(
                        "it is not signed, and it is not older than {id}, the job's first signed \
                         backup: signing.unsigned_before admits only backups from before signing began"
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::manifest::{Artifact, ArtifactKind, Compression, GuardMark, FORMAT};

    fn manifest(at: DateTime<Utc>) -> Manifest {
        Manifest {
            format: FORMAT,
            job: "j".into(),
            id: "x".into(),
            started_at: at,
            finished_at: at,
            tool_version: "0".into(),
            host: "h".into(),
            artifacts: vec![Artifact {
                key: "db/a.dump.zst".into(),
                source: "db".into(),
                kind: ArtifactKind::PgDump,
                raw_bytes: 10,
                stored_bytes: 5,
                sha256: "ab".repeat(32),
                compression: Compression {
                    algorithm: "zstd".into(),
                    level: 3,
                },
                detail: None,
                encryption: None,
            }],
            guard: GuardMark::default(),
        }
    }

    fn listed(n: u64) -> Vec<(String, u64)> {
        vec![
            ("db/a.dump.zst".to_owned(), n),
            ("manifest.json".to_owned(), 100),
        ]
    }

    #[test]
    fn a_whole_backup_of_the_past_counts() {
        let now = Utc::now();
        let skew = Duration::from_secs(300);
        assert_eq!(judge(&manifest(now), &listed(5), now, skew), None);
        let soon = now + chrono::Duration::seconds(299);
        assert_eq!(judge(&manifest(soon), &listed(5), now, skew), None);
    }

    #[test]
    fn a_backup_dated_beyond_the_skew_is_future() {
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(301);
        let v = judge(&manifest(later), &listed(5), now, Duration::from_secs(300)).unwrap();
        assert!(v.future && !v.untrusted, "{v:?}");
        let mut m = manifest(now);
        m.finished_at = now + chrono::Duration::days(365);
        assert!(
            judge(&m, &listed(5), now, Duration::from_secs(300))
                .unwrap()
                .future
        );
    }

    #[test]
    fn missing_or_resized_artifacts_make_a_phantom() {
        let now = Utc::now();
        let skew = Duration::from_secs(300);
        let v = judge(&manifest(now), &listed(5)[1..], now, skew).unwrap();
        assert!(v.problem.contains("missing") && !v.future, "{v:?}");
        let v = judge(&manifest(now), &listed(6), now, skew).unwrap();
        assert!(v.problem.contains("6 bytes"), "{v:?}");
    }

    #[test]
    fn the_root_cause_is_what_the_store_said() {
        let inner = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied here");
        let e = object_store::Error::Generic {
            store: "x",
            source: Box::new(inner),
        };
        assert_eq!(root_cause(&e), "denied here");
        assert!(!store_unreachable(&e));
    }

    #[test]
    fn unsigned_backups_never_outrank_signed_ones() {
        let t = |h: u32| {
            DateTime::parse_from_rfc3339(&format!("2026-12-01T{h:02}:00:00Z"))
                .unwrap()
                .with_timezone(&Utc)
        };
        let mk = |job: &str, id: &str, h: u32| Manifest {
            job: job.into(),
            id: id.into(),
            ..manifest(t(h))
        };
        let complete = vec![
            mk("j", "old-unsigned", 1),
            mk("j", "signed", 2),
            mk("j", "same-time-unsigned", 2),
            mk("j", "newer-unsigned", 3),
            mk("k", "only-unsigned", 5),
        ];
        let legacy: std::collections::BTreeSet<(String, String)> =
            ["old-unsigned", "same-time-unsigned", "newer-unsigned"]
                .iter()
                .map(|id| ("j".to_owned(), (*id).to_owned()))
                .chain([("k".to_owned(), "only-unsigned".to_owned())])
                .collect();
        let first_signed: HashMap<String, (DateTime<Utc>, String)> =
            [("j".to_owned(), (t(2), "signed".to_owned()))].into();
        let out: Vec<String> = legacy_after_signed(&complete, &legacy, &first_signed)
            .into_iter()
            .map(|(_, id, why)| {
                assert!(why.contains("signed"), "{why}");
                id
            })
            .collect();
        assert_eq!(out, ["same-time-unsigned", "newer-unsigned"]);
    }
}
