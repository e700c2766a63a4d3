//! The object store a repository lives in, and the key layout inside it.
//!
//! Layout (relative to the URL's prefix):
//! ```text
//! <job>/<backup id>/manifest.json          written last, create-only
//! <job>/<backup id>/<artifact key>          e.g. db/01-ct-vis.dump.zst
//! ```
//! Backup IDs are `YYYYMMDDTHHMMSSZ-<6 hex>`, so keys sort by time and use no
//! character that object stores escape. Names *inside* archives keep their
//! original bytes.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as ObjPath;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use rand::Rng;

use crate::clock::Clock;
use crate::repo::s3_lock::{ObjectLockSpec, S3Lock};
use crate::repo::s3_uploads::S3UploadSweeper;

pub const MANIFEST_NAME: &str = "manifest.json";
/// The manifest's detached minisign signature, written just before it.
pub const SIGNATURE_NAME: &str = "manifest.json.minisig";

/// Where a store is and how to talk to it: what [`open`] needs.
#[derive(Clone)]
pub struct StoreSpec {
    pub url: url::Url,
    /// object_store configuration keys with their values (possibly
    /// credentials, hence `crate::secret::Secret`).
    pub options: Vec<(String, crate::secret::Secret)>,
    pub part_size: usize,
    pub concurrency: usize,
    /// Backups dated later than now plus this are not counted (see
    /// [`crate::repo::catalog`]).
    pub max_clock_skew: std::time::Duration,
    /// `store.object_lock` (S3 only; configuration refuses it elsewhere).
    pub object_lock: Option<ObjectLockSpec>,
}

/// object_store's own retries of one HTTP request, the innermost of the
/// three retry layers (docs/operations.md, "Retries"): it absorbs a dropped
/// connection or a 5xx answer to a single request, such as one part of a
/// multipart upload, without redoing anything else. Written out rather than
/// left to the crate's default so that an upgrade cannot silently change
/// it, and bounded so a request gives up (after at most 8 retries within
/// 2 minutes of its first attempt) well inside the runs' own retry budget.
pub fn request_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(10),
            base: 2.0,
        },
        max_retries: 8,
        retry_timeout: std::time::Duration::from_secs(120),
    }
}

/// Default `store.max_clock_skew`: NTP-synchronised hosts differ by far
/// less, and a forgery dated minutes ahead gains an attacker little.
pub const DEFAULT_MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// Only option keys are shown: values may be access keys.
impl std::fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSpec")
            .field("url", &self.url.as_str())
            .field(
                "options",
                &self.options.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .field("max_clock_skew", &self.max_clock_skew)
            .field("object_lock", &self.object_lock)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create local store directory {path}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open object store {url}")]
    Open {
        url: String,
        source: object_store::Error,
    },
    #[error("store option `{key}`: {message}")]
    Option { key: String, message: String },
}

/// A configured object store plus the upload settings that go with it.
#[derive(Clone)]
pub struct Repo {
    pub store: Arc<dyn ObjectStore>,
    pub part_size: usize,
    pub concurrency: usize,
    /// The URL without credentials, for messages.
    pub display: String,
    /// The directory of a `file://` store: restore reads artifacts in place
    /// there instead of copying them to a staging directory first.
    pub local_root: Option<PathBuf>,
    /// For `s3://` stores: what prune needs to abort multipart uploads a
    /// killed process left open (object_store cannot list them).
    pub s3: Option<Arc<S3UploadSweeper>>,
    /// For `s3://` stores: Object Lock calls (retention of kept backups,
    /// `doctor`'s lock checks).
    pub lock: Option<Arc<S3Lock>>,
    /// `store.object_lock`: what is written is locked (see
    /// [`crate::repo::locked`]) and retention extends what it keeps.
    pub object_lock: Option<ObjectLockSpec>,
    /// Signs every manifest written (see [`crate::repo::signing`]).
    pub signer: Option<Arc<crate::repo::signing::Signer>>,
    /// Only manifests signed with this key are trusted.
    pub verifier: Option<Arc<crate::repo::signing::Verifier>>,
    /// `signing.unsigned_before`: unsigned manifests of backups from before
    /// this time are admitted as legacy backups (see
    /// [`crate::repo::manifest::Trust::Legacy`]).
    pub unsigned_before: Option<DateTime<Utc>>,
    /// What leases, manifests and prune read as "now" ([`crate::clock`]);
    /// the system clock unless a test swaps it with [`Repo::with_clock`].
    pub clock: Clock,
    /// `store.max_clock_skew`: how far in the future a backup or a lease
    /// may be dated before it is not believed.
    pub max_clock_skew: std::time::Duration,
}

