//! `run-now` and `list`.

use super::*;

pub(super) async fn run_now(
    cfg: &Config,
    job: Option<&str>,
    wait_lock: Option<&str>,
    intr: &Interrupt,
) -> Result<(), AppError> {
    let jobs = cfg
        .select_jobs(job)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let lock_wait = lock_wait(wait_lock)?;
    // Writes stop the moment a signal arrives, so an interrupted run can
    // never commit a manifest; deletes and aborts still pass for cleanup.
    let repo = crate::gate::gated(
        &store::open(&cfg.store)
            .map_err(failed)?
            .with_signing(cfg.signing.as_ref()),
        intr.token(),
    );
    let mut failures = Vec::new();
    for job in jobs {
        if intr.is_interrupted() {
            failures.push(format!("job `{}` was not started", job.name));
            continue;
        }
        let progress = Arc::new(Progress::new());
        let reporter = spawn_progress(&job.name, progress.clone());
        let started = Instant::now();
        let kill = KillSwitch::default();
        let _watch = interrupt::kill_on_cancel(&intr.token(), &kill);
        let result =
            runner::run_once_waiting(cfg, &repo, job, kill, progress.clone(), lock_wait).await;
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
                failures.extend(super::copy::failures(&m.id, &report.copies));
            }
            Err(e) => {
                // Contention is not a failure of the backup: log it apart,
                // as the daemon does; the exit status is still 1.
                let locked = e.lock_error().is_some_and(|l| l.is_held());
                let outcome = if locked { "locked" } else { "failure" };
                tracing::error!(job = %job.name, outcome, error = %e, "backup failed");
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

/// `--wait-lock DURATION`, in the syntax of the config's durations.
fn lock_wait(arg: Option<&str>) -> Result<Duration, AppError> {
    arg.map_or(Ok(Duration::ZERO), |v| {
        crate::schedule::parse_jitter(v).map_err(|_| {
            AppError::Usage(format!(
                "--wait-lock {v:?}: expected a duration such as 30s, 5m, 1h or 1h30m (m = minutes)"
            ))
        })
    })
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

/// One row of `list --json`.
#[derive(Debug, Serialize)]
pub struct ListEntry {
    pub id: String,
    pub job: String,
    pub time: String,
    /// `complete`, `damaged` (the manifest exists but cannot be used) or
    /// `untrusted` (not signed by the configured key); for the last two
    /// `problem` says why and the other fields are empty.
    pub status: &'static str,
    pub sources: Vec<String>,
    pub size: u64,
    pub raw_size: u64,
    pub artifacts: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl From<&Manifest> for ListEntry {
    fn from(m: &Manifest) -> Self {
        ListEntry {
            id: m.id.clone(),
            job: m.job.clone(),
            time: m
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            status: "complete",
            sources: m.source_names(),
            size: m.stored_bytes(),
            raw_size: m.raw_bytes(),
            artifacts: m.artifacts.len(),
            problem: None,
        }
    }
}

impl From<&catalog::Damaged> for ListEntry {
    fn from(d: &catalog::Damaged) -> Self {
        ListEntry {
            id: d.id.clone(),
            job: d.job.clone(),
            // The time comes from the directory name: the manifest's own
            // claims are what cannot be trusted.
            time: store::backup_id_time(&d.id)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            status: if d.untrusted { "untrusted" } else { "damaged" },
            sources: Vec::new(),
            size: 0,
            raw_size: 0,
            artifacts: 0,
            problem: Some(d.problem.clone()),
        }
    }
}

pub(super) async fn list(cfg: &Config, job: Option<&str>, json: bool) -> Result<(), AppError> {
    if let Some(j) = job {
        cfg.select_jobs(Some(j))
            .map_err(|e| AppError::Usage(e.to_string()))?;
    }
    let repo = store::open(&cfg.store)
        .map_err(failed)?
        .with_signing(cfg.signing.as_ref());
    let cat = catalog::load(&repo, job).await.map_err(failed)?;
    let mut entries: Vec<ListEntry> = cat.complete.iter().map(ListEntry::from).collect();
    entries.extend(cat.damaged.iter().map(ListEntry::from));
    entries.sort_by(|a, b| (&a.time, &a.id).cmp(&(&b.time, &b.id)));
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
        match &e.problem {
            None => println!(
                "{:<16} {:<24} {:<21} {:>10}  {}",
                e.job,
                e.id,
                e.time,
                human_bytes(e.size),
                e.sources.join(",")
            ),
            Some(p) => println!(
                "{:<16} {:<24} {:<21} {:>10}  {}: {p}",
                e.job,
                e.id,
                e.time,
                "-",
                e.status.to_uppercase()
            ),
        }
    }
    if !cat.damaged.is_empty() {
        eprintln!(
            "warning: {} damaged backup{} (not counted, not pruned; inspect or remove by hand)",
            cat.damaged.len(),
            if cat.damaged.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
