//! `restore` and `verify` round trips through the real server and real files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use crate::support_rrd;

/// A plain-SQL dump of schema and data, minus comments and the random
/// `\restrict` keys newer pg_dump versions add.
pub(crate) fn dump_sql(db: &str) -> String {
    let out = Command::new("pg_dump")
        .args(["-h", PG_HOST, "-U", "postgres", "--no-owner", "-d", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn rich_db(name: &str) -> TestDb {
    let db = TestDb::create(name);
    fill_mixed(&db);
    db.sql(
        r#"
        CREATE SEQUENCE app.counter START 40;
        SELECT nextval('app.counter'), nextval('app.counter');
        CREATE TABLE app.docs (id int PRIMARY KEY, body text, oid_ref oid);
        INSERT INTO app.docs VALUES (1, 'große Ünïcödé ☃ 日本語', lo_from_bytea(0, '\x000102ff'::bytea));
        CREATE VIEW app.rack_names AS SELECT name FROM app.racks;
        "#,
    );
    db
}

struct Setup {
    ws: Workspace,
    cfg: PathBuf,
    rrd: tempfile::TempDir,
    etc: tempfile::TempDir,
    id: String,
}

fn backup_all(db: &TestDb) -> Setup {
    let rrd = tempfile::tempdir().unwrap();
    support_rrd::concertim_tree(rrd.path(), 3, 2);
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("credentials.yml.enc"), b"secret-ish").unwrap();
    std::fs::set_permissions(
        etc.path().join("credentials.yml.enc"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::create_dir(etc.path().join("sub dir ✓")).unwrap();
    std::fs::write(etc.path().join("sub dir ✓").join("a:b.txt"), b"x").unwrap();
    std::os::unix::fs::symlink("credentials.yml.enc", etc.path().join("link")).unwrap();

    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: nightly\n    sources:\n{}      - name: rrd\n        rrd: {{path: {}}}\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        postgres_source("db", &[&db.name]),
        rrd.path().display(),
        etc.path().display()
    ));
    let run = ccbackup(&cfg, &["run-now"]);
    run.expect_ok();
    let id = run.stdout().trim().to_owned();
    Setup {
        ws,
        cfg,
        rrd,
        etc,
        id,
    }
}

/// Every path under `root` with its kind, mode, and content or link target.
fn snapshot(root: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, u32, Vec<u8>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            if md.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.push((rel, 0, t.as_os_str().as_encoded_bytes().to_vec()));
            } else if md.is_dir() {
                out.push((rel, md.permissions().mode(), Vec::new()));
                walk(root, &p, out);
            } else {
                out.push((rel, md.permissions().mode(), std::fs::read(&p).unwrap()));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

fn drop_db(name: &str) {
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
    );
}

fn db_exists(name: &str) -> bool {
    psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname = '{}'",
            name.replace('\'', "''")
        ),
    ) == "1"
}

#[test]
fn database_round_trip_is_identical_with_one_and_two_jobs() {
    let db = rich_db(&unique("ct-vis-rt"));
    let s = backup_all(&db);
    for jobs in ["1", "2"] {
        let target = format!("{}-restored-{jobs}", db.name);
        drop_db(&target);
        let run = ccbackup(
            &s.cfg,
            &[
                "restore",
                "--source",
                "db",
                "--target-db",
                &target,
                "--jobs",
                jobs,
            ],
        );
        run.expect_ok();
        assert_eq!(dump_sql(&db.name), dump_sql(&target), "jobs={jobs}");
        // Large object content survived.
        let lo = psql(
            &target,
            "SELECT encode(lo_get(oid_ref), 'hex') FROM app.docs WHERE id = 1",
        );
        assert_eq!(lo, "000102ff");
        drop_db(&target);
    }
}

