//! Aborting multipart uploads that a killed process left open on S3.
//!
//! object_store aborts its multipart uploads on every error, but a process
//! that is SIGKILLed mid-upload cannot, and object_store has no way to list
//! open uploads. This module sends `ListMultipartUploads` under a job's
//! prefix (paginated) itself, and aborts those initiated longer ago than the
//! job's `orphan_grace` through object_store's `MultipartStore`.
//!
//! Nothing here signs or resolves credentials itself: requests are signed by
//! object_store's [`AwsAuthorizer`] with credentials from the very provider
//! the store uses ([`object_store::aws::AmazonS3::credentials`]), so every
//! source object_store supports works for the sweep too: static keys, the
//! `AWS_*` variables, web identity (IRSA), ECS/EKS container credentials and
//! the EC2 instance metadata service. Where the bucket is (endpoint, region,
//! addressing style) is read back from the same builder that built the store.

use crate::error::chain;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::aws::{
    AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer, AwsCredentialProvider,
};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjPath;
use object_store::ClientConfigKey;
use serde::Deserialize;
use url::Url;

/// Pages of `ListMultipartUploads` read before giving up (1000 uploads each).
const MAX_PAGES: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum UploadSweepError {
    #[error("cannot sweep multipart uploads of {store}: no S3 credentials")]
    Credentials {
        store: String,
        source: object_store::Error,
    },
    #[error("cannot sweep multipart uploads of {store}: {message}")]
    Config { store: String, message: String },
    #[error("cannot list open multipart uploads of {store}: {detail}")]
    List { store: String, detail: String },
    #[error("cannot read the versioning state of {store}: {detail}")]
    Versioning { store: String, detail: String },
    #[error("cannot abort the multipart upload of `{key}` in {store}: {detail}")]
    Abort {
        store: String,
        key: String,
        detail: String,
    },
}

/// What S3 answered to an [`S3UploadSweeper::exchange`].
#[derive(Debug)]
pub(crate) struct Exchanged {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    /// `HTTP <status> <code>: <message>` when the status is not 2xx.
    pub error: Option<String>,
}

/// Why an [`S3UploadSweeper::exchange`] got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    #[error(transparent)]
    Setup(UploadSweepError),
    #[error("{}", describe_reqwest(.0))]
    Transport(reqwest::Error),
}

/// An open multipart upload as listed by S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<DateTime<Utc>>,
}

/// One page of `ListMultipartUploads`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UploadPage {
    pub uploads: Vec<OpenUpload>,
    pub truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

/// Where a store's bucket is and how its requests are signed, as configured
/// on its [`AmazonS3Builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    /// The URL addressing the bucket, without a trailing slash, exactly as
    /// object_store addresses it.
    bucket_url: String,
    region: String,
    allow_http: bool,
    skip_signature: bool,
    request_payer: bool,
}

/// What the S3 sweep needs of a store: where it is and how to sign.
#[derive(Clone)]
pub struct S3UploadSweeper {
    /// The store URL without credentials, for messages.
    display: String,
    /// The store URL's prefix, without leading or trailing slashes.
    prefix: String,
    location: Location,
    credentials: AwsCredentialProvider,
    /// The store itself, unprefixed: aborts go through object_store's own
    /// [`MultipartStore::abort_multipart`] (signing, retries, error kinds);
    /// only the listing, which object_store lacks, is hand-made here.
    s3: Arc<AmazonS3>,
}

/// Never shows credentials (the provider's own Debug hides them too, but
/// there is nothing to gain from printing it).
impl std::fmt::Debug for S3UploadSweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3UploadSweeper")
            .field("store", &self.display)
            .field("bucket_url", &self.location.bucket_url)
            .field("region", &self.location.region)
            .field("credentials", &"<provider>")
            .finish()
    }
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "y" | "on"
    )
}

