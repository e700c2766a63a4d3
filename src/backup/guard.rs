//! The guard against empty and shrunken backups.
//!
//! A source that is suddenly empty (an unmounted volume, a mistyped path, a
//! truncated table) still backs up "successfully", and retention would then
//! delete the last good copy. So every new backup is compared, source by
//! source, with the job's newest complete backup that is not itself
//! suspicious (its *baseline*), and with absolute floors:
//!
//! * files of a tree source (`TreeInfo::files`), rows per database (sum of
//!   `PostgresInfo::tables`, when both backups counted rows) and raw bytes
//!   per source: losing more than `max_shrink` of the baseline's value is
//!   suspicious (a drop to zero always is, unless `max_shrink` is 100%);
//! * fewer files than `min_files` or fewer raw bytes than `min_bytes` is
//!   suspicious, with or without a baseline (the first backup of a job).
//!
//! [`compare`] is pure. The backup code records what it returns in the
//! manifest ([`crate::repo::manifest::GuardMark`]); the runner never prunes after
//! a suspicious backup.

use std::collections::BTreeMap;
use std::fmt;

pub use crate::options::{GuardConfig, Thresholds, DEFAULT_MAX_SHRINK};
use crate::repo::manifest::{Artifact, ArtifactDetail, Manifest};

/// Which limit a finding broke.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Lost more than this fraction of the baseline's value.
    Shrink { max: f64 },
    /// Below an absolute floor (`min_files` or `min_bytes`).
    Floor { key: &'static str, min: u64 },
}

/// One reason a backup is suspicious.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub source: String,
    /// What was measured: `files`, `raw bytes`, `rows of database "x"`.
    pub what: String,
    /// The baseline's value (absent for a floor without a baseline value).
    pub before: Option<u64>,
    pub after: u64,
    pub rule: Rule,
    /// `job/id` of the baseline the loss is measured against, so an
    /// operator can tell a real shrink from a baseline planted in the store.
    pub baseline: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source `{}`: {} ", self.source, self.what)?;
        match (&self.rule, self.before) {
            (Rule::Shrink { max }, Some(before)) => {
                let lost = loss(before, self.after) * 100.0;
                if self.after == 0 {
                    write!(f, "dropped from {before} to 0")?;
                } else {
                    write!(f, "dropped from {before} to {} (-{lost:.0}%)", self.after)?;
                }
                write!(f, ", more than max_shrink {}", percent(*max))?;
                match &self.baseline {
                    Some(b) => write!(f, " (compared with backup {b})"),
                    None => Ok(()),
                }
            }
            (Rule::Shrink { max }, None) => {
                write!(
                    f,
                    "is {}, more than max_shrink {} lost",
                    self.after,
                    percent(*max)
                )
            }
            (Rule::Floor { key, min }, _) => {
                write!(f, "is {}, below {key} {min}", self.after)
            }
        }
    }
}

fn percent(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

/// Fraction of `before` that is gone in `after` (0 when it grew).
fn loss(before: u64, after: u64) -> f64 {
    if before == 0 || after >= before {
        0.0
    } else {
        (before - after) as f64 / before as f64
    }
}

/// The backup new ones are compared with: the newest complete backup of
/// `job` that is not marked suspicious (an accepted shrink counts as good).
/// `complete` is oldest first, as the catalog lists it. The catalog counts
/// only backups it can trust: with a signing key only signed ones, and
/// never one dated in the future or missing artifacts, so a forgery of
/// that kind cannot become the baseline.
pub fn baseline<'a>(complete: &'a [Manifest], job: &str) -> Option<&'a Manifest> {
    complete
        .iter()
        .rev()
        .find(|m| m.job == job && !m.guard.is_suspicious())
}

/// What one source measured in one backup.
#[derive(Debug, Default, PartialEq)]
struct Measures {
    /// Files of its trees, when it has any.
    files: Option<u64>,
    raw_bytes: u64,
    /// Rows per database, for dumps that counted rows.
    rows: BTreeMap<String, u64>,
    /// Every database it dumped, counted or not.
    databases: Vec<String>,
}

