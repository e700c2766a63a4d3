//! `unlock`: remove a job's repository lock left behind by a run that is
//! gone (restic-style), refusing to break the lock of a run that may still
//! be going unless forced.

use super::out::say;
use super::*;
use crate::repo::lock::{self, Standing};

/// What `unlock` does with a lease, decided from its standing alone.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Remove(&'static str),
    Refuse(String),
}

fn decide(standing: &Standing, force: bool) -> Decision {
    match standing {
        Standing::Expired => Decision::Remove("expired"),
        Standing::Dead(_) => Decision::Remove("its holder is gone"),
        Standing::Impossible(_) => Decision::Remove("ccbackup never writes such a lease"),
        _ if force => Decision::Remove("forced"),
        Standing::AliveHere => Decision::Refuse(
            "a live process on this host holds it; stop that process first, or use --force"
                .to_owned(),
        ),
        Standing::Unverifiable(why) => Decision::Refuse(format!(
            "{why} and it has not expired, so it may still be in use; \
             use --force if you are sure its holder is gone"
        )),
    }
}

pub(super) async fn unlock(cfg: &Config, job: Option<&str>, force: bool) -> Result<(), AppError> {
    let job = one_job(cfg, job)?;
    let repo = store::open(&cfg.store)
        .map_err(failed)?
        .with_signing(cfg.signing.as_ref());
    let Some((found, standing)) = lock::inspect(&repo, &job.name).await.map_err(failed)? else {
        say!("job {}: not locked", job.name);
        return Ok(());
    };
    let lease = format!(
        "lease {} of job `{}`: {}, until {}",
        lock::lease_path(&job.name),
        job.name,
        found.describe(),
        found
            .expires_at()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let why = match decide(&standing, force) {
        Decision::Refuse(why) => {
            return Err(failed(anyhow::anyhow!("not removing the {lease}: {why}")));
        }
        Decision::Remove(why) => why,
    };
    if !lock::remove(&repo, &job.name, &found)
        .await
        .map_err(failed)?
    {
        return Err(failed(anyhow::anyhow!(
            "the {lease} changed or vanished while it was checked; run unlock again to see the new one"
        )));
    }
    let detail = match &standing {
        Standing::Dead(how) | Standing::Impossible(how) => format!("{why}: {how}"),
        _ => why.to_owned(),
    };
    tracing::warn!(job = %job.name, holder = %found.describe(), reason = %detail, "lock removed by unlock");
    say!("removed {lease} ({detail})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_leases_go_without_force() {
        let alive = Standing::AliveHere;
        let remote = Standing::Unverifiable("held on another host");
        assert!(matches!(
            decide(&Standing::Expired, false),
            Decision::Remove(_)
        ));
        assert!(matches!(
            decide(&Standing::Dead("no process has pid 9".into()), false),
            Decision::Remove(_)
        ));
        assert!(matches!(
            decide(&Standing::Impossible("written in 2099".into()), false),
            Decision::Remove(_)
        ));
        assert!(matches!(decide(&alive, false), Decision::Refuse(_)));
        assert!(matches!(decide(&remote, false), Decision::Refuse(_)));
        assert_eq!(decide(&alive, true), Decision::Remove("forced"));
        assert_eq!(decide(&remote, true), Decision::Remove("forced"));
    }
}
