//! The daemon checks a versioned store's history after its drills (and
//! runs): an attacker's delete of a backup the policy keeps shows up in
//! `ccbackup_store_tampered_backups`, fails `/readyz` and sends one `fail`
//! notification naming the backup and the `--as-of` time.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::drills::hook;
use crate::support::*;
use crate::support_attacker::*;
use crate::support_s3::*;

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
        let log = dir.join("daemon.log");
        let child = ccbackup_cmd(
            cfg,
            &["daemon", "--listen", &format!("127.0.0.1:{port}")],
            &[],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
        Daemon { child, port, log }
    }

    /// Polls `/metrics` (bounded) until it holds `line`.
    fn wait_metric(&self, line: &str) -> String {
        wait_until(
            &format!("`{line}` in /metrics"),
            Duration::from_secs(60),
            || {
                let m = http_get(self.port, "/metrics")
                    .map(|x| x.1)
                    .unwrap_or_default();
                if m.contains(line) {
                    Ok(m)
                } else {
                    Err(format!(
                        "/metrics:\n{m}\nlog:\n{}",
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    ))
                }
            },
        )
    }
}

#[test]
fn the_daemon_counts_alerts_and_notifies_tampering_after_its_drills() {
    let server = start_moto(false);
    lock_bucket(&server, "ccb-watch");
    let ws = Workspace::new();
    let keys = ws.path().join("keys");
    keys_generate(&keys);
    let data = ws.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f.txt"), "x\n").unwrap();
    let (url, bodies) = hook();
    let config_text = |daemon: &str| {
        format!(
        "{}{daemon}signing:\n  secret_key_file: {}\nnotify:\n  webhooks: [\"{url}\"]\njobs:\n  - name: j\n    schedule: \"0 3 1 1 *\"\n    run_at_start: never\n    retention: {{keep_last: 3}}\n    verify: {{schedule: \"* * * * * *\", restore_test: false}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        store_yaml(&server, "ccb-watch", "site"),
        keys.join("minisign.key").display(),
        data.display()
    )
    };
    let cfg = ws.config(&config_text(""));
    let mut ids = Vec::new();
    for _ in 0..2 {
        boundary();
        let run = ccbackup_env(&cfg, &["run-now"], &[]);
        run.expect_ok();
        ids.push(run.stdout().trim().to_owned());
    }
    let d = Daemon::start(&cfg, ws.path());
    d.wait_metric("ccbackup_store_tampered_backups{job=\"j\"} 0");
    assert_eq!(http_get(d.port, "/readyz").unwrap().0, 200);

    // The attacker deletes the newest backup's manifest.
    let attacker = attacker_repo(&server, "ccb-watch", "site");
    block_on(async {
        use object_store::ObjectStoreExt;
        attacker
            .store
            .delete(&ccbackup::repo::store::manifest_path("j", &ids[1]))
            .await
            .unwrap();
    });
    d.wait_metric("ccbackup_store_tampered_backups{job=\"j\"} 1");
    let (status, body) = http_get(d.port, "/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("TAMPERING") && body.contains(&ids[1]),
        "{body}"
    );

    page_names_the_deleted_backup(d.port, &ids[1]);

    let note = bodies
        .recv_timeout(Duration::from_secs(30))
        .expect("a tamper notification");
    let v: serde_json::Value = serde_json::from_str(&note).unwrap();
    assert_eq!(v["kind"], "tamper", "{v}");
    assert_eq!(v["outcome"], "failure", "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains(&ids[1]) && error.contains("list --as-of 20"),
        "{error}"
    );
    crate::schemas::assert_valid("run-report.json", &v);
    // Later checks find the same backup: no second notification.
    let later = Instant::now() + Duration::from_secs(3);
    while Instant::now() < later {
        assert!(
            bodies.try_recv().is_err(),
            "notified twice for the same tampering"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Handled: acknowledged up to now, the daemon counts it no more and is
    // ready again after a reload (list still shows the history).
    let ack = rfc3339(chrono::Utc::now());
    ws.config(&config_text(&format!(
        "daemon:\n  tampering_acknowledged: {ack}\n"
    )));
    // SAFETY: kill(2) on the daemon this test started.
    unsafe {
        libc::kill(d.child.id() as i32, libc::SIGHUP);
    }
    d.wait_metric("ccbackup_store_tampered_backups{job=\"j\"} 0");
    assert_eq!(http_get(d.port, "/readyz").unwrap().0, 200);
    assert!(
        bodies.try_recv().is_err(),
        "notified after the acknowledgement"
    );
}

#[test]
fn a_bad_acknowledgement_time_names_line_and_key() {
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ndaemon:\n  tampering_acknowledged: after lunch\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: /tmp}}\n",
        ws.store_url()
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let needle = format!("{}:4:", cfg.display());
    assert!(
        run.stderr().lines().any(|l| l.contains(&needle)
            && l.contains("daemon.tampering_acknowledged")
            && l.contains("RFC 3339")),
        "{}",
        run.stderr()
    );
}

/// The status page and `/status.json` show the deleted backup, the time to
/// pass to `--as-of` and the restore command that uses it, from the
/// daemon's last tamper check; the page as a real browser renders it.
fn page_names_the_deleted_backup(port: u16, id: &str) {
    let (status, body) = http_get(port, "/status.json").unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    crate::schemas::assert_valid("status.json", &v);
    let job = &v["jobs"][0];
    assert_eq!(job["ready"], false, "{job:#}");
    assert_eq!(job["tampering"]["tampered_backups"], 1, "{job:#}");
    let as_of = job["tampering"]["recover_as_of"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = job["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backup_id"] == id)
        .unwrap_or_else(|| panic!("no row for {id}: {job:#}"));
    assert_eq!(row["status"], "deleted", "{row:#}");
    assert_eq!(row["recover_as_of"], as_of.as_str(), "{row:#}");
    let cmd = row["restore_command"].as_str().unwrap();
    assert!(
        cmd.contains(&format!("restore --as-of {as_of} --job j --backup {id}")),
        "{cmd}"
    );

    let profile = crate::status_page::chromium_dir();
    let url = format!("http://127.0.0.1:{port}/");
    let out = crate::status_page::chromium(profile.path(), &["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "TAMPERING: 1 backup deleted or rewritten".to_owned(),
        format!("ccbackup list --as-of {as_of}"),
        ">deleted<".to_owned(),
        "DELETED at ".to_owned(),
        format!("recoverable with --as-of {as_of}"),
        format!("<span>--as-of</span> <span>{as_of}</span> <span>--job</span> <span>j</span> <span>--backup</span> <span>{id}</span>"),
    ] {
        assert!(dom.contains(&want), "no {want:?} in the page:\n{dom}");
    }
}
