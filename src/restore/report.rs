//! The typed report of a restore: per step (one artifact) what was, or in
//! a dry run would be, restored, where, and what was written. The text
//! output prints its lines; `restore --json` prints the steps
//! (docs/schema/restore.json).

use serde::Serialize;

use super::Step;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    /// A dry run, or a step not reached.
    Planned,
    Restored,
    /// A dry run found it would be refused; `problems` says why.
    Refused,
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
    /// The text output's lines about this step.
    pub notes: Vec<String>,
    pub problems: Vec<String>,
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
        StepReport {
            source: a.source.clone(),
            artifact: a.key.clone(),
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
        }
    }
}

/// What a restore did, step by step, and the lines saying so in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreReport {
    pub lines: Vec<String>,
    pub steps: Vec<StepReport>,
}

impl RestoreReport {
    pub(super) fn new(steps: &[Step]) -> RestoreReport {
        RestoreReport {
            lines: Vec::new(),
            steps: steps.iter().map(StepReport::planned).collect(),
        }
    }

    /// A line of the text output about step `i`.
    pub(super) fn note(&mut self, i: usize, line: String) {
        if let Some(s) = self.steps.get_mut(i) {
            s.notes.push(line.clone());
        }
        self.lines.push(line);
    }

    /// A dry run found step `i` would be refused.
    pub(super) fn refuse(&mut self, i: usize, why: String) {
        if let Some(s) = self.steps.get_mut(i) {
            s.outcome = StepOutcome::Refused;
            s.problems.push(why.clone());
        }
        self.lines.push(format!("would be refused: {why}"));
    }

    /// Step `i` was applied (or, in a dry run, checked).
    pub(super) fn done(&mut self, i: usize, dry_run: bool) {
        if let Some(s) = self.steps.get_mut(i) {
            if !dry_run {
                s.outcome = StepOutcome::Restored;
            }
        }
    }

    pub(super) fn selection(&mut self, i: usize, sel: &super::select::Selection) {
        if let Some(s) = self.steps.get_mut(i) {
            s.toc = Some(sel.clone());
        }
    }

    pub(super) fn tree(&mut self, i: usize, r: &super::extract::ExtractReport, dry_run: bool) {
        if let Some(s) = self.steps.get_mut(i) {
            s.files_written = Some(r.written);
            s.bytes_written = Some(r.bytes);
            s.would_replace = dry_run.then_some(r.would_replace.len() as u64);
        }
    }
}