impl Repo {
    /// The repository reading time from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Repo {
        self.clock = clock;
        self
    }

    /// The repository with signing keys attached.
    pub fn with_signing(mut self, signing: Option<&crate::repo::signing::SigningKeys>) -> Repo {
        if let Some(s) = signing {
            self.signer = s.signer.clone();
            self.verifier = s.verifier.clone();
            self.unsigned_before = s.unsigned_before;
        }
        self
    }
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo").field("url", &self.display).finish()
    }
}

/// Checks an option key against what the scheme's builder understands, so a
/// typo is reported instead of being silently ignored by object_store.
pub fn check_option_key(scheme: &str, key: &str) -> Result<(), String> {
    let known = match scheme {
        "s3" | "s3a" => AmazonS3ConfigKey::from_str(key).is_ok(),
        "az" | "azure" | "abfs" | "abfss" => AzureConfigKey::from_str(key).is_ok(),
        "gs" => GoogleConfigKey::from_str(key).is_ok(),
        "file" => return Err("file:// stores take no options".to_owned()),
        _ => return Ok(()),
    };
    if known {
        Ok(())
    } else {
        Err(format!("`{key}` is not an option of {scheme}:// stores"))
    }
}

/// A store URL without credentials, for messages, metric labels and the
/// status page. A query or fragment is no part of where the store is and
/// may carry a token (an S3 session token, an Azure SAS signature).
pub fn display_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// The key prefix below the bucket or container the URL names.
fn store_prefix(url: &url::Url) -> String {
    let prefix = url.path().trim_matches('/').to_owned();
    // Azure URLs carry the container as the first path segment.
    match url.scheme() {
        "az" | "azure" | "abfs" | "abfss" if url.host_str().is_none() => prefix
            .split_once('/')
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default(),
        _ => prefix,
    }
}

