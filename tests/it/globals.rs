//! `restore --globals`: real pg_dumpall output applied through the binary,
//! and tampered artifacts that must not run anything.
//!
//! Restoring real globals rewrites every role of the target cluster, so
//! those tests use a throwaway PostgreSQL 15 cluster; the tampered-artifact
//! tests only name roles of their own and use the shared server.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use crate::support_pg;

/// A throwaway trust-authenticated PostgreSQL 15 cluster, stopped and
/// removed when dropped.
struct Cluster {
    pg: support_pg::Cluster,
    port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let pg = support_pg::Cluster::start(15, &support_pg::pg15_bin())
            .unwrap_or_else(|e| panic!("throwaway PostgreSQL 15 cluster: {e}"));
        pg.postgres_dir("tablespace");
        let port = pg.port;
        Cluster { pg, port }
    }

    fn try_sql(&self, db: &str, sql: &str) -> Result<String, String> {
        self.pg.try_psql(db, sql)
    }

    #[track_caller]
    fn sql(&self, db: &str, sql: &str) -> String {
        self.try_sql(db, sql)
            .unwrap_or_else(|e| panic!("psql on port {}: {e}\nSQL: {sql}", self.port))
    }

    fn tablespace_dir(&self) -> PathBuf {
        self.pg.dir.join("tablespace")
    }

    /// A job backing up database `gdb` and the globals of this cluster.
    fn config(&self, ws: &Workspace) -> PathBuf {
        ws.config(&format!(
            "store:\n  url: {}\njobs:\n  - name: nightly\n    sources:\n      - name: db\n        postgres:\n          host: 127.0.0.1\n          port: {}\n          user: postgres\n          databases: [gdb]\n",
            ws.store_url(),
            self.port
        ))
    }

    fn role_exists(&self, role: &str) -> bool {
        self.sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"),
        ) == "1"
    }

    fn password_hash(&self, role: &str) -> String {
        self.sql(
            "postgres",
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"),
        )
    }
}

fn backup(cfg: &Path) {
    ccbackup(cfg, &["run-now"]).expect_ok();
}

fn output(run: &Run) -> String {
    format!("{}\n{}", run.stdout(), run.stderr())
}

#[test]
fn globals_round_trip_onto_a_rebuilt_server() {
    let c = Cluster::start();
    let ts = c.tablespace_dir();
    c.sql(
        "postgres",
        "CREATE ROLE app_owner LOGIN PASSWORD 'pw1'; CREATE ROLE readers; \
         GRANT readers TO app_owner; \
         COMMENT ON ROLE app_owner IS 'semi; colon and \\! not a command';",
    );
    c.sql(
        "postgres",
        &format!("CREATE TABLESPACE fast LOCATION '{}'", ts.display()),
    );
    c.sql("postgres", "CREATE DATABASE gdb");
    c.sql(
        "gdb",
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2); ALTER TABLE t OWNER TO app_owner;",
    );
    let ws = Workspace::new();
    let cfg = c.config(&ws);
    backup(&cfg);
    // The rebuilt server: the application's role, its tablespace and its
    // database are gone; `readers` was recreated by hand.
    c.sql("postgres", "DROP DATABASE gdb");
    c.sql("postgres", "DROP TABLESPACE fast");
    c.sql("postgres", "DROP ROLE app_owner");

    let dry = ccbackup(&cfg, &["restore", "--globals", "--dry-run"]);
    dry.expect_ok();
    let out = dry.stdout();
    assert!(out.contains("would create roles: `app_owner`"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("existing roles (not created again)")
                && l.contains("`readers`")
                && l.contains("`postgres`")),
        "{out}"
    );
    assert!(out.contains("would create tablespaces: `fast`"), "{out}");
    assert!(!c.role_exists("app_owner"), "a dry run executed something");
    assert_eq!(
        c.sql(
            "postgres",
            "SELECT count(*) FROM pg_tablespace WHERE spcname = 'fast'"
        ),
        "0"
    );

    let run = ccbackup(&cfg, &["restore", "--globals"]);
    run.expect_ok();
    let out = run.stdout();
    assert!(out.contains("role `readers` already exists; kept"), "{out}");
    assert!(
        out.contains("role `postgres` already exists; kept"),
        "{out}"
    );
    assert!(out.contains("restored database `gdb`"), "{out}");
    assert!(!output(&run).contains("SCRAM-SHA-256$"), "{}", output(&run));
    assert_eq!(
        c.sql(
            "postgres",
            "SELECT rolcanlogin, pg_has_role('app_owner', 'readers', 'MEMBER'), \
             shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = 'app_owner'"
        ),
        "t|t|semi; colon and \\! not a command"
    );
    assert_eq!(
        c.sql(
            "postgres",
            "SELECT count(*) FROM pg_tablespace WHERE spcname = 'fast'"
        ),
        "1"
    );
    // The database restore found the role the globals created.
    assert_eq!(
        c.sql(
            "gdb",
            "SELECT tableowner FROM pg_tables WHERE tablename = 't'"
        ),
        "app_owner"
    );

    // Running it again changes nothing and fails nothing: the role and the
    // tablespace now exist.
    c.sql("postgres", "DROP DATABASE gdb");
    let again = ccbackup(&cfg, &["restore", "--globals"]);
    again.expect_ok();
    let out = again.stdout();
    assert!(
        out.contains("role `app_owner` already exists; kept"),
        "{out}"
    );
    assert!(
        out.contains("tablespace `fast` already exists; kept"),
        "{out}"
    );
}

