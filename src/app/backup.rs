//! `run-now` and `list`.

use super::listing::ListEntry;
use super::out::{note, say};
use super::*;
use crate::daemon::job::{Attempts, RunResult};

pub(super) async fn run_now(
    cfg: &Config,
    job: Option<&str>,
    wait_lock: Option<&str>,
    json: bool,
    shrink: crate::backup::run::Shrink,
    intr: &Interrupt,
) -> Result<(), AppError> {
    let jobs = cfg
        .select_jobs(job)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let lock_wait = lock_wait(wait_lock)?;
    // Writes stop the moment a signal arrives, so an interrupted run can
    // never commit a manifest; deletes and aborts still pass for cleanup.
    let repo = crate::repo::gate::gated(
        &store::open(&cfg.store)
            .map_err(failed)?
            .with_signing(cfg.signing.as_ref()),
        intr.token(),
    );
    let client = crate::notify::client();
    let mut failures = Vec::new();
    for job in jobs {
        if intr.is_interrupted() {
            failures.push(format!("job `{}` was not started", job.name));
            continue;
        }
        let opts = runner::RunOptions { lock_wait, shrink };
        let report = run_one(cfg, &repo, job, opts, &client, intr).await;
        if json {
            match serde_json::to_string(&report) {
                Ok(line) => say!("{line}"),
                Err(e) => failures.push(format!("cannot encode the report of `{}`: {e}", job.name)),
            }
        } else if let Some(id) = &report.backup_id {
            say!("{id}");
        }
        // A failed copy leaves the backup complete, but the command must
        // not look fine to a cron wrapper.
        failures.extend(report.copy_errors.iter().cloned());
        if !report.outcome.is_success() {
            failures.push(
                report
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("job `{}`: {}", job.name, report.outcome)),
            );
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AppError::Failed(anyhow::anyhow!(failures.join("\n"))))
    }
}

/// One job, exactly as the daemon reports it (minus retries): the
/// daemon's run ceremony ([`crate::daemon::job::run_reported`]) with one
/// attempt, a progress view, and the summary on stderr.
async fn run_one(
    cfg: &Config,
    repo: &store::Repo,
    job: &JobConfig,
    opts: runner::RunOptions,
    client: &reqwest::Client,
    intr: &Interrupt,
) -> crate::backup::report::Report {
    let once = Once {
        cfg,
        repo,
        job,
        opts,
        intr,
    };
    crate::daemon::job::run_reported(cfg, repo, job, client, &once).await
}

/// `run-now`'s way of running a job: one attempt, cancelled by a signal.
struct Once<'a> {
    cfg: &'a Config,
    repo: &'a store::Repo,
    job: &'a JobConfig,
    opts: runner::RunOptions,
    intr: &'a Interrupt,
}

#[async_trait::async_trait]
impl Attempts for Once<'_> {
    async fn attempt(&self, _run_id: &str) -> (RunResult, u32) {
        let progress = Arc::new(Progress::new());
        let view = super::show_progress(&self.job.name, progress.clone());
        let kill = KillSwitch::default();
        let _watch = interrupt::kill_on_cancel(&self.intr.token(), &kill);
        let result =
            runner::run_once_with(self.cfg, self.repo, self.job, kill, progress, self.opts).await;
        drop(view);
        (result, 1)
    }

    fn cancelled(&self) -> bool {
        self.intr.is_interrupted()
    }

    async fn logged(&self, report: &crate::backup::report::Report, _result: &RunResult) {
        note!("{}", report.summary());
    }
}

/// `--wait-lock DURATION`, in the syntax of the config's durations.
fn lock_wait(arg: Option<&str>) -> Result<Duration, AppError> {
    arg.map_or(Ok(Duration::ZERO), |v| {
        crate::duration::parse_duration(v).map_err(|_| {
            AppError::Usage(format!(
                "--wait-lock `{v}`: expected a duration such as 30s, 5m, 1h or 1h30m (m = minutes)"
            ))
        })
    })
}

