//! `policy simulate` and `prune`.

use super::out::say;
use super::*;
use crate::error::chain;

/// One entry of `prune --json` (docs/schema/prune.json), newest first.
#[derive(Debug, Serialize)]
struct PlanRow {
    backup_id: String,
    /// RFC 3339, UTC.
    started_at: String,
    keep: bool,
    reasons: Vec<String>,
}

/// One row of `policy simulate --json` (docs/schema/policy-simulate.json):
/// a prune entry whose backup is a line of the input, not a stored backup.
#[derive(Debug, Serialize)]
struct SimulatedRow {
    /// 1-based line of the input.
    line: usize,
    /// The input time, as precise as it was given.
    started_at: String,
    keep: bool,
    reasons: Vec<String>,
}

fn print_plan_table<'a>(rows: impl Iterator<Item = (String, &'a str, bool, &'a [String])>) {
    say!("{:<26} {:<24} {:<7} REASONS", "TIME", "ID", "ACTION");
    for (id, time, keep, reasons) in rows {
        say!(
            "{:<26} {:<24} {:<7} {}",
            time,
            id,
            if keep { "keep" } else { "remove" },
            reasons.join(", ")
        );
    }
}

pub(super) fn simulate(policy_path: &std::path::Path, json: bool) -> Result<(), AppError> {
    use std::io::BufRead;
    let policy = crate::retention::policy::load_policy_file(policy_path)
        .map_err(|e| AppError::Usage(e.to_string()))?;
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
        snaps.push(crate::retention::planner::Snapshot {
            id: format!("{i:08}"),
            time,
        });
    }
    let plan = crate::retention::planner::plan(&policy, &snaps);
    let mut entries: Vec<&crate::retention::planner::PlanEntry> = plan.entries.iter().collect();
    // Newest first, as `prune` lists; on equal times the later input line is
    // the newer, as the policy itself breaks the tie.
    entries.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    let rows: Vec<SimulatedRow> = entries
        .into_iter()
        .map(|e| SimulatedRow {
            line: input_line(&e.id),
            // As precise as the input: sub-second times stay apart.
            started_at: e.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            keep: e.keep,
            reasons: e.reasons.clone(),
        })
        .collect();
    if json {
        say!("{}", serde_json::to_string_pretty(&rows).map_err(failed)?);
    } else {
        print_plan_table(rows.iter().map(|r| {
            (
                format!("line {}", r.line),
                r.started_at.as_str(),
                r.keep,
                r.reasons.as_slice(),
            )
        }));
        say!(
            "{} kept, {} removed",
            plan.kept().count(),
            plan.removed().count()
        );
    }
    Ok(())
}

/// The 1-based input line of a simulated snapshot, whose id is its 0-based
/// input position zero-padded.
fn input_line(id: &str) -> usize {
    id.parse::<usize>().map_or(0, |i| i + 1)
}

/// Releases a held lock explicitly: a dropped guard releases in the
/// background, which a short-lived command might not wait for.
async fn release_lock(guard: Option<crate::repo::lock::LockGuard>) {
    if let Some(g) = guard {
        if let Err(e) = g.release().await {
            tracing::warn!(error = %chain(&e), "could not release the repository lock; it expires on its own");
        }
    }
}

