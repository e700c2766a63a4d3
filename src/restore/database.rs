//! Restoring one database dump: which client programs and which way
//! (`pg_restore` straight into the server, or its SQL through `psql`), the
//! `CREATE DATABASE` of the target, and the database-level properties
//! `pg_restore` only applies with `--create`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tokio_postgres::Client;

use super::globals::{self, GlobalsReport};
use super::plan::{target_state, TargetState};
use super::report::Warning;
use super::{RestoreError, RestoreRequest};
use crate::config::PostgresConfig;
use crate::crypto::Opener;
use crate::pg::conn::{self, conninfo, quote_ident, PgError, ServerInfo};
use crate::pg::sql::{self, FilterReport};
use crate::pg::tools::{self, PgTools, Purpose};
use crate::repo::manifest::{Artifact, DbProperties};
use crate::restore::fetch;
use crate::sys::child::{feed_stdin, pipe_through, ChildError, KillSwitch};

/// How the archive reaches the target server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePath {
    /// `pg_restore --dbname`: the normal case.
    Direct,
    /// `pg_restore -f -` filtered into `psql`: a 17+ `pg_restore` onto a
    /// server before 17 (see [`restore_path`]).
    Sql,
}

/// The client programs and the way chosen for one database restore.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub tools: PgTools,
    pub server: ServerInfo,
    pub path: RestorePath,
}

impl Chosen {
    /// One line for the log and the report: which programs, from where.
    pub fn describe(&self) -> String {
        format!(
            "pg_restore {} from {} for the PostgreSQL {} target{}",
            self.tools.version,
            self.tools.dir_display(),
            self.server.version,
            match self.path {
                RestorePath::Direct => "",
                RestorePath::Sql =>
                    ", as SQL through psql (the server predates transaction_timeout)",
            }
        )
    }
}

/// The major of the `pg_dump` that wrote an artifact (0 when unknown).
pub fn dump_tools_major(a: &Artifact) -> u32 {
    a.postgres()
        .and_then(|p| tools::parse_version_output(&p.pg_dump_version))
        .map(|(_, m)| m)
        .unwrap_or(0)
}

/// Pure: how a `pg_restore` of `tools` restores onto a server of
/// `server_major`.
///
/// `pg_restore` 17+ always sends `SET transaction_timeout = 0`, which a
/// server before 17 rejects, and an older `pg_restore` cannot read a newer
/// `pg_dump`'s archive. So a backup taken with a newer client (the only way
/// to dump a 16 server where only 18's clients exist) is restored onto its
/// own server as SQL: `pg_restore -f -` without that one statement, applied
/// by `psql -1 -v ON_ERROR_STOP=1`. psql runs meta-commands from its input
/// and the archive is untrusted, so this is only done with a `pg_restore`
/// that supports `--restrict-key` (17.6+), whose `\restrict KEY` line makes
/// psql refuse every meta-command the archive could carry; the filter
/// checks that line is there before psql gets anything
/// ([`sql::filter_restore_sql`]). Applying the SQL through tokio-postgres
/// instead would mean parsing SQL and COPY blocks ourselves; psql in
/// restricted mode is the smaller thing to get right.
pub fn restore_path(tools: &PgTools, server_major: u32) -> Result<RestorePath, String> {
    if tools.major < 17 || server_major >= 17 {
        return Ok(RestorePath::Direct);
    }
    if tools.has_restrict_key() {
        Ok(RestorePath::Sql)
    } else {
        Err(format!(
            "pg_restore {} (in {}) sends `SET transaction_timeout`, which the PostgreSQL {server_major} \
             server rejects, and it is too old (before 17.6) for ccbackup to restore its SQL through psql \
             safely (--restrict-key); use pg_restore 17.6 or newer",
            tools.version,
            tools.dir_display()
        ))
    }
}

/// Chooses the client for restoring `a` onto the server `cfg` points at:
/// at least the archive's `pg_dump` major (older ones cannot read it) and
/// the server's, the exact one preferred.
pub async fn choose(cfg: &PostgresConfig, a: &Artifact) -> Result<Chosen, RestoreError> {
    let server = conn::discover(&PostgresConfig {
        databases: crate::config::DatabaseSelection::Named(Vec::new()),
        ..cfg.clone()
    })
    .await?;
    let server_major = tools::server_major(server.version_num);
    let need = server_major.max(dump_tools_major(a));
    let tools = tools::find_for(
        need,
        &server.version,
        cfg.bin_dir.as_deref(),
        Purpose::Restore,
    )?;
    let path = restore_path(&tools, server_major).map_err(RestoreError::Plan)?;
    Ok(Chosen {
        tools,
        server,
        path,
    })
}

