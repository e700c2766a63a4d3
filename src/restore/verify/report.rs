//! The typed report of `verify`: per artifact, the checks it passed or the
//! check it failed, as plain data. The text output, `verify --json`
//! (docs/schema/verify.json) and the drill's notifications render it.

use serde::Serialize;

/// A check an artifact passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Check {
    /// The stored bytes have the manifest's size and sha256.
    Checksum,
    /// The dump restored into a scratch database (dropped again).
    RestoredIntoScratch,
    /// The scratch database's tables and row counts are the ones the
    /// backup recorded.
    RowCounts { tables: usize },
    /// The archive read to its end, with the file count the manifest says.
    ArchiveRead { files: u64 },
    /// Every `.rrd` file in the archive is a valid RRD file.
    RrdValid { files: u64 },
    /// The artifact decompresses (and decrypts) to its end.
    Decompressed,
}

/// Where checking an artifact stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedAt {
    /// Reading the stored bytes, or their size and sha256.
    Checksum,
    /// An unencrypted artifact of a job that encrypts.
    Downgrade,
    /// An encrypted artifact and no identity to read it.
    Identity,
    /// The job's configuration does not say how to test it.
    Configuration,
    /// A scratch directory could not be made.
    Scratch,
    /// The restore into a scratch database.
    Restore,
    /// The restored tables or row counts differ from the backup's.
    RowCounts,
    /// The archive, or a file in it.
    Archive,
    Decompress,
    /// The checking worker stopped unexpectedly.
    Worker,
    /// The backup's manifest is damaged (its artifacts were not checked).
    Manifest,
}

/// Why a check failed: where, and the error's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub at: FailedAt,
    pub problem: String,
}

impl Failure {
    pub fn new(at: FailedAt, problem: impl Into<String>) -> Failure {
        Failure {
            at,
            problem: problem.into(),
        }
    }
}

/// The verdict on one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verdict {
    Ok { checks: Vec<Check> },
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactCheck {
    pub backup: String,
    pub key: String,
    pub verdict: Verdict,
}

impl ArtifactCheck {
    pub fn problem(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Ok { .. } => None,
            Verdict::Failed(f) => Some(&f.problem),
        }
    }

    pub fn checks(&self) -> &[Check] {
        match &self.verdict {
            Verdict::Ok { checks } => checks,
            Verdict::Failed(_) => &[],
        }
    }

    pub fn failed_at(&self) -> Option<FailedAt> {
        match &self.verdict {
            Verdict::Ok { .. } => None,
            Verdict::Failed(f) => Some(f.at),
        }
    }

    /// The text output's line for this artifact of `job`.
    pub fn line(&self, job: &str) -> String {
        match self.problem() {
            None => format!("ok      {job}/{}/{}", self.backup, self.key),
            Some(p) => format!("FAILED  {job}/{}/{}: {p}", self.backup, self.key),
        }
    }
}

/// What verifying one backup found, artifact by artifact (those not
/// reached before a cancel are not listed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub backup: String,
    pub artifacts: Vec<ArtifactCheck>,
}

impl VerifyReport {
    pub fn failed(&self) -> impl Iterator<Item = &ArtifactCheck> {
        self.artifacts.iter().filter(|a| a.problem().is_some())
    }

    /// None when every artifact passed (and there was one); otherwise what
    /// a drill reports and notifies.
    pub fn failure_summary(&self) -> Option<String> {
        let problems: Vec<String> = self
            .failed()
            .filter_map(|a| a.problem().map(|p| format!("{}: {p}", a.key)))
            .collect();
        if problems.is_empty() && !self.artifacts.is_empty() {
            None
        } else if problems.is_empty() {
            Some("nothing was verified".into())
        } else {
            Some(format!(
                "{} of {} artifacts failed: {}",
                problems.len(),
                self.artifacts.len(),
                problems.join("; ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn art(key: &str, verdict: Verdict) -> ArtifactCheck {
        ArtifactCheck {
            backup: "b1".into(),
            key: key.into(),
            verdict,
        }
    }

    #[test]
    fn lines_and_the_drill_summary_come_from_the_verdicts() {
        let ok = art(
            "etc.tar.zst",
            Verdict::Ok {
                checks: vec![Check::Checksum],
            },
        );
        let bad = art(
            "db/01-a.dump.zst",
            Verdict::Failed(Failure::new(FailedAt::RowCounts, "table public.t: 3 rows")),
        );
        assert_eq!(ok.line("site"), "ok      site/b1/etc.tar.zst");
        assert_eq!(
            bad.line("site"),
            "FAILED  site/b1/db/01-a.dump.zst: table public.t: 3 rows"
        );
        let mut r = VerifyReport {
            backup: "b1".into(),
            artifacts: vec![ok.clone()],
        };
        assert_eq!(r.failure_summary(), None);
        r.artifacts.push(bad);
        assert_eq!(
            r.failure_summary().as_deref(),
            Some("1 of 2 artifacts failed: db/01-a.dump.zst: table public.t: 3 rows")
        );
        r.artifacts.clear();
        assert_eq!(r.failure_summary().as_deref(), Some("nothing was verified"));
        let v = serde_json::to_value(&ok).unwrap();
        assert_eq!(v["verdict"]["outcome"], "ok");
        assert_eq!(v["verdict"]["checks"][0]["check"], "checksum");
    }
}
