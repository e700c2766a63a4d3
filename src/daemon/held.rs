//! What the store holds for one job, kept in the daemon's memory for the
//! status page: made from the catalog the daemon reads anyway (at start-up
//! and after every run), so a page request never lists the store.
//!
//! Everything here except IDs and times may come from a manifest someone
//! else wrote: strings are made printable (control characters escaped) and
//! clipped to [`MAX_TEXT`] characters when they are taken in, and only the
//! newest [`MAX_ROWS`] backups are kept, so neither the page nor the memory
//! behind it grows with what a crafted store holds.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::repo::catalog::{Catalog, Damaged};
use crate::repo::manifest::Manifest;
use crate::repo::store::backup_id_time;
use crate::retention::planner::{self, Snapshot};
use crate::retention::policy::Policy;

/// Backups of one job kept for the page, newest first.
pub const MAX_ROWS: usize = 200;
/// Longest text taken from the store (a reason, a source name, a problem).
pub const MAX_TEXT: usize = 300;
/// Most text one backup's lists (sources, the guard's reasons, accepted
/// shrinks) keep together: without it a crafted store of [`MAX_ROWS`]
/// manifests with 50 long entries in each list made every page request
/// build tens of megabytes.
pub const MAX_ROW_TEXT: usize = 1000;

/// A backup's state as the status page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupStatus {
    /// Complete and good.
    Complete,
    /// Complete, but the shrink guard flagged it.
    Suspicious,
    /// The manifest exists but cannot be used.
    Damaged,
    /// A signing key is configured and the manifest is not signed by it.
    Untrusted,
    /// Dated later than now plus `store.max_clock_skew`.
    Future,
    /// The daemon's tamper check found an object of a backup the policy
    /// keeps delete-marked (see [`super::status::tampering`]).
    Deleted,
    /// The daemon's tamper check found the backup's manifest rewritten.
    Tampered,
}

impl BackupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Complete => "complete",
            BackupStatus::Suspicious => "suspicious",
            BackupStatus::Damaged => "damaged",
            BackupStatus::Untrusted => "untrusted",
            BackupStatus::Future => "future",
            BackupStatus::Deleted => "deleted",
            BackupStatus::Tampered => "tampered",
        }
    }

    /// Whether `ccbackup restore` would take this backup.
    pub fn restorable(self) -> bool {
        matches!(self, BackupStatus::Complete | BackupStatus::Suspicious)
    }
}

/// What retention does with a backup at the job's next prune.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Retention {
    /// Kept, by the rules named (`daily`, `within 14d`, ...).
    Kept { rules: Vec<String> },
    /// The policy no longer keeps it: the next prune removes it.
    Removed,
    /// The job has no retention policy: nothing is ever pruned.
    NoPolicy,
    /// Not a complete backup: retention never touches it.
    NeverPruned,
}

/// One backup, as far as the page is concerned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldBackup {
    pub backup_id: String,
    /// From the manifest of a complete backup; from the ID otherwise.
    #[serde(serialize_with = "whole_seconds")]
    pub started_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub sources: Vec<String>,
    pub status: BackupStatus,
    /// Why it cannot be used (damaged, untrusted, future).
    pub problem: Option<String>,
    /// The shrink guard's reasons.
    pub suspicious: Vec<String>,
    /// Shrinks an operator accepted.
    pub shrink_accepted: Vec<String>,
    /// `signed`, `legacy` or `unchecked` for a complete backup.
    pub trust: Option<&'static str>,
    pub retention: Retention,
}

/// The newest backups of one job and how many there are.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Held {
    /// Newest first, at most [`MAX_ROWS`].
    pub rows: Vec<HeldBackup>,
    /// Every backup directory with a manifest, good or not.
    pub total: usize,
    pub listed_at: Option<DateTime<Utc>>,
}

