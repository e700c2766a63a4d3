//! `restore --table` / `--schema` (issue 19 part 3) against real backups of
//! real servers: PostgreSQL 15 (the direct path) and 16 restored with the
//! 18 client (the SQL path through psql).

use std::path::PathBuf;

use serde_json::Value;

use crate::schemas::assert_valid;
use crate::support::*;
use crate::support_pg::{job_config, pg16, pg18_bin, pg_source, Cluster};

/// The sample shapes: a serial column, an index, a check constraint, a
/// foreign key, a comment and a grant, a unicode table name, two schemas.
/// `app."Gerät ☃"` had rows deleted, so its sequence (40) is ahead of its
/// largest id (37): only a restored `SEQUENCE SET` gives 41 next.
const SHAPES: &str = r#"
    CREATE SCHEMA app;
    CREATE TABLE app.racks (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
    CREATE TABLE app."Gerät ☃" (
        id bigserial PRIMARY KEY,
        rack_id int REFERENCES app.racks (id),
        label text CHECK (label <> ''));
    CREATE INDEX geraet_label_idx ON app."Gerät ☃" (label);
    COMMENT ON TABLE app."Gerät ☃" IS 'devices ☃';
    GRANT SELECT ON app."Gerät ☃" TO pg_monitor;
    INSERT INTO app.racks (name) SELECT 'rack ' || g FROM generate_series(1, 5) g;
    INSERT INTO app."Gerät ☃" (rack_id, label) SELECT 1 + g % 5, 'dev ' || g FROM generate_series(1, 40) g;
    DELETE FROM app."Gerät ☃" WHERE id > 37;
    CREATE TABLE public.notes (id serial PRIMARY KEY, dev bigint REFERENCES app."Gerät ☃" (id), body text);
    INSERT INTO public.notes (dev, body) VALUES (1, 'note');
"#;

struct Backed {
    db: TestDb,
    ws: Workspace,
    cfg: PathBuf,
}

fn backed_up(prefix: &str) -> Backed {
    let db = TestDb::create(&unique(prefix));
    db.sql(SHAPES);
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: nightly\n    sources:\n{}",
        ws.store_url(),
        postgres_source("db", &[&db.name])
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    Backed { db, ws, cfg }
}

fn restore(b: &Backed, extra: &[&str]) -> Run {
    let mut args = vec!["restore", "--source", "db", "--database", &b.db.name];
    args.extend_from_slice(extra);
    ccbackup(&b.cfg, &args)
}

fn json(run: &Run) -> Value {
    let v: Value = serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout(), run.stderr()));
    assert_valid("restore.json", &v);
    v
}

fn count(db: &str, sql: &str) -> String {
    psql(db, sql)
}

