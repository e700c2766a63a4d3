//! Issue 10: the real daemon binary backs a job up at start when its
//! newest good backup is stale (`run_at_start`), and runs scheduled restore
//! drills (`verify:`) with metrics, readiness and failure notifications.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(cfg: &Path, dir: &Path) -> Daemon {
        let port = free_port();
        let log = dir.join(format!("daemon-{port}.log"));
        let child = Command::new(bin())
            .args(["--log-format", "json", "--config"])
            .arg(cfg)
            .args(["daemon", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until `cond` holds on the log.
    fn wait_log(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        wait_until(what, Duration::from_secs(60), || {
            let log = self.log();
            if cond(&log) {
                Ok(log)
            } else {
                Err(format!("log:\n{log}"))
            }
        })
    }

    fn metrics(&self) -> String {
        http_get(self.port, "/metrics")
            .map(|x| x.1)
            .unwrap_or_default()
    }
}

fn config(ws: &Workspace, data: &Path, job_extra: &str, top: &str) -> PathBuf {
    ws.config(&format!(
        "store:\n  url: {}\n{top}jobs:\n  - name: j\n    schedule: \"0 3 1 1 *\"\n{job_extra}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.display()
    ))
}

fn data_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("f.txt"), b"data").unwrap();
    d
}

#[test]
fn start_up_run_when_missed_and_not_again_when_fresh() {
    let ws = Workspace::new();
    let data = data_dir();
    // A yearly schedule: only the start-up rule can start a run here.
    let cfg = config(&ws, data.path(), "", "");
    let d = Daemon::start(&cfg, ws.path());
    let log = d.wait_log("the start-up backup", |l| l.contains("\"run finished\""));
    assert!(log.contains("start-up run"), "{log}");
    assert!(log.contains("holds no good backup"), "{log}");
    assert_eq!(ws.manifests().len(), 1);
    drop(d);

    // Restarted with a fresh backup: decided, logged, and no second run.
    let d = Daemon::start(&cfg, ws.path());
    let log = d.wait_log("the start-up decision", |l| l.contains("no start-up run"));
    assert!(log.contains("is fresh"), "{log}");
    // The decision is made before the loop starts, so no run can follow it.
    assert!(!log.contains("\"run finished\""), "{log}");
    assert_eq!(ws.manifests().len(), 1);
    drop(d);

    // `always` runs even so; `never` does not run with no backup at all.
    let cfg = config(&ws, data.path(), "    run_at_start: always\n", "");
    let d = Daemon::start(&cfg, ws.path());
    d.wait_log("the forced start-up backup", |l| {
        l.contains("\"run finished\"")
    });
    drop(d);
    assert_eq!(ws.manifests().len(), 2);
    let ws2 = Workspace::new();
    let cfg = config(&ws2, data.path(), "    run_at_start: never\n", "");
    let d = Daemon::start(&cfg, ws2.path());
    let log = d.wait_log("the start-up decision", |l| l.contains("no start-up run"));
    assert!(log.contains("run_at_start is never"), "{log}");
    assert!(ws2.manifests().is_empty());
}

/// A listener recording each request body, answering 200.
pub fn hook() -> (String, std::sync::mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook/T0KEN", l.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        let _ = tx.send(body.to_owned());
                        break;
                    }
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        }
    });
    (url, rx)
}

