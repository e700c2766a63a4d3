//! The daemon in-process on paused tokio time: a [`Clock`] that follows
//! tokio's clock makes the daemon arm tokio timers, so `advance` moves the
//! wall clock and fires runs together, and hours of schedule take no real
//! time. Runs start at their scheduled instants (jitter within its bound),
//! ticks missed while the host was suspended are dropped, a schedule in a
//! local zone follows DST, and `/readyz` turns stale exactly when
//! `max_age` (or `verify.max_age`) has passed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ccbackup::clock::Clock;
use ccbackup::config;
use ccbackup::daemon::{self, metrics::Metrics, Options};
use chrono::{DateTime, DurationRound, Utc};
use tokio_util::sync::CancellationToken;

use crate::support::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

struct Daemon {
    clock: Clock,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
    reload: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
}

/// Starts the daemon on `clock` and returns once it has armed its first
/// runs.
async fn start(cfg: &Path, clock: &Clock) -> Daemon {
    let cfg = config::load(cfg).unwrap();
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::with_clock(clock.clone()));
    let reload = Arc::new(tokio::sync::Notify::new());
    let opts = Options {
        listen: Some("127.0.0.1:0".to_owned()),
        metrics: Some(metrics.clone()),
        clock: clock.clone(),
        reload: Some(reload.clone()),
        ..Default::default()
    };
    let task = tokio::spawn(daemon::run(cfg, opts, stop.clone()));
    let d = Daemon {
        clock: clock.clone(),
        stop,
        metrics,
        reload,
        task,
    };
    d.wait("the first run armed", |m| {
        m.get("j").is_some_and(|s| s.next_run.is_some()) && m.readiness(m.now()).jobs.len() == 1
    })
    .await;
    d
}

impl Daemon {
    /// Waits (in steps of 10 ms of tokio time, at most a minute of it)
    /// until `cond` holds. Store I/O runs on blocking threads, which hold
    /// paused time still, so the steps add no more than the wait itself.
    async fn wait(&self, what: &str, mut cond: impl FnMut(&Metrics) -> bool) {
        for _ in 0..6000 {
            if cond(&self.metrics) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.metrics.get("j"));
    }

    /// Lets time run until `t`: paused tokio time jumps from timer to
    /// timer, so each run fires at its instant and is handled (its store
    /// I/O holds time still) before time moves on. `advance` instead would
    /// jump straight to `t`, a stall.
    async fn advance_to(&self, t: DateTime<Utc>) {
        let d = (t - self.clock.now()).to_std().unwrap_or_default();
        tokio::time::sleep(d).await;
    }

    fn successes(&self) -> u64 {
        self.metrics
            .get("j")
            .and_then(|s| s.runs.get("success").copied())
            .unwrap_or(0)
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Start times of job `j`'s manifests in the store, oldest first.
fn started_times(ws: &Workspace) -> Vec<DateTime<Utc>> {
    let mut v: Vec<DateTime<Utc>> = ws
        .manifests()
        .iter()
        .map(|p| {
            let m: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            at(m["started_at"].as_str().unwrap())
        })
        .collect();
    v.sort();
    v
}

fn files_job(ws: &Workspace, job_extra: &str) -> PathBuf {
    let src = ws.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n{job_extra}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        src.display()
    ))
}

/// Within a second after `t` (a run takes a few ms of tokio time).
fn just_after(got: DateTime<Utc>, t: DateTime<Utc>) -> bool {
    got >= t && got - t < chrono::Duration::seconds(1)
}

