//! PostgreSQL source: one `pg_dump` artifact per database plus the globals.
//!
//! Discovery (server version, database list) goes through
//! [`crate::pg::conn`]; the dumps are the real `pg_dump`/`pg_dumpall` programs,
//! fed the password through `PGPASSWORD` in their environment, never argv.
//!
//! With `row_counts` on, the rows of every table are counted in the dump
//! itself as it streams to the store ([`super::pgcount`]): no query runs on
//! the server, and the counts are exactly what the dump contains, which is
//! what `verify --restore-test` compares against. When the archive cannot
//! be read that way the backup still succeeds, with a warning and no counts
//! (the restore test then checks only that the dump restores): a second
//! scan of the database to recover counts would cost more than they are
//! worth.

use std::future::Future;
use std::process::Command;

use futures::stream::{FuturesUnordered, StreamExt};

use tokio_postgres::Client;

use super::pgcount::{CountError, CountingWriter};
use super::Sink;
use crate::backup::pipeline::PipelineError;
use crate::config::{DatabaseSelection, PostgresConfig};
use crate::pg::conn::{base_command, connect, conninfo, discover, server_went_away, PgError};
use crate::pg::tools::{self, PgTools};
use crate::repo::manifest::{
    Artifact, ArtifactDetail, ArtifactKind, DbGrant, DbProperties, DbSetting, PostgresInfo,
    TableRows,
};
use crate::retry::{Class, Transient};
use crate::sys::child::{stream_stdout, ChildError};

/// What backing up a postgres source can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PgSourceError {
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("dumping database `{database}` failed")]
    Dump {
        database: String,
        source: PipelineError<ChildError>,
    },
    #[error("dumping globals failed")]
    Globals { source: PipelineError<ChildError> },
    /// A dump failed and the server went away under it (restart, admin
    /// shutdown, lost network): worth another attempt.
    #[error("{what} failed because the server went away: {why}")]
    ServerLost {
        what: String,
        why: String,
        source: PipelineError<ChildError>,
    },
}

impl Transient for PgSourceError {
    fn class(&self) -> Class {
        match self {
            PgSourceError::Pg(e) => e.class(),
            PgSourceError::Dump { source, .. } | PgSourceError::Globals { source } => {
                source.class()
            }
            PgSourceError::ServerLost { .. } => Class::Transient,
        }
    }
}

/// The database-level properties of `database` that `pg_dump` only writes
/// for `--create` restores: how it was created (encoding, locale), owner,
/// ACL, comment and settings. Columns differ between server versions
/// (`datlocprovider` 15+, `daticurules` 16+, `datlocale` 17+), so the row is
/// read as JSON and whatever the server has is taken.
pub async fn database_properties(client: &Client, database: &str) -> Result<DbProperties, PgError> {
    let err = |what| PgError::query(database, what);
    let row = client
        .query_one(
            "SELECT row_to_json(d)::text, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), \
                    shobj_description(d.oid, 'pg_database'), d.datacl IS NULL \
             FROM pg_database d WHERE d.datname = $1",
            &[&database],
        )
        .await
        .map_err(err("read database properties"))?;
    let json: String = row.get(0);
    let cols: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    let text = |k: &str| cols.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let locale_provider = text("datlocprovider").map(|p| match p.as_str() {
        "i" => "icu".to_owned(),
        "b" => "builtin".to_owned(),
        _ => "libc".to_owned(),
    });
    let default_acl: bool = row.get(4);
    let acl = if default_acl {
        None
    } else {
        let rows = client
            .query(
                "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, \
                        a.privilege_type, a.is_grantable \
                 FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a \
                 WHERE d.datname = $1 ORDER BY 1 NULLS FIRST, 2",
                &[&database],
            )
            .await
            .map_err(err("read database ACL"))?;
        Some(
            rows.iter()
                .map(|r| DbGrant {
                    grantee: r.get(0),
                    privilege: r.get(1),
                    grantable: r.get(2),
                })
                .collect(),
        )
    };
    let rows = client
        .query(
            "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, s.setconfig \
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE d.datname = $1 ORDER BY 1 NULLS FIRST",
            &[&database],
        )
        .await
        .map_err(err("read database settings"))?;
    let mut settings = Vec::new();
    for r in &rows {
        let role: Option<String> = r.get(0);
        let config: Vec<String> = r.get::<_, Option<Vec<String>>>(1).unwrap_or_default();
        for c in config {
            if let Some((name, value)) = c.split_once('=') {
                settings.push(DbSetting {
                    role: role.clone(),
                    name: name.to_owned(),
                    value: value.to_owned(),
                });
            }
        }
    }
    let icu = text("datlocale").or_else(|| text("daticulocale"));
    Ok(DbProperties {
        owner: row.get(1),
        encoding: row.get(2),
        collate: text("datcollate").unwrap_or_default(),
        ctype: text("datctype").unwrap_or_default(),
        locale: match locale_provider.as_deref() {
            Some("icu") | Some("builtin") => icu,
            _ => None,
        },
        locale_provider,
        icu_rules: text("daticurules"),
        comment: row.get(3),
        acl,
        settings,
    })
}