#[test]
fn trees_round_trip_byte_identical_and_refuse_to_overwrite() {
    let db = TestDb::create(&unique("trees"));
    let s = backup_all(&db);
    let out = tempfile::tempdir().unwrap();
    let rrd_to = out.path().join("rrd");
    let etc_to = out.path().join("etc");
    ccbackup(
        &s.cfg,
        &[
            "restore",
            "--source",
            "rrd",
            "--to",
            rrd_to.to_str().unwrap(),
        ],
    )
    .expect_ok();
    ccbackup(
        &s.cfg,
        &[
            "restore",
            "--source",
            "etc",
            "--to",
            etc_to.to_str().unwrap(),
        ],
    )
    .expect_ok();
    assert_eq!(snapshot(s.rrd.path()), snapshot(&rrd_to));
    assert_eq!(snapshot(s.etc.path()), snapshot(&etc_to));
    for f in support_rrd::list_tree(&rrd_to) {
        if f.extension().is_some_and(|e| e == "rrd") {
            support_rrd::info_ok(&rrd_to.join(&f)).unwrap();
        }
    }

    // A second restore into the same place is refused without --force and
    // changes nothing; with --force it replaces.
    std::fs::write(etc_to.join("credentials.yml.enc"), b"local edit").unwrap();
    let again = ccbackup(
        &s.cfg,
        &[
            "restore",
            "--source",
            "etc",
            "--to",
            etc_to.to_str().unwrap(),
        ],
    );
    assert!(!again.ok());
    assert!(
        again.stderr().contains("--force") || again.stderr().contains("exist"),
        "{}",
        again.stderr()
    );
    assert_eq!(
        std::fs::read(etc_to.join("credentials.yml.enc")).unwrap(),
        b"local edit"
    );
    ccbackup(
        &s.cfg,
        &[
            "restore",
            "--source",
            "etc",
            "--to",
            etc_to.to_str().unwrap(),
            "--force",
        ],
    )
    .expect_ok();
    assert_eq!(
        std::fs::read(etc_to.join("credentials.yml.enc")).unwrap(),
        b"secret-ish"
    );

    // --include restores a subset.
    let subset = out.path().join("subset");
    ccbackup(
        &s.cfg,
        &[
            "restore",
            "--source",
            "rrd",
            "--to",
            subset.to_str().unwrap(),
            "--include",
            "unspecified/__SummaryInfo__/**",
        ],
    )
    .expect_ok();
    let restored = support_rrd::list_tree(&subset);
    assert!(!restored.is_empty());
    let files: Vec<&PathBuf> = restored
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rrd"))
        .collect();
    assert!(!files.is_empty(), "{restored:?}");
    assert!(
        files
            .iter()
            .all(|p| p.starts_with("unspecified/__SummaryInfo__")),
        "{restored:?}"
    );
}

#[test]
fn restore_refuses_existing_databases_unless_asked() {
    let db = rich_db(&unique("refuse"));
    let s = backup_all(&db);
    // The original database exists: refused without --force.
    let run = ccbackup(&s.cfg, &["restore", "--source", "db"]);
    assert!(!run.ok());
    assert!(run.stderr().contains("needs --force"), "{}", run.stderr());

    // A non-empty other database (an earlier restore, since modified):
    // refused without --clean, replaced with it.
    let target = format!("{}-other", db.name);
    drop_db(&target);
    ccbackup(
        &s.cfg,
        &["restore", "--source", "db", "--target-db", &target],
    )
    .expect_ok();
    psql(&target, "DELETE FROM app.racks WHERE id > 10");
    let run = ccbackup(
        &s.cfg,
        &["restore", "--source", "db", "--target-db", &target],
    );
    assert!(!run.ok());
    assert!(run.stderr().contains("not empty"), "{}", run.stderr());
    assert_eq!(psql(&target, "SELECT count(*) FROM app.racks"), "10");
    ccbackup(
        &s.cfg,
        &[
            "restore",
            "--source",
            "db",
            "--target-db",
            &target,
            "--clean",
        ],
    )
    .expect_ok();
    assert_eq!(psql(&target, "SELECT count(*) FROM app.racks"), "500");

    // --force --clean over the original works too.
    db.sql("INSERT INTO app.racks (name) VALUES ('added after backup')");
    ccbackup(&s.cfg, &["restore", "--source", "db", "--force", "--clean"]).expect_ok();
    assert_eq!(db.sql("SELECT count(*) FROM app.racks"), "500");
    drop_db(&target);
}

#[test]
fn dry_run_changes_nothing() {
    let db = rich_db(&unique("dry"));
    let s = backup_all(&db);
    let target = format!("{}-dry", db.name);
    drop_db(&target);
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("etc");
    let run = ccbackup(
        &s.cfg,
        &[
            "restore",
            "--source",
            "db",
            "--target-db",
            &target,
            "--dry-run",
        ],
    );
    run.expect_ok();
    assert!(run.stdout().contains("will be created"), "{}", run.stdout());
    assert!(!db_exists(&target));
    let run = ccbackup(
        &s.cfg,
        &[
            "restore",
            "--source",
            "etc",
            "--to",
            to.to_str().unwrap(),
            "--dry-run",
        ],
    );
    run.expect_ok();
    assert!(run.stdout().contains("would restore"), "{}", run.stdout());
    assert!(!to.exists());
}

fn flip_byte(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x01;
    std::fs::write(p, b).unwrap();
}

#[test]
fn corrupted_artifact_is_detected_by_restore_and_verify() {
    let db = rich_db(&unique("corrupt"));
    let s = backup_all(&db);
    ccbackup(&s.cfg, &["verify"]).expect_ok();
    let dir = s.ws.store_dir().join("nightly").join(&s.id);
    let dump = std::fs::read_dir(dir.join("db"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".dump.zst"))
        .unwrap();
    flip_byte(&dump);
    flip_byte(&dir.join("etc.tar.zst"));

    let target = format!("{}-never", db.name);
    drop_db(&target);
    let run = ccbackup(
        &s.cfg,
        &["restore", "--source", "db", "--target-db", &target],
    );
    assert!(!run.ok());
    assert!(
        run.stderr().contains("is corrupt: sha256 differs"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains(".dump.zst"), "{}", run.stderr());
    assert!(
        !db_exists(&target),
        "nothing may be applied from a corrupt artifact"
    );

    let to = tempfile::tempdir().unwrap().path().join("etc");
    let run = ccbackup(
        &s.cfg,
        &["restore", "--source", "etc", "--to", to.to_str().unwrap()],
    );
    assert!(!run.ok());
    assert!(!to.exists());

    let run = ccbackup(&s.cfg, &["verify"]);
    assert_eq!(run.code(), Some(1));
    let out = run.stdout();
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAILED") && l.contains(".dump.zst")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAILED") && l.contains("etc.tar.zst")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("rrd.rrd.tar.zst")),
        "{out}"
    );
}

