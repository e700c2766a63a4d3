//! Command dispatch: resolves configuration, runs the library, prints
//! results. One submodule per group of commands.

mod backup;
mod clients;
mod copy;
mod daemon;
mod doctor;
mod health;
mod keys;
mod listing;
pub mod logfmt;
mod ls;
pub mod out;
mod past;
mod restore;
mod retention;
mod tamper;
mod unlock;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backup::runner;
use crate::cli::{Cli, Command, KeysCommand, PolicyCommand, RestoreArgs};
use crate::config::{self, Config, ConfigError, JobConfig};
use crate::error::chain;
use crate::interrupt::{self, Interrupt};
use crate::privdrop;
use crate::progress::Progress;
use crate::repo::catalog;
use crate::repo::manifest::Manifest;
use crate::repo::store;
use crate::restore::RestoreRequest;
use crate::sys::child::KillSwitch;
use out::{note, say};

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    /// Shown with its causes by [`crate::error::chain`] at the edge.
    #[error(transparent)]
    Failed(anyhow::Error),
    /// SIGINT or SIGTERM stopped the command; the message says what was
    /// stopped and what, if anything, was left.
    #[error("interrupted by {signal}: {summary}")]
    Interrupted {
        signal: &'static str,
        code: u8,
        summary: String,
    },
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Usage(_) => EXIT_CONFIG,
            AppError::Failed(_) => EXIT_FAILURE,
            AppError::Interrupted { code, .. } => *code,
        }
    }
}

fn failed(e: impl Into<anyhow::Error>) -> AppError {
    AppError::Failed(e.into())
}

/// Start-up work done while the process has a single thread, before the
/// async runtime starts: read the configuration (and so every secret file
/// it names), then switch to `--user` if asked (see `privdrop`). Returns the
/// configuration for the commands that need one.
pub fn prepare(cli: &Cli) -> Result<Option<Config>, AppError> {
    let needs_config = !matches!(
        cli.command,
        Command::Policy(_) | Command::Keys(_) | Command::Healthcheck { .. }
    );
    let cfg = if needs_config {
        Some(config::load(&cli.config)?)
    } else {
        None
    };
    if let Some(spec) = cli.user.as_deref() {
        let target = privdrop::resolve(spec).map_err(|e| AppError::Usage(chain(&e).to_string()))?;
        match target {
            Some(t) => match privdrop::drop_to(t, cli.keep_read_access).map_err(failed)? {
                privdrop::DropOutcome::Dropped {
                    target,
                    read_access,
                } => tracing::info!(
                    uid = target.uid,
                    gid = target.gid,
                    read_access,
                    "switched from root after reading the configuration"
                ),
                privdrop::DropOutcome::NotRoot { uid } => tracing::debug!(
                    uid,
                    "not started as root; running as uid {uid} (--user has nothing to drop)"
                ),
            },
            None if cli.keep_read_access => {
                return Err(AppError::Usage(
                    "--keep-read-access needs --user naming a user other than root".to_owned(),
                ))
            }
            None => {}
        }
    }
    Ok(cfg)
}

/// Runs the command; `cfg` is what `prepare` returned.
pub async fn run(cli: Cli, cfg: Option<Config>) -> Result<(), AppError> {
    // Policy and key tools work without a configuration file.
    if let Command::Policy(PolicyCommand::Simulate { policy, json }) = &cli.command {
        return retention::simulate(policy, *json);
    }
    if let Command::Keys(KeysCommand::Generate { dir }) = &cli.command {
        return keys::generate(dir);
    }
    if let Command::Healthcheck { listen } = &cli.command {
        return health::check(&cli.config, listen.as_deref()).await;
    }
    let cfg = match cfg {
        Some(c) => c,
        None => config::load(&cli.config)?,
    };
    // The daemon has its own shutdown; every other command cleans up after
    // itself when interrupted.
    let intr = if matches!(cli.command, Command::Daemon { .. }) {
        Interrupt::default()
    } else {
        Interrupt::listen().map_err(failed)?
    };
    let result = dispatch(cli, cfg, &intr).await;
    match (intr.exit_code(), result) {
        (Some(code), Err(e)) => Err(AppError::Interrupted {
            signal: intr.signal_name(),
            code,
            summary: chain(&e).to_string(),
        }),
        (Some(code), Ok(())) => Err(AppError::Interrupted {
            signal: intr.signal_name(),
            code,
            summary: "the command had already finished its work".to_owned(),
        }),
        (None, r) => r,
    }
}

