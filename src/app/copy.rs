//! `copy --from-primary`.

use super::out::say;
use super::*;
use crate::backup::copy::{Copied, StoreRun};
use crate::error::chain;
use crate::repo::store::StoreSpec;

/// The copy stores `--to` names: an index into `copies:` or a URL.
fn select_copies<'a>(cfg: &'a Config, to: Option<&str>) -> Result<Vec<&'a StoreSpec>, AppError> {
    if cfg.copies.is_empty() {
        return Err(AppError::Usage(format!(
            "{}: no copy stores configured; add `copies:` (a list shaped like `store:`)",
            cfg.path.display()
        )));
    }
    let Some(to) = to else {
        return Ok(cfg.copies.iter().collect());
    };
    let trimmed = to.trim_end_matches('/');
    let found = match to.parse::<usize>() {
        Ok(i) => cfg.copies.get(i),
        Err(_) => cfg.copies.iter().find(|c| {
            c.url.as_str().trim_end_matches('/') == trimmed
                || store::display_url(&c.url).trim_end_matches('/') == trimmed
        }),
    };
    let known: Vec<String> = cfg
        .copies
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i}: {}", store::display_url(&c.url)))
        .collect();
    found.map(|c| vec![c]).ok_or_else(|| {
        AppError::Usage(format!(
            "--to `{to}` names no copy store (copies: {})",
            known.join(", ")
        ))
    })
}

/// Copies every complete, trusted backup of the primary store that a copy
/// store lacks, oldest first, then applies the job's retention there.
pub(super) async fn backfill(
    cfg: &Config,
    job: Option<&str>,
    to: Option<&str>,
    intr: &Interrupt,
) -> Result<(), AppError> {
    let targets = select_copies(cfg, to)?;
    let jobs = cfg
        .select_jobs(job)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let primary = store::open(&cfg.store)
        .map_err(failed)?
        .with_signing(cfg.signing.as_ref());
    let mut failures = Vec::new();
    for j in jobs {
        if intr.is_interrupted() {
            break;
        }
        let cat = match catalog::load(&primary, Some(&j.name)).await {
            Ok(c) => c,
            Err(e) => {
                failures.push(chain(&e).to_string());
                continue;
            }
        };
        if !cat.damaged.is_empty() {
            say!(
                "job {}: {} damaged or untrusted backup(s) in the primary store are not copied",
                j.name,
                cat.damaged.len()
            );
        }
        // Legacy (unsigned) backups are not copied: a copy store trusts
        // what is signed, and copies made before the move to signing are
        // already there.
        let ids: Vec<String> = cat
            .complete
            .iter()
            .filter(|m| !cat.is_legacy(m))
            .map(|m| m.id.clone())
            .collect();
        let legacy = cat.complete.len() - ids.len();
        if legacy > 0 {
            say!(
                "job {}: {legacy} unsigned backup(s) from before signing (signing.unsigned_before) are not copied",
                j.name
            );
        }
        for c in &targets {
            if intr.is_interrupted() {
                break;
            }
            let run = crate::backup::copy::to_store(cfg, c, j, &primary, &ids, &intr.token()).await;
            print_run(&j.name, &run);
            failures.extend(run.problems());
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AppError::Failed(anyhow::anyhow!(failures.join("\n"))))
    }
}

fn print_run(job: &str, run: &StoreRun) {
    let mut copied = 0;
    let mut present = 0;
    for (id, r) in &run.backups {
        match r {
            Ok(Copied::Copied {
                bytes, repaired, ..
            }) => {
                copied += 1;
                match repaired {
                    None => say!(
                        "copied {job}/{id} to {} ({})",
                        run.store,
                        human_bytes(*bytes)
                    ),
                    Some(why) => say!(
                        "repaired {job}/{id} in {} ({why}; copied again, {})",
                        run.store,
                        human_bytes(*bytes)
                    ),
                }
            }
            Ok(Copied::AlreadyPresent) => present += 1,
            Err(_) => {}
        }
    }
    let failed = run.backups.iter().filter(|(_, r)| r.is_err()).count();
    let deleted = match &run.prune {
        Some(Ok(o)) => o.deleted.len(),
        _ => 0,
    };
    say!(
        "job {job} -> {}: {copied} copied, {present} already there, {failed} failed, {deleted} deleted by retention",
        run.store
    );
}