/// Roles the properties name that do not exist on the target.
pub async fn missing_roles(
    cfg: &PostgresConfig,
    admin: &Client,
    props: &DbProperties,
    no_owner: bool,
) -> Result<Vec<String>, PgError> {
    let wanted = sql::roles_named(props, no_owner);
    let rows = admin
        .query(
            "SELECT r FROM unnest($1::text[]) r WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)",
            &[&wanted],
        )
        .await
        .map_err(PgError::query(&cfg.maintenance_db, "look up roles"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Gives `target` the original's owner, comment, settings and ACL, all in
/// one transaction.
pub async fn apply_properties(
    cfg: &PostgresConfig,
    admin: &mut Client,
    target: &str,
    props: &DbProperties,
    no_owner: bool,
    skip_roles: &[String],
) -> Result<(), RestoreError> {
    let stmts = sql::property_statements(target, props, no_owner, skip_roles)
        .map_err(|e| RestoreError::Plan(e.to_string()))?;
    let err = |source| PgError::Query {
        database: cfg.maintenance_db.clone(),
        what: "apply the database's owner, ACL, comment and settings",
        cause: source,
    };
    let tx = admin.transaction().await.map_err(err)?;
    for s in &stmts {
        tx.batch_execute(s).await.map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    Ok(())
}

/// A database artifact in staging.
#[derive(Debug, Clone, Copy)]
pub enum Staged<'a> {
    /// As stored: compressed, perhaps encrypted.
    Stored(&'a Path),
    /// Already decoded while it was downloaded (see
    /// [`super::fetch::plain`]): what `pg_restore --jobs` reads.
    Plain(&'a Path),
}

/// What the blocking part of a restore needs.
pub struct Job {
    pub cfg: PostgresConfig,
    pub chosen: Chosen,
    pub target: String,
    pub staged: crate::crypto::Opener,
    /// `staged` holds the decoded archive already.
    pub plain: bool,
    pub staging_dir: PathBuf,
    pub raw_bytes: u64,
    pub jobs: u32,
    pub clean: bool,
    pub no_owner: bool,
    /// `--use-list`: only these TOC entries (`--table`, `--schema`).
    pub list: Option<PathBuf>,
}

fn open_err(source: std::io::Error) -> ChildError {
    ChildError::Read {
        program: "zstd".to_owned(),
        source,
    }
}

fn pg_restore_command(job: &Job) -> Command {
    let mut cmd = conn::base_command(&job.chosen.tools, "pg_restore", &job.cfg);
    cmd.arg("--no-password").arg("--exit-on-error");
    if job.clean {
        cmd.arg("--clean").arg("--if-exists");
    }
    if job.no_owner {
        cmd.arg("--no-owner");
    }
    if let Some(list) = &job.list {
        cmd.arg("--use-list").arg(list);
    }
    cmd
}

/// Runs the restore (blocking): the archive from `staged`, decompressed on
/// the fly, into the target.
pub fn run_blocking(
    job: &Job,
    stop: tokio_util::sync::CancellationToken,
    kills: (&KillSwitch, &KillSwitch),
) -> Result<(), ChildError> {
    if job.plain && job.jobs > 1 && job.chosen.path == RestorePath::Direct {
        return run_jobs(job, &job.staged.path, kills.0);
    }
    let dec: Box<dyn std::io::Read + Send> = if job.plain {
        Box::new(std::fs::File::open(&job.staged.path).map_err(open_err)?)
    } else {
        job.staged.open().map_err(open_err)?
    };
    let mut dec = crate::interrupt::CancelRead::new(dec, stop);
    match job.chosen.path {
        RestorePath::Sql => run_sql(job, &mut dec, kills),
        RestorePath::Direct => run_direct(job, &mut dec, kills.0),
    }
}

fn run_direct(job: &Job, dec: &mut dyn std::io::Read, kill: &KillSwitch) -> Result<(), ChildError> {
    let mut cmd = pg_restore_command(job);
    cmd.arg(format!("--dbname={}", conninfo(&job.cfg, &job.target)));
    if job.jobs <= 1 {
        // One transaction: a failure leaves the target untouched.
        cmd.arg("--single-transaction");
        return feed_stdin("pg_restore", cmd, dec, kill).map(|_| ());
    }
    // pg_restore -j needs a seekable archive: decompress to disk.
    let free = fetch::free_space(&job.staging_dir).map_err(open_err)?;
    if free < job.raw_bytes + 64 * 1024 * 1024 {
        return Err(open_err(std::io::Error::other(format!(
            "not enough space in {} for the {}-byte archive needed by --jobs",
            job.staging_dir.display(),
            job.raw_bytes
        ))));
    }
    let dump = job.staging_dir.join("restore.dump");
    let r = decompress_to(dec, &dump).and_then(|()| run_jobs(job, &dump, kill));
    let _ = std::fs::remove_file(&dump);
    r
}

/// `pg_restore --jobs N` of a decoded archive on disk.
fn run_jobs(job: &Job, dump: &Path, kill: &KillSwitch) -> Result<(), ChildError> {
    let mut cmd = pg_restore_command(job);
    cmd.arg(format!("--dbname={}", conninfo(&job.cfg, &job.target)))
        .arg(format!("--jobs={}", job.jobs))
        .arg(dump);
    feed_stdin("pg_restore", cmd, &mut std::io::empty(), kill).map(|_| ())
}

fn decompress_to(dec: &mut dyn std::io::Read, dump: &Path) -> Result<(), ChildError> {
    let f = std::fs::File::create(dump).map_err(open_err)?;
    let mut w = std::io::BufWriter::with_capacity(1024 * 1024, f);
    std::io::copy(dec, &mut w).map_err(open_err)?;
    w.flush().map_err(open_err)
}

/// `pg_restore -f - | filter | psql`, in one psql transaction: a failure
/// anywhere rolls everything back (see [`pipe_through`] for why a failed
/// `pg_restore` never lets psql commit). Always one transaction: `--jobs`
/// needs a direct connection.
fn run_sql(
    job: &Job,
    dec: &mut (dyn std::io::Read + Send),
    kills: (&KillSwitch, &KillSwitch),
) -> Result<(), ChildError> {
    let key = sql::restrict_key();
    let mut restore = pg_restore_command(job);
    restore.arg(format!("--restrict-key={key}")).arg("--file=-");
    let mut psql = conn::base_command(&job.chosen.tools, "psql", &job.cfg);
    psql.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "--file=-",
    ])
    .arg("--no-password")
    .arg(format!("--dbname={}", conninfo(&job.cfg, &job.target)));
    let mut report = FilterReport::default();
    let mut filter = |from: &mut dyn std::io::Read, to: &mut dyn Write| {
        report = sql::filter_restore_sql(from, to, &key)?;
        Ok(())
    };
    pipe_through(
        ("pg_restore", restore),
        dec,
        &mut filter,
        ("psql", psql),
        kills,
    )?;
    tracing::info!(
        database = %job.target,
        sql_bytes = report.bytes,
        dropped_transaction_timeout = report.dropped_transaction_timeout,
        "restored through psql"
    );
    Ok(())
}

/// Pure: missing roles refuse the restore unless `--no-owner` leaves out
/// what names them, which is then a warning.
fn allow_missing_roles(
    target: &str,
    missing: &[String],
    no_owner: bool,
) -> Result<Warning, RestoreError> {
    if !no_owner {
        return Err(RestoreError::Plan(format!(
            "database `{target}`: the backup's database names role{} {} that the target server lacks \
             (as owner, in its ACL or settings); restore them with --globals, create them, \
             or use --no-owner to skip the owner and leave out grants to missing roles",
            if missing.len() == 1 { "" } else { "s" },
            missing.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(Warning::MissingRoles {
        target: target.to_owned(),
        roles: missing.to_vec(),
    })
}

/// Creates the target with the original's encoding and locale.
async fn create_target(
    cfg: &PostgresConfig,
    admin: &Client,
    target: &str,
    props: Option<&DbProperties>,
) -> Result<(), RestoreError> {
    let sql = sql::create_database(target, props).map_err(|e| RestoreError::Plan(e.to_string()))?;
    admin.batch_execute(&sql).await.map_err(PgError::query(
        &cfg.maintenance_db,
        "create target database (with the original's encoding and locale; \
         if the target server lacks that locale, create the database yourself and restore into it)",
    ))?;
    Ok(())
}

/// Runs the blocking part of a restore; a cancel kills its children.
async fn run_job(
    job: Job,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Result<(), ChildError>, RestoreError> {
    let kill = KillSwitch::default();
    let kill2 = KillSwitch::default();
    let _watch = crate::interrupt::kill_on_cancel(cancel, &kill);
    let _watch2 = crate::interrupt::kill_on_cancel(cancel, &kill2);
    let stop = cancel.clone();
    tokio::task::spawn_blocking(move || run_blocking(&job, stop, (&kill, &kill2)))
        .await
        .map_err(|_| RestoreError::Join)
}

pub(super) async fn restore_database(
    cfg: &PostgresConfig,
    a: &Artifact,
    target: &str,
    staged: Staged<'_>,
    staging_dir: &Path,
    req: &RestoreRequest,
    list: Option<&Path>,
) -> Result<Vec<Warning>, RestoreError> {
    let (staged, plain) = match staged {
        Staged::Stored(p) => (p, false),
        Staged::Plain(p) => (p, true),
    };
    let chosen = choose(cfg, a).await?;
    tracing::info!(
        database = target,
        pg_restore = %chosen.tools.version,
        bin_dir = %chosen.tools.dir_display(),
        server = %chosen.server.version,
        sql = chosen.path ==  RestorePath::Sql,
        "restoring with {}",
        chosen.describe()
    );
    let mut admin = conn::connect(cfg, &cfg.maintenance_db).await?;
    let create = target_state(cfg, &admin, target).await? == TargetState::Missing;
    // Some tables into an existing database leave the database itself
    // alone: its owner, grants and settings are not what was asked for.
    let whole = list.is_none() || create;
    let props = a
        .postgres()
        .and_then(|p| p.database_properties.clone())
        .filter(|_| whole);
    let mut notes = Vec::new();
    // Roles are checked here, not before downloading: `--globals` may
    // create them in an earlier step of the same restore.
    let missing = match &props {
        Some(p) => missing_roles(cfg, &admin, p, req.no_owner).await?,
        None => Vec::new(),
    };
    if !missing.is_empty() {
        notes.push(allow_missing_roles(target, &missing, req.no_owner)?);
    }
    if create {
        create_target(cfg, &admin, target, props.as_ref()).await?;
    }

    let job = Job {
        cfg: cfg.clone(),
        chosen,
        target: target.to_owned(),
        staged: Opener {
            path: staged.to_owned(),
            art: a.clone(),
            ids: req.identities.clone(),
            progress: req.progress.clone(),
        },
        plain,
        staging_dir: staging_dir.to_owned(),
        raw_bytes: a.raw_bytes,
        jobs: req.jobs.max(1),
        clean: req.clean,
        no_owner: req.no_owner,
        list: list.map(Path::to_owned),
    };
    let result = run_job(job, &req.cancel).await?;
    let applied = match (result, &props) {
        (Err(source), _) => Err(RestoreError::PgRestore {
            database: target.to_owned(),
            source,
            left: DbLeft::Existing,
        }),
        (Ok(()), Some(p)) => {
            apply_properties(cfg, &mut admin, target, p, req.no_owner, &missing).await
        }
        (Ok(()), None) if !whole => Ok(()),
        (Ok(()), None) => {
            notes.push(Warning::NoDatabaseProperties {
                target: target.to_owned(),
            });
            Ok(())
        }
    };
    if let Err(e) = applied {
        let left = if create {
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
pub(super) async fn drop_created(admin: &Client, target: &str) -> DbLeft {
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
            let why = conn::pg_text(&e);
            tracing::error!(database = target, error = %why, "cannot drop the database this restore created");
            DbLeft::NotDropped(why)
        }
    }
}

/// Checks every statement of the staged globals against what pg_dumpall
/// writes, then applies them through the driver, never through psql (whose
/// meta-commands would let the store run programs here).
pub(super) async fn apply_globals(
    cfg: &PostgresConfig,
    a: &Artifact,
    staged: &Path,
    req: &RestoreRequest,
) -> Result<GlobalsReport, RestoreError> {
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

    fn tools(v: &str) -> PgTools {
        PgTools {
            dir: Some(PathBuf::from("/opt/pg/bin")),
            major: tools::parse_version_output(v).unwrap().1,
            version: v.to_owned(),
        }
    }

    #[test]
    fn newer_pg_restore_onto_an_older_server_goes_through_sql() {
        assert_eq!(restore_path(&tools("18.6"), 16), Ok(RestorePath::Sql));
        assert_eq!(restore_path(&tools("18.6"), 15), Ok(RestorePath::Sql));
        assert_eq!(restore_path(&tools("18.6"), 18), Ok(RestorePath::Direct));
        assert_eq!(restore_path(&tools("17.2"), 17), Ok(RestorePath::Direct));
        assert_eq!(restore_path(&tools("16.4"), 16), Ok(RestorePath::Direct));
        let err = restore_path(&tools("17.5"), 16).unwrap_err();
        assert!(err.contains("17.6") && err.contains("/opt/pg/bin"), "{err}");
    }
}
