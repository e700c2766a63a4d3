//! One row of `list`: the facts `list --json` prints, built from a
//! manifest, a damaged backup or (in `tamper`) a backup that is gone. Its
//! own module so the listing and the tamper check both build rows without
//! importing each other.

use serde::Serialize;

use crate::repo::catalog;
use crate::repo::manifest::Manifest;
use crate::repo::store;

/// One row of `list --json` (docs/schema/list.json). Names and types are
/// the run report's for the same facts.
#[derive(Debug, Serialize)]
pub struct ListEntry {
    pub backup_id: String,
    pub job: String,
    /// RFC 3339, UTC: when the backup started.
    pub started_at: String,
    /// `complete`, `damaged` (the manifest exists but cannot be used, or
    /// its artifacts are missing), `untrusted` (not signed by the
    /// configured key) or `future` (dated after now plus
    /// `store.max_clock_skew`); for all but the first `problem` says why
    /// and the other fields are empty. Every field is always present:
    /// null or an empty list when it does not apply.
    pub status: &'static str,
    pub sources: Vec<String>,
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub artifacts: usize,
    pub problem: Option<String>,
    /// The shrink guard's reasons; a suspicious backup is complete and
    /// restorable, but never counted as good.
    pub suspicious: Vec<String>,
    /// Shrinks accepted with `run-now --accept-shrink`.
    pub shrink_accepted: Vec<String>,
    /// What vouches for a complete backup: `signed` (by the configured
    /// key), `legacy` (unsigned, admitted by `signing.unsigned_before`) or
    /// `unchecked` (no signing key is configured); null otherwise.
    pub trust: Option<&'static str>,
    /// `deleted` or `rewritten` when the store's version history shows
    /// someone other than ccbackup did that to a backup the policy keeps
    /// (versioned S3 stores); null otherwise.
    pub tampered: Option<&'static str>,
    /// For a tampered backup: the `--as-of` time that shows it as written.
    pub recover_as_of: Option<String>,
}

impl From<&Manifest> for ListEntry {
    fn from(m: &Manifest) -> Self {
        ListEntry {
            backup_id: m.id.clone(),
            job: m.job.clone(),
            started_at: m
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            status: "complete",
            sources: m.source_names(),
            stored_bytes: m.stored_bytes(),
            raw_bytes: m.raw_bytes(),
            artifacts: m.artifacts.len(),
            problem: None,
            suspicious: m.guard.suspicious.clone(),
            shrink_accepted: m.guard.accepted.clone(),
            trust: None,
            tampered: None,
            recover_as_of: None,
        }
    }
}

impl From<&catalog::Damaged> for ListEntry {
    fn from(d: &catalog::Damaged) -> Self {
        ListEntry {
            backup_id: d.id.clone(),
            job: d.job.clone(),
            // The time comes from the directory name: the manifest's own
            // claims are what cannot be trusted.
            started_at: store::backup_id_time(&d.id)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            status: d.status(),
            sources: Vec::new(),
            stored_bytes: 0,
            raw_bytes: 0,
            artifacts: 0,
            problem: Some(d.problem.clone()),
            suspicious: Vec::new(),
            shrink_accepted: Vec::new(),
            trust: None,
            tampered: None,
            recover_as_of: None,
        }
    }
}
