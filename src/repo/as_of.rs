//! The store as it was at a past time T (`--as-of T`), read-only.
//!
//! Built from one pass over the bucket's version history
//! ([`crate::repo::s3_versions`]): every key shows the version that was
//! current at T ([`pick_as_of`]), with that version's `LastModified` and
//! ID, and reads fetch exactly that version (object_store's
//! `GetOptions.version`). Keys deleted by T are absent; anything written
//! after T is invisible. Because it is an ordinary [`ObjectStore`], the
//! catalogue, verify and restore run on it unchanged. Writes are refused:
//! the past is for reading, and a restore must not change the evidence.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path as ObjPath;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::repo::s3_versions::{self, pick_as_of, ObjectVersion, VersionsError};
use crate::repo::store::Repo;

#[derive(Debug, thiserror::Error)]
pub enum AsOfError {
    #[error(
        "--as-of needs an S3 store with bucket versioning; {store} keeps no versions ccbackup \
         can read (file://, Azure and GCS stores are read as they are now)"
    )]
    NoVersions { store: String },
    #[error(transparent)]
    Versions(#[from] VersionsError),
}

/// What a write to the past store says.
#[derive(Debug, thiserror::Error)]
#[error("the store as it was at {at} is read-only: {what} refused")]
struct ReadOnly {
    at: String,
    what: &'static str,
}

/// The version of one key chosen for T.
#[derive(Debug, Clone)]
struct Chosen {
    version_id: String,
    last_modified: DateTime<Utc>,
    size: u64,
    e_tag: Option<String>,
}

/// A read-only view of a store at one time.
#[derive(Debug)]
pub struct AsOfStore {
    /// The live store (with the URL's prefix applied): reads go to it with
    /// a version ID.
    inner: Arc<dyn ObjectStore>,
    at: DateTime<Utc>,
    objects: BTreeMap<ObjPath, Chosen>,
}

impl std::fmt::Display for AsOfStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AsOf({}, {})", self.inner, self.at.to_rfc3339())
    }
}

/// Pure: the key below the store's prefix (`prefix` ends with `/`, or is
/// empty), as an object path; `None` for keys outside it or not valid paths.
fn relative(key: &str, prefix: &str) -> Option<ObjPath> {
    let rest = key.strip_prefix(prefix)?;
    ObjPath::parse(rest).ok().filter(|p| p.parts().count() > 0)
}

impl AsOfStore {
    /// The view at `at` of `inner`, from `versions` (full bucket keys) under
    /// `prefix` (the store's key prefix with a trailing `/`, or empty).
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        versions: &[ObjectVersion],
        prefix: &str,
        at: DateTime<Utc>,
    ) -> AsOfStore {
        let objects = pick_as_of(versions, at)
            .into_iter()
            .filter_map(|(key, v)| {
                let path = relative(key, prefix)?;
                Some((
                    path,
                    Chosen {
                        version_id: v.version_id.clone(),
                        last_modified: v.last_modified,
                        size: v.size,
                        e_tag: v.e_tag.clone(),
                    },
                ))
            })
            .collect();
        AsOfStore { inner, at, objects }
    }

    fn meta(&self, location: &ObjPath, c: &Chosen) -> ObjectMeta {
        ObjectMeta {
            location: location.clone(),
            last_modified: c.last_modified,
            size: c.size,
            e_tag: c.e_tag.clone(),
            version: Some(c.version_id.clone()),
        }
    }

    fn refuse(&self, what: &'static str) -> object_store::Error {
        object_store::Error::NotSupported {
            source: Box::new(ReadOnly {
                at: self.at.to_rfc3339(),
                what,
            }),
        }
    }

    fn under<'a>(
        &'a self,
        prefix: Option<&'a ObjPath>,
    ) -> impl Iterator<Item = (&'a ObjPath, &'a Chosen)> + 'a {
        self.objects
            .iter()
            .filter(move |(p, _)| prefix.is_none_or(|pre| p.prefix_matches(pre) && *p != pre))
    }
}

/// The repository as it was at `at`: same settings, a read-only store.
/// Fails clearly on a store that keeps no versions.
pub async fn open(repo: &Repo, at: DateTime<Utc>) -> Result<Repo, AsOfError> {
    let Some(s3) = repo.s3.as_deref() else {
        return Err(AsOfError::NoVersions {
            store: repo.display.clone(),
        });
    };
    s3_versions::require_versioning(s3).await?;
    let prefix = match s3.key_prefix() {
        "" => String::new(),
        p => format!("{p}/"),
    };
    let versions = s3_versions::list_versions(s3, &prefix).await?;
    let store = AsOfStore::new(repo.store.clone(), &versions, &prefix, at);
    tracing::info!(store = %repo.display, as_of = %at.to_rfc3339(), objects = store.objects.len(), versions = versions.len(), "reading the store as it was");
    Ok(Repo {
        store: Arc::new(store),
        // Nothing may be swept or written through the past.
        s3: None,
        signer: None,
        ..repo.clone()
    })
}

