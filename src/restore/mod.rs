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
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::crypto::{CryptoError, Identities};
use crate::pg::conn::PgError;
use crate::pg::tools::PgToolsError;
use crate::repo::manifest::Artifact;
use crate::restore::extract::ExtractError;
use crate::sys::child::ChildError;
use database::DbLeft;
use fetch::FetchError;
use globals::GlobalsError;
pub use plan::{
    check_named, check_table_target, check_target, plan, refuse_downgrade, TargetState,
    SYSTEM_DATABASES,
};
pub use report::{Note, RestoreReport, StepOutcome, StepReport, TreeOutcome, Warning};
pub use run::run;
pub use select::{parse_table_arg, TableRequest};

mod database;
pub mod extract;
pub mod fetch;
pub mod globals;
mod plan;
pub mod report;
mod run;
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
    pub progress: Option<Arc<crate::progress::Progress>>,
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
    Plain(#[from] fetch::plain::PlainError),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::manifest::{
        ArtifactDetail, ArtifactKind, DetailSlot, Manifest, PostgresInfo, TreeInfo,
    };
    use std::path::Path;

    fn art(key: &str, source: &str, kind: ArtifactKind, db: Option<&str>) -> Artifact {
        Artifact {
            detail: Some(match kind.detail_slot() {
                DetailSlot::Postgres => ArtifactDetail::Postgres(PostgresInfo {
                    database: db.map(Into::into),
                    server_version: "15.1".into(),
                    server_version_num: 150001,
                    pg_dump_version: "15.1".into(),
                    tables: None,
                    database_properties: None,
                }),
                DetailSlot::Tree => ArtifactDetail::Tree(TreeInfo {
                    root: format!("/data/{source}"),
                    ..Default::default()
                }),
            }),
            ..super::plan::tests::bare_artifact(key, source, kind)
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
            if let Some(t) = a.tree_mut() {
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
