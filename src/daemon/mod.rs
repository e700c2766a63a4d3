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
//! problems. The scheduler stores the instant in whole seconds and polls
//! twice a second, so a tick may arrive up to about a second early; the run
//! then sleeps until its exact time.
//!
//! The runner sits behind a small seam, `timers` (`arm` a tick after a
//! delay, `cancel` it), and "now" comes from [`crate::clock`] ([`Options`]
//! `clock`). With the system clock the daemon arms tokio-cron-scheduler
//! one-shots; with a clock that follows tokio's time (tests) it arms tokio
//! sleeps instead, because the scheduler polls the real clock and paused
//! tokio time cannot drive it. Everything above the seam (which instant,
//! missed ticks, jitter, overlap) is the same code either way, so tests
//! run days of schedule on paused time in milliseconds.
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
mod listing;
pub mod metrics;
pub mod process;
pub mod reload;
mod slots;
pub mod status;
pub mod tamper;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinSet;
use tokio_cron_scheduler::JobSchedulerError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::{self, Config, JobConfig};
use crate::error::chain;
use crate::notify;

use crate::repo::gate::gated;
use crate::repo::store::{self, Repo};

use crate::sys::child::KillSwitch;
use execute::{execute, RunCtx};
use listing::list_catalog;
use metrics::Metrics;
use timers::{CronTimers, SleepTimers, Timers};

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

/// A fired one-shot: which job, which configuration generation, and the
/// instant it stands for.
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

struct Running {
    kind: TickKind,
    kill: KillSwitch,
    cancel: CancellationToken,
}

struct State {
    cfg: Arc<Config>,
    clock: Clock,
    /// `daemon.listen` as bound at start; `None` when `--listen` overrides
    /// it (then the file's value does not matter).
    listen_from_config: Option<String>,
    repo: Repo,
    generation: u64,
    armed: HashMap<(String, TickKind), Uuid>,
    running: HashMap<String, Running>,
    /// Ticks waiting for the job's slot (see [`slots`]).
    waiting: HashMap<String, VecDeque<Tick>>,
    /// What the status page shows of the configuration.
    page: Arc<status::Page>,
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

    let sched: Box<dyn Timers> = if clock.is_tokio() {
        Box::new(SleepTimers::default())
    } else {
        Box::new(CronTimers::start().await?)
    };
    let sched = &*sched;
    let (tick_tx, mut tick_rx) = mpsc::channel::<Tick>(64);
    let client = notify::client();
    let stopping = CancellationToken::new();

    let mut st = State {
        listen_from_config: opts.listen.is_none().then(|| cfg.daemon.listen.clone()),
        cfg: Arc::new(cfg),
        clock,
        repo,
        generation: 0,
        armed: HashMap::new(),
        running: HashMap::new(),
        waiting: HashMap::new(),
        page,
    };
    seed_metrics(&st, &metrics).await;
    arm_all(&mut st, sched, &tick_tx, &metrics).await;
    start_up_runs(&st, &tick_tx, &metrics).await;
    if st.repo.verifier.is_none() {
        tracing::warn!(
            store = %st.repo.display,
            "the store is not authenticated: {}",
            crate::repo::signing::UNSIGNED_RISK
        );
        for job in st
            .cfg
            .jobs
            .iter()
            .filter(|j| j.drill.as_ref().is_some_and(|d| d.restore_test))
        {
            // A dump is SQL the server runs as the restoring role: without
            // signatures, whoever can write to the store chooses that SQL.
            tracing::warn!(job = %job.name, "restore drills run SQL from the store unattended; configure signing so only backups this sidecar wrote are restore-tested");
        }
    }
    // Only now are last good backups and first due runs both known.
    metrics.set_seeding(false);

