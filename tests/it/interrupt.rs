//! Issue 9: every command survives SIGINT/SIGTERM: children (whole process
//! groups) stop, what the run wrote is removed, the lock is released, and
//! the exit status is 128 + signal.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::hardening::client_dir;
use crate::support::*;

fn spawn(cfg: &Path, args: &[&str]) -> Child {
    Command::new(bin())
        .arg("--config")
        .arg(cfg)
        .args(["--log-format", "text"])
        .args(args)
        .env_remove("CCBACKUP_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a file a wrapped client program writes when it starts.
fn wait_for_file(p: &Path, child: &mut Child) -> String {
    wait_until(&p.display().to_string(), Duration::from_secs(60), || {
        if let Ok(s) = std::fs::read_to_string(p) {
            if s.ends_with('\n') {
                return Some(s.trim().to_owned());
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output_now();
            panic!(
                "ccbackup exited ({status}) before {} appeared: {out}",
                p.display()
            );
        }
        None
    })
}

trait OutputNow {
    fn wait_with_output_now(&mut self) -> String;
}

impl OutputNow for Child {
    fn wait_with_output_now(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut o) = self.stdout.take() {
            let _ = o.read_to_string(&mut s);
        }
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn finish(mut child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output_now();
    let status = wait_until(
        &format!("ccbackup to stop after the signal ({out})"),
        Duration::from_secs(60),
        || child.try_wait().unwrap(),
    );
    (status.code(), out)
}

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// A client program that records its pid and the pid of a long `sleep` it
/// starts, then waits: stands in for a dump or restore still working (and
/// for the workers `pg_restore -j` forks).
fn stalling(pids: &Path) -> String {
    format!(
        "[ \"$1\" = --version ] && exec \"$REAL\" --version\nsleep 300 &\necho \"$!\" > {p}.tmp\nmv {p}.tmp {p}\nwait",
        p = pids.display()
    )
}

fn pg_cfg(ws: &Workspace, db: &str, bin_dir: &Path) -> PathBuf {
    ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: db\n        postgres:\n          host: {PG_HOST}\n          port: {PG_PORT}\n          user: postgres\n          databases: [\"{db}\"]\n          bin_dir: {}\n",
        ws.store_url(),
        bin_dir.display()
    ))
}

#[test]
fn regression_issue9_sigterm_stops_run_now_and_leaves_nothing() {
    let db = TestDb::create(&unique("intr_run"));
    db.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let tmp = tempfile::tempdir().unwrap();
    let pids = tmp.path().join("pids");
    let clients = client_dir(&[("pg_dump", &stalling(&pids))]);
    let ws = Workspace::new();
    let cfg = pg_cfg(&ws, &db.name, clients.path());
    let child = spawn(&cfg, &["run-now"]);
    let mut child = child;
    let sleeper = wait_for_file(&pids, &mut child);
    // The globals artifact was uploaded before pg_dump started.
    assert!(!ws.stored_files().is_empty());
    signal(&child, libc::SIGTERM);
    let (code, out) = finish(child);
    assert_eq!(code, Some(143), "{out}");
    assert!(out.contains("interrupted by SIGTERM"), "{out}");
    assert!(!alive(&sleeper), "the dump's process group survived");
    assert!(ws.manifests().is_empty());
    let left: Vec<PathBuf> = ws.stored_files();
    assert!(left.is_empty(), "objects left behind: {left:?}");
    // The lock was released: a new run starts at once (and is stopped again).
    std::fs::remove_file(&pids).unwrap();
    let mut again = spawn(&cfg, &["run-now"]);
    let sleeper = wait_for_file(&pids, &mut again);
    signal(&again, libc::SIGINT);
    let (code, out) = finish(again);
    assert_eq!(code, Some(130), "{out}");
    assert!(!alive(&sleeper));
}

#[test]
fn regression_issue9_interrupted_restore_kills_pg_restore_workers_and_drops_its_database() {
    let db = TestDb::create(&unique("intr_rst"));
    db.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let tmp = tempfile::tempdir().unwrap();
    let pids = tmp.path().join("pids");
    let clients = client_dir(&[("pg_restore", &stalling(&pids))]);
    let ws = Workspace::new();
    let cfg = pg_cfg(&ws, &db.name, clients.path());
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let target = unique("intr_target");
    let mut child = spawn(&cfg, &["restore", "--target-db", &target, "--jobs", "2"]);
    let sleeper = wait_for_file(&pids, &mut child);
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{target}'")
        ),
        "1",
        "the restore should have created its target by now"
    );
    signal(&child, libc::SIGINT);
    let (code, out) = finish(child);
    assert_eq!(code, Some(130), "{out}");
    assert!(!alive(&sleeper), "pg_restore's workers outlived ccbackup");
    assert!(out.contains("dropped again"), "{out}");
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{target}'")
        ),
        "0"
    );
}

