//! `restore` and `verify`.

use super::*;

pub(super) async fn restore(cfg: &Config, a: RestoreArgs) -> Result<(), AppError> {
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
        keep_role_passwords: a.keep_role_passwords,
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

pub(super) async fn verify(
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
