//! `ccbackup doctor` against real components: moto S3, the PostgreSQL
//! server, a port nothing listens on, real files (issue 23.5).

use serde_json::Value;

use crate::support::*;
use crate::support_s3::*;

const SECRET: &str = "doctor-s3-secret-Do-Not-Print";

/// Every problem in one run: a missing bucket (moto), a missing database,
/// a refused port (a database and a webhook), an unreadable key file, a
/// missing and a world-readable password file. Each is one FAIL line with a hint; what
/// works is `ok`; exit 1.
#[test]
fn doctor_reports_every_problem_of_a_site_in_one_run() {
    let server = start_moto(false);
    let ws = Workspace::new();
    let etc = ws.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("f"), "x").unwrap();
    let keys = ws.path().join("keys");
    ccbackup(
        &ws.path().join("none.yaml"),
        &["keys", "generate", keys.to_str().unwrap()],
    )
    .expect_ok();
    let pw = ws.path().join("db-password");
    std::fs::write(&pw, "unused-with-trust\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let missing_db = unique("doctor_missing");
    let (down_port, hook_port) = (free_port(), free_port());
    let lost_identity = ws.path().join("offline/age-identity.txt");
    let cfg = ws.config(&format!(
        "store:\n  url: s3://ccb-doctor-missing/site\n  options:\n    endpoint: {}\n    allow_http: true\n    region: eu-west-2\n    access_key_id: AKIATESTING\n    secret_access_key: {SECRET}\ncopies:\n  - url: {}\nencryption:\n  recipients_file: {}\n  identity_file: {}\nnotify:\n  webhooks: [\"http://127.0.0.1:{hook_port}/hook/token-SECRET\"]\njobs:\n  - name: site\n    sources:\n      - name: db\n        postgres:\n          host: {PG_HOST}\n          port: {PG_PORT}\n          user: postgres\n          password_file: {}\n          databases: [\"{missing_db}\"]\n      - name: down\n        postgres: {{host: 127.0.0.1, port: {down_port}, user: postgres, databases: [x]}}\n      - name: nopw\n        postgres: {{host: {PG_HOST}, port: {PG_PORT}, user: postgres, password_file: {}, databases: [x]}}\n      - name: etc\n        files: {{path: {}}}\n",
        server.endpoint(),
        ws.store_url(),
        keys.join("age-recipient.txt").display(),
        lost_identity.display(),
        pw.display(),
        ws.path().join("secrets/lost-db-password").display(),
        etc.display(),
    ));
    let run = ccbackup_env(&cfg, &["doctor"], &[]);
    let out = run.stdout();
    assert_eq!(run.code(), Some(1), "{out}\n{}", run.stderr());
    let fail = |needles: &[&str]| {
        assert!(
            out.lines().any(|l| l.starts_with("FAIL")
                && l.contains("(hint: ")
                && needles.iter().all(|n| l.contains(n))),
            "no FAIL line with {needles:?} and a hint:\n{out}"
        );
    };
    let ok = |needles: &[&str]| {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok") && needles.iter().all(|n| l.contains(n))),
            "no ok line with {needles:?}:\n{out}"
        );
    };
    fail(&[
        "store s3://ccb-doctor-missing/site",
        "list",
        "bucket does not exist",
    ]);
    fail(&["source db", "databases", &missing_db]);
    fail(&["source db", "password_file private", "chmod 600"]);
    fail(&["source down", "connect", &down_port.to_string()]);
    fail(&["notify", "webhook", &hook_port.to_string()]);
    // An unreadable password file does not stop doctor from starting.
    fail(&["source nopw", "password_file readable", "lost-db-password"]);
    fail(&["source nopw", "connect", "password_file"]);
    fail(&[
        "encryption",
        "identity_file readable",
        &lost_identity.display().to_string(),
    ]);
    ok(&["copy store 0", "write, read back, delete"]);
    ok(&["source db", "connect", "PostgreSQL"]);
    ok(&["source db", "client programs", "pg_dump"]);
    ok(&["source db", "restore programs", "pg_restore"]);
    ok(&["source etc", "readable"]);
    for secret in [SECRET, "token-SECRET"] {
        assert!(!out.contains(secret) && !run.stderr().contains(secret));
    }
    // The probe was deleted again.
    assert!(ws.stored_files().is_empty(), "{:?}", ws.stored_files());

    // The same as JSON, with --job.
    let run = ccbackup_env(&cfg, &["doctor", "--job", "site", "--json"], &[]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let checks: Vec<Value> = serde_json::from_str(&run.stdout()).unwrap();
    let failed: Vec<&Value> = checks.iter().filter(|c| c["status"] == "fail").collect();
    assert_eq!(failed.len(), 8, "{checks:#?}");
    assert!(failed
        .iter()
        .all(|c| c["hint"].is_string() && c["job"] == "site"));
}

/// A ready site: every check passes and doctor exits 0.
#[test]
fn doctor_passes_on_a_ready_site() {
    require_rrdtool();
    let db = TestDb::create(&unique("doctor_ok"));
    db.sql("CREATE TABLE t AS SELECT 1 AS x");
    let ws = Workspace::new();
    let rrd = ws.path().join("rrd");
    crate::support_rrd::concertim_tree(&rrd, 1, 2);
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n{}      - name: rrd\n        rrd: {{path: {}}}\n",
        ws.store_url(),
        postgres_source("db", &[&db.name]),
        rrd.display()
    ));
    let run = ccbackup(&cfg, &["doctor"]);
    let out = run.stdout();
    assert_eq!(run.code(), Some(0), "{out}\n{}", run.stderr());
    assert!(!out.contains("FAIL"), "{out}");
    for needle in [
        "store file://",
        "write, read back, delete",
        &format!("pg_dump `{}`", db.name),
        "lockable",
        "none failed",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }
    assert!(ws.stored_files().is_empty(), "{:?}", ws.stored_files());
}

