//! Issue 20 item 3: `restore --jobs N` decodes the dump while it downloads
//! and checks it, straight into staging, so `pg_restore -j` starts the
//! moment the file is whole. The guarantees stay: a corrupt artifact, a
//! dump that decodes to another size than its manifest records, or a wrong
//! identity leaves no target database and nothing in staging.

use std::path::{Path, PathBuf};

use crate::restore::dump_sql;
use crate::support::*;

struct Site {
    ws: Workspace,
    cfg: PathBuf,
    db: TestDb,
}

fn site() -> Site {
    let db = TestDb::create(&unique("jobs_src"));
    fill_mixed(&db);
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n{}          globals: false\n",
        ws.store_url(),
        postgres_source("db", &[&db.name])
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    Site { ws, cfg, db }
}

fn dump_artifact(ws: &Workspace) -> PathBuf {
    ws.stored_files()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".dump.zst"))
        .expect("a dump artifact")
}

fn exists(db: &str) -> bool {
    psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
    ) == "1"
}

/// Restores with `--jobs 2` and a staging directory of the test's own, so
/// what is left there can be checked.
fn restore_jobs(s: &Site, target: &str, staging: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "restore",
        "--source",
        "db",
        "--target-db",
        target,
        "--jobs",
        "2",
        "--staging-dir",
        staging.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ccbackup(&s.cfg, &args)
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn issue20_jobs_restore_is_identical_and_leaves_staging_empty() {
    let s = site();
    let target = unique("jobs_ok");
    let staging = tempfile::tempdir().unwrap();
    restore_jobs(&s, &target, staging.path(), &[]).expect_ok();
    assert_eq!(dump_sql(&s.db.name), dump_sql(&target));
    assert!(empty(staging.path()));
    psql(
        "postgres",
        &format!("DROP DATABASE \"{target}\" WITH (FORCE)"),
    );
}

#[test]
fn issue20_a_corrupt_dump_is_refused_before_the_target_exists() {
    let s = site();
    let art = dump_artifact(&s.ws);
    let mut bytes = std::fs::read(&art).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&art, &bytes).unwrap();
    let target = unique("jobs_corrupt");
    let staging = tempfile::tempdir().unwrap();
    let run = restore_jobs(&s, &target, staging.path(), &[]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(run.stderr().contains("corrupt"), "{}", run.stderr());
    assert!(!exists(&target));
    assert!(empty(staging.path()));
}

#[test]
fn issue20_a_dump_longer_or_shorter_than_its_manifest_says_is_refused() {
    // The manifest (unsigned store) records another raw size than the dump
    // decodes to: a bomb, or a lie; either way nothing is applied.
    for (scale, says) in [
        ((1, 2), "decompresses to more than"),
        ((2, 1), "bytes where its manifest records"),
    ] {
        let s = site();
        let mpath = s.ws.manifests()[0].clone();
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
        for a in m["artifacts"].as_array_mut().unwrap() {
            if a["key"].as_str().unwrap().ends_with(".dump.zst") {
                let raw = a["raw_bytes"].as_u64().unwrap();
                a["raw_bytes"] = serde_json::json!(raw * scale.0 / scale.1);
            }
        }
        std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        let target = unique("jobs_lie");
        let staging = tempfile::tempdir().unwrap();
        let run = restore_jobs(&s, &target, staging.path(), &[]);
        assert_eq!(run.code(), Some(1), "{}", run.stderr());
        assert!(run.stderr().contains(says), "{says}: {}", run.stderr());
        assert!(!exists(&target));
        assert!(empty(staging.path()));
    }
}
