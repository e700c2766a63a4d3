//! `restore` and `verify`.

use super::out::{note, say};
use super::*;

pub(super) async fn restore(
    cfg: &Config,
    a: RestoreArgs,
    intr: &Interrupt,
) -> Result<(), AppError> {
    let job = one_job(cfg, a.job.as_deref())?;
    if a.backup == "all" {
        return Err(AppError::Usage(
            "restore takes one backup: an ID or `latest`".into(),
        ));
    }
    let repo = store::open(&cfg.store)
        .map_err(failed)?
        .with_signing(cfg.signing.as_ref());
    let sel = select_backups(&repo, &job.name, &a.backup).await?;
    for d in &sel.damaged {
        note!(
            "warning: newer backup {}/{} is damaged and was skipped: {}",
            d.job,
            d.id,
            d.problem
        );
    }
    let Some(m) = sel.manifests.into_iter().next() else {
        return Err(failed(anyhow::anyhow!("no backup selected")));
    };
    let identities = identities_for(job, a.identity.as_deref(), std::slice::from_ref(&m))?;
    let req = RestoreRequest {
        source: a.source,
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
        dry_run: a.dry_run,
        staging_dir: a.staging_dir,
        same_owner: a.same_owner,
        allow_system_db: a.allow_system_db,
        allow_unencrypted: a.allow_unencrypted,
        cancel: intr.token(),
        identities,
        progress: Some(Arc::new(Progress::new())),
    };
    say!(
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
    let started = Instant::now();
    let view = req
        .progress
        .clone()
        .and_then(|p| super::show_progress("restore", p));
    let result = crate::restore::run(&repo, job, &m, &req).await;
    drop(view);
    let lines = result.map_err(failed)?;
    for l in &lines {
        say!("  {}", crate::progress::printable(l));
    }
    let written = req
        .progress
        .as_ref()
        .map(|p| p.written_summary())
        .unwrap_or_default();
    say!(
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
    );
    Ok(())
}

pub(super) async fn verify(
    cfg: &Config,
    job: Option<&str>,
    which: &str,
    restore_test: bool,
    identity: Option<std::path::PathBuf>,
    intr: &Interrupt,
) -> Result<(), AppError> {
    let jobs = cfg
        .select_jobs(job)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let repo = store::open(&cfg.store)
        .map_err(failed)?
        .with_signing(cfg.signing.as_ref());
    let mut bad = 0;
    let mut checked = 0;
    let mut backups = 0;
    let started = Instant::now();
    let progress = Arc::new(Progress::new());
    let _view = super::show_progress("verify", progress.clone());
    for job in jobs {
        let sel = select_backups(&repo, &job.name, which).await?;
        for d in &sel.damaged {
            // Asked for every backup, a damaged one is a failure; asked for
            // the latest, it is news about a newer one that was skipped.
            if which == "all" {
                checked += 1;
                bad += 1;
                say!(
                    "FAILED  {}/{}: damaged manifest: {}",
                    d.job,
                    d.id,
                    d.problem
                );
            } else {
                note!(
                    "warning: newer backup {}/{} is damaged and was skipped: {}",
                    d.job,
                    d.id,
                    d.problem
                );
            }
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
            backups += 1;
            let findings = crate::restore::verify::verify_backup(&repo, job, &m, &opts).await;
            super::clear_progress_line();
            for f in findings {
                checked += 1;
                match &f.problem {
                    None => say!(
                        "{}",
                        crate::progress::printable(&format!(
                            "ok      {}/{}/{}",
                            job.name, f.backup, f.key
                        ))
                    ),
                    Some(p) => {
                        bad += 1;
                        say!(
                            "{}",
                            crate::progress::printable(&format!(
                                "FAILED  {}/{}/{}: {p}",
                                job.name, f.backup, f.key
                            ))
                        );
                    }
                }
            }
        }
    }
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
    say!(
        "verified {checked} artifacts of {backups} backup{}{}: all ok ({took:.1} s)",
        if backups == 1 { "" } else { "s" },
        if restore_test {
            " with restore tests"
        } else {
            ""
        }
    );
    Ok(())
}

/// The age identities for reading `manifests`, when any of them is
/// encrypted: `--identity`, else the job's `encryption.identity_file`.
/// Without either, `None`: the restore itself then says an identity is
/// needed, before it downloads anything.
fn identities_for(
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
