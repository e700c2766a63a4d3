//! Issue 24 item 2: a `file://` store keeps no leftovers of a run killed
//! mid-upload. `kill -9` of a real `run-now` while its RRD source waits on
//! a file a writer holds locked leaves object_store's staging file
//! (`<key>#<n>`) and the backup's directory; `prune` removes both once
//! they are older than `orphan_grace`, and not before.

use std::time::Duration;

use crate::support::*;
use crate::support_rrd;

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.clone());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn issue24_staging_files_and_empty_dirs_of_a_killed_run_are_swept_after_the_grace() {
    support_rrd::require_rrdtool();
    let ws = Workspace::new();
    let rrd = ws.path().join("rrds");
    std::fs::create_dir_all(&rrd).unwrap();
    let file = rrd.join("load.rrd");
    support_rrd::create(&file, &["sum"]);
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    retention: {{keep_last: 1}}\n    orphan_grace: 8s\n    sources:\n      - name: rrd\n        rrd: {{path: {}, lock_timeout_ms: 600000}}\n",
        ws.store_url(),
        rrd.display()
    ));
    // A writer holds the file: the run waits for it with its upload open.
    let held = support_rrd::lock_file(&file, libc::F_OFD_SETLK, libc::F_WRLCK);
    let mut run = std::process::Command::new(bin())
        .args(["--log-format", "text", "--config"])
        .arg(&cfg)
        .arg("run-now")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let job_dir = ws.store_dir().join("j");
    let staging = wait_until("a staging file", Duration::from_secs(30), || {
        if !job_dir.exists() {
            return None;
        }
        files_under(&job_dir)
            .into_iter()
            .find(|p| p.to_string_lossy().contains('#'))
    });
    run.kill().unwrap(); // SIGKILL: no cleanup at all
    run.wait().unwrap();
    drop(held);
    assert!(staging.exists());

    // Younger than orphan_grace: it may be a running upload, so it stays.
    ccbackup(&cfg, &["prune"]).expect_ok();
    assert!(staging.exists(), "swept inside the grace period");

    // Past the grace period (8s): age what the killed run left by an hour
    // instead of waiting; the sweep judges by modification time only.
    let aged = std::process::Command::new("find")
        .arg(&job_dir)
        .args([
            "-mindepth",
            "1",
            "-exec",
            "touch",
            "-h",
            "-d",
            "1 hour ago",
            "{}",
            "+",
        ])
        .status()
        .unwrap();
    assert!(aged.success());
    // Then the staging file and the empty directories go.
    let prune = ccbackup(&cfg, &["prune"]);
    prune.expect_ok();
    let left = files_under(&job_dir);
    assert!(
        left.is_empty(),
        "left in the store: {left:?}\n{}",
        prune.stderr()
    );
    assert!(job_dir.exists());
}
