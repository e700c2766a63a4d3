//! What a repository holds: complete backups (those with a manifest) and
//! leftovers of runs that never wrote one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;

use crate::error::chain;
use crate::repo::manifest::{self, Manifest, ManifestError};
use crate::repo::store::{backup_id_time, Repo, MANIFEST_NAME};
use crate::retry::{Class, Transient};

/// Objects under one `<job>/<id>/` directory that has no manifest.
#[derive(Debug, Clone)]
pub struct Incomplete {
    pub job: String,
    pub id: String,
    pub objects: Vec<ObjPath>,
    /// Newest modification time among the objects: a run still writing keeps
    /// this fresh.
    pub last_modified: DateTime<Utc>,
}

/// A backup directory whose manifest exists but cannot be used: unreadable
/// JSON, missing fields, too large, or describing another place. It is
/// never counted as complete, never deleted automatically (it may be the
/// only copy of something an operator can still rescue by hand), and never
/// stops the rest of the catalog from being used.
#[derive(Debug, Clone)]
pub struct Damaged {
    pub job: String,
    pub id: String,
    pub problem: String,
    /// A signing key is configured and the manifest is unsigned, signed by
    /// another key, or changed after signing.
    pub untrusted: bool,
}

#[derive(Debug, Default)]
pub struct Catalog {
    /// Complete backups, oldest first (time, then ID).
    pub complete: Vec<Manifest>,
    pub incomplete: Vec<Incomplete>,
    /// Manifests that exist but cannot be trusted, ordered by ID.
    pub damaged: Vec<Damaged>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot list {store}")]
    List {
        store: String,
        source: object_store::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl Transient for CatalogError {
    fn class(&self) -> Class {
        match self {
            CatalogError::List { source, .. } => source.class(),
            CatalogError::Manifest(m) => m.class(),
        }
    }
}

#[derive(Default)]
struct Dir {
    has_manifest: bool,
    objects: Vec<ObjPath>,
    last_modified: Option<DateTime<Utc>>,
}

/// Reads the catalog of one job, or of every job when `job` is `None`.
pub async fn load(repo: &Repo, job: Option<&str>) -> Result<Catalog, CatalogError> {
    let prefix = job.map(ObjPath::from);
    let mut dirs: BTreeMap<(String, String), Dir> = BTreeMap::new();
    let mut listing = repo.store.list(prefix.as_ref());
    while let Some(meta) = listing
        .try_next()
        .await
        .map_err(|source| CatalogError::List {
            store: repo.display.clone(),
            source,
        })?
    {
        let parts: Vec<String> = meta
            .location
            .parts()
            .map(|p| p.as_ref().to_owned())
            .collect();
        let (Some(job), Some(id)) = (parts.first(), parts.get(1)) else {
            continue;
        };
        // Only directories named like backup IDs belong to ccbackup.
        if parts.len() < 3 || backup_id_time(id).is_none() {
            continue;
        }
        let d = dirs.entry((job.clone(), id.clone())).or_default();
        if parts.len() == 3 && parts[2] == MANIFEST_NAME {
            d.has_manifest = true;
        }
        d.last_modified = Some(
            d.last_modified
                .map_or(meta.last_modified, |t| t.max(meta.last_modified)),
        );
        d.objects.push(meta.location.clone());
    }

    let mut incomplete = Vec::new();
    let mut wanted = Vec::new();
    for ((job, id), d) in dirs {
        if d.has_manifest {
            wanted.push((job, id));
        } else {
            incomplete.push(Incomplete {
                job,
                id,
                objects: d.objects,
                last_modified: d.last_modified.unwrap_or_else(Utc::now),
            });
        }
    }
    let read: Vec<Result<Manifest, (String, String, ManifestError)>> =
        futures::stream::iter(wanted)
            .map(|(job, id)| async move {
                manifest::read(repo, &job, &id)
                    .await
                    .map_err(|e| (job, id, e))
            })
            .buffer_unordered(8)
            .collect()
            .await;
    let mut complete = Vec::new();
    let mut damaged = Vec::new();
    for r in read {
        match r {
            Ok(m) => complete.push(m),
            // The store failing to answer is not damage: the caller cannot
            // know what it holds, so it must not act on a partial view.
            Err((_, _, e)) if !e.is_damaged() => return Err(CatalogError::Manifest(e)),
            Err((job, id, e)) => {
                tracing::warn!(job = %job, backup = %id, problem = %chain(&e), "damaged manifest: not counted as a backup");
                damaged.push(Damaged {
                    job,
                    id,
                    untrusted: e.is_untrusted(),
                    problem: chain(&e).to_string(),
                });
            }
        }
    }
    complete.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    damaged.sort_by(|a, b| (&a.job, &a.id).cmp(&(&b.job, &b.id)));
    Ok(Catalog {
        complete,
        incomplete,
        damaged,
    })
}
