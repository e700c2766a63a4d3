//! `restore` and `verify`.

use super::out::{note, say};
use super::*;
use crate::restore::report::{SkipReason, Skipped};
use crate::restore::verify::{ArtifactCheck, Check, FailedAt};
use crate::restore::{StepOutcome, StepReport};

/// `restore --json` (docs/schema/restore.json): the facts of the text
/// output, typed. Printed also when the restore fails.
#[derive(Debug, Serialize)]
struct RestoreJson {
    job: String,
    backup_id: Option<String>,
    started_at: Option<String>,
    dry_run: bool,
    outcome: &'static str,
    error: Option<String>,
    duration_seconds: f64,
    files_written: u64,
    bytes_written: u64,
    databases_restored: u64,
    steps: Vec<StepReport>,
    warnings: Vec<String>,
    skipped: Vec<Skipped>,
}

/// `verify --json` (docs/schema/verify.json).
#[derive(Debug, Serialize, Default)]
struct VerifyJson {
    outcome: &'static str,
    error: Option<String>,
    restore_test: bool,
    backups: u64,
    checked: u64,
    bad: u64,
    duration_seconds: f64,
    artifacts: Vec<VerifiedArtifact>,
    warnings: Vec<String>,
    skipped: Vec<Skipped>,
}

#[derive(Debug, Serialize)]
struct VerifiedArtifact {
    job: String,
    backup_id: String,
    /// None for a damaged manifest.
    artifact: Option<String>,
    outcome: &'static str,
    problem: Option<String>,
    /// What an artifact that passed was checked for.
    checks: Vec<Check>,
    /// Where a failed one stopped.
    failed_at: Option<FailedAt>,
}

impl VerifiedArtifact {
    fn of(job: &str, a: ArtifactCheck) -> VerifiedArtifact {
        VerifiedArtifact {
            job: job.to_owned(),
            outcome: if a.problem().is_some() {
                "failed"
            } else {
                "ok"
            },
            problem: a.problem().map(str::to_owned),
            checks: a.checks().to_vec(),
            failed_at: a.failed_at(),
            backup_id: a.backup,
            artifact: Some(a.key),
        }
    }
}

/// A newer damaged backup that selecting `latest` passed over.
fn skipped_damaged(d: &crate::repo::catalog::Damaged) -> Skipped {
    Skipped {
        job: d.job.clone(),
        backup_id: d.id.clone(),
        reason: SkipReason::DamagedNewer,
        problem: d.problem.clone(),
    }
}

/// `success`, `cancelled` or `failure`, as in a run report.
fn outcome_of<T>(result: &Result<T, AppError>, interrupted: bool) -> &'static str {
    match (result, interrupted) {
        (_, true) => "cancelled",
        (Ok(_), false) => "success",
        (Err(_), false) => "failure",
    }
}

fn elapsed_seconds(since: Instant) -> f64 {
    let ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
    ms as f64 / 1000.0
}

fn print_json(v: &impl Serialize) -> Result<(), AppError> {
    say!("{}", serde_json::to_string_pretty(v).map_err(failed)?);
    Ok(())
}

pub(super) async fn restore(
    cfg: &Config,
    a: RestoreArgs,
    intr: &Interrupt,
) -> Result<(), AppError> {
    let job = one_job(cfg, a.job.as_deref())?;
    if a.pick.backup == "all" {
        return Err(AppError::Usage(
            "restore takes one backup: an ID or `latest`".into(),
        ));
    }
    let json = a.json;
    let started = Instant::now();
    let mut out = RestoreJson {
        job: job.name.clone(),
        backup_id: None,
        started_at: None,
        dry_run: a.dry_run,
        outcome: "failure",
        error: None,
        duration_seconds: 0.0,
        files_written: 0,
        bytes_written: 0,
        databases_restored: 0,
        steps: Vec::new(),
        warnings: Vec::new(),
        skipped: Vec::new(),
    };
    let result = restore_one(cfg, job, a, intr, &mut out).await;
    if !json {
        return result;
    }
    out.outcome = outcome_of(&result, intr.is_interrupted());
    out.error = result.as_ref().err().map(|e| chain(e).to_string());
    out.duration_seconds = elapsed_seconds(started);
    // The totals count what was put in place, so a dry run's are 0.
    let restored = out
        .steps
        .iter()
        .filter(|s| s.outcome == StepOutcome::Restored);
    for s in restored {
        out.files_written += s.files_written.unwrap_or(0);
        out.bytes_written += s.bytes_written.unwrap_or(0);
        out.databases_restored += u64::from(s.kind == "database");
    }
    print_json(&out)?;
    result
}

