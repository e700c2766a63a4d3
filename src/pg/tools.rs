//! Finding PostgreSQL client programs that fit a server.
//!
//! `pg_dump` refuses servers newer than itself, and a newer `pg_dump` writes
//! archives an older `pg_restore` cannot read. So ccbackup prefers the client
//! of exactly the server's major version and falls back to the nearest newer
//! one. Candidates: the configured `bin_dir` (alone, when set), else every
//! `/usr/lib/postgresql/<major>/bin` (Debian/PGDG layout) and every `PATH`
//! directory holding the program. Debian's `/usr/bin/pg_dump` is a wrapper
//! that runs one of the `/usr/lib/postgresql` clients, so a `PATH` candidate
//! of the same version as one already found is the same client and is not
//! listed twice.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sys::child::{capture, ChildError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTools {
    /// Directory of the programs; `None` means they are found through `PATH`.
    pub dir: Option<PathBuf>,
    pub major: u32,
    /// Full `--version` version string of the probed program, e.g. `15.19`.
    pub version: String,
}

impl PgTools {
    pub fn program(&self, name: &str) -> PathBuf {
        match &self.dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }

    /// Where the programs are, for logs an operator can follow.
    pub fn dir_display(&self) -> String {
        match &self.dir {
            Some(d) => d.display().to_string(),
            None => "PATH".to_owned(),
        }
    }

    /// Whether `pg_restore` of this version emits `\restrict KEY` for psql
    /// when given `--restrict-key`: 17.6 and 18 onwards (older majors got it
    /// in their 2025-08 minors, but they never need the SQL path).
    pub fn has_restrict_key(&self) -> bool {
        let minor = self
            .version
            .split('.')
            .nth(1)
            .and_then(|m| m.parse::<u32>().ok())
            .unwrap_or(0);
        self.major > 17 || (self.major == 17 && minor >= 6)
    }
}

/// What the programs are wanted for; says which of them must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Dump,
    Restore,
}

impl Purpose {
    /// The programs this purpose runs; the first one is asked its version.
    pub fn programs(self) -> &'static [&'static str] {
        match self {
            Purpose::Dump => &["pg_dump", "pg_dumpall"],
            Purpose::Restore => &["pg_restore", "psql"],
        }
    }

    fn probe_program(self) -> &'static str {
        self.programs()[0]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PgToolsError {
    #[error("no {program} of major version {need} or newer found for a PostgreSQL {server} server ({}); install the PostgreSQL {need} client programs or set `bin_dir`", describe_found(program, found))]
    NoneFits {
        program: &'static str,
        need: u32,
        server: String,
        found: Vec<(String, String)>,
    },
    #[error("cannot run {program}")]
    Probe {
        program: String,
        #[source]
        source: ChildError,
    },
    #[error("`{dir}` has {found} {version} but no {missing}, which {purpose} needs")]
    Incomplete {
        dir: String,
        found: &'static str,
        version: String,
        missing: String,
        purpose: &'static str,
    },
}

fn describe_found(program: &str, found: &[(String, String)]) -> String {
    if found.is_empty() {
        format!("no {program} found at all")
    } else {
        let list: Vec<String> = found
            .iter()
            .map(|(dir, v)| format!("{program} {v} in {dir}"))
            .collect();
        format!("found {}", list.join(", "))
    }
}

/// The major version a `server_version_num` belongs to (10 and later use
/// one number; all 9.x servers are treated as 9, which any pg_dump >= 10
/// can dump).
pub fn server_major(version_num: u32) -> u32 {
    if version_num >= 100_000 {
        version_num / 10_000
    } else {
        9
    }
}

/// Parses `pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)` into
/// (`15.19`, 15).
pub fn parse_version_output(out: &str) -> Option<(String, u32)> {
    let v = out
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let v = v.trim_end_matches(|c: char| !c.is_ascii_digit());
    let major: u32 = v.split('.').next()?.parse().ok()?;
    Some((v.to_owned(), major))
}

