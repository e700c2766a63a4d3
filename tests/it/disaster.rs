//! Disaster day (issue 23): commands that read backups start when the
//! sources are gone; what reads a source fails that source, clearly.

use serde_json::Value;

use crate::support::*;

/// A job backing up `etc` (a plain directory) and `rrd`, both of which the
/// test may delete.
fn two_dirs(ws: &Workspace) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let etc = ws.path().join("etc");
    let rrd = ws.path().join("rrd");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&rrd).unwrap();
    std::fs::write(etc.join("credentials.yml.enc"), "x").unwrap();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n      - name: rrd\n        rrd: {{path: {}}}\n",
        ws.store_url(),
        etc.display(),
        rrd.display()
    ));
    (cfg, etc, rrd)
}

#[test]
fn regression_issue23_check_config_warns_about_missing_paths_and_passes() {
    let ws = Workspace::new();
    let (cfg, etc, rrd) = two_dirs(&ws);
    std::fs::remove_dir_all(&etc).unwrap();
    std::fs::remove_dir_all(&rrd).unwrap();
    let run = ccbackup(&cfg, &["check-config"]);
    run.expect_ok();
    let out = run.stdout();
    // Each warning names file, line and key, and the path.
    let cfg_s = cfg.display().to_string();
    for (key, path) in [
        ("jobs[0].sources[0].files.path", &etc),
        ("jobs[0].sources[1].rrd.path", &rrd),
    ] {
        assert!(
            out.lines().any(|l| l.starts_with("warning: ")
                && l.contains(&format!("{cfg_s}:"))
                && l.contains(key)
                && l.contains(&path.display().to_string())),
            "no warning for {key}: {out}"
        );
    }
    assert!(out.contains(": ok (1 job)"), "{out}");
}

#[test]
fn regression_issue23_run_now_fails_the_missing_source_naming_it() {
    let ws = Workspace::new();
    let (cfg, etc, _rrd) = two_dirs(&ws);
    std::fs::remove_dir_all(&etc).unwrap();
    let run = ccbackup(&cfg, &["run-now", "--json"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let r: Value = serde_json::from_str(run.stdout().trim()).unwrap();
    assert_eq!(r["outcome"], "failure", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("etc") && error.contains(&etc.display().to_string()),
        "{error}"
    );
    assert!(error.contains("does not exist"), "{error}");
    assert!(
        ws.manifests().is_empty(),
        "a failed backup wrote a manifest"
    );
}

/// `list`, `verify` and `restore` start with every source path gone, and
/// restore creates the destination.
#[test]
fn regression_issue23_reading_commands_start_without_source_paths() {
    let ws = Workspace::new();
    let (cfg, etc, rrd) = two_dirs(&ws);
    ccbackup(&cfg, &["run-now"]).expect_ok();
    std::fs::remove_dir_all(&etc).unwrap();
    std::fs::remove_dir_all(&rrd).unwrap();
    ccbackup(&cfg, &["list"]).expect_ok();
    ccbackup(&cfg, &["verify"]).expect_ok();
    ccbackup(&cfg, &["restore", "--dry-run"]).expect_ok();
    ccbackup(&cfg, &["restore", "--source", "etc"]).expect_ok();
    assert_eq!(
        std::fs::read_to_string(etc.join("credentials.yml.enc")).unwrap(),
        "x"
    );
}
