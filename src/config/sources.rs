//! The sources a job backs up (PostgreSQL, RRD trees, plain directories):
//! their validated configuration and the checks that build it from YAML.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::check::{check_name, tcp_port, Problems};
use super::raw::{self, Databases};
use super::*;
use crate::options::{OnInvalid, RrdOptions};
use crate::secret::{read_secret_file, Secret};

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    Postgres(PostgresConfig),
    Rrd(RrdConfig),
    Files(FilesConfig),
}

impl SourceKind {
    pub fn label(&self) -> &'static str {
        match self {
            SourceKind::Postgres(_) => "postgres",
            SourceKind::Rrd(_) => "rrd",
            SourceKind::Files(_) => "files",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    /// Why `password_file` could not be read (no secret in it): connecting
    /// fails with this instead of trying without a password.
    pub password_unreadable: Option<String>,
    /// Where the password comes from, when from a file (`doctor` checks
    /// that it is readable and private).
    pub password_file: Option<PathBuf>,
    pub databases: DatabaseSelection,
    /// Database used to connect for discovery (`SHOW server_version_num`,
    /// listing databases).
    pub maintenance_db: String,
    /// A directory holding `pg_dump`, `pg_dumpall`, `pg_restore`; when unset
    /// ccbackup searches `/usr/lib/postgresql/*/bin` and `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// Also store `pg_dumpall --globals-only` (roles, tablespaces).
    pub globals: bool,
    /// Count every table's rows in the dump stream as it passes (no
    /// server queries), so `verify --restore-test` and the shrink guard
    /// have exact figures.
    pub row_counts: bool,
    /// How many databases are dumped at once (`postgres.parallel`), each
    /// through a pipeline of its own.
    pub parallel: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSelection {
    All,
    Named(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct RrdConfig {
    pub path: PathBuf,
    pub options: RrdOptions,
}

#[derive(Debug, Clone)]
pub struct FilesConfig {
    pub path: PathBuf,
}

pub(super) fn source(
    s: &Spanned<raw::RawSource>,
    key: &str,
    p: &mut Problems,
) -> Option<SourceConfig> {
    let raw = &s.value;
    check_name(&raw.name, &format!("{key}.name"), p);
    let kinds = [
        raw.postgres.is_some(),
        raw.rrd.is_some(),
        raw.files.is_some(),
    ];
    let count = kinds.iter().filter(|k| **k).count();
    if count != 1 {
        p.at(
            &s.referenced,
            key,
            format!("a source needs exactly one of `postgres`, `rrd` or `files` (found {count})"),
        );
        return None;
    }
    let kind = if let Some(pg) = &raw.postgres {
        SourceKind::Postgres(postgres(&pg.value, &format!("{key}.postgres"), p)?)
    } else if let Some(r) = &raw.rrd {
        SourceKind::Rrd(rrd(&r.value, &format!("{key}.rrd"), p)?)
    } else if let Some(f) = &raw.files {
        SourceKind::Files(FilesConfig {
            path: source_dir(&f.value.path, &format!("{key}.files.path"), p)?,
        })
    } else {
        return None;
    };
    Some(SourceConfig {
        name: raw.name.value.clone(),
        kind,
    })
}

/// An absolute path. Whether it is a directory is a warning only: the
/// source is read (and fails, naming it) at backup time, and a restore
/// creates it.
fn source_dir(path: &Spanned<String>, key: &str, p: &mut Problems) -> Option<PathBuf> {
    let pb = PathBuf::from(&path.value);
    if !pb.is_absolute() {
        p.at(
            &path.referenced,
            key,
            format!("`{}` must be an absolute path", path.value),
        );
        return None;
    }
    if !pb.is_dir() {
        let why = if pb.exists() {
            "is not a directory"
        } else {
            "does not exist (yet): backups of this source fail until it does; restore creates it"
        };
        p.warn(&path.referenced, key, format!("`{}` {why}", path.value));
    }
    Some(pb)
}

fn rrd(r: &raw::RawRrd, key: &str, p: &mut Problems) -> Option<RrdConfig> {
    let path = source_dir(&r.path, &format!("{key}.path"), p);
    let mut options = RrdOptions::default();
    if let Some(t) = &r.lock_timeout_ms {
        if (1..=600_000).contains(&t.value) {
            options.lock_timeout = Duration::from_millis(t.value as u64);
        } else {
            p.at(
                &t.referenced,
                format!("{key}.lock_timeout_ms"),
                "must be between 1 and 600000",
            );
        }
    }
    if let Some(o) = &r.on_invalid {
        match o.value.as_str() {
            "fail" => options.on_invalid = OnInvalid::Fail,
            "include" => options.on_invalid = OnInvalid::Include,
            other => p.at(
                &o.referenced,
                format!("{key}.on_invalid"),
                format!("`{other}` is not one of: fail, include"),
            ),
        }
    }
    Some(RrdConfig {
        path: path?,
        options,
    })
}

/// `databases`: `all` or a list of unique names; clears `ok` on a problem.
fn databases(
    pg: &raw::RawPostgres,
    key: &str,
    p: &mut Problems,
    ok: &mut bool,
) -> DatabaseSelection {
    match &pg.databases {
        None => DatabaseSelection::All,
        Some(d) => match &d.value {
            Databases::Keyword(k) if k == "all" => DatabaseSelection::All,
            Databases::Keyword(k) => {
                p.at(
                    &d.referenced,
                    format!("{key}.databases"),
                    format!("`{k}` is neither `all` nor a list of names"),
                );
                *ok = false;
                DatabaseSelection::All
            }
            Databases::Names(names) => {
                let mut seen = HashSet::new();
                for n in names {
                    if n.value.is_empty() || !seen.insert(n.value.clone()) {
                        p.at(
                            &n.referenced,
                            format!("{key}.databases"),
                            format!("empty or duplicate database name `{}`", n.value),
                        );
                        *ok = false;
                    }
                }
                if names.is_empty() {
                    p.at(
                        &d.referenced,
                        format!("{key}.databases"),
                        "empty list: name at least one database or use `all`",
                    );
                    *ok = false;
                }
                DatabaseSelection::Named(names.iter().map(|n| n.value.clone()).collect())
            }
        },
    }
}

/// `bin_dir`: an absolute directory holding pg_dump; clears `ok` on a
/// problem.
fn bin_dir(pg: &raw::RawPostgres, key: &str, p: &mut Problems, ok: &mut bool) -> Option<PathBuf> {
    match &pg.bin_dir {
        None => None,
        Some(b) => {
            let pb = PathBuf::from(&b.value);
            if !pb.is_absolute() {
                // Relative to what? The daemon's working directory is not a
                // place an operator chose to hold the programs it runs.
                p.at(
                    &b.referenced,
                    format!("{key}.bin_dir"),
                    format!("`{}` is a relative path; bin_dir must be absolute", b.value),
                );
                *ok = false;
            } else if !pb.join("pg_dump").is_file() {
                p.at(
                    &b.referenced,
                    format!("{key}.bin_dir"),
                    format!("`{}` does not contain pg_dump", b.value),
                );
                *ok = false;
            }
            Some(pb)
        }
    }
}

fn postgres(pg: &raw::RawPostgres, key: &str, p: &mut Problems) -> Option<PostgresConfig> {
    let mut ok = true;
    let port = match &pg.port {
        None => 5432,
        Some(v) => tcp_port(v, key, p).unwrap_or_else(|| {
            ok = false;
            0
        }),
    };
    let mut password_unreadable = None;
    let password = match (&pg.password_file, &pg.password_env) {
        (Some(f), Some(_)) => {
            p.at(
                &f.referenced,
                format!("{key}.password_file"),
                "set either password_file or password_env, not both",
            );
            ok = false;
            None
        }
        (Some(f), None) => match read_secret_file(Path::new(&f.value)) {
            Ok(s) => Some(s),
            Err(e) => {
                let why = format!("cannot read `{}`: {e}", f.value);
                p.defer(&f.referenced, format!("{key}.password_file"), why.clone());
                password_unreadable = Some(why);
                None
            }
        },
        (None, Some(v)) => match std::env::var(&v.value) {
            Ok(s) => Some(Secret::new(s)),
            Err(_) => {
                p.at(
                    &v.referenced,
                    format!("{key}.password_env"),
                    format!("environment variable `{}` is not set", v.value),
                );
                ok = false;
                None
            }
        },
        (None, None) => None,
    };
    let databases = databases(pg, key, p, &mut ok);
    let bin_dir = bin_dir(pg, key, p, &mut ok);
    let parallel = match &pg.parallel {
        None => default_parallel_dumps(),
        Some(n) if (1..=MAX_PARALLEL_DUMPS as i64).contains(&n.value) => n.value as usize,
        Some(n) => {
            p.at(
                &n.referenced,
                format!("{key}.parallel"),
                format!("must be between 1 and {MAX_PARALLEL_DUMPS}"),
            );
            ok = false;
            1
        }
    };
    ok.then(|| PostgresConfig {
        host: pg
            .host
            .as_ref()
            .map(|h| h.value.clone())
            .unwrap_or_else(|| "127.0.0.1".to_owned()),
        port,
        user: pg
            .user
            .as_ref()
            .map(|u| u.value.clone())
            .unwrap_or_else(|| "postgres".to_owned()),
        password,
        password_unreadable,
        password_file: pg.password_file.as_ref().map(|f| PathBuf::from(&f.value)),
        databases,
        maintenance_db: pg
            .maintenance_db
            .as_ref()
            .map(|m| m.value.clone())
            .unwrap_or_else(|| "postgres".to_owned()),
        bin_dir,
        globals: pg.globals.unwrap_or(true),
        row_counts: pg.row_counts.unwrap_or(true),
        parallel,
    })
}

/// Upper bound of `postgres.parallel`: each dump holds a server backend,
/// a `pg_dump` and a pipeline's buffers; beyond this the server's disks,
/// not ccbackup, set the pace.
pub const MAX_PARALLEL_DUMPS: usize = 8;

/// Default `postgres.parallel`: a dump keeps about two cores busy
/// (`pg_dump` with its server backend, and zstd), so half the cores, at
/// least one and at most four. On the two-core machines Concertim runs on
/// that is one database at a time, which is what such a host can afford
/// next to the application it serves.
pub fn default_parallel_dumps() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 4)
}