#[test]
fn keep_role_passwords_keeps_an_existing_roles_password() {
    let c = Cluster::start();
    c.sql(
        "postgres",
        "CREATE ROLE svc LOGIN PASSWORD 'from the backup'",
    );
    c.sql("postgres", "CREATE DATABASE gdb");
    let ws = Workspace::new();
    let cfg = c.config(&ws);
    backup(&cfg);
    let backed_up = c.password_hash("svc");
    c.sql(
        "postgres",
        "ALTER ROLE svc PASSWORD 'set on the rebuilt server'",
    );
    let rebuilt = c.password_hash("svc");
    assert_ne!(backed_up, rebuilt);

    c.sql("postgres", "DROP DATABASE gdb");
    let dry = ccbackup(
        &cfg,
        &["restore", "--globals", "--keep-role-passwords", "--dry-run"],
    );
    dry.expect_ok();
    assert!(
        dry.stdout()
            .contains("`svc` would get the backup's attributes; its password would be kept"),
        "{}",
        dry.stdout()
    );
    let dry = ccbackup(&cfg, &["restore", "--globals", "--dry-run"]);
    dry.expect_ok();
    assert!(
        dry.stdout()
            .contains("`svc` would get the backup's attributes; its password would be REPLACED"),
        "{}",
        dry.stdout()
    );
    assert_eq!(c.password_hash("svc"), rebuilt, "a dry run changed it");

    let run = ccbackup(&cfg, &["restore", "--globals", "--keep-role-passwords"]);
    run.expect_ok();
    assert!(
        run.stdout()
            .contains("role `svc`: password kept (--keep-role-passwords)"),
        "{}",
        run.stdout()
    );
    assert_eq!(c.password_hash("svc"), rebuilt);

    c.sql("postgres", "DROP DATABASE gdb");
    let run = ccbackup(&cfg, &["restore", "--globals"]);
    run.expect_ok();
    assert_eq!(c.password_hash("svc"), backed_up);
    assert!(!output(&run).contains("SCRAM-SHA-256$"), "{}", output(&run));
}

/// A backup of a shared-server database whose artifacts the test rewrites.
struct Tampered {
    ws: Workspace,
    cfg: PathBuf,
    _db: TestDb,
}

/// Drops the listed roles from the shared server, even when a test fails.
struct RoleGuard(Vec<String>);

impl Drop for RoleGuard {
    fn drop(&mut self) {
        for r in &self.0 {
            let _ = Command::new("psql")
                .args(["-X", "-q", "-h", PG_HOST, "-p", &PG_PORT.to_string()])
                .args(["-U", "postgres", "-d", "postgres", "-c"])
                .arg(format!("DROP ROLE IF EXISTS {}", quote_ident(r)))
                .output();
        }
    }
}

fn role_exists(role: &str) -> bool {
    psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"),
    ) == "1"
}

impl Tampered {
    fn new() -> Tampered {
        let db = TestDb::create(&unique("globals_tamper"));
        let ws = Workspace::new();
        let cfg = ws.config(&format!(
            "store:\n  url: {}\njobs:\n  - name: nightly\n    sources:\n{}",
            ws.store_url(),
            postgres_source("db", &[&db.name])
        ));
        backup(&cfg);
        Tampered { ws, cfg, _db: db }
    }

    fn replace_globals(&self, text: &str) {
        replace_globals(&self.ws, text);
    }

    fn restore(&self, extra: &[&str]) -> Run {
        let mut args = vec!["restore", "--globals"];
        args.extend_from_slice(extra);
        ccbackup(&self.cfg, &args)
    }
}

