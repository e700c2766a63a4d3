//! Repository lease lock against a real file:// store: contention, expiry
//! takeover, release, and retries through a store that fails first. The
//! in-process tests run on paused tokio time with a clock that follows it,
//! so TTLs, renewals, backoff and the takeover settle take no real time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ccbackup::clock::Clock;
use ccbackup::repo::lock::{self, LockError};
use ccbackup::repo::store::{self, Repo};
use chrono::Utc;
use object_store::ObjectStoreExt;

use crate::support::*;
use crate::support_store::FaultyStore;

pub fn open_repo(ws: &Workspace) -> Repo {
    let cfg = ccbackup::config::parse(
        &format!(
            "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: /tmp}}\n",
            ws.store_url()
        ),
        &ws.path().join("config.yaml"),
    )
    .unwrap();
    store::open(&cfg.store).unwrap()
}

/// Writes another owner's lease for `job`, expiring at `expires`.
pub async fn plant_lease(repo: &Repo, job: &str, owner: &str, expires: chrono::DateTime<Utc>) {
    repo.store
        .put(
            &lock::lease_path(job),
            lock::lease_json(owner, "other-host", expires).into(),
        )
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn second_owner_is_refused_with_holder_and_expiry_then_gets_it_after_release() {
    let ws = Workspace::new();
    let (repo, _) = paused_repo(&ws);
    let ttl = Duration::from_secs(30);
    let first = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| {})
        .await
        .unwrap();
    let mut waits = 0;
    let err = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| waits += 1)
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Held { .. }), "{err}");
    assert_eq!(waits, 1);
    let msg = err.to_string();
    assert!(msg.contains(first.owner()), "{msg}");
    assert!(msg.contains("until 20"), "{msg}");

    first.release().await.unwrap();
    assert!(lock::current(&repo, "j").await.unwrap().is_none());
    let second = lock::acquire(&repo, "j", ttl, "prune", Duration::ZERO, |_| {})
        .await
        .unwrap();
    let lease = lock::current(&repo, "j").await.unwrap().unwrap();
    assert_eq!(lease.owner, second.owner());
    assert_eq!(lease.purpose, "prune");
    second.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn unexpired_foreign_lease_is_respected_and_expired_one_taken_over() {
    let ws = Workspace::new();
    let (repo, clock) = paused_repo(&ws);
    let ttl = Duration::from_secs(30);
    plant_lease(
        &repo,
        "j",
        "other-sidecar",
        clock.now() + chrono::Duration::hours(1),
    )
    .await;
    let err = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("other-sidecar"), "{err}");
    assert_eq!(
        lock::current(&repo, "j").await.unwrap().unwrap().owner,
        "other-sidecar"
    );

    plant_lease(
        &repo,
        "j",
        "crashed-sidecar",
        clock.now() - chrono::Duration::seconds(5),
    )
    .await;
    let g = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| {})
        .await
        .unwrap();
    assert_eq!(
        lock::current(&repo, "j").await.unwrap().unwrap().owner,
        g.owner()
    );
    g.release().await.unwrap();
}

/// The repository of `ws` on a clock that follows tokio's paused time, so
/// a test moves lease expiry and the renewal timers together.
fn paused_repo(ws: &Workspace) -> (Repo, Clock) {
    let clock = Clock::following_tokio(Utc::now());
    (open_repo(ws).with_clock(clock.clone()), clock)
}