/// The library's request from the command line's arguments.
fn request(
    a: RestoreArgs,
    identities: Option<Arc<crate::crypto::Identities>>,
    intr: &Interrupt,
) -> Result<RestoreRequest, AppError> {
    let tables = crate::restore::TableRequest {
        tables: a
            .table
            .iter()
            .map(|t| crate::restore::parse_table_arg(t))
            .collect::<Result<_, _>>()
            .map_err(AppError::Usage)?,
        schemas: a.schema.clone(),
    };
    Ok(RestoreRequest {
        source: a.pick.source,
        database: a.database,
        target_db: a.target_db,
        clean: a.clean,
        force: a.force,
        jobs: a.jobs,
        globals: a.globals,
        keep_role_passwords: a.keep_role_passwords,
        no_owner: a.no_owner,
        to: a.to,
        include: a.include,
        tables,
        dry_run: a.dry_run,
        staging_dir: a.staging_dir,
        same_owner: a.same_owner,
        allow_system_db: a.allow_system_db,
        allow_unencrypted: a.allow_unencrypted,
        cancel: intr.token(),
        identities,
        progress: Some(Arc::new(Progress::new())),
    })
}

async fn restore_one(
    cfg: &Config,
    job: &JobConfig,
    a: RestoreArgs,
    intr: &Interrupt,
    out: &mut RestoreJson,
) -> Result<(), AppError> {
    let json = a.json;
    let repo = super::past::open_repo(cfg, a.as_of.as_deref()).await?;
    let sel = select_backups(&repo, &job.name, &a.pick.backup).await?;
    for d in &sel.damaged {
        let s = skipped_damaged(d);
        note!("warning: {s}");
        out.warnings.push(s.to_string());
        out.skipped.push(s);
    }
    let Some(m) = sel.manifests.into_iter().next() else {
        return Err(failed(anyhow::anyhow!("no backup selected")));
    };
    out.backup_id = Some(m.id.clone());
    out.started_at = Some(crate::backup::report::rfc3339(m.started_at));
    let identities = identities_for(job, a.identity.as_deref(), std::slice::from_ref(&m))?;
    let req = request(a, identities, intr)?;
    let say_text = |line: std::fmt::Arguments<'_>| {
        if !json {
            super::out::line(line);
        }
    };
    say_text(format_args!(
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
    ));
    let started = Instant::now();
    let view = req
        .progress
        .clone()
        .and_then(|p| super::show_progress("restore", p));
    let result = crate::restore::run(&repo, job, &m, &req).await;
    drop(view);
    let report = result.map_err(failed)?;
    for l in &report.lines() {
        say_text(format_args!("  {}", crate::progress::printable(l)));
    }
    out.steps = report.steps;
    let written = req
        .progress
        .as_ref()
        .map(|p| p.written_summary())
        .unwrap_or_default();
    say_text(format_args!(
        "{} backup {}/{} in {:.1} s{}",
        if req.dry_run {
            "planned restore of"
        } else {
            "restored"
        },
        m.job,
        m.id,
        started.elapsed().as_secs_f64(),
        if req.dry_run {
            String::new()
        } else {
            format!(" ({written})")
        }
    ));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn verify(
    cfg: &Config,
    job: Option<&str>,
    which: &str,
    restore_test: bool,
    identity: Option<std::path::PathBuf>,
    json: bool,
    as_of: Option<&str>,
    intr: &Interrupt,
) -> Result<(), AppError> {
    let started = Instant::now();
    let mut out = VerifyJson {
        restore_test,
        ..VerifyJson::default()
    };
    let request = VerifyRequest {
        cfg,
        job,
        which,
        restore_test,
        identity,
        json,
        as_of,
        intr,
    };
    let result = verify_all(&request, &mut out).await;
    if !json {
        return result;
    }
    out.outcome = outcome_of(&result, intr.is_interrupted());
    out.error = result.as_ref().err().map(|e| chain(e).to_string());
    out.duration_seconds = elapsed_seconds(started);
    out.checked = out.artifacts.len() as u64;
    out.bad = out.artifacts.iter().filter(|a| a.problem.is_some()).count() as u64;
    print_json(&out)?;
    result
}

