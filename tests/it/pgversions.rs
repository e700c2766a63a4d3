//! Real PostgreSQL 16 (Concertim's) and 18 servers: round trips on each,
//! restores from older servers onto 18 (the upgrade path), a backup taken
//! with a newer client restored onto its own 16 server, database-level
//! properties, the whole-server restore onto a fresh cluster, and what
//! `check-config` says about the client programs.

use std::path::Path;

use crate::support::{ccbackup, quote_ident, unique, Workspace, PG_PORT};
use crate::support_pg::{
    fingerprint, job_config, pg15_bin, pg16, pg16_server_bin, pg18, pg18_bin, pg_source, Cluster,
};

/// The Debian 15 server every other test uses, seen as a cluster.
fn pg15() -> Cluster {
    Cluster::system(15, PG_PORT)
}

fn fill(c: &Cluster, db: &str) {
    c.psql(
        db,
        r#"
        CREATE SCHEMA app;
        CREATE TABLE app.racks (id bigserial PRIMARY KEY, name text NOT NULL, meta jsonb, blob bytea);
        INSERT INTO app.racks (name, meta, blob)
          SELECT 'rack ' || g || ' ☃', jsonb_build_object('u', g), decode(md5(g::text), 'hex')
          FROM generate_series(1, 300) g;
        CREATE TABLE "Devices:x" (id int, label text);
        INSERT INTO "Devices:x" SELECT g, 'dévice ' || g FROM generate_series(1, 37) g;
        CREATE TABLE empty_table (id int);
        "#,
    );
}

