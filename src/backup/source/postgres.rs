//! PostgreSQL source: one `pg_dump` artifact per database plus the globals.
//!
//! Discovery (server version, database list, row counts) goes through
//! tokio-postgres; the dumps are the real `pg_dump`/`pg_dumpall` programs,
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

use std::process::Command;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::pgcount::{CountError, CountingWriter};
use super::Sink;
use crate::backup::pipeline::PipelineError;
use crate::config::{DatabaseSelection, PostgresConfig};
use crate::pg::tools::{self, PgTools, PgToolsError};
use crate::repo::manifest::{
    Artifact, ArtifactKind, DbGrant, DbProperties, DbSetting, PostgresInfo, TableRows,
};
use crate::retry::{Class, Transient};
use crate::sys::child::{stream_stdout, ChildError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("no password for PostgreSQL at {host}:{port} as `{user}`: password_file {why}")]
    Password {
        host: String,
        port: u16,
        user: String,
        why: String,
    },
    #[error(
        "cannot connect to PostgreSQL at {host}:{port} as `{user}` (database `{database}`): {}",
        pg_text(cause)
    )]
    Connect {
        host: String,
        port: u16,
        user: String,
        database: String,
        /// Folded into the message by [`pg_text`], so not a `source`.
        cause: tokio_postgres::Error,
    },
    #[error("query on database `{database}` failed ({what}): {}", pg_text(cause))]
    Query {
        database: String,
        what: &'static str,
        /// Folded into the message by [`pg_text`], so not a `source`.
        cause: tokio_postgres::Error,
    },
    #[error("database `{name}` does not exist on {host}:{port} (it has: {})", existing.join(", "))]
    MissingDatabase {
        name: String,
        host: String,
        port: u16,
        existing: Vec<String>,
    },
    #[error(transparent)]
    Tools(#[from] PgToolsError),
    #[error("dumping database `{database}` failed")]
    Dump {
        database: String,
        source: PipelineError<ChildError>,
    },
    #[error("dumping globals failed")]
    Globals { source: PipelineError<ChildError> },
}

impl Transient for PgError {
    fn class(&self) -> Class {
        match self {
            PgError::Connect { cause, .. } | PgError::Query { cause, .. } => cause.class(),
            PgError::Dump { source, .. } | PgError::Globals { source } => source.class(),
            PgError::Password { .. } | PgError::MissingDatabase { .. } | PgError::Tools(_) => {
                Class::Permanent
            }
        }
    }
}

/// tokio-postgres displays server errors as just "db error"; the server's
/// own message ("password authentication failed for user ...") is what an
/// operator needs, so it is spelled out, with the I/O cause for network
/// errors.
pub fn pg_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(&format!(": {c}"));
        }
        src = cause.source();
    }
    s
}

/// What discovery learnt about the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub version_num: u32,
    pub databases: Vec<String>,
}

/// A libpq connection string value: quoted, with `\` and `'` escaped, so
/// names with spaces, quotes, `=` or unicode pass through intact.
pub fn conninfo_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('\'');
    for c in v.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

pub fn conninfo(cfg: &PostgresConfig, database: &str) -> String {
    format!(
        "host={} port={} user={} dbname={} application_name=ccbackup connect_timeout={}",
        conninfo_value(&cfg.host),
        cfg.port,
        conninfo_value(&cfg.user),
        conninfo_value(database),
        CONNECT_TIMEOUT.as_secs()
    )
}

/// SQL identifier quoting (`"a""b"`).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub async fn connect(cfg: &PostgresConfig, database: &str) -> Result<Client, PgError> {
    if let Some(why) = &cfg.password_unreadable {
        return Err(PgError::Password {
            host: cfg.host.clone(),
            port: cfg.port,
            user: cfg.user.clone(),
            why: why.clone(),
        });
    }
    let mut c = tokio_postgres::Config::new();
    c.host(&cfg.host)
        .port(cfg.port)
        .user(&cfg.user)
        .dbname(database)
        .application_name("ccbackup")
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(p) = &cfg.password {
        c.password(p.expose());
    }
    let (client, connection) = c.connect(NoTls).await.map_err(|cause| PgError::Connect {
        host: cfg.host.clone(),
        port: cfg.port,
        user: cfg.user.clone(),
        database: database.to_owned(),
        cause,
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed with an error");
        }
    });
    Ok(client)
}

/// Asks the server its version and resolves the configured database list.
pub async fn discover(cfg: &PostgresConfig) -> Result<ServerInfo, PgError> {
    let client = connect(cfg, &cfg.maintenance_db).await?;
    let q = |what| {
        let db = cfg.maintenance_db.clone();
        move |cause| PgError::Query {
            database: db,
            what,
            cause,
        }
    };
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int",
            &[],
        )
        .await
        .map_err(q("server version"))?;
    let version: String = row.get(0);
    let version_num: i32 = row.get(1);
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
            &[],
        )
        .await
        .map_err(q("list databases"))?;
    let existing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let databases = match &cfg.databases {
        DatabaseSelection::All => existing,
        DatabaseSelection::Named(names) => {
            for n in names {
                if !existing.contains(n) {
                    return Err(PgError::MissingDatabase {
                        name: n.clone(),
                        host: cfg.host.clone(),
                        port: cfg.port,
                        existing,
                    });
                }
            }
            names.clone()
        }
    };
    Ok(ServerInfo {
        version: version
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
        version_num: u32::try_from(version_num).unwrap_or(0),
        databases,
    })
}

/// Tables whose data `pg_dump` writes: ordinary tables (partitions, not
/// their partitioned parents) outside the system schemas that no extension
/// owns. The stream counter ([`super::pgcount`]) yields the same set in the
/// same order, which `verify --restore-test` relies on.
const TABLES_SQL: &str = "
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2";

