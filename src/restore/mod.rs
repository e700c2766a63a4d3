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

use std::path::{Path, PathBuf};

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::crypto::{CryptoError, Identities, Opener};
use crate::progress::{Phase, Progress};

use crate::backup::source::postgres::{self, quote_ident, PgError};
use crate::config::{JobConfig, PostgresConfig, SourceKind};
use crate::pg::sql;
use crate::pg::tools::{self, PgToolsError};
use crate::repo::manifest::{Artifact, ArtifactKind, Manifest};
use crate::repo::store::Repo;
use crate::restore::extract::{extract_tree_checked, ExtractError, ExtractOptions, ExtractReport};
use crate::sys::child::{ChildError, KillSwitch};
use fetch::FetchError;
use globals::GlobalsError;

mod database;
pub mod extract;
pub mod fetch;
pub mod globals;
pub mod tarcap;
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
    pub dry_run: bool,
    pub staging_dir: Option<PathBuf>,
    pub same_owner: bool,
    pub allow_system_db: bool,
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
    #[error("restoring into database `{database}` failed ({left}): {source}")]
    PgRestore {
        database: String,
        source: ChildError,
        left: DbLeft,
    },
    #[error(transparent)]
    Globals(#[from] GlobalsError),
    #[error("restoring {key} into {dest} failed: {source}")]
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
}

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
                .is_none_or(|d| a.postgres.as_ref().and_then(|p| p.database.as_ref()) == Some(d))
        })
        .collect();
    if let Some(d) = &req.database {
        if dumps.is_empty() {
            let have: Vec<String> = arts
                .iter()
                .filter_map(|a| a.postgres.as_ref().and_then(|p| p.database.clone()))
                .collect();
            return Err(plan_err(format!(
                "backup {} has no database `{d}` (databases: {})",
                m.id,
                have.join(", ")
            )));
        }
    }
    if req.target_db.is_some() && dumps.len() != 1 {
        return Err(plan_err(format!(
            "--target-db needs exactly one database, but {} are selected: pick one with --database",
            dumps.len()
        )));
    }
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
            .postgres
            .as_ref()
            .and_then(|p| p.database.clone())
            .ok_or_else(|| plan_err(format!("artifact {} names no database", a.key)))?;
        steps.push(Step::Database {
            artifact: (*a).clone(),
            target: req.target_db.clone().unwrap_or_else(|| database.clone()),
            database,
        });
    }
    // Database-only selections skip trees unless a source was named.
    if req.database.is_none() {
        let trees: Vec<&&Artifact> = arts
            .iter()
            .filter(|a| matches!(a.kind, ArtifactKind::RrdTar | ArtifactKind::FilesTar))
            .collect();
        if req.to.is_some() && trees.len() > 1 {
            return Err(plan_err(format!(
                "--to takes one directory but {} directory sources are selected: pick one with --source",
                trees.len()
            )));
        }
        for a in trees {
            let dest = match (&req.to, configured(&a.source)) {
                (Some(to), _) => to.clone(),
                (None, Some(path)) => path,
                (None, None) => {
                    return Err(plan_err(format!(
                    "the configuration has no directory source `{}` saying where to restore {}: \
                         add it, or use --to DIR",
                    a.source, a.key
                )))
                }
            };
            steps.push(Step::Tree {
                artifact: (*a).clone(),
                dest,
            });
        }
    }
    if steps.is_empty() {
        return Err(plan_err(
            "nothing selected to restore (globals need --globals)".to_owned(),
        ));
    }
    Ok(steps)
}

/// The path of the rrd or files source `name` in the job's configuration.
fn configured_tree(job: &JobConfig, name: &str) -> Option<PathBuf> {
    job.sources.iter().find_map(|s| match &s.kind {
        SourceKind::Rrd(r) if s.name == name => Some(r.path.clone()),
        SourceKind::Files(f) if s.name == name => Some(f.path.clone()),
        _ => None,
    })
}

fn pg_config<'a>(job: &'a JobConfig, source: &str) -> Result<&'a PostgresConfig, RestoreError> {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

async fn target_state(
    cfg: &PostgresConfig,
    admin: &Client,
    target: &str,
) -> Result<TargetState, PgError> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&target])
        .await
        .map_err(|source| PgError::Query {
            database: cfg.maintenance_db.clone(),
            what: "look up target database",
            source,
        })?
        .is_some();
    if !exists {
        return Ok(TargetState::Missing);
    }
    let c = postgres::connect(cfg, target).await?;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND c.relkind IN ('r','p','v','m','S','f')",
            &[],
        )
        .await
        .map_err(|source| PgError::Query {
            database: target.to_owned(),
            what: "inspect target database",
            source,
        })?
        .get(0);
    Ok(if n == 0 {
        TargetState::Empty
    } else {
        TargetState::NonEmpty { relations: n }
    })
}

