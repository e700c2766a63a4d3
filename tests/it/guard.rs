//! The shrink guard end to end with the real binary and a file:// store:
//! an emptied tree or a truncated table gives a backup that is kept but
//! marked suspicious, exits 1, is listed with its mark and never prunes;
//! the next run still compares with the last good backup; `--accept-shrink`
//! accepts the shrink once; thresholds come from the configuration.

use std::path::{Path, PathBuf};

use crate::support::*;

/// A `files` job `j` over `data`, with `extra` lines added to the job.
fn files_job(ws: &Workspace, data: &Path, extra: &str) -> PathBuf {
    ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n{extra}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.display()
    ))
}

fn fill(dir: &Path, n: usize) {
    for i in 0..n {
        std::fs::write(dir.join(format!("f{i}.txt")), format!("file number {i}\n")).unwrap();
    }
}

fn empty(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
}

fn manifest_of(ws: &Workspace, id: &str) -> serde_json::Value {
    let p = ws.store_dir().join("j").join(id).join("manifest.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"))).unwrap()
}

fn ids(ws: &Workspace) -> Vec<String> {
    let mut out: Vec<String> = ws
        .manifests()
        .iter()
        .map(|p| {
            let dir = p.parent().unwrap().file_name().unwrap();
            dir.to_string_lossy().into_owned()
        })
        .collect();
    out.sort();
    out
}

/// Backups taken within one second sort by their random suffix.
fn sorted<const N: usize>(ids: [&String; N]) -> Vec<String> {
    let mut v: Vec<String> = ids.into_iter().cloned().collect();
    v.sort();
    v
}

/// `run-now` with JSON logs: (run, the ID it printed, outcomes logged).
fn run_now(cfg: &Path, extra: &[&str]) -> (Run, String, Vec<String>) {
    let out = std::process::Command::new(bin())
        .args(["--log-format", "json", "--config"])
        .arg(cfg)
        .arg("run-now")
        .args(extra)
        .output()
        .unwrap();
    let run = Run { out };
    let outcomes = run
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fields"]["outcome"].as_str().map(str::to_owned))
        .collect();
    let id = run.stdout().trim().to_owned();
    (run, id, outcomes)
}

#[test]
fn an_emptied_tree_is_kept_marked_and_never_prunes_until_accepted() {
    let ws = Workspace::new();
    let data = tempfile::tempdir().unwrap();
    fill(data.path(), 5);
    let cfg = files_job(&ws, data.path(), "    retention: {keep_last: 1}\n");

    let (run, good, outcomes) = run_now(&cfg, &[]);
    run.expect_ok();
    assert_eq!(outcomes, ["success"]);
    assert!(manifest_of(&ws, &good).get("guard").is_none());

    // The volume is "unmounted": the tree is suddenly empty.
    empty(data.path());
    let (run, bad, outcomes) = run_now(&cfg, &[]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert_eq!(outcomes, ["suspicious"], "{}", run.stderr());
    let err = run.stderr();
    assert!(err.contains("SUSPICIOUS"), "{err}");
    assert!(
        err.contains("source `etc`: files dropped from 5 to 0, more than max_shrink 50%"),
        "{err}"
    );
    assert!(err.contains("--accept-shrink"), "{err}");
    // Kept and complete, marked, and the good backup survived keep_last 1.
    assert_eq!(ids(&ws), sorted([&good, &bad]));
    let reasons = manifest_of(&ws, &bad)["guard"]["suspicious"].clone();
    assert!(
        reasons[0]
            .as_str()
            .unwrap()
            .contains("files dropped from 5 to 0"),
        "{reasons}"
    );
    ccbackup(&cfg, &["verify", "--job", "j"]).expect_ok();

    let list = ccbackup(&cfg, &["list"]);
    list.expect_ok();
    let line = list
        .stdout()
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(bad.as_str()))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("SUSPICIOUS: source `etc`: files dropped"),
        "{line}"
    );
    assert!(!list
        .stdout()
        .lines()
        // The suspicious line names the good one as its baseline too.
        .find(|l| l.split_whitespace().nth(1) == Some(good.as_str()))
        .unwrap()
        .contains("SUSPICIOUS"));
    let json = ccbackup(&cfg, &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.expect_ok().stdout()).unwrap();
    let entry = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["backup_id"] == bad)
        .unwrap();
    assert_eq!(entry["suspicious"], reasons);
    assert_eq!(entry["status"], "complete");

    // Still empty: compared with the last good backup, not the suspicious
    // one, so it is suspicious again and still nothing is pruned.
    let (run, again, outcomes) = run_now(&cfg, &[]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert_eq!(outcomes, ["suspicious"]);
    assert_eq!(ids(&ws), sorted([&good, &bad, &again]));

    // The operator says the shrink is deliberate: the run counts as good
    // and retention runs (keep_last 1 leaves only it).
    let (run, accepted, outcomes) = run_now(&cfg, &["--accept-shrink"]);
    run.expect_ok();
    assert_eq!(outcomes, ["success"]);
    assert_eq!(ids(&ws), sorted([&accepted]));
    let m = manifest_of(&ws, &accepted);
    assert!(m["guard"].get("suspicious").is_none(), "{m}");
    assert!(
        m["guard"]["accepted"][0]
            .as_str()
            .unwrap()
            .contains("files dropped from 5 to 0"),
        "{m}"
    );
    // The accepted backup is the new baseline: empty again is normal.
    let (run, _, outcomes) = run_now(&cfg, &[]);
    run.expect_ok();
    assert_eq!(outcomes, ["success"]);
}