#[async_trait::async_trait]
impl ObjectStore for AsOfStore {
    async fn put_opts(
        &self,
        _location: &ObjPath,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(self.refuse("writing an object"))
    }

    async fn put_multipart_opts(
        &self,
        _location: &ObjPath,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(self.refuse("writing an object"))
    }

    async fn get_opts(
        &self,
        location: &ObjPath,
        mut options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let Some(c) = self.objects.get(location) else {
            return Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: format!("absent at {}", self.at.to_rfc3339()).into(),
            });
        };
        if options.version.as_ref().is_some_and(|v| *v != c.version_id) {
            return Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: "another version was current at that time".into(),
            });
        }
        options.version = Some(c.version_id.clone());
        let mut r = self.inner.get_opts(location, options).await?;
        // What the listing said is what the catalogue compared sizes with.
        r.meta.last_modified = c.last_modified;
        r.meta.version = Some(c.version_id.clone());
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        let err = ReadOnly {
            at: self.at.to_rfc3339(),
            what: "deleting an object",
        }
        .to_string();
        Box::pin(locations.map(move |_| {
            Err(object_store::Error::NotSupported {
                source: err.clone().into(),
            })
        }))
    }

    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let metas: Vec<_> = self
            .under(prefix)
            .map(|(p, c)| Ok(self.meta(p, c)))
            .collect();
        Box::pin(stream::iter(metas))
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<ListResult> {
        let depth = prefix.map_or(0, |p| p.parts().count());
        let mut common_prefixes = std::collections::BTreeSet::new();
        let mut objects = Vec::new();
        for (p, c) in self.under(prefix) {
            let parts: Vec<_> = p.parts().collect();
            if parts.len() == depth + 1 {
                objects.push(self.meta(p, c));
            } else {
                common_prefixes.insert(ObjPath::from_iter(parts[..=depth].iter().cloned()));
            }
        }
        Ok(ListResult {
            common_prefixes: common_prefixes.into_iter().collect(),
            objects,
            extensions: Default::default(),
        })
    }

    async fn copy_opts(
        &self,
        _from: &ObjPath,
        _to: &ObjPath,
        _options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        Err(self.refuse("copying an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    fn v(key: &str, id: &str, at: &str, marker: bool) -> ObjectVersion {
        ObjectVersion {
            key: key.to_owned(),
            version_id: id.to_owned(),
            last_modified: DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc),
            size: 3,
            e_tag: None,
            delete_marker: marker,
            is_latest: false,
        }
    }

    #[tokio::test]
    async fn lists_the_chosen_versions_and_refuses_writes() {
        let versions = vec![
            v(
                "site/j/1/manifest.json",
                "m1",
                "2026-12-07T10:00:00Z",
                false,
            ),
            v("site/j/1/db/a.zst", "a1", "2026-12-07T09:59:00Z", false),
            v(
                "site/j/2/manifest.json",
                "m2",
                "2026-12-07T12:00:00Z",
                false,
            ),
            v(
                "site2/j/1/manifest.json",
                "x",
                "2026-12-07T09:00:00Z",
                false,
            ),
            v("site", "x", "2026-12-07T09:00:00Z", false),
        ];
        let at = DateTime::parse_from_rfc3339("2026-12-07T11:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let s = AsOfStore::new(Arc::new(InMemory::new()), &versions, "site/", at);
        let listed: Vec<ObjectMeta> = s.list(None).try_collect().await.unwrap();
        let keys: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
        assert_eq!(keys, vec!["j/1/db/a.zst", "j/1/manifest.json"]);
        assert_eq!(listed[1].version.as_deref(), Some("m1"));
        let under: Vec<ObjectMeta> = s
            .list(Some(&ObjPath::from("j/1/db")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(under.len(), 1);
        let tree = s
            .list_with_delimiter(Some(&ObjPath::from("j")))
            .await
            .unwrap();
        assert_eq!(tree.common_prefixes, vec![ObjPath::from("j/1")]);
        assert!(tree.objects.is_empty());
        let e = s
            .put(&ObjPath::from("j/3/x"), PutPayload::from_static(b"x"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("read-only") && e.contains("2026-12-07T11:00:00"),
            "{e}"
        );
        assert!(s.delete(&ObjPath::from("j/1/manifest.json")).await.is_err());
        // Absent at that time.
        assert!(matches!(
            s.get(&ObjPath::from("j/2/manifest.json")).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }
}
