//! Restore: plan what to bring back, download and verify every artifact
//! before applying any of it, then apply.
//!
//! Safety rules:
//! - every artifact is staged to local disk (a `file://` store is read in
//!   place) and its size and sha256 checked before anything is applied; a
//!   corrupt artifact stops the restore with nothing applied from it;
//! - an existing database is never touched unless asked: restoring over the
//!   original database name needs `--force`, and a non-empty target also
//!   needs `--clean` (`pg_restore --clean --if-exists`);
//! - `--jobs 1` restores in one transaction (`--single-transaction`), so a
//!   failed restore leaves the target as it was; with `--jobs N` a failure
//!   can leave a partial restore, and ccbackup drops the database again if
//!   it created it;
//! - files are written to temporary names, fsynced and renamed into place;
//!   without `--force` an existing file fails the restore before anything is
//!   written; RRD files are validated before they are renamed in.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::crypto::{CryptoError, Identities};
use crate::progress::{Phase, Progress};

use crate::config::JobConfig;
use crate::pg::conn::{self, PgError};
use crate::pg::tools::{self, PgToolsError};
use crate::repo::manifest::{Artifact, Manifest};
use crate::repo::store::Repo;
use crate::restore::extract::ExtractError;
use crate::sys::child::ChildError;
use database::{apply_globals, restore_database, DbLeft};
use fetch::FetchError;
use globals::GlobalsError;
pub use plan::{
    check_named, check_table_target, check_target, plan, refuse_downgrade, TargetState,
    SYSTEM_DATABASES,
};
use plan::{configured_tree, dump_major, pg_config, target_state};
pub use report::{RestoreReport, StepOutcome, StepReport};
pub use select::{parse_table_arg, TableRequest};
use tree::{describe_tree, recorded_root_note, restore_tree};

mod database;
pub mod extract;
pub mod fetch;
pub mod globals;
mod plan;
pub mod report;
pub mod select;
mod tables;
pub mod tarcap;
mod tree;
pub mod verify;

#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    pub source: Option<String>,
    pub database: Option<String>,
    pub target_db: Option<String>,
    pub clean: bool,
    pub force: bool,
    pub jobs: u32,
    pub globals: bool,
    /// With `globals`: roles that already exist keep their password.
    pub keep_role_passwords: bool,
    pub no_owner: bool,
    pub to: Option<PathBuf>,
    pub include: Vec<String>,
    /// `--table` and `--schema`: restore only these of the one selected
    /// database (see [`select`]).
    pub tables: TableRequest,
    pub dry_run: bool,
    pub staging_dir: Option<PathBuf>,
    pub same_owner: bool,
    pub allow_system_db: bool,
    /// Restore unencrypted artifacts although the job encrypts (older
    /// backups); without it such an artifact is refused as a downgrade.
    pub allow_unencrypted: bool,
    /// Fired on SIGINT/SIGTERM: stop children, undo what this restore
    /// created, leave the destination as it was.
    pub cancel: CancellationToken,
    /// age identities for encrypted artifacts.
    pub identities: Option<std::sync::Arc<Identities>>,
    /// Counters for the terminal's progress line.
    pub progress: Option<std::sync::Arc<Progress>>,
}

/// One thing to restore.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Globals {
        artifact: Artifact,
    },
    Database {
        artifact: Artifact,
        database: String,
        target: String,
    },
    Tree {
        artifact: Artifact,
        dest: PathBuf,
    },
}

