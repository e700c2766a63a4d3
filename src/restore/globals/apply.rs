//! Planning (pure) and executing a checked globals text.

use crate::crypto::Opener;
use std::collections::HashSet;
use std::io::BufReader;

use tokio_postgres::Client;

use super::report::{
    AlteredRole, GlobalsNotice, GlobalsPlan, GlobalsReport, Object, PasswordChange,
};
use super::split::TokKind;
use super::{
    check_all, password_clauses, printable, redacted, without_password, CheckError, Checked, Kind,
};
use crate::config::PostgresConfig;
use crate::pg::conn::{self, pg_text, PgError};

#[derive(Debug, thiserror::Error)]
pub enum GlobalsError {
    #[error("refusing the globals in {key}; nothing was executed")]
    Check { key: String, source: CheckError },
    #[error("cannot read the globals in {key}")]
    Open { key: String, source: std::io::Error },
    #[error("reading the globals in {key} stopped unexpectedly")]
    Join { key: String },
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("{what} on {host}:{port} failed: {}", pg_text(cause))]
    Query {
        host: String,
        port: u16,
        what: &'static str,
        /// Folded into the message by [`pg_text`], so not a `source`.
        cause: tokio_postgres::Error,
    },
    #[error(
        "applying the globals in {key} to {host}:{port}: {} of {total} statements failed:{}{}",
        failures.len(),
        indented(failures),
        notes(notices)
    )]
    Failed {
        key: String,
        host: String,
        port: u16,
        total: usize,
        failures: Vec<String>,
        notices: Vec<String>,
    },
}

fn indented(lines: &[String]) -> String {
    lines.iter().map(|l| format!("\n  {l}")).collect()
}

fn notes(notices: &[String]) -> String {
    if notices.is_empty() {
        String::new()
    } else {
        format!("\nnotices:{}", indented(notices))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this text to the server.
    Execute(String),
    /// `CREATE ROLE` / `CREATE TABLESPACE` of something the target has.
    KeepExisting,
    /// Checked but not sent (`SET client_encoding`).
    Skip,
}

/// The roles and tablespaces the target had before the restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    pub roles: HashSet<String>,
    pub tablespaces: HashSet<String>,
    /// The roles `CURRENT_USER`/`CURRENT_ROLE` and `SESSION_USER` stand
    /// for in the restoring session.
    pub current_user: String,
    pub session_user: String,
}