/// Replaces the stored globals with `text` the way an attacker with write
/// access to the bucket would: new artifact, manifest checksum and sizes
/// fixed up. The dumps are dropped from the manifest so that a restore only
/// concerns the globals.
fn replace_globals(ws: &Workspace, text: &str) {
    let mpath = ws.manifests().remove(0);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let arts = m["artifacts"].as_array_mut().unwrap();
    arts.retain(|a| a["kind"] != "pg_dump");
    let g = arts.iter_mut().find(|a| a["kind"] == "pg_globals").unwrap();
    let path = mpath.parent().unwrap().join(g["key"].as_str().unwrap());
    assert!(path.exists(), "{}", path.display());
    let compressed = zstd::stream::encode_all(text.as_bytes(), 3).unwrap();
    std::fs::write(&path, &compressed).unwrap();
    g["sha256"] = serde_json::json!(sha256_file(&path));
    g["stored_bytes"] = serde_json::json!(compressed.len());
    g["raw_bytes"] = serde_json::json!(text.len());
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[test]
fn regression_issue22_keep_role_passwords_covers_current_user_and_friends() {
    let c = Cluster::start();
    c.sql("postgres", "ALTER ROLE postgres PASSWORD 'the real one'");
    c.sql("postgres", "CREATE DATABASE gdb");
    let ws = Workspace::new();
    let cfg = c.config(&ws);
    backup(&cfg);
    let before = c.password_hash("postgres");
    for who in ["CURRENT_USER", "SESSION_USER", "CURRENT_ROLE"] {
        replace_globals(
            &ws,
            &format!(
                "ALTER ROLE {who} WITH PASSWORD 'planted';\nCREATE ROLE planted_login;\nALTER ROLE planted_login WITH LOGIN PASSWORD 'planted';\n"
            ),
        );
        let args = ["restore", "--globals", "--keep-role-passwords"];
        let dry = ccbackup(&cfg, &[&args[..], &["--dry-run"]].concat());
        dry.expect_ok();
        let out = dry.stdout();
        assert!(
            out.contains("existing role `postgres` would get the backup's attributes; its password would be kept"),
            "{who}: {out}"
        );
        assert!(
            out.contains("new roles that would get the backup's password: `planted_login`"),
            "{who}: {out}"
        );
        let dry = ccbackup(&cfg, &["restore", "--globals", "--dry-run"]);
        assert!(
            dry.stdout().contains(
                "`postgres` would get the backup's attributes; its password would be REPLACED"
            ),
            "{who}: {}",
            dry.stdout()
        );
        let run = ccbackup(&cfg, &args);
        run.expect_ok();
        assert_eq!(c.password_hash("postgres"), before, "{who} replaced it");
        c.sql("postgres", "DROP ROLE planted_login");
    }
}

#[test]
fn tampered_globals_run_nothing_and_name_the_line() {
    let t = Tampered::new();
    for variant in ["meta-command", "copy to program"] {
        let role = unique("globals_first_role");
        let _guard = RoleGuard(vec![role.clone(), format!("other_{role}")]);
        let marker = std::env::temp_dir().join(unique("ccbackup-globals-pwned"));
        let attack = match variant {
            "meta-command" => format!("\\! touch {}", marker.display()),
            _ => format!("COPY (SELECT 1) TO PROGRAM 'touch {}';", marker.display()),
        };
        t.replace_globals(&format!(
            "SET client_encoding = 'UTF8';\nCREATE ROLE {role};\n\n{attack}\nCREATE ROLE other_{role};\n"
        ));
        for extra in [&[][..], &["--dry-run"]] {
            let run = t.restore(extra);
            assert_eq!(run.code(), Some(1), "{variant} {extra:?}: {}", output(&run));
            let err = run.stderr();
            assert!(err.contains("nothing was executed"), "{err}");
            assert!(err.contains("line 4"), "{err}");
            let named = match variant {
                "meta-command" => "`\\!`",
                _ => "`COPY`",
            };
            assert!(err.contains(named), "{err}");
            assert!(!marker.exists(), "{variant}: the attack ran");
            assert!(
                !role_exists(&role),
                "{variant}: a statement before the bad line was executed"
            );
        }
    }
}

#[test]
fn failing_statements_are_all_reported_and_the_rest_applies() {
    let t = Tampered::new();
    let role = unique("globals_grantee");
    let missing = unique("globals_missing");
    let _guard = RoleGuard(vec![role.clone()]);
    t.replace_globals(&format!(
        "SET default_transaction_read_only = off;\n\
         CREATE ROLE {role};\n\
         GRANT {missing} TO {role} GRANTED BY postgres;\n\
         COMMENT ON ROLE {role} IS 'applied after a failure';\n\
         ALTER ROLE {missing} WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:not-for-logs';\n\
         CREATE ROLE postgres;\n"
    ));
    let run = t.restore(&[]);
    assert_eq!(run.code(), Some(1), "{}", output(&run));
    let err = run.stderr();
    assert!(err.contains("2 of 6 statements failed"), "{err}");
    assert!(
        err.contains(&format!("line 3: GRANT `{missing}`"))
            && err.contains(&format!("role \"{missing}\" does not exist")),
        "{err}"
    );
    assert!(
        err.contains(&format!("line 5: ALTER ROLE `{missing}`")),
        "{err}"
    );
    assert!(err.contains("PASSWORD '***'"), "{err}");
    assert!(!output(&run).contains("not-for-logs"), "{}", output(&run));
    assert!(
        err.contains("role `postgres` already exists; kept"),
        "{err}"
    );
    // Execution went on after the failure.
    assert_eq!(
        psql(
            "postgres",
            &format!(
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = '{role}'"
            )
        ),
        "applied after a failure"
    );
}