#[test]
fn verify_restore_test_compares_row_counts_with_the_manifest() {
    let db = rich_db(&unique("vrt"));
    let s = backup_all(&db);
    let run = ccbackup(&s.cfg, &["verify", "--restore-test"]);
    run.expect_ok();
    assert_eq!(
        run.stdout().lines().filter(|l| l.starts_with("ok")).count(),
        4,
        "{}",
        run.stdout()
    );

    // Tamper with the recorded count: the restore test must notice.
    let mpath = s.ws.manifests().remove(0);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    for a in m["artifacts"].as_array_mut().unwrap() {
        let tables = a
            .get_mut("postgres")
            .and_then(|p| p.get_mut("tables"))
            .and_then(|t| t.as_array_mut());
        if let Some(tables) = tables {
            for t in tables {
                if t["table"] == "racks" {
                    t["rows"] = serde_json::json!(499);
                }
            }
        }
    }
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let run = ccbackup(&s.cfg, &["verify", "--restore-test"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stdout().contains("restored 500 rows"),
        "{}",
        run.stdout()
    );
    // Scratch databases are dropped.
    assert_eq!(
        psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'ccbackup_verify_%'"
        ),
        "0"
    );
}

/// Issue 21 item 7: restore and verify return typed reports, and `--json`
/// carries their facts typed: per artifact the checks verify passed (or
/// where it failed), and a step's warnings as tagged objects beside the
/// text output's lines, which stay as they were.
#[test]
fn regression_issue21_reports_are_typed_in_json_and_text_alike() {
    use crate::schemas::assert_valid;
    use serde_json::Value;
    let db = rich_db(&unique("typed_reports"));
    let s = backup_all(&db);
    let run = ccbackup(&s.cfg, &["verify", "--restore-test", "--json"]);
    run.expect_ok();
    let v: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_valid("verify.json", &v);
    let checks = |suffix: &str| -> Vec<Value> {
        let a = v["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["artifact"].as_str().unwrap().ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix} in {v}"));
        assert_eq!(a["failed_at"], Value::Null, "{a}");
        a["checks"].as_array().unwrap().clone()
    };
    let names = |cs: &[Value]| -> Vec<String> {
        cs.iter()
            .map(|c| c["check"].as_str().unwrap().to_owned())
            .collect()
    };
    let dump = checks(".dump.zst");
    assert_eq!(
        names(&dump),
        ["checksum", "restored_into_scratch", "row_counts"],
        "{v}"
    );
    assert!(dump[2]["tables"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        names(&checks("globals.sql.zst")),
        ["checksum", "decompressed"]
    );
    let etc = checks("etc.tar.zst");
    assert_eq!(names(&etc), ["checksum", "archive_read"], "{v}");
    // Regular files: the credentials and `sub dir ✓/a:b.txt` (not the link).
    assert_eq!(etc[1]["files"], 2, "{v}");
    let rrd = checks("rrd.tar.zst");
    assert_eq!(
        names(&rrd),
        ["checksum", "archive_read", "rrd_valid"],
        "{v}"
    );
    assert!(rrd[2]["files"].as_u64().unwrap() > 0, "{v}");

    // The configuration now puts `etc` elsewhere: the restore says so,
    // as a line and as a typed warning.
    let moved = tempfile::tempdir().unwrap();
    let body = std::fs::read_to_string(&s.cfg).unwrap().replace(
        &s.etc.path().display().to_string(),
        &moved.path().display().to_string(),
    );
    let cfg = s.ws.config(&body);
    let text = ccbackup(&cfg, &["restore", "--dry-run", "--source", "etc"]);
    text.expect_ok();
    assert!(
        text.stdout().contains(&format!(
            "  note: the backup recorded the root \"{}\"; etc.tar.zst went to the configured path {} instead",
            s.etc.path().display(),
            moved.path().display()
        )),
        "{}",
        text.stdout()
    );
    let dry = ccbackup(&cfg, &["restore", "--dry-run", "--json", "--source", "etc"]);
    dry.expect_ok();
    let d: Value = serde_json::from_str(&dry.stdout()).unwrap();
    assert_valid("restore.json", &d);
    let step = &d["steps"][0];
    assert_eq!(step["warnings"][0]["warning"], "recorded_root", "{d}");
    assert_eq!(
        step["warnings"][0]["dest"],
        moved.path().to_str().unwrap(),
        "{d}"
    );
    assert!(
        step["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .starts_with("note: the backup recorded the root")),
        "{d}"
    );
    assert_eq!(d["skipped"], serde_json::json!([]), "{d}");
}