/// A `file://` store: the directory is created if missing.
fn open_local(cfg: &StoreSpec, url: &url::Url, display: String) -> Result<Repo, StoreError> {
    let path = url.to_file_path().map_err(|()| StoreError::CreateDir {
        path: url.to_string(),
        source: std::io::Error::other("not a local path"),
    })?;
    std::fs::create_dir_all(&path).map_err(|source| StoreError::CreateDir {
        path: path.display().to_string(),
        source,
    })?;
    // The configured root may itself be a symlink (configuration is
    // trusted); below it, nothing is followed (see repo::local).
    let root = std::fs::canonicalize(&path).map_err(|source| StoreError::CreateDir {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Repo {
        store: Arc::new(crate::repo::local::NoFollow::new(root.clone())),
        part_size: cfg.part_size,
        concurrency: cfg.concurrency,
        display,
        local_root: Some(root),
        s3: None,
        lock: None,
        object_lock: None,
        signer: None,
        verifier: None,
        unsigned_before: None,
        clock: Clock::system(),
        max_clock_skew: cfg.max_clock_skew,
    })
}

/// Opens the store named by the configuration. For `file://` the directory
/// is created if missing.
pub fn open(cfg: &StoreSpec) -> Result<Repo, StoreError> {
    let url = &cfg.url;
    let display = display_url(url);
    let open_err = |source| StoreError::Open {
        url: display.clone(),
        source,
    };
    let opt_err = |key: &str, e: object_store::Error| StoreError::Option {
        key: key.to_owned(),
        message: e.to_string(),
    };
    let mut sweeper: Option<Arc<S3UploadSweeper>> = None;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "file" => return open_local(cfg, url, display),
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env().with_url(url.as_str());
            for (k, v) in &cfg.options {
                let key = AmazonS3ConfigKey::from_str(k).map_err(|e| opt_err(k, e))?;
                b = b.with_config(key, v.expose());
            }
            // A bucket with Object Lock refuses uploads without an
            // integrity header when a default retention applies; with
            // object_lock every part and put carries a SHA-256 checksum
            // (unless the operator chose an algorithm).
            if cfg.object_lock.is_some()
                && b.get_config_value(&AmazonS3ConfigKey::Checksum).is_none()
            {
                b = b.with_checksum_algorithm(object_store::aws::Checksum::SHA256);
            }
            // Read back before `build` consumes the builder; the sweeper
            // signs with the store's own credential provider.
            let location = b.clone();
            let s3 = Arc::new(b.with_retry(request_retry()).build().map_err(open_err)?);
            sweeper = Some(Arc::new(S3UploadSweeper::new(
                &location,
                url,
                &display,
                s3.clone(),
            )));
            explained(s3, "S3", &display)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            for (k, v) in &cfg.options {
                let key = AzureConfigKey::from_str(k).map_err(|e| opt_err(k, e))?;
                b = b.with_config(key, v.expose());
            }
            let b = b.with_retry(request_retry());
            explained(b.build().map_err(open_err)?, "Azure", &display)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            for (k, v) in &cfg.options {
                let key = GoogleConfigKey::from_str(k).map_err(|e| opt_err(k, e))?;
                b = b.with_config(key, v.expose());
            }
            let b = b.with_retry(request_retry());
            explained(b.build().map_err(open_err)?, "GCS", &display)
        }
        other => {
            return Err(StoreError::Option {
                key: "url".to_owned(),
                message: format!("unsupported scheme `{other}`"),
            })
        }
    };
    let prefix = store_prefix(url);
    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, ObjPath::from(prefix.as_str())))
    };
    let lock = sweeper
        .as_ref()
        .map(|s| Arc::new(S3Lock::new(s.clone(), &display)));
    let object_lock = cfg.object_lock.filter(|_| lock.is_some());
    let store: Arc<dyn ObjectStore> = match (&lock, object_lock) {
        (Some(l), Some(spec)) => Arc::new(crate::repo::locked::LockedStore::new(
            store,
            is_backup_object,
            l.clone(),
            spec,
        )),
        _ => store,
    };
    Ok(Repo {
        store,
        part_size: cfg.part_size,
        concurrency: cfg.concurrency,
        s3: sweeper,
        lock,
        object_lock,
        display,
        local_root: None,
        signer: None,
        verifier: None,
        unsigned_before: None,
        clock: Clock::system(),
        max_clock_skew: cfg.max_clock_skew,
    })
}

fn explained(inner: impl ObjectStore, kind: &'static str, display: &str) -> Arc<dyn ObjectStore> {
    Arc::new(Explained {
        inner: Arc::new(inner),
        kind,
        display: Arc::from(display),
    })
}

/// Wraps a remote store so that errors about the store as a whole (a missing
/// bucket or container, rejected credentials, an endpoint that does not
/// answer) name the store and say what is wrong, instead of surfacing as
/// "object not found" for some key. Other errors pass through unchanged, so
/// `AlreadyExists`, `Precondition` and `NotFound` keep their meaning.
#[derive(Debug)]
struct Explained {
    inner: Arc<dyn ObjectStore>,
    kind: &'static str,
    display: Arc<str>,
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.display)
    }
}

/// What went wrong with the store as a whole. Shown instead of the raw
/// response, which is kept as the source for debugging.
#[derive(Debug, thiserror::Error)]
#[error("store {store}: {what}")]
struct StoreProblem {
    store: Arc<str>,
    what: String,
    #[source]
    raw: object_store::Error,
}

