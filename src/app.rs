//! Command dispatch: resolves configuration, runs the library, prints results.

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
        return simulate(policy, *json);
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
        Command::RunNow { job } => run_now(&cfg, job.as_deref()).await,
        Command::List { job, json } => list(&cfg, job.as_deref(), json).await,
        Command::Restore(args) => restore(&cfg, args).await,
        Command::Prune { job, dry_run, json } => prune(&cfg, job.as_deref(), dry_run, json).await,
        Command::Policy(_) => Ok(()),
        Command::Daemon { listen } => daemon(cfg, listen).await,
        Command::Schedule { job, count, after } => {
            schedule(&cfg, job.as_deref(), count, after.as_deref())
        }
        Command::Verify {
            job,
            backup,
            restore_test,
        } => verify(&cfg, job.as_deref(), &backup, restore_test).await,
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

async fn restore(cfg: &Config, a: RestoreArgs) -> Result<(), AppError> {
    let job = one_job(cfg, a.job.as_deref())?;
    if a.backup == "all" {
        return Err(AppError::Usage(
            "restore takes one backup: an ID or `latest`".into(),
        ));
    }
    let repo = store::open(&cfg.store).map_err(failed)?;
    let m = select_backups(&repo, &job.name, &a.backup).await?.remove(0);
    let req = RestoreRequest {
        source: a.source,
        database: a.database,
        target_db: a.target_db,
        clean: a.clean,
        force: a.force,
        jobs: a.jobs,
        globals: a.globals,
        no_owner: a.no_owner,
        to: a.to,
        include: a.include,
        dry_run: a.dry_run,
        staging_dir: a.staging_dir,
    };
    println!(
        "{} backup {}/{} taken {}",
        if req.dry_run {
            "plan for restoring"
        } else {
            "restoring"
        },
        m.job,
        m.id,
        m.started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let lines = crate::restore::run(&repo, job, &m, &req)
        .await
        .map_err(failed)?;
    for l in lines {
        println!("  {l}");
    }
    Ok(())
}

async fn verify(
    cfg: &Config,
    job: Option<&str>,
    which: &str,
    restore_test: bool,
) -> Result<(), AppError> {
    let jobs = cfg
        .select_jobs(job)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let repo = store::open(&cfg.store).map_err(failed)?;
    let mut bad = 0;
    let mut checked = 0;
    for job in jobs {
        for m in select_backups(&repo, &job.name, which).await? {
            for f in crate::verify::verify_backup(&repo, job, &m, restore_test).await {
                checked += 1;
                match &f.problem {
                    None => println!("ok      {}/{}/{}", job.name, f.backup, f.key),
                    Some(p) => {
                        bad += 1;
                        println!("FAILED  {}/{}/{}: {p}", job.name, f.backup, f.key);
                    }
                }
            }
        }
    }
    if bad > 0 {
        return Err(failed(anyhow::anyhow!(
            "verify found {bad} of {checked} artifacts bad"
        )));
    }
    Ok(())
}

async fn run_now(cfg: &Config, job: Option<&str>) -> Result<(), AppError> {
    let jobs = cfg
        .select_jobs(job)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let repo = store::open(&cfg.store).map_err(failed)?;
    let mut failures = Vec::new();
    for job in jobs {
        let progress = Arc::new(Progress::new());
        let reporter = spawn_progress(&job.name, progress.clone());
        let started = Instant::now();
        let result =
            runner::run_once(cfg, &repo, job, KillSwitch::default(), progress.clone()).await;
        if let Some(r) = reporter {
            r.abort();
            eprint!("\r\x1b[2K");
        }
        match result {
            Ok(report) => {
                let m = &report.manifest;
                tracing::info!(
                    job = %job.name,
                    backup = %m.id,
                    outcome = "success",
                    stored_bytes = m.stored_bytes(),
                    raw_bytes = m.raw_bytes(),
                    duration_s = started.elapsed().as_secs_f64(),
                    deletions = report.deletions(),
                    "backup complete"
                );
                println!("{}", m.id);
                if let Some(Err(e)) = &report.prune {
                    tracing::error!(job = %job.name, error = %e, "retention failed after a complete backup");
                    failures.push(format!(
                        "backup {} is complete, but retention failed: {e}",
                        m.id
                    ));
                }
            }
            Err(e) => {
                tracing::error!(job = %job.name, outcome = "failure", error = %e, "backup failed");
                failures.push(e.to_string());
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AppError::Failed(anyhow::anyhow!(failures.join("\n"))))
    }
}

/// Shows bytes, files and rate on a terminal; logs stay quiet otherwise.
fn spawn_progress(job: &str, p: Arc<Progress>) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let job = job.to_owned();
    Some(tokio::spawn(async move {
        let start = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let secs = start.elapsed().as_secs_f64().max(0.001);
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K{job}: {} read, {} stored, {} files, {}/s",
                human_bytes(p.raw_bytes()),
                human_bytes(p.stored_bytes()),
                p.files(),
                human_bytes((p.raw_bytes() as f64 / secs) as u64)
            );
            let _ = err.flush();
        }
    }))
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

