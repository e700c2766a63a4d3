//! S3 Object Lock: the calls object_store has no API for.
//!
//! * a PUT that carries its lock (`x-amz-object-lock-mode` and
//!   `-retain-until-date`) with `Content-MD5`, optionally create-only
//!   (`If-None-Match: *`): how the manifest and its signature are written,
//!   so they never exist unlocked;
//! * `PutObjectRetention`: how multipart artifacts are locked after their
//!   upload completes (S3 honours lock headers on CreateMultipartUpload,
//!   but object_store cannot send them and moto ignores them), and how
//!   retention extends the lock of what it keeps;
//! * HEAD of an object for its lock (mode, retain-until);
//! * `GetBucketLifecycleConfiguration`, for `doctor`.
//!
//! Every request is signed by object_store's own signer through
//! [`S3UploadSweeper::exchange`], with the store's credential provider.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use ct_codecs::{Base64, Encoder};
use md5::{Digest, Md5};
use serde::Deserialize;

use crate::repo::s3_uploads::{ExchangeError, Exchanged, S3UploadSweeper};

/// Attempts of a locked PUT before its error is returned.
const PUT_ATTEMPTS: u32 = 3;

/// `store.object_lock.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Only a principal with `s3:BypassGovernanceRetention` can shorten or
    /// remove the lock (the sidecar must not have it).
    Governance,
    /// Nobody can shorten or remove the lock, not even the account root.
    Compliance,
}

impl LockMode {
    /// The value S3 uses in headers and documents.
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// `governance` or `compliance`, any case.
    pub fn parse(s: &str) -> Option<LockMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "governance" => Some(LockMode::Governance),
            "compliance" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

/// `store.object_lock`: every object of a backup is locked in `mode`
/// until at least `period` after it was written, and retention keeps what
/// the policy keeps locked `period` ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLockSpec {
    pub mode: LockMode,
    pub period: Duration,
}

impl ObjectLockSpec {
    /// The retain-until date for an object written or kept at `now`:
    /// `now + period`, rounded up to a whole second (S3 keeps seconds).
    pub fn until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let period = chrono::Duration::from_std(self.period).unwrap_or(chrono::Duration::MAX);
        let t = now
            .checked_add_signed(period)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let whole = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
        DateTime::from_timestamp(whole, 0).unwrap_or(t)
    }
}

/// An object's lock as S3 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// `GOVERNANCE` or `COMPLIANCE` as S3 says it.
    pub mode: String,
    pub until: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{what} `{key}` in {store}: {detail}")]
    Object {
        what: &'static str,
        store: String,
        key: String,
        detail: String,
    },
    #[error("{what} of {store}: {detail}")]
    Bucket {
        what: &'static str,
        store: String,
        detail: String,
    },
}

/// What [`S3Lock::extend`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    /// The lock was moved to the new date.
    Extended,
    /// The object was already locked at least that far ahead.
    AlreadyCovered(DateTime<Utc>),
}

/// A bucket lifecycle rule, the parts `doctor` judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleRule {
    pub id: String,
    pub enabled: bool,
    /// `NoncurrentVersionExpiration.NoncurrentDays`, when the rule has it.
    pub noncurrent_days: Option<u32>,
}

/// The Object Lock calls for one S3 store.
#[derive(Debug, Clone)]
pub struct S3Lock {
    s3: Arc<S3UploadSweeper>,
    display: String,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Base64 of the body's MD5: S3 refuses a PUT with lock headers, and any
/// PutObjectRetention, without an integrity header.
fn content_md5(body: &[u8]) -> String {
    let digest = Md5::digest(body);
    Base64::encode_to_string(digest.as_slice()).unwrap_or_default()
}

impl S3Lock {
    pub fn new(s3: Arc<S3UploadSweeper>, display: &str) -> S3Lock {
        S3Lock {
            s3,
            display: display.to_owned(),
        }
    }

    fn object_err(&self, what: &'static str, key: &str, detail: String) -> LockError {
        LockError::Object {
            what,
            store: self.display.clone(),
            key: key.to_owned(),
            detail,
        }
    }

    /// The lock of `key` (relative to the store's prefix) from a HEAD:
    /// `None` when the object has none.
    pub async fn retention(&self, key: &str) -> Result<Option<Retention>, LockError> {
        let what = "cannot read the lock of";
        let r = self
            .s3
            .exchange(
                reqwest::Method::HEAD,
                Some(key),
                &[],
                Vec::new(),
                Bytes::new(),
            )
            .await
            .map_err(|e| self.object_err(what, key, e.to_string()))?;
        if let Some(detail) = r.error {
            return Err(self.object_err(what, key, detail));
        }
        parse_retention(&r.headers).map_err(|d| self.object_err(what, key, d))
    }

