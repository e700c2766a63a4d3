//! Shared test helpers: the real PostgreSQL server, the real binary, temp
//! stores. Every helper fails loudly when a prerequisite is missing.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PG_HOST: &str = "127.0.0.1";
pub const PG_PORT: u16 = 5432;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ccbackup")
}

/// A unique suffix so tests running in parallel never share a database.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn require_tool(name: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "required tool `{name}` is not installed; run `bash .ci/run` once to install test prerequisites"
    );
}

/// Runs psql against the shared server as the superuser `postgres`.
pub fn psql(db: &str, sql: &str) -> String {
    require_tool("psql");
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", PG_HOST])
        .args(["-p", &PG_PORT.to_string(), "-U", "postgres", "-d", db])
        .arg("-c")
        .arg(sql)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed on {db}: {}\nSQL: {sql}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits (up to 30 s) until some session of `db` holds an ACCESS
/// EXCLUSIVE lock on `table`, as the server's `pg_locks` shows it, so a
/// test knows a blocking session really blocks before relying on it.
pub fn wait_for_table_lock(db: &str, table: &str) {
    let sql = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = '{table}' AND l.mode = 'AccessExclusiveLock' AND l.granted \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = '{db}')"
    );
    wait_until(
        &format!("a session of {db} to lock {table}"),
        std::time::Duration::from_secs(30),
        || psql(db, &sql) == "1",
    );
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A database that is dropped when the guard goes out of scope.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn create(name: &str) -> TestDb {
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {}", quote_ident(name)),
        );
        psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        );
        TestDb {
            name: name.to_owned(),
        }
    }

    pub fn sql(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-q", "-h", PG_HOST, "-p", &PG_PORT.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.name)
            ))
            .output();
    }
}

/// Fills a database with the kinds of data Concertim and others hold:
/// several schemas, jsonb, bytea, a sequence, unicode text.
pub fn fill_mixed(db: &TestDb) {
    db.sql(
        r#"
        CREATE SCHEMA app;
        CREATE SCHEMA "odd schema";
        CREATE TABLE app.racks (id bigserial PRIMARY KEY, name text NOT NULL, meta jsonb, blob bytea);
        INSERT INTO app.racks (name, meta, blob)
          SELECT 'rack ' || g || ' ☃', jsonb_build_object('u', g, 'tags', jsonb_build_array('a', g)),
                 decode(md5(g::text), 'hex')
          FROM generate_series(1, 500) g;
        CREATE TABLE "odd schema"."Devices:x" (id int, label text);
        INSERT INTO "odd schema"."Devices:x" SELECT g, 'dévice ' || g FROM generate_series(1, 37) g;
        CREATE TABLE public.empty_table (id int);
        "#,
    );
}

pub struct Run {
    pub out: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn ok(&self) -> bool {
        self.out.status.success()
    }
    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
    #[track_caller]
    pub fn expect_ok(&self) -> &Self {
        assert!(
            self.ok(),
            "ccbackup failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Runs the ccbackup binary with a config file.
pub fn ccbackup(config: &Path, args: &[&str]) -> Run {
    let out = Command::new(bin())
        .arg("--config")
        .arg(config)
        .arg("--log-format")
        .arg("text")
        .args(args)
        .env_remove("CCBACKUP_CONFIG")
        .output()
        .expect("run ccbackup");
    Run { out }
}

/// A temp directory holding a config file and a `file://` store.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store_dir(&self) -> PathBuf {
        self.path().join("store")
    }

    pub fn store_url(&self) -> String {
        format!("file://{}", self.store_dir().display())
    }

    /// Writes `config.yaml` with the given body and returns its path.
    pub fn config(&self, body: &str) -> PathBuf {
        let p = self.path().join("config.yaml");
        std::fs::write(&p, body).expect("write config");
        p
    }

    /// Every manifest file under the store.
    pub fn manifests(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.store_dir(), &mut |p| {
            if p.file_name().is_some_and(|n| n == "manifest.json") {
                out.push(p.to_owned());
            }
        });
        out
    }

    /// Every regular file under the store.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.store_dir(), &mut |p| out.push(p.to_owned()));
        out
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, f);
        } else {
            f(&p);
        }
    }
}

pub fn postgres_source(name: &str, databases: &[&str]) -> String {
    let list: Vec<String> = databases
        .iter()
        .map(|d| format!("\"{}\"", d.replace('"', "\\\"")))
        .collect();
    format!(
        "      - name: {name}\n        postgres:\n          host: {PG_HOST}\n          port: {PG_PORT}\n          user: postgres\n          databases: [{}]\n",
        list.join(", ")
    )
}

pub fn sha256_file(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(p).expect("read");
    hex::encode(Sha256::digest(&bytes))
}

/// Decompresses a zstd file completely.
pub fn unzstd(p: &Path) -> Vec<u8> {
    let f = std::fs::File::open(p).expect("open");
    zstd::stream::decode_all(f).expect("zstd decode")
}

