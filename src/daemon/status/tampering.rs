//! Tampering on the status page: the findings of the daemon's last tamper
//! check (see [`crate::daemon::tamper`]), kept in memory, laid over the
//! backups the store holds now.
//!
//! A backup whose manifest an attacker deleted is not in the catalog any
//! more, so it is added as a `deleted` row; one that is still listed (an
//! artifact delete-marked, or a manifest rewritten) is marked `deleted` or
//! `tampered` in place. Each gets the `--as-of` time that shows it as
//! ccbackup wrote it, and the restore command uses that time: restoring
//! what the store shows now would take the attacker's version.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::super::held::{clip, BackupStatus, HeldBackup, Retention, MAX_ROWS};
use super::{shell_quote, BackupView};
use crate::repo::store::backup_id_time;
use crate::retention::tamper::{self, Kind, Tampered};

/// The job's tampering state, next to its readiness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TamperingView {
    /// Backups the policy keeps that the store's history shows deleted or
    /// rewritten by someone other than ccbackup (after any acknowledgement).
    pub tampered_backups: usize,
    /// The `--as-of` time that shows all of them as ccbackup wrote them;
    /// null when there are none.
    pub recover_as_of: Option<String>,
}

fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Pure: the tampering state of a job. `checked`: a tamper check ran (the
/// store keeps versions); without one there is nothing to say.
pub fn state(checked: bool, found: &[Tampered]) -> Option<TamperingView> {
    checked.then(|| TamperingView {
        tampered_backups: found.len(),
        recover_as_of: tamper::recovery_time(found).map(millis),
    })
}

/// `ccbackup restore` for a tampered backup, from the store as it was.
pub fn restore_as_of_command(config: &str, job: &str, id: &str, as_of: DateTime<Utc>) -> String {
    format!(
        "ccbackup --config {} restore --as-of {} --job {} --backup {}",
        shell_quote(config),
        millis(as_of),
        shell_quote(job),
        shell_quote(id)
    )
}

/// Pure: `rows` (newest first) with the tampered backups of `job` marked
/// or added, newest first, at most [`MAX_ROWS`]; tampered rows go before
/// any other when rows must be left out.
pub fn apply(
    mut rows: Vec<BackupView>,
    found: &[Tampered],
    config: &str,
    job: &str,
) -> Vec<BackupView> {
    for t in found.iter().filter(|t| t.job == job) {
        let status = match t.kind {
            Kind::Deleted => BackupStatus::Deleted,
            Kind::Rewritten => BackupStatus::Tampered,
        };
        let command = restore_as_of_command(config, job, &t.id, t.recover_as_of);
        match rows.iter_mut().find(|r| r.held.backup_id == t.id) {
            Some(r) => {
                r.held.status = status;
                r.held.problem = Some(clip(&t.describe()));
                r.restore_command = Some(command);
                r.tampered_at = Some(millis(t.at));
                r.recover_as_of = Some(millis(t.recover_as_of));
            }
            None => rows.push(BackupView {
                held: HeldBackup {
                    backup_id: clip(&t.id),
                    started_at: backup_id_time(&t.id),
                    duration_seconds: None,
                    stored_bytes: 0,
                    raw_bytes: 0,
                    sources: Vec::new(),
                    status,
                    problem: Some(clip(&t.describe())),
                    suspicious: Vec::new(),
                    shrink_accepted: Vec::new(),
                    trust: None,
                    // Only a backup the policy keeps counts as tampered.
                    retention: Retention::Kept { rules: Vec::new() },
                },
                restore_command: Some(command),
                tampered_at: Some(millis(t.at)),
                recover_as_of: Some(millis(t.recover_as_of)),
            }),
        }
    }
    rows.sort_by(|a, b| {
        (b.held.started_at, &b.held.backup_id).cmp(&(a.held.started_at, &a.held.backup_id))
    });
    let marked = rows.iter().filter(|r| r.recover_as_of.is_some()).count();
    let mut marked_left = marked.min(MAX_ROWS);
    let mut other_left = MAX_ROWS - marked_left;
    rows.retain(|r| {
        let left = if r.recover_as_of.is_some() {
            &mut marked_left
        } else {
            &mut other_left
        };
        let keep = *left > 0;
        *left = left.saturating_sub(1);
        keep
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn row(id: &str) -> BackupView {
        BackupView {
            held: HeldBackup {
                backup_id: id.into(),
                started_at: backup_id_time(id),
                duration_seconds: Some(1.0),
                stored_bytes: 1,
                raw_bytes: 1,
                sources: Vec::new(),
                status: BackupStatus::Complete,
                problem: None,
                suspicious: Vec::new(),
                shrink_accepted: Vec::new(),
                trust: Some("signed"),
                retention: Retention::NoPolicy,
            },
            restore_command: Some("plain".into()),
            tampered_at: None,
            recover_as_of: None,
        }
    }

    fn found(id: &str, kind: Kind) -> Tampered {
        Tampered {
            job: "j".into(),
            id: id.into(),
            kind,
            at: t("2026-12-04T09:00:00Z"),
            recover_as_of: t("2026-12-04T08:59:59.999Z"),
        }
    }

    #[test]
    fn tampered_backups_are_marked_or_added_with_their_as_of_restore() {
        let rows = vec![
            row("20261203T000000Z-cccccc"),
            row("20261201T000000Z-aaaaaa"),
        ];
        let f = [
            found("20261203T000000Z-cccccc", Kind::Rewritten),
            found("20261202T000000Z-bbbbbb", Kind::Deleted),
            Tampered {
                job: "other".into(),
                ..found("20261201T000000Z-aaaaaa", Kind::Deleted)
            },
        ];
        let out = apply(rows, &f, "/c.yaml", "j");
        let got: Vec<(&str, &str)> = out
            .iter()
            .map(|r| (&r.held.backup_id[16..], r.held.status.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("-cccccc", "tampered"),
                ("-bbbbbb", "deleted"),
                ("-aaaaaa", "complete")
            ]
        );
        assert_eq!(
            out[1].restore_command.as_deref(),
            Some("ccbackup --config /c.yaml restore --as-of 2026-12-04T08:59:59.999Z --job j --backup 20261202T000000Z-bbbbbb")
        );
        assert!(out[0]
            .held
            .problem
            .as_deref()
            .unwrap()
            .starts_with("REWRITTEN at"));
        assert_eq!(
            out[0].recover_as_of.as_deref(),
            Some("2026-12-04T08:59:59.999Z")
        );
        assert_eq!(out[2].recover_as_of, None);
        assert_eq!(out[2].restore_command.as_deref(), Some("plain"));
        let s = state(true, &f[..2]).unwrap();
        assert_eq!(s.tampered_backups, 2);
        assert_eq!(s.recover_as_of.as_deref(), Some("2026-12-04T08:59:59.999Z"));
        assert_eq!(state(true, &[]).unwrap().recover_as_of, None);
        assert_eq!(state(false, &[]), None);
    }

    #[test]
    fn many_rows_never_crowd_out_the_tampered_ones() {
        let rows: Vec<BackupView> = (0..MAX_ROWS)
            .map(|i| row(&format!("2026120{}T{:06}Z-aaaaaa", 5 + i % 4, i)))
            .collect();
        let f: Vec<Tampered> = (0..3)
            .map(|i| found(&format!("2026010{}T000000Z-dddddd", i + 1), Kind::Deleted))
            .collect();
        let out = apply(rows, &f, "/c.yaml", "j");
        assert_eq!(out.len(), MAX_ROWS);
        assert_eq!(
            out.iter()
                .filter(|r| r.held.status == BackupStatus::Deleted)
                .count(),
            3
        );
    }
}