/// Pure: the role an `ALTER ROLE` really changes. pg_dumpall never writes
/// `CURRENT_USER`, `CURRENT_ROLE` or `SESSION_USER`, but the server takes
/// them (unquoted) as the restoring role itself, which always exists: a
/// planted one must be judged, kept and shown as that role.
fn altered_role(c: &Checked, existing: &Existing) -> Option<String> {
    if c.kind != Kind::AlterRole || c.stmt.tokens.get(2)?.kind != TokKind::Word {
        return None;
    }
    match c.object.as_deref()? {
        "current_user" | "current_role" => Some(existing.current_user.clone()),
        "session_user" => Some(existing.session_user.clone()),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub checked: Checked,
    pub action: Action,
    /// The role or tablespace the statement creates or alters existed on
    /// the target before the restore.
    pub existing: bool,
    pub password: PasswordChange,
}

/// Pure: what to do with each checked statement, given what the target
/// already has.
pub fn plan(checked: Vec<Checked>, existing: &Existing, keep_passwords: bool) -> Vec<Planned> {
    checked
        .into_iter()
        .map(|mut c| {
            let session_role = altered_role(&c, existing);
            if let Some(role) = &session_role {
                c.object = Some(role.clone());
            }
            let set = match c.kind {
                Kind::CreateRole | Kind::AlterRole => Some(&existing.roles),
                Kind::CreateTablespace | Kind::AlterTablespace => Some(&existing.tablespaces),
                _ => None,
            };
            let exists = session_role.is_some()
                || set.is_some_and(|set| c.object.as_ref().is_some_and(|o| set.contains(o)));
            let has_password = !password_clauses(&c.stmt).is_empty();
            let execute = Action::Execute(c.stmt.text.clone());
            let (action, password) = match &c.kind {
                Kind::CreateRole | Kind::CreateTablespace if exists => {
                    (Action::KeepExisting, PasswordChange::None)
                }
                Kind::Set { name } if name == "client_encoding" => {
                    (Action::Skip, PasswordChange::None)
                }
                Kind::AlterRole if exists && has_password && keep_passwords => (
                    Action::Execute(without_password(&c.stmt).unwrap_or(c.stmt.text.clone())),
                    PasswordChange::Kept,
                ),
                Kind::AlterRole if exists && has_password => (execute, PasswordChange::Replaced),
                _ => (execute, PasswordChange::None),
            };
            Planned {
                checked: c,
                action,
                existing: exists,
                password,
            }
        })
        .collect()
}

/// Existing roles the plan alters, once each, in order, with what happens
/// to their password.
fn altered_roles(planned: &[Planned]) -> Vec<AlteredRole> {
    let mut out: Vec<AlteredRole> = Vec::new();
    for p in planned
        .iter()
        .filter(|p| p.checked.kind == Kind::AlterRole && p.existing)
    {
        let name = p.checked.object.clone().unwrap_or_default();
        match out.iter_mut().find(|a| a.role == name) {
            Some(a) if p.password != PasswordChange::None => a.password = p.password,
            Some(_) => {}
            None => out.push(AlteredRole {
                role: name,
                password: p.password,
            }),
        }
    }
    out
}

/// Pure: the dry-run description of a plan.
pub fn describe(planned: &[Planned]) -> GlobalsPlan {
    let names = |k: Kind, keep: bool| -> Vec<String> {
        planned
            .iter()
            .filter(|p| p.checked.kind == k && (p.action == Action::KeepExisting) == keep)
            .map(|p| p.checked.object.clone().unwrap_or_default())
            .collect()
    };
    let new_passwords: Vec<String> = planned
        .iter()
        .filter(|p| {
            matches!(p.checked.kind, Kind::CreateRole | Kind::AlterRole)
                && !p.existing
                && matches!(p.action, Action::Execute(_))
                && !password_clauses(&p.checked.stmt).is_empty()
        })
        .filter_map(|p| p.checked.object.clone())
        .fold(Vec::new(), |mut v, n| {
            if !v.contains(&n) {
                v.push(n);
            }
            v
        });
    GlobalsPlan {
        create_roles: names(Kind::CreateRole, false),
        existing_roles: names(Kind::CreateRole, true),
        altered_roles: altered_roles(planned),
        new_passwords,
        create_tablespaces: names(Kind::CreateTablespace, false),
        existing_tablespaces: names(Kind::CreateTablespace, true),
        statements: planned.len(),
        executed: planned
            .iter()
            .filter(|p| matches!(p.action, Action::Execute(_)))
            .count(),
        grants: planned
            .iter()
            .filter(|p| matches!(p.checked.kind, Kind::Grant | Kind::Revoke))
            .count(),
    }
}

/// Reads, decompresses, splits and checks the staged artifact.
async fn check_staged(key: &str, staged: &Opener) -> Result<Vec<Checked>, GlobalsError> {
    let staged = staged.clone();
    let k = key.to_owned();
    tokio::task::spawn_blocking(move || {
        let open = |source| GlobalsError::Open {
            key: k.clone(),
            source,
        };
        let dec = staged.open().map_err(open)?;
        check_all(BufReader::with_capacity(64 * 1024, dec)).map_err(|source| GlobalsError::Check {
            key: k.clone(),
            source,
        })
    })
    .await
    .map_err(|_| GlobalsError::Join {
        key: key.to_owned(),
    })?
}

async fn existing(cfg: &PostgresConfig, client: &Client) -> Result<Existing, GlobalsError> {
    let names = |sql: &'static str, what: &'static str| async move {
        let rows = client
            .query(sql, &[])
            .await
            .map_err(|source| query_error(cfg, what, source))?;
        Ok::<HashSet<String>, GlobalsError>(rows.iter().map(|r| r.get(0)).collect())
    };
    let who = client
        .query_one("SELECT current_user::text, session_user::text", &[])
        .await
        .map_err(|source| query_error(cfg, "looking up the restoring role", source))?;
    Ok(Existing {
        current_user: who.get(0),
        session_user: who.get(1),
        roles: names(
            "SELECT rolname::text FROM pg_catalog.pg_roles",
            "looking up existing roles",
        )
        .await?,
        tablespaces: names(
            "SELECT spcname::text FROM pg_catalog.pg_tablespace",
            "looking up existing tablespaces",
        )
        .await?,
    })
}

fn query_error(
    cfg: &PostgresConfig,
    what: &'static str,
    source: tokio_postgres::Error,
) -> GlobalsError {
    GlobalsError::Query {
        host: cfg.host.clone(),
        port: cfg.port,
        what,
        cause: source,
    }
}

fn failure_line(p: &Planned, e: &tokio_postgres::Error) -> String {
    let c = &p.checked;
    let object = c
        .object
        .as_ref()
        .map(|o| format!(" `{}`", printable(o, 64)))
        .unwrap_or_default();
    format!(
        "line {}: {}{object}: {} [{}]",
        c.stmt.line,
        c.kind.label(),
        printable(&pg_text(e), 300),
        redacted(&c.stmt)
    )
}

/// Checks the staged globals, then (unless `dry_run`) applies them to the
/// configured server's maintenance database. Returns what was (or would
/// be) done.
pub async fn apply(
    cfg: &PostgresConfig,
    key: &str,
    staged: &Opener,
    keep_passwords: bool,
    dry_run: bool,
) -> Result<GlobalsReport, GlobalsError> {
    let checked = check_staged(key, staged).await?;
    let client = conn::connect(cfg, &cfg.maintenance_db).await?;
    let existing = existing(cfg, &client).await?;
    let planned = plan(checked, &existing, keep_passwords);
    if dry_run {
        return Ok(GlobalsReport::Planned {
            artifact: key.to_owned(),
            host: cfg.host.clone(),
            port: cfg.port,
            plan: describe(&planned),
        });
    }
    execute(cfg, key, &client, &planned).await
}

async fn execute(
    cfg: &PostgresConfig,
    key: &str,
    client: &Client,
    planned: &[Planned],
) -> Result<GlobalsReport, GlobalsError> {
    let mut notices = Vec::new();
    let mut failures = Vec::new();
    let mut executed = 0;
    // The splitter reads '' strings the standard way, whatever the server's
    // default; the session must agree.
    client
        .batch_execute("SET standard_conforming_strings = on")
        .await
        .map_err(|source| query_error(cfg, "preparing the session", source))?;
    for p in planned {
        let name = p.checked.object.clone().unwrap_or_default();
        let text = match &p.action {
            Action::KeepExisting => {
                let object = match p.checked.kind {
                    Kind::CreateTablespace => Object::Tablespace,
                    _ => Object::Role,
                };
                notices.push(GlobalsNotice::AlreadyExists { object, name });
                continue;
            }
            Action::Skip => continue,
            Action::Execute(text) => text,
        };
        if client.is_closed() {
            failures.push(format!(
                "line {}: {}: not executed, the connection to the server was lost",
                p.checked.stmt.line,
                p.checked.kind.label()
            ));
            continue;
        }
        // Extended protocol: the server refuses a second statement here.
        match client.execute(text.as_str(), &[]).await {
            Ok(_) => {
                executed += 1;
                if p.password == PasswordChange::Kept {
                    notices.push(GlobalsNotice::PasswordKept { role: name });
                }
            }
            Err(e) => failures.push(failure_line(p, &e)),
        }
    }
    if !failures.is_empty() {
        return Err(GlobalsError::Failed {
            key: key.to_owned(),
            host: cfg.host.clone(),
            port: cfg.port,
            total: planned.len(),
            failures,
            notices: notices.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(GlobalsReport::Applied {
        artifact: key.to_owned(),
        host: cfg.host.clone(),
        port: cfg.port,
        executed,
        notices,
    })
}