/// One row of `list --json`.
#[derive(Debug, Serialize)]
pub struct ListEntry {
    pub id: String,
    pub job: String,
    pub time: String,
    pub sources: Vec<String>,
    pub size: u64,
    pub raw_size: u64,
    pub artifacts: usize,
}

impl From<&Manifest> for ListEntry {
    fn from(m: &Manifest) -> Self {
        ListEntry {
            id: m.id.clone(),
            job: m.job.clone(),
            time: m
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            sources: m.source_names(),
            size: m.stored_bytes(),
            raw_size: m.raw_bytes(),
            artifacts: m.artifacts.len(),
        }
    }
}

async fn list(cfg: &Config, job: Option<&str>, json: bool) -> Result<(), AppError> {
    if let Some(j) = job {
        cfg.select_jobs(Some(j))
            .map_err(|e| AppError::Usage(e.to_string()))?;
    }
    let repo = store::open(&cfg.store).map_err(failed)?;
    let cat = catalog::load(&repo, job).await.map_err(failed)?;
    let entries: Vec<ListEntry> = cat.complete.iter().map(ListEntry::from).collect();
    if json {
        let out = serde_json::to_string_pretty(&entries).map_err(failed)?;
        println!("{out}");
        return Ok(());
    }
    if entries.is_empty() {
        println!("no backups");
        return Ok(());
    }
    println!(
        "{:<16} {:<24} {:<21} {:>10}  SOURCES",
        "JOB", "ID", "TIME", "SIZE"
    );
    for e in &entries {
        println!(
            "{:<16} {:<24} {:<21} {:>10}  {}",
            e.job,
            e.id,
            e.time,
            human_bytes(e.size),
            e.sources.join(",")
        );
    }
    Ok(())
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

/// One row of `policy simulate --json` and of prune plans.
#[derive(Debug, Serialize)]
struct PlanRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    time: String,
    keep: bool,
    reasons: Vec<String>,
}

fn print_plan_table(rows: &[PlanRow]) {
    println!("{:<26} {:<24} {:<7} REASONS", "TIME", "ID", "ACTION");
    for r in rows {
        println!(
            "{:<26} {:<24} {:<7} {}",
            r.time,
            r.id.as_deref().unwrap_or("-"),
            if r.keep { "keep" } else { "remove" },
            r.reasons.join(", ")
        );
    }
}

fn simulate(policy_path: &std::path::Path, json: bool) -> Result<(), AppError> {
    use std::io::BufRead;
    let policy =
        crate::policy::load_policy_file(policy_path).map_err(|e| AppError::Usage(e.to_string()))?;
    let mut snaps = Vec::new();
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(failed)?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let time = chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| {
                AppError::Usage(format!(
                    "stdin line {}: `{t}` is not an RFC 3339 time: {e}",
                    i + 1
                ))
            })?
            .with_timezone(&chrono::Utc);
        // Zero-padded input positions make ties resolve the same way on every run.
        snaps.push(crate::retention::Snapshot {
            id: format!("{i:08}"),
            time,
        });
    }
    let plan = crate::retention::plan(&policy, &snaps);
    let rows: Vec<PlanRow> = plan
        .entries
        .iter()
        .map(|e| PlanRow {
            id: None,
            time: e.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            keep: e.keep,
            reasons: e.reasons.clone(),
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(failed)?);
    } else {
        print_plan_table(&rows);
        println!(
            "{} kept, {} removed",
            plan.kept().count(),
            plan.removed().count()
        );
    }
    Ok(())
}

/// Releases a held lock explicitly: a dropped guard releases in the
/// background, which a short-lived command might not wait for.
async fn release_lock(guard: Option<crate::lock::LockGuard>) {
    if let Some(g) = guard {
        if let Err(e) = g.release().await {
            tracing::warn!(error = %e, "could not release the repository lock; it expires on its own");
        }
    }
}