#[tokio::test(start_paused = true)]
async fn waiting_acquirer_gets_the_lock_when_the_holder_releases() {
    let ws = Workspace::new();
    let (repo, _) = paused_repo(&ws);
    let ttl = Duration::from_secs(3);
    let first = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| {})
        .await
        .unwrap();
    let repo2 = repo.clone();
    let (waiting_tx, mut waiting) = tokio::sync::mpsc::unbounded_channel();
    let waiter = tokio::spawn(async move {
        let mut waits = 0u32;
        let g = lock::acquire(&repo2, "j", ttl, "backup", Duration::from_secs(20), |_| {
            waits += 1;
            let _ = waiting_tx.send(());
        })
        .await;
        (g, waits)
    });
    // Release only once the waiter has found the lock held.
    waiting.recv().await.unwrap();
    first.release().await.unwrap();
    let (g, waits) = waiter.await.unwrap();
    let g = g.unwrap();
    assert!(waits >= 1);
    g.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn lease_is_renewed_while_held() {
    let ws = Workspace::new();
    let (repo, clock) = paused_repo(&ws);
    let ttl = Duration::from_secs(3);
    let t0 = clock.now();
    let g = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| {})
        .await
        .unwrap();
    let first = lock::current(&repo, "j").await.unwrap().unwrap().expires;
    assert_eq!(first, rfc3339(t0 + chrono::Duration::seconds(3)));
    // Well past the original expiry: renewals (every second) keep it ours.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let later = lock::current(&repo, "j").await.unwrap().unwrap();
    assert_eq!(later.owner, g.owner());
    assert!(
        later.expires >= rfc3339(t0 + chrono::Duration::seconds(12)),
        "{} should be about {}",
        later.expires,
        rfc3339(clock.now() + chrono::Duration::seconds(3))
    );
    assert!(!g.lost().is_cancelled());
    let err = lock::acquire(&repo, "j", ttl, "backup", Duration::ZERO, |_| {})
        .await
        .unwrap_err();
    assert!(err.is_held());
    g.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_waiter_takes_over_a_foreign_lease_when_it_expires_not_before() {
    let ws = Workspace::new();
    let (repo, clock) = paused_repo(&ws);
    let expires = clock.now() + chrono::Duration::seconds(60);
    plant_lease(&repo, "j", "crashed-sidecar", expires).await;
    let mut waits = 0u32;
    let g = lock::acquire(
        &repo,
        "j",
        Duration::from_secs(30),
        "backup",
        Duration::from_secs(600),
        |e| {
            waits += 1;
            assert!(e.to_string().contains("crashed-sidecar"), "{e}");
        },
    )
    .await
    .unwrap();
    let took = clock.now();
    // Polled every ttl/6 = 5 s until the lease expired, then took it over
    // (plus the settle time of the takeover check).
    assert!(took >= expires, "taken over at {took}, before {expires}");
    assert!(
        took < expires + chrono::Duration::seconds(6),
        "{took} vs {expires}"
    );
    assert!(waits >= 11, "{waits}");
    assert_eq!(
        lock::current(&repo, "j").await.unwrap().unwrap().owner,
        g.owner()
    );
    g.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_cannot_renew_loses_the_lock_after_its_ttl() {
    let ws = Workspace::new();
    let (mut repo, clock) = paused_repo(&ws);
    let store = repo.store.clone();
    let switch = FaultyStore::failing_first(store, 0);
    repo.store = switch.clone();
    let t0 = clock.now();
    let g = lock::acquire(
        &repo,
        "j",
        Duration::from_secs(30),
        "backup",
        Duration::ZERO,
        |_| {},
    )
    .await
    .unwrap();
    switch.broken.store(true, Ordering::SeqCst);
    let lost = g.lost();
    tokio::time::timeout(Duration::from_secs(120), lost.cancelled())
        .await
        .expect("the guard was never marked lost");
    // Renewals every 10 s fail; the guard gives up once a whole TTL has
    // passed since the last good one, before anyone could take it over.
    let after = clock.now() - t0;
    assert!(
        after >= chrono::Duration::seconds(30) && after <= chrono::Duration::seconds(40),
        "{after}"
    );
    switch.broken.store(false, Ordering::SeqCst);
    g.release().await.unwrap();
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(start_paused = true)]
async fn transient_store_failures_are_retried_during_acquisition() {
    let ws = Workspace::new();
    let (mut repo, _) = paused_repo(&ws);
    let flaky = FaultyStore::failing_first(repo.store.clone(), 3);
    repo.store = flaky.clone();
    let g = lock::acquire(
        &repo,
        "j",
        Duration::from_secs(30),
        "backup",
        Duration::ZERO,
        |_| {},
    )
    .await
    .unwrap();
    assert!(flaky.calls.load(Ordering::SeqCst) >= 4);
    g.release().await.unwrap();

    // A permanent failure is not retried.
    let flaky = FaultyStore::denying_everything();
    repo.store = flaky.clone();
    let err = lock::acquire(
        &repo,
        "j",
        Duration::from_secs(30),
        "backup",
        Duration::ZERO,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(!err.is_held(), "{err}");
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
}

// ---- The real binary: leases left by processes that are gone ----

/// What this test process's kernel and namespace look like, read from
/// /proc directly (not through ccbackup's own code).
struct HostFacts {
    host: String,
    boot_id: String,
    pid_ns: u64,
}

fn host_facts() -> HostFacts {
    let read = |p: &str| std::fs::read_to_string(p).unwrap().trim().to_owned();
    let ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let ns = ns.to_string_lossy();
    HostFacts {
        host: read("/proc/sys/kernel/hostname"),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        pid_ns: ns
            .trim_start_matches("pid:[")
            .trim_end_matches(']')
            .parse()
            .unwrap(),
    }
}

/// Field 22 of /proc/<pid>/stat.
fn start_time_of(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A pid that has just exited (and was reaped).
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// A `sleep` that lives until dropped.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn spawn() -> Sleeper {
        Sleeper(
            std::process::Command::new("sleep")
                .arg("600")
                .spawn()
                .unwrap(),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A lease as a ccbackup on `facts`'s host with `pid` would write it,
/// valid for another hour.
fn same_host_lease(facts: &HostFacts, owner: &str, pid: u32, start_time: u64) -> String {
    serde_json::json!({
        "owner": owner,
        "host": facts.host,
        "pid": pid,
        "purpose": "backup",
        "acquired": Utc::now().to_rfc3339(),
        "expires": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        "boot_id": facts.boot_id,
        "pid_ns": facts.pid_ns,
        "start_time": start_time,
    })
    .to_string()
}

fn lease_file(ws: &Workspace) -> std::path::PathBuf {
    ws.store_dir().join("locks/j.json")
}

fn write_lease(ws: &Workspace, text: &str) {
    std::fs::create_dir_all(ws.store_dir().join("locks")).unwrap();
    std::fs::write(lease_file(ws), text).unwrap();
}

/// One job `j` backing up a small directory; short lock TTL so waiting
/// polls often.
fn files_config(ws: &Workspace) -> std::path::PathBuf {
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), b"hello").unwrap();
    ws.config(&format!(
        "store:\n  url: {}\ndaemon:\n  lock_ttl: 6s\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.display()
    ))
}

#[test]
fn lease_of_a_gone_same_host_holder_is_taken_over_at_once_with_a_warning() {
    let facts = host_facts();
    let me = std::process::id();
    let cases = [
        ("exited", dead_pid(), 12345, "no process has pid"),
        // Our own pid is alive but started at another tick: a reused pid.
        (
            "reused",
            me,
            start_time_of(me) + 1,
            "is now another process",
        ),
    ];
    for (what, pid, start, reason) in cases {
        let ws = Workspace::new();
        let cfg = files_config(&ws);
        let owner = format!("gone-{what}");
        write_lease(&ws, &same_host_lease(&facts, &owner, pid, start));
        let run = ccbackup(&cfg, &["run-now"]);
        run.expect_ok();
        let err = run.stderr();
        assert!(
            err.contains("taking over the lock of a holder that is gone"),
            "{what}: {err}"
        );
        assert!(
            err.contains(&owner) && err.contains(reason),
            "{what}: {err}"
        );
        assert_eq!(ws.manifests().len(), 1, "{what}");
        assert!(!lease_file(&ws).exists(), "{what}: released after the run");
    }

    // Another boot of this host: every process of it is gone.
    let ws = Workspace::new();
    let cfg = files_config(&ws);
    let rebooted = HostFacts {
        boot_id: "00000000-0000-0000-0000-000000000000".to_owned(),
        ..host_facts()
    };
    write_lease(
        &ws,
        &same_host_lease(&rebooted, "before-reboot", me, start_time_of(me)),
    );
    let run = ccbackup(&cfg, &["run-now"]);
    run.expect_ok();
    assert!(run.stderr().contains("rebooted"), "{}", run.stderr());
}

#[test]
fn live_holder_refuses_run_now_naming_unlock_and_unlock_needs_force() {
    let facts = host_facts();
    let ws = Workspace::new();
    let cfg = files_config(&ws);
    let holder = Sleeper::spawn();
    let lease = same_host_lease(
        &facts,
        "live-one",
        holder.pid(),
        start_time_of(holder.pid()),
    );
    write_lease(&ws, &lease);

    let run = ccbackup_json(&cfg, &["run-now"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let err = run.stderr();
    assert!(
        err.contains("live-one") && err.contains("a live process on this host"),
        "{err}"
    );
    assert!(
        err.contains("ccbackup unlock --job j") && err.contains("--wait-lock"),
        "{err}"
    );
    let outcomes: Vec<String> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fields"]["outcome"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(outcomes, ["locked"], "{err}");
    assert!(ws.manifests().is_empty());

    let refused = ccbackup(&cfg, &["unlock", "--job", "j"]);
    assert_eq!(refused.code(), Some(1), "{}", refused.stderr());
    let msg = refused.stderr();
    let pid = holder.pid().to_string();
    assert!(
        msg.contains("live-one") && msg.contains(&facts.host) && msg.contains(&pid),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(lease_file(&ws)).unwrap(), lease);

    let forced = ccbackup(&cfg, &["unlock", "--job", "j", "--force"]);
    forced.expect_ok();
    assert!(forced.stdout().contains("removed") && forced.stdout().contains("live-one"));
    assert!(!lease_file(&ws).exists());
    ccbackup(&cfg, &["run-now"]).expect_ok();
}

#[test]
fn unlock_removes_stale_leases_and_keeps_unexpired_foreign_ones() {
    let facts = host_facts();
    let ws = Workspace::new();
    let cfg = files_config(&ws);
    let nothing = ccbackup(&cfg, &["unlock"]);
    nothing.expect_ok();
    assert!(
        nothing.stdout().contains("not locked"),
        "{}",
        nothing.stdout()
    );

    write_lease(&ws, &same_host_lease(&facts, "crashed-run", dead_pid(), 1));
    let run = ccbackup(&cfg, &["unlock", "--job", "j"]);
    run.expect_ok();
    assert!(
        run.stdout().contains("crashed-run") && run.stdout().contains("gone"),
        "{}",
        run.stdout()
    );
    assert!(!lease_file(&ws).exists());

    // Another host's lease: only when expired, or with --force.
    let remote =
        |expires| String::from_utf8(lock::lease_json("sidecar-b", "other-host", expires)).unwrap();
    write_lease(&ws, &remote(Utc::now() + chrono::Duration::hours(1)));
    let refused = ccbackup(&cfg, &["unlock"]);
    assert_eq!(refused.code(), Some(1));
    assert!(
        refused.stderr().contains("other-host") && refused.stderr().contains("--force"),
        "{}",
        refused.stderr()
    );
    assert!(lease_file(&ws).exists());
    write_lease(&ws, &remote(Utc::now() - chrono::Duration::seconds(1)));
    ccbackup(&cfg, &["unlock"]).expect_ok();
    assert!(!lease_file(&ws).exists());
}

/// Runs the binary with JSON logs, which carry no colour codes, so the
/// only raw text on stderr is the final error line.
fn ccbackup_json(config: &std::path::Path, args: &[&str]) -> Run {
    let out = std::process::Command::new(bin())
        .args(["--log-format", "json", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    Run { out }
}

#[test]
fn garbage_lease_is_held_with_a_clear_message_and_never_crashes() {
    let ws = Workspace::new();
    let cfg = files_config(&ws);
    let mut big = b"{\"owner\":\"".to_vec();
    big.resize(200 * 1024, b'a');
    let hour = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let forged = format!(
        r#"{{"owner":"evil\u001b[2J\nERROR forged","host":"h\r","pid":7,"purpose":"p","acquired":"a","expires":"{hour}"}}"#
    );
    for (what, bytes, expect) in [
        ("binary", b"\x00\xff\x1b[2J{{{".to_vec(), "unreadable lease (not a ccbackup lease"),
        ("huge", big, "unreadable lease (larger than the 64 KiB"),
        (
            "bad pid",
            br#"{"owner":"o","host":"h","pid":-5,"purpose":"p","acquired":"a","expires":"b"}"#
                .to_vec(),
            "unreadable lease",
        ),
        (
            "bad expiry",
            br#"{"owner":"o","host":"h","pid":5,"purpose":"p","acquired":"a","expires":"\u001b[2Jsoon"}"#
                .to_vec(),
            "is not an RFC 3339 time",
        ),
        ("control characters", forged.into_bytes(), "evil\\u{1b}[2J\\nERROR forged on h\\r"),
    ] {
        std::fs::create_dir_all(ws.store_dir().join("locks")).unwrap();
        std::fs::write(lease_file(&ws), &bytes).unwrap();
        let run = ccbackup_json(&cfg, &["run-now"]);
        assert_eq!(run.code(), Some(1), "{what}: {}", run.stderr());
        let err = run.stderr();
        assert!(err.contains(expect), "{what}: {err}");
        assert!(err.contains("ccbackup unlock --job j --force"), "{what}: {err}");
        for c in ['\u{1b}', '\r', '\0'] {
            assert!(!err.contains(c), "{what}: {c:?} reaches the terminal: {err}");
        }
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(err.len() < 16 * 1024, "{what}: {} bytes of log", err.len());
    }
    ccbackup(&cfg, &["unlock", "--force"]).expect_ok();
    ccbackup(&cfg, &["run-now"]).expect_ok();
}

/// Lines of a child's stderr, as they come.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns every line seen.
fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?} in:\n{}", seen.join("\n"));
}

#[test]
fn wait_lock_waits_for_a_live_holder_to_release() {
    let facts = host_facts();
    let ws = Workspace::new();
    let cfg = files_config(&ws);
    let holder = Sleeper::spawn();
    write_lease(
        &ws,
        &same_host_lease(
            &facts,
            "slow-one",
            holder.pid(),
            start_time_of(holder.pid()),
        ),
    );
    assert_eq!(ccbackup(&cfg, &["run-now"]).code(), Some(1));

    let mut waiter = std::process::Command::new(bin())
        .args(["--log-format", "text", "--config"])
        .arg(&cfg)
        .args(["run-now", "--wait-lock", "1m"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stderr_lines(&mut waiter);
    let mut seen = Vec::new();
    wait_line(&rx, "waiting for the lock", &mut seen);
    // The holder finishes: its lease goes.
    std::fs::remove_file(lease_file(&ws)).unwrap();
    let out = waiter.wait_with_output().unwrap();
    seen.extend(rx.try_iter());
    assert!(out.status.success(), "{}", seen.join("\n"));
    assert_eq!(ws.manifests().len(), 1);
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());

    let bad = ccbackup(&cfg, &["run-now", "--wait-lock", "5 minutes"]);
    assert_eq!(bad.code(), Some(2), "{}", bad.stderr());
    assert!(bad.stderr().contains("--wait-lock"), "{}", bad.stderr());
}

/// Runs SQL on `db` in a psql that stays connected until killed.
struct Session(std::process::Child);

impl Session {
    fn open(db: &str, sql: &str) -> Session {
        use std::io::Write;
        let mut c = std::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-h",
                PG_HOST,
                "-p",
                &PG_PORT.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        writeln!(c.stdin.as_mut().unwrap(), "{sql}").unwrap();
        Session(c)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_now_killed_with_sigkill_does_not_block_the_next_run() {
    let db = TestDb::create(&unique("ccb_kill9"));
    db.sql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100);");
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n{}",
        ws.store_url(),
        postgres_source("db", &[&db.name])
    ));
    // pg_dump of `t` blocks behind this lock, so the run holds its lease
    // for as long as we like.
    let blocker = Session::open(
        &db.name,
        "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);",
    );
    let locked = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = 't' AND l.mode = 'AccessExclusiveLock' AND l.granted \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = '{}')",
        db.name
    );
    wait_until("the table lock", Duration::from_secs(30), || {
        psql(&db.name, &locked) == "1"
    });

    let mut run = std::process::Command::new(bin())
        .args(["--log-format", "text", "--config"])
        .arg(&cfg)
        .arg("run-now")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waiting = format!(
        "SELECT count(*) FROM pg_locks WHERE NOT granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = '{}')",
        db.name
    );
    wait_until(
        "pg_dump to wait for the table",
        Duration::from_secs(30),
        || lease_file(&ws).exists() && psql(&db.name, &waiting) != "0",
    );
    run.kill().unwrap(); // SIGKILL: no cleanup, the lease stays
    run.wait().unwrap();
    assert!(lease_file(&ws).exists());

    drop(blocker);
    psql(
        "postgres",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            db.name
        ),
    );
    let next = ccbackup(&cfg, &["run-now"]);
    next.expect_ok();
    assert!(
        next.stderr()
            .contains("taking over the lock of a holder that is gone"),
        "{}",
        next.stderr()
    );
    assert_eq!(ws.manifests().len(), 1);
}