/// Pure choice: the exact major if present, else the smallest newer one.
pub fn choose(need: u32, found: &[(Option<PathBuf>, String, u32)]) -> Option<usize> {
    found
        .iter()
        .enumerate()
        .filter(|(_, (_, _, major))| *major >= need)
        .min_by_key(|(_, (_, _, major))| *major)
        .map(|(i, _)| i)
}

/// Pure: drops candidates that are the same client as an earlier one, by
/// canonical program path or by identical full version (Debian's
/// `pg_wrapper` in `/usr/bin` runs one of the `/usr/lib/postgresql`
/// clients, so its version equals that one's).
pub fn dedupe(
    found: Vec<(Option<PathBuf>, String, u32, PathBuf)>,
) -> Vec<(Option<PathBuf>, String, u32)> {
    let mut out: Vec<(Option<PathBuf>, String, u32, PathBuf)> = Vec::new();
    for f in found {
        let same = out.iter().any(|o| o.3 == f.3 || o.1 == f.1);
        if !same {
            out.push(f);
        }
    }
    out.into_iter().map(|(d, v, m, _)| (d, v, m)).collect()
}

/// Asks `dir/program --version`; `None` when the program is not there.
fn probe(dir: &Path, program: &str) -> Result<Option<(String, u32)>, PgToolsError> {
    let path = dir.join(program);
    if !path.is_file() {
        return Ok(None);
    }
    let mut cmd = Command::new(&path);
    crate::sys::child::clean_env(&mut cmd);
    cmd.arg("--version");
    match capture(program, cmd) {
        Ok(out) => Ok(parse_version_output(&out)),
        Err(source) => Err(PgToolsError::Probe {
            program: path.display().to_string(),
            source,
        }),
    }
}

/// Candidate directories when no `bin_dir` is configured.
fn search_dirs(program: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .collect();
        found.sort();
        dirs.extend(found);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path).filter(|d| d.join(program).is_file()));
    }
    dirs
}

/// The programs of `purpose` missing from `dir`.
pub fn missing_programs(dir: &Path, purpose: Purpose) -> Vec<&'static str> {
    purpose
        .programs()
        .iter()
        .copied()
        .filter(|p| !dir.join(p).is_file())
        .collect()
}

/// Every client of `purpose` found (configured `bin_dir` alone, else the
/// search), deduplicated, as (dir, version, major).
pub fn candidates(
    bin_dir: Option<&Path>,
    purpose: Purpose,
) -> Result<Vec<(Option<PathBuf>, String, u32)>, PgToolsError> {
    let program = purpose.probe_program();
    let dirs = match bin_dir {
        Some(d) => vec![d.to_owned()],
        None => search_dirs(program),
    };
    let mut found = Vec::new();
    for d in dirs {
        let Some((version, major)) = probe(&d, program)? else {
            continue;
        };
        // An incomplete search candidate is skipped; a configured one is
        // judged after the version choice, so a too-old client is reported
        // as that first.
        let missing = missing_programs(&d, purpose);
        if !missing.is_empty() && bin_dir.is_none() {
            tracing::debug!(dir = %d.display(), missing = %missing.join(", "), "skipping an incomplete PostgreSQL client directory");
            continue;
        }
        let canonical = std::fs::canonicalize(d.join(program)).unwrap_or_else(|_| d.join(program));
        found.push((Some(d), version, major, canonical));
    }
    Ok(dedupe(found))
}

