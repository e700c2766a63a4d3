//! Tamper evidence in `list` (see [`crate::retention::tamper`]).

use std::collections::BTreeSet;

use super::listing::ListEntry;
use super::out::note;
use crate::config::Config;
use crate::error::chain;
use crate::repo::catalog::Catalog;
use crate::repo::store::{self, Repo};
use crate::retention::tamper::{self, Tampered};

/// The tampered backups of the selected jobs, or none when the store keeps
/// no versions. A history that cannot be read is a warning: `list` still
/// shows what the store holds now.
pub(super) async fn check(
    cfg: &Config,
    job: Option<&str>,
    repo: &Repo,
    cat: &Catalog,
) -> Vec<Tampered> {
    let Ok(jobs) = cfg.select_jobs(job) else {
        return Vec::new();
    };
    let jobs: Vec<(&str, Option<&crate::retention::policy::Policy>)> = jobs
        .iter()
        .map(|j| (j.name.as_str(), j.retention.as_ref()))
        .collect();
    // Known forgeries do not count when the policy is evaluated again.
    let forged: BTreeSet<String> = cat
        .damaged
        .iter()
        .filter(|d| d.untrusted || d.future)
        .map(|d| d.id.clone())
        .collect();
    match tamper::scan(repo, &jobs, &forged).await {
        Ok(found) => found.unwrap_or_default(),
        Err(e) => {
            note!(
                "warning: cannot read the store's version history to check for tampering: {}",
                chain(&e)
            );
            Vec::new()
        }
    }
}

/// Marks the listed backups that were tampered with and adds those that
/// are gone from the store now.
pub(super) fn annotate(entries: &mut Vec<ListEntry>, tampered: &[Tampered]) {
    for t in tampered {
        let at = |x: chrono::DateTime<chrono::Utc>| {
            x.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        match entries
            .iter_mut()
            .find(|e| e.job == t.job && e.backup_id == t.id)
        {
            Some(e) => {
                e.tampered = Some(t.kind.as_str());
                e.recover_as_of = Some(at(t.recover_as_of));
            }
            None => entries.push(ListEntry {
                backup_id: t.id.clone(),
                job: t.job.clone(),
                started_at: store::backup_id_time(&t.id)
                    .map(|x| x.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
                status: "deleted",
                sources: Vec::new(),
                stored_bytes: 0,
                raw_bytes: 0,
                artifacts: 0,
                problem: Some(t.describe()),
                suspicious: Vec::new(),
                shrink_accepted: Vec::new(),
                trust: None,
                tampered: Some(t.kind.as_str()),
                recover_as_of: Some(at(t.recover_as_of)),
            }),
        }
    }
}

/// The closing warning of `list` when anything was tampered with.
pub(super) fn warn(tampered: &[Tampered]) {
    if let Some(t) = tamper::recovery_time(tampered) {
        note!(
            "warning: TAMPERING: {} backup{} the policy keeps {} deleted or rewritten by someone other than ccbackup; see them as they were with --as-of {}",
            tampered.len(),
            if tampered.len() == 1 { "" } else { "s" },
            if tampered.len() == 1 { "was" } else { "were" },
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
    }
}
