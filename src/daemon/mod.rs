//! `ccbackup daemon`: runs jobs on their schedules, serves health and
//! metrics, and stops cleanly.
//!
//! # Scheduling: who decides when, who fires
//!
//! Run times come from [`crate::schedule`] (Vixie-cron syntax, per-job IANA
//! time zone, DST rules: a skipped local time runs once at the jump, a
//! repeated one runs once, at its first occurrence). `tokio-cron-scheduler`
//! is used only as the runner: for each job the daemon computes the next
//! UTC instant and hands the scheduler a *one-shot* job at that instant;
//! when it fires, the daemon computes the following instant and arms a new
//! one-shot. Its own cron parser is never used, because it needs 6-7 fields,
//! ANDs day-of-month with day-of-week (Vixie cron ORs them), and freezes a
//! time-zoned job's UTC offset when the job is created, so a local-time
//! schedule would fire an hour off after a DST change until restart. A
//! one-shot per tick recomputed from the wall clock has none of these
//! problems.
//!
//! Every tick is armed through one function (`Daemon::arm_tick`) on a
//! small seam, `timers` (`arm` a tick after a delay, `cancel` it), and
//! "now" comes from [`crate::clock`] ([`Options`] `clock`). When a tick
//! arrives, the daemon compares the wall clock with the tick's time: one
//! that came early (the wall clock was stepped back while it slept; a
//! start-up run's jitter) is re-armed for the rest, so no run starts before
//! its time; one that came late is handled as below, so none is lost. With
//! the system clock the timers are tokio-cron-scheduler one-shots; with a
//! clock that follows tokio's time (tests) they are tokio sleeps, because
//! the scheduler polls the real clock and paused tokio time cannot drive
//! it. Everything above the seam (which instant, early and missed ticks,
//! jitter, overlap) is the same code either way, so tests run days of
//! schedule on paused time in milliseconds; the scheduler-backed timers
//! have a real-time test of their own.
//!
//! Re-arming happens when a tick fires, not when the run ends, so a tick
//! that finds the job's slot busy is seen: it waits for the slot, or is
//! skipped, counted and notified (see [`slots`]); runs of one job never
//! overlap. If the daemon falls behind (a stall, a suspended host), the
//! late tick runs once for the latest scheduled time that has come, the
//! earlier ones are dropped, and the next one after now is armed. `jitter`
//! adds a random delay in `[0, jitter]` to each tick; keep it below the
//! schedule's period.
//!
//! # One run
//!
//! A tick calls [`crate::backup::runner::run_once`], the same function as
//! `run-now` (lock, backup, retention only after success). A run that fails
//! with a transient error (database still starting, store unreachable) is
//! retried as a whole with backoff ([`crate::retry::Backoff::RUN`]); a
//! failed attempt wrote no manifest and pruned nothing. A backup the shrink
//! guard ([`crate::backup::guard`]) flags is complete, so it is not retried; its
//! outcome is `suspicious`, it pruned nothing and it is not a success for
//! `/readyz`. The run ID is made
//! once, before the first attempt. Every run ends with one
//! [`crate::backup::report::Report`], which makes the log event (`run finished`),
//! the metrics and the notifications ([`crate::notify`]).
//!
//! # Shutdown and reload
//!
//! The shutdown signal is a parameter ([`run`] takes a `CancellationToken`),
//! so tests drive it; `main` cancels it on SIGTERM or SIGINT. Scheduling
//! stops at once; running jobs get `daemon.shutdown_grace` to finish. After
//! that each is cancelled: its store is gated (every write from then on
//! fails, so no manifest can be committed), `pg_dump` is killed, the
//! pipeline aborts its multipart upload, the failed backup removes what it
//! uploaded, and the lock is released. Only if a run does not unwind within
//! [`CANCEL_WAIT`] is its task dropped (the lock guard then releases in the
//! background and the daemon waits briefly for that). A reload request
//! (SIGHUP) re-reads the config file; a bad file is logged and the running
//! configuration kept. The HTTP listener is not rebound: a changed
//! `daemon.listen` is logged as a warning and needs a restart.

mod drill;
mod execute;
pub mod held;
pub mod http;
pub mod job;
mod listing;
pub mod metrics;
pub mod process;
pub mod reload;
mod run_ctx;
mod slots;
mod startup;
pub mod status;
pub mod tamper;
mod ticks;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinSet;
use tokio_cron_scheduler::JobSchedulerError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::{Config, JobConfig};
use crate::notify;
use crate::repo::store::{self, Repo};
use metrics::Metrics;
use timers::Timers;

