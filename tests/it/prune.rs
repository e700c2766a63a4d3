//! `prune` and `policy simulate` end to end against a real file:// store,
//! with interrupted backups present.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::*;

fn config(ws: &Workspace, data: &Path, retention: &str, extra: &str) -> PathBuf {
    ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: job\n    retention: {retention}\n{extra}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.display()
    ))
}

fn backup_ids(ws: &Workspace) -> Vec<String> {
    let mut ids: Vec<String> = ws
        .manifests()
        .iter()
        .map(|m| {
            m.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    ids.sort();
    ids
}

/// Moves a backup back in time: a backup's time is in its ID (the manifest
/// must agree with the directory it sits in), so the directory moves to the
/// ID of the new time and the manifest follows. Returns the new ID.
fn backdate(ws: &Workspace, id: &str, time: &str) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(time).unwrap();
    let new_id = format!("{}-{}", t.format("%Y%m%dT%H%M%SZ"), &id[17..]);
    let old_dir = ws.store_dir().join("job").join(id);
    let new_dir = ws.store_dir().join("job").join(&new_id);
    std::fs::rename(&old_dir, &new_dir).unwrap();
    let p = new_dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    m["started_at"] = serde_json::json!(time);
    m["id"] = serde_json::json!(new_id);
    std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
    new_id
}

/// A backup directory with data but no manifest, as a crashed run leaves.
fn leftover(ws: &Workspace, id: &str, age: &str) -> PathBuf {
    let dir = ws.store_dir().join("job").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("etc.tar.zst");
    std::fs::write(&f, b"partial").unwrap();
    let ok = Command::new("touch")
        .args(["-d", age])
        .arg(&f)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    dir
}

fn make_backups(cfg: &Path, n: usize) {
    for _ in 0..n {
        ccbackup(cfg, &["run-now"]).expect_ok();
    }
}

/// `n` backups of `data` taken by a job with no retention (so none is
/// pruned while the history is built); returns their IDs, sorted.
fn history(ws: &Workspace, data: &Path, n: usize) -> Vec<String> {
    let build = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: job\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.display()
    ));
    make_backups(&build, n);
    backup_ids(ws)
}

/// Runs `policy simulate ARGS POLICY` with `input` on stdin.
fn simulate(policy: &Path, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(["policy", "simulate"])
        .args(args)
        .arg(policy)
        .env("CCBACKUP_CONFIG", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn prune_follows_the_policy_and_sweeps_only_old_leftovers() {
    let ws = Workspace::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), b"data").unwrap();
    let ids = history(&ws, data.path(), 5);
    assert_eq!(ids.len(), 5);
    // Five backups on five different days, oldest first.
    let ids: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| backdate(&ws, id, &format!("2026-03-{:02}T02:00:00Z", 10 + i)))
        .collect();
    let old = leftover(&ws, "20260101T000000Z-aaaaaa", "3 days ago");
    let young = leftover(&ws, "20260101T000001Z-bbbbbb", "1 hour ago");

    let cfg = config(&ws, data.path(), "{keep_daily: 3}", "");
    let dry = ccbackup(&cfg, &["prune", "--dry-run", "--json"]);
    dry.expect_ok();
    let v: serde_json::Value = serde_json::from_str(&dry.stdout()).unwrap();
    let entries = v[0]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    let kept: Vec<&str> = entries
        .iter()
        .filter(|e| e["keep"] == true)
        .map(|e| e["backup_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept,
        vec![ids[4].as_str(), ids[3].as_str(), ids[2].as_str()]
    );
    assert!(entries
        .iter()
        .filter(|e| e["keep"] == true)
        .all(|e| e["reasons"] == serde_json::json!(["daily"])));
    assert_eq!(
        v[0]["sweep"],
        serde_json::json!(["20260101T000000Z-aaaaaa"])
    );
    assert_eq!(
        v[0]["young_leftovers"],
        serde_json::json!(["20260101T000001Z-bbbbbb"])
    );
    // The dry run deleted nothing.
    assert_eq!(backup_ids(&ws).len(), 5);
    assert!(old.exists() && young.exists());

    let run = ccbackup(&cfg, &["prune"]);
    run.expect_ok();
    assert_eq!(backup_ids(&ws), ids[2..].to_vec());
    for id in &ids[..2] {
        assert!(
            !ws.store_dir().join("job").join(id).exists(),
            "data of {id} left behind"
        );
    }
    assert!(!old.exists(), "old leftover not swept");
    assert!(
        young.exists(),
        "young leftover (maybe a running backup) was deleted"
    );
}