impl Location {
    /// Mirrors object_store's choice of bucket endpoint: an explicit
    /// endpoint is used path-style (or as is, when virtual-hosted style is
    /// asked for: it then already names the bucket); without one, AWS's
    /// regional endpoint.
    fn from_builder(b: &AmazonS3Builder, url: &Url) -> Location {
        let get = |k: AmazonS3ConfigKey| b.get_config_value(&k).filter(|v| !v.is_empty());
        let flag = |k: AmazonS3ConfigKey| get(k).is_some_and(|v| truthy(&v));
        let bucket = get(AmazonS3ConfigKey::Bucket)
            .unwrap_or_else(|| url.host_str().unwrap_or_default().to_owned());
        let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".to_owned());
        let virtual_hosted = flag(AmazonS3ConfigKey::VirtualHostedStyleRequest);
        let endpoint =
            get(AmazonS3ConfigKey::S3Endpoint).or_else(|| get(AmazonS3ConfigKey::Endpoint));
        let bucket_url = match (endpoint, virtual_hosted) {
            (Some(ep), true) => ep.trim_end_matches('/').to_owned(),
            (Some(ep), false) => {
                format!("{}/{}", ep.trim_end_matches('/'), uri_encode(&bucket, true))
            }
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!(
                "https://s3.{region}.amazonaws.com/{}",
                uri_encode(&bucket, true)
            ),
        };
        Location {
            bucket_url,
            region,
            allow_http: flag(AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp)),
            skip_signature: flag(AmazonS3ConfigKey::SkipSignature),
            request_payer: flag(AmazonS3ConfigKey::RequestPayer),
        }
    }
}

impl S3UploadSweeper {
    /// The sweeper for the S3 store `s3` configured by `builder` (read
    /// before it was built); it signs with the store's own
    /// [`AmazonS3::credentials`], so both share one provider and its cached
    /// tokens.
    pub fn new(
        builder: &AmazonS3Builder,
        url: &Url,
        display: &str,
        s3: Arc<AmazonS3>,
    ) -> S3UploadSweeper {
        S3UploadSweeper {
            display: display.to_owned(),
            prefix: url.path().trim_matches('/').to_owned(),
            location: Location::from_builder(builder, url),
            credentials: s3.credentials().clone(),
            s3,
        }
    }

    /// The key prefix under which a job's uploads live.
    pub fn job_prefix(&self, job: &str) -> String {
        if self.prefix.is_empty() {
            format!("{job}/")
        } else {
            format!("{}/{job}/", self.prefix)
        }
    }

    fn config_err(&self, message: impl Into<String>) -> UploadSweepError {
        UploadSweepError::Config {
            store: self.display.clone(),
            message: message.into(),
        }
    }