    /// `PutObjectRetention`: locks `key` in `mode` until `until`.
    pub async fn put_retention(
        &self,
        key: &str,
        mode: &str,
        until: DateTime<Utc>,
    ) -> Result<(), LockError> {
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{mode}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            rfc3339(until)
        );
        let body = Bytes::from(body);
        let headers = vec![
            ("content-md5", content_md5(&body)),
            ("content-type", "application/xml".to_owned()),
        ];
        let what = "cannot lock";
        let r = self
            .s3
            .exchange(
                reqwest::Method::PUT,
                Some(key),
                &[("retention", "")],
                headers,
                body,
            )
            .await
            .map_err(|e| self.object_err(what, key, e.to_string()))?;
        match r.error {
            Some(detail) => Err(self.object_err(what, key, detail)),
            None => Ok(()),
        }
    }

    /// Moves the lock of `key` to at least `until`, never shortening it.
    /// A COMPLIANCE lock stays COMPLIANCE whatever `mode` says (S3 refuses
    /// to weaken it, and it should not be weakened).
    pub async fn extend(
        &self,
        key: &str,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<Extension, LockError> {
        let current = self.retention(key).await?;
        if let Some(c) = &current {
            if c.until >= until {
                return Ok(Extension::AlreadyCovered(c.until));
            }
        }
        let mode = match current {
            Some(c) if c.mode.eq_ignore_ascii_case("COMPLIANCE") => "COMPLIANCE",
            _ => mode.as_s3(),
        };
        self.put_retention(key, mode, until).await?;
        Ok(Extension::Extended)
    }

    /// A single PUT of `body` to `key` carrying its lock, so the object
    /// never exists unlocked; create-only (`If-None-Match: *`) when asked.
    /// Errors are object_store's, sorted as object_store sorts them, so
    /// the callers' retry and "did it land" logic applies unchanged.
    pub async fn put_locked(
        &self,
        key: &str,
        body: Bytes,
        create_only: bool,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> object_store::Result<object_store::PutResult> {
        let mut headers = vec![
            ("content-md5", content_md5(&body)),
            ("x-amz-object-lock-mode", mode.as_s3().to_owned()),
            ("x-amz-object-lock-retain-until-date", rfc3339(until)),
        ];
        if create_only {
            headers.push(("if-none-match", "*".to_owned()));
        }
        // Retried as object_store retries its own puts: a connection that
        // was never made, and a 5xx answer. A create-only retry that finds
        // the first attempt landed gets "already exists", which the
        // manifest's writer resolves by reading the key back.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .s3
                .exchange(
                    reqwest::Method::PUT,
                    Some(key),
                    &[],
                    headers.clone(),
                    body.clone(),
                )
                .await;
            let again = match &sent {
                Err(ExchangeError::Transport(e)) => e.is_connect(),
                Ok(r) => r.status >= 500,
                Err(ExchangeError::Setup(_)) => false,
            };
            if !again || attempt >= PUT_ATTEMPTS {
                return put_result(key, sent.map_err(|e| transport_error(key, e))?);
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
    }

    /// The bucket's lifecycle rules; empty when it has none.
    pub async fn lifecycle(&self) -> Result<Vec<LifecycleRule>, LockError> {
        let err = |detail: String| LockError::Bucket {
            what: "cannot read the lifecycle rules",
            store: self.display.clone(),
            detail,
        };
        let r = self
            .s3
            .exchange(
                reqwest::Method::GET,
                None,
                &[("lifecycle", "")],
                Vec::new(),
                Bytes::new(),
            )
            .await
            .map_err(|e| err(e.to_string()))?;
        if r.status == 404 && r.body.contains("NoSuchLifecycleConfiguration") {
            return Ok(Vec::new());
        }
        if let Some(detail) = r.error {
            return Err(err(detail));
        }
        parse_lifecycle(&r.body).map_err(err)
    }
}

/// A PUT's answer as object_store would report it.
fn put_result(key: &str, r: Exchanged) -> object_store::Result<object_store::PutResult> {
    use object_store::Error as E;
    let header = |name: &str| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let Some(detail) = r.error else {
        return Ok(object_store::PutResult {
            e_tag: header("etag"),
            version: header("x-amz-version-id"),
            extensions: Default::default(),
        });
    };
    let path = key.to_owned();
    let source = detail.into();
    Err(match r.status {
        // 412: If-None-Match found the key; 409: a concurrent create won.
        409 | 412 => E::AlreadyExists { path, source },
        404 => E::NotFound { path, source },
        401 => E::Unauthenticated { path, source },
        403 => E::PermissionDenied { path, source },
        // Any other 4xx is a refusal of this request (for example a bucket
        // without Object Lock); it was not written.
        400..=499 => E::NotSupported { source },
        // A 5xx may still be applied: the callers treat it as unknown.
        _ => E::Generic {
            store: "S3",
            source,
        },
    })
}

/// No answer: object_store's typed HTTP error, so a connection that was
/// never made counts as "not written" and anything later as "unknown".
fn transport_error(key: &str, e: ExchangeError) -> object_store::Error {
    use object_store::client::{HttpError, HttpErrorKind};
    match e {
        ExchangeError::Setup(e) => object_store::Error::NotSupported {
            source: format!("cannot write `{key}`: {e}").into(),
        },
        ExchangeError::Transport(e) => {
            let kind = if e.is_connect() {
                HttpErrorKind::Connect
            } else if e.is_timeout() {
                HttpErrorKind::Timeout
            } else {
                HttpErrorKind::Request
            };
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(HttpError::new(kind, e)),
            }
        }
    }
}

/// The lock headers of a HEAD answer. Both present or both absent;
/// anything else is not believed.
pub fn parse_retention(headers: &reqwest::header::HeaderMap) -> Result<Option<Retention>, String> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    match (
        get("x-amz-object-lock-mode"),
        get("x-amz-object-lock-retain-until-date"),
    ) {
        (None, None) => Ok(None),
        (Some(mode), Some(until)) => {
            let until = DateTime::parse_from_rfc3339(until.trim())
                .map_err(|e| format!("unreadable retain-until date `{until}`: {e}"))?
                .with_timezone(&Utc);
            Ok(Some(Retention {
                mode: mode.trim().to_owned(),
                until,
            }))
        }
        _ => Err("the store reports half a lock (mode or date missing)".to_owned()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LifecycleXml {
    #[serde(default, rename = "Rule")]
    rules: Vec<RuleXml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuleXml {
    #[serde(rename = "ID")]
    id: Option<String>,
    status: Option<String>,
    noncurrent_version_expiration: Option<NoncurrentXml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NoncurrentXml {
    noncurrent_days: Option<u32>,
}

/// Reads a `LifecycleConfiguration` document.
pub fn parse_lifecycle(xml: &str) -> Result<Vec<LifecycleRule>, String> {
    let doc: LifecycleXml =
        quick_xml::de::from_str(xml).map_err(|e| format!("unreadable lifecycle document: {e}"))?;
    Ok(doc
        .rules
        .into_iter()
        .map(|r| LifecycleRule {
            id: r.id.unwrap_or_default(),
            enabled: r.status.as_deref() == Some("Enabled"),
            noncurrent_days: r
                .noncurrent_version_expiration
                .and_then(|n| n.noncurrent_days),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_now_plus_period_rounded_up_to_a_second() {
        let spec = ObjectLockSpec {
            mode: LockMode::Governance,
            period: Duration::from_secs(86_400),
        };
        let now = DateTime::parse_from_rfc3339("2026-03-01T10:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339(spec.until(now)), "2026-03-02T10:00:01Z");
        let whole = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339(spec.until(whole)), "2026-03-02T10:00:00Z");
    }

    #[test]
    fn modes_parse_and_print_as_s3_spells_them() {
        assert_eq!(LockMode::parse("Governance"), Some(LockMode::Governance));
        assert_eq!(LockMode::parse("compliance"), Some(LockMode::Compliance));
        assert_eq!(LockMode::parse("legal-hold"), None);
        assert_eq!(LockMode::Compliance.as_s3(), "COMPLIANCE");
    }

    #[test]
    fn md5_is_base64_of_the_digest() {
        // RFC 1321's test vector for "abc".
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
    }

    #[test]
    fn lock_headers_are_read_and_half_locks_refused() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let mut h = HeaderMap::new();
        assert_eq!(parse_retention(&h).unwrap(), None);
        h.insert(
            "x-amz-object-lock-mode",
            HeaderValue::from_static("GOVERNANCE"),
        );
        assert!(parse_retention(&h).is_err());
        h.insert(
            "x-amz-object-lock-retain-until-date",
            HeaderValue::from_static("2026-04-01T00:00:00.000Z"),
        );
        let r = parse_retention(&h).unwrap().unwrap();
        assert_eq!(r.mode, "GOVERNANCE");
        assert_eq!(rfc3339(r.until), "2026-04-01T00:00:00Z");
        h.insert(
            "x-amz-object-lock-retain-until-date",
            HeaderValue::from_static("tomorrow"),
        );
        assert!(parse_retention(&h).is_err());
    }

    #[test]
    fn lifecycle_rules_are_read() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule><ID>old-versions</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>40</NoncurrentDays></NoncurrentVersionExpiration></Rule><Rule><ID>tmp</ID><Status>Disabled</Status><Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>"#;
        let rules = parse_lifecycle(xml).unwrap();
        assert_eq!(
            rules,
            vec![
                LifecycleRule {
                    id: "old-versions".into(),
                    enabled: true,
                    noncurrent_days: Some(40),
                },
                LifecycleRule {
                    id: "tmp".into(),
                    enabled: false,
                    noncurrent_days: None,
                },
            ]
        );
        assert!(parse_lifecycle("<<").is_err());
    }

    #[test]
    fn refusals_are_sorted_like_object_store_sorts_them() {
        let answer = |status: u16| Exchanged {
            status,
            headers: Default::default(),
            body: String::new(),
            error: Some(format!("HTTP {status}")),
        };
        assert!(matches!(
            put_result("k", answer(412)),
            Err(object_store::Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            put_result("k", answer(403)),
            Err(object_store::Error::PermissionDenied { .. })
        ));
        assert!(matches!(
            put_result("k", answer(400)),
            Err(object_store::Error::NotSupported { .. })
        ));
        assert!(matches!(
            put_result("k", answer(503)),
            Err(object_store::Error::Generic { .. })
        ));
    }
}
