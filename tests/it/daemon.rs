//! The daemon in-process with a file:// store and every-second schedules:
//! runs happen, retention follows success, locks are respected, a flaky
//! store is retried, health and metrics are served over real HTTP, and a
//! shutdown mid-run leaves nothing behind. `ccbackup schedule` across DST.
//!
//! Tests that only need the store run on paused tokio time (a
//! [`Clock`] following it), so seconds of schedule, lease expiry and retry
//! backoff take no real time. The ones that wait on a webhook receiver or
//! a blocked `pg_dump` run in real time: paused time would jump over the
//! network and child-process waits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccbackup::clock::Clock;
use ccbackup::config;
use ccbackup::daemon::{self, metrics::Metrics, Options};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::lock::{open_repo, plant_lease};
use crate::support::*;
use crate::support_store::{FaultyStore, Op};

struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
}

async fn start(cfg_path: &std::path::Path, repo: Option<ccbackup::repo::store::Repo>) -> Running {
    start_on(cfg_path, repo, Clock::system()).await
}

/// [`start`] on `clock` (a tokio-following one under paused time).
async fn start_on(
    cfg_path: &std::path::Path,
    repo: Option<ccbackup::repo::store::Repo>,
    clock: Clock,
) -> Running {
    let cfg = config::load(cfg_path).unwrap();
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::with_clock(clock.clone()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opts = Options {
        listen: Some("127.0.0.1:0".to_owned()),
        repo,
        bound: Some(tx),
        metrics: Some(metrics.clone()),
        clock,
        ..Default::default()
    };
    let task = tokio::spawn(daemon::run(cfg, opts, stop.clone()));
    let addr = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    Running {
        addr,
        stop,
        metrics,
        task,
    }
}

impl Running {
    async fn stop(self, within: Duration) -> Result<(), daemon::DaemonError> {
        self.stop.cancel();
        tokio::time::timeout(within, self.task)
            .await
            .expect("daemon did not stop in time")
            .unwrap()
    }
}

/// `(status, body)` of a GET to the in-process daemon.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get_async(addr, path)
        .await
        .unwrap_or_else(|| panic!("no answer to GET {path}"))
}

/// The value of one sample line in a Prometheus text body.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn files_job(ws: &Workspace, extra_job: &str, extra_top: &str) -> std::path::PathBuf {
    let src = ws.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    ws.config(&format!(
        "store:\n  url: {}\n{extra_top}jobs:\n  - name: j\n    schedule: \"* * * * * *\"\n{extra_job}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        src.display()
    ))
}