#[test]
fn prune_refuses_more_than_max_deletions() {
    let ws = Workspace::new();
    let data = tempfile::tempdir().unwrap();
    history(&ws, data.path(), 4);
    let cfg = config(&ws, data.path(), "{keep_last: 1}", "    max_deletions: 2\n");
    let run = ccbackup(&cfg, &["prune"]);
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr().contains("more than max_deletions (2)"),
        "{}",
        run.stderr()
    );
    assert_eq!(backup_ids(&ws).len(), 4);
}

#[test]
fn run_now_prunes_after_success_and_never_after_failure() {
    let ws = Workspace::new();
    let data = tempfile::tempdir().unwrap();
    let cfg = config(&ws, data.path(), "{keep_last: 2}", "");
    make_backups(&cfg, 4);
    assert_eq!(
        backup_ids(&ws).len(),
        2,
        "run-now should prune to keep_last 2"
    );
    let kept = backup_ids(&ws);

    // Same job, now with a source that fails: nothing may be pruned.
    let failing = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: job\n    retention: {{keep_last: 1}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n      - name: db\n        postgres: {{host: 127.0.0.1, port: 1, databases: [x]}}\n",
        ws.store_url(),
        data.path().display()
    ));
    let run = ccbackup(&failing, &["run-now"]);
    assert_eq!(run.code(), Some(1));
    assert_eq!(backup_ids(&ws), kept, "a failed run pruned");
}

#[test]
fn policy_simulate_prints_plan_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, "keep_daily: 2\nkeep_weekly: 1\n").unwrap();
    let input = "2026-03-02T10:00:00Z\n2026-03-03T10:00:00Z\n2026-03-03T09:00:00Z\n2026-03-01T10:00:00+01:00\n";
    let out = simulate(&policy, &["--json"], input.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<(String, String, bool, Vec<String>)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                format!("line {}", e["line"].as_u64().unwrap()),
                e["started_at"].as_str().unwrap().to_owned(),
                e["keep"].as_bool().unwrap(),
                e["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    let s = |x: &str| x.to_owned();
    assert_eq!(
        got,
        vec![
            (
                s("line 2"),
                s("2026-03-03T10:00:00Z"),
                true,
                vec![s("daily"), s("weekly")]
            ),
            (s("line 3"), s("2026-03-03T09:00:00Z"), false, vec![]),
            (
                s("line 1"),
                s("2026-03-02T10:00:00Z"),
                true,
                vec![s("daily")]
            ),
            // Sunday 1 March: both budgets are already spent.
            (s("line 4"), s("2026-03-01T09:00:00Z"), false, vec![]),
        ]
    );
    // A `prune --json` entry's fields, with the input line for the backup.
    for e in v.as_array().unwrap() {
        let mut keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["keep", "line", "reasons", "started_at"]);
    }

    // A bad time is a clear error naming the line.
    let out = simulate(&policy, &[], b"2026-03-02T10:00:00Z\nyesterday\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin line 2"));
}

