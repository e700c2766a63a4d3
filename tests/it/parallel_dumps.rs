//! Issue 20 item 2: `postgres.parallel: N` dumps up to N databases at once,
//! and the manifest keeps discovery's order whatever order they finish in.
//!
//! The first database has a table locked by another session, so its
//! `pg_dump` waits. With two dumps at once the other databases are dumped
//! and stored meanwhile; one after another they would wait behind it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn stored_artifact(ws: &Workspace, db: &str) -> bool {
    let suffix = format!("-{db}.dump.zst");
    ws.stored_files()
        .iter()
        .any(|p| p.to_string_lossy().ends_with(&suffix))
}

#[test]
fn issue20_parallel_dumps_overlap_and_keep_the_manifest_order() {
    let dbs: Vec<TestDb> = ["blocked", "second", "third"]
        .iter()
        .map(|n| TestDb::create(&unique(&format!("par_{n}"))))
        .collect();
    for (i, db) in dbs.iter().enumerate() {
        db.sql(&format!(
            "CREATE TABLE big AS SELECT g, md5(g::text) FROM generate_series(1, {}) g",
            1000 * (i + 1)
        ));
    }
    let names: Vec<&str> = dbs.iter().map(|d| d.name.as_str()).collect();
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n{}          globals: false\n          parallel: 2\n",
        ws.store_url(),
        postgres_source("db", &names)
    ));

    // A session holding the first database's table until told to commit.
    let mut locker = Command::new("psql")
        .args(["-X", "-q", "-h", PG_HOST, "-U", "postgres", "-d", names[0]])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut hold = locker.stdin.take().unwrap();
    writeln!(hold, "BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE;").unwrap();
    hold.flush().unwrap();
    wait_for_table_lock(names[0], "big");

    let run = Command::new(bin())
        .args(["--log-format", "text", "--config"])
        .arg(&cfg)
        .arg("run-now")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // While the first dump waits for the lock, the other two complete.
    wait_until(
        "the other databases to be dumped while the first one waits",
        Duration::from_secs(60),
        || {
            if stored_artifact(&ws, names[1]) && stored_artifact(&ws, names[2]) {
                Ok(())
            } else {
                Err(format!("{:?}", ws.stored_files()))
            }
        },
    );
    assert!(!stored_artifact(&ws, names[0]), "the blocked dump finished");
    assert!(
        ws.manifests().is_empty(),
        "manifest before the blocked dump ended"
    );

    writeln!(hold, "COMMIT;").unwrap();
    drop(hold);
    let out = run.wait_with_output().unwrap();
    let _ = locker.wait();
    let run = Run { out };
    run.expect_ok();

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ws.manifests()[0]).unwrap()).unwrap();
    let keys: Vec<String> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("db/{:02}-{n}.dump.zst", i + 1))
        .collect();
    assert_eq!(keys, expected);

    // Each artifact is its own database's dump, whole.
    let target = TestDb::create(&unique("par_restored"));
    ccbackup(
        &cfg,
        &[
            "restore",
            "--source",
            "db",
            "--database",
            names[2],
            "--target-db",
            &target.name,
        ],
    )
    .expect_ok();
    assert_eq!(target.sql("SELECT count(*) FROM big"), "3000");
}