/// Error codes that mean "the credentials were not accepted".
const AUTH_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AuthenticationFailed",
    "AuthorizationFailure",
    "InvalidAuthenticationInfo",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
];

fn explain(kind: &'static str, store: &Arc<str>, e: object_store::Error) -> object_store::Error {
    use object_store::Error as E;
    if matches!(
        e,
        E::AlreadyExists { .. } | E::Precondition { .. } | E::NotModified { .. }
    ) {
        return e;
    }
    let text = e.to_string();
    let what = if text.contains("NoSuchBucket")
        || text.contains("ContainerNotFound")
        || text.contains("The specified bucket does not exist")
    {
        let noun = if kind == "Azure" {
            "container"
        } else {
            "bucket"
        };
        format!("the {noun} does not exist; create it or correct store.url")
    } else if let Some(code) = AUTH_CODES.iter().find(|c| text.contains(**c)) {
        format!(
            "the store rejected the credentials ({code}); check the access key, secret and region in store.options or the environment"
        )
    } else if matches!(e, E::Unauthenticated { .. } | E::PermissionDenied { .. }) {
        "the store rejected the credentials or they lack permission; check store.options or the environment".to_owned()
    } else if let Some(what) = transport_problem(&e) {
        what.to_owned()
    } else {
        return e;
    };
    E::Generic {
        store: kind,
        source: Box::new(StoreProblem {
            store: store.clone(),
            what,
            raw: e,
        }),
    }
}

/// What a transport failure means, from the typed kind object_store gives
/// it. Only a connection that could not be made is retried by object_store
/// until it gives up; a timeout or a dropped connection on a request that
/// is not idempotent (a create-only put) is returned at once.
fn transport_problem(e: &object_store::Error) -> Option<&'static str> {
    use object_store::client::{HttpError, HttpErrorKind};
    let object_store::Error::Generic { source, .. } = e else {
        return None;
    };
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            return Some(match h.kind() {
                HttpErrorKind::Connect => "cannot connect to the store's endpoint (gave up after retries); check store.options.endpoint, the network and that the server runs",
                HttpErrorKind::Timeout => "the store's endpoint accepted the connection but did not answer in time (store.options.timeout, 30s by default)",
                HttpErrorKind::Request | HttpErrorKind::Interrupted => "the connection to the store's endpoint was lost during the request",
                _ => "the store's endpoint sent a response that could not be read",
            });
        }
        cur = err.source();
    }
    None
}

#[derive(Debug)]
struct ExplainedUpload {
    inner: Box<dyn object_store::MultipartUpload>,
    kind: &'static str,
    display: Arc<str>,
}

#[async_trait::async_trait]
impl object_store::MultipartUpload for ExplainedUpload {
    fn put_part(&mut self, data: object_store::PutPayload) -> object_store::UploadPart {
        let (kind, display) = (self.kind, self.display.clone());
        let fut = self.inner.put_part(data);
        Box::pin(async move { fut.await.map_err(|e| explain(kind, &display, e)) })
    }

    async fn complete(&mut self) -> object_store::Result<object_store::PutResult> {
        let r = self.inner.complete().await;
        r.map_err(|e| explain(self.kind, &self.display, e))
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let r = self.inner.abort().await;
        r.map_err(|e| explain(self.kind, &self.display, e))
    }
}

