//! Aborting multipart uploads that a killed process left open on S3.
//!
//! object_store aborts its multipart uploads on every error, but a process
//! that is SIGKILLed mid-upload cannot, and object_store has no way to list
//! open uploads. This module speaks just enough of the S3 API to do it:
//! `ListMultipartUploads` under a job's prefix (paginated) and
//! `AbortMultipartUpload` for those initiated longer ago than the job's
//! `orphan_grace`. Requests are signed with AWS Signature Version 4.
//!
//! Settings come from the same place as the store's: the `AWS_*` variables,
//! overridden by the store's options (any spelling object_store accepts).
//! Only static credentials (access key, secret, optional session token) are
//! supported; without them the sweep reports an error, which prune logs as a
//! warning.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::aws::AmazonS3ConfigKey;
use object_store::ClientConfigKey;
use sha2::{Digest, Sha256};
use url::Url;

use crate::config::StoreConfig;
use crate::secret::Secret;

/// SHA-256 of the empty body: every request here has one.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Pages of `ListMultipartUploads` read before giving up (1000 uploads each).
const MAX_PAGES: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum UploadSweepError {
    #[error("cannot sweep multipart uploads of {store}: no static S3 credentials (access_key_id and secret_access_key)")]
    NoCredentials { store: String },
    #[error("cannot sweep multipart uploads of {store}: {message}")]
    Config { store: String, message: String },
    #[error("cannot list open multipart uploads of {store}: {detail}")]
    List { store: String, detail: String },
    #[error("cannot abort the multipart upload of `{key}` in {store}: {detail}")]
    Abort {
        store: String,
        key: String,
        detail: String,
    },
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

/// What the S3 sweep needs of a store: where it is and how to sign.
#[derive(Clone)]
pub struct S3UploadSweeper {
    /// The store URL without credentials, for messages.
    display: String,
    bucket: String,
    /// The store URL's prefix, without leading or trailing slashes.
    prefix: String,
    region: String,
    endpoint: Option<String>,
    virtual_hosted: bool,
    allow_http: bool,
    access_key_id: Option<String>,
    secret_access_key: Option<Secret>,
    session_token: Option<Secret>,
}

/// Never shows credentials.
impl std::fmt::Debug for S3UploadSweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3UploadSweeper")
            .field("store", &self.display)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("virtual_hosted", &self.virtual_hosted)
            .field("credentials", &"<redacted>")
            .finish()
    }
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "y" | "on"
    )
}

