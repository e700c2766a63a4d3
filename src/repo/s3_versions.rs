//! An S3 bucket's version history (`ListObjectVersions`), and which version
//! of each key was current at a given time.
//!
//! On a versioned bucket nothing ccbackup wrote is lost to an overwrite or a
//! plain DELETE: the old version stays and a delete marker hides it. This
//! module reads every version and delete marker under the store's prefix
//! (paginated, each page bounded), and [`pick_as_of`] chooses what the
//! store showed at time T. Times are the store's own `LastModified`, never a
//! time an object claims: an attacker can write any content but cannot
//! backdate what the store records.
//!
//! Requests are signed by object_store's own signer with the store's
//! credentials, through the helpers of [`crate::repo::s3_uploads`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::chain;
use crate::repo::s3_uploads::S3UploadSweeper;

/// Pages read before giving up: a million versions and delete markers.
pub const MAX_PAGES: usize = 1000;
/// Largest page body read. S3 sends at most 1000 entries a page, about
/// 400 KiB; anything far beyond is not a listing.
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Entries one page may hold (S3's own maximum is 1000).
pub const MAX_PAGE_ENTRIES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
    #[error("cannot list the object versions of {store}: {detail}")]
    List { store: String, detail: String },
    #[error(
        "{store} keeps no object versions (bucket versioning is {state}); --as-of and \
         tamper checks need a bucket with versioning (and Object Lock) enabled"
    )]
    Unversioned { store: String, state: String },
}

/// One version of a key, or a delete marker, as the bucket lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The full key in the bucket.
    pub key: String,
    pub version_id: String,
    /// When the store recorded this version (its `LastModified`).
    pub last_modified: DateTime<Utc>,
    pub size: u64,
    pub e_tag: Option<String>,
    pub delete_marker: bool,
    /// The key's current entry (`IsLatest`): breaks a tie of equal times.
    pub is_latest: bool,
}

/// One page of `ListObjectVersions`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionPage {
    pub versions: Vec<ObjectVersion>,
    pub truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_version_id_marker: Option<String>,
}

/// The children of `ListVersionsResult` in document order: versions and
/// delete markers interleave, so they are read as one sequence.
#[derive(Debug, Deserialize)]
struct ListVersionsXml {
    #[serde(default, rename = "$value")]
    items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
enum Item {
    IsTruncated(Option<String>),
    NextKeyMarker(Option<String>),
    NextVersionIdMarker(Option<String>),
    Version(EntryXml),
    DeleteMarker(EntryXml),
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EntryXml {
    key: Option<String>,
    version_id: Option<String>,
    last_modified: Option<String>,
    size: Option<String>,
    #[serde(rename = "ETag")]
    e_tag: Option<String>,
    is_latest: Option<String>,
}

/// Reads one `ListVersionsResult` page. An entry without a key, version ID
/// or readable time is an error: silently skipping it could hide the very
/// version a restore needs, or a delete marker that is evidence.
pub fn parse_list_versions(xml: &str) -> Result<VersionPage, String> {
    if xml.len() > MAX_PAGE_BYTES {
        return Err(format!(
            "the ListObjectVersions page is larger than {} MiB",
            MAX_PAGE_BYTES >> 20
        ));
    }
    let doc: ListVersionsXml = quick_xml::de::from_str(xml)
        .map_err(|e| format!("unreadable ListObjectVersions response: {e}"))?;
    let mut page = VersionPage::default();
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    for item in doc.items {
        let (entry, delete_marker) = match item {
            Item::IsTruncated(t) => {
                page.truncated = match t.as_deref().map(str::trim) {
                    Some("true") => true,
                    Some("false") | Some("") | None => false,
                    Some(other) => return Err(format!("IsTruncated is {other:?}")),
                };
                continue;
            }
            Item::NextKeyMarker(k) => {
                page.next_key_marker = non_empty(k);
                continue;
            }
            Item::NextVersionIdMarker(v) => {
                page.next_version_id_marker = non_empty(v);
                continue;
            }
            Item::Other => continue,
            Item::Version(e) => (e, false),
            Item::DeleteMarker(e) => (e, true),
        };
        if page.versions.len() >= MAX_PAGE_ENTRIES {
            return Err(format!(
                "a ListObjectVersions page holds more than {MAX_PAGE_ENTRIES} entries"
            ));
        }
        page.versions.push(entry_of(entry, delete_marker)?);
    }
    Ok(page)
}

fn entry_of(e: EntryXml, delete_marker: bool) -> Result<ObjectVersion, String> {
    let key = e
        .key
        .filter(|k| !k.is_empty())
        .ok_or("an entry has no Key")?;
    let version_id = e
        .version_id
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("the entry of {key:?} has no VersionId"))?;
    let last_modified = e
        .last_modified
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("the entry of {key:?} has no readable LastModified"))?;
    let size = match e.size.as_deref().map(str::trim) {
        None | Some("") if delete_marker => 0,
        Some(s) => s
            .parse()
            .map_err(|_| format!("the entry of {key:?} has Size {s:?}"))?,
        None => return Err(format!("the entry of {key:?} has no Size")),
    };
    Ok(ObjectVersion {
        key,
        version_id,
        last_modified,
        size,
        e_tag: e.e_tag,
        delete_marker,
        is_latest: e.is_latest.as_deref().map(str::trim) == Some("true"),
    })
}

