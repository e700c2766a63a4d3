//! `ccbackup run-now` and `list` end to end against the real server and a
//! file:// store, including the ways a backup must fail.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn job_config(ws: &Workspace, sources: &str) -> std::path::PathBuf {
    ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: nightly\n    sources:\n{sources}",
        ws.store_url()
    ))
}

fn read_manifest(ws: &Workspace) -> serde_json::Value {
    let m = ws.manifests();
    assert_eq!(m.len(), 1, "expected exactly one manifest, found {m:?}");
    serde_json::from_slice(&std::fs::read(&m[0]).unwrap()).unwrap()
}

#[test]
fn backs_up_databases_with_awkward_names_and_records_everything() {
    let dashed = TestDb::create(&unique("ct-vis"));
    let unicode = TestDb::create(&unique("données ☃"));
    fill_mixed(&dashed);
    unicode.sql("CREATE TABLE t (x text); INSERT INTO t VALUES ('ü'), ('ß');");
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("credentials.yml.enc"), b"enc").unwrap();

    let ws = Workspace::new();
    let cfg = job_config(
        &ws,
        &format!(
            "{}      - name: etc\n        files: {{path: {}}}\n",
            postgres_source("db", &[&dashed.name, &unicode.name]),
            files.path().display()
        ),
    );
    let run = ccbackup(&cfg, &["run-now"]);
    run.expect_ok();
    let id = run.stdout().trim().to_owned();
    assert!(
        id.len() == 23 && id.contains('T'),
        "backup id printed: {id:?}"
    );

    let m = read_manifest(&ws);
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["job"], "nightly");
    let arts = m["artifacts"].as_array().unwrap();
    // globals + two databases + the files source
    assert_eq!(arts.len(), 4, "{arts:#?}");
    let dbs: Vec<&str> = arts
        .iter()
        .filter(|a| a["kind"] == "pg_dump")
        .map(|a| a["postgres"]["database"].as_str().unwrap())
        .collect();
    assert_eq!(dbs.len(), 2);
    assert!(dbs.contains(&dashed.name.as_str()) && dbs.contains(&unicode.name.as_str()));

    for a in arts {
        let path = ws
            .store_dir()
            .join("nightly")
            .join(&id)
            .join(a["key"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            a["stored_bytes"].as_u64().unwrap()
        );
        assert_eq!(sha256_file(&path), a["sha256"].as_str().unwrap());
        let raw = unzstd(&path);
        assert_eq!(raw.len() as u64, a["raw_bytes"].as_u64().unwrap());
        if a["kind"] == "pg_dump" {
            // The artifact is a real custom-format archive pg_restore reads.
            assert_eq!(&raw[..5], b"PGDMP");
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("d.dump");
            std::fs::write(&f, &raw).unwrap();
            let list = Command::new("pg_restore")
                .arg("--list")
                .arg(&f)
                .output()
                .unwrap();
            assert!(list.status.success());
            let toc = String::from_utf8_lossy(&list.stdout);
            if a["postgres"]["database"] == dashed.name.as_str() {
                assert!(toc.contains("TABLE DATA app racks"), "{toc}");
                assert!(toc.contains("Devices:x"), "{toc}");
                assert!(toc.contains("SEQUENCE"), "{toc}");
            }
            assert!(a["postgres"]["server_version_num"].as_u64().unwrap() >= 150000);
            assert!(!a["postgres"]["pg_dump_version"]
                .as_str()
                .unwrap()
                .is_empty());
        }
    }

    // Row counts are taken in the dump's snapshot.
    let dashed_art = arts
        .iter()
        .find(|a| a["postgres"]["database"] == dashed.name.as_str())
        .unwrap();
    let tables = dashed_art["postgres"]["tables"].as_array().unwrap();
    let count = |s: &str, t: &str| {
        tables
            .iter()
            .find(|x| x["schema"] == s && x["table"] == t)
            .map(|x| x["rows"].as_i64().unwrap())
    };
    assert_eq!(count("app", "racks"), Some(500));
    assert_eq!(count("odd schema", "Devices:x"), Some(37));
    assert_eq!(count("public", "empty_table"), Some(0));

    // list --json shows the backup with the documented fields.
    let list = ccbackup(&cfg, &["list", "--json"]);
    list.expect_ok();
    let v: serde_json::Value = serde_json::from_str(&list.stdout()).unwrap();
    let entries = v.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["backup_id"], id.as_str());
    assert_eq!(entries[0]["job"], "nightly");
    assert_eq!(entries[0]["sources"], serde_json::json!(["db", "etc"]));
    let time = entries[0]["started_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z'));
    let total: u64 = arts
        .iter()
        .map(|a| a["stored_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(entries[0]["stored_bytes"].as_u64().unwrap(), total);

    let table = ccbackup(&cfg, &["list"]);
    table.expect_ok();
    assert!(table.stdout().contains(&id), "{}", table.stdout());
}

/// `databases: all` on a cluster of its own: the shared server gains and
/// loses other tests' databases at any moment, so only a private one
/// says exactly what "all" must select.
#[test]
fn all_databases_selects_every_connectable_non_template_database() {
    use crate::support_pg::{pg15_bin, pg_source, Cluster};
    let c = Cluster::start(15, &pg15_bin())
        .unwrap_or_else(|e| panic!("a PostgreSQL 15 cluster is needed: {e}"));
    for db in ["alldb_one", "alldb two"] {
        c.create_db(db);
        c.psql(db, "CREATE TABLE t AS SELECT 1 AS x");
    }
    c.create_db("alldb_closed");
    c.psql(
        "postgres",
        "ALTER DATABASE alldb_closed WITH ALLOW_CONNECTIONS false",
    );
    let ws = Workspace::new();
    let cfg = job_config(
        &ws,
        &pg_source(
            "pg",
            c.port,
            "all",
            None,
            "          globals: false\n          row_counts: false\n",
        ),
    );
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let m = read_manifest(&ws);
    let mut names: Vec<String> = m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["postgres"]["database"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    // Not template0/template1, not the one that refuses connections.
    assert_eq!(names, ["alldb two", "alldb_one", "postgres"]);
}

fn assert_failed_without_manifest(ws: &Workspace, run: &Run, needle: &str) {
    assert!(!run.ok(), "expected failure, got success: {}", run.stdout());
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr().contains(needle),
        "error should mention {needle:?}:\n{}",
        run.stderr()
    );
    assert!(ws.manifests().is_empty(), "a failed run wrote a manifest");
}

#[test]
fn unreachable_server_fails_clearly_without_manifest() {
    let ws = Workspace::new();
    let cfg = job_config(
        &ws,
        "      - name: db\n        postgres: {host: 127.0.0.1, port: 1, databases: [x]}\n",
    );
    let run = ccbackup(&cfg, &["run-now"]);
    assert_failed_without_manifest(&ws, &run, "cannot connect to PostgreSQL at 127.0.0.1:1");
}

#[test]
fn missing_database_is_named() {
    let ws = Workspace::new();
    let cfg = job_config(&ws, &postgres_source("db", &["no-such-db-ccbackup"]));
    let run = ccbackup(&cfg, &["run-now"]);
    assert_failed_without_manifest(&ws, &run, "database `no-such-db-ccbackup` does not exist");
}

#[test]
fn store_not_writable_fails_and_leaves_no_manifest() {
    let db = TestDb::create(&unique("storefail"));
    let ws = Workspace::new();
    // A plain file where the job's directory must go: every upload fails,
    // even for root (who ignores permission bits).
    std::fs::create_dir_all(ws.store_dir()).unwrap();
    std::fs::write(ws.store_dir().join("nightly"), b"not a directory").unwrap();
    let cfg = job_config(&ws, &postgres_source("db", &[&db.name]));
    let run = ccbackup(&cfg, &["run-now"]);
    assert!(!run.ok());
    assert!(
        run.stderr().contains("upload of nightly/"),
        "{}",
        run.stderr()
    );
    assert!(ws.manifests().is_empty());
}

#[test]
fn pg_dump_killed_mid_dump_fails_and_leaves_nothing() {
    let db = TestDb::create(&unique("killed"));
    db.sql("CREATE TABLE big AS SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: nightly\n    sources:\n      - name: db\n        postgres:\n          host: {PG_HOST}\n          port: {PG_PORT}\n          user: postgres\n          databases: [{}]\n          globals: false\n",
        ws.store_url(),
        db.name
    ));

    // Hold a lock that pg_dump must wait for, so it is mid-dump when killed.
    let locker = std::process::Command::new("psql")
        .args([
            "-X", "-q", "-h", PG_HOST, "-U", "postgres", "-d", &db.name, "-c",
        ])
        .arg("BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(20); COMMIT;")
        .spawn()
        .unwrap();
    wait_for_table_lock(&db.name, "big");

    let child = std::process::Command::new(bin())
        .args(["--log-format", "text", "--config"])
        .arg(&cfg)
        .arg("run-now")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Find our pg_dump (its argv names the unique database) and kill it.
    wait_until("our pg_dump to start", Duration::from_secs(15), || {
        let out = Command::new("pgrep")
            .args(["-f", &format!("pg_dump.*{}", db.name)])
            .output()
            .unwrap();
        let mut killed = false;
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            killed |= Command::new("kill")
                .args(["-9", pid])
                .status()
                .unwrap()
                .success();
        }
        killed
    });
    let out = child.wait_with_output().unwrap();
    let mut locker = locker;
    let _ = locker.kill();
    let _ = locker.wait();
    let run = Run { out };
    assert_failed_without_manifest(&ws, &run, "pg_dump failed (killed by signal 9)");
    // The failed run removed what it had uploaded.
    assert!(ws.stored_files().is_empty(), "{:?}", ws.stored_files());
}