fn staging_leftovers(ws: &Workspace) -> Vec<std::path::PathBuf> {
    ws.stored_files()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains('#'))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn daemon_runs_on_schedule_prunes_after_success_and_serves_metrics() {
    let ws = Workspace::new();
    let cfg = files_job(
        &ws,
        "    max_age: 1h\n    retention: {keep_last: 1}\n",
        "daemon: {shutdown_grace: 5s}\n",
    );
    let d = start_on(&cfg, None, Clock::following_tokio(Utc::now())).await;

    let (code, body) = get(d.addr, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    let m = d.metrics.clone();
    wait_until_async("three successful runs", Duration::from_secs(20), || {
        m.get("j")
            .is_some_and(|s| s.runs.get("success").copied().unwrap_or(0) >= 3)
    })
    .await;
    // keep_last 1: retention ran after each success.
    let stats = m.get("j").unwrap();
    assert!(stats.retention_deletions >= 1, "{stats:?}");
    assert!(ws.manifests().len() <= 2, "{:?}", ws.manifests());

    let (code, body) = get(d.addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        sample(&body, "ccbackup_runs_total{job=\"j\",outcome=\"success\"}").unwrap() >= 3.0,
        "{body}"
    );
    assert!(sample(&body, "ccbackup_last_success_timestamp_seconds{job=\"j\"}").unwrap() > 1.7e9);
    assert!(sample(&body, "ccbackup_last_run_bytes{job=\"j\"}").unwrap() > 0.0);
    assert!(sample(&body, "ccbackup_retention_deletions_total{job=\"j\"}").unwrap() >= 1.0);
    assert!(sample(&body, "ccbackup_backups_stored{job=\"j\"}").is_some());
    assert!(body.contains("# TYPE ccbackup_runs_total counter"));

    let (code, body) = get(d.addr, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["jobs"][0]["job"], "j");
    assert_eq!(v["jobs"][0]["ready"], true);
    let (code, _) = get(d.addr, "/nope").await;
    assert_eq!(code, 404);

    d.stop(Duration::from_secs(15)).await.unwrap();
    assert!(staging_leftovers(&ws).is_empty());
    assert!(!ws.store_dir().join("locks/j.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_job_makes_readyz_fail_notifies_and_never_prunes() {
    let ws = Workspace::new();
    // A webhook receiver on loopback that records request bodies.
    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let bodies = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let b2 = bodies.clone();
    std::thread::spawn(move || {
        for s in hook.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        b2.lock().unwrap().push(body.to_owned());
                        let _ =
                            s.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
                        break;
                    }
                }
            }
        }
    });
    // Valid at start (config checks it), gone by the first run.
    let src = ws.path().join("missing");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    // Two good backups from before, made without a retention policy:
    // `keep_last: 1` below deletes the older one if a failed run prunes.
    let seed = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        src.display()
    ));
    ccbackup(&seed, &["run-now"]).expect_ok();
    ccbackup(&seed, &["run-now"]).expect_ok();
    let seeded = {
        let mut m = ws.manifests();
        m.sort();
        m
    };
    assert_eq!(seeded.len(), 2, "{seeded:?}");
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nnotify: {{webhooks: [\"http://{hook_addr}/hook/secret-token\"]}}\njobs:\n  - name: j\n    schedule: \"* * * * * *\"\n    max_age: 1s\n    retention: {{keep_last: 1}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        src.display()
    ));
    let d = start(&cfg, None).await;
    std::fs::remove_dir_all(&src).unwrap();
    let m = d.metrics.clone();
    wait_until_async("two failed runs", Duration::from_secs(20), || {
        m.get("j")
            .is_some_and(|s| s.runs.get("failure").copied().unwrap_or(0) >= 2)
    })
    .await;
    // The newest good backup is a seed, older than max_age 1 s by now or
    // soon.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = get(d.addr, "/readyz").await;
        if code == 503 {
            assert!(body.contains("older than max_age"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "readyz stayed {code}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b = bodies.clone();
    wait_until_async("a failure webhook", Duration::from_secs(10), || {
        !b.lock().unwrap().is_empty()
    })
    .await;
    let first: serde_json::Value = serde_json::from_str(&bodies.lock().unwrap()[0]).unwrap();
    assert_eq!(first["job"], "j");
    assert_eq!(first["outcome"], "failure");
    assert!(first["error"].as_str().unwrap().contains("etc"), "{first}");
    assert!(first["duration_seconds"].is_number());
    let s = m.get("j").unwrap();
    assert_eq!(s.runs.get("success").copied().unwrap_or(0), 0, "{s:?}");
    assert_eq!(s.retention_deletions, 0);
    d.stop(Duration::from_secs(15)).await.unwrap();
    let mut left = ws.manifests();
    left.sort();
    assert_eq!(left, seeded, "a failed run pruned");
}

#[tokio::test(start_paused = true)]
async fn held_lock_is_respected_and_an_expired_one_taken_over() {
    let ws = Workspace::new();
    let cfg = files_job(&ws, "", "");
    let clock = Clock::following_tokio(Utc::now());
    let repo = open_repo(&ws);
    plant_lease(
        &repo,
        "j",
        "other-sidecar",
        clock.now() + chrono::Duration::hours(1),
    )
    .await;
    let d = start_on(&cfg, None, clock.clone()).await;
    let m = d.metrics.clone();
    wait_until_async("two locked runs", Duration::from_secs(20), || {
        m.get("j").is_some_and(|s| s.lock_waits >= 2)
    })
    .await;
    assert!(ws.manifests().is_empty(), "{:?}", ws.manifests());
    let (_, body) = get(d.addr, "/metrics").await;
    assert!(
        sample(&body, "ccbackup_lock_waits_total{job=\"j\"}").unwrap() >= 2.0,
        "{body}"
    );
    assert!(sample(&body, "ccbackup_runs_total{job=\"j\",outcome=\"locked\"}").unwrap() >= 2.0);
    let err = m.get("j").unwrap().last_error.unwrap();
    assert!(
        err.contains("other-sidecar") && err.contains("until"),
        "{err}"
    );

    // The other owner died: its lease expires and is taken over.
    plant_lease(
        &repo,
        "j",
        "other-sidecar",
        clock.now() - chrono::Duration::seconds(1),
    )
    .await;
    wait_until_async("a manifest after takeover", Duration::from_secs(20), || {
        !ws.manifests().is_empty()
    })
    .await;
    d.stop(Duration::from_secs(15)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn flaky_store_is_retried_to_success() {
    let ws = Workspace::new();
    let cfg = files_job(&ws, "", "");
    let mut repo = open_repo(&ws);
    let flaky = FaultyStore::failing_first(repo.store.clone(), 4);
    repo.store = flaky.clone();
    let d = start_on(&cfg, Some(repo), Clock::following_tokio(Utc::now())).await;
    let m = d.metrics.clone();
    wait_until_async(
        "a success through the flaky store",
        Duration::from_secs(30),
        || {
            m.get("j")
                .is_some_and(|s| s.runs.get("success").copied().unwrap_or(0) >= 1)
        },
    )
    .await;
    let s = m.get("j").unwrap();
    assert_eq!(s.runs.get("failure").copied().unwrap_or(0), 0, "{s:?}");
    assert!(flaky.calls.load(std::sync::atomic::Ordering::SeqCst) > 4);
    assert!(!ws.manifests().is_empty());
    d.stop(Duration::from_secs(15)).await.unwrap();
}

/// Issue 21: a run lists the job's catalogue once (the guard, retention,
/// the metrics, the status page and the tamper check share it); the
/// daemon's only other listing is the one at start-up. The metrics still
/// show what the store holds after retention.
#[tokio::test(start_paused = true)]
async fn each_run_lists_the_catalogue_once() {
    let ws = Workspace::new();
    let cfg = files_job(
        &ws,
        "    retention: {keep_last: 1}
",
        "daemon: {shutdown_grace: 5s}
",
    );
    let mut repo = open_repo(&ws);
    // A catalogue read is a listing of the job's whole prefix; a backup
    // directory's own listing does not count.
    let listings = Arc::new(AtomicUsize::new(0));
    let seen = listings.clone();
    repo.store = Arc::new(
        FaultyStore::passing(repo.store.clone()).after(move |op, p| {
            if op == Op::List && p.as_ref() == "j" {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }),
    );
    let d = start_on(&cfg, Some(repo), Clock::following_tokio(Utc::now())).await;
    let m = d.metrics.clone();
    wait_until_async("three successful runs", Duration::from_secs(20), || {
        m.get("j")
            .is_some_and(|s| s.runs.get("success").copied().unwrap_or(0) >= 3 && !s.running)
    })
    .await;
    d.stop(Duration::from_secs(15)).await.unwrap();
    let s = m.get("j").unwrap();
    let runs: u64 = s.runs.values().sum();
    assert_eq!(runs, s.runs.get("success").copied().unwrap_or(0), "{s:?}");
    assert_eq!(
        listings.load(Ordering::SeqCst) as u64,
        1 + runs,
        "one listing at start-up and one per run: {s:?}"
    );
    assert!(s.retention_deletions >= 1, "{s:?}");
    assert_eq!(s.backups_stored, Some(ws.manifests().len() as u64), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_do_not_overlap_and_shutdown_mid_run_leaves_nothing() {
    require_tool("psql");
    let db = TestDb::create(&unique("daemon"));
    db.sql("CREATE TABLE big AS SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
    let ws = Workspace::new();
    let (hook, bodies) = crate::drills::hook();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ndaemon: {{shutdown_grace: 2s, lock_ttl: 6s}}\nnotify:\n  webhooks: [\"{hook}\"]\njobs:\n  - name: j\n    schedule: \"* * * * * *\"\n    retention: {{keep_last: 1}}\n    sources:\n{}          globals: false\n",
        ws.store_url(),
        postgres_source("db", &[&db.name])
    ));
    // pg_dump waits for this lock, so the run stays in progress.
    let mut locker = std::process::Command::new("psql")
        .args([
            "-X", "-q", "-h", PG_HOST, "-U", "postgres", "-d", &db.name, "-c",
        ])
        .arg("BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT;")
        .spawn()
        .unwrap();
    let name = db.name.clone();
    tokio::task::spawn_blocking(move || wait_for_table_lock(&name, "big"))
        .await
        .unwrap();

    let d = start(&cfg, None).await;
    let m = d.metrics.clone();
    wait_until_async(
        "ticks skipped while the run is blocked",
        Duration::from_secs(20),
        || m.get("j").is_some_and(|s| s.running && s.skipped_runs >= 2),
    )
    .await;
    let s = m.get("j").unwrap();
    assert_eq!(
        s.runs.values().sum::<u64>(),
        0,
        "a second run started: {s:?}"
    );
    assert!(ws.store_dir().join("locks/j.json").exists());
    // Issue 23 item 4: every skipped backup is notified as a failure with
    // its real reason (one waits behind the blocked run; the rest skip).
    let body = bodies
        .recv_timeout(Duration::from_secs(10))
        .expect("a skipped backup was not notified");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["outcome"], "failure", "{body}");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("was skipped") && error.contains("still running"),
        "{body}"
    );

    let t0 = Instant::now();
    d.stop(Duration::from_secs(30))
        .await
        .expect("clean exit after cancelling the run");
    assert!(t0.elapsed() < Duration::from_secs(25));
    let _ = locker.kill();
    let _ = locker.wait();

    assert_eq!(m.get("j").unwrap().runs.get("cancelled").copied(), Some(1));
    assert!(ws.manifests().is_empty(), "{:?}", ws.manifests());
    assert!(
        staging_leftovers(&ws).is_empty(),
        "{:?}",
        staging_leftovers(&ws)
    );
    assert!(ws.stored_files().is_empty(), "{:?}", ws.stored_files());
}

#[test]
fn schedule_command_prints_local_times_across_dst() {
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: london\n    schedule: \"30 1 * * *\"\n    timezone: Europe/London\n    sources:\n      - name: etc\n        files: {{path: /tmp}}\n  - name: ny\n    schedule: \"30 1 * * *\"\n    timezone: America/New_York\n    sources:\n      - name: etc\n        files: {{path: /tmp}}\n",
        ws.store_url()
    ));
    // 01:30 does not exist in London on 2027-03-28: it runs once, at the jump.
    let run = ccbackup(
        &cfg,
        &[
            "schedule",
            "--job",
            "london",
            "--count",
            "3",
            "--after",
            "2027-03-26T12:00:00Z",
        ],
    );
    run.expect_ok();
    assert_eq!(
        run.stdout(),
        "2027-03-27T01:30:00+00:00\n2027-03-28T02:00:00+01:00\n2027-03-29T01:30:00+01:00\n"
    );
    // 01:30 happens twice in New York on 2027-11-07: it runs once, the first.
    let run = ccbackup(
        &cfg,
        &[
            "schedule",
            "--count",
            "2",
            "--after",
            "2027-11-06T12:00:00Z",
        ],
    );
    run.expect_ok();
    let out = run.stdout();
    assert!(
        out.contains("ny 2027-11-07T01:30:00-04:00\nny 2027-11-08T01:30:00-05:00\n"),
        "{out}"
    );
    assert!(
        out.starts_with("london 2027-11-07T01:30:00+00:00\n"),
        "{out}"
    );
}

/// Sends `request` raw and reads the whole answer (the server closes).
async fn raw(addr: SocketAddr, request: &'static str) -> String {
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    })
    .await
    .unwrap()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(start_paused = true)]
async fn head_requests_get_the_headers_of_get_and_no_body() {
    let ws = Workspace::new();
    // Nothing runs during the test, so GET and HEAD see the same state.
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    schedule: \"0 3 1 1 *\"\n    run_at_start: never\n    sources:\n      - name: etc\n        files: {{path: /tmp}}\n",
        ws.store_url()
    ));
    let d = start_on(&cfg, None, Clock::following_tokio(Utc::now())).await;
    for (path, ctype) in [
        ("/healthz", "text/plain"),
        ("/readyz", "application/json"),
        ("/metrics", "text/plain; version=0.0.4; charset=utf-8"),
        ("/nope", "text/plain"),
    ] {
        let get = raw(
            d.addr,
            leak(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")),
        )
        .await;
        let head = raw(
            d.addr,
            leak(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n")),
        )
        .await;
        let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
        let (head_head, head_body) = head.split_once("\r\n\r\n").unwrap();
        assert_eq!(head_body, "", "HEAD {path} sent a body: {head:?}");
        assert_eq!(
            get_head.lines().next(),
            head_head.lines().next(),
            "{path}: status"
        );
        assert_eq!(header(head_head, "content-type"), Some(ctype), "{head:?}");
        let len: usize = header(head_head, "content-length")
            .unwrap()
            .parse()
            .unwrap();
        if path != "/metrics" {
            // /metrics changes between two requests (uptime); the others not.
            assert_eq!(len, get_body.len(), "{path}: {head:?}");
        }
        assert!(len > 0, "{path}");
    }
    d.stop(Duration::from_secs(15)).await.unwrap();
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[tokio::test(start_paused = true)]
async fn regression_issue9_damaged_backups_show_in_metrics_at_start() {
    let ws = Workspace::new();
    // No schedule that fires during the test: the count comes from start-up.
    let src = ws.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    schedule: \"0 3 1 1 *\"\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        src.display()
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let bad = ws.store_dir().join("j").join("20200101T000000Z-abcdef");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("manifest.json"), b"{ garbage").unwrap();
    let d = start_on(&cfg, None, Clock::following_tokio(Utc::now())).await;
    // The catalog is listed just after the listener is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (code, body) = get(d.addr, "/metrics").await;
        assert_eq!(code, 200);
        if sample(&body, "ccbackup_backups_stored{job=\"j\"}").is_some() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never listed the store: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        sample(&body, "ccbackup_backups_damaged{job=\"j\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "ccbackup_backups_stored{job=\"j\"}"),
        Some(1.0),
        "{body}"
    );
    d.stop(Duration::from_secs(10)).await.unwrap();
}
