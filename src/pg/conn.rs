//! How ccbackup reaches a PostgreSQL server, for backup, restore and verify
//! alike: connections through tokio-postgres, connection strings and
//! environments for the client programs, discovery and exact row counts,
//! and the errors all of these report.

use std::process::Command;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::tools::{PgTools, PgToolsError};
use crate::config::{DatabaseSelection, PostgresConfig};
use crate::repo::manifest::TableRows;
use crate::retry::{Class, Transient};

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
}

impl PgError {
    /// The mapper for a failed query on `database`, for `map_err`.
    pub fn query(database: &str, what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let database = database.to_owned();
        move |cause| PgError::Query {
            database,
            what,
            cause,
        }
    }
}

impl Transient for PgError {
    fn class(&self) -> Class {
        match self {
            PgError::Connect { cause, .. } | PgError::Query { cause, .. } => cause.class(),
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
    /// `pg_postmaster_start_time()`: a different one later means the
    /// server restarted in between.
    pub started: String,
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
    let q = |what| PgError::query(&cfg.maintenance_db, what);
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int",
            &[],
        )
        .await
        .map_err(q("server version"))?;
    let version: String = row.get(0);
    let version_num: i32 = row.get(1);
    let started = postmaster_started(&client, &cfg.maintenance_db).await?;
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
        started,
    })
}

/// When the server (postmaster) started, as the server prints it.
pub async fn postmaster_started(client: &Client, database: &str) -> Result<String, PgError> {
    let row = client
        .query_one("SELECT pg_postmaster_start_time()::text", &[])
        .await
        .map_err(PgError::query(database, "server start time"))?;
    Ok(row.get(0))
}

/// After a client program failed: did the server go away under it? Some
/// reason when it restarted since `started` (a different postmaster start
/// time) or cannot be reached now; `None` when it runs as before, so the
/// failure was the program's own.
pub async fn server_went_away(cfg: &PostgresConfig, started: &str) -> Option<String> {
    let now = match connect(cfg, &cfg.maintenance_db).await {
        Ok(client) => postmaster_started(&client, &cfg.maintenance_db).await,
        Err(e) => Err(e),
    };
    match now {
        Ok(now) if now != started => Some(format!(
            "the server restarted meanwhile (running since {now}, was since {started})"
        )),
        Ok(_) => None,
        Err(e) if e.is_transient() => Some(format!("the server cannot be reached now ({e})")),
        Err(_) => None,
    }
}

/// Tables whose data `pg_dump` writes: ordinary tables (partitions, not
/// their partitioned parents) outside the system schemas that no extension
/// owns. The backup's stream counter (`backup::source::pgcount`) yields the same set in the
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
    let err = |what| PgError::query(database, what);
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
            password_file: None,
            databases: DatabaseSelection::All,
            maintenance_db: "postgres".into(),
            bin_dir: None,
            globals: false,
            row_counts: false,
            parallel: 1,
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