#[test]
fn unknown_job_is_a_usage_error() {
    let ws = Workspace::new();
    let cfg = job_config(&ws, &postgres_source("db", &["postgres"]));
    let run = ccbackup(&cfg, &["run-now", "--job", "nope"]);
    assert_eq!(run.code(), Some(2));
    assert!(
        run.stderr().contains("no job named `nope`"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_cancelled_run_never_writes_a_manifest_even_after_its_sources_finished() {
    let ws = Workspace::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), b"x").unwrap();
    let cfg = job_config(
        &ws,
        &format!(
            "      - name: etc\n        files: {{path: {}}}\n",
            data.path().display()
        ),
    );
    let cfg = ccbackup::config::load(&cfg).unwrap();
    let repo = ccbackup::repo::store::open(&cfg.store).unwrap();
    let kill = ccbackup::sys::child::KillSwitch::default();
    // Thrown before the run: the files source has no child to kill, so only
    // the check before the manifest can stop the commit.
    kill.kill();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(ccbackup::backup::run::run_job(
            &repo,
            &cfg.jobs[0],
            std::sync::Arc::new(ccbackup::progress::Progress::new()),
            kill,
        ))
        .unwrap_err();
    assert!(
        matches!(err, ccbackup::backup::run::BackupError::Cancelled { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no manifest was written"), "{err}");
    assert!(ws.manifests().is_empty());
    assert!(ws.stored_files().is_empty(), "{:?}", ws.stored_files());
}