#[test]
fn a_truncated_table_is_suspicious_and_an_unchanged_database_is_not() {
    let db = TestDb::create(&unique("guard"));
    db.sql("CREATE TABLE racks (id int, name text); INSERT INTO racks SELECT g, 'rack ' || g FROM generate_series(1, 400) g; CREATE TABLE small (x int); INSERT INTO small VALUES (1), (2);");
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n{}",
        ws.store_url(),
        postgres_source("db", &[&db.name])
    ));
    run_now(&cfg, &[]).0.expect_ok();
    let (run, second, outcomes) = run_now(&cfg, &[]);
    run.expect_ok();
    assert_eq!(outcomes, ["success"]);
    assert!(manifest_of(&ws, &second).get("guard").is_none());

    db.sql("TRUNCATE racks");
    let (run, third, outcomes) = run_now(&cfg, &[]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert_eq!(outcomes, ["suspicious"]);
    let want = format!(
        "source `db`: rows of database \"{}\" dropped from 402 to 2",
        db.name
    );
    assert!(run.stderr().contains(&want), "{}", run.stderr());
    let reasons = &manifest_of(&ws, &third)["guard"]["suspicious"];
    assert!(reasons[0].as_str().unwrap().starts_with(&want), "{reasons}");
}

#[test]
fn thresholds_from_the_config_are_honoured() {
    let ws = Workspace::new();
    let data = tempfile::tempdir().unwrap();
    fill(data.path(), 10);
    // A stricter job limit, and a floor the first backup already meets.
    let cfg = files_job(
        &ws,
        data.path(),
        "    guard: {max_shrink: 10%, min_files: 8}\n",
    );
    run_now(&cfg, &[]).0.expect_ok();
    // 20% fewer files: normal by default, suspicious under 10%.
    std::fs::remove_file(data.path().join("f0.txt")).unwrap();
    std::fs::remove_file(data.path().join("f1.txt")).unwrap();
    let (run, _, outcomes) = run_now(&cfg, &[]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert_eq!(outcomes, ["suspicious"]);
    assert!(
        run.stderr()
            .contains("files dropped from 10 to 8 (-20%), more than max_shrink 10%"),
        "{}",
        run.stderr()
    );

    // A source's own guard overrides the job's; the floor applies to a
    // first backup too (a fresh store, nothing to compare with).
    let ws2 = Workspace::new();
    let cfg2 = ws2.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    guard: {{max_shrink: 10%}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n        guard: {{min_files: 9, min_bytes: 1MiB}}\n",
        ws2.store_url(),
        data.path().display()
    ));
    let (run, first, outcomes) = run_now(&cfg2, &[]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert_eq!(outcomes, ["suspicious"]);
    let reasons = manifest_of(&ws2, &first)["guard"]["suspicious"].clone();
    assert_eq!(
        reasons[0], "source `etc`: files is 8, below min_files 9",
        "{reasons}"
    );
    assert!(
        reasons[1]
            .as_str()
            .unwrap()
            .ends_with("below min_bytes 1048576"),
        "{reasons}"
    );
}

#[test]
fn bad_guard_values_are_config_errors_naming_file_line_and_key() {
    let ws = Workspace::new();
    let data = tempfile::tempdir().unwrap();
    let cfg = files_job(
        &ws,
        data.path(),
        "    guard:\n      max_shrink: 150%\n      min_files: -3\n      min_bytes: plenty\n",
    );
    let run = ccbackup(&cfg, &["run-now"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let err = run.stderr();
    let file = cfg.display().to_string();
    for (line, key) in [
        (6, "jobs[0].guard.max_shrink"),
        (7, "jobs[0].guard.min_files"),
        (8, "jobs[0].guard.min_bytes"),
    ] {
        assert!(err.contains(&format!("{file}:{line}:")), "{err}");
        assert!(err.contains(key), "{err}");
    }
    assert!(ws.manifests().is_empty());
}

/// The daemon's runs go through the same guard: a suspicious run is
/// counted as such, leaves the last good backup as the last success, and
/// never prunes. On paused time: the every-second runs take none.
#[tokio::test(start_paused = true)]
async fn the_daemon_counts_suspicious_runs_and_never_prunes_after_them() {
    use ccbackup::daemon::{self, metrics::Metrics, Options};
    use std::sync::Arc;
    use std::time::Duration;

    let ws = Workspace::new();
    let data = tempfile::tempdir().unwrap();
    fill(data.path(), 4);
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ndaemon: {{shutdown_grace: 5s}}\njobs:\n  - name: j\n    schedule: \"* * * * * *\"\n    retention: {{keep_last: 1}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.path().display()
    ));
    let good = run_now(&cfg, &[]).0.expect_ok().stdout().trim().to_owned();
    empty(data.path());

    let clock = ccbackup::clock::Clock::following_tokio(chrono::Utc::now());
    let metrics = Arc::new(Metrics::with_clock(clock.clone()));
    let stop = tokio_util::sync::CancellationToken::new();
    let opts = Options {
        listen: Some("127.0.0.1:0".to_owned()),
        metrics: Some(metrics.clone()),
        clock,
        ..Default::default()
    };
    let task = tokio::spawn(daemon::run(
        ccbackup::config::load(&cfg).unwrap(),
        opts,
        stop.clone(),
    ));
    wait_until_async(
        "two suspicious runs",
        Duration::from_secs(20),
        || match metrics.get("j") {
            Some(s) if s.runs.get("suspicious").copied().unwrap_or(0) >= 2 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();

    let s = metrics.get("j").unwrap();
    assert_eq!(s.runs.get("success").copied().unwrap_or(0), 0, "{s:?}");
    assert_eq!(s.last_outcome, Some("suspicious"));
    assert_eq!(s.last_backup_suspicious, Some(true));
    assert_eq!(s.retention_deletions, 0);
    assert!(s
        .last_error
        .as_deref()
        .unwrap()
        .contains("files dropped from 4 to 0"));
    let good_time = ccbackup::repo::store::backup_id_time(&good).unwrap();
    assert_eq!(
        s.last_success.map(|t| t.timestamp()),
        Some(good_time.timestamp())
    );
    assert!(ids(&ws).contains(&good), "{:?}", ids(&ws));
    assert!(metrics
        .render()
        .contains("ccbackup_runs_total{job=\"j\",outcome=\"suspicious\"}"));
}