/// Finds client programs for `purpose` able to work with a server of
/// `need` major version (`server_version` is for messages).
pub fn find_for(
    need: u32,
    server_version: &str,
    bin_dir: Option<&Path>,
    purpose: Purpose,
) -> Result<PgTools, PgToolsError> {
    let mut found = candidates(bin_dir, purpose)?;
    match choose(need, &found) {
        Some(i) => {
            let (dir, version, major) = found.swap_remove(i);
            if let Some(d) = &dir {
                let missing = missing_programs(d, purpose);
                if !missing.is_empty() {
                    return Err(PgToolsError::Incomplete {
                        dir: d.display().to_string(),
                        found: purpose.probe_program(),
                        version,
                        missing: missing.join(", "),
                        purpose: match purpose {
                            Purpose::Dump => "a backup",
                            Purpose::Restore => "a restore",
                        },
                    });
                }
            }
            Ok(PgTools {
                dir,
                major,
                version,
            })
        }
        None => Err(PgToolsError::NoneFits {
            program: purpose.probe_program(),
            need,
            server: server_version.to_owned(),
            found: found
                .into_iter()
                .map(|(d, v, _)| {
                    (
                        d.map(|d| d.display().to_string())
                            .unwrap_or_else(|| "PATH".to_owned()),
                        v,
                    )
                })
                .collect(),
        }),
    }
}

/// Finds `pg_dump`/`pg_dumpall` able to dump a server of `server_version_num`.
pub fn find(
    server_version_num: u32,
    server_version: &str,
    bin_dir: Option<&Path>,
) -> Result<PgTools, PgToolsError> {
    find_for(
        server_major(server_version_num),
        server_version,
        bin_dir,
        Purpose::Dump,
    )
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_lines() {
        assert_eq!(
            parse_version_output("pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)\n"),
            Some(("15.19".to_owned(), 15))
        );
        assert_eq!(
            parse_version_output("pg_dump (PostgreSQL) 16.4\n"),
            Some(("16.4".to_owned(), 16))
        );
        assert_eq!(parse_version_output("garbage"), None);
    }

    #[test]
    fn server_major_from_version_num() {
        assert_eq!(server_major(160004), 16);
        assert_eq!(server_major(150019), 15);
        assert_eq!(server_major(90624), 9);
    }

    #[test]
    fn prefers_exact_major_then_nearest_newer() {
        let f = |m: u32| (Some(PathBuf::from(format!("/x/{m}"))), format!("{m}.1"), m);
        let found = vec![f(17), f(15), f(16)];
        assert_eq!(choose(16, &found), Some(2));
        assert_eq!(choose(15, &found), Some(1));
        assert_eq!(choose(14, &found), Some(1));
        assert_eq!(choose(18, &found), None);
    }

    #[test]
    fn debian_wrapper_and_real_client_are_one_candidate() {
        let c = |dir: &str, v: &str, canon: &str| {
            (
                Some(PathBuf::from(dir)),
                v.to_owned(),
                parse_version_output(v).map(|x| x.1).unwrap_or(0),
                PathBuf::from(canon),
            )
        };
        let found = dedupe(vec![
            c(
                "/usr/lib/postgresql/15/bin",
                "15.20",
                "/usr/lib/postgresql/15/bin/pg_dump",
            ),
            c(
                "/usr/bin",
                "15.20",
                "/usr/share/postgresql-common/pg_wrapper",
            ),
            c("/opt/pg18/bin", "18.6", "/opt/pg18/bin/pg_dump"),
            c("/opt/link", "18.6x", "/opt/pg18/bin/pg_dump"),
        ]);
        let dirs: Vec<String> = found
            .iter()
            .map(|f| f.0.as_ref().unwrap().display().to_string())
            .collect();
        assert_eq!(dirs, ["/usr/lib/postgresql/15/bin", "/opt/pg18/bin"]);
    }

    #[test]
    fn restrict_key_from_17_6() {
        let t = |v: &str| PgTools {
            dir: None,
            major: parse_version_output(v).unwrap().1,
            version: v.to_owned(),
        };
        assert!(t("18.0").has_restrict_key());
        assert!(t("17.6").has_restrict_key());
        assert!(!t("17.5").has_restrict_key());
        assert!(!t("17").has_restrict_key());
    }

    #[test]
    fn none_fits_names_both_versions() {
        let err = PgToolsError::NoneFits {
            program: "pg_dump",
            need: 16,
            server: "16.4".into(),
            found: vec![("/usr/lib/postgresql/15/bin".into(), "15.19".into())],
        };
        let msg = err.to_string();
        assert!(msg.contains("16.4") && msg.contains("15.19"), "{msg}");
    }
}
