//! Password handling against a throwaway cluster that really checks
//! passwords (the shared test server trusts loopback), and pg_dump version
//! selection.

use std::path::PathBuf;
use std::process::Command;

use crate::support::*;
use crate::support_pg;

const PASSWORD: &str = "correct horse \"battery\" staple";

/// A throwaway scram-authenticated PostgreSQL 15 cluster, stopped and
/// removed when dropped.
struct Cluster {
    pg: support_pg::Cluster,
    port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let pg = support_pg::Cluster::start_with(
            15,
            &support_pg::pg15_bin(),
            support_pg::Auth::Password(PASSWORD),
        )
        .unwrap_or_else(|e| panic!("throwaway PostgreSQL 15 cluster: {e}"));
        let port = pg.port;
        Cluster { pg, port }
    }

    fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        self.pg.try_psql(db, sql)
    }

    fn secret_file(&self, content: &str) -> PathBuf {
        let p = self.pg.dir.join(format!("secret-{}", unique("s")));
        std::fs::write(&p, format!("{content}\n")).unwrap();
        p
    }
}

fn config(ws: &Workspace, port: u16, password_line: &str) -> PathBuf {
    ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: db\n        postgres:\n          host: 127.0.0.1\n          port: {port}\n          user: postgres\n          {password_line}\n          databases: [ct-vis]\n",
        ws.store_url()
    ))
}

#[test]
fn passwords_from_file_or_env_reach_pg_dump_and_never_leak() {
    let c = Cluster::start();
    c.psql("postgres", "CREATE DATABASE \"ct-vis\"").unwrap();
    c.psql("ct-vis", "CREATE TABLE t AS SELECT 1 AS x").unwrap();

    // Right password from a docker-secret style file: pg_dump and
    // pg_dumpall authenticate through PGPASSWORD, not argv.
    let ws = Workspace::new();
    let good = c.secret_file(PASSWORD);
    let cfg = config(&ws, c.port, &format!("password_file: {}", good.display()));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    assert_eq!(ws.manifests().len(), 1);

    // Right password from the environment.
    let ws = Workspace::new();
    let cfg = config(&ws, c.port, "password_env: CCBACKUP_TEST_PW");
    let out = Command::new(bin())
        .args(["--log-format", "text", "--config"])
        .arg(&cfg)
        .arg("run-now")
        .env("CCBACKUP_TEST_PW", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Wrong password: clear error, no manifest, the secret nowhere in output.
    let ws = Workspace::new();
    let wrong = "not-the-password-4711";
    let bad = c.secret_file(wrong);
    let cfg = config(&ws, c.port, &format!("password_file: {}", bad.display()));
    let run = ccbackup(&cfg, &["run-now"]);
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr().contains("password authentication failed"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains(wrong) && !run.stdout().contains(wrong));
    assert!(ws.manifests().is_empty());
}

#[test]
fn pg_dump_older_than_the_server_is_refused_naming_both_versions() {
    // A bin_dir whose pg_dump claims version 14: too old for the 15 server.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("pg_dump");
    std::fs::write(&fake, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 14.11'\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: db\n        postgres:\n          host: {PG_HOST}\n          port: {PG_PORT}\n          user: postgres\n          databases: [postgres]\n          bin_dir: {}\n",
        ws.store_url(),
        dir.path().display()
    ));
    let run = ccbackup(&cfg, &["run-now"]);
    assert_eq!(run.code(), Some(1));
    let err = run.stderr();
    assert!(
        err.contains("no pg_dump of major version 15 or newer"),
        "{err}"
    );
    assert!(err.contains("14.11"), "{err}");
    assert!(ws.manifests().is_empty());
}