async fn dispatch(cli: Cli, cfg: Config, intr: &Interrupt) -> Result<(), AppError> {
    match cli.command {
        Command::CheckConfig => check_config(&cfg).await,
        Command::RunNow {
            job,
            wait_lock,
            json,
            accept_shrink,
        } => {
            let shrink = if accept_shrink {
                crate::backup::run::Shrink::Accept
            } else {
                crate::backup::run::Shrink::Guard
            };
            backup::run_now(
                &cfg,
                job.as_deref(),
                wait_lock.as_deref(),
                json,
                shrink,
                intr,
            )
            .await
        }
        Command::Copy {
            from_primary: _,
            job,
            to,
        } => copy::backfill(&cfg, job.as_deref(), to.as_deref(), intr).await,
        Command::Unlock { job, force } => unlock::unlock(&cfg, job.as_deref(), force).await,
        Command::List { job, json, as_of } => {
            backup::list(&cfg, job.as_deref(), json, as_of.as_deref()).await
        }
        Command::Restore(args) => restore::restore(&cfg, *args, intr).await,
        Command::Ls(args) => ls::ls(&cfg, args, intr).await,
        Command::Prune { job, dry_run, json } => {
            retention::prune(&cfg, job.as_deref(), dry_run, json, intr).await
        }
        Command::Policy(_) | Command::Keys(_) | Command::Healthcheck { .. } => Ok(()),
        Command::Daemon { listen } => {
            cfg.require_secrets()?;
            for w in &cfg.path_warnings {
                tracing::warn!(
                    key = %w.key,
                    line = w.line,
                    "{}; the daemon starts anyway",
                    w.message
                );
            }
            daemon::daemon(cfg, listen).await
        }
        Command::Schedule { job, count, after } => {
            daemon::schedule(&cfg, job.as_deref(), count, after.as_deref())
        }
        Command::Doctor {
            job,
            json,
            notify_test,
        } => {
            doctor::doctor(
                &cfg,
                job.as_deref(),
                json,
                crate::doctor::Options { notify_test },
            )
            .await
        }
        Command::Verify {
            job,
            backup,
            restore_test,
            identity,
            json,
            as_of,
        } => {
            restore::verify(
                &cfg,
                job.as_deref(),
                &backup,
                restore_test,
                identity,
                json,
                as_of.as_deref(),
                intr,
            )
            .await
        }
    }
}

