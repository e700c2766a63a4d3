//! What the store holds for one job, as the metrics and `/readyz` show it:
//! read at start-up and after every run, so a restart neither forgets the
//! last good backup nor forgives a job that has none.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::metrics;
use crate::config::JobConfig;
use crate::repo::catalog;
use crate::repo::store::{self, Repo};
use crate::retry::{self, Backoff};

/// What the store holds for one job, as the metrics show it.
pub(super) struct Listed {
    complete: u64,
    damaged: u64,
    /// Start of the newest good backup ([`crate::backup::guard::baseline`]).
    newest_good: Option<DateTime<Utc>>,
    newest_suspicious: Option<bool>,
    /// Oldest backup directory that is not a good backup.
    first_attempt: Option<DateTime<Utc>>,
    /// The newest backups, for the status page.
    held: std::sync::Arc<super::held::Held>,
}

impl Listed {
    fn of(job: &str, cat: &catalog::Catalog, held: super::held::Held) -> Listed {
        let attempts = cat
            .complete
            .iter()
            .filter(|m| m.guard.is_suspicious())
            .map(|m| m.started_at);
        // Directory names, not manifest contents: those may be damaged.
        let leftovers = cat
            .incomplete
            .iter()
            .map(|i| i.id.as_str())
            .chain(cat.damaged.iter().map(|d| d.id.as_str()))
            .filter_map(store::backup_id_time);
        Listed {
            complete: cat.complete.len() as u64,
            damaged: cat.damaged.len() as u64,
            newest_good: crate::backup::guard::baseline(&cat.complete, job).map(|m| m.started_at),
            newest_suspicious: cat.complete.last().map(|m| m.guard.is_suspicious()),
            first_attempt: attempts.chain(leftovers).min(),
            held: std::sync::Arc::new(held),
        }
    }

    /// The store is the record: what it holds replaces what was known.
    pub(super) fn apply(&self, s: &mut metrics::JobStats) {
        s.backups_stored = Some(self.complete);
        s.backups_damaged = Some(self.damaged);
        s.last_success = self.newest_good;
        s.last_backup_suspicious = self.newest_suspicious;
        s.first_attempt = self.first_attempt;
        s.store_error = None;
        s.held = Some(self.held.clone());
    }
}

/// Counts, newest good backup and failed attempts of a job, and its newest
/// backups for the status page, with retries.
pub(super) async fn list_catalog(
    repo: &Repo,
    job: &JobConfig,
    cancel: &CancellationToken,
) -> Result<Listed, catalog::CatalogError> {
    let cat = retry::retry(Backoff::STORE, "catalog listing", cancel, || {
        catalog::load(repo, Some(&job.name))
    })
    .await?;
    Ok(listed(repo, job, &cat))
}

/// What the metrics show of a catalogue already in hand (a run's).
pub(super) fn listed(repo: &Repo, job: &JobConfig, cat: &catalog::Catalog) -> Listed {
    let held = super::held::of(
        cat,
        &job.name,
        job.retention.as_ref(),
        repo.verifier.is_some(),
        repo.clock.now(),
    );
    Listed::of(&job.name, cat, held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::manifest::Manifest;

    fn m(id: &str, suspicious: bool) -> Manifest {
        let mut m = crate::repo::manifest::fixture::manifest(id);
        if suspicious {
            m.guard.suspicious = vec!["empty".into()];
        }
        m
    }

    #[test]
    fn the_newest_good_backup_and_the_oldest_failed_attempt_are_found() {
        let cat = catalog::Catalog {
            complete: vec![
                m("20260102T000000Z-aaaaaa", false),
                m("20260103T000000Z-bbbbbb", true),
            ],
            incomplete: vec![catalog::Incomplete {
                job: "j".into(),
                id: "20260101T000000Z-cccccc".into(),
                objects: Vec::new(),
                last_modified: Utc::now(),
            }],
            damaged: Vec::new(),
            legacy: Default::default(),
        };
        let l = Listed::of("j", &cat, Default::default());
        assert_eq!(
            l.newest_good,
            store::backup_id_time("20260102T000000Z-aaaaaa")
        );
        assert_eq!(l.newest_suspicious, Some(true));
        assert_eq!(
            l.first_attempt,
            store::backup_id_time("20260101T000000Z-cccccc")
        );
        let mut s = metrics::JobStats {
            store_error: Some("x".into()),
            ..Default::default()
        };
        l.apply(&mut s);
        assert_eq!((s.backups_stored, s.store_error), (Some(2), None));
        let none = Listed::of("j", &catalog::Catalog::default(), Default::default());
        assert_eq!((none.newest_good, none.first_attempt), (None, None));
    }
}
