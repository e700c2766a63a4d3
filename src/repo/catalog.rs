//! What a repository holds: complete backups (those with a manifest) and
//! leftovers of runs that never wrote one.
//!
//! The store is untrusted, so a manifest makes a backup complete only if
//! it is readable, trusted, dated no later than now plus
//! `store.max_clock_skew`, and every artifact it names is in the listing
//! at the size it records. Anything else is damaged, and damage belongs to
//! one backup: only a failed listing, or a store that stops answering,
//! fails the whole catalog.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;

use crate::error::chain;
use crate::repo::manifest::{self, Manifest, ManifestError};
use crate::repo::store::{backup_id_time, Repo, MANIFEST_NAME};
use crate::retry::{Class, Transient};

mod checks;

/// Most estimated memory ([`manifest::weight`]) the manifests one catalog
/// keeps may take together: about ten thousand manifests of a
/// hundred-table database. Whatever the store holds, a catalog stays
/// within this plus the manifests being read ([`manifest::MAX_MANIFEST_BYTES`]
/// each, eight at a time).
pub const MAX_CATALOG_BYTES: u64 = 128 * 1024 * 1024;

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
/// JSON, missing fields, too large, describing another place, refused by
/// the store, missing artifacts, or dated in the future. It is never
/// counted as complete, never deleted automatically (it may be the only
/// copy of something an operator can still rescue by hand), and never
/// stops the rest of the catalog from being used.
#[derive(Debug, Clone)]
pub struct Damaged {
    pub job: String,
    pub id: String,
    pub problem: String,
    /// A signing key is configured and the manifest is unsigned, signed by
    /// another key, or changed after signing.
    pub untrusted: bool,
    /// Dated later than now plus `store.max_clock_skew`: a clock far off,
    /// or a forgery meant to outrank every real backup.
    pub future: bool,
}

impl Damaged {
    /// `future`, `untrusted` or `damaged`, as `list` shows it.
    pub fn status(&self) -> &'static str {
        if self.future {
            "future"
        } else if self.untrusted {
            "untrusted"
        } else {
            "damaged"
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// Complete backups, oldest first (time, then ID).
    pub complete: Vec<Manifest>,
    pub incomplete: Vec<Incomplete>,
    /// Manifests that exist but cannot be trusted, ordered by ID.
    pub damaged: Vec<Damaged>,
    /// `(job, id)` of the complete backups that are unsigned legacy
    /// backups ([`manifest::Trust::Legacy`]): all older than every signed
    /// backup of their job.
    pub legacy: std::collections::BTreeSet<(String, String)>,
}

impl Catalog {
    /// Whether `m` counts only as an unsigned backup from before the store
    /// moved to signing.
    pub fn is_legacy(&self, m: &Manifest) -> bool {
        self.legacy.contains(&(m.job.clone(), m.id.clone()))
    }

    /// The catalogue with a manifest this process has just committed, in
    /// its place (time, then ID), instead of listing the store again. A
    /// backup this run wrote is signed by it, so never legacy.
    pub fn add_committed(&mut self, m: Manifest) {
        let at = self
            .complete
            .partition_point(|c| (c.started_at, &c.id) <= (m.started_at, &m.id));
        self.complete.insert(at, m);
    }

    /// The catalogue without what retention just deleted (complete
    /// backups) and swept (leftover directories).
    pub fn remove_pruned(&mut self, deleted: &[String], swept: &[String]) {
        self.complete.retain(|m| !deleted.contains(&m.id));
        self.incomplete.retain(|i| !swept.contains(&i.id));
        self.legacy.retain(|(_, id)| !deleted.contains(id));
    }
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
    /// Key below the backup directory and size of every object listed
    /// there: what the manifest's artifacts are checked against.
    sizes: Vec<(String, u64)>,
    last_modified: Option<DateTime<Utc>>,
}

/// A manifest to read: job, backup ID and the sizes listed beside it.
type Wanted = (String, String, Vec<(String, u64)>);

/// Lists the store (below `job` if given) into its backup directories.
async fn list_dirs(
    repo: &Repo,
    job: Option<&str>,
) -> Result<BTreeMap<(String, String), Dir>, CatalogError> {
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
        d.sizes.push((parts[2..].join("/"), meta.size));
        d.objects.push(meta.location.clone());
    }
    Ok(dirs)
}

/// Pure: the directories with a manifest, to read, newest first, and
/// those without one, incomplete.
fn split_dirs(dirs: BTreeMap<(String, String), Dir>) -> (Vec<Wanted>, Vec<Incomplete>) {
    let mut incomplete = Vec::new();
    let mut wanted = Vec::new();
    for ((job, id), d) in dirs {
        if d.has_manifest {
            wanted.push((job, id, d.sizes));
        } else {
            incomplete.push(Incomplete {
                job,
                id,
                objects: d.objects,
                last_modified: d.last_modified.unwrap_or_else(Utc::now),
            });
        }
    }
    // Newest first, in order, so the memory budget goes to the backups
    // most likely to be restored, and each manifest is kept or dropped as
    // it arrives rather than after all of them are in memory.
    // By the time in the ID, not its text.
    wanted.sort_by_key(|(job, id, _)| {
        (
            std::cmp::Reverse(backup_id_time(id)),
            job.clone(),
            id.clone(),
        )
    });
    (wanted, incomplete)
}

