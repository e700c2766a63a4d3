//! Row counts taken from the dump stream (`source::pgcount`): the parser
//! against real archives of pg_dump 15 and 18, checked against a real
//! `count(*)`; `run-now` recording them and `verify --restore-test`
//! accepting them; no second scan of the server; and a stream that cannot
//! be read giving no counts instead of a failed backup.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ccbackup::backup::source::pgcount::{CountError, RowCounter};
use ccbackup::repo::manifest::TableRows;

use crate::support::*;
use crate::support_pg;

/// Everything that makes counting rows from COPY text tricky.
fn fill(db: &TestDb) {
    db.sql(
        r#"
        CREATE SCHEMA app;
        CREATE SCHEMA "odd schema";
        CREATE SCHEMA "ünï-côdé ☃";
        CREATE TABLE app.racks (id bigserial PRIMARY KEY, name text NOT NULL, meta jsonb, blob bytea);
        INSERT INTO app.racks (name, meta, blob)
          SELECT 'rack ' || g || ' ☃', jsonb_build_object('u', g, 'nl', E'a\nb'), decode(md5(g::text), 'hex')
          FROM generate_series(1, 500) g;
        CREATE TABLE "odd schema"."Devices:x" (id int, label text);
        INSERT INTO "odd schema"."Devices:x" SELECT g, 'dévice ' || g FROM generate_series(1, 37) g;
        CREATE TABLE "ünï-côdé ☃"."tâble-with ""quotes""" (v text);
        INSERT INTO "ünï-côdé ☃"."tâble-with ""quotes""" VALUES ('a'), ('b'), ('c');
        CREATE TABLE "ünï-côdé ☃"."Zed" (v int);
        INSERT INTO "ünï-côdé ☃"."Zed" VALUES (1);
        CREATE TABLE public.empty_table (id int);
        CREATE TABLE public.nocols ();
        INSERT INTO public.nocols SELECT FROM generate_series(1, 4);
        CREATE TABLE public.awkward (t text, b bytea);
        INSERT INTO public.awkward VALUES
          (E'line1\nline2\r\n', E'\\x000a0d5c'), (E'tab\there', NULL), (E'back\\slash', ''),
          ('\.', E'\\x5c2e0a'), (E'\n\\.\n', NULL), ('', NULL), (NULL, NULL), (E'\\', E'\\x0a');
        CREATE TABLE public.big (id int, s text);
        INSERT INTO public.big SELECT g, repeat(E'x\n', g % 7) FROM generate_series(1, 100000) g;
        CREATE TABLE public.measure (at date, v int) PARTITION BY RANGE (at);
        CREATE TABLE public.measure_2024 PARTITION OF public.measure
          FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE public.measure_2025 PARTITION OF public.measure
          FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        INSERT INTO public.measure SELECT date '2024-01-01' + g, g FROM generate_series(0, 499) g;
        CREATE UNLOGGED TABLE public.scratch (x int);
        INSERT INTO public.scratch SELECT generate_series(1, 5);
        CREATE MATERIALIZED VIEW public.mv AS SELECT * FROM public.big LIMIT 10;
        CREATE SEQUENCE public.seq;
        CREATE VIEW public.v AS SELECT 1 AS one;
        SELECT lo_from_bytea(0, '\x0a0a0a'::bytea) FROM generate_series(1, 3);
        SELECT lo_from_bytea(0, decode(repeat('0a', 100000), 'hex'));
        "#,
    );
}

/// What `count_rows` (a real `count(*)` per table) says of `db`.
fn count_star(db: &str) -> Vec<TableRows> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(
            &format!("host={PG_HOST} port={PG_PORT} user=postgres dbname={db}"),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        ccbackup::pg::conn::count_rows(&client, db).await.unwrap()
    })
}