/// Pure: the page's view of a job's catalog. `authenticated`: manifests
/// are checked against a signing key.
pub fn of(
    cat: &Catalog,
    job: &str,
    policy: Option<&Policy>,
    authenticated: bool,
    now: DateTime<Utc>,
) -> Held {
    let complete: Vec<&Manifest> = cat.complete.iter().filter(|m| m.job == job).collect();
    let plan = policy.map(|p| {
        let snaps: Vec<Snapshot> = complete
            .iter()
            .map(|m| Snapshot {
                id: m.id.clone(),
                time: m.started_at,
            })
            .collect();
        planner::plan(p, &snaps)
    });
    let mut rows: Vec<HeldBackup> = complete
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let retention = match &plan {
                None => Retention::NoPolicy,
                Some(p) => match p.entries.get(i) {
                    Some(e) if e.keep => Retention::Kept {
                        rules: e.reasons.iter().map(|r| clip(r)).collect(),
                    },
                    Some(_) => Retention::Removed,
                    None => Retention::NeverPruned,
                },
            };
            let trust = match (cat.is_legacy(m), authenticated) {
                (true, _) => "legacy",
                (false, true) => "signed",
                (false, false) => "unchecked",
            };
            complete_row(m, trust, retention)
        })
        .collect();
    rows.extend(cat.damaged.iter().filter(|d| d.job == job).map(damaged_row));
    let total = rows.len();
    // Newest first; a damaged backup without a time in its ID goes last.
    rows.sort_by(|a, b| (b.started_at, &b.backup_id).cmp(&(a.started_at, &a.backup_id)));
    rows.truncate(MAX_ROWS);
    Held {
        rows,
        total,
        listed_at: Some(now),
    }
}

/// `items` made printable and clipped, in order, until `budget`
/// characters are used; then one line saying how many more there were.
fn clip_within(items: &[String], budget: &mut usize) -> Vec<String> {
    let mut out = Vec::new();
    for (i, item) in items.iter().take(50).enumerate() {
        if *budget == 0 {
            out.push(format!("… {} more", items.len() - i));
            break;
        }
        let mut c = clip(item);
        if c.chars().count() > *budget {
            c = c.chars().take(*budget).collect();
            c.push('…');
        }
        *budget = budget.saturating_sub(c.chars().count());
        out.push(c);
    }
    out
}

fn complete_row(m: &Manifest, trust: &'static str, retention: Retention) -> HeldBackup {
    let duration = (m.finished_at - m.started_at).num_milliseconds();
    let mut budget = MAX_ROW_TEXT;
    HeldBackup {
        backup_id: clip(&m.id),
        started_at: Some(m.started_at),
        duration_seconds: (duration >= 0).then(|| duration as f64 / 1000.0),
        stored_bytes: m.stored_bytes(),
        raw_bytes: m.raw_bytes(),
        sources: clip_within(&m.source_names(), &mut budget),
        status: if m.guard.is_suspicious() {
            BackupStatus::Suspicious
        } else {
            BackupStatus::Complete
        },
        problem: None,
        suspicious: clip_within(&m.guard.suspicious, &mut budget),
        shrink_accepted: clip_within(&m.guard.accepted, &mut budget),
        trust: Some(trust),
        retention,
    }
}

fn damaged_row(d: &Damaged) -> HeldBackup {
    HeldBackup {
        backup_id: clip(&d.id),
        // The directory name, not the manifest: its claims are what
        // cannot be trusted.
        started_at: backup_id_time(&d.id),
        duration_seconds: None,
        stored_bytes: 0,
        raw_bytes: 0,
        sources: Vec::new(),
        status: match d.status() {
            "future" => BackupStatus::Future,
            "untrusted" => BackupStatus::Untrusted,
            _ => BackupStatus::Damaged,
        },
        problem: Some(clip(&d.problem)),
        suspicious: Vec::new(),
        shrink_accepted: Vec::new(),
        trust: None,
        retention: Retention::NeverPruned,
    }
}

/// RFC 3339 in whole seconds, like every other time ccbackup prints.
fn whole_seconds<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => s.serialize_none(),
    }
}