/// After the grace period and a cancel, how long a run may take to unwind
/// (kill, abort uploads, clean up, release the lock) before it is dropped.
pub const CANCEL_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Bind(#[from] http::BindError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot start the job scheduler")]
    Scheduler(#[from] JobSchedulerError),
    #[error(
        "{0} run(s) did not stop within the grace period and the cancel wait; they were abandoned"
    )]
    Unclean(usize),
}

/// Knobs for [`run`] beyond the configuration.
#[derive(Default)]
pub struct Options {
    /// Overrides `daemon.listen` (`--listen`).
    pub listen: Option<String>,
    /// Use this repository instead of opening `cfg.store` (tests wrap the
    /// store; kept across reloads when given).
    pub repo: Option<Repo>,
    /// Notified to re-read the configuration file (SIGHUP in `main`).
    pub reload: Option<Arc<Notify>>,
    /// Receives the HTTP address actually bound (useful with port 0).
    pub bound: Option<oneshot::Sender<SocketAddr>>,
    /// Shared metrics, so a caller can inspect them. Readiness is judged
    /// by their clock: make them with [`Metrics::with_clock`] and the same
    /// clock as `clock`.
    pub metrics: Option<Arc<Metrics>>,
    /// Where "now" comes from, for the schedule, the repository (leases,
    /// manifests, prune) and readiness. It also picks the timers: the
    /// system clock arms `tokio-cron-scheduler` one-shots, a clock that
    /// follows tokio's time arms tokio sleeps, so a test on paused time
    /// drives the whole daemon with `tokio::time::advance`.
    pub clock: Clock,
}

/// A fired one-shot: which job, which configuration generation, the
/// instant it stands for and the instant it may start.
#[derive(Debug, Clone)]
pub(super) struct Tick {
    job: String,
    kind: TickKind,
    generation: u64,
    nominal: DateTime<Utc>,
    fire_at: DateTime<Utc>,
    /// Arm the next tick of this schedule when this one fires (false for
    /// the start-up run, which is outside the schedule).
    rearm: bool,
}

/// What a tick starts: a backup run, or a restore drill (`verify:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum TickKind {
    Backup,
    Drill,
}

/// `backup` or `drill` in log events (never Rust's `Debug` names).
impl std::fmt::Display for TickKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TickKind::Backup => "backup",
            TickKind::Drill => "drill",
        })
    }
}

/// A run in a job's slot (its cancellation token hangs off
/// [`Daemon`]'s `hard_stop`).
struct Running {
    kind: TickKind,
}

/// Everything the daemon holds while it runs: the configuration it runs
/// with, the store, what is armed, running and waiting, and the handles
/// every run shares (timers, metrics, notification client, the root of the
/// cancellation tree).
pub(super) struct Daemon {
    cfg: Arc<Config>,
    clock: Clock,
    /// `daemon.listen` as bound at start; `None` when `--listen` overrides
    /// it (then the file's value does not matter).
    listen_from_config: Option<String>,
    repo: Repo,
    /// The store was given by the caller ([`Options::repo`]): a reload
    /// keeps it.
    fixed_repo: bool,
    generation: u64,
    armed: HashMap<(String, TickKind), Uuid>,
    running: HashMap<String, Running>,
    /// Ticks waiting for the job's slot (see [`slots`]).
    waiting: HashMap<String, VecDeque<Tick>>,
    /// What the status page shows of the configuration.
    page: Arc<status::Page>,
    timers: Box<dyn Timers>,
    /// Where fired timers send their ticks.
    tx: mpsc::Sender<Tick>,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    /// Cancelled when shutdown begins: no new run or attempt starts.
    stopping: CancellationToken,
    /// Root of every run's cancellation token: cancelled when the grace
    /// period is over (daemon shutdown → job run → its copies).
    hard_stop: CancellationToken,
    tasks: JoinSet<String>,
}