    let reload = opts.reload.unwrap_or_default();
    let mut tasks: JoinSet<String> = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = reload.notified() => {
                reload::on_signal(&mut st, fixed_repo, sched, &tick_tx, &metrics, &client).await;
            }
            Some(tick) = tick_rx.recv() => {
                on_tick(&mut st, tick, sched, &tick_tx, &metrics, &client, &stopping, &mut tasks).await;
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(job) = done {
                    st.running.remove(&job);
                    start_waiting(&mut st, &job, &metrics, &client, &stopping, &mut tasks);
                }
            }
        }
    }

    // Stop scheduling first, so nothing new starts while we wait.
    tracing::info!(running = st.running.len(), "shutting down");
    stopping.cancel();
    sched.shutdown().await;
    drop(tick_rx);

    let grace = st.cfg.daemon.shutdown_grace;
    let mut abandoned = 0;
    if !tasks.is_empty() {
        if drain(&mut tasks, &mut st, grace).await {
            tracing::info!("running jobs finished within the grace period");
        } else {
            tracing::warn!(
                grace_s = grace.as_secs(),
                "grace period over; cancelling running jobs"
            );
            for (job, r) in &st.running {
                tracing::warn!(job = %job, "cancelling run");
                r.cancel.cancel();
                r.kill.kill();
            }
            if !drain(&mut tasks, &mut st, CANCEL_WAIT).await {
                abandoned = tasks.len();
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
        }
    }
    crate::repo::lock::wait_pending_releases(Duration::from_secs(10)).await;
    http_stop.cancel();
    let _ = http_task.await;
    tracing::info!("daemon stopped");
    if abandoned > 0 {
        Err(DaemonError::Unclean(abandoned))
    } else {
        Ok(())
    }
}

/// Waits for every task, at most `limit`; true when all finished.
async fn drain(tasks: &mut JoinSet<String>, st: &mut State, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(Ok(job))) => {
                st.running.remove(&job);
            }
            Ok(Some(Err(_))) | Ok(None) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Per-job settings and what the store already holds, so `/readyz` and the
/// metrics are right from the start: a restart does not forget the last
/// good backup, and does not forgive a job that has none.
async fn seed_metrics(st: &State, metrics: &Metrics) {
    let names: Vec<String> = st.cfg.jobs.iter().map(|j| j.name.clone()).collect();
    metrics.retain(&names);
    st.page.configure(&st.cfg);
    metrics.set_authenticated(st.repo.verifier.is_some());
    for job in &st.cfg.jobs {
        metrics.update(&job.name, |s| s.max_age = job.max_age);
        match list_catalog(&st.repo, job, &CancellationToken::new()).await {
            Ok(l) => metrics.update(&job.name, |s| l.apply(s)),
            Err(e) => {
                tracing::warn!(job = %job.name, error = %chain(&e), "cannot list existing backups at start-up");
                metrics.update(&job.name, |s| {
                    if s.last_success.is_none() {
                        s.store_error = Some(chain(&e).to_string());
                    }
                });
            }
        }
    }
}

async fn arm_all(st: &mut State, sched: &dyn Timers, tx: &mpsc::Sender<Tick>, metrics: &Metrics) {
    let now = st.clock.now();
    let cfg = st.cfg.clone();
    for job in &cfg.jobs {
        if job.schedule.is_none() {
            tracing::info!(job = %job.name, "job has no schedule; the daemon will not run it");
            continue;
        }
        if let Some(t) = arm(st, sched, tx, job, now, metrics, TickKind::Backup).await {
            metrics.update(&job.name, |s| s.first_due = Some(t));
        }
        if let Some(d) = &job.drill {
            let max_age = d.max_age;
            let due = arm(st, sched, tx, job, now, metrics, TickKind::Drill).await;
            metrics.update(&job.name, |s| {
                let stats = s.drill.get_or_insert_with(Default::default);
                stats.first_due = due;
                stats.max_age = max_age;
            });
        }
    }
}

/// `run_at_start`: at daemon start (not on reload), back up each job whose
/// newest good backup is older than its schedule's interval (or missing),
/// or every job with `always`, once, after its jitter.
async fn start_up_runs(st: &State, tx: &mpsc::Sender<Tick>, metrics: &Metrics) {
    let now = st.clock.now();
    let known = metrics.snapshot();
    for job in &st.cfg.jobs {
        let Some(schedule) = &job.schedule else {
            continue;
        };
        let newest = known.get(&job.name).and_then(|s| s.last_success);
        let unknown = known
            .get(&job.name)
            .is_some_and(|s| s.store_error.is_some());
        let (run, why) = if unknown && job.run_at_start == config::RunAtStart::Missed {
            (
                false,
                "the store could not be listed, so freshness is unknown".to_owned(),
            )
        } else {
            drill::start_decision(
                job.run_at_start,
                newest,
                drill::interval(schedule, job, now),
                now,
            )
        };
        if !run {
            tracing::info!(job = %job.name, reason = %why, "no start-up run");
            continue;
        }
        let fire_at = now + chrono::Duration::from_std(jitter(job)).unwrap_or_default();
        tracing::info!(job = %job.name, reason = %why, at = %fire_at.to_rfc3339_opts(SecondsFormat::Secs, true), "start-up run");
        let tick = Tick {
            job: job.name.clone(),
            kind: TickKind::Backup,
            generation: st.generation,
            nominal: now,
            fire_at,
            rearm: false,
        };
        let _ = tx.send(tick).await;
    }
}