    pub(crate) fn client(&self) -> Result<reqwest::Client, UploadSweepError> {
        if self.location.bucket_url.starts_with("http://") && !self.location.allow_http {
            return Err(self.config_err("the endpoint is http:// but allow_http is not set"));
        }
        reqwest::Client::builder()
            .https_only(!self.location.allow_http)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| self.config_err(format!("http client: {e}")))
    }

    /// The request URL for `key` (or the bucket) with `query`, encoded as
    /// S3 expects it (the signature covers this exact encoding).
    pub(crate) fn request_url(&self, key: Option<&str>, query: &[(&str, &str)]) -> String {
        let mut url = self.location.bucket_url.clone();
        match key {
            Some(k) => {
                url.push('/');
                url.push_str(&uri_encode(k, false));
            }
            None => url.push('/'),
        }
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k, true), uri_encode(v, true)))
            .collect();
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }

    /// A request with an empty body, signed by object_store.
    pub(crate) async fn signed(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<HttpRequest, UploadSweepError> {
        self.signed_with(method, url, Vec::new(), bytes::Bytes::new())
            .await
    }

    /// A request with `headers` and `body`, signed by object_store (the
    /// headers and the body's digest are covered by the signature).
    async fn signed_with(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: bytes::Bytes,
    ) -> Result<HttpRequest, UploadSweepError> {
        let mut req = HttpRequest::new(HttpRequestBody::from(body));
        *req.method_mut() = method;
        *req.uri_mut() = url
            .parse()
            .map_err(|e| self.config_err(format!("bad request URL: {e}")))?;
        for (name, value) in headers {
            let value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|e| self.config_err(format!("header {name}: {e}")))?;
            req.headers_mut().insert(name, value);
        }
        if self.location.skip_signature {
            return Ok(req);
        }
        let credential = self.credentials.get_credential().await.map_err(|source| {
            UploadSweepError::Credentials {
                store: self.display.clone(),
                source,
            }
        })?;
        AwsAuthorizer::new(&credential, "s3", &self.location.region)
            .with_request_payer(self.location.request_payer)
            .try_authorize(&mut req, None)
            .map_err(|e| self.config_err(format!("cannot sign the request: {e}")))?;
        Ok(req)
    }

    /// Sends one signed request with an empty body; returns status and body.
    /// `Err` is a transport error in words.
    async fn send(
        &self,
        client: &reqwest::Client,
        req: HttpRequest,
    ) -> Result<(u16, String), String> {
        let url = req.uri().to_string();
        let resp = client
            .request(req.method().clone(), url)
            .headers(req.headers().clone())
            .send()
            .await
            .map_err(|e| describe_reqwest(&e))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| describe_reqwest(&e))?;
        Ok((status, body))
    }

    /// The store URL's key prefix, without leading or trailing slashes.
    pub(crate) fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The store URL without credentials, for messages.
    pub(crate) fn display(&self) -> &str {
        &self.display
    }

    /// One signed request for a key of this store (`rel`, relative to the
    /// URL's prefix; `None` for the bucket) with `query`, `headers` and
    /// `body`, for the Object Lock calls object_store lacks
    /// ([`crate::repo::s3_lock`]). `Err(Transport)` when no answer came.
    pub(crate) async fn exchange(
        &self,
        method: reqwest::Method,
        rel: Option<&str>,
        query: &[(&str, &str)],
        headers: Vec<(&'static str, String)>,
        body: bytes::Bytes,
    ) -> Result<Exchanged, ExchangeError> {
        let client = self.client().map_err(ExchangeError::Setup)?;
        let key = rel.map(|r| match self.prefix.is_empty() {
            true => r.to_owned(),
            false => format!("{}/{r}", self.prefix),
        });
        let url = self.request_url(key.as_deref(), query);
        let req = self
            .signed_with(method.clone(), &url, headers, body.clone())
            .await
            .map_err(ExchangeError::Setup)?;
        let resp = client
            .request(method, url)
            .headers(req.headers().clone())
            .body(body)
            .send()
            .await
            .map_err(ExchangeError::Transport)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.map_err(ExchangeError::Transport)?;
        Ok(Exchanged {
            status,
            error: (!(200..300).contains(&status)).then(|| s3_error(status, &body)),
            headers,
            body,
        })
    }

    /// Every open multipart upload under `prefix` (all pages).
    pub async fn list(&self, prefix: &str) -> Result<Vec<OpenUpload>, UploadSweepError> {
        let client = self.client()?;
        let list_err = |detail: String| UploadSweepError::List {
            store: self.display.clone(),
            detail,
        };
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("uploads", ""), ("prefix", prefix)];
            if let Some((k, u)) = &markers {
                query.push(("key-marker", k));
                query.push(("upload-id-marker", u));
            }
            let req = self
                .signed(reqwest::Method::GET, &self.request_url(None, &query))
                .await?;
            let (status, body) = self.send(&client, req).await.map_err(list_err)?;
            if !(200..300).contains(&status) {
                return Err(list_err(s3_error(status, &body)));
            }
            let page = parse_list_uploads(&body).map_err(list_err)?;
            out.extend(
                page.uploads
                    .into_iter()
                    .filter(|u| u.key.starts_with(prefix)),
            );
            if !page.truncated {
                return Ok(out);
            }
            let next = (
                page.next_key_marker.unwrap_or_default(),
                page.next_upload_id_marker.unwrap_or_default(),
            );
            if next.0.is_empty() || markers.as_ref() == Some(&next) {
                return Err(list_err(
                    "the listing is truncated but gives no next marker".to_owned(),
                ));
            }
            markers = Some(next);
        }
        Err(list_err(format!("more than {MAX_PAGES} pages of uploads")))
    }

    /// The bucket's versioning state (`GetBucketVersioning`): `Enabled`,
    /// `Suspended`, or `None` when it was never switched on. For `doctor`.
    pub async fn versioning(&self) -> Result<Option<String>, UploadSweepError> {
        let client = self.client()?;
        let err = |detail: String| UploadSweepError::Versioning {
            store: self.display.clone(),
            detail,
        };
        let url = self.request_url(None, &[("versioning", "")]);
        let req = self.signed(reqwest::Method::GET, &url).await?;
        let (status, body) = self.send(&client, req).await.map_err(err)?;
        if !(200..300).contains(&status) {
            return Err(err(s3_error(status, &body)));
        }
        parse_versioning(&body).map_err(err)
    }

    /// The bucket's Object Lock configuration (`GetObjectLockConfiguration`):
    /// `None` when Object Lock was never enabled on it. For `doctor`.
    pub async fn object_lock(&self) -> Result<Option<ObjectLock>, UploadSweepError> {
        let client = self.client()?;
        let err = |detail: String| UploadSweepError::Versioning {
            store: self.display.clone(),
            detail,
        };
        let url = self.request_url(None, &[("object-lock", "")]);
        let req = self.signed(reqwest::Method::GET, &url).await?;
        let (status, body) = self.send(&client, req).await.map_err(err)?;
        if status == 404 && body.contains("ObjectLockConfigurationNotFound") {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(err(s3_error(status, &body)));
        }
        parse_object_lock(&body).map_err(err)
    }

    /// Aborts one upload; an upload that is already gone is not an error.
    /// The key comes from a listing of a store that may be hostile: one that
    /// is not a well-formed object key (ccbackup writes none that are not)
    /// is refused rather than normalised into some other key.
    pub async fn abort(&self, upload: &OpenUpload) -> Result<(), UploadSweepError> {
        let abort_err = |detail: String| UploadSweepError::Abort {
            store: self.display.clone(),
            key: upload.key.clone(),
            detail,
        };
        let path = ObjPath::parse(&upload.key)
            .map_err(|e| abort_err(format!("not an object key ccbackup writes: {e}")))?;
        // `parse` drops a leading or trailing `/`: that too would address
        // another key than the listed one.
        if path.as_ref() != upload.key {
            return Err(abort_err(
                "not an object key ccbackup writes: leading or trailing `/`".to_owned(),
            ));
        }
        match self.s3.abort_multipart(&path, &upload.upload_id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(abort_err(chain(&e).to_string())),
        }
    }
    /// Aborts the open uploads of `job` initiated more than `grace` ago;
    /// returns the keys of the aborted uploads. Uploads without a readable
    /// initiation time are left alone.
    pub async fn sweep_job(
        &self,
        job: &str,
        grace: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, UploadSweepError> {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let uploads = self.list(&self.job_prefix(job)).await?;
        let mut aborted = Vec::new();
        let mut first_err = None;
        for u in uploads {
            let Some(initiated) = u.initiated else {
                tracing::warn!(key = %u.key, "open multipart upload without an initiation time, left alone");
                continue;
            };
            if now.signed_duration_since(initiated) <= grace {
                continue;
            }
            match self.abort(&u).await {
                Ok(()) => {
                    tracing::info!(job, key = %u.key, "aborted a stale multipart upload");
                    aborted.push(u.key);
                }
                Err(e) => {
                    tracing::warn!(job, error = %chain(&e), "abort failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(aborted),
        }
    }
}

/// A transport error in words, with its causes, without the URL (which holds
/// nothing secret, but repeats the store).
pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut msg = if e.is_connect() {
        "cannot connect".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// S3's error document (`<Error><Code>…</Code><Message>…</Message></Error>`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorXml {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersioningXml {
    status: Option<String>,
}

/// The `Status` of a `VersioningConfiguration` document, if it has one.
pub fn parse_versioning(xml: &str) -> Result<Option<String>, String> {
    quick_xml::de::from_str::<VersioningXml>(xml)
        .map(|v| v.status.filter(|s| !s.is_empty()))
        .map_err(|e| format!("unreadable versioning document: {e}"))
}

/// A bucket's Object Lock state, as `GetObjectLockConfiguration` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLock {
    pub enabled: bool,
    /// The bucket's default retention: mode (`GOVERNANCE`, `COMPLIANCE`)
    /// and period (`30 days`, `1 years`), when it has one.
    pub default_retention: Option<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ObjectLockXml {
    object_lock_enabled: Option<String>,
    rule: Option<LockRuleXml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LockRuleXml {
    default_retention: Option<RetentionXml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetentionXml {
    mode: Option<String>,
    days: Option<u32>,
    years: Option<u32>,
}

/// Reads an `ObjectLockConfiguration` document.
pub fn parse_object_lock(xml: &str) -> Result<Option<ObjectLock>, String> {
    let doc: ObjectLockXml = quick_xml::de::from_str(xml)
        .map_err(|e| format!("unreadable object lock document: {e}"))?;
    let enabled = doc.object_lock_enabled.as_deref() == Some("Enabled");
    let default_retention = doc.rule.and_then(|r| r.default_retention).map(|d| {
        let period = match (d.days, d.years) {
            (Some(n), _) => format!("{n} days"),
            (None, Some(n)) => format!("{n} years"),
            (None, None) => "no period".to_owned(),
        };
        (d.mode.unwrap_or_default(), period)
    });
    Ok(Some(ObjectLock {
        enabled,
        default_retention,
    }))
}

/// `HTTP <status>` with S3's error code and message, if the body has them.
pub(crate) fn s3_error(status: u16, body: &str) -> String {
    let parsed: Option<ErrorXml> = quick_xml::de::from_str(body).ok();
    let (code, message) = parsed.map_or((None, None), |e| (e.code, e.message));
    match (code, message) {
        (Some(c), Some(m)) => format!("HTTP {status} {c}: {m}"),
        (Some(c), None) => format!("HTTP {status} {c}"),
        _ => format!("HTTP {status}"),
    }
}

/// S3's URI encoding: unreserved characters stay, everything else is
/// `%XX`; `/` too unless it separates path segments. The request is sent
/// encoded this way, and object_store signs the path as sent.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `ListMultipartUploadsResult`, the fields read here; others are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploadsXml {
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<UploadXml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadXml {
    key: String,
    upload_id: String,
    initiated: Option<String>,
}

/// Reads a `ListMultipartUploadsResult`. An initiation time that is not
/// RFC 3339 is kept as unknown (such uploads are left alone).
pub fn parse_list_uploads(xml: &str) -> Result<UploadPage, String> {
    let doc: ListUploadsXml = quick_xml::de::from_str(xml)
        .map_err(|e| format!("unreadable ListMultipartUploads response: {e}"))?;
    let uploads = doc
        .uploads
        .into_iter()
        .map(|u| OpenUpload {
            key: u.key,
            upload_id: u.upload_id,
            initiated: u
                .initiated
                .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
                .map(|t| t.with_timezone(&Utc)),
        })
        .collect();
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(UploadPage {
        uploads,
        truncated: doc.is_truncated,
        next_key_marker: non_empty(doc.next_key_marker),
        next_upload_id_marker: non_empty(doc.next_upload_id_marker),
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket>
  <KeyMarker></KeyMarker>
  <UploadIdMarker/>
  <NextKeyMarker>p/j/2&amp;3/b.zst</NextKeyMarker>
  <NextUploadIdMarker>id-2</NextUploadIdMarker>
  <Prefix>p/j/</Prefix>
  <MaxUploads>2</MaxUploads>
  <IsTruncated>true</IsTruncated>
  <Upload>
    <Key>p/j/1/a&lt;&gt;&quot;&apos;&#38;&#x41;.zst</Key>
    <UploadId>id-1</UploadId>
    <Initiator><ID>arn</ID><DisplayName>me</DisplayName></Initiator>
    <StorageClass>STANDARD</StorageClass>
    <Initiated>2010-11-10T20:48:33.000Z</Initiated>
  </Upload>
  <Upload>
    <Key><![CDATA[p/j/2&3/b.zst]]></Key>
    <UploadId>id-2</UploadId>
    <Initiated>not a time</Initiated>
  </Upload>
</ListMultipartUploadsResult>"#;

    #[test]
    fn parses_a_list_uploads_page() {
        let page = parse_list_uploads(PAGE).unwrap();
        assert!(page.truncated);
        assert_eq!(page.next_key_marker.as_deref(), Some("p/j/2&3/b.zst"));
        assert_eq!(page.next_upload_id_marker.as_deref(), Some("id-2"));
        assert_eq!(page.uploads.len(), 2);
        assert_eq!(page.uploads[0].key, "p/j/1/a<>\"'&A.zst");
        assert_eq!(page.uploads[0].upload_id, "id-1");
        assert_eq!(
            page.uploads[0].initiated,
            Some(
                DateTime::parse_from_rfc3339("2010-11-10T20:48:33Z")
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
        assert_eq!(page.uploads[1].key, "p/j/2&3/b.zst");
        assert_eq!(page.uploads[1].initiated, None);
    }

    #[test]
    fn parses_an_empty_last_page_and_rejects_garbage() {
        let page = parse_list_uploads(
            "<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated>\
             <NextKeyMarker/></ListMultipartUploadsResult>",
        )
        .unwrap();
        assert_eq!(page, UploadPage::default());
        assert!(parse_list_uploads("<html>proxy error</html").is_err());
    }

    #[test]
    fn parses_object_lock_configurations() {
        let locked = r#"<?xml version="1.0" encoding="UTF-8"?><ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>30</Days></DefaultRetention></Rule></ObjectLockConfiguration>"#;
        assert_eq!(
            parse_object_lock(locked).unwrap(),
            Some(ObjectLock {
                enabled: true,
                default_retention: Some(("GOVERNANCE".into(), "30 days".into())),
            })
        );
        let bare = r#"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>"#;
        assert_eq!(
            parse_object_lock(bare).unwrap(),
            Some(ObjectLock {
                enabled: true,
                default_retention: None,
            })
        );
        assert!(parse_object_lock("<<").is_err());
    }

    #[test]
    fn parses_versioning_states() {
        let enabled = r#"<?xml version="1.0" encoding="UTF-8"?><VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;
        assert_eq!(
            parse_versioning(enabled).unwrap().as_deref(),
            Some("Enabled")
        );
        let never = r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>"#;
        assert_eq!(parse_versioning(never).unwrap(), None);
        assert!(parse_versioning("not xml <<").is_err());
    }

    #[test]
    fn error_documents_give_code_and_message() {
        assert_eq!(
            s3_error(
                403,
                "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>No &amp; no</Message><RequestId>1</RequestId></Error>"
            ),
            "HTTP 403 AccessDenied: No & no"
        );
        assert_eq!(s3_error(502, "bad gateway"), "HTTP 502");
    }

    #[test]
    fn encodes_keys_and_queries_like_s3() {
        assert_eq!(uri_encode("a b/c+d~e", false), "a%20b/c%2Bd~e");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(uri_encode("dé", true), "d%C3%A9");
    }

    fn sweeper(url: &str, options: &[(&str, &str)]) -> S3UploadSweeper {
        let url = Url::parse(url).unwrap();
        let mut b = AmazonS3Builder::new().with_url(url.as_str());
        for (k, v) in options {
            b = b.with_config(AmazonS3ConfigKey::from_str(k).unwrap(), *v);
        }
        let s3 = Arc::new(b.clone().build().unwrap());
        S3UploadSweeper::new(&b, &url, url.as_str(), s3)
    }

    /// A listing is store input: a key that is not one ccbackup could have
    /// written is refused before any request, never normalised into a
    /// different key (`a//b` would become `a/b`) and aborted there. The
    /// endpoint is closed: reaching the network would fail differently.
    #[tokio::test]
    async fn abort_refuses_a_listed_key_that_is_not_an_object_key() {
        let sw = sweeper(
            "s3://bkt/",
            &[
                ("aws_endpoint", "http://127.0.0.1:9/"),
                ("allow_http", "true"),
                ("access_key_id", "AKIA1"),
                ("secret_access_key", "s"),
            ],
        );
        for key in ["job/a//b", "job/../x", "/job/x", "job/x/"] {
            let up = OpenUpload {
                key: key.to_owned(),
                upload_id: "u1".to_owned(),
                initiated: None,
            };
            let err = sw.abort(&up).await.unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, UploadSweepError::Abort { .. }), "{msg}");
            let full = chain(&err).to_string();
            assert!(full.contains("not an object key"), "{key}: {full}");
        }
    }

    #[test]
    fn addresses_the_bucket_as_object_store_does_and_debug_hides_secrets() {
        let sw = sweeper(
            "s3://bkt/backups/site-a/",
            &[
                ("aws_endpoint", "http://127.0.0.1:9000/"),
                ("allow_http", "true"),
                ("region", "eu-central-1"),
                ("access_key_id", "AKIA1"),
                ("secret_access_key", "optsecret"),
                ("token", "tok3n"),
            ],
        );
        assert_eq!(sw.location.bucket_url, "http://127.0.0.1:9000/bkt");
        assert_eq!(sw.location.region, "eu-central-1");
        assert!(sw.location.allow_http);
        assert_eq!(sw.job_prefix("site"), "backups/site-a/site/");
        assert_eq!(
            sw.request_url(None, &[("uploads", ""), ("prefix", "x/y z/")]),
            "http://127.0.0.1:9000/bkt/?uploads=&prefix=x%2Fy%20z%2F"
        );
        assert_eq!(
            sw.request_url(Some("a b/c"), &[("uploadId", "u+1")]),
            "http://127.0.0.1:9000/bkt/a%20b/c?uploadId=u%2B1"
        );
        let dbg = format!("{sw:?}");
        assert!(
            !dbg.contains("optsecret") && !dbg.contains("tok3n"),
            "{dbg}"
        );

        let aws = sweeper(
            "s3://bkt",
            &[("access_key_id", "a"), ("secret_access_key", "b")],
        );
        assert_eq!(
            aws.location.bucket_url,
            "https://s3.us-east-1.amazonaws.com/bkt"
        );
        assert_eq!(aws.job_prefix("j"), "j/");
        let vhost = sweeper(
            "s3://bkt",
            &[
                ("region", "eu-west-1"),
                ("virtual_hosted_style_request", "true"),
                ("access_key_id", "a"),
                ("secret_access_key", "b"),
            ],
        );
        assert_eq!(
            vhost.location.bucket_url,
            "https://bkt.s3.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn refuses_plain_http_unless_allowed() {
        let sw = sweeper(
            "s3://bkt",
            &[
                ("endpoint", "http://127.0.0.1:9000"),
                ("access_key_id", "a"),
                ("secret_access_key", "b"),
            ],
        );
        let err = sw.client().unwrap_err().to_string();
        assert!(err.contains("allow_http"), "{err}");
    }
}
