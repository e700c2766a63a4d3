//! Planning a restore: which artifacts go where, and whether the targets
//! may be written. Pure where it can be; the target check asks the server.

use std::path::PathBuf;

use tokio_postgres::Client;

use super::{RestoreError, RestoreRequest, Step};
use crate::config::{DatabaseSelection, JobConfig, PostgresConfig, SourceKind};
use crate::pg::conn::{self, PgError};
use crate::pg::tools;
use crate::repo::manifest::{Artifact, ArtifactKind, Manifest};

/// Pure: which artifacts of `m` the request selects, and where each goes.
///
/// A tree goes to `--to`, or else to `configured(source)`: the path of the
/// directory source of that name in the configuration. Never to the root the
/// manifest records: the store is untrusted, and a crafted manifest must not
/// choose where files are written.
pub fn plan(
    m: &Manifest,
    req: &RestoreRequest,
    configured: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<Vec<Step>, RestoreError> {
    let plan_err = |s: String| RestoreError::Plan(s);
    let arts: Vec<&Artifact> = m
        .artifacts
        .iter()
        .filter(|a| req.source.as_ref().is_none_or(|s| &a.source == s))
        .collect();
    if arts.is_empty() {
        return Err(plan_err(format!(
            "backup {} has no source `{}` (sources: {})",
            m.id,
            req.source.as_deref().unwrap_or(""),
            m.source_names().join(", ")
        )));
    }
    let mut steps = Vec::new();
    let dumps: Vec<&&Artifact> = arts
        .iter()
        .filter(|a| a.kind == ArtifactKind::PgDump)
        .filter(|a| {
            req.database
                .as_ref()
                .is_none_or(|d| a.postgres().and_then(|p| p.database.as_ref()) == Some(d))
        })
        .collect();
    if let Some(d) = &req.database {
        if dumps.is_empty() {
            let have: Vec<String> = arts
                .iter()
                .filter_map(|a| a.postgres().and_then(|p| p.database.clone()))
                .collect();
            return Err(plan_err(format!(
                "backup {} has no database `{d}` (databases: {})",
                m.id,
                have.join(", ")
            )));
        }
    }
    check_database_count(req, dumps.len()).map_err(plan_err)?;
    if req.globals {
        let g: Vec<&&Artifact> = arts
            .iter()
            .filter(|a| a.kind == ArtifactKind::PgGlobals)
            .collect();
        if g.is_empty() {
            return Err(plan_err(format!("backup {} holds no globals", m.id)));
        }
        steps.extend(g.into_iter().map(|a| Step::Globals {
            artifact: (*a).clone(),
        }));
    }
    for a in dumps {
        let database = a
            .postgres()
            .and_then(|p| p.database.clone())
            .ok_or_else(|| plan_err(format!("artifact {} names no database", a.key)))?;
        steps.push(Step::Database {
            artifact: (*a).clone(),
            target: req.target_db.clone().unwrap_or_else(|| database.clone()),
            database,
        });
    }
    // Database-only selections skip trees unless a source was named.
    if req.database.is_none() && req.tables.is_empty() {
        steps.extend(tree_steps(&arts, req, configured).map_err(plan_err)?);
    }
    if steps.is_empty() {
        return Err(plan_err(
            "nothing selected to restore (globals need --globals)".to_owned(),
        ));
    }
    Ok(steps)
}

/// Pure: `--target-db`, `--table` and `--schema` take one database.
fn check_database_count(req: &RestoreRequest, dumps: usize) -> Result<(), String> {
    if req.target_db.is_some() && dumps != 1 {
        return Err(format!(
            "--target-db needs exactly one database, but {dumps} are selected: pick one with --database"
        ));
    }
    if !req.tables.is_empty() {
        if dumps != 1 {
            return Err(format!(
                "--table and --schema restore from one database, but {dumps} are selected: pick one with --database"
            ));
        }
        if req.jobs > 1 {
            return Err("--table and --schema restore in one transaction; drop --jobs".to_owned());
        }
    }
    Ok(())
}

/// Pure: the tree steps, each to `--to` or its configured directory.
fn tree_steps(
    arts: &[&Artifact],
    req: &RestoreRequest,
    configured: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<Vec<Step>, String> {
    let trees: Vec<&&Artifact> = arts
        .iter()
        .filter(|a| matches!(a.kind, ArtifactKind::RrdTar | ArtifactKind::FilesTar))
        .collect();
    if req.to.is_some() && trees.len() > 1 {
        return Err(format!(
            "--to takes one directory but {} directory sources are selected: pick one with --source",
            trees.len()
        ));
    }
    let mut steps = Vec::new();
    for a in trees {
        let dest = match (&req.to, configured(&a.source)) {
            (Some(to), _) => to.clone(),
            (None, Some(path)) => path,
            (None, None) => {
                return Err(format!(
                    "the configuration has no directory source `{}` saying where to restore {}: \
                     add it, or use --to DIR",
                    a.source, a.key
                ))
            }
        };
        steps.push(Step::Tree {
            artifact: (*a).clone(),
            dest,
        });
    }
    Ok(steps)
}

/// Pure: a job that encrypts never takes an unencrypted artifact as
/// genuine. Anyone who can write to the store can plant plaintext (the
/// recipients are public, so it proves nothing either way, but plaintext
/// also skips the identity check); backups from before encryption was
/// switched on need the operator's `--allow-unencrypted`.
pub fn refuse_downgrade(job_encrypts: bool, a: &Artifact, allowed: bool) -> Result<(), String> {
    if !job_encrypts || a.encryption.is_some() || allowed {
        return Ok(());
    }
    Err(format!(
        "{} is stored unencrypted but this job encrypts its backups: refusing a possible \
         downgrade planted in the store; if the backup predates encryption, restore it with \
         --allow-unencrypted",
        a.key.escape_debug()
    ))
}

/// Pure: a dump goes only into a database the operator chose: one the
/// source's `databases:` lists, or one named on the command line
/// (`--database`, `--target-db`). A manifest cannot pick another.
pub fn check_named(
    configured: &DatabaseSelection,
    database: &str,
    target: &str,
    req: &RestoreRequest,
) -> Result<(), String> {
    let named_here = req.target_db.as_deref() == Some(target)
        || (req.target_db.is_none() && req.database.as_deref() == Some(database));
    match configured {
        _ if named_here => Ok(()),
        DatabaseSelection::All => Ok(()),
        DatabaseSelection::Named(list) if list.iter().any(|d| d == target) => Ok(()),
        DatabaseSelection::Named(list) => Err(format!(
            "the backup names database `{}`, which the source's configuration does not list \
             ({}); restore it only if you mean to, with --database {0} (or --target-db NAME)",
            database.escape_debug(),
            list.join(", ")
        )),
    }
}

/// The path of the rrd or files source `name` in the job's configuration.
pub(super) fn configured_tree(job: &JobConfig, name: &str) -> Option<PathBuf> {
    job.sources.iter().find_map(|s| match &s.kind {
        SourceKind::Rrd(r) if s.name == name => Some(r.path.clone()),
        SourceKind::Files(f) if s.name == name => Some(f.path.clone()),
        _ => None,
    })
}

pub(super) fn pg_config<'a>(
    job: &'a JobConfig,
    source: &str,
) -> Result<&'a PostgresConfig, RestoreError> {
    job.sources
        .iter()
        .find_map(|s| match &s.kind {
            SourceKind::Postgres(p) if s.name == source => Some(p),
            _ => None,
        })
        .ok_or_else(|| {
            RestoreError::Plan(format!(
                "job `{}` has no postgres source `{source}` in the configuration; it says which server to restore to",
                job.name
            ))
        })
}