/// A random delay up to the job's `jitter`.
fn jitter(job: &JobConfig) -> Duration {
    job.jitter.map_or(Duration::ZERO, |j| {
        let ms = j.as_millis() as u64;
        Duration::from_millis(if ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=ms)
        })
    })
}

/// Arms the next tick of `job`'s backup or drill schedule strictly after
/// `after`; returns its time.
async fn arm(
    st: &mut State,
    sched: &dyn Timers,
    tx: &mpsc::Sender<Tick>,
    job: &JobConfig,
    after: DateTime<Utc>,
    metrics: &Metrics,
    kind: TickKind,
) -> Option<DateTime<Utc>> {
    let schedule = match kind {
        TickKind::Backup => job.schedule.as_ref()?,
        TickKind::Drill => &job.drill.as_ref()?.schedule,
    };
    let now = st.clock.now();
    let mut nominal = schedule
        .next_after(after, job.timezone)?
        .with_timezone(&Utc);
    if nominal < now {
        // Behind (suspended host, long stall): skip what was missed.
        tracing::warn!(job = %job.name, missed = %nominal, "missed scheduled run(s); continuing with the next one");
        nominal = schedule.next_after(now, job.timezone)?.with_timezone(&Utc);
    }
    let delay = match kind {
        TickKind::Backup => jitter(job),
        TickKind::Drill => Duration::ZERO,
    };
    let fire_at = nominal + chrono::Duration::from_std(delay).unwrap_or_default();
    let delay = (fire_at - now).to_std().unwrap_or(Duration::ZERO);
    let tick = Tick {
        job: job.name.clone(),
        kind,
        generation: st.generation,
        nominal,
        fire_at,
        rearm: true,
    };
    match sched.arm(delay, tick, tx.clone()).await {
        Ok(id) => {
            st.armed.insert((job.name.clone(), kind), id);
            if kind == TickKind::Backup {
                metrics.update(&job.name, |s| s.next_run = Some(nominal));
            }
            tracing::debug!(job = %job.name, next = %nominal.with_timezone(&job.timezone).to_rfc3339_opts(SecondsFormat::Secs, false), "next run armed");
            Some(nominal)
        }
        Err(e) => {
            tracing::error!(job = %job.name, error = %chain(&e), "cannot arm the next run");
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn on_tick(
    st: &mut State,
    mut tick: Tick,
    sched: &dyn Timers,
    tx: &mpsc::Sender<Tick>,
    metrics: &Arc<Metrics>,
    client: &reqwest::Client,
    stopping: &CancellationToken,
    tasks: &mut JoinSet<String>,
) {
    if tick.generation != st.generation {
        return; // armed under a configuration that was reloaded since
    }
    let cfg = st.cfg.clone();
    let Some(job) = cfg.job(&tick.job) else {
        return;
    };
    if tick.rearm {
        let now = st.clock.now();
        catch_up(&mut tick, job, now);
        st.armed.remove(&(tick.job.clone(), tick.kind));
        let after = tick.nominal.max(now);
        arm(st, sched, tx, job, after, metrics, tick.kind).await;
    }

    let running = st.running.get(&job.name).map(|r| r.kind);
    let queue = st.waiting.entry(job.name.clone()).or_default();
    let queued: Vec<TickKind> = queue.iter().map(|t| t.kind).collect();
    match slots::decide(tick.kind, running, &queued) {
        slots::Decision::Start => start(st, tick, metrics, client, stopping, tasks),
        slots::Decision::Wait { first } => {
            tracing::info!(job = %job.name, scheduled = %tick.nominal, kind = %tick.kind, "the job's slot is busy; this run waits for it");
            if first {
                queue.push_front(tick);
            } else {
                queue.push_back(tick);
            }
        }
        slots::Decision::Skip(reason) => skip(st, &tick, reason, metrics, client),
    }
}

/// A tick handled late (the daemon stalled, or the host was suspended)
/// stands for the latest scheduled time that has come: that run happens,
/// once, now; the times passed over before it are logged.
fn catch_up(tick: &mut Tick, job: &JobConfig, now: DateTime<Utc>) {
    let schedule = match tick.kind {
        TickKind::Backup => job.schedule.as_ref(),
        TickKind::Drill => job.drill.as_ref().map(|d| &d.schedule),
    };
    let Some(schedule) = schedule else {
        return;
    };
    let (due, passed) = schedule.latest_due(tick.nominal, now, job.timezone);
    if passed > 0 {
        tracing::warn!(job = %job.name, kind = %tick.kind, missed = passed, first_missed = %tick.nominal, running_for = %due, "the daemon fell behind; running once now for the latest scheduled time, the earlier ones are not replayed");
        tick.nominal = due;
        tick.fire_at = now;
    }
}

/// Logs, counts and notifies a tick that cannot run.
fn skip(
    st: &State,
    tick: &Tick,
    reason: &'static str,
    metrics: &Metrics,
    client: &reqwest::Client,
) {
    let Some(job) = st.cfg.job(&tick.job) else {
        return;
    };
    match tick.kind {
        TickKind::Backup => {
            metrics.update(&job.name, |s| s.skipped_runs += 1);
            tracing::error!(job = %job.name, scheduled = %tick.nominal, outcome = "skipped", reason, "scheduled backup skipped");
            let report = slots::skipped_report(&job.name, tick.nominal, reason, st.clock.now());
            slots::notify_skipped(client, &st.cfg, job, report);
        }
        TickKind::Drill => {
            metrics.update(&job.name, |s| {
                *s.drill
                    .get_or_insert_with(Default::default)
                    .runs
                    .entry("skipped")
                    .or_default() += 1;
            });
            tracing::warn!(job = %job.name, scheduled = %tick.nominal, outcome = "skipped", reason, "restore drill skipped");
        }
    }
}

/// Starts the next tick waiting for `job`'s slot, if any.
fn start_waiting(
    st: &mut State,
    job: &str,
    metrics: &Arc<Metrics>,
    client: &reqwest::Client,
    stopping: &CancellationToken,
    tasks: &mut JoinSet<String>,
) {
    if stopping.is_cancelled() {
        return;
    }
    let Some(mut tick) = st.waiting.get_mut(job).and_then(VecDeque::pop_front) else {
        return;
    };
    // Even across a reload: dropping a waiting backup would skip it
    // silently (a job that no longer exists is not started).
    tick.fire_at = tick.fire_at.min(st.clock.now());
    start(st, tick, metrics, client, stopping, tasks);
}

fn start(
    st: &mut State,
    tick: Tick,
    metrics: &Arc<Metrics>,
    client: &reqwest::Client,
    stopping: &CancellationToken,
    tasks: &mut JoinSet<String>,
) {
    let cfg = st.cfg.clone();
    let Some(job) = cfg.job(&tick.job) else {
        return;
    };
    let kill = KillSwitch::default();
    let cancel = CancellationToken::new();
    st.running.insert(
        job.name.clone(),
        Running {
            kind: tick.kind,
            kill: kill.clone(),
            cancel: cancel.clone(),
        },
    );
    metrics.update(&job.name, |s| s.running = true);
    let ctx = RunCtx {
        cfg: cfg.clone(),
        repo: gated(&st.repo, cancel.clone()),
        job: job.clone(),
        metrics: metrics.clone(),
        client: client.clone(),
        kill,
        cancel,
        stopping: stopping.clone(),
    };
    let fire_at = tick.fire_at;
    let kind = tick.kind;
    let clock = st.clock.clone();
    tasks.spawn(async move {
        // Timers can wake early (the scheduler works in whole seconds, and
        // the wall clock can be stepped back while we sleep): start only
        // once the wall clock has reached the tick's time.
        while let Ok(early) = (fire_at - clock.now()).to_std() {
            if early.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(early) => {}
                _ = ctx.stopping.cancelled() => {
                    ctx.metrics.update(&ctx.job.name, |s| s.running = false);
                    return ctx.job.name.clone();
                }
            }
        }
        match (kind, ctx.job.drill.as_ref()) {
            (TickKind::Drill, Some(d)) => drill::execute(&ctx, d.restore_test).await,
            (TickKind::Drill, None) => {}
            (TickKind::Backup, _) => execute(&ctx).await,
        }
        ctx.job.name.clone()
    });
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
