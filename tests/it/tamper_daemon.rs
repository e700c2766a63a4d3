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
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let m = http_get(self.port, "/metrics")
                .map(|x| x.1)
                .unwrap_or_default();
            if m.contains(line) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no `{line}` in /metrics:\n{m}\nlog:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
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
