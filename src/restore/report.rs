//! The typed report of a restore: per step (one artifact) what was, or in
//! a dry run would be, restored, where, and what was written, as plain
//! data. The text output renders it ([`RestoreReport::lines`]); `restore
//! --json` serializes the steps (docs/schema/restore.json).

use std::path::PathBuf;

use serde::{Serialize, Serializer};

use super::globals::GlobalsReport;
use super::plan::TargetState;
use super::Step;
use crate::progress::human;

/// Paths a dry run names before summarising the rest.
pub const DRY_RUN_LISTED: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    /// A dry run, or a step not reached.
    Planned,
    Restored,
    /// A dry run found it would be refused; `problems` says why.
    Refused,
}

/// Something the operator should know about a step that went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
pub enum Warning {
    /// `--no-owner`: grants and settings naming roles the target lacks
    /// were left out.
    MissingRoles { target: String, roles: Vec<String> },
    /// A backup older than recorded database properties: the database's
    /// own owner, ACL, comment and settings were not restored.
    NoDatabaseProperties { target: String },
    /// The backup recorded another root than where the tree went.
    RecordedRoot {
        root: String,
        artifact: String,
        dest: PathBuf,
    },
}

/// What a tree step wrote, or in a dry run would write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeOutcome {
    pub artifact: String,
    pub dest: PathBuf,
    pub dry_run: bool,
    pub files: u64,
    pub bytes: u64,
    /// Dry run: existing files that would be replaced.
    pub would_replace: Vec<PathBuf>,
    /// Existing files replaced (with `--force`).
    pub replaced: u64,
    /// Dry run: why the destination has no room for it.
    pub no_room: Option<String>,
}

/// One fact of the report, in the order the restore found it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// A dry run found the step would be refused.
    Refused {
        why: String,
    },
    /// Where a database goes and what the target holds.
    DatabasePlan {
        database: String,
        raw_bytes: u64,
        artifact: String,
        host: String,
        port: u16,
        target: String,
        state: TargetState,
        /// `--table`/`--schema`: only the named relations are replaced.
        tables: bool,
    },
    /// The client programs chosen for a database step.
    Client {
        pg_restore: String,
        from: String,
        server: String,
        through_sql: bool,
    },
    TocHeader {
        dry_run: bool,
        entries: usize,
    },
    TocEntry {
        entry: String,
    },
    LeftOut {
        entry: String,
        reason: String,
    },
    Needs {
        object: String,
    },
    Replaces {
        relation: String,
    },
    Restored {
        target: String,
        selected: bool,
    },
    Globals(GlobalsReport),
    Tree(TreeOutcome),
    Warning(Warning),
}

impl Note {
    /// The text output's lines for this note.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Note::Globals(g) => g.lines(),
            other => vec![other.line()],
        }
    }

    fn line(&self) -> String {
        match self {
            Note::Refused { why } => format!("would be refused: {why}"),
            Note::DatabasePlan {
                database,
                raw_bytes,
                artifact,
                host,
                port,
                target,
                state,
                tables,
            } => format!(
                "database `{database}` ({} from {artifact}) -> `{target}` on {host}:{port} ({})",
                human(*raw_bytes),
                state_text(*state, *tables)
            ),
            Note::Client {
                pg_restore,
                from,
                server,
                through_sql,
            } => format!(
                "  with pg_restore {pg_restore} from {from} for the PostgreSQL {server} target{}",
                if *through_sql {
                    ", as SQL through psql (the server predates transaction_timeout)"
                } else {
                    ""
                }
            ),
            Note::TocHeader { dry_run, entries } => format!(
                "{} {entries} TOC entries:",
                if *dry_run { "would apply" } else { "applying" }
            ),
            Note::TocEntry { entry } => format!("  {entry}"),
            Note::LeftOut { entry, reason } => format!("left out: {entry} ({reason})"),
            Note::Needs { object } => format!("needs: {object}"),
            Note::Replaces { relation } => format!("replaces (with --clean): {relation}"),
            Note::Restored { target, selected } if *selected => {
                format!("restored the selected entries into database `{target}`")
            }
            Note::Restored { target, .. } => format!("restored database `{target}`"),
            Note::Globals(g) => g.lines().join("\n"),
            Note::Tree(t) => tree_text(t),
            Note::Warning(w) => warning_text(w),
        }
    }
}

