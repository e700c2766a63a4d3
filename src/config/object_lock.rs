//! Validation of `store.object_lock` (and `copies[i].object_lock`): a mode,
//! a period, and a store that can honour it. Only S3 stores can: on the
//! others the operator is told what the provider offers instead.

use std::time::Duration;

use serde_saphyr::Spanned;
use url::Url;

use super::check::Problems;
use super::raw::RawObjectLock;
use crate::repo::s3_lock::{LockMode, ObjectLockSpec};

/// A lock shorter than a day protects nothing a nightly backup needs.
const MIN_PERIOD: Duration = Duration::from_secs(86_400);
/// S3's own upper bound for a retention period.
const MAX_PERIOD: Duration = Duration::from_secs(100 * 365 * 86_400);

/// What to do instead on a store that cannot lock per object.
fn instead(scheme: &str) -> Option<&'static str> {
    match scheme {
        "s3" | "s3a" => None,
        "file" => Some("file:// stores cannot be locked; keep a copy (copies:) on an S3 bucket with Object Lock"),
        "az" | "azure" | "abfs" | "abfss" => Some("ccbackup cannot lock Azure blobs itself; enable version-level immutability with a time-based retention policy on the container, and remove object_lock"),
        "gs" => Some("ccbackup cannot lock GCS objects itself; configure a retention policy (Bucket Lock) or Object Retention Lock on the bucket, and remove object_lock"),
        _ => Some("only s3:// stores support object_lock"),
    }
}

pub(super) fn object_lock(
    raw: Option<&Spanned<RawObjectLock>>,
    url: Option<&Url>,
    p: &mut Problems,
) -> Option<ObjectLockSpec> {
    let raw = raw?;
    if let Some(msg) = url.and_then(|u| instead(u.scheme())) {
        p.at(&raw.referenced, "store.object_lock", msg);
        return None;
    }
    let mode = LockMode::parse(&raw.value.mode.value);
    if mode.is_none() {
        p.at(
            &raw.value.mode.referenced,
            "store.object_lock.mode",
            format!(
                "`{}` is not a lock mode: use governance or compliance",
                raw.value.mode.value
            ),
        );
    }
    let period = &raw.value.period;
    let period = match crate::duration::parse_duration(&period.value) {
        Ok(d) if (MIN_PERIOD..=MAX_PERIOD).contains(&d) => Some(d),
        Ok(_) => {
            p.at(
                &period.referenced,
                "store.object_lock.period",
                "must be between 1d and 100 years (36500d)",
            );
            None
        }
        Err(e) => {
            p.at(
                &period.referenced,
                "store.object_lock.period",
                e.to_string(),
            );
            None
        }
    };
    Some(ObjectLockSpec {
        mode: mode?,
        period: period?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn parse(store: &str) -> Result<crate::config::Config, String> {
        let text = format!("{store}jobs:\n  - name: j\n    sources:\n      - name: e\n        files: {{path: /tmp}}\n");
        crate::config::parse(&text, Path::new("c.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_lock_parses_on_s3() {
        let cfg = parse(
            "store:\n  url: s3://b/p\n  object_lock:\n    mode: Compliance\n    period: 30d\n",
        )
        .unwrap();
        let lock = cfg.store.object_lock.unwrap();
        assert_eq!(lock.mode, crate::repo::s3_lock::LockMode::Compliance);
        assert_eq!(lock.period.as_secs(), 30 * 86_400);
    }

    #[test]
    fn bad_modes_periods_and_keys_are_named_with_their_line() {
        let err =
            parse("store:\n  url: s3://b/p\n  object_lock:\n    mode: forever\n    period: 2h\n")
                .unwrap_err();
        assert!(
            err.contains("c.yaml:4:11: store.object_lock.mode: `forever` is not a lock mode"),
            "{err}"
        );
        assert!(
            err.contains("c.yaml:5:13: store.object_lock.period: must be between 1d"),
            "{err}"
        );
        let err = parse("store:\n  url: s3://b/p\n  object_lock:\n    mode: governance\n    period: 30d\n    legal_hold: true\n")
            .unwrap_err();
        assert!(err.contains("legal_hold"), "{err}");
    }

    #[test]
    fn stores_that_cannot_lock_say_what_to_do_instead() {
        let lock = "  object_lock: {mode: governance, period: 30d}\n";
        let err = parse(&format!("store:\n  url: az://c/p\n{lock}")).unwrap_err();
        assert!(err.contains("store.object_lock: ccbackup cannot lock Azure blobs itself; enable version-level immutability"), "{err}");
        let err = parse(&format!("store:\n  url: gs://b/p\n{lock}")).unwrap_err();
        assert!(err.contains("Object Retention Lock"), "{err}");
        let err = parse(&format!(
            "store:\n  url: s3://b/p\ncopies:\n  - url: file:///tmp/c\n  {lock}"
        ))
        .unwrap_err();
        assert!(
            err.contains("copies[0].object_lock: file:// stores cannot be locked"),
            "{err}"
        );
    }
}