#[async_trait::async_trait]
impl ObjectStore for Explained {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        let r = self.inner.put_opts(location, payload, opts).await;
        r.map_err(|e| explain(self.kind, &self.display, e))
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        match self.inner.put_multipart_opts(location, opts).await {
            Ok(inner) => Ok(Box::new(ExplainedUpload {
                inner,
                kind: self.kind,
                display: self.display.clone(),
            })),
            Err(e) => Err(explain(self.kind, &self.display, e)),
        }
    }

    async fn get_opts(
        &self,
        location: &ObjPath,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        let r = self.inner.get_opts(location, options).await;
        r.map_err(|e| explain(self.kind, &self.display, e))
    }

    async fn get_ranges(
        &self,
        location: &ObjPath,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        let r = self.inner.get_ranges(location, ranges).await;
        r.map_err(|e| explain(self.kind, &self.display, e))
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<ObjPath>> {
        use futures::TryStreamExt;
        let (kind, display) = (self.kind, self.display.clone());
        Box::pin(
            self.inner
                .delete_stream(locations)
                .map_err(move |e| explain(kind, &display, e)),
        )
    }

    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        use futures::TryStreamExt;
        let (kind, display) = (self.kind, self.display.clone());
        Box::pin(
            self.inner
                .list(prefix)
                .map_err(move |e| explain(kind, &display, e)),
        )
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjPath>,
        offset: &ObjPath,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        use futures::TryStreamExt;
        let (kind, display) = (self.kind, self.display.clone());
        Box::pin(
            self.inner
                .list_with_offset(prefix, offset)
                .map_err(move |e| explain(kind, &display, e)),
        )
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<object_store::ListResult> {
        let r = self.inner.list_with_delimiter(prefix).await;
        r.map_err(|e| explain(self.kind, &self.display, e))
    }

    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        let r = self.inner.copy_opts(from, to, options).await;
        r.map_err(|e| explain(self.kind, &self.display, e))
    }

    async fn rename_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: object_store::RenameOptions,
    ) -> object_store::Result<()> {
        let r = self.inner.rename_opts(from, to, options).await;
        r.map_err(|e| explain(self.kind, &self.display, e))
    }
}

/// A new backup ID for a run starting at `at`.
pub fn new_backup_id(at: DateTime<Utc>) -> String {
    let suffix: u32 = rand::rng().random_range(0..0x100_0000);
    format!("{}-{suffix:06x}", at.format("%Y%m%dT%H%M%SZ"))
}

/// The time encoded in a backup ID, if it is one. Only the exact form
/// [`new_backup_id`] writes counts: chrono alone would also read `9 1201T...`
/// (year 9, with a space) or a short month, and IDs are compared and sorted
/// as text as well as by time, so a name that is not canonical could sort
/// as newer than every real backup while claiming to be older.
pub fn backup_id_time(id: &str) -> Option<DateTime<Utc>> {
    let (stamp, suffix) = id.split_once('-')?;
    if suffix.len() != 6
        || !suffix
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    if stamp.len() != 16 || !stamp.is_ascii() {
        return None;
    }
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()?
        .and_utc();
    (t.format("%Y%m%dT%H%M%SZ").to_string() == stamp).then_some(t)
}

