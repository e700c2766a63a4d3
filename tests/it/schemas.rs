//! Issue 23 item 7: one vocabulary for every output. The same fact has the
//! same name and type in `list --json`, `run-now --json`, `prune --json`,
//! webhooks and the log events; nulls are JSON nulls, lists are arrays, and
//! no Rust `Debug` text reaches an output.

use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// Runs ccbackup with JSON logs, as the daemon's container does.
fn ccbackup_json_logs(config: &std::path::Path, args: &[&str]) -> Run {
    let out = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(["--log-format", "json"])
        .args(args)
        .env_remove("CCBACKUP_CONFIG")
        .output()
        .expect("run ccbackup");
    Run { out }
}

/// The log events (JSON lines on stderr) with this message.
fn events(stderr: &str, message: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

/// A job backing up `dir`, with `retention` (YAML) if given; written as
/// `name` in the workspace.
fn files_job(
    ws: &Workspace,
    name: &str,
    dir: &std::path::Path,
    retention: Option<&str>,
) -> std::path::PathBuf {
    let retention = retention.map_or(String::new(), |r| format!("    retention: {r}\n"));
    let p = ws.path().join(name);
    std::fs::write(
        &p,
        format!(
            "store:\n  url: {}\njobs:\n  - name: etc\n{retention}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
            ws.store_url(),
            dir.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn regression_issue23_outputs_share_one_vocabulary() {
    let ws = Workspace::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("credentials.yml.enc"), b"enc").unwrap();
    let cfg = files_job(&ws, "config.yaml", dir.path(), None);

    let run = ccbackup_json_logs(&cfg, &["run-now", "--json"]);
    run.expect_ok();
    let report: Value = serde_json::from_str(run.stdout().trim()).unwrap();
    let id = report["backup_id"].as_str().unwrap().to_owned();

    // The log event carries the report's own values and types.
    let finished = events(&run.stderr(), "run finished");
    assert_eq!(finished.len(), 1, "{}", run.stderr());
    let f = &finished[0]["fields"];
    assert_eq!(f["error"], Value::Null, "{f}");
    assert_eq!(f["reasons"], serde_json::json!([]), "{f}");
    assert_eq!(f["copy_errors"], serde_json::json!([]), "{f}");
    for key in [
        "run_id",
        "job",
        "backup_id",
        "outcome",
        "started_at",
        "finished_at",
        "duration_seconds",
        "stored_bytes",
        "raw_bytes",
        "attempts",
        "deletions",
        "host",
        "kind",
    ] {
        assert_eq!(f[key], report[key], "{key}: {f} vs {report}");
    }
    // Milliseconds, not float noise.
    for d in [&report["duration_seconds"], &f["duration_seconds"]] {
        let ms = d.as_f64().unwrap() * 1000.0;
        assert!((ms - ms.round()).abs() < 1e-6, "{d}");
        assert!(
            d.to_string().split('.').nth(1).is_none_or(|x| x.len() <= 3),
            "{d}"
        );
    }

    // A second backup, so prune has one to remove.
    ccbackup(&cfg, &["run-now"]).expect_ok();

    // list --json: the run report's names for the same facts.
    let list = ccbackup(&cfg, &["list", "--json"]);
    list.expect_ok();
    let rows: Value = serde_json::from_str(&list.stdout()).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["backup_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no row with backup_id {id}: {rows}"));
    assert_eq!(row["job"], "etc");
    assert_eq!(row["started_at"], report["started_at"]);
    assert_eq!(row["stored_bytes"], report["stored_bytes"]);
    assert_eq!(row["raw_bytes"], report["raw_bytes"]);
    for old in ["id", "time", "size", "raw_size"] {
        assert!(row.get(old).is_none(), "old name `{old}` in {row}");
    }

    // prune --json rows, the same names again.
    let pruning = files_job(&ws, "prune.yaml", dir.path(), Some("{keep_last: 1}"));
    let prune = ccbackup(&pruning, &["prune", "--json"]);
    prune.expect_ok();
    let jobs: Value = serde_json::from_str(&prune.stdout()).unwrap();
    let entries = jobs[0]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{jobs}");
    let old = entries
        .iter()
        .find(|e| e["backup_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no entry with backup_id {id}: {jobs}"));
    assert_eq!(old["started_at"], report["started_at"]);
    assert_eq!(old["keep"], false);
    assert!(entries
        .iter()
        .all(|e| e.get("id").is_none() && e.get("time").is_none()));
}