#[test]
fn regression_issue9_failed_restore_drops_the_database_it_created() {
    let db = TestDb::create(&unique("fail_rst"));
    db.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let clients = client_dir(&[(
        "pg_restore",
        "[ \"$1\" = --version ] && exec \"$REAL\" --version\necho 'pg_restore: error: simulated failure' >&2\nexit 1",
    )]);
    let ws = Workspace::new();
    let cfg = pg_cfg(&ws, &db.name, clients.path());
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let target = unique("fail_target");
    let run = ccbackup(&cfg, &["restore", "--target-db", &target]);
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr().contains("simulated failure"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("dropped again"), "{}", run.stderr());
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{target}'")
        ),
        "0"
    );
}

#[test]
fn regression_issue9_interrupted_restore_test_drops_its_scratch_database() {
    let db = TestDb::create(&unique("intr_vfy"));
    db.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let tmp = tempfile::tempdir().unwrap();
    let pids = tmp.path().join("pids");
    let clients = client_dir(&[("pg_restore", &stalling(&pids))]);
    let ws = Workspace::new();
    let cfg = pg_cfg(&ws, &db.name, clients.path());
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let scratch = || {
        psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'ccbackup\\_verify\\_%'",
        )
    };
    let before = scratch();
    let mut child = spawn(&cfg, &["verify", "--restore-test"]);
    let sleeper = wait_for_file(&pids, &mut child);
    signal(&child, libc::SIGTERM);
    let (code, out) = finish(child);
    assert_eq!(code, Some(143), "{out}");
    assert!(!alive(&sleeper));
    assert_eq!(scratch(), before, "a scratch database was left: {out}");
}

#[test]
fn regression_issue9_restore_staging_is_private_and_removed() {
    let db = TestDb::create(&unique("staging"));
    db.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let tmp = tempfile::tempdir().unwrap();
    let seen = tmp.path().join("seen");
    // With --jobs the dump is decompressed into staging for pg_restore,
    // which gets its path as the last argument.
    let clients = client_dir(&[(
        "pg_restore",
        &format!(
            "[ \"$1\" = --version ] && exec \"$REAL\" --version\nfor a; do last=$a; done\nd=$(dirname \"$last\")\nstat -c %a \"$d\" \"$last\" > {s}\necho \"$d\" >> {s}\nexec \"$REAL\" \"$@\"",
            s = seen.display()
        ),
    )]);
    let ws = Workspace::new();
    let cfg = pg_cfg(&ws, &db.name, clients.path());
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let target = unique("staging_target");
    ccbackup(&cfg, &["restore", "--target-db", &target, "--jobs", "2"]).expect_ok();
    let seen = std::fs::read_to_string(&seen).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(&lines[..2], ["700", "600"], "staging modes: {seen}");
    assert!(
        !Path::new(lines[2]).exists(),
        "staging {} was not removed",
        lines[2]
    );
    psql(
        "postgres",
        &format!("DROP DATABASE {}", quote_ident(&target)),
    );
}
