//! A PostgreSQL source as a backup uses it: connect, the server's version,
//! the configured databases, a fitting `pg_dump`, and `pg_dump` itself
//! connecting to each database (a schema-only dump with every schema
//! excluded: connection, password and version checks, no data read).

use super::{bounded, timed_out, About, Check};
use crate::config::{DatabaseSelection, PostgresConfig};
use crate::error::chain;
use crate::pg::conn::{self, base_command, conninfo, PgError};
use crate::pg::tools::{self, PgTools, Purpose};
use crate::sys::child::capture;

pub(super) async fn check(about: &About, pg: &PostgresConfig) -> Vec<Check> {
    let mut out = Vec::new();
    let server_only = PostgresConfig {
        databases: DatabaseSelection::Named(Vec::new()),
        ..pg.clone()
    };
    let server = match bounded(conn::discover(&server_only)).await {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            let hint = connect_hint(&e, pg);
            out.push(about.fail("connect", chain(&e).to_string(), hint));
            return out;
        }
        None => {
            out.push(about.fail(
                "connect",
                timed_out(),
                format!("nothing answers at {}:{}", pg.host, pg.port),
            ));
            return out;
        }
    };
    out.push(about.ok(
        "connect",
        format!(
            "PostgreSQL {} at {}:{} as `{}`",
            server.version, pg.host, pg.port, pg.user
        ),
    ));
    let databases = match bounded(conn::discover(pg)).await {
        Some(Ok(s)) => {
            out.push(about.ok("databases", s.databases.join(", ")));
            s.databases
        }
        Some(Err(e)) => {
            out.push(about.fail(
                "databases",
                chain(&e).to_string(),
                "correct `databases:` in the source, or create the database (restore brings it back)",
            ));
            // The ones that do exist can still be tried.
            match (&pg.databases, e) {
                (DatabaseSelection::Named(names), PgError::MissingDatabase { existing, .. }) => {
                    names
                        .iter()
                        .filter(|n| existing.contains(n))
                        .cloned()
                        .collect()
                }
                _ => Vec::new(),
            }
        }
        None => {
            out.push(about.fail("databases", timed_out(), "check the server's load"));
            return out;
        }
    };
    let tools = match tools::find(server.version_num, &server.version, pg.bin_dir.as_deref()) {
        Ok(t) => {
            out.push(about.ok(
                "client programs",
                format!("pg_dump {} in {}", t.version, t.dir_display()),
            ));
            t
        }
        Err(e) => {
            out.push(about.fail(
                "client programs",
                chain(&e).to_string(),
                format!(
                    "install the PostgreSQL {} client programs (or newer), or point bin_dir at them",
                    tools::server_major(server.version_num)
                ),
            ));
            return out;
        }
    };
    // What a restore onto this server would run (pg_restore, psql).
    let need = tools::server_major(server.version_num);
    out.push(
        match tools::find_for(need, &server.version, pg.bin_dir.as_deref(), Purpose::Restore) {
            Ok(t) => about.ok(
                "restore programs",
                format!("pg_restore {} in {}", t.version, t.dir_display()),
            ),
            Err(e) => about.fail(
                "restore programs",
                chain(&e).to_string(),
                format!("install pg_restore and psql of PostgreSQL {need} or newer, or point bin_dir at them"),
            ),
        },
    );
    for db in databases {
        out.push(dump_check(about, &tools, pg, db).await);
    }
    out
}

/// Whether `pg_dump` connects to `db` and dumps (schema only, every
/// schema excluded, so it reads next to nothing).
async fn dump_check(about: &About, tools: &PgTools, pg: &PostgresConfig, db: String) -> Check {
    let mut cmd = base_command(tools, "pg_dump", pg);
    cmd.arg("--schema-only")
        .arg("--no-password")
        .arg("--exclude-schema=*")
        .arg(format!("--dbname={}", conninfo(pg, &db)));
    let run = tokio::task::spawn_blocking(move || capture("pg_dump", cmd).map(|_| ()));
    let check = format!("pg_dump `{db}`");
    match bounded(run).await {
        Some(Ok(Ok(()))) => about.ok(
            &check,
            "connects and dumps (schema only, every schema excluded)",
        ),
        Some(Ok(Err(e))) => about.fail(
            &check,
            chain(&e).to_string(),
            format!(
                "pg_dump must be able to connect to `{db}` as `{}` with the same password",
                pg.user
            ),
        ),
        Some(Err(e)) => about.fail(&check, e.to_string(), "see the log"),
        None => about.fail(&check, timed_out(), "check the server's load"),
    }
}

fn connect_hint(e: &PgError, pg: &PostgresConfig) -> String {
    match e {
        PgError::Password { .. } => {
            "make password_file readable by the user ccbackup runs as (or start as root with --user)"
                .to_owned()
        }
        _ => format!(
            "is the server running and listening on {}:{}? (Concertim v1.x: 127.0.0.1:45432; 0.x: db:5432); are user and password right?",
            pg.host, pg.port
        ),
    }
}