/// A damaged manifest: asked for every backup, it is a failure; asked for
/// the latest, it is news about a newer one that was skipped.
fn damaged(d: &crate::repo::catalog::Damaged, all: bool, json: bool, out: &mut VerifyJson) {
    if !all {
        let s = skipped_damaged(d);
        note!("warning: {s}");
        out.warnings.push(s.to_string());
        out.skipped.push(s);
        return;
    }
    if !json {
        say!(
            "FAILED  {}/{}: damaged manifest: {}",
            d.job,
            d.id,
            d.problem
        );
    }
    out.artifacts.push(VerifiedArtifact {
        job: d.job.clone(),
        backup_id: d.id.clone(),
        artifact: None,
        outcome: "failed",
        problem: Some(format!("damaged manifest: {}", d.problem)),
        checks: Vec::new(),
        failed_at: Some(FailedAt::Manifest),
    });
}

/// What `verify` was asked, handed to [`verify_all`] as one value.
struct VerifyRequest<'a> {
    cfg: &'a Config,
    job: Option<&'a str>,
    which: &'a str,
    restore_test: bool,
    identity: Option<std::path::PathBuf>,
    json: bool,
    as_of: Option<&'a str>,
    intr: &'a Interrupt,
}

async fn verify_all(req: &VerifyRequest<'_>, out: &mut VerifyJson) -> Result<(), AppError> {
    let VerifyRequest {
        cfg,
        job,
        which,
        restore_test,
        ref identity,
        json,
        as_of,
        intr,
    } = *req;
    let say_text = |line: std::fmt::Arguments<'_>| {
        if !json {
            super::out::line(line);
        }
    };
    let jobs = cfg
        .select_jobs(job)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let repo = super::past::open_repo(cfg, as_of).await?;
    let started = Instant::now();
    let progress = Arc::new(Progress::new());
    let _view = super::show_progress("verify", progress.clone());
    for job in jobs {
        let sel = select_backups(&repo, &job.name, which).await?;
        for d in &sel.damaged {
            damaged(d, which == "all", json, out);
        }
        for m in sel.manifests {
            if intr.is_interrupted() {
                break;
            }
            // Checksums are of the stored bytes: only a restore test
            // needs to read inside, and so an identity.
            let ids = if restore_test {
                identities_for(job, identity.as_deref(), std::slice::from_ref(&m))?
            } else {
                None
            };
            let opts = crate::restore::verify::VerifyOptions {
                restore_test,
                identities: ids,
                cancel: intr.token(),
                progress: progress.clone(),
            };
            out.backups += 1;
            let report = crate::restore::verify::verify_backup(&repo, job, &m, &opts).await;
            super::clear_progress_line();
            for a in report.artifacts {
                say_text(format_args!(
                    "{}",
                    crate::progress::printable(&a.line(&job.name))
                ));
                out.artifacts.push(VerifiedArtifact::of(&job.name, a));
            }
        }
    }
    let checked = out.artifacts.len();
    let bad = out.artifacts.iter().filter(|a| a.problem.is_some()).count();
    let backups = out.backups;
    if intr.is_interrupted() {
        return Err(failed(anyhow::anyhow!(
            "verify stopped after checking {checked} artifacts ({bad} bad); scratch databases and staging were removed"
        )));
    }
    let took = started.elapsed().as_secs_f64();
    if bad > 0 {
        return Err(failed(anyhow::anyhow!(
            "verify found {bad} of {checked} artifacts bad ({backups} backups, {took:.1} s)"
        )));
    }
    say_text(format_args!(
        "verified {checked} artifacts of {backups} backup{}{}: all ok ({took:.1} s)",
        if backups == 1 { "" } else { "s" },
        if restore_test {
            " with restore tests"
        } else {
            ""
        }
    ));
    Ok(())
}

/// The age identities for reading `manifests`, when any of them is
/// encrypted: `--identity`, else the job's `encryption.identity_file`.
/// Without either, `None`: the restore itself then says an identity is
/// needed, before it downloads anything.
pub(super) fn identities_for(
    job: &JobConfig,
    flag: Option<&std::path::Path>,
    manifests: &[Manifest],
) -> Result<Option<Arc<crate::crypto::Identities>>, AppError> {
    if !manifests
        .iter()
        .any(|m| crate::crypto::any_encrypted(&m.artifacts))
    {
        return Ok(None);
    }
    let configured = job
        .encryption
        .as_ref()
        .and_then(|e| e.identity_file.as_deref());
    match flag.or(configured) {
        None => Ok(None),
        Some(p) => crate::crypto::Identities::load(p)
            .map(|i| Some(Arc::new(i)))
            .map_err(failed),
    }
}