fn pg_dump(bin: &Path, db: &str) -> Vec<u8> {
    let out = Command::new(bin.join("pg_dump"))
        .args(["--format=custom", "--compress=0", "--no-password"])
        .arg(format!(
            "--dbname=host={PG_HOST} port={PG_PORT} user=postgres dbname={db}"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump in {} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn parse(bytes: &[u8], piece: usize) -> Result<Vec<TableRows>, CountError> {
    let mut c = RowCounter::new();
    for p in bytes.chunks(piece) {
        c.feed(p);
    }
    c.finish()
}

/// pg_dump 15 (archive 1.14) and 18 (archive 1.16), both of which dump
/// the 15 server.
fn dumpers() -> Vec<(PathBuf, u8)> {
    let pg18 = support_pg::pg18_bin();
    assert!(
        pg18.join("pg_dump").is_file(),
        "no pg_dump 18 in {}; run scripts/prereqs.sh",
        pg18.display()
    );
    vec![(support_pg::pg15_bin(), 14), (pg18, 16)]
}

fn rows(t: &[TableRows], schema: &str, table: &str) -> Option<i64> {
    t.iter()
        .find(|r| r.schema == schema && r.table == table)
        .map(|r| r.rows)
}

#[test]
fn counts_from_real_dumps_equal_count_star() {
    let db = TestDb::create(&unique("rc_real"));
    fill(&db);
    let expected = count_star(&db.name);
    // The fixture's edge cases are in the reference count as intended.
    assert_eq!(rows(&expected, "public", "big"), Some(100_000));
    assert_eq!(rows(&expected, "public", "awkward"), Some(8));
    assert_eq!(rows(&expected, "public", "nocols"), Some(4));
    assert_eq!(rows(&expected, "public", "measure_2024"), Some(366));
    assert_eq!(rows(&expected, "public", "measure"), None);
    assert_eq!(rows(&expected, "public", "mv"), None);
    for (bin, minor) in dumpers() {
        let dump = pg_dump(&bin, &db.name);
        assert_eq!(&dump[..7], &[b'P', b'G', b'D', b'M', b'P', 1, minor]);
        for piece in [1, 4093, 65536, dump.len()] {
            assert_eq!(
                parse(&dump, piece).as_ref(),
                Ok(&expected),
                "pg_dump in {}, fed {piece} bytes at a time",
                bin.display()
            );
        }
    }
}

#[test]
fn names_of_a_latin1_database_are_converted() {
    let name = unique("rc_latin1");
    psql(
        "postgres",
        &format!(
            "CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        ),
    );
    let db = TestDb { name };
    db.sql(
        // A Unicode escape: psql's own client encoding does not matter.
        "CREATE TABLE U&\"d\\00E9\" (x int); INSERT INTO U&\"d\\00E9\" VALUES (1), (2); \
         CREATE TABLE dz (x int);",
    );
    let expected = count_star(&db.name);
    assert_eq!(rows(&expected, "public", "dé"), Some(2));
    for (bin, _) in dumpers() {
        assert_eq!(parse(&pg_dump(&bin, &db.name), 4096), Ok(expected.clone()));
    }
}

#[test]
fn truncated_or_garbled_real_dumps_give_no_counts() {
    let db = TestDb::create(&unique("rc_cut"));
    fill(&db);
    let dump = pg_dump(&support_pg::pg15_bin(), &db.name);
    assert!(parse(&dump, 8192).is_ok());
    let step = (dump.len() / 300).max(1);
    for cut in (0..dump.len())
        .step_by(step)
        .chain(dump.len() - 16..dump.len())
    {
        assert!(
            parse(&dump[..cut], 8192).is_err(),
            "cut at {cut} of {}",
            dump.len()
        );
    }
    let mut trailing = dump.clone();
    trailing.extend_from_slice(b"garbage");
    assert!(parse(&trailing, 8192).is_err());
    // Archive 1.14 (pg_dump 15) stores the compression level as an
    // integer: a sign byte at 11, then its low byte.
    let mut compressed = dump.clone();
    compressed[12] = 1;
    assert_eq!(parse(&compressed, 8192), Err(CountError::Compressed));
}

fn job(ws: &Workspace, db: &str, extra: &str) -> PathBuf {
    ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: nightly\n    sources:\n{}{extra}",
        ws.store_url(),
        postgres_source("db", &[db])
    ))
}

fn manifest_tables(ws: &Workspace) -> serde_json::Value {
    let m = ws.manifests();
    assert_eq!(m.len(), 1, "{m:?}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&m[0]).unwrap()).unwrap();
    m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "pg_dump")
        .map(|a| a["postgres"]["tables"].clone())
        .unwrap()
}

#[test]
fn run_now_records_the_stream_counts_and_the_restore_test_accepts_them() {
    let db = TestDb::create(&unique("rc_run"));
    fill(&db);
    let ws = Workspace::new();
    let cfg = job(&ws, &db.name, "          globals: false\n");
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let recorded: Vec<TableRows> = serde_json::from_value(manifest_tables(&ws)).unwrap();
    assert_eq!(recorded, count_star(&db.name));

    let run = ccbackup(&cfg, &["verify", "--restore-test"]);
    run.expect_ok();
    assert!(
        run.stdout().lines().any(|l| l.starts_with("ok")),
        "{}",
        run.stdout()
    );
}

/// Sequential scans of `table` so far, once every other session on `db`
/// has ended (a backend flushes its statistics before it leaves
/// pg_stat_activity).
fn seq_scans_when_idle(db: &str, table: &str) -> i64 {
    wait_until(
        &format!("the sessions on {db} to end"),
        Duration::from_secs(30),
        || {
            psql(
                "postgres",
                &format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
                ),
            ) == "0"
        },
    );
    psql(
        db,
        &format!("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = '{table}'"),
    )
    .parse()
    .unwrap()
}

#[test]
fn counting_rows_costs_the_server_no_second_scan() {
    let db = TestDb::create(&unique("rc_scan"));
    db.sql("CREATE TABLE t (x int, y text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 1000) g;");
    let before = seq_scans_when_idle(&db.name, "t");
    let ws = Workspace::new();
    let cfg = job(&ws, &db.name, "          globals: false\n");
    ccbackup(&cfg, &["run-now"]).expect_ok();
    // pg_dump's COPY is the only scan; counting used to add a count(*).
    assert_eq!(seq_scans_when_idle(&db.name, "t"), before + 1);
    assert_eq!(
        manifest_tables(&ws),
        serde_json::json!([{"schema": "public", "table": "t", "rows": 1000}])
    );
}

/// A client directory whose pg_dump exits 0 after writing only the first
/// half of its archive.
fn halving_pg_dump() -> tempfile::TempDir {
    let real = support_pg::pg15_bin();
    let dir = tempfile::tempdir().unwrap();
    for prog in ["pg_dumpall", "pg_restore", "psql"] {
        std::os::unix::fs::symlink(real.join(prog), dir.path().join(prog)).unwrap();
    }
    let script = dir.path().join("pg_dump");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nREAL={}\n[ \"$1\" = --version ] && exec \"$REAL\" --version\n\
             f=$(mktemp)\n\"$REAL\" \"$@\" > \"$f\" || exit 1\n\
             head -c $(( $(wc -c < \"$f\") / 2 )) \"$f\"\nrm -f \"$f\"\n",
            real.join("pg_dump").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn a_stream_that_cannot_be_counted_gives_no_counts_not_a_failed_backup() {
    let db = TestDb::create(&unique("rc_half"));
    db.sql("CREATE TABLE t (x int, y text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g;");
    let clients = halving_pg_dump();
    let ws = Workspace::new();
    let cfg = job(
        &ws,
        &db.name,
        &format!(
            "          globals: false\n          bin_dir: {}\n",
            clients.path().display()
        ),
    );
    let run = ccbackup(&cfg, &["run-now"]);
    run.expect_ok();
    assert_eq!(manifest_tables(&ws), serde_json::Value::Null);
    assert!(
        run.stderr().contains("no row counts for this dump"),
        "{}",
        run.stderr()
    );
}