/// Exact row counts of every dumped table, in the client's current snapshot
/// (used by `verify --restore-test` on the restored database).
pub async fn count_rows(client: &Client, database: &str) -> Result<Vec<TableRows>, PgError> {
    let err = |what| {
        let db = database.to_owned();
        move |cause| PgError::Query {
            database: db,
            what,
            cause,
        }
    };
    let tables = client
        .query(TABLES_SQL, &[])
        .await
        .map_err(err("list tables"))?;
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let schema: String = t.get(0);
        let table: String = t.get(1);
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            quote_ident(&schema),
            quote_ident(&table)
        );
        let row = client
            .query_one(sql.as_str(), &[])
            .await
            .map_err(err("count rows"))?;
        out.push(TableRows {
            schema,
            table,
            rows: row.get(0),
        });
    }
    Ok(out)
}

/// The database-level properties of `database` that `pg_dump` only writes
/// for `--create` restores: how it was created (encoding, locale), owner,
/// ACL, comment and settings. Columns differ between server versions
/// (`datlocprovider` 15+, `daticurules` 16+, `datlocale` 17+), so the row is
/// read as JSON and whatever the server has is taken.
pub async fn database_properties(client: &Client, database: &str) -> Result<DbProperties, PgError> {
    let err = |what| {
        let db = database.to_owned();
        move |cause| PgError::Query {
            database: db,
            what,
            cause,
        }
    };
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

/// A PostgreSQL client program with the password in its environment and
/// none of the caller's `PG*` connection variables.
pub fn base_command(tools: &PgTools, program: &str, cfg: &PostgresConfig) -> Command {
    let mut cmd = Command::new(tools.program(program));
    // Children get the connection ccbackup resolved and nothing else: libpq
    // reads PGHOSTADDR, PGSERVICE, PGOPTIONS, PGSSLMODE, ... from the
    // environment and would silently connect elsewhere than discovery did,
    // and the store's credentials have no business in pg_dump's environment.
    crate::sys::child::clean_env(&mut cmd);
    if let Some(p) = &cfg.password {
        cmd.env("PGPASSWORD", p.expose());
    }
    cmd
}

/// Backs up one postgres source: globals (optional) then each database.
pub async fn backup(
    ctx: &impl Sink,
    source: &str,
    cfg: &PostgresConfig,
) -> Result<Vec<Artifact>, PgError> {
    let server = discover(cfg).await?;
    let tools = tools::find(server.version_num, &server.version, cfg.bin_dir.as_deref())?;
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
            .put(&rel, move |w| stream_stdout("pg_dumpall", cmd, w, &kill))
            .await
            .map(|(_, up)| up)
            .map_err(|source| PgError::Globals { source })?;
        artifacts.push(ctx.artifact(
            rel,
            source,
            ArtifactKind::PgGlobals,
            up,
            Some(info(None, None, None)),
            None,
        ));
    }

    for (i, db) in server.databases.iter().enumerate() {
        let rel = format!(
            "{source}/{:02}-{}.dump.zst",
            i + 1,
            crate::repo::store::key_safe(db)
        );
        let props = database_properties(&admin, db).await?;
        let mut cmd = base_command(&tools, "pg_dump", cfg);
        cmd.arg("--format=custom")
            .arg("--compress=0")
            .arg("--no-password")
            .arg(format!("--dbname={}", conninfo(cfg, db)));
        let kill = ctx.kill().clone();
        let count = cfg.row_counts;
        let (counted, up) = ctx
            .put(&rel, move |w| dump_counting(cmd, w, &kill, count))
            .await
            .map_err(|source| PgError::Dump {
                database: db.clone(),
                source,
            })?;
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
        artifacts.push(ctx.artifact(
            rel,
            source,
            ArtifactKind::PgDump,
            up,
            Some(info(Some(db.clone()), tables, Some(props))),
            None,
        ));
    }
    Ok(artifacts)
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
    use super::*;

    fn pg_at(port: u16) -> PostgresConfig {
        PostgresConfig {
            host: "127.0.0.1".into(),
            port,
            user: "postgres".into(),
            password: None,
            password_unreadable: None,
            databases: DatabaseSelection::All,
            maintenance_db: "postgres".into(),
            bin_dir: None,
            globals: false,
            row_counts: false,
        }
    }

    /// Against the test server on 127.0.0.1:5432: the SQLSTATE or the I/O
    /// kind decides, and the server's message is in the text once.
    #[tokio::test]
    async fn connection_failures_are_classified_by_type() {
        let missing = connect(&pg_at(5432), "ccbackup_no_such_db_for_classes")
            .await
            .err()
            .unwrap();
        assert_eq!(missing.class(), Class::Permanent, "{missing}");
        let text = crate::error::chain(&missing).to_string();
        assert_eq!(text.matches("does not exist").count(), 1, "{text}");
        let query = connect(&pg_at(5432), "postgres")
            .await
            .unwrap()
            .simple_query("SELECT * FROM ccbackup_no_such_table_for_classes")
            .await
            .map_err(|cause| PgError::Query {
                database: "postgres".into(),
                what: "test",
                cause,
            })
            .err()
            .unwrap();
        assert_eq!(query.class(), Class::Permanent, "{query}");

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = connect(&pg_at(port), "postgres").await.err().unwrap();
        assert_eq!(refused.class(), Class::Transient, "{refused}");
    }

    #[test]
    fn conninfo_values_are_quoted_and_escaped() {
        assert_eq!(conninfo_value("ct-vis"), "'ct-vis'");
        assert_eq!(conninfo_value("a b'c\\d"), "'a b\\'c\\\\d'");
        assert_eq!(conninfo_value("dbname=evil"), "'dbname=evil'");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("ct-vis"), "\"ct-vis\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
