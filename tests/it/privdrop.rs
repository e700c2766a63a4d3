//! `--user` / `CCBACKUP_USER`: started as root (as the image is), ccbackup
//! reads root-only 0600 secrets, then runs as the service user; with
//! `--keep-read-access` it keeps CAP_DAC_READ_SEARCH and nothing else.
//! `healthcheck` asks the address the configuration gives.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

const NOBODY: &str = "65534:65534";

fn require_root() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests start ccbackup as root to watch it drop to uid 65534; run the suite as root (CI does)"
    );
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A workspace the dropped user can reach (0711), a store it owns, a
/// root-only 0600 password file and a root-only 0600 file to back up.
struct Fixture {
    ws: Workspace,
    cfg: PathBuf,
    port: u16,
    etc: PathBuf,
    _db: TestDb,
}

fn fixture() -> Fixture {
    require_root();
    let ws = Workspace::new();
    chmod(ws.path(), 0o711);
    std::fs::create_dir(ws.store_dir()).unwrap();
    let chown = Command::new("chown")
        .args([NOBODY])
        .arg(ws.store_dir())
        .status()
        .unwrap();
    assert!(chown.success());
    let secrets = ws.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    chmod(&secrets, 0o700);
    let pw = secrets.join("db-password");
    std::fs::write(&pw, "not-needed-with-trust-auth\n").unwrap();
    chmod(&pw, 0o600);
    let etc = ws.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    chmod(&etc, 0o700);
    std::fs::write(
        etc.join("credentials.yml.enc"),
        b"root-only rails credentials",
    )
    .unwrap();
    chmod(&etc.join("credentials.yml.enc"), 0o600);
    let db = TestDb::create(&unique("privdrop"));
    db.sql("CREATE TABLE t AS SELECT 1 AS x");
    let port = free_port();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ndaemon:\n  listen: 127.0.0.1:{port}\njobs:\n  - name: j\n    schedule: \"0 3 * * *\"\n    sources:\n      - name: db\n        postgres:\n          host: {PG_HOST}\n          port: {PG_PORT}\n          user: postgres\n          password_file: {}\n          databases: [\"{}\"]\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        pw.display(),
        db.name,
        etc.display()
    ));
    chmod(&cfg, 0o644);
    Fixture {
        ws,
        cfg,
        port,
        etc,
        _db: db,
    }
}

fn run_as(cfg: &Path, user_args: &[&str], args: &[&str]) -> Run {
    let out = Command::new(bin())
        .args(["--log-format", "text", "--config"])
        .arg(cfg)
        .args(user_args)
        .args(args)
        .env_remove("CCBACKUP_USER")
        .env_remove("CCBACKUP_KEEP_READ_ACCESS")
        .output()
        .unwrap();
    Run { out }
}

fn healthz(port: u16) -> bool {
    http_get(port, "/healthz").is_some_and(|(code, _)| code == 200)
}

fn status_line(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn stop(mut child: Child) -> String {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = poll_for(Duration::from_secs(20), || child.try_wait().unwrap()).ok();
    if status.is_none() {
        let _ = child.kill();
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    err
}

#[test]
fn daemon_reads_root_only_secrets_then_runs_as_the_service_user() {
    let f = fixture();
    // The environment variable, as the image sets it.
    let child = Command::new(bin())
        .args(["--log-format", "text", "--config"])
        .arg(&f.cfg)
        .arg("daemon")
        .env("CCBACKUP_USER", NOBODY)
        .env_remove("CCBACKUP_KEEP_READ_ACCESS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_until(
        &format!("the daemon to answer /healthz on {}", f.port),
        Duration::from_secs(20),
        || healthz(f.port),
    );
    // Real, effective, saved and file-system ids, groups, capabilities.
    assert_eq!(status_line(pid, "Uid"), "65534 65534 65534 65534");
    assert_eq!(status_line(pid, "Gid"), "65534 65534 65534 65534");
    assert_eq!(status_line(pid, "Groups"), "65534");
    assert_eq!(status_line(pid, "CapEff"), "0000000000000000");
    assert_eq!(status_line(pid, "CapPrm"), "0000000000000000");

    // The HEALTHCHECK command finds the port in the configuration, and
    // fails when nothing answers where it asks.
    let hc = run_as(&f.cfg, &[], &["healthcheck"]);
    hc.expect_ok();
    assert!(hc.stdout().contains(&format!("127.0.0.1:{}", f.port)));
    let elsewhere = format!("127.0.0.1:{}", free_port());
    let hc = run_as(&f.cfg, &[], &["healthcheck", "--listen", &elsewhere]);
    assert_eq!(hc.code(), Some(1), "{}", hc.stderr());

    let log = stop(child);
    assert!(log.contains("switched from root"), "{log}");
}

#[test]
fn a_root_only_password_file_is_read_before_the_switch() {
    let f = fixture();
    // run-now connects with the password it read as root; an unreadable
    // password file would fail the connection ("no password for ...").
    // The root-only etc file is left out by giving only the db source.
    let run = run_as(&f.cfg, &["--user", NOBODY], &["check-config"]);
    run.expect_ok();
    let db_only = f.ws.path().join("db-only.yaml");
    let text = std::fs::read_to_string(&f.cfg).unwrap();
    let cut = text.find("      - name: etc").unwrap();
    std::fs::write(&db_only, &text[..cut]).unwrap();
    chmod(&db_only, 0o644);
    run_as(&db_only, &["--user", NOBODY], &["run-now"]).expect_ok();
    // The store was written by the service user.
    let owners: Vec<u32> =
        f.ws.manifests()
            .iter()
            .map(|m| std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(m).unwrap()))
            .collect();
    assert_eq!(owners, vec![65534]);
}

#[test]
fn keep_read_access_reads_root_only_files_and_nothing_more() {
    let f = fixture();
    // Without it the service user cannot open the 0700 root directory.
    let run = run_as(&f.cfg, &["--user", NOBODY], &["run-now"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr().contains("source `etc` failed"),
        "{}",
        run.stderr()
    );
    assert!(f.ws.manifests().is_empty());

    let run = run_as(
        &f.cfg,
        &["--user", NOBODY, "--keep-read-access"],
        &["run-now"],
    );
    run.expect_ok();
    assert_eq!(f.ws.manifests().len(), 1);

    // What was stored is the root-only file (restored here as root).
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("etc");
    ccbackup(
        &f.cfg,
        &["restore", "--source", "etc", "--to", to.to_str().unwrap()],
    )
    .expect_ok();
    assert_eq!(
        std::fs::read(to.join("credentials.yml.enc")).unwrap(),
        std::fs::read(f.etc.join("credentials.yml.enc")).unwrap()
    );
}

#[test]
fn bad_user_specs_are_usage_errors() {
    let f = fixture();
    let run = run_as(&f.cfg, &["--user", "no-such-user-4711"], &["list"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    assert!(run.stderr().contains("no user `no-such-user-4711`"));
    let run = run_as(&f.cfg, &["--user", "root", "--keep-read-access"], &["list"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    // `root` (what the restore service sets) stays root and works.
    run_as(&f.cfg, &["--user", "root"], &["list"]).expect_ok();
}
