//! `check-config`'s look at the PostgreSQL client programs: every program
//! a backup and a restore run must be where `bin_dir` points, and, when
//! the server answers, the client that would be used is named with its
//! directory, with a warning when it is newer than the server.

use std::time::Duration;

use crate::backup::source::postgres;
use crate::config::{Config, PostgresConfig, SourceKind};
use crate::error::chain;
use crate::pg::conn;
use crate::pg::tools::{self, Purpose};

/// How long check-config waits for a server; it checks the file, and an
/// unreachable server is only a note.
const REACH_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
pub struct ClientReport {
    /// Make check-config fail.
    pub problems: Vec<String>,
    /// Printed; warnings start with `warning:`.
    pub notes: Vec<String>,
}

pub async fn check(cfg: &Config) -> ClientReport {
    let mut r = ClientReport::default();
    for job in &cfg.jobs {
        for s in &job.sources {
            if let SourceKind::Postgres(pg) = &s.kind {
                let what = format!("job `{}` source `{}`", job.name, s.name);
                check_source(&what, pg, &mut r).await;
            }
        }
    }
    r
}

async fn check_source(what: &str, pg: &PostgresConfig, r: &mut ClientReport) {
    if let Some(dir) = &pg.bin_dir {
        let mut missing = tools::missing_programs(dir, Purpose::Dump);
        missing.extend(tools::missing_programs(dir, Purpose::Restore));
        if !missing.is_empty() {
            r.problems.push(format!(
                "{what}: bin_dir `{}` has no {} (backups run pg_dump and pg_dumpall, restores pg_restore and psql)",
                dir.display(),
                missing.join(", ")
            ));
            return;
        }
    }
    let server = tokio::time::timeout(
        REACH_TIMEOUT,
        conn::discover(&PostgresConfig {
            databases: crate::config::DatabaseSelection::Named(Vec::new()),
            ..pg.clone()
        }),
    )
    .await;
    let server = match server {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            r.notes.push(format!(
                "note: {what}: client programs not compared with the server: {}",
                chain(&e)
            ));
            return;
        }
        Err(_) => {
            r.notes.push(format!(
                "note: {what}: client programs not compared with the server: {}:{} did not answer within {}s",
                pg.host,
                pg.port,
                REACH_TIMEOUT.as_secs()
            ));
            return;
        }
    };
    for purpose in [Purpose::Dump, Purpose::Restore] {
        let need = tools::server_major(server.version_num);
        match tools::find_for(need, &server.version, pg.bin_dir.as_deref(), purpose) {
            Ok(tools) => {
                r.notes.push(format!(
                    "{what}: PostgreSQL {} server; {} {} in {}",
                    server.version,
                    purpose.programs().join("/"),
                    tools.version,
                    tools.dir_display()
                ));
                if purpose == Purpose::Dump {
                    if let Some(w) =
                        postgres::newer_client_warning(&tools, &server.version, server.version_num)
                    {
                        r.notes.push(format!("warning: {what}: {w}"));
                    }
                }
            }
            Err(e) => r.notes.push(format!("warning: {what}: {}", chain(&e))),
        }
    }
}