/// Server major of a dump, from the manifest.
fn dump_major(a: &Artifact) -> u32 {
    a.postgres
        .as_ref()
        .map(|p| tools::server_major(p.server_version_num))
        .unwrap_or(0)
}

/// Executes (or with `dry_run`, describes) a restore. Returns human-readable
/// lines describing what was (or would be) done.
pub async fn run(
    repo: &Repo,
    job: &JobConfig,
    m: &Manifest,
    req: &RestoreRequest,
) -> Result<Vec<String>, RestoreError> {
    let steps = plan(m, req, &|name| configured_tree(job, name))?;
    let staging = tempfile::Builder::new()
        .prefix("ccbackup-restore-")
        .tempdir_in(req.staging_dir.clone().unwrap_or_else(std::env::temp_dir))
        .map_err(RestoreError::Staging)?;

    // Check database targets and versions first: refuse before downloading.
    let mut report = Vec::new();
    for step in &steps {
        if let Step::Database {
            artifact,
            database,
            target,
        } = step
        {
            let cfg = pg_config(job, &artifact.source)?;
            let admin = postgres::connect(cfg, &cfg.maintenance_db).await?;
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
                refuse_or_report(&mut report, req, why)?;
                continue;
            }
            let state = target_state(cfg, &admin, target).await?;
            if let Err(why) = check_target(state, target, database, req) {
                refuse_or_report(&mut report, req, why)?;
            }
            report.push(format!(
                "database `{database}` ({} from {}) -> `{target}` on {}:{} ({})",
                crate::progress::human(artifact.raw_bytes),
                artifact.key,
                cfg.host,
                cfg.port,
                match state {
                    TargetState::Missing => "will be created".to_owned(),
                    TargetState::Empty => "exists, empty".to_owned(),
                    TargetState::NonEmpty { relations } =>
                        format!("exists with {relations} relations: --clean replaces them"),
                }
            ));
            report.push(format!("  with {}", chosen.describe()));
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
            r = fetch::verified_local(repo, &m.job, &m.id, a, &path, &progress) => r?,
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
    for (step, path) in steps.iter().zip(staged.iter()) {
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
                report.extend(apply_globals(cfg, artifact, path, req).await?);
            }
            Step::Database {
                artifact, target, ..
            } => {
                if !req.dry_run {
                    let cfg = pg_config(job, &artifact.source)?;
                    let notes =
                        restore_database(cfg, artifact, target, path, staging.path(), req).await?;
                    report.push(format!("restored database `{target}`"));
                    report.extend(notes);
                }
            }
            Step::Tree { artifact, dest } => {
                let r = restore_tree(artifact, dest, path, req).await?;
                report.push(describe_tree(artifact, dest, &r, req.dry_run));
                if let Some(note) = recorded_root_note(artifact, dest, req) {
                    report.push(note);
                }
            }
        }
        applied.push(step.artifact().key.clone());
    }
    Ok(report)
}

/// A refusal stops a real restore; a dry run reports it and goes on, so the
/// whole plan is shown (and the operator sees which flags it needs).
fn refuse_or_report(
    report: &mut Vec<String>,
    req: &RestoreRequest,
    why: String,
) -> Result<(), RestoreError> {
    if !req.dry_run {
        return Err(RestoreError::Plan(why));
    }
    report.push(format!("would be refused: {why}"));
    Ok(())
}

/// Paths a dry run names before summarising the rest.
const DRY_RUN_LISTED: usize = 10;

/// When the backup recorded another root than the configured destination,
/// say so: the recorded root is information, never where files go.
fn recorded_root_note(a: &Artifact, dest: &Path, req: &RestoreRequest) -> Option<String> {
    let root = &a.tree.as_ref()?.root;
    if req.to.is_some() || Path::new(root) == dest {
        return None;
    }
    Some(format!(
        "note: the backup recorded the root \"{}\"; {} went to the configured path {} instead",
        root.escape_debug(),
        a.key,
        dest.display()
    ))
}