fn measure<'a>(artifacts: impl Iterator<Item = &'a Artifact>) -> Measures {
    let mut m = Measures::default();
    for a in artifacts {
        m.raw_bytes = m.raw_bytes.saturating_add(a.raw_bytes);
        let pg = match &a.detail {
            Some(ArtifactDetail::Tree(t)) => {
                m.files = Some(m.files.unwrap_or(0).saturating_add(t.files));
                continue;
            }
            Some(ArtifactDetail::Postgres(pg)) => pg,
            None => continue,
        };
        let Some(db) = &pg.database else { continue };
        m.databases.push(db.clone());
        if let Some(tables) = &pg.tables {
            // A negative count can only come from a forged manifest.
            let rows = tables.iter().map(|t| t.rows.max(0) as u64).sum::<u64>();
            *m.rows.entry(db.clone()).or_default() += rows;
        }
    }
    m
}

fn by_source(artifacts: &[Artifact]) -> BTreeMap<&str, Measures> {
    let mut names: Vec<&str> = Vec::new();
    for a in artifacts {
        if !names.contains(&a.source.as_str()) {
            names.push(&a.source);
        }
    }
    names
        .into_iter()
        .map(|n| (n, measure(artifacts.iter().filter(|a| a.source == n))))
        .collect()
}

/// Pure: why the backup made of `artifacts` is suspicious, if it is.
/// `previous` is the job's [`baseline`]; without one (the first backup)
/// only the absolute floors apply. Sources absent from the baseline are
/// new and also checked against the floors only.
pub fn compare(
    previous: Option<&Manifest>,
    artifacts: &[Artifact],
    guard: &GuardConfig,
) -> Vec<Finding> {
    let before = previous
        .map(|p| by_source(&p.artifacts))
        .unwrap_or_default();
    let mut out = Vec::new();
    for (source, now) in by_source(artifacts) {
        let t = guard.for_source(source);
        floors(source, &now, &t, &mut out);
        if let Some(old) = before.get(source) {
            let from = previous.map(|p| format!("{}/{}", p.job, p.id));
            shrinks(source, old, &now, &t, from.as_deref(), &mut out);
        }
    }
    out
}

fn floors(source: &str, now: &Measures, t: &Thresholds, out: &mut Vec<Finding>) {
    let mut floor = |what: &str, after: u64, key: &'static str, min: u64| {
        if after < min {
            out.push(Finding {
                source: source.to_owned(),
                what: what.to_owned(),
                before: None,
                after,
                rule: Rule::Floor { key, min },
                baseline: None,
            });
        }
    };
    if let Some(files) = now.files {
        floor("files", files, "min_files", t.min_files);
    }
    floor("raw bytes", now.raw_bytes, "min_bytes", t.min_bytes);
}

