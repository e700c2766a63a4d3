//! What a repository holds: complete backups (those with a manifest) and
//! leftovers of runs that never wrote one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;

use crate::manifest::{self, Manifest, ManifestError};
use crate::store::{backup_id_time, Repo, MANIFEST_NAME};

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

#[derive(Debug, Default)]
pub struct Catalog {
    /// Complete backups, oldest first (time, then ID).
    pub complete: Vec<Manifest>,
    pub incomplete: Vec<Incomplete>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot list {store}: {source}")]
    List {
        store: String,
        source: object_store::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
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
    let mut complete: Vec<Manifest> = futures::stream::iter(wanted)
        .map(|(job, id)| async move { manifest::read(repo, &job, &id).await })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    complete.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(Catalog {
        complete,
        incomplete,
    })
}