fn describe_tree(a: &Artifact, dest: &Path, r: &ExtractReport, dry_run: bool) -> String {
    let mut s = format!(
        "{} {} -> {}: {} files, {}",
        if dry_run { "would restore" } else { "restored" },
        a.key,
        dest.display(),
        r.written,
        crate::progress::human(r.bytes)
    );
    if dry_run && !r.would_replace.is_empty() {
        s.push_str(&format!(
            "; {} existing file{} would be replaced (needs --force):",
            r.would_replace.len(),
            if r.would_replace.len() == 1 { "" } else { "s" },
        ));
        for p in r.would_replace.iter().take(DRY_RUN_LISTED) {
            s.push_str(&format!("\n    {}", p.display()));
        }
        if r.would_replace.len() > DRY_RUN_LISTED {
            s.push_str(&format!(
                "\n    ... and {} more",
                r.would_replace.len() - DRY_RUN_LISTED
            ));
        }
    } else if r.replaced > 0 {
        s.push_str(&format!("; replaced {} existing", r.replaced));
    }
    s
}

/// The tree is staged whole on the destination's file system before it is
/// moved into place: refuse up front when it cannot fit.
fn check_tree_space(a: &Artifact, dest: &Path) -> Result<(), RestoreError> {
    let mut probe = dest;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => return Ok(()),
        }
    }
    let free = fetch::free_space(probe).map_err(RestoreError::Staging)?;
    let need = a.raw_bytes + 64 * 1024 * 1024;
    if free < need {
        return Err(RestoreError::Plan(format!(
            "not enough space on {} to stage {} ({} needed, {} free); nothing was written",
            probe.display(),
            a.key,
            crate::progress::human(need),
            crate::progress::human(free)
        )));
    }
    Ok(())
}

async fn restore_tree(
    a: &Artifact,
    dest: &Path,
    staged: &Path,
    req: &RestoreRequest,
) -> Result<ExtractReport, RestoreError> {
    if !req.dry_run {
        check_tree_space(a, dest)?;
    }
    let opts = ExtractOptions {
        force: req.force,
        include: req.include.clone(),
        validate_rrd: a.kind == ArtifactKind::RrdTar,
        dry_run: req.dry_run,
        same_owner: req.same_owner,
    };
    let opener = Opener {
        path: staged.to_owned(),
        art: a.clone(),
        ids: req.identities.clone(),
        progress: req.progress.clone(),
    };
    let dest_c = dest.to_owned();
    let key = a.key.clone();
    let stop = req.cancel.clone();
    tokio::task::spawn_blocking(move || {
        extract_tree_checked(
            || {
                let r = crate::restore::tarcap::TarCap::new(opener.open()?);
                Ok(crate::interrupt::CancelRead::new(r, stop.clone()))
            },
            &dest_c,
            &opts,
        )
    })
    .await
    .map_err(|_| RestoreError::Join)?
    .map_err(|source| RestoreError::Extract {
        key,
        dest: dest.display().to_string(),
        source,
    })
}