/// Runs the daemon until `shutdown` is cancelled. Returns `Ok` when every
/// run finished or unwound cleanly.
pub async fn run(
    cfg: Config,
    opts: Options,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let fixed_repo = opts.repo.is_some();
    let clock = opts.clock;
    let repo = match opts.repo {
        Some(r) => r,
        None => store::open(&cfg.store)?.with_signing(cfg.signing.as_ref()),
    }
    .with_clock(clock.clone());
    let metrics = opts
        .metrics
        .unwrap_or_else(|| Arc::new(Metrics::with_clock(clock.clone())));
    let listen = opts
        .listen
        .clone()
        .unwrap_or_else(|| cfg.daemon.listen.clone());
    // Until the store has been read, `/readyz` knows nothing to vouch for.
    metrics.set_seeding(true);
    let listener = http::bind(&listen).await?;
    let addr = http::local_addr(&listener);
    if let (Some(tx), Some(a)) = (opts.bound, addr) {
        let _ = tx.send(a);
    }
    tracing::info!(listen = %addr.map_or(listen.clone(), |a| a.to_string()), jobs = cfg.jobs.len(), "daemon started");
    let http_stop = CancellationToken::new();
    let page = Arc::new(status::Page::new(&cfg));
    let http_task = tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        page.clone(),
        http_stop.clone(),
    ));

    let (tx, mut tick_rx) = mpsc::channel::<Tick>(64);
    let mut d = Daemon {
        listen_from_config: opts.listen.is_none().then(|| cfg.daemon.listen.clone()),
        cfg: Arc::new(cfg),
        timers: timers::for_clock(&clock).await?,
        clock,
        repo,
        fixed_repo,
        generation: 0,
        armed: HashMap::new(),
        running: HashMap::new(),
        waiting: HashMap::new(),
        page,
        tx,
        metrics,
        client: notify::client(),
        stopping: CancellationToken::new(),
        hard_stop: CancellationToken::new(),
        tasks: JoinSet::new(),
    };
    d.seed_metrics().await;
    d.arm_all().await;
    d.start_up_runs().await;
    d.warn_if_unauthenticated();
    // Only now are last good backups and first due runs both known.
    d.metrics.set_seeding(false);

    let reload = opts.reload.unwrap_or_default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = reload.notified() => d.reload().await,
            Some(tick) = tick_rx.recv() => d.on_tick(tick).await,
            Some(done) = d.tasks.join_next(), if !d.tasks.is_empty() => {
                if let Ok(job) = done {
                    d.running.remove(&job);
                    d.start_waiting(&job);
                }
            }
        }
    }
    drop(tick_rx);
    let abandoned = d.shut_down().await;
    http_stop.cancel();
    let _ = http_task.await;
    tracing::info!("daemon stopped");
    if abandoned > 0 {
        Err(DaemonError::Unclean(abandoned))
    } else {
        Ok(())
    }
}

impl Daemon {
    fn warn_if_unauthenticated(&self) {
        if self.repo.verifier.is_some() {
            return;
        }
        tracing::warn!(
            store = %self.repo.display,
            "the store is not authenticated: {}",
            crate::repo::signing::UNSIGNED_RISK
        );
        let drilled = self
            .cfg
            .jobs
            .iter()
            .filter(|j| j.drill.as_ref().is_some_and(|d| d.restore_test));
        for job in drilled {
            // A dump is SQL the server runs as the restoring role: without
            // signatures, whoever can write to the store chooses that SQL.
            tracing::warn!(job = %job.name, "restore drills run SQL from the store unattended; configure signing so only backups this sidecar wrote are restore-tested");
        }
    }

    /// Stops scheduling, gives running jobs the grace period, then cancels
    /// them; returns how many had to be abandoned.
    async fn shut_down(&mut self) -> usize {
        // Stop scheduling first, so nothing new starts while we wait.
        tracing::info!(running = self.running.len(), "shutting down");
        self.stopping.cancel();
        self.timers.shutdown().await;

        let grace = self.cfg.daemon.shutdown_grace;
        let mut abandoned = 0;
        if !self.tasks.is_empty() {
            if self.drain(grace).await {
                tracing::info!("running jobs finished within the grace period");
            } else {
                tracing::warn!(
                    grace_s = grace.as_secs(),
                    "grace period over; cancelling running jobs"
                );
                for job in self.running.keys() {
                    tracing::warn!(job = %job, "cancelling run");
                }
                self.hard_stop.cancel();
                if !self.drain(CANCEL_WAIT).await {
                    abandoned = self.tasks.len();
                    self.tasks.abort_all();
                    while self.tasks.join_next().await.is_some() {}
                }
            }
        }
        crate::repo::lock::wait_pending_releases(Duration::from_secs(10)).await;
        abandoned
    }

    /// Waits for every task, at most `limit`; true when all finished.
    async fn drain(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(Ok(job))) => {
                    self.running.remove(&job);
                }
                Ok(Some(Err(_))) | Ok(None) => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// Next run times of a job, RFC 3339 in the job's zone (`ccbackup schedule`).
pub fn upcoming(job: &JobConfig, after: DateTime<Utc>, count: usize) -> Vec<String> {
    job.schedule.as_ref().map_or_else(Vec::new, |s| {
        s.upcoming(after, job.timezone, count)
            .into_iter()
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false))
            .collect()
    })
}