impl Step {
    pub fn artifact(&self) -> &Artifact {
        match self {
            Step::Globals { artifact }
            | Step::Database { artifact, .. }
            | Step::Tree { artifact, .. } => artifact,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Plan(String),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(transparent)]
    Tools(#[from] PgToolsError),
    #[error("restoring into database `{database}` failed ({left})")]
    PgRestore {
        database: String,
        source: ChildError,
        left: DbLeft,
    },
    #[error(transparent)]
    Globals(#[from] GlobalsError),
    #[error("restoring {key} into {dest} failed")]
    Extract {
        key: String,
        dest: String,
        source: ExtractError,
    },
    #[error("cannot prepare staging directory: {0}")]
    Staging(std::io::Error),
    #[error("restore worker stopped unexpectedly")]
    Join,
    #[error("restore stopped {what}")]
    Interrupted { what: String },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("cannot list the table of contents of {key}")]
    TocList { key: String, source: ChildError },
    #[error("cannot read the table of contents pg_restore listed for {key}")]
    TocParse {
        key: String,
        source: crate::pg::toc_list::TocListError,
    },
}

/// Executes (or with `dry_run`, describes) a restore. Returns what was (or
/// would be) done, step by step, with the lines saying so.
pub async fn run(
    repo: &Repo,
    job: &JobConfig,
    m: &Manifest,
    req: &RestoreRequest,
) -> Result<RestoreReport, RestoreError> {
    let steps = plan(m, req, &|name| configured_tree(job, name))?;
    let staging = tempfile::Builder::new()
        .prefix("ccbackup-restore-")
        .tempdir_in(req.staging_dir.clone().unwrap_or_else(std::env::temp_dir))
        .map_err(RestoreError::Staging)?;

    // Check database targets and versions first: refuse before downloading.
    let mut report = RestoreReport::new(&steps);
    for (i, step) in steps.iter().enumerate() {
        let a = step.artifact();
        if let Err(why) = refuse_downgrade(job.encryption.is_some(), a, req.allow_unencrypted) {
            refuse_or_report(&mut report, i, req, why)?;
        }
    }
    for (i, step) in steps.iter().enumerate() {
        if let Step::Database {
            artifact,
            database,
            target,
        } = step
        {
            let cfg = pg_config(job, &artifact.source)?;
            if let Err(why) = check_named(&cfg.databases, database, target, req) {
                refuse_or_report(&mut report, i, req, why)?;
            }
            let admin = conn::connect(cfg, &cfg.maintenance_db).await?;
            // The client is chosen now, so a missing or unfit one refuses
            // the restore before anything is downloaded.
            let chosen = database::choose(cfg, artifact).await?;
            let server = &chosen.server;
            let need = dump_major(artifact);
            let have = tools::server_major(server.version_num);
            if have < need {
                let why = format!(
                    "backup of `{database}` was taken from PostgreSQL {} but the target server {}:{} runs {}; \
                     restoring into an older major version is not supported",
                    artifact.postgres.as_ref().map(|p| p.server_version.as_str()).unwrap_or("?"),
                    cfg.host,
                    cfg.port,
                    server.version
                );
                refuse_or_report(&mut report, i, req, why)?;
                continue;
            }
            let state = target_state(cfg, &admin, target).await?;
            let allowed = if req.tables.is_empty() {
                check_target(state, target, database, req)
            } else {
                check_table_target(state, target, req)
            };
            if let Err(why) = allowed {
                refuse_or_report(&mut report, i, req, why)?;
            }
            report.note(
                i,
                format!(
                    "database `{database}` ({} from {}) -> `{target}` on {}:{} ({})",
                    crate::progress::human(artifact.raw_bytes),
                    artifact.key,
                    cfg.host,
                    cfg.port,
                    match state {
                        TargetState::Missing => "will be created".to_owned(),
                        TargetState::Empty => "exists, empty".to_owned(),
                        TargetState::NonEmpty { relations } if req.tables.is_empty() =>
                            format!("exists with {relations} relations: --clean replaces them"),
                        TargetState::NonEmpty { relations } => format!(
                            "exists with {relations} relations: --clean replaces those the restored tables name"
                        ),
                    }
                ),
            );
            report.note(i, format!("  with {}", chosen.describe()));
        }
    }

    // An encrypted backup without an identity fails before any download.
    if req.identities.is_none() {
        if let Some(a) = steps
            .iter()
            .map(Step::artifact)
            .find(|a| a.encryption.is_some())
        {
            return Err(CryptoError::NoIdentity { key: a.key.clone() }.into());
        }
    }

    let progress = req.progress.clone().unwrap_or_default();

    // Download and verify everything before applying anything.
    let mut staged = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let a = step.artifact();
        let path = staging.path().join(format!("{i}.zst"));
        let fetched = tokio::select! {
            r = fetch::verified_local(repo, &m.job, &m.id, a, &path, &progress, &req.cancel) => r?,
            // Nothing has been applied yet; the staging directory goes
            // with `staging` when this returns.
            _ = req.cancel.cancelled() => return Err(RestoreError::Interrupted {
                what: format!("while downloading {}; nothing was applied", a.key),
            }),
        };
        staged.push(fetched);
    }

    // A wrong identity is found here, on each artifact's header, before
    // the first step changes anything.
    for (step, path) in steps.iter().zip(staged.iter()) {
        let a = step.artifact();
        if a.encryption.is_some() {
            let path = path.clone();
            let a = a.clone();
            let ids = req.identities.clone();
            tokio::task::spawn_blocking(move || {
                crate::crypto::open_artifact(&path, &a, ids.as_deref()).map(|_| ())
            })
            .await
            .map_err(|_| RestoreError::Join)??;
        }
    }

    let mut applied: Vec<String> = Vec::new();
    for (i, (step, path)) in steps.iter().zip(staged.iter()).enumerate() {
        if req.cancel.is_cancelled() {
            return Err(RestoreError::Interrupted {
                what: format!(
                    "before {}; restored until then: {}",
                    step.artifact().key,
                    if applied.is_empty() {
                        "nothing".to_owned()
                    } else {
                        applied.join(", ")
                    }
                ),
            });
        }
        progress.start_phase(Phase::Restoring, step.artifact().raw_bytes);
        match step {
            Step::Globals { artifact } => {
                let cfg = pg_config(job, &artifact.source)?;
                // A dry run checks every statement too, so a tampered
                // artifact is refused before anyone relies on the plan.
                for line in apply_globals(cfg, artifact, path, req).await? {
                    report.note(i, line);
                }
            }
            Step::Database {
                artifact, target, ..
            } => {
                let cfg = pg_config(job, &artifact.source)?;
                let mut list = None;
                if !req.tables.is_empty() {
                    let sel = tables::select_for(cfg, artifact, target, path, req).await?;
                    tables::note_selection(&mut report, i, &sel, req.dry_run);
                    if let Err(why) = select::refuse_replace(&sel, target, req.clean) {
                        refuse_or_report(&mut report, i, req, why)?;
                    }
                    if !req.dry_run {
                        list = Some(tables::write_list(&sel, staging.path())?);
                    }
                }
                if !req.dry_run {
                    let notes = restore_database(
                        cfg,
                        artifact,
                        target,
                        path,
                        staging.path(),
                        req,
                        list.as_deref(),
                    )
                    .await?;
                    progress.add_database();
                    report.note(
                        i,
                        if list.is_some() {
                            format!("restored the selected entries into database `{target}`")
                        } else {
                            format!("restored database `{target}`")
                        },
                    );
                    for line in notes {
                        report.note(i, line);
                    }
                }
            }
            Step::Tree { artifact, dest } => {
                let r = restore_tree(artifact, dest, path, req).await?;
                if !req.dry_run {
                    progress.add_written(r.written, r.bytes);
                }
                report.tree(i, &r, req.dry_run);
                report.note(i, describe_tree(artifact, dest, &r, req.dry_run));
                if let Some(note) = recorded_root_note(artifact, dest, req) {
                    report.note(i, note);
                }
            }
        }
        report.done(i, req.dry_run);
        applied.push(step.artifact().key.clone());
    }
    Ok(report)
}

/// A refusal stops a real restore; a dry run reports it and goes on, so the
/// whole plan is shown (and the operator sees which flags it needs).
fn refuse_or_report(
    report: &mut RestoreReport,
    step: usize,
    req: &RestoreRequest,
    why: String,
) -> Result<(), RestoreError> {
    if !req.dry_run {
        return Err(RestoreError::Plan(why));
    }
    report.refuse(step, why);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::manifest::{ArtifactKind, Compression, PostgresInfo, TreeInfo};
    use std::path::Path;

    fn art(key: &str, source: &str, kind: ArtifactKind, db: Option<&str>) -> Artifact {
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
            postgres: matches!(kind, ArtifactKind::PgDump | ArtifactKind::PgGlobals).then(|| {
                PostgresInfo {
                    database: db.map(Into::into),
                    server_version: "15.1".into(),
                    server_version_num: 150001,
                    pg_dump_version: "15.1".into(),
                    tables: None,
                    database_properties: None,
                }
            }),
            tree: matches!(kind, ArtifactKind::RrdTar | ArtifactKind::FilesTar).then(|| TreeInfo {
                root: format!("/data/{source}"),
                ..Default::default()
            }),
            encryption: None,
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            format: 1,
            job: "j".into(),
            id: "20260101T000000Z-000000".into(),
            started_at: chrono::Utc::now(),
            finished_at: chrono::Utc::now(),
            tool_version: "0".into(),
            host: "h".into(),
            artifacts: vec![
                art("db/globals.sql.zst", "db", ArtifactKind::PgGlobals, None),
                art("db/01-a.dump.zst", "db", ArtifactKind::PgDump, Some("a")),
                art("db/02-b.dump.zst", "db", ArtifactKind::PgDump, Some("b")),
                art("rrd.rrd.tar.zst", "rrd", ArtifactKind::RrdTar, None),
                art("etc.tar.zst", "etc", ArtifactKind::FilesTar, None),
            ],
            guard: Default::default(),
        }
    }