fn state_text(state: TargetState, tables: bool) -> String {
    match state {
        TargetState::Missing => "will be created".to_owned(),
        TargetState::Empty => "exists, empty".to_owned(),
        TargetState::NonEmpty { relations } if !tables => {
            format!("exists with {relations} relations: --clean replaces them")
        }
        TargetState::NonEmpty { relations } => format!(
            "exists with {relations} relations: --clean replaces those the restored tables name"
        ),
    }
}

fn warning_text(w: &Warning) -> String {
    match w {
        Warning::MissingRoles { target, roles } => format!(
            "note: `{target}`: left out grants and settings for role(s) missing on the target: {}",
            roles.join(", ")
        ),
        Warning::NoDatabaseProperties { target } => format!(
            "note: `{target}`: this backup predates recorded database properties; \
             owner, ACL, comment and settings of the database itself were not restored"
        ),
        Warning::RecordedRoot {
            root,
            artifact,
            dest,
        } => format!(
            "note: the backup recorded the root \"{}\"; {artifact} went to the configured path {} instead",
            root.escape_debug(),
            dest.display()
        ),
    }
}

fn tree_text(t: &TreeOutcome) -> String {
    let mut s = format!(
        "{} {} -> {}: {} files, {}",
        if t.dry_run {
            "would restore"
        } else {
            "restored"
        },
        t.artifact,
        t.dest.display(),
        t.files,
        human(t.bytes)
    );
    let n = t.would_replace.len();
    if t.dry_run && n > 0 {
        s.push_str(&format!(
            "; {n} existing file{} would be replaced (needs --force):",
            if n == 1 { "" } else { "s" },
        ));
        for p in t.would_replace.iter().take(DRY_RUN_LISTED) {
            s.push_str(&format!("\n    {}", p.display()));
        }
        if n > DRY_RUN_LISTED {
            s.push_str(&format!("\n    ... and {} more", n - DRY_RUN_LISTED));
        }
    } else if t.replaced > 0 {
        s.push_str(&format!("; replaced {} existing", t.replaced));
    }
    if let Some(why) = t.no_room.as_ref().filter(|_| t.dry_run) {
        s.push_str(&format!("\n  would be refused: {why}"));
    }
    s
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub source: String,
    /// The artifact's key inside the backup.
    pub artifact: String,
    /// `globals`, `database` or `tree`.
    pub kind: &'static str,
    /// The database as backed up (database steps only).
    pub database: Option<String>,
    /// The database restored into, or the directory; none for globals.
    pub target: Option<String>,
    pub outcome: StepOutcome,
    /// Tree steps: files (and their content bytes) written, or in a dry
    /// run that would be written.
    pub files_written: Option<u64>,
    pub bytes_written: Option<u64>,
    /// Tree steps in a dry run: existing files that would be replaced.
    pub would_replace: Option<u64>,
    /// Database steps of `--table`/`--schema`: the TOC entries applied (or
    /// in a dry run that would be), those left out and why.
    pub toc: Option<super::select::Selection>,
    /// What the restore found about this step, in order; `--json` shows
    /// them as the text output's lines (refusals are in `problems`).
    #[serde(serialize_with = "note_lines")]
    pub notes: Vec<Note>,
    pub problems: Vec<String>,
    /// The warnings among `notes`, typed.
    pub warnings: Vec<Warning>,
}

fn note_lines<S: Serializer>(notes: &[Note], s: S) -> Result<S::Ok, S::Error> {
    let lines: Vec<String> = notes
        .iter()
        .filter(|n| !matches!(n, Note::Refused { .. }))
        .flat_map(Note::lines)
        .collect();
    lines.serialize(s)
}

