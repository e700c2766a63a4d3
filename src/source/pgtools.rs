//! Finding PostgreSQL client programs that fit a server.
//!
//! `pg_dump` refuses servers newer than itself, and a newer `pg_dump` writes
//! archives an older `pg_restore` cannot read. So ccbackup prefers the client
//! of exactly the server's major version and falls back to the nearest newer
//! one. Candidates: the configured `bin_dir` (alone, when set), else every
//! `/usr/lib/postgresql/<major>/bin` (Debian/PGDG layout) and `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::child::{capture, ChildError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTools {
    /// Directory of the programs; `None` means they are found through `PATH`.
    pub dir: Option<PathBuf>,
    pub major: u32,
    /// Full `pg_dump --version` version string, e.g. `15.19`.
    pub version: String,
}

impl PgTools {
    pub fn program(&self, name: &str) -> PathBuf {
        match &self.dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PgToolsError {
    #[error("no pg_dump of major version {need} or newer found for a PostgreSQL {server} server ({}); install the PostgreSQL {need} client programs or set `bin_dir`", describe_found(found))]
    NoneFits {
        need: u32,
        server: String,
        found: Vec<(String, String)>,
    },
    #[error("cannot run {program}: {source}")]
    Probe {
        program: String,
        #[source]
        source: ChildError,
    },
}

fn describe_found(found: &[(String, String)]) -> String {
    if found.is_empty() {
        "no pg_dump found at all".to_owned()
    } else {
        let list: Vec<String> = found
            .iter()
            .map(|(dir, v)| format!("pg_dump {v} in {dir}"))
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

fn probe(dir: Option<&Path>) -> Result<Option<(String, u32)>, PgToolsError> {
    let program = match dir {
        Some(d) => d.join("pg_dump"),
        None => PathBuf::from("pg_dump"),
    };
    if dir.is_some() && !program.is_file() {
        return Ok(None);
    }
    let mut cmd = Command::new(&program);
    super::child::clean_env(&mut cmd);
    cmd.arg("--version");
    match capture("pg_dump", cmd) {
        Ok(out) => Ok(parse_version_output(&out)),
        // pg_dump not on PATH is not an error: other candidates may fit.
        Err(ChildError::Spawn { .. }) if dir.is_none() => Ok(None),
        Err(source) => Err(PgToolsError::Probe {
            program: program.display().to_string(),
            source,
        }),
    }
}

/// Finds client programs able to dump a server of `server_version_num`.
pub fn find(
    server_version_num: u32,
    server_version: &str,
    bin_dir: Option<&Path>,
) -> Result<PgTools, PgToolsError> {
    let need = server_major(server_version_num);
    let mut dirs: Vec<Option<PathBuf>> = Vec::new();
    match bin_dir {
        Some(d) => dirs.push(Some(d.to_owned())),
        None => {
            if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
                let mut found: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.path().join("bin"))
                    .collect();
                found.sort();
                dirs.extend(found.into_iter().map(Some));
            }
            dirs.push(None);
        }
    }
    let mut found = Vec::new();
    for d in dirs {
        if let Some((version, major)) = probe(d.as_deref())? {
            found.push((d, version, major));
        }
    }
    match choose(need, &found) {
        Some(i) => {
            let (dir, version, major) = found.swap_remove(i);
            Ok(PgTools {
                dir,
                major,
                version,
            })
        }
        None => Err(PgToolsError::NoneFits {
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
    fn none_fits_names_both_versions() {
        let err = PgToolsError::NoneFits {
            need: 16,
            server: "16.4".into(),
            found: vec![("/usr/lib/postgresql/15/bin".into(), "15.19".into())],
        };
        let msg = err.to_string();
        assert!(msg.contains("16.4") && msg.contains("15.19"), "{msg}");
    }
}