/// Pure: for every key, the version the store showed at `at`: the newest
/// one recorded at or before `at`, unless that is a delete marker (the key
/// was absent then). Versions written later are ignored. Two versions of a
/// key with the same time are told apart by `IsLatest`, then by listing
/// order, newest first as S3 lists them (S3 keeps milliseconds; moto keeps
/// whole seconds and lists a page's delete markers after its versions).
/// Returns the chosen versions by key.
pub fn pick_as_of(versions: &[ObjectVersion], at: DateTime<Utc>) -> BTreeMap<&str, &ObjectVersion> {
    let mut newest: BTreeMap<&str, &ObjectVersion> = BTreeMap::new();
    for v in versions.iter().filter(|v| v.last_modified <= at) {
        let newer = newest.get(v.key.as_str()).is_none_or(|seen| {
            v.last_modified > seen.last_modified
                || (v.last_modified == seen.last_modified && v.is_latest && !seen.is_latest)
        });
        if newer {
            newest.insert(v.key.as_str(), v);
        }
    }
    newest.retain(|_, v| !v.delete_marker);
    newest
}

/// A signed `GET` on the bucket with `query`: the body of a 2xx answer, of
/// which at most `cap` bytes are read (a longer body is an error, so a
/// misbehaving endpoint cannot fill memory); otherwise S3's error in words.
async fn get_bucket(
    s3: &S3UploadSweeper,
    query: &[(&str, &str)],
    cap: usize,
) -> Result<String, String> {
    use crate::repo::s3_uploads::{describe_reqwest, s3_error};
    let client = s3.client().map_err(|e| chain(&e).to_string())?;
    let req = s3
        .signed(reqwest::Method::GET, &s3.request_url(None, query))
        .await
        .map_err(|e| chain(&e).to_string())?;
    let mut resp = client
        .request(req.method().clone(), req.uri().to_string())
        .headers(req.headers().clone())
        .send()
        .await
        .map_err(|e| describe_reqwest(&e))?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe_reqwest(&e))? {
        if body.len() + chunk.len() > cap {
            return Err(format!("the response is larger than {} MiB", cap >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(s3_error(status, &body))
    }
}

/// Every version and delete marker under `prefix` (a full bucket key
/// prefix), all pages.
pub async fn list_versions(
    s3: &S3UploadSweeper,
    prefix: &str,
) -> Result<Vec<ObjectVersion>, VersionsError> {
    list_versions_paged(s3, prefix, None).await
}

/// [`list_versions`] asking for pages of at most `page` entries (the
/// store's default, 1000, when `None`): small pages let tests cross many
/// page boundaries.
pub async fn list_versions_paged(
    s3: &S3UploadSweeper,
    prefix: &str,
    page: Option<u32>,
) -> Result<Vec<ObjectVersion>, VersionsError> {
    let max_keys = page.map(|n| n.to_string());
    let err = |detail: String| VersionsError::List {
        store: s3.display().to_owned(),
        detail,
    };
    let mut out = Vec::new();
    let mut markers: Option<(String, String)> = None;
    for _ in 0..MAX_PAGES {
        let mut query = vec![("versions", ""), ("prefix", prefix)];
        if let Some(n) = &max_keys {
            query.push(("max-keys", n));
        }
        if let Some((k, v)) = &markers {
            query.push(("key-marker", k));
            query.push(("version-id-marker", v));
        }
        let body = get_bucket(s3, &query, MAX_PAGE_BYTES).await.map_err(err)?;
        let page = parse_list_versions(&body).map_err(err)?;
        out.extend(
            page.versions
                .into_iter()
                .filter(|v| v.key.starts_with(prefix)),
        );
        if !page.truncated {
            return Ok(out);
        }
        let next = (
            page.next_key_marker.unwrap_or_default(),
            page.next_version_id_marker.unwrap_or_default(),
        );
        if next.0.is_empty() || markers.as_ref() == Some(&next) {
            return Err(err(
                "the listing is truncated but gives no new next marker".to_owned()
            ));
        }
        markers = Some(next);
    }
    Err(err(format!(
        "more than {MAX_PAGES} pages of versions; narrow the store prefix"
    )))
}

/// Fails unless the bucket keeps versions (`Enabled`, or `Suspended`,
/// which still keeps those written before).
pub async fn require_versioning(s3: &S3UploadSweeper) -> Result<(), VersionsError> {
    match s3.versioning().await {
        Ok(Some(state)) if state == "Enabled" || state == "Suspended" => Ok(()),
        Ok(state) => Err(VersionsError::Unversioned {
            store: s3.display().to_owned(),
            state: state.unwrap_or_else(|| "off".to_owned()),
        }),
        Err(e) => Err(VersionsError::List {
            store: s3.display().to_owned(),
            detail: crate::error::chain(&e).to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix>p/</Prefix><KeyMarker/><VersionIdMarker></VersionIdMarker>
  <NextKeyMarker>p/j/&amp;2</NextKeyMarker>
  <NextVersionIdMarker>v-9</NextVersionIdMarker>
  <MaxKeys>1000</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Version>
    <Key>p/j/1/manifest.json</Key><VersionId>v-2</VersionId><IsLatest>true</IsLatest>
    <LastModified>2026-12-07T10:00:05.000Z</LastModified><ETag>"e2"</ETag><Size>12</Size>
    <Owner><ID>x</ID></Owner><StorageClass>STANDARD</StorageClass>
  </Version>
  <DeleteMarker>
    <Key>p/j/1/a&lt;b&gt;</Key><VersionId>dm-1</VersionId><IsLatest>true</IsLatest>
    <LastModified>2026-12-07T11:00:00Z</LastModified>
  </DeleteMarker>
  <Version>
    <Key><![CDATA[p/j/1/a<b>]]></Key><VersionId>v-1</VersionId><IsLatest>false</IsLatest>
    <LastModified>2026-12-07T10:00:01.000Z</LastModified><Size>7</Size>
  </Version>
  <CommonPrefixes><Prefix>ignored/</Prefix></CommonPrefixes>
</ListVersionsResult>"#;

    #[test]
    fn parses_interleaved_versions_and_delete_markers() {
        let page = parse_list_versions(PAGE).unwrap();
        assert!(page.truncated);
        assert_eq!(page.next_key_marker.as_deref(), Some("p/j/&2"));
        assert_eq!(page.next_version_id_marker.as_deref(), Some("v-9"));
        assert_eq!(page.versions.len(), 3);
        let v = &page.versions;
        assert_eq!(v[0].key, "p/j/1/manifest.json");
        assert_eq!(v[0].size, 12);
        assert_eq!(v[0].e_tag.as_deref(), Some("\"e2\""));
        assert!(!v[0].delete_marker);
        assert!(v[0].is_latest && v[1].is_latest && !v[2].is_latest);
        assert_eq!(v[1].key, "p/j/1/a<b>");
        assert!(v[1].delete_marker);
        assert_eq!(v[1].last_modified, t("2026-12-07T11:00:00Z"));
        assert_eq!(v[2].key, "p/j/1/a<b>");
        assert_eq!(v[2].version_id, "v-1");
    }

    #[test]
    fn an_empty_last_page_parses() {
        let page = parse_list_versions(
            "<ListVersionsResult><Name>b</Name><IsTruncated>false</IsTruncated>\
             <NextKeyMarker/></ListVersionsResult>",
        )
        .unwrap();
        assert_eq!(page, VersionPage::default());
        let bare = parse_list_versions("<ListVersionsResult/>").unwrap();
        assert_eq!(bare, VersionPage::default());
    }

    #[test]
    fn hostile_pages_are_refused_not_half_read() {
        for bad in [
            "<html>proxy error</html",
            "not xml at all <<<",
            "<ListVersionsResult><IsTruncated>maybe</IsTruncated></ListVersionsResult>",
            // An entry the restore might need, without a version ID.
            "<ListVersionsResult><Version><Key>k</Key><LastModified>2026-01-01T00:00:00Z\
             </LastModified><Size>1</Size></Version></ListVersionsResult>",
            "<ListVersionsResult><Version><Key>k</Key><VersionId>v</VersionId>\
             <LastModified>yesterday</LastModified><Size>1</Size></Version></ListVersionsResult>",
            "<ListVersionsResult><Version><Key>k</Key><VersionId>v</VersionId>\
             <LastModified>2026-01-01T00:00:00Z</LastModified><Size>-1</Size></Version>\
             </ListVersionsResult>",
            "<ListVersionsResult><Version><VersionId>v</VersionId></Version></ListVersionsResult>",
        ] {
            assert!(parse_list_versions(bad).is_err(), "{bad}");
        }
        // Oversized bodies are refused before parsing.
        let huge = format!(
            "<ListVersionsResult>{}</ListVersionsResult>",
            "<Name>b</Name>".repeat(MAX_PAGE_BYTES / 10)
        );
        let e = parse_list_versions(&huge).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
        // More entries than any real page holds.
        let entry = "<DeleteMarker><Key>k</Key><VersionId>v</VersionId>\
                     <LastModified>2026-01-01T00:00:00Z</LastModified></DeleteMarker>";
        let many = format!(
            "<ListVersionsResult>{}</ListVersionsResult>",
            entry.repeat(MAX_PAGE_ENTRIES + 1)
        );
        let e = parse_list_versions(&many).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        // Deep nesting in an ignored element neither crashes nor counts.
        let deep = format!(
            "<ListVersionsResult><Owner>{}{}</Owner></ListVersionsResult>",
            "<x>".repeat(5000),
            "</x>".repeat(5000)
        );
        let _ = parse_list_versions(&deep);
    }

    fn v(key: &str, id: &str, at: &str, marker: bool) -> ObjectVersion {
        ObjectVersion {
            key: key.to_owned(),
            version_id: id.to_owned(),
            last_modified: t(at),
            size: 1,
            e_tag: None,
            delete_marker: marker,
            is_latest: false,
        }
    }

    #[test]
    fn picks_the_newest_version_at_or_before_the_time() {
        let all = vec![
            // Listed newest first per key, as S3 does.
            v("m", "forged", "2026-12-07T12:00:00Z", false),
            v("m", "dm", "2026-12-07T11:00:00Z", true),
            v("m", "real", "2026-12-07T10:00:00Z", false),
            v("a", "a2", "2026-12-07T10:00:00Z", false),
            v("a", "a1", "2026-12-07T10:00:00Z", false),
            v("late", "l1", "2026-12-07T13:00:00Z", false),
            v("gone", "dm2", "2026-12-07T10:30:00Z", true),
            v("gone", "g1", "2026-12-07T09:00:00Z", false),
        ];
        let ids = |at: &str| -> Vec<(String, String)> {
            pick_as_of(&all, t(at))
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.version_id.clone()))
                .collect()
        };
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        // Before anything was written.
        assert!(ids("2026-12-07T08:00:00Z").is_empty());
        // Exactly at a version's time includes it; ties go to listing order.
        assert_eq!(
            ids("2026-12-07T10:00:00Z"),
            vec![s("a", "a2"), s("gone", "g1"), s("m", "real")]
        );
        // A key whose newest version by then is a delete marker is absent.
        assert_eq!(ids("2026-12-07T11:30:00Z"), vec![s("a", "a2")]);
        // Written and deleted in the same second, the marker listed last
        // (as moto lists it): IsLatest says which is current.
        let mut tie = vec![
            v("t", "t1", "2026-12-07T10:00:00Z", false),
            v("t", "tdm", "2026-12-07T10:00:00Z", true),
        ];
        tie[1].is_latest = true;
        assert!(pick_as_of(&tie, t("2026-12-07T10:00:00Z")).is_empty());
        // Later writes replace what came before.
        assert_eq!(
            ids("2026-12-07T14:00:00Z"),
            vec![s("a", "a2"), s("late", "l1"), s("m", "forged")]
        );
    }
}
