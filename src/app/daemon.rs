//! `daemon` and `schedule`.

use super::out::say;
use super::*;

/// `ccbackup daemon`: SIGTERM/SIGINT stop it (running jobs get the grace
/// period), SIGHUP reloads the configuration.
pub(super) async fn daemon(cfg: Config, listen: Option<String>) -> Result<(), AppError> {
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
pub(super) fn schedule(
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
        // The CLI edge: `ccbackup schedule` lists from the real present.
        None => crate::clock::Clock::system().now(),
        Some(a) => chrono::DateTime::parse_from_rfc3339(a)
            .map_err(|e| AppError::Usage(format!("--after `{a}` is not an RFC 3339 time: {e}")))?
            .with_timezone(&chrono::Utc),
    };
    let prefix = scheduled.len() > 1;
    for j in scheduled {
        for t in crate::daemon::upcoming(j, now, count) {
            if prefix {
                say!("{} {t}", j.name);
            } else {
                say!("{t}");
            }
        }
    }
    Ok(())
}