async fn prune(cfg: &Config, job: Option<&str>, dry_run: bool, json: bool) -> Result<(), AppError> {
    let jobs = cfg
        .select_jobs(job)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let repo = store::open(&cfg.store).map_err(failed)?;
    let mut failures = Vec::new();
    let mut reports = Vec::new();
    for j in jobs {
        if j.retention.is_none() {
            if job.is_some() {
                failures.push(format!(
                    "job `{}` has no retention policy: nothing is pruned",
                    j.name
                ));
            } else if !json {
                println!("job {}: no retention policy, skipped", j.name);
            }
            continue;
        }
        // A real prune deletes: hold the job's repository lock so it cannot
        // interleave with a backup of the same job (daemon, run-now, a
        // second sidecar). A dry run only reads.
        let guard = if dry_run {
            None
        } else {
            match crate::lock::acquire(
                &repo,
                &j.name,
                cfg.daemon.lock_ttl,
                "prune",
                Duration::ZERO,
                |_| {},
            )
            .await
            {
                Ok(g) => Some(g),
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            }
        };
        let decision = match crate::prune::plan_job(&repo, j).await {
            Ok(d) => d,
            Err(e) => {
                release_lock(guard).await;
                failures.push(e.to_string());
                continue;
            }
        };
        let rows: Vec<PlanRow> = decision
            .plan
            .entries
            .iter()
            .rev()
            .map(|e| PlanRow {
                id: Some(e.id.clone()),
                time: e.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                keep: e.keep,
                reasons: e.reasons.clone(),
            })
            .collect();
        let outcome = if dry_run {
            None
        } else {
            match crate::prune::apply(&repo, &decision).await {
                Ok(o) => Some(o),
                Err(e) => {
                    failures.push(e.to_string());
                    None
                }
            }
        };
        release_lock(guard).await;
        if json {
            reports.push(serde_json::json!({
                "job": j.name,
                "dry_run": dry_run,
                "entries": rows,
                "sweep": decision.sweep,
                "young_leftovers": decision.young_leftovers,
                "deleted": outcome.as_ref().map(|o| o.deleted.clone()),
                "aborted_uploads": outcome.as_ref().map(|o| o.aborted_uploads.clone()),
                "upload_sweep_error": outcome.as_ref().and_then(|o| o.upload_sweep_error.clone()),
            }));
        } else {
            println!("job {}{}:", j.name, if dry_run { " (dry run)" } else { "" });
            print_plan_table(&rows);
            let removed = decision.removed_ids().len();
            match &outcome {
                Some(o) => println!(
                    "{} kept, {} deleted, {} leftover(s) swept",
                    rows.len() - removed,
                    o.deleted.len(),
                    o.swept.len()
                ),
                None => println!(
                    "{} kept, {} would be deleted, {} leftover(s) would be swept, {} too young to sweep",
                    rows.len() - removed,
                    removed,
                    decision.sweep.len(),
                    decision.young_leftovers.len()
                ),
            }
            if let Some(o) = &outcome {
                if !o.aborted_uploads.is_empty() {
                    println!(
                        "{} stale multipart upload(s) aborted",
                        o.aborted_uploads.len()
                    );
                }
                if let Some(e) = &o.upload_sweep_error {
                    println!("warning: {e}");
                }
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).map_err(failed)?
        );
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AppError::Failed(anyhow::anyhow!(failures.join("\n"))))
    }
}

/// `ccbackup daemon`: SIGTERM/SIGINT stop it (running jobs get the grace
/// period), SIGHUP reloads the configuration.
async fn daemon(cfg: Config, listen: Option<String>) -> Result<(), AppError> {
    use tokio::signal::unix::{signal, SignalKind};
    let shutdown = tokio_util::sync::CancellationToken::new();
    let reload = Arc::new(tokio::sync::Notify::new());
    let mut term = signal(SignalKind::terminate()).map_err(failed)?;
    let mut int = signal(SignalKind::interrupt()).map_err(failed)?;
    let mut hup = signal(SignalKind::hangup()).map_err(failed)?;
    let stop = shutdown.clone();
    let reload_tx = reload.clone();
    let signals = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM received"); stop.cancel(); }
                _ = int.recv() => { tracing::info!("SIGINT received"); stop.cancel(); }
                _ = hup.recv() => { tracing::info!("SIGHUP received; reloading configuration"); reload_tx.notify_one(); }
            }
        }
    });
    let opts = crate::daemon::Options {
        listen,
        reload: Some(reload),
        ..Default::default()
    };
    let r = crate::daemon::run(cfg, opts, shutdown).await;
    signals.abort();
    r.map_err(failed)
}

/// `ccbackup schedule`: next run times, one per line, with the job's UTC
/// offset; prefixed with the job name when several jobs are shown.
fn schedule(
    cfg: &Config,
    job: Option<&str>,
    count: usize,
    after: Option<&str>,
) -> Result<(), AppError> {
    let jobs = cfg
        .select_jobs(job)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let scheduled: Vec<&JobConfig> = jobs.into_iter().filter(|j| j.schedule.is_some()).collect();
    if scheduled.is_empty() {
        return Err(AppError::Usage(match job {
            Some(j) => format!("job `{j}` has no schedule"),
            None => "no job has a schedule".to_owned(),
        }));
    }
    let now = match after {
        None => chrono::Utc::now(),
        Some(a) => chrono::DateTime::parse_from_rfc3339(a)
            .map_err(|e| AppError::Usage(format!("--after {a:?} is not an RFC 3339 time: {e}")))?
            .with_timezone(&chrono::Utc),
    };
    let prefix = scheduled.len() > 1;
    for j in scheduled {
        for t in crate::daemon::upcoming(j, now, count) {
            if prefix {
                println!("{} {t}", j.name);
            } else {
                println!("{t}");
            }
        }
    }
    Ok(())
}