pub(super) async fn prune(
    cfg: &Config,
    job: Option<&str>,
    dry_run: bool,
    json: bool,
    intr: &Interrupt,
) -> Result<(), AppError> {
    let jobs = cfg
        .select_jobs(job)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let repo = store::open(&cfg.store)
        .map_err(failed)?
        .with_signing(cfg.signing.as_ref());
    let mut failures = Vec::new();
    let mut reports = Vec::new();
    for j in jobs {
        if intr.is_interrupted() {
            break;
        }
        if j.retention.is_none() {
            if job.is_some() {
                failures.push(format!(
                    "job `{}` has no retention policy: nothing is pruned",
                    j.name
                ));
            } else if !json {
                say!("job {}: no retention policy, skipped", j.name);
            }
            continue;
        }
        let done = match prune_job(cfg, &repo, j, dry_run, intr).await {
            Ok(d) => d,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        failures.extend(done.failure.clone());
        if json {
            reports.push(done.json(&j.name, dry_run));
        } else {
            done.print(&j.name, dry_run);
        }
    }
    if json {
        say!(
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

/// What `prune` did (or, in a dry run, would do) to one job.
struct Pruned {
    decision: crate::retention::prune::Decision,
    rows: Vec<PlanRow>,
    /// `None` in a dry run, or when deleting failed (`failure` says why).
    outcome: Option<crate::retention::prune::Pruned>,
    failure: Option<String>,
}

/// Plans one job's retention and, unless `dry_run`, carries it out under
/// the job's lock. `Err` when nothing could be planned.
async fn prune_job(
    cfg: &Config,
    repo: &store::Repo,
    j: &JobConfig,
    dry_run: bool,
    intr: &Interrupt,
) -> Result<Pruned, String> {
    // A real prune deletes: hold the job's repository lock so it cannot
    // interleave with a backup of the same job (daemon, run-now, a
    // second sidecar). A dry run only reads.
    let guard = if dry_run {
        None
    } else {
        let lock_ttl = cfg.daemon.lock_ttl;
        match crate::repo::lock::acquire(repo, &j.name, lock_ttl, "prune", Duration::ZERO, |_| {})
            .await
        {
            Ok(g) => Some(g),
            Err(e) => return Err(chain(&e).to_string()),
        }
    };
    let decision = match crate::retention::prune::plan_job(repo, j).await {
        Ok(d) => d,
        Err(e) => {
            release_lock(guard).await;
            return Err(chain(&e).to_string());
        }
    };
    let rows: Vec<PlanRow> = decision
        .plan
        .entries
        .iter()
        .rev()
        .map(|e| PlanRow {
            backup_id: e.id.clone(),
            started_at: e.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            keep: e.keep,
            reasons: e.reasons.clone(),
        })
        .collect();
    let (outcome, failure) = if dry_run {
        (None, None)
    } else {
        match crate::retention::prune::apply_until(repo, &decision, &intr.token()).await {
            Ok(o) => (Some(o), None),
            Err(e) => (None, Some(chain(&e).to_string())),
        }
    };
    release_lock(guard).await;
    Ok(Pruned {
        decision,
        rows,
        outcome,
        failure,
    })
}

impl Pruned {
    /// One element of `prune --json`.
    fn json(&self, job: &str, dry_run: bool) -> serde_json::Value {
        let (decision, outcome) = (&self.decision, self.outcome.as_ref());
        serde_json::json!({
            "job": job,
            "dry_run": dry_run,
            "entries": self.rows,
            "sweep": decision.sweep,
            "young_leftovers": decision.young_leftovers,
            "damaged": decision.damaged,
            "deleted": outcome.map(|o| o.deleted.clone()),
            "aborted_uploads": outcome.map(|o| o.aborted_uploads.clone()),
            "upload_sweep_error": outcome.and_then(|o| o.upload_sweep_error.clone()),
            "locks": outcome.and_then(|o| o.locks.clone()),
            "retained_by_lock": outcome.map(|o| o.retained_by_lock.clone()),
        })
    }

    /// The text report of one job.
    fn print(&self, job: &str, dry_run: bool) {
        let (decision, rows) = (&self.decision, &self.rows);
        say!("job {}{}:", job, if dry_run { " (dry run)" } else { "" });
        print_plan_table(rows.iter().map(|r| {
            (
                r.backup_id.clone(),
                r.started_at.as_str(),
                r.keep,
                r.reasons.as_slice(),
            )
        }));
        if !decision.damaged.is_empty() {
            say!(
                "{} damaged backup(s) left alone (not counted, never pruned): {}",
                decision.damaged.len(),
                decision.damaged.join(", ")
            );
        }
        let removed = decision.removed_ids().len();
        match &self.outcome {
            Some(o) => say!(
                "{} kept, {} deleted, {} leftover(s) swept",
                rows.len() - removed,
                o.deleted.len(),
                o.swept.len()
            ),
            None => say!(
                "{} kept, {} would be deleted, {} leftover(s) would be swept, {} too young to sweep",
                rows.len() - removed,
                removed,
                decision.sweep.len(),
                decision.young_leftovers.len()
            ),
        }
        if let Some(o) = &self.outcome {
            if !o.aborted_uploads.is_empty() {
                say!(
                    "{} stale multipart upload(s) aborted",
                    o.aborted_uploads.len()
                );
            }
            if let Some(e) = &o.upload_sweep_error {
                say!("warning: {e}");
            }
            print_locks(o);
        }
    }
}

/// What the store's Object Lock did: kept backups extended, deleted ones
/// the store still retains (recoverable with their versions until then).
fn print_locks(o: &crate::retention::prune::Pruned) {
    let secs =
        |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if let Some(l) = &o.locks {
        say!(
            "locks: {} object(s) extended to {}, {} already locked that far{}",
            l.extended,
            l.until.as_ref().map(secs).unwrap_or_default(),
            l.already_locked,
            match l.failed.len() {
                0 => String::new(),
                n => format!(", {n} FAILED"),
            }
        );
    }
    for r in &o.retained_by_lock {
        say!("{}: retained by lock until {}", r.backup_id, secs(&r.until));
    }
}