    /// The configuration's directory sources: where trees go.
    fn cfg_dest(name: &str) -> Option<PathBuf> {
        matches!(name, "rrd" | "etc").then(|| PathBuf::from(format!("/srv/{name}")))
    }

    #[test]
    fn regression_issue9_tree_destination_comes_from_the_configuration() {
        let mut m = manifest();
        for a in &mut m.artifacts {
            if let Some(t) = &mut a.tree {
                t.root = "/root/.ssh".into();
            }
        }
        let steps = plan(&m, &RestoreRequest::default(), &cfg_dest).unwrap();
        let dests: Vec<&Path> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Tree { dest, .. } => Some(dest.as_path()),
                _ => None,
            })
            .collect();
        assert_eq!(dests, [Path::new("/srv/rrd"), Path::new("/srv/etc")]);
        let err = plan(&m, &RestoreRequest::default(), &|_| None).unwrap_err();
        assert!(err.to_string().contains("use --to"), "{err}");
    }

    #[test]
    fn default_plan_restores_databases_and_trees_but_not_globals() {
        let steps = plan(&manifest(), &RestoreRequest::default(), &cfg_dest).unwrap();
        assert_eq!(steps.len(), 4);
        assert!(!steps.iter().any(|s| matches!(s, Step::Globals { .. })));
        assert!(steps
            .iter()
            .any(|s| matches!(s, Step::Tree { dest, .. } if dest == Path::new("/srv/rrd"))));
    }

    #[test]
    fn database_filter_and_target_db() {
        let req = RestoreRequest {
            database: Some("b".into()),
            target_db: Some("b_copy".into()),
            ..Default::default()
        };
        let steps = plan(&manifest(), &req, &cfg_dest).unwrap();
        assert_eq!(
            steps,
            vec![Step::Database {
                artifact: manifest().artifacts[2].clone(),
                database: "b".into(),
                target: "b_copy".into()
            }]
        );
        let err = plan(
            &manifest(),
            &RestoreRequest {
                target_db: Some("x".into()),
                source: Some("db".into()),
                ..Default::default()
            },
            &cfg_dest,
        )
        .unwrap_err();
        assert!(err.to_string().contains("exactly one database"), "{err}");
        let err = plan(
            &manifest(),
            &RestoreRequest {
                database: Some("zzz".into()),
                ..Default::default()
            },
            &cfg_dest,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no database `zzz`"), "{err}");
    }

    #[test]
    fn tables_come_from_one_database_in_one_transaction() {
        let tables = TableRequest {
            tables: vec![("app".into(), "racks".into())],
            schemas: Vec::new(),
        };
        let req = RestoreRequest {
            tables: tables.clone(),
            ..Default::default()
        };
        let err = plan(&manifest(), &req, &cfg_dest).unwrap_err();
        assert!(
            err.to_string().contains("pick one with --database"),
            "{err}"
        );
        let one = RestoreRequest {
            database: Some("a".into()),
            tables: tables.clone(),
            jobs: 1,
            ..Default::default()
        };
        let steps = plan(&manifest(), &one, &cfg_dest).unwrap();
        assert!(matches!(steps.as_slice(), [Step::Database { database, .. }] if database == "a"));
        // With one database in the backup, --table needs no --database, and
        // the trees beside it stay where they are.
        let mut one_db = manifest();
        one_db.artifacts.remove(2);
        one_db.artifacts.remove(0);
        let no_name = RestoreRequest {
            database: None,
            ..one.clone()
        };
        let steps = plan(&one_db, &no_name, &cfg_dest).unwrap();
        assert!(matches!(steps.as_slice(), [Step::Database { database, .. }] if database == "a"));
        let jobs = RestoreRequest { jobs: 4, ..one };
        let err = plan(&manifest(), &jobs, &cfg_dest).unwrap_err();
        assert!(err.to_string().contains("--jobs"), "{err}");
    }

    #[test]
    fn to_needs_a_single_tree() {
        let req = RestoreRequest {
            to: Some("/x".into()),
            ..Default::default()
        };
        assert!(plan(&manifest(), &req, &cfg_dest).is_err());
        let req = RestoreRequest {
            to: Some("/x".into()),
            source: Some("rrd".into()),
            ..Default::default()
        };
        let steps = plan(&manifest(), &req, &cfg_dest).unwrap();
        assert!(matches!(&steps[0], Step::Tree { dest, .. } if dest == Path::new("/x")));
    }

    #[test]
    fn globals_only_on_request() {
        let req = RestoreRequest {
            globals: true,
            source: Some("db".into()),
            database: Some("a".into()),
            ..Default::default()
        };
        let steps = plan(&manifest(), &req, &cfg_dest).unwrap();
        assert!(matches!(steps[0], Step::Globals { .. }));
        assert_eq!(steps.len(), 2);
    }

    #[test]
    fn target_rules() {
        let none = RestoreRequest::default();
        let clean = RestoreRequest {
            clean: true,
            ..Default::default()
        };
        let force_clean = RestoreRequest {
            clean: true,
            force: true,
            ..Default::default()
        };
        let non_empty = TargetState::NonEmpty { relations: 3 };
        assert!(check_target(TargetState::Missing, "a", "a", &none).is_ok());
        assert!(check_target(TargetState::Empty, "a", "a", &none).is_err());
        assert!(check_target(TargetState::Empty, "new", "a", &none).is_ok());
        assert!(check_target(non_empty, "new", "a", &none).is_err());
        assert!(check_target(non_empty, "new", "a", &clean).is_ok());
        assert!(check_target(non_empty, "a", "a", &clean).is_err());
        assert!(check_target(non_empty, "a", "a", &force_clean).is_ok());
    }

    #[test]
    fn regression_issue9_system_databases_are_not_empty_targets() {
        let req = RestoreRequest::default();
        for db in SYSTEM_DATABASES {
            let err = check_target(TargetState::Empty, db, "ct-vis", &req).unwrap_err();
            assert!(err.contains("--allow-system-db"), "{err}");
        }
        let allowed = RestoreRequest {
            allow_system_db: true,
            ..Default::default()
        };
        assert!(check_target(TargetState::Empty, "postgres", "ct-vis", &allowed).is_ok());
        // The whole-server case: the backup's `postgres` into a fresh
        // server's empty one needs --allow-system-db and nothing else.
        assert!(check_target(TargetState::Empty, "postgres", "postgres", &allowed).is_ok());
        let non_empty = TargetState::NonEmpty { relations: 2 };
        assert!(check_target(non_empty, "postgres", "postgres", &allowed).is_err());
        // A missing one (dropped by the operator) is simply created.
        assert!(check_target(TargetState::Missing, "postgres", "postgres", &req).is_ok());
    }
}
