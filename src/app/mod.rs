//! Command dispatch: resolves configuration, runs the library, prints
//! results. One submodule per group of commands.

mod backup;
mod daemon;
mod restore;
mod retention;
mod unlock;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::catalog;
use crate::cli::{Cli, Command, PolicyCommand, RestoreArgs};
use crate::config::{self, Config, ConfigError, JobConfig};
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::restore::RestoreRequest;
use crate::runner;
use crate::source::child::KillSwitch;
use crate::store;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    /// Messages already carry their causes, so only the top level is shown.
    #[error("{0}")]
    Failed(anyhow::Error),
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Usage(_) => EXIT_CONFIG,
            AppError::Failed(_) => EXIT_FAILURE,
        }
    }
}

fn failed(e: impl Into<anyhow::Error>) -> AppError {
    AppError::Failed(e.into())
}

pub async fn run(cli: Cli) -> Result<(), AppError> {
    // Policy tools work without a configuration file.
    if let Command::Policy(PolicyCommand::Simulate { policy, json }) = &cli.command {
        return retention::simulate(policy, *json);
    }
    let cfg = config::load(&cli.config)?;
    match cli.command {
        Command::CheckConfig => {
            println!(
                "{}: ok ({} job{})",
                cfg.path.display(),
                cfg.jobs.len(),
                if cfg.jobs.len() == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Command::RunNow { job, wait_lock } => {
            backup::run_now(&cfg, job.as_deref(), wait_lock.as_deref()).await
        }
        Command::Unlock { job, force } => unlock::unlock(&cfg, job.as_deref(), force).await,
        Command::List { job, json } => backup::list(&cfg, job.as_deref(), json).await,
        Command::Restore(args) => restore::restore(&cfg, args).await,
        Command::Prune { job, dry_run, json } => {
            retention::prune(&cfg, job.as_deref(), dry_run, json).await
        }
        Command::Policy(_) => Ok(()),
        Command::Daemon { listen } => daemon::daemon(cfg, listen).await,
        Command::Schedule { job, count, after } => {
            daemon::schedule(&cfg, job.as_deref(), count, after.as_deref())
        }
        Command::Verify {
            job,
            backup,
            restore_test,
        } => restore::verify(&cfg, job.as_deref(), &backup, restore_test).await,
    }
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

/// Manifests of `job` selected by `latest`, `all` or an ID.
async fn select_backups(
    repo: &store::Repo,
    job: &str,
    which: &str,
) -> Result<Vec<Manifest>, AppError> {
    let mut complete = catalog::load(repo, Some(job))
        .await
        .map_err(failed)?
        .complete;
    match which {
        "all" => Ok(complete),
        "latest" => complete
            .pop()
            .map(|m| vec![m])
            .ok_or_else(|| failed(anyhow::anyhow!("job `{job}` has no complete backup"))),
        id => complete
            .into_iter()
            .find(|m| m.id == id)
            .map(|m| vec![m])
            .ok_or_else(|| failed(anyhow::anyhow!("job `{job}` has no complete backup `{id}`"))),
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
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
