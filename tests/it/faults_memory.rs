//! Issue 24 item 3: a daemon backing up to a `file://` store keeps its
//! memory flat. The real daemon binary runs three jobs every two seconds
//! (10 MB of incompressible data each) until it has done two dozen runs,
//! then is reloaded with schedules a year away; its resident set once
//! idle, read from its own `/metrics`, stays under a fixed budget.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use crate::support_s3::random_file;

/// Idle resident memory allowed after the runs (debug build): about
/// 40 MiB with the fix, 122-144 MiB before it, when the runs' buffers kept
/// their pages in per-thread malloc arenas.
const IDLE_RSS_CAP: f64 = 50.0 * 1024.0 * 1024.0;
/// Runs to watch (all jobs): enough for every blocking thread to have
/// done a run.
const RUNS: f64 = 24.0;
const JOBS: [&str; 3] = ["a", "b", "c"];

fn metrics(port: u16) -> Option<String> {
    http_get_raw(port, "/metrics", Duration::from_secs(5))
}

fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn issue24_daemon_memory_stays_flat_with_a_file_store() {
    let ws = Workspace::new();
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    random_file(&data.join("big.bin"), 10 * 1024 * 1024);
    let port = free_port();
    // Three jobs at once: their runs allocate on many blocking threads
    // concurrently, as a sidecar with several jobs (or RRD, files and
    // database sources in parallel) does.
    let config = |schedule: &str| {
        let mut c = format!(
            "store:\n  url: {}\ndaemon:\n  listen: 127.0.0.1:{port}\njobs:\n",
            ws.store_url()
        );
        for job in JOBS {
            c.push_str(&format!(
                "  - name: {job}\n    schedule: \"{schedule}\"\n    retention: {{keep_last: 2}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
                data.display()
            ));
        }
        c
    };
    let cfg = ws.config(&config("*/2 * * * * *"));
    let mut child = Command::new(bin())
        .args(["--log-format", "json", "--config"])
        .arg(&cfg)
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let runs = |m: &str| {
        let mut n = 0.0;
        for job in JOBS {
            for o in ["success", "failure", "cancelled", "locked", "suspicious"] {
                let series = format!("ccbackup_runs_total{{job=\"{job}\",outcome=\"{o}\"}}");
                n += sample(m, &series).unwrap_or(0.0);
            }
        }
        n
    };
    // Back-to-back runs, every blocking thread busy in turn.
    loop {
        assert!(
            Instant::now() < deadline,
            "the daemon did not do {RUNS} runs"
        );
        std::thread::sleep(Duration::from_millis(100));
        let Some(m) = metrics(port) else { continue };
        if runs(&m) >= RUNS {
            break;
        }
    }
    // Then nothing more to do: a schedule that is a year away (SIGHUP).
    std::fs::write(&cfg, config("0 3 1 1 *")).unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut idle = Vec::new();
    while idle.len() < 10 {
        assert!(Instant::now() < deadline, "the daemon did not go idle");
        std::thread::sleep(Duration::from_millis(100));
        let Some(m) = metrics(port) else { continue };
        let year_away = (chrono::Utc::now().timestamp() + 86400) as f64;
        let quiet = JOBS.iter().all(|job| {
            sample(
                &m,
                &format!("ccbackup_next_run_timestamp_seconds{{job=\"{job}\"}}"),
            )
            .is_some_and(|t| t > year_away)
                && sample(&m, &format!("ccbackup_job_running{{job=\"{job}\"}}")) == Some(0.0)
        });
        if quiet {
            idle.push(sample(&m, "process_resident_memory_bytes").unwrap());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let idle_max = idle.iter().copied().fold(0f64, f64::max);
    eprintln!(
        "idle RSS after {RUNS} runs: {:.1} MiB",
        idle_max / 1048576.0
    );
    assert!(
        idle_max < IDLE_RSS_CAP,
        "idle RSS after {RUNS} runs is {:.1} MiB (cap {:.0} MiB)",
        idle_max / 1048576.0,
        IDLE_RSS_CAP / 1048576.0
    );
}