/// Reads the catalog of one job, or of every job when `job` is `None`.
pub async fn load(repo: &Repo, job: Option<&str>) -> Result<Catalog, CatalogError> {
    let (wanted, incomplete) = split_dirs(list_dirs(repo, job).await?);
    let mut read = futures::stream::iter(wanted)
        .map(|(job, id, sizes)| async move {
            let r = manifest::read_weighed(repo, &job, &id).await;
            (job, id, sizes, r)
        })
        .buffered(8);
    let now = repo.clock.now();
    let mut budget = MAX_CATALOG_BYTES;
    let mut complete = Vec::new();
    let mut damaged = Vec::new();
    let mut legacy = std::collections::BTreeSet::new();
    let mut first_signed: std::collections::HashMap<String, (DateTime<Utc>, String)> =
        std::collections::HashMap::new();
    while let Some((job, id, sizes, r)) = read.next().await {
        let verdict = match r {
            Ok((m, weight, trust)) => {
                if trust == manifest::Trust::Signed {
                    // Every verified signature counts here, whether or not
                    // the backup is counted below (budget, phantom): legacy
                    // backups must be older than all of them.
                    let e = first_signed
                        .entry(m.job.clone())
                        .or_insert((m.started_at, m.id.clone()));
                    if m.started_at < e.0 {
                        *e = (m.started_at, m.id.clone());
                    }
                }
                match checks::judge(&m, &sizes, now, repo.max_clock_skew) {
                    None if weight <= budget => {
                        budget -= weight;
                        if trust == manifest::Trust::Legacy {
                            legacy.insert((m.job.clone(), m.id.clone()));
                        }
                        complete.push(m);
                        continue;
                    }
                    None => checks::Verdict::damaged(format!(
                        "the catalog's memory budget ({} MiB of parsed manifests) is spent by \
                     newer backups; this one is not counted",
                        MAX_CATALOG_BYTES >> 20
                    )),
                    Some(v) => v,
                }
            }
            // The store stopped answering: the caller cannot know what it
            // holds, so it must not act on a partial view.
            Err(ManifestError::Read { key, source }) if checks::store_unreachable(&source) => {
                return Err(CatalogError::Manifest(ManifestError::Read { key, source }))
            }
            // A store that lists an object and then will not hand it out
            // (archived, customer-key encrypted, not readable to this
            // user, not a regular file) damages that backup only.
            Err(ManifestError::Read { key, source }) => checks::Verdict::damaged(format!(
                "the store lists {key} but does not hand it out ({}); it may be archived \
                 to a cold storage class, need a customer-provided key, or be unreadable \
                 to this user",
                checks::root_cause(&source)
            )),
            Err(e) if !e.is_damaged() => return Err(CatalogError::Manifest(e)),
            Err(e) => checks::Verdict {
                problem: chain(&e).to_string(),
                untrusted: e.is_untrusted(),
                future: false,
            },
        };
        if verdict.future {
            tracing::warn!(job = %job, backup = %id, problem = %verdict.problem, "backup dated in the future: not counted, not copied, not pruned");
        } else {
            tracing::warn!(job = %job, backup = %id, problem = %verdict.problem, "damaged manifest: not counted as a backup");
        }
        damaged.push(Damaged {
            job,
            id,
            problem: verdict.problem,
            untrusted: verdict.untrusted,
            future: verdict.future,
        });
    }
    for (job, id, problem) in checks::legacy_after_signed(&complete, &legacy, &first_signed) {
        tracing::warn!(job = %job, backup = %id, problem = %problem, "untrusted manifest: not counted as a backup");
        complete.retain(|m| !(m.job == job && m.id == id));
        legacy.remove(&(job.clone(), id.clone()));
        damaged.push(Damaged {
            job,
            id,
            problem,
            untrusted: true,
            future: false,
        });
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
        legacy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str) -> Manifest {
        crate::repo::manifest::fixture::manifest(id)
    }

    fn ids(c: &Catalog) -> Vec<&str> {
        c.complete.iter().map(|m| m.id.as_str()).collect()
    }

    /// What a run hands on instead of listing again: its own backup in
    /// time order, then without what retention removed.
    #[test]
    fn a_run_updates_its_listing_in_place() {
        let mut c = Catalog {
            complete: vec![m("20260101T000000Z-aaaaaa"), m("20260103T000000Z-cccccc")],
            incomplete: vec![Incomplete {
                job: "j".into(),
                id: "20251231T000000Z-eeeeee".into(),
                objects: Vec::new(),
                last_modified: Utc::now(),
            }],
            ..Catalog::default()
        };
        c.add_committed(m("20260102T000000Z-bbbbbb"));
        assert_eq!(
            ids(&c),
            [
                "20260101T000000Z-aaaaaa",
                "20260102T000000Z-bbbbbb",
                "20260103T000000Z-cccccc"
            ]
        );
        c.remove_pruned(
            &["20260101T000000Z-aaaaaa".into()],
            &["20251231T000000Z-eeeeee".into()],
        );
        assert_eq!(
            ids(&c),
            ["20260102T000000Z-bbbbbb", "20260103T000000Z-cccccc"]
        );
        assert!(c.incomplete.is_empty());
    }
}