/// `ccbackup keys generate DIR` (no configuration): a fresh age identity
/// and recipient and minisign key pair in the new directory `dir`.
pub fn keys_generate(dir: &Path) {
    let out = Command::new(bin())
        .args(["keys", "generate"])
        .arg(dir)
        .env("CCBACKUP_CONFIG", "/nonexistent")
        .output()
        .expect("run ccbackup keys generate");
    assert!(
        out.status.success(),
        "keys generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------ waiting --

/// What a probe of [`wait_until`] returns: ready (with a value) or not yet
/// (with what it saw, for the failure message).
pub trait Probe {
    type Value;
    fn ready(self) -> Result<Self::Value, Option<String>>;
}

impl Probe for bool {
    type Value = ();
    fn ready(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Probe for Option<T> {
    type Value = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

/// `Err(seen)` is "not yet", and the last `seen` is in the failure message.
impl<T, E: std::fmt::Display> Probe for Result<T, E> {
    type Value = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

/// How often a probe runs: fast enough that tests wait little past the
/// moment, slow enough not to load the shared machine.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

#[track_caller]
fn timed_out(what: &str, limit: std::time::Duration, seen: Option<String>) -> ! {
    match seen {
        Some(s) => panic!("timed out after {limit:?} waiting for {what}; last saw: {s}"),
        None => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Runs `probe` until it is ready and returns its value, or, once `limit`
/// (real time) has passed, what it last saw. For code under test in other
/// threads or processes, never on the calling thread's runtime (use
/// [`poll_for_async`] there).
pub fn poll_for<P: Probe>(
    limit: std::time::Duration,
    mut probe: impl FnMut() -> P,
) -> Result<P::Value, Option<String>> {
    let start = std::time::Instant::now();
    loop {
        match probe().ready() {
            Ok(v) => return Ok(v),
            Err(seen) if start.elapsed() >= limit => return Err(seen),
            Err(_) => std::thread::sleep(POLL_EVERY),
        }
    }
}

/// [`poll_for`] that fails the test, naming `what`, when time runs out.
#[track_caller]
pub fn wait_until<P: Probe>(
    what: &str,
    limit: std::time::Duration,
    probe: impl FnMut() -> P,
) -> P::Value {
    poll_for(limit, probe).unwrap_or_else(|seen| timed_out(what, limit, seen))
}

/// [`poll_for`] for async tests: it sleeps on tokio's timer, so tasks of
/// the same runtime (an in-process daemon) run meanwhile. Under paused
/// time each sleep moves virtual time; `limit` stays real time, a
/// backstop against a hang.
pub async fn poll_for_async<P: Probe>(
    limit: std::time::Duration,
    mut probe: impl FnMut() -> P,
) -> Result<P::Value, Option<String>> {
    let start = std::time::Instant::now();
    loop {
        match probe().ready() {
            Ok(v) => return Ok(v),
            Err(seen) if start.elapsed() >= limit => return Err(seen),
            Err(_) => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}

/// [`poll_for_async`] that fails the test, naming `what`, when time runs out.
pub async fn wait_until_async<P: Probe>(
    what: &str,
    limit: std::time::Duration,
    probe: impl FnMut() -> P,
) -> P::Value {
    match poll_for_async(limit, probe).await {
        Ok(v) => v,
        Err(seen) => timed_out(what, limit, seen),
    }
}

// ----------------------------------------------------------- loopback --

/// A TCP port nothing listens on right now (the kernel's pick; another
/// process could take it before the test does, which the kernel makes rare
/// by not reusing ports at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// Where an HTTP helper connects: a loopback port or a full address.
pub trait Endpoint {
    fn socket_addr(&self) -> std::net::SocketAddr;
}

impl Endpoint for u16 {
    fn socket_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], *self))
    }
}

impl Endpoint for std::net::SocketAddr {
    fn socket_addr(&self) -> std::net::SocketAddr {
        *self
    }
}

/// The whole answer (status line, headers, body) to a plain HTTP/1.1 GET;
/// `None` while nothing listens there or when no complete answer comes
/// within `limit`.
pub fn http_get_raw(to: impl Endpoint, path: &str, limit: std::time::Duration) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(to.socket_addr()).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// `(status, body)` of a plain HTTP/1.1 GET; `None` while nothing listens
/// there.
pub fn http_get(to: impl Endpoint, path: &str) -> Option<(u16, String)> {
    let out = http_get_raw(to, path, std::time::Duration::from_secs(5))?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|x| x.1.to_owned())?;
    Some((status, body))
}

/// [`http_get`] from async code: the blocking socket runs on a blocking
/// thread, so a server on the same runtime can answer.
pub async fn http_get_async(to: impl Endpoint, path: &str) -> Option<(u16, String)> {
    let (to, path) = (to.socket_addr(), path.to_owned());
    tokio::task::spawn_blocking(move || http_get(to, &path))
        .await
        .expect("the GET thread panicked")
}
