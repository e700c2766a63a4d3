//! `/readyz` of the real `ccbackup daemon` binary comes from the store, not
//! from the daemon's memory: right after a (re)start a job whose newest
//! good backup is older than `max_age` is not ready, a fresh one is, a job
//! that never ran gets until its first scheduled run plus `max_age`, and
//! one whose only backups are suspicious is not ready once `max_age` has
//! passed since that attempt, however often the daemon restarts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// The daemon binary; killed when dropped (a failed assertion must not
/// leave it running).
struct Daemon {
    child: Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(cfg: &Path, port: u16) -> Daemon {
    let child = Command::new(bin())
        .args(["--log-format", "json", "--config"])
        .arg(cfg)
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Daemon { child, port }
}

impl Daemon {
    /// Polls `/readyz` until the start-up listing is done (the body lists
    /// the jobs) and returns that first verdict, with every status seen
    /// before it.
    fn first_verdict(&self) -> (Vec<u16>, u16, serde_json::Value) {
        let mut seen = Vec::new();
        let (code, v) = wait_until("a verdict from /readyz", Duration::from_secs(20), || {
            let (code, body) = http_get(self.port, "/readyz").ok_or("no answer".to_owned())?;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if v["jobs"].as_array().is_some_and(|j| !j.is_empty()) {
                return Ok((code, v));
            }
            seen.push(code);
            Err(format!("no jobs listed yet; statuses so far {seen:?}"))
        });
        (seen, code, v)
    }
}

/// A files job `j` that is not due for months (New Year, 03:00).
/// A yearly job that does not back up at start (`run_at_start: never`):
/// these tests are about what the store says, not about start-up runs.
fn config(ws: &Workspace, data: &Path, port: u16, extra: &str) -> PathBuf {
    ws.config(&format!(
        "store:\n  url: {}\ndaemon:\n  listen: 127.0.0.1:{port}\njobs:\n  - name: j\n    schedule: \"0 3 1 1 *\"\n    max_age: 1h\n    run_at_start: never\n{extra}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.display()
    ))
}

/// Moves backup `id` of job `j` to an ID `age` earlier, rewriting the
/// manifest's `id` and `started_at` to match its new place.
fn backdate(ws: &Workspace, id: &str, age: chrono::Duration) -> String {
    let t = chrono::Utc::now() - age;
    let new_id = format!("{}-{}", t.format("%Y%m%dT%H%M%SZ"), &id[17..]);
    let job = ws.store_dir().join("j");
    std::fs::rename(job.join(id), job.join(&new_id)).unwrap();
    let p = job.join(&new_id).join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    m["started_at"] = serde_json::json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    m["id"] = serde_json::json!(new_id);
    std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
    new_id
}

fn data_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.txt"), b"hello").unwrap();
    d
}

fn job_entry(v: &serde_json::Value) -> &serde_json::Value {
    &v["jobs"][0]
}

#[test]
fn an_old_backup_in_the_store_is_not_ready_right_after_start() {
    let ws = Workspace::new();
    let data = data_dir();
    let port = free_port();
    let cfg = config(&ws, data.path(), port, "");
    let id = ccbackup(&cfg, &["run-now"])
        .expect_ok()
        .stdout()
        .trim()
        .to_owned();
    let old = backdate(&ws, &id, chrono::Duration::hours(3));

    let d = start(&cfg, port);
    let (before, code, v) = d.first_verdict();
    assert!(
        before.iter().all(|c| *c == 503),
        "ready while starting: {before:?}"
    );
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["ready"], false);
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.starts_with("job `j`: last success"), "{v}");
    assert!(reason.contains("older than max_age 3600 s"), "{v}");
    let t = ccbackup::repo::store::backup_id_time(&old).unwrap();
    assert_eq!(
        job_entry(&v)["last_success"],
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    // The same again after a restart: nothing is forgotten or forgiven.
    drop(d);
    let d = start(&cfg, port);
    assert_eq!(d.first_verdict().1, 503);
}

#[test]
fn a_fresh_backup_in_the_store_is_ready_right_after_start() {
    let ws = Workspace::new();
    let data = data_dir();
    let port = free_port();
    let cfg = config(&ws, data.path(), port, "");
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let d = start(&cfg, port);
    let (_, code, v) = d.first_verdict();
    assert_eq!(code, 200, "{v}");
    assert!(job_entry(&v)["reason"]
        .as_str()
        .unwrap()
        .starts_with("last success"));
}

#[test]
fn a_job_that_never_ran_is_ready_until_its_first_run_plus_max_age() {
    let ws = Workspace::new();
    let data = data_dir();
    let port = free_port();
    let cfg = config(&ws, data.path(), port, "");
    let d = start(&cfg, port);
    let (_, code, v) = d.first_verdict();
    assert_eq!(code, 200, "{v}");
    let j = job_entry(&v);
    assert_eq!(j["last_success"], serde_json::Value::Null);
    // The first run is next New Year, 03:00 UTC; it is overdue an hour on.
    let next = chrono::DateTime::parse_from_rfc3339(j["next_run"].as_str().unwrap()).unwrap();
    let deadline = (next + chrono::Duration::hours(1))
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        j["reason"],
        format!("no successful backup yet; overdue after {deadline}"),
        "{v}"
    );
}

#[test]
fn a_store_with_only_a_suspicious_old_attempt_is_not_ready_after_restart() {
    let ws = Workspace::new();
    let data = data_dir();
    let port = free_port();
    // One file, below the floor: the very first backup is suspicious.
    let cfg = config(&ws, data.path(), port, "    guard: {min_files: 2}\n");
    let run = ccbackup(&cfg, &["run-now"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let id = run.stdout().trim().to_owned();
    let old = backdate(&ws, &id, chrono::Duration::hours(2));

    let d = start(&cfg, port);
    let (_, code, v) = d.first_verdict();
    assert_eq!(code, 503, "{v}");
    let t = ccbackup::repo::store::backup_id_time(&old)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        job_entry(&v)["reason"],
        format!("no successful backup; the store shows a failed attempt (suspicious or incomplete backup) at {t}"),
        "{v}"
    );
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("ccbackup_last_backup_suspicious{job=\"j\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("ccbackup_last_success_timestamp_seconds{job=\"j\"}"));
}