fn require_rrdtool() {
    crate::support_rrd::require_rrdtool();
}

/// The compose example and the README's deploy block run doctor right
/// after `up`.
#[test]
fn deploy_instructions_run_doctor_first_after_up() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["examples/docker-compose.yml", "README.md"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let up = text
            .find("docker compose up -d ccbackup")
            .unwrap_or_else(|| panic!("{file}: no `up`"));
        let next = text[up..]
            .lines()
            .skip(1)
            .find(|l| l.contains("ccbackup ccbackup"))
            .unwrap_or_default();
        assert!(
            next.contains("ccbackup ccbackup doctor"),
            "{file}: the first command after up is not doctor: {next}"
        );
    }
}

/// Requests that reached a loopback listener: (first line, body).
fn listener() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            // Headers, then as much body as Content-Length says.
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            if !got.is_empty() {
                s2.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&got).into_owned());
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        }
    });
    (port, seen)
}

/// Reachability sends nothing; `--notify-test` sends a start event to the
/// webhook, never to healthchecks.
#[test]
fn doctor_sends_notifications_only_when_asked_and_never_pings_healthchecks() {
    let (port, seen) = listener();
    let ws = Workspace::new();
    let etc = ws.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nnotify:\n  webhooks: [\"http://127.0.0.1:{port}/hook\"]\n  healthchecks: [\"http://127.0.0.1:{port}/ping/check\"]\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        etc.display()
    ));
    let run = ccbackup(&cfg, &["doctor"]);
    assert_eq!(run.code(), Some(0), "{}\n{}", run.stdout(), run.stderr());
    assert!(
        run.stdout().contains("webhook http://127.0.0.1/<redacted>"),
        "{}",
        run.stdout()
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );

    let run = ccbackup(&cfg, &["doctor", "--notify-test"]);
    assert_eq!(run.code(), Some(0), "{}\n{}", run.stdout(), run.stderr());
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("POST /hook "), "{got:?}");
    assert!(got[0].contains("\"start\""), "{got:?}");
}

/// Sends `PUT /{bucket}?versioning` with a body to moto.
fn enable_versioning(server: &Server, bucket: &str) {
    use std::io::{Read, Write};
    let body = "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>Enabled</Status></VersioningConfiguration>";
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        s,
        "PUT /{bucket}?versioning HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// An S3 store says whether versioning is on.
#[test]
fn doctor_reports_the_versioning_state_of_s3_buckets() {
    let server = start_moto(false);
    create_bucket(&server, "ccb-doctor-plain");
    create_bucket(&server, "ccb-doctor-versioned");
    enable_versioning(&server, "ccb-doctor-versioned");
    let ws = Workspace::new();
    let etc = ws.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let opts = format!(
        "  options:\n    endpoint: {}\n    allow_http: true\n    region: eu-west-2\n    access_key_id: AKIATESTING\n    secret_access_key: {SECRET}\n",
        server.endpoint()
    );
    let cfg = ws.config(&format!(
        "store:\n  url: s3://ccb-doctor-plain/site\n{opts}copies:\n  - url: s3://ccb-doctor-versioned/site\n{}jobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        opts.replace("  options:", "    options:").replace("\n    ", "\n      "),
        etc.display()
    ));
    let run = ccbackup_env(&cfg, &["doctor"], &[]);
    let out = run.stdout();
    assert_eq!(run.code(), Some(0), "{out}\n{}", run.stderr());
    let line = |store: &str| {
        out.lines()
            .find(|l| l.contains(store) && l.contains("versioning"))
            .unwrap_or_else(|| panic!("no versioning line for {store}:\n{out}"))
            .to_owned()
    };
    assert!(
        line("s3://ccb-doctor-plain/site").contains("never enabled"),
        "{out}"
    );
    assert!(
        line("s3://ccb-doctor-versioned/site").contains("Enabled"),
        "{out}"
    );
    assert!(object_keys(&server, "ccb-doctor-plain").is_empty());
    let lock_line = |store: &str| {
        out.lines()
            .find(|l| l.contains(store) && l.contains("object lock"))
            .unwrap_or_else(|| panic!("no object lock line for {store}:\n{out}"))
            .to_owned()
    };
    assert!(
        lock_line("s3://ccb-doctor-plain/site").contains("not enabled"),
        "{out}"
    );

    // A bucket made with Object Lock (moto switches versioning on with it).
    let (status, body) = http(
        server.port,
        "PUT",
        "/ccb-doctor-locked",
        &[("x-amz-bucket-object-lock-enabled", "true".to_owned())],
    );
    assert_eq!(status, 200, "{body}");
    let locked = ws.config(&format!(
        "store:\n  url: s3://ccb-doctor-locked/site\n{opts}jobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        etc.display()
    ));
    let run = ccbackup_env(&locked, &["doctor"], &[]);
    let out = run.stdout();
    assert!(
        out.lines()
            .any(|l| l.contains("object lock") && l.contains("Enabled")),
        "{out}\n{}",
        run.stderr()
    );
}