impl super::Source for PostgresConfig {
    async fn produce<S: Sink>(
        &self,
        sink: &S,
        name: &str,
    ) -> Result<Vec<Artifact>, super::SourceError> {
        backup(sink, name, self)
            .await
            .map_err(super::SourceError::Postgres)
    }
}

/// Backs up one postgres source: globals (optional) then each database.
pub async fn backup(
    ctx: &impl Sink,
    source: &str,
    cfg: &PostgresConfig,
) -> Result<Vec<Artifact>, PgSourceError> {
    let server = discover(cfg).await?;
    let tools = tools::find(server.version_num, &server.version, cfg.bin_dir.as_deref())
        .map_err(PgError::from)?;
    tracing::info!(
        source,
        server = %server.version,
        pg_dump = %tools.version,
        bin_dir = %tools.dir_display(),
        databases = server.databases.len(),
        "dumping PostgreSQL"
    );
    if let Some(w) = newer_client_warning(&tools, &server.version, server.version_num) {
        tracing::warn!(source, "{w}");
    }
    let info = |database: Option<String>, tables, database_properties| PostgresInfo {
        database,
        server_version: server.version.clone(),
        server_version_num: server.version_num,
        pg_dump_version: tools.version.clone(),
        tables,
        database_properties,
    };
    let admin = connect(cfg, &cfg.maintenance_db).await?;
    let mut artifacts = Vec::new();

    if cfg.globals {
        let rel = format!("{source}/globals.sql.zst");
        let mut cmd = base_command(&tools, "pg_dumpall", cfg);
        cmd.arg("--globals-only")
            .arg("--no-password")
            .arg(format!("--dbname={}", conninfo(cfg, &cfg.maintenance_db)));
        let kill = ctx.kill().clone();
        let up = ctx
            .put(&rel, ArtifactKind::PgGlobals, move |w| {
                stream_stdout("pg_dumpall", cmd, w, &kill)
            })
            .await
            .map(|(_, up)| up);
        let up = match up {
            Ok(up) => up,
            Err(source) => {
                return Err(lost_or(
                    ctx,
                    cfg,
                    &server.started,
                    "dumping globals",
                    source,
                    |source| PgSourceError::Globals { source },
                )
                .await)
            }
        };
        artifacts.push(ctx.artifact(
            rel,
            source,
            ArtifactKind::PgGlobals,
            up,
            Some(ArtifactDetail::Postgres(info(None, None, None))),
        ));
    }

    let one = DumpOne {
        ctx,
        source,
        cfg,
        admin: &admin,
        tools: &tools,
        started: &server.started,
        info: &info,
    };
    // A plain loop, not an iterator adapter holding a closure: the
    // futures must stay `Send` for the daemon's spawned runs.
    let mut dumps = Vec::with_capacity(server.databases.len());
    for (i, db) in server.databases.iter().enumerate() {
        dumps.push(one.dump(i, db));
    }
    for a in in_order_bounded(dumps, cfg.parallel)
        .await?
        .into_iter()
        .flatten()
    {
        artifacts.push(a);
    }
    Ok(artifacts)
}

/// What dumping one database needs from the source's run.
struct DumpOne<'a, S, I> {
    ctx: &'a S,
    source: &'a str,
    cfg: &'a PostgresConfig,
    admin: &'a Client,
    tools: &'a PgTools,
    started: &'a str,
    info: &'a I,
}