impl StepReport {
    fn planned(step: &Step) -> StepReport {
        let a = step.artifact();
        let (kind, database, target) = match step {
            Step::Globals { .. } => ("globals", None, None),
            Step::Database {
                database, target, ..
            } => ("database", Some(database.clone()), Some(target.clone())),
            Step::Tree { dest, .. } => ("tree", None, Some(dest.display().to_string())),
        };
        StepReport::empty(a.source.clone(), a.key.clone(), kind, database, target)
    }

    /// A planned step of `kind` with nothing done or noted yet.
    fn empty(
        source: String,
        artifact: String,
        kind: &'static str,
        database: Option<String>,
        target: Option<String>,
    ) -> StepReport {
        StepReport {
            source,
            artifact,
            kind,
            database,
            target,
            outcome: StepOutcome::Planned,
            files_written: None,
            bytes_written: None,
            would_replace: None,
            toc: None,
            notes: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// What a restore did, step by step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreReport {
    pub steps: Vec<StepReport>,
    /// The order notes were found in, across steps: (step, note).
    order: Vec<(usize, usize)>,
}

impl RestoreReport {
    pub(super) fn new(steps: &[Step]) -> RestoreReport {
        RestoreReport {
            steps: steps.iter().map(StepReport::planned).collect(),
            order: Vec::new(),
        }
    }

    /// Every note of every step, in the order the restore found them.
    pub fn notes(&self) -> impl Iterator<Item = &Note> {
        self.order
            .iter()
            .filter_map(|&(s, n)| self.steps.get(s)?.notes.get(n))
    }

    /// The text output: the lines of every note, in order.
    pub fn lines(&self) -> Vec<String> {
        self.notes().flat_map(Note::lines).collect()
    }

    /// A fact about step `i`.
    pub(super) fn note(&mut self, i: usize, note: Note) {
        if let Some(s) = self.steps.get_mut(i) {
            if let Note::Warning(w) = &note {
                s.warnings.push(w.clone());
            }
            self.order.push((i, s.notes.len()));
            s.notes.push(note);
        }
    }

    /// A dry run found step `i` would be refused.
    pub(super) fn refuse(&mut self, i: usize, why: String) {
        if let Some(s) = self.steps.get_mut(i) {
            s.outcome = StepOutcome::Refused;
            s.problems.push(why.clone());
        }
        self.note(i, Note::Refused { why });
    }

    /// Step `i` was applied (or, in a dry run, checked).
    pub(super) fn done(&mut self, i: usize, dry_run: bool) {
        if let Some(s) = self.steps.get_mut(i) {
            if !dry_run {
                s.outcome = StepOutcome::Restored;
            }
        }
    }

    pub(super) fn selection(&mut self, i: usize, sel: &super::select::Selection, dry_run: bool) {
        let header = Note::TocHeader {
            dry_run,
            entries: sel.applied.len(),
        };
        let notes = std::iter::once(header)
            .chain(
                sel.applied
                    .iter()
                    .map(|e| Note::TocEntry { entry: e.clone() }),
            )
            .chain(sel.left_out.iter().map(|l| Note::LeftOut {
                entry: l.entry.clone(),
                reason: l.reason.clone(),
            }))
            .chain(sel.needs.iter().map(|n| Note::Needs { object: n.clone() }))
            .chain(sel.replaces.iter().map(|r| Note::Replaces {
                relation: r.clone(),
            }));
        for n in notes {
            self.note(i, n);
        }
        if let Some(s) = self.steps.get_mut(i) {
            s.toc = Some(sel.clone());
        }
    }

    pub(super) fn tree(&mut self, i: usize, t: TreeOutcome) {
        if let Some(s) = self.steps.get_mut(i) {
            s.files_written = Some(t.files);
            s.bytes_written = Some(t.bytes);
            s.would_replace = t.dry_run.then_some(t.would_replace.len() as u64);
        }
        self.note(i, Note::Tree(t));
    }
}

/// Why a backup was left out of a restore or verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A newer backup whose manifest is damaged: the newest good one was
    /// taken instead.
    DamagedNewer,
}

/// A backup left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub job: String,
    pub backup_id: String,
    pub reason: SkipReason,
    pub problem: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason {
            SkipReason::DamagedNewer => write!(
                f,
                "newer backup {}/{} is damaged and was skipped: {}",
                self.job, self.backup_id, self.problem
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dry_run: bool, would_replace: usize) -> TreeOutcome {
        TreeOutcome {
            artifact: "etc.tar.zst".into(),
            dest: "/srv/etc".into(),
            dry_run,
            files: 3,
            bytes: 2048,
            would_replace: (0..would_replace)
                .map(|i| PathBuf::from(format!("/srv/etc/f{i}")))
                .collect(),
            replaced: 0,
            no_room: None,
        }
    }

    #[test]
    fn a_tree_renders_as_the_text_output_always_said() {
        assert_eq!(
            Note::Tree(tree(false, 0)).lines(),
            ["restored etc.tar.zst -> /srv/etc: 3 files, 2.0 KiB"]
        );
        let many = Note::Tree(tree(true, DRY_RUN_LISTED + 2)).lines();
        assert_eq!(many.len(), 1, "one line with the list inside: {many:?}");
        assert!(many[0].starts_with(
            "would restore etc.tar.zst -> /srv/etc: 3 files, 2.0 KiB; 12 existing files would be replaced (needs --force):\n    /srv/etc/f0"
        ));
        assert!(many[0].ends_with("\n    ... and 2 more"), "{many:?}");
    }

    #[test]
    fn notes_keep_their_order_across_steps_and_warnings_are_typed() {
        let step = |kind| StepReport::empty("s".into(), "a".into(), kind, None, None);
        let mut r = RestoreReport {
            steps: vec![step("database"), step("database")],
            order: Vec::new(),
        };
        r.refuse(1, "no room".into());
        r.note(
            0,
            Note::Warning(Warning::NoDatabaseProperties { target: "t".into() }),
        );
        r.note(
            1,
            Note::Restored {
                target: "t".into(),
                selected: true,
            },
        );
        let lines = r.lines();
        assert_eq!(lines[0], "would be refused: no room");
        assert!(lines[1].starts_with("note: `t`: this backup predates"));
        assert_eq!(lines[2], "restored the selected entries into database `t`");
        assert_eq!(r.steps[1].outcome, StepOutcome::Refused);
        assert_eq!(r.steps[1].problems, ["no room"]);
        assert_eq!(
            r.steps[0].warnings,
            [Warning::NoDatabaseProperties { target: "t".into() }]
        );
        // JSON: the refusal is a problem, not a note line.
        let v = serde_json::to_value(&r.steps[1]).unwrap();
        assert_eq!(
            v["notes"],
            serde_json::json!(["restored the selected entries into database `t`"])
        );
        let v = serde_json::to_value(&r.steps[0]).unwrap();
        assert_eq!(v["warnings"][0]["warning"], "no_database_properties");
    }

    #[test]
    fn database_plan_says_what_the_target_holds() {
        let plan = |state, tables| {
            Note::DatabasePlan {
                database: "app".into(),
                raw_bytes: 512,
                artifact: "db/01-app.dump.zst".into(),
                host: "127.0.0.1".into(),
                port: 5432,
                target: "app2".into(),
                state,
                tables,
            }
            .lines()
            .remove(0)
        };
        assert_eq!(
            plan(TargetState::Missing, false),
            "database `app` (512 B from db/01-app.dump.zst) -> `app2` on 127.0.0.1:5432 (will be created)"
        );
        assert!(
            plan(TargetState::NonEmpty { relations: 2 }, true).ends_with(
                "(exists with 2 relations: --clean replaces those the restored tables name)"
            )
        );
    }

    #[test]
    fn a_skipped_backup_says_why() {
        let s = Skipped {
            job: "site".into(),
            backup_id: "b2".into(),
            reason: SkipReason::DamagedNewer,
            problem: "bad json".into(),
        };
        assert_eq!(
            s.to_string(),
            "newer backup site/b2 is damaged and was skipped: bad json"
        );
    }
}