/// What a database target looks like before the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TargetState {
    Missing,
    Empty,
    NonEmpty { relations: i64 },
}

/// Databases every cluster has: present on a brand-new server, so their
/// existing and being empty says nothing about being meant as a target.
pub const SYSTEM_DATABASES: [&str; 3] = ["postgres", "template0", "template1"];

/// Pure: may we restore into this target, and how?
pub fn check_target(
    state: TargetState,
    target: &str,
    original: &str,
    req: &RestoreRequest,
) -> Result<(), String> {
    match state {
        TargetState::Missing => Ok(()),
        _ if SYSTEM_DATABASES.contains(&target) && !req.allow_system_db => Err(format!(
            "database `{target}` is one of the server's own databases and is never an empty \
             restore target; restoring into it needs --allow-system-db (for a whole-server \
             restore onto a fresh server, whose `{target}` is empty, that is all it needs)"
        )),
        // Whole-server restores onto a fresh server: every cluster has an
        // empty `postgres`, so with --allow-system-db an empty system
        // database is a target like a new one, and its name matching the
        // original's says nothing about overwriting it (no --force).
        TargetState::Empty if SYSTEM_DATABASES.contains(&target) => Ok(()),
        _ if target == original && !req.force => Err(format!(
            "database `{target}` exists and is the database this backup was taken from; \
             restoring over it needs --force (and --clean to replace its objects), \
             or use --target-db NEW_NAME"
        )),
        TargetState::NonEmpty { relations } if !req.clean => Err(format!(
            "database `{target}` is not empty ({relations} relations); use --clean to replace its objects, \
             or --target-db NEW_NAME"
        )),
        _ => Ok(()),
    }
}