#[tokio::test(start_paused = true)]
async fn runs_start_at_their_scheduled_times() {
    let ws = Workspace::new();
    let cfg = files_job(
        &ws,
        "    schedule: \"0 * * * *\"\n    run_at_start: never\n    retention: {keep_last: 10}\n",
    );
    let clock = Clock::following_tokio(at("2027-01-01T00:59:30Z"));
    let d = start(&cfg, &clock).await;
    let one = at("2027-01-01T01:00:00Z");
    assert_eq!(d.metrics.get("j").unwrap().next_run, Some(one));

    // Nothing runs before its time.
    d.advance_to(at("2027-01-01T00:59:59Z")).await;
    tokio::task::yield_now().await;
    assert_eq!(d.successes(), 0);
    assert!(ws.manifests().is_empty());

    d.advance_to(one).await;
    d.wait("the 01:00 run", |m| {
        m.get("j")
            .is_some_and(|s| s.runs.get("success") == Some(&1) && !s.running)
    })
    .await;
    assert_eq!(
        d.metrics.get("j").unwrap().next_run,
        Some(at("2027-01-01T02:00:00Z"))
    );
    d.advance_to(at("2027-01-01T03:00:00Z")).await;
    d.wait("the 02:00 and 03:00 runs", |m| {
        m.get("j")
            .is_some_and(|s| s.runs.get("success") == Some(&3) && !s.running)
    })
    .await;
    let got = started_times(&ws);
    assert_eq!(got.len(), 3, "{got:?}");
    for (g, want) in got.iter().zip(["01:00:00", "02:00:00", "03:00:00"]) {
        let want = at(&format!("2027-01-01T{want}Z"));
        assert!(just_after(*g, want), "ran at {g}, due {want}");
    }
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_run_within_its_bound() {
    let ws = Workspace::new();
    let cfg = files_job(
        &ws,
        "    schedule: \"0 * * * *\"\n    jitter: 20m\n    run_at_start: never\n    retention: {keep_last: 20}\n",
    );
    let clock = Clock::following_tokio(at("2027-01-01T00:30:00Z"));
    let d = start(&cfg, &clock).await;
    for hour in 1..=6 {
        d.advance_to(at(&format!("2027-01-01T{hour:02}:30:00Z")))
            .await;
        d.wait("the jittered run", |m| {
            m.get("j")
                .is_some_and(|s| s.runs.get("success").copied() == Some(hour) && !s.running)
        })
        .await;
    }
    let got = started_times(&ws);
    assert_eq!(got.len(), 6, "{got:?}");
    for (i, g) in got.iter().enumerate() {
        let nominal = at(&format!("2027-01-01T{:02}:00:00Z", i + 1));
        assert!(
            *g >= nominal
                && *g - nominal <= chrono::Duration::minutes(20) + chrono::Duration::seconds(1),
            "run {i} at {g}, nominal {nominal}"
        );
    }
    // Six draws from [0, 20 min] all landing on the minute are a jitter
    // that does nothing.
    assert!(
        got.iter().any(
            |g| *g - g.duration_trunc(chrono::Duration::hours(1)).unwrap()
                > chrono::Duration::seconds(1)
        ),
        "{got:?}"
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn runs_missed_while_the_host_was_suspended_are_dropped() {
    let ws = Workspace::new();
    let cfg = files_job(
        &ws,
        "    schedule: \"0 * * * *\"\n    run_at_start: never\n    retention: {keep_last: 10}\n",
    );
    let clock = Clock::following_tokio(at("2027-01-01T00:59:30Z"));
    let d = start(&cfg, &clock).await;
    // Suspended for 3 h 10 min: the wall clock jumps, tokio's timers do
    // not see it, and the 01:00 tick fires 30 s later at 04:10.
    clock.jump(chrono::Duration::minutes(190));
    tokio::time::advance(Duration::from_secs(30)).await;
    d.wait("the late run", |m| {
        m.get("j")
            .is_some_and(|s| s.runs.get("success") == Some(&1) && !s.running)
    })
    .await;
    // One run for the late tick, 02:00-04:00 dropped, next is 05:00.
    assert_eq!(
        d.metrics.get("j").unwrap().next_run,
        Some(at("2027-01-01T05:00:00Z"))
    );
    let got = started_times(&ws);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(just_after(got[0], at("2027-01-01T04:10:00Z")), "{got:?}");
    d.advance_to(at("2027-01-01T05:00:00Z")).await;
    d.wait("the 05:00 run", |m| {
        m.get("j")
            .is_some_and(|s| s.runs.get("success") == Some(&2) && !s.running)
    })
    .await;
    assert_eq!(started_times(&ws).len(), 2);
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_local_time_schedule_follows_the_dst_change() {
    let ws = Workspace::new();
    // 01:30 London does not exist on 2027-03-28 (01:00 GMT -> 02:00 BST):
    // that day's run is at the jump, the next at 01:30 BST = 00:30 UTC.
    let cfg = files_job(
        &ws,
        "    schedule: \"30 1 * * *\"\n    timezone: Europe/London\n    run_at_start: never\n    retention: {keep_last: 10}\n",
    );
    let clock = Clock::following_tokio(at("2027-03-27T12:00:00Z"));
    let d = start(&cfg, &clock).await;
    for (n, t) in [
        (1, "2027-03-28T01:00:00Z"),
        (2, "2027-03-29T00:30:00Z"),
        (3, "2027-03-30T00:30:00Z"),
    ] {
        assert_eq!(d.metrics.get("j").unwrap().next_run, Some(at(t)));
        d.advance_to(at(t)).await;
        d.wait("the night's run", |m| {
            m.get("j")
                .is_some_and(|s| s.runs.get("success").copied() == Some(n) && !s.running)
        })
        .await;
    }
    let got = started_times(&ws);
    for (g, want) in got.iter().zip([
        "2027-03-28T01:00:00Z",
        "2027-03-29T00:30:00Z",
        "2027-03-30T00:30:00Z",
    ]) {
        assert!(just_after(*g, at(want)), "ran at {g}, due {want}");
    }
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn readiness_turns_stale_when_max_age_has_passed() {
    let ws = Workspace::new();
    let cfg = files_job(
        &ws,
        "    schedule: \"0 2 * * *\"\n    max_age: 25h\n    run_at_start: never\n    retention: {keep_last: 10}\n",
    );
    let clock = Clock::following_tokio(at("2027-01-01T01:00:00Z"));
    let d = start(&cfg, &clock).await;
    let ready = |d: &Daemon| {
        let r = d.metrics.readiness(d.clock.now());
        (r.ready, r.reason.unwrap_or_default())
    };
    // Never ran: ready until the first run plus max_age.
    assert!(ready(&d).0, "{:?}", ready(&d));
    d.advance_to(at("2027-01-01T02:00:00Z")).await;
    d.wait("the 02:00 run", |m| {
        m.get("j")
            .is_some_and(|s| s.runs.get("success") == Some(&1) && !s.running)
    })
    .await;
    // The 02:00 run of the next day fails: its source is gone.
    std::fs::remove_dir_all(ws.path().join("src")).unwrap();
    d.advance_to(at("2027-01-02T02:00:00Z")).await;
    d.wait("the failed run", |m| {
        m.get("j")
            .is_some_and(|s| s.runs.get("failure").copied().unwrap_or(0) >= 1 && !s.running)
    })
    .await;
    // 25 h after the good backup's start it is still (just) fresh...
    d.advance_to(at("2027-01-02T02:59:59Z")).await;
    assert!(ready(&d).0, "{:?}", ready(&d));
    // ...and a second later it is not.
    d.advance_to(at("2027-01-02T03:00:02Z")).await;
    let (ok, why) = ready(&d);
    assert!(!ok && why.contains("older than max_age"), "{why}");
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn readiness_requires_a_drill_within_verify_max_age() {
    let ws = Workspace::new();
    // One backup (New Year, 02:00) and daily drills at 03:00.
    let cfg = files_job(
        &ws,
        "    schedule: \"0 2 1 1 *\"\n    run_at_start: never\n    verify: {schedule: \"0 3 * * *\", restore_test: false, max_age: 2h}\n",
    );
    let clock = Clock::following_tokio(at("2027-01-01T01:00:00Z"));
    let d = start(&cfg, &clock).await;
    let drills = |m: &Metrics, outcome: &str| {
        m.get("j")
            .and_then(|s| s.drill)
            .and_then(|dr| dr.runs.get(outcome).copied())
            .unwrap_or(0)
    };
    d.advance_to(at("2027-01-01T02:00:00Z")).await;
    d.wait("the backup", |m| {
        m.get("j")
            .is_some_and(|s| s.runs.get("success") == Some(&1) && !s.running)
    })
    .await;
    d.advance_to(at("2027-01-01T03:00:00Z")).await;
    d.wait("the first drill", |m| {
        drills(m, "success") == 1 && !m.get("j").unwrap().running
    })
    .await;
    d.advance_to(at("2027-01-01T04:59:59Z")).await;
    let r = d.metrics.readiness(clock.now());
    assert!(r.ready, "{r:?}");
    // Two hours after the drill finished it is too old.
    d.advance_to(at("2027-01-01T05:00:02Z")).await;
    let r = d.metrics.readiness(clock.now());
    assert!(!r.ready, "{r:?}");
    let why = r.reason.unwrap_or_default();
    assert!(why.contains("older than verify.max_age"), "{why}");
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_disarms_the_old_schedule_and_arms_the_new_one() {
    let ws = Workspace::new();
    let cfg = files_job(
        &ws,
        "    schedule: \"0 * * * *\"\n    run_at_start: never\n    retention: {keep_last: 10}\n",
    );
    let clock = Clock::following_tokio(at("2027-01-01T00:50:00Z"));
    let d = start(&cfg, &clock).await;
    let body = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, body.replace("\"0 * * * *\"", "\"30 * * * *\"")).unwrap();
    d.reload.notify_one();
    d.wait("the new schedule armed", |m| {
        m.get("j")
            .is_some_and(|s| s.next_run == Some(at("2027-01-01T01:30:00Z")))
    })
    .await;
    // The 01:00 tick armed before the reload does not run.
    d.advance_to(at("2027-01-01T01:29:00Z")).await;
    assert_eq!(d.successes(), 0);
    d.advance_to(at("2027-01-01T01:30:00Z")).await;
    d.wait("the 01:30 run", |m| {
        m.get("j")
            .is_some_and(|s| s.runs.get("success") == Some(&1) && !s.running)
    })
    .await;
    let got = started_times(&ws);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(just_after(got[0], at("2027-01-01T01:30:00Z")), "{got:?}");
    d.stop().await;
}

/// Issue 24 item 4: the daemon stalled (here the host was suspended: the
/// wall clock jumps, tokio's timers do not see it) and the late 01:00 tick
/// is handled exactly when the 02:00 run is due. That run happens, once,
/// now; nothing is skipped or dropped, and 03:00 is next.
#[tokio::test(start_paused = true)]
async fn issue24_a_tick_late_by_a_whole_period_runs_the_one_due_now_once() {
    let ws = Workspace::new();
    let cfg = files_job(
        &ws,
        "    schedule: \"0 * * * *\"\n    run_at_start: never\n    retention: {keep_last: 10}\n",
    );
    let clock = Clock::following_tokio(at("2027-01-01T00:59:30Z"));
    let d = start(&cfg, &clock).await;
    clock.jump(chrono::Duration::minutes(60));
    // The 01:00 timer fires exactly when the wall clock says 02:00.
    d.advance_to(at("2027-01-01T02:00:00Z")).await;
    d.wait("the late run", |m| {
        m.get("j")
            .is_some_and(|s| s.runs.get("success") == Some(&1) && !s.running)
    })
    .await;
    // Let anything else armed for "now" fire before looking.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = d.metrics.get("j").unwrap();
    assert_eq!(s.skipped_runs, 0, "the run due now was skipped");
    assert_eq!(s.next_run, Some(at("2027-01-01T03:00:00Z")));
    let got = started_times(&ws);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(just_after(got[0], at("2027-01-01T02:00:00Z")), "{got:?}");
    d.stop().await;
}

/// Issue 24 item 4: a timer that wakes before the wall clock reaches the
/// run's time (the clock was stepped back while the run waited) does not
/// start the run early: the backup ID never carries the previous period.
#[tokio::test(start_paused = true)]
async fn issue24_a_run_never_starts_before_its_time() {
    let ws = Workspace::new();
    let cfg = files_job(
        &ws,
        "    schedule: \"0 * * * *\"\n    run_at_start: never\n    retention: {keep_last: 10}\n",
    );
    let clock = Clock::following_tokio(at("2027-01-01T00:59:30Z"));
    let d = start(&cfg, &clock).await;
    // The timer fires when the wall clock says 00:59:55; the run waits 5 s.
    clock.jump(-chrono::Duration::seconds(5));
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(d.successes(), 0);
    // Stepped back again during that wait.
    clock.jump(-chrono::Duration::seconds(3));
    tokio::time::sleep(Duration::from_secs(10)).await;
    d.wait("the 01:00 run", |m| {
        m.get("j")
            .is_some_and(|s| s.runs.get("success") == Some(&1) && !s.running)
    })
    .await;
    let got = started_times(&ws);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0] >= at("2027-01-01T01:00:00Z"),
        "started early: {got:?}"
    );
    d.stop().await;
}

/// Issue 23 item 4: a restore drill due at the same instant as a backup
/// never costs the backup its run (nor the drill its own): whichever
/// comes second waits for the first.
#[tokio::test(start_paused = true)]
async fn issue23_a_drill_due_with_a_backup_never_skips_the_backup() {
    let ws = Workspace::new();
    let cfg = files_job(
        &ws,
        "    schedule: \"0 * * * *\"\n    run_at_start: always\n    retention: {keep_last: 10}\n    verify: {schedule: \"0 * * * *\", restore_test: false}\n",
    );
    let clock = Clock::following_tokio(at("2027-01-01T00:30:00Z"));
    let d = start(&cfg, &clock).await;
    d.wait("the start-up run", |m| {
        m.get("j")
            .is_some_and(|s| s.runs.get("success") == Some(&1) && !s.running)
    })
    .await;
    let drills = |m: &Metrics, outcome: &str| {
        m.get("j")
            .and_then(|s| s.drill)
            .and_then(|dr| dr.runs.get(outcome).copied())
            .unwrap_or(0)
    };
    for hour in 1..=3u64 {
        d.advance_to(at(&format!("2027-01-01T{hour:02}:00:00Z")))
            .await;
        d.wait("the backup and the drill", |m| {
            m.get("j").is_some_and(|s| {
                s.runs.get("success") == Some(&(hour + 1))
                    && drills(m, "success") == hour
                    && !s.running
            }) || m.get("j").is_some_and(|s| s.skipped_runs > 0)
                || drills(m, "skipped") > 0
        })
        .await;
        let s = d.metrics.get("j").unwrap();
        assert_eq!(s.skipped_runs, 0, "a backup was skipped at {hour}:00");
        assert_eq!(drills(&d.metrics, "skipped"), 0, "a drill was skipped");
    }
    assert_eq!(started_times(&ws).len(), 4);
    d.stop().await;
}
