//! Password handling against a throwaway cluster that really checks
//! passwords (the shared test server trusts loopback), and pg_dump version
//! selection.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const PASSWORD: &str = "correct horse \"battery\" staple";

/// A scram-authenticated cluster owned by the `postgres` OS user, stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        assert!(
            Path::new(PG_BIN).join("initdb").exists(),
            "PostgreSQL 15 server binaries are required: apt-get install postgresql"
        );
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(chown.success());
        let initdb = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join("initdb"))
            .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "{}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let start = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
                dir.path().display()
            ))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            start.status.success(),
            "{}",
            String::from_utf8_lossy(&start.stderr)
        );
        let c = Cluster { dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if c.psql("postgres", "SELECT 1").is_ok() {
                return c;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("throwaway cluster did not come up");
    }

    fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn secret_file(&self, content: &str) -> PathBuf {
        let p = self.dir.path().join(format!("secret-{}", unique("s")));
        std::fs::write(&p, format!("{content}\n")).unwrap();
        p
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
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