/// Pure: may some tables of a backup go into this target? A new database
/// always; an existing one only with `--force` (its tables are then still
/// only replaced with `--clean`, see [`super::select::refuse_replace`]).
pub fn check_table_target(
    state: TargetState,
    target: &str,
    req: &RestoreRequest,
) -> Result<(), String> {
    match state {
        TargetState::Missing => Ok(()),
        _ if SYSTEM_DATABASES.contains(&target) && !req.allow_system_db => Err(format!(
            "database `{target}` is one of the server's own databases; restoring tables into it \
             needs --allow-system-db and --force"
        )),
        _ if !req.force => Err(format!(
            "database `{target}` exists; restoring tables into an existing database needs --force \
             (tables it already has are replaced only with --clean), or use --target-db NEW_NAME"
        )),
        _ => Ok(()),
    }
}

pub(super) async fn target_state(
    cfg: &PostgresConfig,
    admin: &Client,
    target: &str,
) -> Result<TargetState, PgError> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&target])
        .await
        .map_err(PgError::query(
            &cfg.maintenance_db,
            "look up target database",
        ))?
        .is_some();
    if !exists {
        return Ok(TargetState::Missing);
    }
    let c = conn::connect(cfg, target).await?;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND c.relkind IN ('r','p','v','m','S','f')",
            &[],
        )
        .await
        .map_err(PgError::query(target, "inspect target database"))?
        .get(0);
    Ok(if n == 0 {
        TargetState::Empty
    } else {
        TargetState::NonEmpty { relations: n }
    })
}

/// Server major of a dump, from the manifest.
pub(super) fn dump_major(a: &Artifact) -> u32 {
    a.postgres()
        .map(|p| tools::server_major(p.server_version_num))
        .unwrap_or(0)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::repo::manifest::{Compression, EncryptionInfo};

    /// An artifact of one byte, zstd level 3, with no detail and no
    /// encryption: what restore's tests vary starts from here.
    pub(in crate::restore) fn bare_artifact(
        key: &str,
        source: &str,
        kind: ArtifactKind,
    ) -> Artifact {
        Artifact {
            key: key.into(),
            source: source.into(),
            kind,
            raw_bytes: 1,
            stored_bytes: 1,
            sha256: String::new(),
            compression: Compression {
                algorithm: "zstd".into(),
                level: 3,
            },
            detail: None,
            encryption: None,
        }
    }

    fn art(encrypted: bool) -> Artifact {
        Artifact {
            encryption: encrypted.then(|| EncryptionInfo {
                format: "age".into(),
                recipients: vec![],
            }),
            ..bare_artifact("etc.tar.zst", "etc", ArtifactKind::FilesTar)
        }
    }

    #[test]
    fn regression_issue22_plaintext_in_an_encrypting_job_needs_the_operator() {
        assert!(refuse_downgrade(false, &art(false), false).is_ok());
        assert!(refuse_downgrade(true, &art(true), false).is_ok());
        let err = refuse_downgrade(true, &art(false), false).unwrap_err();
        assert!(err.contains("--allow-unencrypted"), "{err}");
        assert!(refuse_downgrade(true, &art(false), true).is_ok());
    }

    #[test]
    fn tables_go_into_a_new_database_or_with_force_into_an_existing_one() {
        let none = RestoreRequest::default();
        let force = RestoreRequest {
            force: true,
            ..Default::default()
        };
        let non_empty = TargetState::NonEmpty { relations: 3 };
        assert!(check_table_target(TargetState::Missing, "copy", &none).is_ok());
        for state in [TargetState::Empty, non_empty] {
            let err = check_table_target(state, "copy", &none).unwrap_err();
            assert!(err.contains("--force"), "{err}");
            assert!(check_table_target(state, "copy", &force).is_ok());
        }
        let err = check_table_target(TargetState::Empty, "postgres", &force).unwrap_err();
        assert!(err.contains("--allow-system-db"), "{err}");
    }

    #[test]
    fn regression_issue22_only_configured_or_named_databases_are_targets() {
        let listed = DatabaseSelection::Named(vec!["ct-vis".into()]);
        let none = RestoreRequest::default();
        assert!(check_named(&listed, "ct-vis", "ct-vis", &none).is_ok());
        assert!(check_named(&DatabaseSelection::All, "x", "x", &none).is_ok());
        let err = check_named(&listed, "other", "other", &none).unwrap_err();
        assert!(err.contains("--database other"), "{err}");
        let by_name = RestoreRequest {
            database: Some("other".into()),
            ..Default::default()
        };
        assert!(check_named(&listed, "other", "other", &by_name).is_ok());
        let to_copy = RestoreRequest {
            database: Some("other".into()),
            target_db: Some("copy".into()),
            ..Default::default()
        };
        assert!(check_named(&listed, "other", "copy", &to_copy).is_ok());
        // --database alone does not license a target the manifest renames.
        let renamed = RestoreRequest {
            target_db: None,
            database: Some("ct-vis".into()),
            ..Default::default()
        };
        assert!(check_named(&listed, "other", "other", &renamed).is_err());
    }
}
