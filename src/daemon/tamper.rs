//! The daemon's tamper check (see [`crate::retention::tamper`]): after
//! every run and every restore drill of a job on a versioned S3 store.
//!
//! Decisions: the metric is a gauge of the backups the store's history
//! shows as tampered now (`ccbackup_store_tampered_backups`), not a counter
//! of events: the history keeps the evidence, so every check finds the
//! same backups again, and a gauge says how many are affected. `/readyz`
//! fails while it is above zero. A `fail` notification goes out when the
//! set of tampered backups changes (new tampering), not on every check.

use std::collections::BTreeSet;

use super::metrics::tampered::readiness_reason;
use super::run_ctx::RunCtx;
use crate::backup::report::{Outcome, Report, RunFacts};
use crate::error::chain;
use crate::repo::catalog;
use crate::retention::tamper::{self, Tampered};

/// Pure: the line per tampered backup the daemon keeps and reports.
pub fn lines(found: &[Tampered]) -> Vec<String> {
    found
        .iter()
        .map(|t| format!("{}: {}", t.id, t.describe()))
        .collect()
}

/// Pure: the tampering recorded after `acknowledged` (all without one).
pub fn unacknowledged(
    found: Vec<Tampered>,
    acknowledged: Option<chrono::DateTime<chrono::Utc>>,
) -> Vec<Tampered> {
    found
        .into_iter()
        .filter(|t| acknowledged.is_none_or(|ack| t.at > ack))
        .collect()
}

/// Checks the job's store history; records, logs and notifies.
/// Tampering recorded at or before `daemon.tampering_acknowledged` is left
/// out: the history keeps the evidence for good, so without a way to say
/// "handled" readiness would never recover after an incident.
/// `listed` is the job's catalogue when the caller has it (a run's), so
/// the store is not listed again for it.
pub(super) async fn check(ctx: &RunCtx, listed: Option<&catalog::Catalog>) {
    let job = &ctx.job;
    let loaded;
    let cat = match listed {
        Some(c) => Ok(c),
        None => {
            loaded = catalog::load(&ctx.repo, Some(&job.name)).await;
            loaded.as_ref()
        }
    };
    // Known forgeries do not count when the policy is evaluated again.
    let forged: BTreeSet<String> = match cat {
        Ok(c) => c
            .damaged
            .iter()
            .filter(|d| d.untrusted || d.future)
            .map(|d| d.id.clone())
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    let found = match tamper::scan(
        &ctx.repo,
        &[(job.name.as_str(), job.retention.as_ref())],
        &forged,
    )
    .await
    {
        // What the operator acknowledged is known and handled.
        Ok(Some(found)) => unacknowledged(found, ctx.cfg.daemon.tampering_acknowledged),
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(job = %job.name, error = %chain(&e), "cannot read the store's version history to check for tampering");
            return;
        }
    };
    let now = lines(&found);
    let changed = ctx.metrics.update(&job.name, |s| {
        let changed = s.tampered.as_ref() != Some(&now);
        s.tampered = Some(now.clone());
        s.tampered_backups = found.clone();
        changed
    });
    let Some(at) = tamper::recovery_time(&found) else {
        return;
    };
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let message = format!(
        "{}; see the store as it was with `ccbackup list --as-of {at}` and restore with `restore --as-of {at}`",
        readiness_reason(&now)
    );
    tracing::error!(job = %job.name, as_of = %at, tampered = found.len(), "{message}");
    if changed {
        let started = ctx.repo.clock.now();
        let facts = RunFacts {
            run_id: crate::backup::report::new_run_id(),
            job: job.name.clone(),
            started_at: started,
            attempts: 1,
            cancelled: false,
        };
        let mut rep = Report::drill(&facts, None, Outcome::Failure, Some(message), started);
        rep.kind = "tamper";
        let event = crate::notify::Event::Finish(&rep);
        let targets = crate::notify::targets(&ctx.cfg, job, event);
        crate::notify::send(&ctx.client, &targets, crate::notify::Event::Finish(&rep)).await;
    }
}