#[test]
fn drills_run_on_schedule_with_metrics_readiness_and_failure_notifications() {
    let ws = Workspace::new();
    let data = data_dir();
    let (url, bodies) = hook();
    let cfg = config(
        &ws,
        data.path(),
        "    run_at_start: never\n    verify: {schedule: \"* * * * * *\", max_age: 1h}\n",
        &format!("notify:\n  webhooks: [\"{url}\"]\n"),
    );
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let d = Daemon::start(&cfg, ws.path());
    let log = d.wait_log("a successful drill", |l| {
        l.contains("restore drill finished") && l.contains("\"outcome\":\"success\"")
    });
    // Issue 23 item 7: the drill's event has typed fields, no Rust debug
    // text (it printed `Some("...")` for the backup ID).
    let event: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "restore drill finished")
        .expect("a JSON drill event");
    let f = &event["fields"];
    let backup_id = f["backup_id"].as_str().unwrap_or_else(|| panic!("{f}"));
    assert!(
        !backup_id.contains("Some(") && !backup_id.contains('"'),
        "{f}"
    );
    assert_eq!(f["kind"], "verify", "{f}");
    assert_eq!(f["error"], serde_json::Value::Null, "{f}");
    assert!(f["restore_test"].is_boolean(), "{f}");
    assert!(!log.contains("Some("), "{log}");
    let m = wait_until(
        "a successful drill in /metrics",
        Duration::from_secs(30),
        || {
            let m = d.metrics();
            if m.contains("ccbackup_verify_last_success_timestamp_seconds{job=\"j\"}") {
                Ok(m)
            } else {
                Err(m)
            }
        },
    );
    assert!(
        m.contains("ccbackup_verify_last_outcome{job=\"j\",outcome=\"success\"} 1"),
        "{m}"
    );
    assert_eq!(http_get(d.port, "/readyz").unwrap().0, 200);
    // Successful drills notify nobody.
    assert!(bodies.try_recv().is_err());

    // Damage the stored archive: the next drill fails, says so, notifies.
    let art = ws
        .stored_files()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("etc.tar.zst"))
        .unwrap();
    let mut bytes = std::fs::read(&art).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&art, bytes).unwrap();
    d.wait_log("a failed drill", |l| {
        l.contains("restore drill finished") && l.contains("\"outcome\":\"failure\"")
    });
    let body = bodies
        .recv_timeout(Duration::from_secs(30))
        .expect("a failure notification");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["kind"], "verify", "{v}");
    assert_eq!(v["outcome"], "failure", "{v}");
    assert!(v["error"].as_str().unwrap().contains("sha256"), "{v}");
    wait_until(
        "a failed drill in /metrics",
        Duration::from_secs(30),
        || {
            let m = d.metrics();
            if m.contains("ccbackup_verify_last_outcome{job=\"j\",outcome=\"failure\"} 1") {
                Ok(())
            } else {
                Err(m)
            }
        },
    );
}

#[test]
fn readiness_requires_a_recent_drill_when_verify_max_age_is_set() {
    let ws = Workspace::new();
    let data = data_dir();
    // Drills that always fail (no backup to verify counts as skipped, so
    // make one and corrupt it), with a max_age of one second.
    let cfg = config(
        &ws,
        data.path(),
        "    run_at_start: never\n    verify: {schedule: \"* * * * * *\", restore_test: false, max_age: 1s}\n",
        "",
    );
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let art = ws
        .stored_files()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("etc.tar.zst"))
        .unwrap();
    // Same size: an artifact of another size is already damage in the
    // catalog's listing, and the drill would have nothing to verify.
    let len = std::fs::metadata(&art).unwrap().len() as usize;
    std::fs::write(&art, vec![b'x'; len]).unwrap();
    let d = Daemon::start(&cfg, ws.path());
    d.wait_log("a failed drill", |l| l.contains("\"outcome\":\"failure\""));
    let body = wait_until(
        "/readyz to fail",
        Duration::from_secs(30),
        || match http_get(d.port, "/readyz") {
            Some((503, body)) => Ok(body),
            r => Err(format!("{r:?}")),
        },
    );
    assert!(body.contains("restore drill"), "{body}");
}

fn rchar(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("rchar: ").map(|v| v.trim().parse().ok()))?
        })
        .unwrap_or(0)
}

#[test]
fn regression_issue22_shutdown_cancels_a_drill_hashing_a_huge_artifact() {
    let ws = Workspace::new();
    let data = data_dir();
    let cfg = config(
        &ws,
        data.path(),
        "    run_at_start: never\n    verify: {schedule: \"* * * * * *\", restore_test: false}\n",
        "",
    );
    ccbackup(&cfg, &["run-now"]).expect_ok();
    // A 1 TiB sparse artifact whose manifest agrees on the size: the drill
    // would hash it for hours before the checksum could tell.
    let mpath = ws.manifests().remove(0);
    let art = mpath.parent().unwrap().join("etc.tar.zst");
    let ok = Command::new("truncate")
        .args(["-s", "1T"])
        .arg(&art)
        .status()
        .unwrap();
    assert!(ok.success());
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m["artifacts"][0]["stored_bytes"] = serde_json::json!(1u64 << 40);
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();

    let mut d = Daemon::start(&cfg, ws.path());
    let pid = d.child.id();
    if poll_for(Duration::from_secs(120), || rchar(pid) >= 64 << 20).is_err() {
        panic!("the drill never started hashing; log:\n{}", d.log());
    }
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    // Only a drill that ignores shutdown reaches this bound: the rest of
    // the artifact would take hours.
    let status =
        poll_for(Duration::from_secs(60), || d.child.try_wait().unwrap()).unwrap_or_else(|_| {
            panic!(
                "the daemon still runs 60 s after SIGTERM; log:\n{}",
                d.log()
            )
        });
    assert!(status.success(), "{status:?}; log:\n{}", d.log());
    let log = d.log();
    assert!(log.contains("\"outcome\":\"cancelled\""), "{log}");
}