/// `check-config`: the file's warnings, the store's trust, the clients
/// the configuration needs, then the verdict.
async fn check_config(cfg: &Config) -> Result<(), AppError> {
    cfg.require_secrets()?;
    for w in &cfg.path_warnings {
        say!("warning: {}", w.render(&cfg.path));
    }
    if cfg.signing.as_ref().is_none_or(|s| s.verifier.is_none()) {
        say!(
            "warning: the store is not authenticated: {}",
            crate::repo::signing::UNSIGNED_RISK
        );
    }
    let clients = clients::check(cfg).await;
    for line in &clients.notes {
        say!("{line}");
    }
    if !clients.problems.is_empty() {
        return Err(AppError::Usage(format!(
            "{}: {}",
            cfg.path.display(),
            clients.problems.join("\n")
        )));
    }
    say!(
        "{}: ok ({} job{})",
        cfg.path.display(),
        cfg.jobs.len(),
        if cfg.jobs.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The job a single-job command applies to: the named one, or the only one.
fn one_job<'a>(cfg: &'a Config, job: Option<&str>) -> Result<&'a JobConfig, AppError> {
    match job {
        Some(_) => Ok(cfg
            .select_jobs(job)
            .map_err(|e| AppError::Usage(e.to_string()))?[0]),
        None if cfg.jobs.len() == 1 => Ok(&cfg.jobs[0]),
        None => Err(AppError::Usage(format!(
            "several jobs are configured ({}): choose one with --job",
            cfg.jobs
                .iter()
                .map(|j| j.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Backups of one job picked by `latest`, `all` or an ID.
struct Selection {
    manifests: Vec<Manifest>,
    /// Damaged backups the selection covers: every one for `all`, those
    /// newer than the chosen one for `latest` (the operator should know the
    /// newest backup is not the one restored).
    damaged: Vec<catalog::Damaged>,
}

/// Manifests of `job` selected by `latest`, `all` or an ID. A damaged
/// manifest never stops the others from being selected.
async fn select_backups(repo: &store::Repo, job: &str, which: &str) -> Result<Selection, AppError> {
    let cat = catalog::load(repo, Some(job)).await.map_err(failed)?;
    let mut complete = cat.complete;
    let damaged = cat.damaged;
    match which {
        "all" => Ok(Selection {
            manifests: complete,
            damaged,
        }),
        "latest" => {
            // The newest backup the shrink guard did not flag: after an
            // unmounted volume the newest one may be empty. Naming a
            // suspicious backup by its ID still restores it.
            if let Some(pos) = complete.iter().rposition(|m| !m.guard.is_suspicious()) {
                for skipped in &complete[pos + 1..] {
                    note!(
                        "warning: newer backup {}/{} is SUSPICIOUS ({}) and was skipped; name it with --backup to use it",
                        skipped.job,
                        skipped.id,
                        skipped.guard.suspicious.join("; ")
                    );
                }
                complete.truncate(pos + 1);
            }
            let Some(m) = complete.pop() else {
                let note = match damaged.last() {
                    Some(d) => format!(
                        " ({} damaged: newest {}: {})",
                        damaged.len(),
                        d.id,
                        d.problem
                    ),
                    None => String::new(),
                };
                return Err(failed(anyhow::anyhow!(
                    "job `{job}` has no complete backup{note}"
                )));
            };
            let newer = damaged.into_iter().filter(|d| d.id > m.id).collect();
            Ok(Selection {
                manifests: vec![m],
                damaged: newer,
            })
        }
        id => {
            if let Some(d) = damaged.iter().find(|d| d.id == id) {
                return Err(failed(anyhow::anyhow!(
                    "backup {job}/{id} is damaged and cannot be used: {}",
                    d.problem
                )));
            }
            complete
                .into_iter()
                .find(|m| m.id == id)
                .map(|m| Selection {
                    manifests: vec![m],
                    damaged: Vec::new(),
                })
                .ok_or_else(|| failed(anyhow::anyhow!("job `{job}` has no complete backup `{id}`")))
        }
    }
}

/// While alive, shows `progress` on stderr twice a second, when stderr is a
/// terminal; logs and pipes get no progress lines and no escape codes.
pub(super) struct ProgressView(tokio::task::JoinHandle<()>);

impl Drop for ProgressView {
    fn drop(&mut self) {
        self.0.abort();
        clear_progress_line();
    }
}

pub(super) fn show_progress(label: &str, p: Arc<Progress>) -> Option<ProgressView> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let label = label.to_owned();
    Some(ProgressView(tokio::spawn(async move {
        let start = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{}", p.line(&label, start.elapsed()));
            let _ = err.flush();
        }
    })))
}

/// Erases the progress line before ordinary output, on a terminal only.
pub(super) fn clear_progress_line() {
    if std::io::stderr().is_terminal() {
        out::note_raw(format_args!("\r\x1b[2K"));
    }
}

pub fn human_bytes(n: u64) -> String {
    crate::progress::human(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_scales() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