fn left_out(v: &Value) -> Vec<(String, String)> {
    v["steps"][0]["toc"]["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["entry"].as_str().unwrap().to_owned(),
                l["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn one_table_into_a_new_database_with_its_index_sequence_grants_and_no_dangling_fk() {
    let b = backed_up("tbl_one");
    let target = TestDb {
        name: format!("{}_t", b.db.name),
    };
    let run = restore(
        &b,
        &[
            "--table",
            "app.Gerät ☃",
            "--target-db",
            &target.name,
            "--json",
        ],
    );
    run.expect_ok();
    let v = json(&run);
    assert_eq!(v["steps"][0]["outcome"], "restored");
    let t = &target.name;
    assert_eq!(count(t, r#"SELECT count(*) FROM app."Gerät ☃""#), "37");
    assert_eq!(
        count(
            t,
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'app' ORDER BY indexname COLLATE \"C\""
        ),
        "Gerät ☃_pkey\ngeraet_label_idx"
    );
    // The owned sequence's value came along: the next id is 41, not 38.
    assert_eq!(
        count(
            t,
            r#"INSERT INTO app."Gerät ☃" (label) VALUES ('new') RETURNING id"#
        ),
        "41"
    );
    assert_eq!(
        count(
            t,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'c' AND conname LIKE 'Gerät%'"
        ),
        "1"
    );
    assert_eq!(
        count(t, r#"SELECT obj_description('app."Gerät ☃"'::regclass)"#),
        "devices ☃"
    );
    assert_eq!(
        count(
            t,
            r#"SELECT has_table_privilege('pg_monitor', 'app."Gerät ☃"', 'SELECT')"#
        ),
        "t"
    );
    // Nothing else: no other table, no foreign key.
    assert_eq!(
        count(
            t,
            "SELECT count(*) FROM pg_tables WHERE schemaname IN ('app', 'public')"
        ),
        "1"
    );
    assert_eq!(
        count(t, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"),
        "0"
    );
    // ... and the foreign keys left out are reported, with the table each needs.
    let left = left_out(&v);
    let fk = left
        .iter()
        .find(|(e, _)| e.contains("FK CONSTRAINT app Gerät ☃ Gerät ☃_rack_id_fkey"))
        .unwrap_or_else(|| panic!("{left:?}"));
    assert!(fk.1.contains("TABLE app racks"), "{fk:?}");
    assert!(
        left.iter().any(|(e, _)| e.contains("notes_dev_fkey")),
        "{left:?}"
    );
    // The original is untouched.
    assert_eq!(count(&b.db.name, "SELECT count(*) FROM public.notes"), "1");
    drop(b.ws);
}

#[test]
fn a_schema_restores_its_tables_and_the_foreign_keys_between_them() {
    let b = backed_up("tbl_schema");
    let target = TestDb {
        name: format!("{}_s", b.db.name),
    };
    restore(&b, &["--schema", "app", "--target-db", &target.name]).expect_ok();
    let t = &target.name;
    assert_eq!(
        count(t, "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname IN ('app', 'public')"),
        "Gerät ☃,racks"
    );
    assert_eq!(count(t, "SELECT count(*) FROM app.racks"), "5");
    assert_eq!(
        count(t, "SELECT conname FROM pg_constraint WHERE contype = 'f'"),
        "Gerät ☃_rack_id_fkey"
    );
    // The FK is enforced.
    assert!(psql_fails(
        t,
        r#"INSERT INTO app."Gerät ☃" (rack_id, label) VALUES (99, 'x')"#
    ));
}

fn psql_fails(db: &str, sql: &str) -> bool {
    !std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            PG_HOST,
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn an_existing_database_needs_force_and_an_existing_table_needs_clean() {
    let b = backed_up("tbl_force");
    let target = TestDb::create(&format!("{}_x", b.db.name));
    target.sql(
        "CREATE SCHEMA app; CREATE TABLE app.racks (id int, name text);
         INSERT INTO app.racks VALUES (7, 'kept'); CREATE TABLE public.keep (x int);
         INSERT INTO public.keep VALUES (1);",
    );
    let t = &target.name;
    // Without --force: refused before anything is applied.
    let run = restore(&b, &["--table", "app.racks", "--target-db", t]);
    assert!(!run.ok());
    assert!(run.stderr().contains("--force"), "{}", run.stderr());
    // With --force, the table it has is not replaced without --clean.
    let run = restore(&b, &["--table", "app.racks", "--target-db", t, "--force"]);
    assert!(!run.ok());
    let err = run.stderr();
    assert!(
        err.contains("--clean") && err.contains("TABLE app racks"),
        "{err}"
    );
    assert_eq!(count(t, "SELECT name FROM app.racks"), "kept");
    // A table it lacks goes in with --force alone, into the schema it has.
    restore(
        &b,
        &["--table", "public.notes", "--target-db", t, "--force"],
    )
    .expect_ok();
    assert_eq!(count(t, "SELECT body FROM public.notes"), "note");
    // --clean replaces the table and leaves the rest alone.
    restore(
        &b,
        &[
            "--table",
            "app.racks",
            "--target-db",
            t,
            "--force",
            "--clean",
        ],
    )
    .expect_ok();
    assert_eq!(count(t, "SELECT count(*) FROM app.racks"), "5");
    assert_eq!(count(t, "SELECT nextval('app.racks_id_seq')"), "6");
    assert_eq!(count(t, "SELECT x FROM public.keep"), "1");
    // A table of the target that references the one --clean would drop
    // stops the restore, and the transaction leaves everything as it was.
    target.sql(
        "INSERT INTO app.racks (name) VALUES ('added');
         CREATE TABLE public.refs (r int REFERENCES app.racks (id));",
    );
    let run = restore(
        &b,
        &[
            "--table",
            "app.racks",
            "--target-db",
            t,
            "--force",
            "--clean",
        ],
    );
    assert!(!run.ok(), "{}", run.stdout());
    assert!(run.stderr().contains("depend"), "{}", run.stderr());
    assert_eq!(count(t, "SELECT count(*) FROM app.racks"), "6");
}

/// A table whose name, as `pg_restore` lists it, reads like another entry
/// (a line break and `1; 0 0 TABLE app racks postgres`): selecting
/// `app.racks` takes the real one only, and the crafted name's foreign key
/// is reported, not applied.
#[test]
fn a_name_that_mimics_a_toc_line_selects_nothing_extra() {
    let db = TestDb::create(&unique("tbl_crafted"));
    db.sql(SHAPES);
    db.sql(
        "CREATE TABLE app.\"x\n1; 0 0 TABLE app racks postgres\" (r int REFERENCES app.racks (id));
         CREATE TABLE app.\"<script>alert(1)</script>\" (id int);",
    );
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: nightly\n    sources:\n{}",
        ws.store_url(),
        postgres_source("db", &[&db.name])
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let target = TestDb {
        name: format!("{}_c", db.name),
    };
    let run = ccbackup(
        &cfg,
        &[
            "restore",
            "--database",
            &db.name,
            "--table",
            "app.racks",
            "--target-db",
            &target.name,
            "--json",
        ],
    );
    run.expect_ok();
    let v = json(&run);
    let applied: Vec<&str> = v["steps"][0]["toc"]["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    let tables: Vec<&&str> = applied
        .iter()
        .filter(|e| e.contains("; TABLE app "))
        .collect();
    assert_eq!(tables.len(), 1, "{applied:?}");
    assert_eq!(
        psql(
            &target.name,
            "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'app'"
        ),
        "racks"
    );
    assert!(
        left_out(&v)
            .iter()
            .any(|(e, r)| e.contains("FK CONSTRAINT app x 1; 0 0 TABLE")
                && r.contains("TABLE app x")),
        "{:?}",
        left_out(&v)
    );
}

#[test]
fn dry_run_lists_the_entries_and_creates_nothing() {
    let b = backed_up("tbl_dry");
    let target = format!("{}_d", b.db.name);
    let run = restore(
        &b,
        &["--table", "app.racks", "--target-db", &target, "--dry-run"],
    );
    run.expect_ok();
    let out = run.stdout();
    for want in [
        "would apply",
        "; TABLE app racks postgres",
        "; TABLE DATA app racks postgres",
        "; SEQUENCE SET app racks_id_seq postgres",
        "; CONSTRAINT app racks racks_name_key postgres",
        "; SCHEMA - app postgres",
        "left out: ",
        "Gerät ☃_rack_id_fkey",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    assert!(!out.contains("; TABLE app Gerät"), "{out}");
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{target}'")
        ),
        "0"
    );
    let v = json(&restore(
        &b,
        &[
            "--table",
            "app.racks",
            "--target-db",
            &target,
            "--dry-run",
            "--json",
        ],
    ));
    assert_eq!(v["steps"][0]["outcome"], "planned");
    let applied = v["steps"][0]["toc"]["applied"].as_array().unwrap();
    assert!(applied
        .iter()
        .any(|e| e.as_str().unwrap().ends_with("; TABLE app racks postgres")));
    // An unknown table is named, with the ones the schema has.
    let run = restore(
        &b,
        &["--table", "app.nope", "--target-db", &target, "--dry-run"],
    );
    assert!(!run.ok());
    assert!(
        run.stderr().contains("`app`.`nope`") && run.stderr().contains("racks"),
        "{}",
        run.stderr()
    );
}

#[test]
fn one_table_on_16_through_the_sql_path() {
    let c: &Cluster = pg16();
    let db = unique("tbl_sql");
    c.create_db(&db);
    c.psql(&db, SHAPES);
    let ws = Workspace::new();
    let cfg = ws.config(&job_config(
        &ws.store_url(),
        &pg_source("db", c.port, &format!("[\"{db}\"]"), Some(&pg18_bin()), ""),
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let copy = format!("{db}_copy");
    let run = ccbackup(
        &cfg,
        &[
            "restore",
            "--database",
            &db,
            "--table",
            "app.Gerät ☃",
            "--target-db",
            &copy,
        ],
    );
    run.expect_ok();
    assert!(
        run.stderr().contains("as SQL through psql"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        c.psql(&copy, r#"SELECT count(*) FROM app."Gerät ☃""#)
            .trim(),
        "37"
    );
    assert_eq!(
        c.psql(
            &copy,
            r#"INSERT INTO app."Gerät ☃" (label) VALUES ('n') RETURNING id"#
        )
        .trim(),
        "41"
    );
    assert_eq!(
        c.psql(
            &copy,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"
        )
        .trim(),
        "0"
    );
    assert_eq!(
        c.psql(
            &copy,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'geraet_label_idx'"
        )
        .trim(),
        "1"
    );
}

/// Restore's guarantees hold for a table: a corrupt artifact is refused
/// before anything is applied, and an encrypted one needs the identity.
#[test]
fn a_corrupt_or_encrypted_backup_keeps_restores_guarantees() {
    let b = backed_up("tbl_guard");
    let target = TestDb {
        name: format!("{}_g", b.db.name),
    };
    let exists = |t: &str| {
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{t}'"),
        )
    };
    let dump =
        b.ws.stored_files()
            .into_iter()
            .find(|p| p.to_string_lossy().contains(".dump"))
            .unwrap();
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();
    let run = restore(&b, &["--table", "app.racks", "--target-db", &target.name]);
    assert!(!run.ok());
    assert!(run.stderr().contains("is corrupt"), "{}", run.stderr());
    assert_eq!(exists(&target.name), "0");

    let keys = tempfile::tempdir().unwrap();
    let k = keys.path().join("k");
    keys_generate(&k);
    let recipient = std::fs::read_to_string(k.join("age-recipient.txt")).unwrap();
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nencryption:\n  recipients: [\"{}\"]\njobs:\n  - name: nightly\n    sources:\n{}",
        ws.store_url(),
        recipient.trim(),
        postgres_source("db", &[&b.db.name])
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let args = [
        "restore",
        "--database",
        &b.db.name,
        "--table",
        "app.racks",
        "--target-db",
        &target.name,
    ];
    let run = ccbackup(&cfg, &args);
    assert!(!run.ok());
    assert!(
        run.stderr().contains("needs an age identity"),
        "{}",
        run.stderr()
    );
    assert_eq!(exists(&target.name), "0");
    let identity = k.join("age-identity.txt");
    let mut with_id = args.to_vec();
    with_id.extend(["--identity", identity.to_str().unwrap()]);
    ccbackup(&cfg, &with_id).expect_ok();
    assert_eq!(psql(&target.name, "SELECT count(*) FROM app.racks"), "5");
}