impl<S, I> DumpOne<'_, S, I>
where
    S: Sink,
    I: Fn(Option<String>, Option<Vec<TableRows>>, Option<DbProperties>) -> PostgresInfo,
{
    /// Dumps database number `i` (its key keeps discovery's order whatever
    /// order the dumps finish in). `None`: dropped since discovery.
    async fn dump(&self, i: usize, db: &String) -> Result<Option<Artifact>, PgSourceError> {
        let (ctx, source, cfg, admin) = (self.ctx, self.source, self.cfg, self.admin);
        let rel = format!(
            "{source}/{:02}-{}.dump.zst",
            i + 1,
            crate::repo::store::key_safe(db)
        );
        let props = match database_properties(admin, db).await {
            Ok(p) => p,
            Err(e) if dropped_since_discovery(cfg, admin, db).await => {
                skipped_dropped(source, db, &e);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let mut cmd = base_command(self.tools, "pg_dump", cfg);
        cmd.arg("--format=custom")
            .arg("--compress=0")
            .arg("--no-password")
            .arg(format!("--dbname={}", conninfo(cfg, db)));
        let kill = ctx.kill().clone();
        let count = cfg.row_counts;
        let put = ctx
            .put(&rel, ArtifactKind::PgDump, move |w| {
                dump_counting(cmd, w, &kill, count)
            })
            .await;
        let (counted, up) = match put {
            Ok(v) => v,
            Err(e) if dropped_since_discovery(cfg, admin, db).await => {
                skipped_dropped(source, db, &e);
                return Ok(None);
            }
            Err(source) => {
                let what = format!("dumping database `{db}`");
                return Err(lost_or(ctx, cfg, self.started, &what, source, |source| {
                    PgSourceError::Dump {
                        database: db.clone(),
                        source,
                    }
                })
                .await);
            }
        };
        let tables = match counted {
            Some(Ok(tables)) => Some(tables),
            Some(Err(e)) => {
                tracing::warn!(
                    source,
                    database = %db,
                    error = %e,
                    "no row counts for this dump: its table data could not be counted \
                     (the backup itself is complete; verify --restore-test will check \
                     only that it restores)"
                );
                None
            }
            None => None,
        };
        Ok(Some(ctx.artifact(
            rel,
            source,
            ArtifactKind::PgDump,
            up,
            Some(ArtifactDetail::Postgres((self.info)(
                Some(db.clone()),
                tables,
                Some(props),
            ))),
        )))
    }
}

/// Runs `jobs` with at most `limit` at once and returns their results in
/// the order given. After the first failure no new job starts, but those
/// already running are driven to their end (each owns a `pg_dump` and an
/// upload that must finish or fail cleanly, not be dropped halfway); then
/// that first failure is returned.
pub(crate) async fn in_order_bounded<T, E, F>(
    jobs: impl IntoIterator<Item = F>,
    limit: usize,
) -> Result<Vec<T>, E>
where
    F: Future<Output = Result<T, E>>,
{
    let mut pending = jobs.into_iter().enumerate();
    // Unordered, so a failure is seen the moment it happens (and nothing
    // new starts after it), not only when the jobs before it are done.
    let mut running = FuturesUnordered::new();
    let mut done = Vec::new();
    let mut failed = None;
    loop {
        while failed.is_none() && running.len() < limit.max(1) {
            match pending.next() {
                Some((i, job)) => running.push(async move { (i, job.await) }),
                None => break,
            }
        }
        match running.next().await {
            Some((i, Ok(v))) => done.push((i, v)),
            Some((_, Err(e))) => {
                failed.get_or_insert(e);
            }
            None => break,
        }
    }
    match failed {
        Some(e) => Err(e),
        None => {
            done.sort_by_key(|(i, _)| *i);
            Ok(done.into_iter().map(|(_, v)| v).collect())
        }
    }
}

/// With `databases: all`, whether `db` (found by discovery, then failing)
/// is gone from the server: dropped by someone while the backup ran, so
/// there is nothing to back up and the other databases should not pay for
/// it. Named databases are what the operator asked for: their absence stays
/// an error, as does any failure while the database still exists or while
/// the server cannot say.
async fn dropped_since_discovery(cfg: &PostgresConfig, admin: &Client, db: &str) -> bool {
    cfg.databases == DatabaseSelection::All
        && matches!(
            admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
                .await,
            Ok(None)
        )
}

fn skipped_dropped(source: &str, db: &str, why: &(dyn std::error::Error + 'static)) {
    tracing::warn!(
        source,
        database = %db,
        error = %crate::error::chain(why),
        "database `{db}` was dropped after the backup listed it; skipped (the other databases are backed up)"
    );
}

/// The error of a failed dump: transient when the server went away under
/// it (decided by asking the server, never from pg_dump's stderr text),
/// otherwise what `plain` makes of it.
async fn lost_or(
    ctx: &impl Sink,
    cfg: &PostgresConfig,
    started: &str,
    what: &str,
    source: PipelineError<ChildError>,
    plain: impl FnOnce(PipelineError<ChildError>) -> PgSourceError,
) -> PgSourceError {
    // Stopped by us, or already transient: nothing to ask the server.
    if ctx.kill().is_killed() || source.is_transient() {
        return plain(source);
    }
    match server_went_away(cfg, started).await {
        Some(why) => {
            tracing::warn!(what, why = %why, "a dump failed because the server went away; the run counts as a transient failure");
            PgSourceError::ServerLost {
                what: what.to_owned(),
                why,
                source,
            }
        }
        None => plain(source),
    }
}

/// Runs `pg_dump` into `w`; with `count`, through a tap that counts every
/// table's rows in the archive on the way.
fn dump_counting(
    cmd: Command,
    w: &mut dyn std::io::Write,
    kill: &crate::sys::child::KillSwitch,
    count: bool,
) -> Result<Option<Result<Vec<TableRows>, CountError>>, ChildError> {
    if !count {
        return stream_stdout("pg_dump", cmd, w, kill).map(|_| None);
    }
    let mut tap = CountingWriter::new(w);
    stream_stdout("pg_dump", cmd, &mut tap, kill)?;
    Ok(Some(tap.finish()))
}

/// The operator-facing note when the client programs are of a newer major
/// than the server: the archive then needs a `pg_restore` that new, which
/// restores onto a server before 17 only through SQL (see
/// `restore::restore_database`).
pub fn newer_client_warning(
    tools: &PgTools,
    server_version: &str,
    version_num: u32,
) -> Option<String> {
    let server = tools::server_major(version_num);
    (tools.major > server).then(|| {
        format!(
            "pg_dump {} (in {}) is newer than the PostgreSQL {server_version} server: its archives need \
             pg_restore {} or newer, so restoring them needs that client too{}",
            tools.version,
            tools.dir_display(),
            tools.major,
            if tools.major >= 17 && server < 17 {
                format!(
                    "; onto a PostgreSQL {server} server ccbackup restores them as SQL through psql"
                )
            } else {
                String::new()
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::in_order_bounded;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Jobs that sleep (paused time) for the given milliseconds and record
    /// how many run at once and which started.
    fn jobs(
        plan: &[(u64, bool)],
        now: &Arc<AtomicUsize>,
        peak: &Arc<AtomicUsize>,
        started: &Arc<std::sync::Mutex<Vec<usize>>>,
    ) -> Vec<impl std::future::Future<Output = Result<usize, String>>> {
        plan.iter()
            .enumerate()
            .map(|(i, &(ms, ok))| {
                let (now, peak, started) = (now.clone(), peak.clone(), started.clone());
                async move {
                    started.lock().unwrap().push(i);
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    if ok {
                        Ok(i)
                    } else {
                        Err(format!("job {i} failed"))
                    }
                }
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn runs_at_most_limit_at_once_and_keeps_the_given_order() {
        let (now, peak) = (Arc::default(), Arc::default());
        let started = Arc::default();
        // The first job is the slowest: results still come back in order.
        let plan = [(500, true), (10, true), (20, true), (5, true), (1, true)];
        let got = in_order_bounded(jobs(&plan, &now, &peak, &started), 2)
            .await
            .unwrap();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn limit_one_is_one_after_another() {
        let (now, peak) = (Arc::default(), Arc::default());
        let started = Arc::default();
        let plan = [(3, true), (2, true), (1, true)];
        let got = in_order_bounded(jobs(&plan, &now, &peak, &started), 1)
            .await
            .unwrap();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(peak.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failure_nothing_new_starts_and_running_jobs_finish() {
        let (now, peak) = (Arc::default(), Arc::default());
        let started = Arc::default();
        // Job 1 fails at 10 ms while job 0 runs until 100 ms; jobs 2 and 3
        // never start, job 0 is driven to its end.
        let plan = [(100, true), (10, false), (1, true), (1, true)];
        let err = in_order_bounded(jobs(&plan, &now, &peak, &started), 2)
            .await
            .unwrap_err();
        assert_eq!(err, "job 1 failed");
        assert_eq!(*started.lock().unwrap(), vec![0, 1]);
        assert_eq!(now.load(Ordering::SeqCst), 0, "a job was dropped mid-way");
    }
}