/// The shrink guard's mark, and a legacy backup's, in the text listing.
fn guard_note(e: &ListEntry) -> String {
    let legacy = if e.trust == Some("legacy") {
        "  (unsigned, from before signing)"
    } else {
        ""
    };
    let guard = if !e.suspicious.is_empty() {
        format!("  SUSPICIOUS: {}", e.suspicious.join("; "))
    } else if !e.shrink_accepted.is_empty() {
        format!("  (shrink accepted: {})", e.shrink_accepted.join("; "))
    } else {
        String::new()
    };
    format!("{legacy}{guard}")
}

pub(super) async fn list(
    cfg: &Config,
    job: Option<&str>,
    json: bool,
    as_of: Option<&str>,
) -> Result<(), AppError> {
    if let Some(j) = job {
        cfg.select_jobs(Some(j))
            .map_err(|e| AppError::Usage(e.to_string()))?;
    }
    let repo = super::past::open_repo(cfg, as_of).await?;
    let cat = catalog::load(&repo, job).await.map_err(failed)?;
    let trust = |m: &Manifest| match (cat.is_legacy(m), repo.verifier.is_some()) {
        (true, _) => "legacy",
        (false, true) => "signed",
        (false, false) => "unchecked",
    };
    let mut entries: Vec<ListEntry> = cat
        .complete
        .iter()
        .map(|m| ListEntry {
            trust: Some(trust(m)),
            ..ListEntry::from(m)
        })
        .collect();
    entries.extend(cat.damaged.iter().map(ListEntry::from));
    // The past is read as it was; tampering is judged on the store as it is.
    let tampered = if as_of.is_none() {
        super::tamper::check(cfg, job, &repo, &cat).await
    } else {
        Vec::new()
    };
    super::tamper::annotate(&mut entries, &tampered);
    entries.sort_by(|a, b| (&a.started_at, &a.backup_id).cmp(&(&b.started_at, &b.backup_id)));
    if json {
        let out = serde_json::to_string_pretty(&entries).map_err(failed)?;
        say!("{out}");
        super::tamper::warn(&tampered);
        return Ok(());
    }
    if entries.is_empty() {
        say!("no backups");
        return Ok(());
    }
    say!(
        "{:<16} {:<24} {:<21} {:>10}  SOURCES",
        "JOB",
        "ID",
        "TIME",
        "SIZE"
    );
    // Everything but the ID and time can come from a manifest someone else
    // wrote: never let it reach the terminal raw.
    let p = crate::progress::printable;
    for e in &entries {
        let line = match &e.problem {
            None => format!(
                "{:<16} {:<24} {:<21} {:>10}  {}{}",
                e.job,
                e.backup_id,
                e.started_at,
                human_bytes(e.stored_bytes),
                e.sources.join(","),
                guard_note(e)
            ),
            Some(problem) => format!(
                "{:<16} {:<24} {:<21} {:>10}  {}: {problem}",
                e.job,
                e.backup_id,
                e.started_at,
                "-",
                e.status.to_uppercase()
            ),
        };
        let line = match (e.tampered, &e.recover_as_of) {
            (Some(kind), Some(t)) if e.status != "deleted" => format!(
                "{line}  {}, recoverable with --as-of {t}",
                kind.to_uppercase()
            ),
            _ => line,
        };
        say!("{}", p(&line));
    }
    let future = cat.damaged.iter().filter(|d| d.future).count();
    let damaged = cat.damaged.len() - future;
    if damaged > 0 {
        note!(
            "warning: {damaged} damaged backup{} (not counted, not pruned; inspect or remove by hand)",
            if damaged == 1 { "" } else { "s" }
        );
    }
    super::tamper::warn(&tampered);
    if future > 0 {
        note!(
            "warning: {future} backup{} dated in the future (not counted, not copied, not pruned; a forgery, or a clock far ahead)",
            if future == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