/// Two backups within one second stay apart: times come out as precise as
/// they went in, in the table and in JSON.
#[test]
fn policy_simulate_keeps_sub_second_times() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, "keep_last: 1\n").unwrap();
    let input = "2026-03-02T10:00:00.250Z\n2026-03-02T10:00:00.750Z\n2026-03-02T09:00:00Z\n";
    let out = simulate(&policy, &["--json"], input.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let times: Vec<(&str, bool)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["started_at"].as_str().unwrap(),
                e["keep"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        times,
        [
            ("2026-03-02T10:00:00.750Z", true),
            ("2026-03-02T10:00:00.250Z", false),
            ("2026-03-02T09:00:00Z", false),
        ]
    );

    let out = simulate(&policy, &[], input.as_bytes());
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = table.lines().skip(1).take(3).collect();
    assert!(
        rows[0].starts_with("2026-03-02T10:00:00.750Z")
            && rows[0].contains("line 2")
            && rows[0].contains("keep"),
        "{table}"
    );
    assert!(
        rows[1].starts_with("2026-03-02T10:00:00.250Z") && rows[1].contains("remove"),
        "{table}"
    );
}

mod failing_deletes {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::support_store::{denied, FaultyStore, Op};

    fn setup(
        pattern: &str,
    ) -> (
        Workspace,
        ccbackup::config::Config,
        ccbackup::repo::store::Repo,
        Vec<String>,
        Arc<AtomicUsize>,
    ) {
        let ws = Workspace::new();
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("f"), b"data").unwrap();
        let ids = history(&ws, data.path(), 3);
        // Runs within one second get IDs in random order: give them distinct
        // times in ID order so "the newest" is well defined.
        let ids: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| backdate(&ws, id, &format!("2026-03-{:02}T02:00:00Z", 10 + i)))
            .collect();
        let cfg = config(&ws, data.path(), "{keep_last: 1}", "");
        let cfg = ccbackup::config::load(&cfg).unwrap();
        let mut repo = ccbackup::repo::store::open(&cfg.store).unwrap();
        let refused = Arc::new(AtomicUsize::new(0));
        // Refuses to delete any key containing `pattern` (permission
        // denied, counting the refusals); everything else reaches the store.
        let (pattern, count) = (pattern.to_owned(), refused.clone());
        repo.store = Arc::new(FaultyStore::new(repo.store.clone(), move |op, p, _| {
            if op == Op::Delete && p.as_ref().contains(pattern.as_str()) {
                count.fetch_add(1, Ordering::SeqCst);
                return Err(denied(p, "access denied"));
            }
            Ok(())
        }));
        (ws, cfg, repo, ids, refused)
    }

    #[tokio::test]
    async fn a_manifest_that_cannot_be_deleted_keeps_its_data() {
        let (ws, cfg, repo, ids, refused) = setup("manifest.json");
        let d = ccbackup::retention::prune::plan_job(&repo, &cfg.jobs[0])
            .await
            .unwrap();
        assert_eq!(d.removed_ids(), ids[..2].to_vec());
        let err = ccbackup::retention::prune::apply(&repo, &d)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("deletion(s) failed"), "{err}");
        // Permission denied is permanent: one call per manifest, no retries.
        assert_eq!(refused.load(Ordering::SeqCst), 2);
        // Still complete: manifest and data both there.
        assert_eq!(backup_ids(&ws), ids);
        for id in &ids {
            assert!(ws
                .store_dir()
                .join("job")
                .join(id)
                .join("etc.tar.zst")
                .exists());
        }
    }

    #[tokio::test]
    async fn data_that_cannot_be_deleted_is_left_unreachable_never_half_listed() {
        let (ws, cfg, repo, ids, _) = setup("etc.tar.zst");
        let d = ccbackup::retention::prune::plan_job(&repo, &cfg.jobs[0])
            .await
            .unwrap();
        let err = ccbackup::retention::prune::apply(&repo, &d)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("etc.tar.zst"), "{err}");
        // The manifests went first: the two pruned backups no longer exist,
        // their data is a leftover for the sweep, not a broken backup.
        assert_eq!(backup_ids(&ws), ids[2..].to_vec());
        let cat = ccbackup::repo::catalog::load(&repo, Some("job"))
            .await
            .unwrap();
        assert_eq!(cat.complete.len(), 1);
        let mut leftovers: Vec<String> = cat.incomplete.iter().map(|i| i.id.clone()).collect();
        leftovers.sort();
        assert_eq!(leftovers, ids[..2].to_vec());
    }
}