/// Backs up `db` of `c` with the clients in `bin`, checks the run, and
/// returns the config path.
fn backup(ws: &Workspace, c: &Cluster, db: &str, bin: &Path) -> std::path::PathBuf {
    let cfg = ws.config(&job_config(
        &ws.store_url(),
        &pg_source("db", c.port, &format!("[\"{db}\"]"), Some(bin), ""),
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    cfg
}

/// A second config, same store and source name, pointing at `to`.
fn restore_config(ws: &Workspace, to: &Cluster, bin: &Path) -> std::path::PathBuf {
    let p = ws.path().join("restore.yaml");
    std::fs::write(
        &p,
        job_config(
            &ws.store_url(),
            &pg_source("db", to.port, "all", Some(bin), ""),
        ),
    )
    .unwrap();
    p
}

fn round_trip(c: &Cluster, bin: &Path) {
    let ws = Workspace::new();
    let db = unique("ver_rt");
    c.create_db(&db);
    fill(c, &db);
    let cfg = backup(&ws, c, &db, bin);
    ccbackup(&cfg, &["verify", "--restore-test"]).expect_ok();
    let copy = format!("{db}_copy");
    let run = ccbackup(&cfg, &["restore", "--target-db", &copy]);
    run.expect_ok();
    assert_eq!(fingerprint(c, &copy), fingerprint(c, &db));
    assert!(fingerprint(c, &db).contains("app.racks 300 "));
    // The choice of client is logged with its directory.
    let log = run.stderr();
    assert!(log.contains(&bin.display().to_string()), "{log}");
}

#[test]
fn round_trip_on_16_with_the_18_client() {
    round_trip(pg16(), &pg18_bin());
}

#[test]
fn round_trip_on_18() {
    round_trip(pg18(), &pg18_bin());
}

fn upgrade(from: &Cluster, from_bin: &Path) {
    let ws = Workspace::new();
    let db = unique("ver_up");
    from.create_db(&db);
    fill(from, &db);
    backup(&ws, from, &db, from_bin);
    let to = pg18();
    let cfg18 = restore_config(&ws, to, &pg18_bin());
    ccbackup(&cfg18, &["restore"]).expect_ok();
    assert_eq!(fingerprint(to, &db), fingerprint(from, &db));
    to.psql("postgres", &format!("DROP DATABASE {}", quote_ident(&db)));
    if from.port == PG_PORT {
        from.psql("postgres", &format!("DROP DATABASE {}", quote_ident(&db)));
    }
}

#[test]
fn upgrade_15_to_18() {
    // The 15 server is dumped with Debian's 15 client (see testing.md).
    upgrade(&pg15(), &pg15_bin());
}

#[test]
fn upgrade_16_to_18() {
    upgrade(pg16(), &pg18_bin());
}

#[test]
fn run_now_and_check_config_say_the_client_is_newer_than_the_server() {
    let ws = Workspace::new();
    let c = pg16();
    let cfg = ws.config(&job_config(
        &ws.store_url(),
        &pg_source(
            "db",
            c.port,
            "[postgres]",
            Some(&pg18_bin()),
            "          globals: false\n",
        ),
    ));
    let check = ccbackup(&cfg, &["check-config"]);
    check.expect_ok();
    let out = format!("{}{}", check.stdout(), check.stderr());
    assert!(
        out.contains("newer than the PostgreSQL 16.4 server") && out.contains("18.6"),
        "{out}"
    );
    let run = ccbackup(&cfg, &["run-now"]);
    run.expect_ok();
    let log = run.stderr();
    assert!(
        log.contains("newer than the PostgreSQL 16.4 server"),
        "{log}"
    );
    assert!(log.contains(&pg18_bin().display().to_string()), "{log}");
}

#[test]
fn check_config_names_a_restore_program_missing_from_bin_dir() {
    let ws = Workspace::new();
    let bin = tempfile::tempdir().unwrap();
    for prog in ["pg_dump", "pg_dumpall", "pg_restore"] {
        std::os::unix::fs::symlink(pg18_bin().join(prog), bin.path().join(prog)).unwrap();
    }
    let cfg = ws.config(&job_config(
        &ws.store_url(),
        &pg_source("db", pg18().port, "[postgres]", Some(bin.path()), ""),
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}{}", run.stdout(), run.stderr());
    let err = run.stderr();
    assert!(
        err.contains("psql") && err.contains(&bin.path().display().to_string()),
        "{err}"
    );
    assert!(!err.contains("pg_restore,"), "{err}");
}

#[test]
fn relative_bin_dir_is_a_config_error_with_its_line() {
    let ws = Workspace::new();
    let cfg = ws.config(&job_config(
        &ws.store_url(),
        &pg_source(
            "db",
            pg18().port,
            "[postgres]",
            Some(Path::new("pg/bin")),
            "",
        ),
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2));
    let err = run.stderr();
    assert!(
        err.contains(&format!("{}:12:", cfg.display()))
            && err.contains("jobs[0].sources[0].postgres.bin_dir")
            && err.contains("absolute"),
        "{err}"
    );
}

/// Roles and a database with every database-level property set.
fn database_with_properties(c: &Cluster) -> (String, String, String) {
    let db = unique("ver_props");
    let owner = unique("ver_owner");
    let reader = unique("ver_reader");
    c.psql(
        "postgres",
        &format!(
            "CREATE ROLE {o}; CREATE ROLE {r};",
            o = quote_ident(&owner),
            r = quote_ident(&reader)
        ),
    );
    c.psql(
        "postgres",
        &format!(
            "CREATE DATABASE {d} OWNER {o} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
            d = quote_ident(&db),
            o = quote_ident(&owner)
        ),
    );
    c.psql(
        "postgres",
        &format!(
            "REVOKE CONNECT ON DATABASE {d} FROM PUBLIC; GRANT CONNECT ON DATABASE {d} TO {r}; \
             COMMENT ON DATABASE {d} IS 'racks ''n'' devices'; \
             ALTER DATABASE {d} SET work_mem = '7MB'; \
             ALTER DATABASE {d} SET search_path = \"$user\", public, \"odd, one\"; \
             ALTER ROLE {r} IN DATABASE {d} SET statement_timeout = '5s';",
            d = quote_ident(&db),
            r = quote_ident(&reader)
        ),
    );
    fill(c, &db);
    (db, owner, reader)
}

/// Everything about the database itself, with its name taken out.
fn properties(c: &Cluster, db: &str) -> String {
    let lit = db.replace('\'', "''");
    c.psql(
        "postgres",
        &format!(
            "SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, \
                    d.datlocprovider, (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(d.datacl) a), shobj_description(d.oid, 'pg_database'), \
                    (SELECT string_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '*') || ':' || array_to_string(s.setconfig, ';'), '|' ORDER BY s.setrole) \
                       FROM pg_db_role_setting s WHERE s.setdatabase = d.oid) \
             FROM pg_database d WHERE d.datname = '{lit}'"
        ),
    )
}

#[test]
fn database_properties_survive_a_restore_under_a_new_name() {
    let c = pg18();
    let (db, owner, reader) = database_with_properties(c);
    let ws = Workspace::new();
    let cfg = backup(&ws, c, &db, &pg18_bin());
    let copy = format!("{db} copy");
    ccbackup(&cfg, &["restore", "--target-db", &copy]).expect_ok();
    let want = properties(c, &db);
    assert!(
        want.contains(&owner) && want.contains(&reader) && want.contains("SQL_ASCII"),
        "{want}"
    );
    assert!(
        want.contains("work_mem=7MB") && want.contains("racks 'n' devices"),
        "{want}"
    );
    assert_eq!(properties(c, &copy), want);
    assert_eq!(fingerprint(c, &copy), fingerprint(c, &db));

    // --no-owner: the restoring user owns the copy; the rest is kept.
    let copy2 = format!("{db}_noowner");
    ccbackup(&cfg, &["restore", "--target-db", &copy2, "--no-owner"]).expect_ok();
    let got = properties(c, &copy2);
    assert!(got.starts_with("postgres|SQL_ASCII|C|C|c|"), "{got}");
    assert!(got.contains(&format!("{reader}=c/")), "{got}");
}

#[test]
fn database_properties_survive_the_sql_path_onto_16() {
    let c = pg16();
    let (db, _, _) = database_with_properties(c);
    let ws = Workspace::new();
    let cfg = backup(&ws, c, &db, &pg18_bin());
    let copy = format!("{db}_copy");
    ccbackup(&cfg, &["restore", "--target-db", &copy]).expect_ok();
    assert_eq!(properties(c, &copy), properties(c, &db));
    assert_eq!(fingerprint(c, &copy), fingerprint(c, &db));
}

#[test]
fn a_failing_sql_path_restore_leaves_the_target_unchanged() {
    // `--clean` into a target whose schema `app` holds a table of its own:
    // `DROP SCHEMA app` fails half-way through the script, inside psql's
    // one transaction, so nothing of the restore may remain.
    let c = pg16();
    let ws = Workspace::new();
    let db = unique("ver_fail");
    c.create_db(&db);
    fill(c, &db);
    let cfg = backup(&ws, c, &db, &pg18_bin());
    let target = format!("{db}_t");
    c.create_db(&target);
    c.psql(
        &target,
        "CREATE SCHEMA app; CREATE TABLE app.keep (x int); INSERT INTO app.keep VALUES (1)",
    );
    let run = ccbackup(&cfg, &["restore", "--target-db", &target, "--clean"]);
    assert_eq!(run.code(), Some(1), "{}", run.stdout());
    assert!(run.stderr().contains("psql"), "{}", run.stderr());
    assert_eq!(
        c.psql(&target, "SELECT string_agg(format('%I.%I', relnamespace::regnamespace, relname), ',' ORDER BY 1) FROM pg_class WHERE relkind = 'r' AND relnamespace <> 'pg_catalog'::regnamespace AND relnamespace <> 'information_schema'::regnamespace"),
        "app.keep"
    );
}

#[test]
fn whole_server_restore_onto_a_fresh_18_cluster() {
    // The upgrade runbook: a `databases: all` backup (with globals) of a 16
    // server restored onto a brand-new 18 one.
    let old = Cluster::start(16, &pg16_server_bin()).expect("a fresh PostgreSQL 16 cluster");
    let new = Cluster::start(18, &pg18_bin()).expect("a fresh PostgreSQL 18 cluster");
    old.psql("postgres", "CREATE ROLE \"www-data\" LOGIN; CREATE TABLE public.in_postgres (x int); INSERT INTO in_postgres VALUES (42)");
    old.psql("postgres", "CREATE DATABASE \"ct-vis\" OWNER \"www-data\"");
    fill(&old, "ct-vis");
    old.psql("postgres", "CREATE DATABASE second");
    old.psql(
        "second",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g",
    );
    let ws = Workspace::new();
    let cfg = ws.config(&job_config(
        &ws.store_url(),
        &pg_source("db", old.port, "all", Some(&pg18_bin()), ""),
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let cfg18 = restore_config(&ws, &new, &pg18_bin());

    // Without --allow-system-db the refusal says what to add, before
    // anything is applied.
    let run = ccbackup(&cfg18, &["restore", "--globals"]);
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr().contains("--allow-system-db"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        new.psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'www-data'"
        ),
        "0"
    );

    ccbackup(&cfg18, &["restore", "--globals", "--allow-system-db"]).expect_ok();
    for db in ["postgres", "ct-vis", "second"] {
        let want = fingerprint(&old, db);
        assert!(!want.is_empty(), "{db} has tables");
        assert_eq!(fingerprint(&new, db), want, "{db}");
    }
    assert_eq!(
        new.psql(
            "postgres",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'ct-vis'"
        ),
        "www-data"
    );
}