/// Printable (control characters escaped) and at most [`MAX_TEXT`]
/// characters, with an ellipsis when clipped.
pub fn clip(s: &str) -> String {
    let p = crate::progress::printable(s).replace(['\n', '\t'], " ");
    if p.chars().count() <= MAX_TEXT {
        return p;
    }
    let mut out: String = p.chars().take(MAX_TEXT).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, suspicious: &[&str]) -> Manifest {
        let mut m = crate::repo::manifest::fixture::manifest(id);
        m.finished_at = m.started_at + chrono::Duration::seconds(3);
        m.guard.suspicious = suspicious.iter().map(|s| s.to_string()).collect();
        m
    }

    fn damaged(id: &str, problem: &str, untrusted: bool) -> Damaged {
        Damaged {
            job: "j".into(),
            id: id.into(),
            problem: problem.into(),
            untrusted,
            future: false,
        }
    }

    fn catalog() -> Catalog {
        Catalog {
            complete: vec![
                m("20260101T000000Z-aaaaaa", &[]),
                m("20260102T000000Z-bbbbbb", &[]),
                m("20260104T000000Z-dddddd", &["empty\x1b[2J"]),
            ],
            damaged: vec![
                damaged("20260103T000000Z-cccccc", "unreadable", false),
                damaged("20260105T000000Z-eeeeee", "not signed", true),
                damaged("junk", "no time", false),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn rows_are_newest_first_with_their_status_and_retention() {
        let policy = Policy {
            keep_last: Some(crate::retention::policy::Count::Limited(2)),
            ..Policy::default()
        };
        let now = Utc::now();
        let h = of(&catalog(), "j", Some(&policy), false, now);
        let ids: Vec<(&str, &str)> = h
            .rows
            .iter()
            .map(|r| {
                (
                    r.backup_id.get(..6).unwrap_or(&r.backup_id),
                    r.status.as_str(),
                )
            })
            .collect();
        assert_eq!(
            ids,
            [
                ("202601", "untrusted"),
                ("202601", "suspicious"),
                ("202601", "damaged"),
                ("202601", "complete"),
                ("202601", "complete"),
                ("junk", "damaged"),
            ]
        );
        assert_eq!(h.total, 6);
        assert_eq!(h.listed_at, Some(now));
        assert_eq!(h.rows[1].suspicious, ["empty\\u{1b}[2J"]);
        assert_eq!(h.rows[1].duration_seconds, Some(3.0));
        assert_eq!(
            h.rows[1].retention,
            Retention::Kept {
                rules: vec!["last".into()]
            }
        );
        assert_eq!(h.rows[4].retention, Retention::Removed);
        assert_eq!(h.rows[0].retention, Retention::NeverPruned);
        assert_eq!(h.rows[3].trust, Some("unchecked"));
        assert!(h.rows[1].status.restorable() && !h.rows[0].status.restorable());
        let none = of(&catalog(), "j", None, true, now);
        assert_eq!(none.rows[3].retention, Retention::NoPolicy);
        assert_eq!(none.rows[3].trust, Some("signed"));
    }

    /// Review attack: an unsigned store planted with [`MAX_ROWS`]
    /// manifests whose lists are full of long text; what the page keeps
    /// (and renders per request) stays small.
    #[test]
    fn a_crafted_store_cannot_make_the_page_data_grow() {
        let long = "<".repeat(MAX_TEXT * 2);
        let mut cat = Catalog::default();
        for i in 0..MAX_ROWS {
            let mut crafted = m(
                &format!("20260101T{:02}{:02}00Z-aaaaaa", i / 60, i % 60),
                &[],
            );
            crafted.guard.suspicious = vec![long.clone(); 60];
            crafted.guard.accepted = vec![long.clone(); 60];
            cat.complete.push(crafted);
        }
        let h = of(&cat, "j", None, false, Utc::now());
        assert_eq!(h.rows.len(), MAX_ROWS);
        for r in &h.rows {
            let text: usize = r
                .sources
                .iter()
                .chain(&r.suspicious)
                .chain(&r.shrink_accepted)
                .map(|s| s.chars().count())
                .sum();
            assert!(text <= MAX_ROW_TEXT + 40, "{text} characters in one row");
        }
        // It says that there was more.
        assert!(h.rows[0].shrink_accepted.last().unwrap().contains("more"));
    }

    #[test]
    fn hostile_text_is_clipped_and_rows_are_capped() {
        let long = "<".repeat(MAX_TEXT * 3);
        assert_eq!(clip(&long).chars().count(), MAX_TEXT + 1);
        assert_eq!(clip("a\nb\tc\u{7}"), "a b c\\u{7}");
        let mut cat = Catalog::default();
        for i in 0..(MAX_ROWS + 5) {
            cat.damaged.push(damaged(&format!("x{i:04}"), &long, false));
        }
        let many: Vec<String> = (0..10_000).map(|i| format!("<{i}>")).collect();
        let mut crafted = m("20260101T000000Z-aaaaaa", &[]);
        crafted.guard.suspicious = many.clone();
        crafted.guard.accepted = many;
        cat.complete.push(crafted);
        let h = of(&cat, "j", None, false, Utc::now());
        assert_eq!((h.rows.len(), h.total), (MAX_ROWS, MAX_ROWS + 6));
        let row = h
            .rows
            .iter()
            .find(|r| r.backup_id.starts_with("2026"))
            .unwrap();
        assert_eq!((row.suspicious.len(), row.shrink_accepted.len()), (50, 50));
        assert!(h.rows[1].problem.as_ref().unwrap().ends_with('…'));
    }
}