fn shrinks(
    source: &str,
    old: &Measures,
    now: &Measures,
    t: &Thresholds,
    baseline: Option<&str>,
    out: &mut Vec<Finding>,
) {
    let mut shrink = |what: String, before: u64, after: u64| {
        if loss(before, after) > t.max_shrink {
            out.push(Finding {
                source: source.to_owned(),
                what,
                before: Some(before),
                after,
                rule: Rule::Shrink { max: t.max_shrink },
                baseline: baseline.map(str::to_owned),
            });
        }
    };
    if let (Some(before), Some(after)) = (old.files, now.files) {
        shrink("files".to_owned(), before, after);
    }
    for (db, &before) in &old.rows {
        let after = match now.rows.get(db) {
            Some(&rows) => rows,
            // Dumped without counting rows: nothing to compare.
            None if now.databases.contains(db) => continue,
            None => 0,
        };
        shrink(format!("rows of database {db:?}"), before, after);
    }
    shrink("raw bytes".to_owned(), old.raw_bytes, now.raw_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::manifest::{
        ArtifactKind, Compression, GuardMark, PostgresInfo, TableRows, TreeInfo, FORMAT,
    };
    use chrono::Utc;

    fn tree(source: &str, files: u64, raw: u64) -> Artifact {
        Artifact {
            key: format!("{source}.tar.zst"),
            source: source.into(),
            kind: ArtifactKind::FilesTar,
            raw_bytes: raw,
            stored_bytes: raw / 2,
            sha256: "ab".repeat(32),
            compression: Compression {
                algorithm: "zstd".into(),
                level: 3,
            },
            detail: Some(ArtifactDetail::Tree(TreeInfo {
                root: "/x".into(),
                files,
                ..TreeInfo::default()
            })),
            encryption: None,
        }
    }

    fn dump(source: &str, db: &str, rows: Option<&[i64]>, raw: u64) -> Artifact {
        let mut a = tree(source, 0, raw);
        a.key = format!("{source}/{db}.dump.zst");
        a.kind = ArtifactKind::PgDump;
        a.detail = Some(ArtifactDetail::Postgres(PostgresInfo {
            database: Some(db.into()),
            server_version: "15".into(),
            server_version_num: 150000,
            pg_dump_version: "15".into(),
            tables: rows.map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(i, &rows)| TableRows {
                        schema: "public".into(),
                        table: format!("t{i}"),
                        rows,
                    })
                    .collect()
            }),
            database_properties: None,
        }));
        a
    }

    fn manifest(id: &str, artifacts: Vec<Artifact>) -> Manifest {
        Manifest {
            format: FORMAT,
            job: "j".into(),
            id: id.into(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            tool_version: "0".into(),
            host: "h".into(),
            artifacts,
            guard: GuardMark::default(),
        }
    }

    fn whats(f: &[Finding]) -> Vec<(&str, &str)> {
        f.iter()
            .map(|f| (f.source.as_str(), f.what.as_str()))
            .collect()
    }

    #[test]
    fn an_unchanged_or_growing_backup_is_normal() {
        let prev = manifest("a", vec![tree("etc", 10, 10_000)]);
        let g = GuardConfig::default();
        assert!(compare(Some(&prev), &[tree("etc", 10, 10_000)], &g).is_empty());
        assert!(compare(Some(&prev), &[tree("etc", 50, 90_000)], &g).is_empty());
        // Half gone is still within the default 50%.
        assert!(compare(Some(&prev), &[tree("etc", 5, 5_000)], &g).is_empty());
    }

    #[test]
    fn an_emptied_tree_is_suspicious_by_default() {
        let prev = manifest("a", vec![tree("rrd", 120, 8_000_000)]);
        let f = compare(
            Some(&prev),
            &[tree("rrd", 0, 10_240)],
            &GuardConfig::default(),
        );
        assert_eq!(whats(&f), [("rrd", "files"), ("rrd", "raw bytes")]);
        assert_eq!((f[0].before, f[0].after), (Some(120), 0));
        assert_eq!(
            f[0].to_string(),
            "source `rrd`: files dropped from 120 to 0, more than max_shrink 50% \
             (compared with backup j/a)"
        );
        assert!(f[1].to_string().contains("(-100%)"), "{}", f[1]);
    }

    #[test]
    fn losing_more_than_half_is_suspicious_and_max_shrink_is_honoured() {
        let prev = manifest("a", vec![tree("etc", 100, 1000)]);
        let f = compare(
            Some(&prev),
            &[tree("etc", 40, 1000)],
            &GuardConfig::default(),
        );
        assert_eq!(whats(&f), [("etc", "files")]);
        let strict = GuardConfig {
            job: Thresholds {
                max_shrink: 0.1,
                ..Thresholds::default()
            },
            ..GuardConfig::default()
        };
        assert!(compare(Some(&prev), &[tree("etc", 90, 1000)], &strict).is_empty());
        assert_eq!(
            whats(&compare(Some(&prev), &[tree("etc", 89, 1000)], &strict)),
            [("etc", "files")]
        );
        let off = GuardConfig {
            job: Thresholds {
                max_shrink: 1.0,
                ..Thresholds::default()
            },
            ..GuardConfig::default()
        };
        assert!(compare(Some(&prev), &[tree("etc", 0, 0)], &off).is_empty());
    }

    #[test]
    fn the_first_backup_only_meets_the_floors() {
        let g = GuardConfig::default();
        assert!(compare(None, &[tree("etc", 0, 0)], &g).is_empty());
        let floors = GuardConfig {
            job: Thresholds {
                min_files: 3,
                min_bytes: 100,
                ..Thresholds::default()
            },
            ..GuardConfig::default()
        };
        let f = compare(None, &[tree("etc", 2, 50)], &floors);
        assert_eq!(whats(&f), [("etc", "files"), ("etc", "raw bytes")]);
        assert_eq!(
            f[0].to_string(),
            "source `etc`: files is 2, below min_files 3"
        );
        assert!(compare(None, &[tree("etc", 3, 100)], &floors).is_empty());
    }

    #[test]
    fn per_source_thresholds_override_the_job() {
        let mut g = GuardConfig::default();
        g.sources.insert(
            "logs".into(),
            Thresholds {
                max_shrink: 1.0,
                ..Thresholds::default()
            },
        );
        let prev = manifest("a", vec![tree("etc", 10, 100), tree("logs", 10, 100)]);
        let f = compare(Some(&prev), &[tree("etc", 0, 0), tree("logs", 0, 0)], &g);
        assert!(f.iter().all(|f| f.source == "etc"), "{f:?}");
    }

    #[test]
    fn rows_are_compared_per_database() {
        let prev = manifest(
            "a",
            vec![
                dump("db", "app", Some(&[500, 37]), 100_000),
                dump("db", "other", Some(&[10]), 1000),
            ],
        );
        let g = GuardConfig::default();
        let same = [
            dump("db", "app", Some(&[500, 37]), 100_000),
            dump("db", "other", Some(&[10]), 1000),
        ];
        assert!(compare(Some(&prev), &same, &g).is_empty());
        let truncated = [
            dump("db", "app", Some(&[0, 37]), 90_000),
            dump("db", "other", Some(&[10]), 1000),
        ];
        let f = compare(Some(&prev), &truncated, &g);
        assert_eq!(whats(&f), [("db", "rows of database \"app\"")]);
        assert_eq!((f[0].before, f[0].after), (Some(537), 37));
        // A database that is gone lost all its rows.
        let gone = [dump("db", "app", Some(&[500, 37]), 100_000)];
        let f = compare(Some(&prev), &gone, &g);
        assert_eq!(whats(&f), [("db", "rows of database \"other\"")]);
        // Without row counts in the new backup there is nothing to compare.
        let uncounted = [
            dump("db", "app", None, 100_000),
            dump("db", "other", None, 1000),
        ];
        assert!(compare(Some(&prev), &uncounted, &g).is_empty());
    }

    #[test]
    fn new_sources_and_forged_negative_counts_do_not_break_the_comparison() {
        let prev = manifest("a", vec![dump("db", "app", Some(&[-5]), 10)]);
        let now = [dump("db", "app", Some(&[0]), 10), tree("new", 0, 0)];
        assert!(compare(Some(&prev), &now, &GuardConfig::default()).is_empty());
    }

    #[test]
    fn the_baseline_skips_suspicious_backups_but_not_accepted_ones() {
        let good = manifest("a", vec![tree("etc", 10, 100)]);
        let mut bad = manifest("b", vec![tree("etc", 0, 0)]);
        bad.guard.suspicious = vec!["empty".into()];
        let mut other = manifest("c", vec![]);
        other.job = "k".into();
        let list = vec![good.clone(), bad.clone(), other];
        assert_eq!(baseline(&list, "j").map(|m| m.id.as_str()), Some("a"));
        let mut accepted = bad;
        accepted.guard.suspicious.clear();
        accepted.guard.accepted = vec!["empty".into()];
        let list = vec![good, accepted];
        assert_eq!(baseline(&list, "j").map(|m| m.id.as_str()), Some("b"));
        assert!(baseline(&[], "j").is_none());
    }
}