async fn restore_database(
    cfg: &PostgresConfig,
    a: &Artifact,
    target: &str,
    staged: &Path,
    staging_dir: &Path,
    req: &RestoreRequest,
) -> Result<Vec<String>, RestoreError> {
    let chosen = database::choose(cfg, a).await?;
    tracing::info!(
        database = target,
        pg_restore = %chosen.tools.version,
        bin_dir = %chosen.tools.dir_display(),
        server = %chosen.server.version,
        sql = chosen.path == database::RestorePath::Sql,
        "restoring with {}",
        chosen.describe()
    );
    let mut notes = Vec::new();
    let mut admin = postgres::connect(cfg, &cfg.maintenance_db).await?;
    let props = a
        .postgres
        .as_ref()
        .and_then(|p| p.database_properties.clone());
    // Roles are checked here, not before downloading: `--globals` may
    // create them in an earlier step of the same restore.
    let missing = match &props {
        Some(p) => database::missing_roles(cfg, &admin, p, req.no_owner).await?,
        None => Vec::new(),
    };
    if !missing.is_empty() {
        if !req.no_owner {
            return Err(RestoreError::Plan(format!(
                "database `{target}`: the backup's database names role{} {} that the target server lacks \
                 (as owner, in its ACL or settings); restore them with --globals, create them, \
                 or use --no-owner to skip the owner and leave out grants to missing roles",
                if missing.len() == 1 { "" } else { "s" },
                missing.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
            )));
        }
        notes.push(format!(
            "note: `{target}`: left out grants and settings for role(s) missing on the target: {}",
            missing.join(", ")
        ));
    }
    let created = if target_state(cfg, &admin, target).await? == TargetState::Missing {
        let sql = sql::create_database(target, props.as_ref())
            .map_err(|e| RestoreError::Plan(e.to_string()))?;
        admin
            .batch_execute(&sql)
            .await
            .map_err(|source| PgError::Query {
                database: cfg.maintenance_db.clone(),
                what: "create target database (with the original's encoding and locale; \
                       if the target server lacks that locale, create the database yourself and restore into it)",
                source,
            })?;
        true
    } else {
        false
    };

    let job = database::Job {
        cfg: cfg.clone(),
        chosen,
        target: target.to_owned(),
        staged: Opener {
            path: staged.to_owned(),
            art: a.clone(),
            ids: req.identities.clone(),
            progress: req.progress.clone(),
        },
        staging_dir: staging_dir.to_owned(),
        raw_bytes: a.raw_bytes,
        jobs: req.jobs.max(1),
        clean: req.clean,
        no_owner: req.no_owner,
    };
    let kill = KillSwitch::default();
    let kill2 = KillSwitch::default();
    let _watch = crate::interrupt::kill_on_cancel(&req.cancel, &kill);
    let _watch2 = crate::interrupt::kill_on_cancel(&req.cancel, &kill2);
    let stop = req.cancel.clone();
    let result =
        tokio::task::spawn_blocking(move || database::run_blocking(&job, stop, (&kill, &kill2)))
            .await
            .map_err(|_| RestoreError::Join)?;
    let applied = match (result, &props) {
        (Err(source), _) => Err(RestoreError::PgRestore {
            database: target.to_owned(),
            source,
            left: DbLeft::Existing,
        }),
        (Ok(()), Some(p)) => {
            database::apply_properties(cfg, &mut admin, target, p, req.no_owner, &missing).await
        }
        (Ok(()), None) => {
            notes.push(format!(
                "note: `{target}`: this backup predates recorded database properties; \
                 owner, ACL, comment and settings of the database itself were not restored"
            ));
            Ok(())
        }
    };
    if let Err(e) = applied {
        let left = if created {
            drop_created(&admin, target).await
        } else {
            DbLeft::Existing
        };
        return Err(match e {
            RestoreError::PgRestore {
                database, source, ..
            } => RestoreError::PgRestore {
                database,
                source,
                left,
            },
            other => RestoreError::Plan(format!(
                "restoring into database `{target}` failed ({left}): {other}"
            )),
        });
    }
    Ok(notes)
}

/// What a failed restore left of its target database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbLeft {
    /// The database existed before; with one transaction it is unchanged,
    /// with `--jobs N` it may hold part of the restore.
    Existing,
    /// ccbackup created it and dropped it again.
    Dropped,
    /// ccbackup created it and could not drop it: it is still there.
    NotDropped(String),
}

impl std::fmt::Display for DbLeft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbLeft::Existing => write!(f, "the database existed before and was kept"),
            DbLeft::Dropped => write!(f, "the database ccbackup had created for it was dropped again"),
            DbLeft::NotDropped(e) => write!(
                f,
                "the database ccbackup had created for it is STILL THERE (drop failed: {e}); drop it by hand"
            ),
        }
    }
}

/// Drops a database this restore created. `WITH (FORCE)` ends sessions a
/// killed `pg_restore` may have left behind on the server.
async fn drop_created(admin: &Client, target: &str) -> DbLeft {
    let sql = format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(target)
    );
    match admin.batch_execute(&sql).await {
        Ok(()) => {
            tracing::info!(
                database = target,
                "dropped the database this restore had created"
            );
            DbLeft::Dropped
        }
        Err(e) => {
            let why = postgres::pg_text(&e);
            tracing::error!(database = target, error = %why, "cannot drop the database this restore created");
            DbLeft::NotDropped(why)
        }
    }
}

/// Checks every statement of the staged globals against what pg_dumpall
/// writes, then applies them through the driver, never through psql (whose
/// meta-commands would let the store run programs here).
async fn apply_globals(
    cfg: &PostgresConfig,
    a: &Artifact,
    staged: &Path,
    req: &RestoreRequest,
) -> Result<Vec<String>, RestoreError> {
    let opener = Opener {
        path: staged.to_owned(),
        art: a.clone(),
        ids: req.identities.clone(),
        progress: req.progress.clone(),
    };
    Ok(globals::apply(cfg, &a.key, &opener, req.keep_role_passwords, req.dry_run).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::manifest::{Compression, PostgresInfo, TreeInfo};

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