impl S3UploadSweeper {
    /// For `s3://` stores: the sweeper, configured from the `AWS_*`
    /// variables overridden by the store's options. `None` for other schemes.
    pub fn from_config(cfg: &StoreConfig, display: &str) -> Option<S3UploadSweeper> {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("AWS_"))
            .collect();
        let options = cfg
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()));
        Self::from_settings(&cfg.url, display, env.into_iter().chain(options))
    }

    /// Later settings win, as with object_store's builder.
    fn from_settings(
        url: &Url,
        display: &str,
        settings: impl IntoIterator<Item = (String, String)>,
    ) -> Option<S3UploadSweeper> {
        if !matches!(url.scheme(), "s3" | "s3a") {
            return None;
        }
        let mut s = S3UploadSweeper {
            display: display.to_owned(),
            bucket: url.host_str().unwrap_or_default().to_owned(),
            prefix: url.path().trim_matches('/').to_owned(),
            region: String::new(),
            endpoint: None,
            virtual_hosted: false,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
        };
        let mut default_region = None;
        for (k, v) in settings {
            let Ok(key) = AmazonS3ConfigKey::from_str(&k.to_ascii_lowercase()) else {
                continue;
            };
            match key {
                AmazonS3ConfigKey::AccessKeyId => s.access_key_id = Some(v),
                AmazonS3ConfigKey::SecretAccessKey => s.secret_access_key = Some(Secret::new(v)),
                AmazonS3ConfigKey::Token => s.session_token = Some(Secret::new(v)),
                AmazonS3ConfigKey::Region => s.region = v,
                AmazonS3ConfigKey::DefaultRegion => default_region = Some(v),
                AmazonS3ConfigKey::Endpoint => s.endpoint = Some(v),
                AmazonS3ConfigKey::VirtualHostedStyleRequest => s.virtual_hosted = truthy(&v),
                AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp) => s.allow_http = truthy(&v),
                _ => {}
            }
        }
        if s.region.is_empty() {
            s.region = default_region.unwrap_or_else(|| "us-east-1".to_owned());
        }
        Some(s)
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

    /// Scheme, authority and the path prefix that addresses the bucket
    /// (path-style against a custom endpoint, virtual-hosted on AWS).
    fn base(&self) -> Result<(String, String, String), UploadSweepError> {
        let bucket_path = format!("/{}", uri_encode(&self.bucket, true));
        let (url, path) = match &self.endpoint {
            Some(ep) => {
                let ep = Url::parse(ep)
                    .map_err(|e| self.config_err(format!("endpoint is not a URL: {e}")))?;
                let base = ep.path().trim_end_matches('/').to_owned();
                if self.virtual_hosted {
                    // object_store: the endpoint already names the bucket.
                    (ep, base)
                } else {
                    (ep, format!("{base}{bucket_path}"))
                }
            }
            None => {
                let ep = if self.bucket.contains('.') {
                    // Dotted names do not match the wildcard certificate.
                    format!("https://s3.{}.amazonaws.com", self.region)
                } else {
                    format!("https://{}.s3.{}.amazonaws.com", self.bucket, self.region)
                };
                let ep = Url::parse(&ep)
                    .map_err(|e| self.config_err(format!("bucket or region: {e}")))?;
                let path = if self.bucket.contains('.') {
                    bucket_path
                } else {
                    String::new()
                };
                (ep, path)
            }
        };
        if url.scheme() == "http" && !self.allow_http {
            return Err(self.config_err("the endpoint is http:// but allow_http is not set"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| self.config_err("endpoint has no host"))?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        Ok((url.scheme().to_owned(), authority, path))
    }

    fn client(&self) -> Result<reqwest::Client, UploadSweepError> {
        reqwest::Client::builder()
            .https_only(!self.allow_http)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| self.config_err(format!("http client: {e}")))
    }

    /// Sends one signed request with an empty body; returns status and body.
    async fn send(
        &self,
        client: &reqwest::Client,
        method: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
    ) -> Result<(u16, String), String> {
        let (Some(access_key_id), Some(secret)) = (&self.access_key_id, &self.secret_access_key)
        else {
            return Err("no static S3 credentials".to_owned());
        };
        let (scheme, authority, base_path) = self.base().map_err(|e| e.to_string())?;
        let path = match key {
            Some(k) => format!("{base_path}/{}", uri_encode(k, false)),
            None if base_path.is_empty() => "/".to_owned(),
            None => base_path,
        };
        let query_string = canonical_query(query);
        let now = Utc::now();
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let mut headers = vec![
            ("host".to_owned(), authority.clone()),
            ("x-amz-content-sha256".to_owned(), EMPTY_SHA256.to_owned()),
            ("x-amz-date".to_owned(), amz_date.clone()),
        ];
        if let Some(t) = &self.session_token {
            headers.push(("x-amz-security-token".to_owned(), t.expose().to_owned()));
        }
        let auth = authorization(&SigningInput {
            method,
            canonical_uri: &path,
            canonical_query: &query_string,
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            amz_date: &amz_date,
            region: &self.region,
            access_key_id,
            secret_access_key: secret.expose(),
        });
        let url = if query_string.is_empty() {
            format!("{scheme}://{authority}{path}")
        } else {
            format!("{scheme}://{authority}{path}?{query_string}")
        };
        let url = Url::parse(&url).map_err(|e| format!("bad request URL: {e}"))?;
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| format!("bad method: {e}"))?;
        let mut req = client.request(method, url);
        for (k, v) in &headers {
            if k != "host" {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        let resp = req
            .header("authorization", auth)
            .send()
            .await
            .map_err(|e| describe_reqwest(&e))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| describe_reqwest(&e))?;
        Ok((status, body))
    }

    /// Every open multipart upload under `prefix` (all pages).
    pub async fn list(&self, prefix: &str) -> Result<Vec<OpenUpload>, UploadSweepError> {
        self.check_credentials()?;
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
            let (status, body) = self
                .send(&client, "GET", None, &query)
                .await
                .map_err(list_err)?;
            if !(200..300).contains(&status) {
                return Err(list_err(s3_error(status, &body)));
            }
            let page = parse_list_uploads(&body);
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

    /// Aborts one upload; an upload that is already gone is not an error.
    pub async fn abort(&self, upload: &OpenUpload) -> Result<(), UploadSweepError> {
        self.check_credentials()?;
        let client = self.client()?;
        let abort_err = |detail: String| UploadSweepError::Abort {
            store: self.display.clone(),
            key: upload.key.clone(),
            detail,
        };
        let (status, body) = self
            .send(
                &client,
                "DELETE",
                Some(&upload.key),
                &[("uploadId", &upload.upload_id)],
            )
            .await
            .map_err(abort_err)?;
        if (200..300).contains(&status) || status == 404 {
            Ok(())
        } else {
            Err(abort_err(s3_error(status, &body)))
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
                    tracing::warn!(job, error = %e, "abort failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(aborted),
        }
    }

    fn check_credentials(&self) -> Result<(), UploadSweepError> {
        if self.access_key_id.is_some() && self.secret_access_key.is_some() {
            Ok(())
        } else {
            Err(UploadSweepError::NoCredentials {
                store: self.display.clone(),
            })
        }
    }
}

/// A transport error in words, with its causes, without the URL (which holds
/// nothing secret, but repeats the store).
fn describe_reqwest(e: &reqwest::Error) -> String {
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

/// `HTTP <status>` with S3's error code and message, if the body has them.
fn s3_error(status: u16, body: &str) -> String {
    let code = element(body, "Code").map(unescape);
    let message = element(body, "Message").map(unescape);
    match (code, message) {
        (Some(c), Some(m)) => format!("HTTP {status} {c}: {m}"),
        (Some(c), None) => format!("HTTP {status} {c}"),
        _ => format!("HTTP {status}"),
    }
}

// --- SigV4 --------------------------------------------------------------------

/// HMAC-SHA256 (RFC 2104) over `sha2`, for SigV4; public so the Azure test
/// helpers sign with the same code.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// S3's URI encoding: unreserved characters stay, everything else is
/// `%XX`; `/` too unless it separates path segments.
pub(crate) fn uri_encode(s: &str, encode_slash: bool) -> String {
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

/// The canonical (and sent) query string: encoded, sorted, `k=` for flags.
pub(crate) fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) struct SigningInput<'a> {
    pub method: &'a str,
    /// Already URI-encoded.
    pub canonical_uri: &'a str,
    /// Already canonical (see [`canonical_query`]).
    pub canonical_query: &'a str,
    /// Lowercase names; all are signed.
    pub headers: &'a [(String, String)],
    pub payload_hash: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
    pub region: &'a str,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
}

/// The signature (hex) and the signed-headers list.
pub(crate) fn signature(i: &SigningInput<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = i
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        i.method,
        i.canonical_uri,
        i.canonical_query,
        canonical_headers,
        signed_headers,
        i.payload_hash
    );
    let date = i.amz_date.get(..8).unwrap_or(i.amz_date);
    let scope = format!("{date}/{}/s3/aws4_request", i.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        i.amz_date,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac_sha256(
        format!("AWS4{}", i.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac_sha256(&k_date, i.region.as_bytes());
    let k_service = hmac_sha256(&k_region, b"s3");
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    (
        hex::encode(hmac_sha256(&k_signing, string_to_sign.as_bytes())),
        signed_headers,
    )
}

/// The `Authorization` header value.
pub(crate) fn authorization(i: &SigningInput<'_>) -> String {
    let (sig, signed_headers) = signature(i);
    let date = i.amz_date.get(..8).unwrap_or(i.amz_date);
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{date}/{}/s3/aws4_request,SignedHeaders={signed_headers},Signature={sig}",
        i.access_key_id, i.region
    )
}

// --- XML ------------------------------------------------------------------------

/// The raw contents of every `<tag>...</tag>` (or empty `<tag/>`) in `xml`,
/// in order. Elements of the same name must not nest, which holds for the
/// S3 responses read here.
pub(crate) fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut rest = xml;
    while let Some(pos) = rest.find(&open) {
        let after = &rest[pos + open.len()..];
        // `<Key>` must not match `<KeyMarker>`.
        let Some(end) = after.find('>') else { break };
        let attrs = &after[..end];
        if !(attrs.is_empty() || attrs.starts_with(char::is_whitespace) || attrs.starts_with('/')) {
            rest = after;
            continue;
        }
        let body = &after[end + 1..];
        if attrs.trim_end().ends_with('/') {
            out.push("");
            rest = body;
            continue;
        }
        let Some(stop) = body.find(&close) else { break };
        out.push(&body[..stop]);
        rest = &body[stop + close.len()..];
    }
    out
}

pub(crate) fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    elements(xml, tag).into_iter().next()
}

/// Replaces XML's predefined entities and character references; unknown
/// entities are kept as written.
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..semi];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Reads a `ListMultipartUploadsResult`. `CDATA` sections are not expected.
pub fn parse_list_uploads(xml: &str) -> UploadPage {
    let text = |scope: &str, tag: &str| element(scope, tag).map(|t| unescape(t.trim()));
    // Upload elements hold Key, UploadId, Initiated; the top level holds the
    // markers. Remove the uploads before reading top-level fields.
    let uploads: Vec<OpenUpload> = elements(xml, "Upload")
        .into_iter()
        .filter_map(|u| {
            Some(OpenUpload {
                key: element(u, "Key").map(unescape)?,
                upload_id: text(u, "UploadId")?,
                initiated: text(u, "Initiated")
                    .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                    .map(|t| t.with_timezone(&Utc)),
            })
        })
        .collect();
    let top = xml.split("<Upload>").next().unwrap_or(xml).to_owned()
        + xml.rsplit("</Upload>").next().unwrap_or("");
    let top = if uploads.is_empty() { xml } else { &top };
    UploadPage {
        uploads,
        truncated: text(top, "IsTruncated").is_some_and(|t| t.eq_ignore_ascii_case("true")),
        next_key_marker: text(top, "NextKeyMarker").filter(|s| !s.is_empty()),
        next_upload_id_marker: text(top, "NextUploadIdMarker").filter(|s| !s.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn h(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn sigv4_matches_the_aws_get_object_example() {
        // AWS docs, "Signature calculations for the Authorization header:
        // transferring payload in a single chunk", example GET Object.
        let headers = [
            h("host", "examplebucket.s3.amazonaws.com"),
            h("range", "bytes=0-9"),
            h("x-amz-content-sha256", EMPTY_SHA256),
            h("x-amz-date", "20130524T000000Z"),
        ];
        let auth = authorization(&SigningInput {
            method: "GET",
            canonical_uri: &format!("/{}", uri_encode("test.txt", false)),
            canonical_query: "",
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            amz_date: "20130524T000000Z",
            region: "us-east-1",
            access_key_id: AWS_KEY,
            secret_access_key: AWS_SECRET,
        });
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn sigv4_matches_the_aws_list_objects_example() {
        // Same page, example GET Bucket (List Objects): a sorted query string.
        let headers = [
            h("host", "examplebucket.s3.amazonaws.com"),
            h("x-amz-content-sha256", EMPTY_SHA256),
            h("x-amz-date", "20130524T000000Z"),
        ];
        let query = canonical_query(&[("prefix", "J"), ("max-keys", "2")]);
        assert_eq!(query, "max-keys=2&prefix=J");
        let (sig, signed) = signature(&SigningInput {
            method: "GET",
            canonical_uri: "/",
            canonical_query: &query,
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            amz_date: "20130524T000000Z",
            region: "us-east-1",
            access_key_id: AWS_KEY,
            secret_access_key: AWS_SECRET,
        });
        assert_eq!(signed, "host;x-amz-content-sha256;x-amz-date");
        assert_eq!(
            sig,
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn hmac_matches_rfc4231() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn encodes_keys_and_queries_like_s3() {
        assert_eq!(uri_encode("a b/c+d~e", false), "a%20b/c%2Bd~e");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(uri_encode("dé", true), "d%C3%A9");
        assert_eq!(
            canonical_query(&[("uploads", ""), ("prefix", "x/y z/")]),
            "prefix=x%2Fy%20z%2F&uploads="
        );
    }

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
    <Key>p/j/2&amp;3/b.zst</Key>
    <UploadId>id-2</UploadId>
    <Initiated>not a time</Initiated>
  </Upload>
</ListMultipartUploadsResult>"#;

    #[test]
    fn parses_a_list_uploads_page() {
        let page = parse_list_uploads(PAGE);
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
    fn parses_an_empty_last_page() {
        let page = parse_list_uploads(
            "<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated>\
             <NextKeyMarker/></ListMultipartUploadsResult>",
        );
        assert_eq!(page, UploadPage::default());
        assert_eq!(
            elements("<KeyMarker>x</KeyMarker><Key>y</Key>", "Key"),
            ["y"]
        );
        assert_eq!(unescape("a&b&unknown;&#xZZ;"), "a&b&unknown;&#xZZ;");
    }

    #[test]
    fn settings_follow_object_store_spellings_and_debug_hides_secrets() {
        let url = Url::parse("s3://bkt/backups/site-a/").unwrap();
        let s = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let sw = S3UploadSweeper::from_settings(
            &url,
            "s3://bkt/backups/site-a/",
            [
                s("AWS_REGION", "eu-central-1"),
                s("AWS_SECRET_ACCESS_KEY", "envsecret"),
                s("aws_endpoint", "http://127.0.0.1:9000"),
                s("allow_http", "yes"),
                s("access_key_id", "AKIA1"),
                s("secret_access_key", "optsecret"),
                s("token", "tok3n"),
            ],
        )
        .unwrap();
        assert_eq!(sw.region, "eu-central-1");
        assert_eq!(sw.access_key_id.as_deref(), Some("AKIA1"));
        assert_eq!(
            sw.secret_access_key.as_ref().map(Secret::expose),
            Some("optsecret")
        );
        assert!(sw.allow_http);
        assert_eq!(sw.job_prefix("site"), "backups/site-a/site/");
        assert_eq!(
            sw.base().unwrap(),
            (
                "http".to_owned(),
                "127.0.0.1:9000".to_owned(),
                "/bkt".to_owned()
            )
        );
        let dbg = format!("{sw:?}");
        assert!(
            !dbg.contains("optsecret") && !dbg.contains("tok3n"),
            "{dbg}"
        );

        let aws = S3UploadSweeper::from_settings(&Url::parse("s3://bkt").unwrap(), "s3://bkt", [])
            .unwrap();
        assert_eq!(aws.region, "us-east-1");
        assert_eq!(aws.job_prefix("j"), "j/");
        assert_eq!(
            aws.base().unwrap(),
            (
                "https".to_owned(),
                "bkt.s3.us-east-1.amazonaws.com".to_owned(),
                String::new()
            )
        );
        assert!(
            S3UploadSweeper::from_settings(&Url::parse("gs://bkt").unwrap(), "gs://bkt", [])
                .is_none()
        );
    }
}