/// Whether `key` (relative to the store's prefix) belongs to a backup:
/// `<job>/<backup id>/<name...>` with a canonical backup ID. The lease
/// (`locks/<job>.json`) does not.
pub fn is_backup_object(key: &str) -> bool {
    let mut parts = key.split('/');
    let (Some(job), Some(id), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !job.is_empty() && !name.is_empty() && backup_id_time(id).is_some()
}

pub fn backup_dir(job: &str, id: &str) -> ObjPath {
    ObjPath::from_iter([job, id])
}

pub fn manifest_path(job: &str, id: &str) -> ObjPath {
    ObjPath::from_iter([job, id, MANIFEST_NAME])
}

pub fn signature_path(job: &str, id: &str) -> ObjPath {
    ObjPath::from_iter([job, id, SIGNATURE_NAME])
}

/// Full key of an artifact; `rel` is relative to the backup directory and
/// may contain `/`.
pub fn artifact_path(job: &str, id: &str, rel: &str) -> ObjPath {
    let mut parts = vec![job, id];
    parts.extend(rel.split('/'));
    ObjPath::from_iter(parts)
}

/// Makes a database name safe for an object key: object stores escape or
/// reject many characters, so anything outside `[A-Za-z0-9._-]` becomes `_`.
/// The caller adds an index so two names that map alike stay distinct; the
/// manifest keeps the real name.
pub fn key_safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.trim_start_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_backup_ids_have_a_time() {
        assert!(backup_id_time("20261201T020000Z-a1b2c3").is_some());
        for bad in [
            "9 1201T000000Z-aaaaaa",
            "   91201T000000Z-aaaaaa",
            "2026121T000000Z-aaaaaa",
            "20261201T020000Z-A1B2C3",
            "20261301T020000Z-a1b2c3",
            "+2026121T00000Z-aaaaaa",
        ] {
            assert_eq!(backup_id_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn explained_errors_keep_the_class_of_the_raw_error() {
        use crate::retry::{Class, Transient};
        let store: Arc<str> = Arc::from("s3://b/p");
        let denied = explain(
            "S3",
            &store,
            object_store::Error::PermissionDenied {
                path: "k".into(),
                source: "AccessDenied".into(),
            },
        );
        assert!(matches!(denied, object_store::Error::Generic { .. }));
        assert_eq!(denied.class(), Class::Permanent, "{denied}");
        let unreachable = explain(
            "S3",
            &store,
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "error sending request",
                )),
            },
        );
        assert!(matches!(unreachable, object_store::Error::Generic { .. }));
        assert_eq!(unreachable.class(), Class::Transient, "{unreachable}");
    }

    #[test]
    fn backup_ids_sort_by_time_and_round_trip() {
        let a = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = a + chrono::Duration::seconds(1);
        let ia = new_backup_id(a);
        let ib = new_backup_id(b);
        assert!(ia < ib);
        assert!(ia.starts_with("20260102T030405Z-"));
        assert_eq!(backup_id_time(&ia), Some(a));
        assert_eq!(backup_id_time("nonsense"), None);
        assert_eq!(backup_id_time("20260102T030405Z-xyz123"), None);
    }

    #[test]
    fn only_keys_inside_a_backup_are_backup_objects() {
        assert!(is_backup_object(
            "site/20261201T020000Z-a1b2c3/manifest.json"
        ));
        assert!(is_backup_object(
            "site/20261201T020000Z-a1b2c3/db/01-x.dump.zst"
        ));
        assert!(!is_backup_object("locks/site.json"));
        assert!(!is_backup_object("site/20261201T020000Z-a1b2c3"));
        assert!(!is_backup_object("site/not-an-id/manifest.json"));
        assert!(!is_backup_object("/20261201T020000Z-a1b2c3/x"));
    }

    #[test]
    fn key_safe_replaces_awkward_characters() {
        assert_eq!(key_safe("ct-vis"), "ct-vis");
        assert_eq!(key_safe("données 2"), "donn_es_2");
        assert_eq!(key_safe("a:b*c?"), "a_b_c_");
        assert_eq!(key_safe("..x"), "x");
    }

    #[test]
    fn store_wide_errors_are_explained_and_others_pass_through() {
        let store: Arc<str> = Arc::from("s3://bkt/pre");
        let missing = object_store::Error::NotFound {
            path: "pre/x".to_owned(),
            source: "<Code>NoSuchBucket</Code>".into(),
        };
        let e = explain("S3", &store, missing).to_string();
        assert!(
            e.contains("store s3://bkt/pre: the bucket does not exist"),
            "{e}"
        );
        let exists = object_store::Error::AlreadyExists {
            path: "pre/m".to_owned(),
            source: "NoSuchBucket".into(),
        };
        assert!(matches!(
            explain("S3", &store, exists),
            object_store::Error::AlreadyExists { .. }
        ));
        let other = object_store::Error::NotFound {
            path: "pre/x".to_owned(),
            source: "<Code>NoSuchKey</Code>".into(),
        };
        assert!(matches!(
            explain("S3", &store, other),
            object_store::Error::NotFound { .. }
        ));
    }

    #[test]
    fn option_keys_are_checked_per_scheme() {
        assert!(check_option_key("s3", "endpoint").is_ok());
        assert!(check_option_key("s3", "allow_http").is_ok());
        assert!(check_option_key("s3", "aws_secret_access_key").is_ok());
        assert!(check_option_key("s3", "endpiont").is_err());
        assert!(check_option_key("az", "account_name").is_ok());
        assert!(check_option_key("file", "endpoint").is_err());
    }
}
