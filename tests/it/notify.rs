//! Notifications against real listeners on loopback: an HTTP recorder
//! (healthchecks pings, Slack, generic webhooks) and a real SMTP server
//! (aiosmtpd), driven by `run-now` and by the daemon, the real binary and
//! in-process (for a store that fails the first attempt of a run).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;
use crate::support_s3::tools_dir;

/// One request as the recorder saw it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    /// Path and query.
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| v.to_owned())
        })
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{} body is not JSON ({e}): {}", self.target, self.body))
    }
}

/// A tiny HTTP server in a thread: answers 200 to everything and records
/// each request, in the order they arrive.
#[derive(Clone)]
struct Recorder {
    addr: SocketAddr,
    reqs: Arc<Mutex<Vec<Req>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let r2 = reqs.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                if let Some(req) = read_request(s) {
                    r2.lock().unwrap().push(req);
                }
            }
        });
        Recorder { addr, reqs }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn all(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }

    fn under(&self, prefix: &str) -> Vec<Req> {
        self.all()
            .into_iter()
            .filter(|r| r.path().starts_with(prefix))
            .collect()
    }

    /// Waits until `cond` holds for the recorded requests.
    fn wait(&self, what: &str, limit: Duration, cond: impl Fn(&[Req]) -> bool) -> Vec<Req> {
        wait_until(what, limit, || {
            let all = self.all();
            if cond(&all) {
                Ok(all)
            } else {
                Err(format!("{all:#?}"))
            }
        })
    }
}

fn read_request(mut s: TcpStream) -> Option<Req> {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = got[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK");
    Some(Req {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn files_dir(ws: &Workspace, name: &str) -> PathBuf {
    let d = ws.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("a.txt"), vec![b'x'; 5000]).unwrap();
    d
}

fn files_source(dir: &Path) -> String {
    format!(
        "      - name: etc\n        files: {{path: {}}}\n",
        dir.display()
    )
}

/// A PostgreSQL source on a port nothing listens on.
fn unreachable_pg_source() -> String {
    format!(
        "      - name: db\n        postgres: {{host: 127.0.0.1, port: {}, user: postgres, databases: [x], globals: false}}\n",
        free_port()
    )
}

const HC_SECRET: &str = "5f6d7a1e-hc-check-uuid-SECRET";
const SLACK_SECRET: &str = "T000/B000/slackTOKEN123";

#[test]
fn run_now_pings_healthchecks_start_then_success_and_slack_reads_well() {
    let ws = Workspace::new();
    let rec = Recorder::start();
    let src = files_dir(&ws, "src");
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nnotify:\n  healthchecks: [\"{}\"]\n  slack: [\"{}\"]\njobs:\n  - name: concertim\n    notify:\n      slack: [\"{}\"]\n      on: [start, success]\n    sources:\n{}",
        ws.store_url(),
        rec.url(&format!("/ping/{HC_SECRET}")),
        rec.url(&format!("/global-slack/{SLACK_SECRET}")),
        rec.url(&format!("/job-slack/{SLACK_SECRET}")),
        files_source(&src),
    ));
    let run = ccbackup(&cfg, &["run-now", "--json"]);
    run.expect_ok();

    // stdout: one JSON object per job, with the documented field names.
    let stdout = run.stdout();
    let lines: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout());
    let r: Value = serde_json::from_str(lines[0]).unwrap();
    for key in [
        "run_id",
        "job",
        "backup_id",
        "outcome",
        "started_at",
        "finished_at",
        "duration_seconds",
        "stored_bytes",
        "raw_bytes",
        "attempts",
        "deletions",
        "error",
        "host",
        "reasons",
    ] {
        assert!(r.get(key).is_some(), "{key} missing in {r}");
    }
    assert_eq!(r["job"], "concertim");
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["attempts"], 1);
    assert!(r["stored_bytes"].as_u64().unwrap() > 0, "{r}");
    assert!(r["raw_bytes"].as_u64().unwrap() >= 5000, "{r}");
    assert!(r["started_at"].as_str().unwrap().ends_with('Z'), "{r}");
    let run_id = r["run_id"].as_str().unwrap().to_owned();
    let backup_id = r["backup_id"].as_str().unwrap().to_owned();

    // healthchecks: start, then success, same rid; never /fail.
    let pings = rec.under("/ping/");
    let paths: Vec<&str> = pings.iter().map(|p| p.path()).collect();
    assert_eq!(
        paths,
        [
            format!("/ping/{HC_SECRET}/start"),
            format!("/ping/{HC_SECRET}")
        ],
        "{pings:#?}"
    );
    assert!(pings
        .iter()
        .all(|p| p.query("rid").as_deref() == Some(&run_id)));
    assert!(pings.iter().all(|p| p.method == "POST"));
    assert!(pings[1].body.contains("concertim") && pings[1].body.contains(&backup_id));

    // Slack: the job's channel asked for start and success, the global one
    // did not, so it gets nothing for a successful run.
    assert!(rec.under("/global-slack/").is_empty(), "{:#?}", rec.all());
    let slack = rec.under("/job-slack/");
    assert_eq!(slack.len(), 2, "{slack:#?}");
    assert_eq!(slack[0].header("content-type"), Some("application/json"));
    let started = slack[0].json()["text"].as_str().unwrap().to_owned();
    assert!(
        started.contains("concertim") && started.contains("started"),
        "{started}"
    );
    let text = slack[1].json()["text"].as_str().unwrap().to_owned();
    for want in ["concertim", "success", "KiB", " s\n", &backup_id] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }

    // One log event with the report's field names; no secret in logs.
    let err = run.stderr();
    assert!(
        err.contains("run finished") && err.contains(&run_id),
        "{err}"
    );
    assert!(
        err.contains("stored_bytes") && err.contains("duration_seconds"),
        "{err}"
    );
    assert!(!err.contains("backup complete"), "{err}");
    for secret in [HC_SECRET, SLACK_SECRET] {
        assert!(!err.contains(secret), "{secret} leaked: {err}");
    }
}

#[test]
fn failing_run_pings_fail_with_what_failed_and_notifies_every_channel() {
    let ws = Workspace::new();
    let rec = Recorder::start();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nnotify:\n  healthchecks: [\"{}\"]\n  slack: [\"{}\"]\n  webhooks: [\"{}\"]\njobs:\n  - name: pg\n    sources:\n{}",
        ws.store_url(),
        rec.url(&format!("/ping/{HC_SECRET}")),
        rec.url(&format!("/slack/{SLACK_SECRET}")),
        rec.url("/hook/secret-hook-token"),
        unreachable_pg_source(),
    ));
    let run = ccbackup(&cfg, &["run-now", "--json"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let r: Value = serde_json::from_str(run.stdout().trim()).unwrap();
    assert_eq!(r["outcome"], "failure");
    assert!(r["backup_id"].is_null());
    let error = r["error"].as_str().unwrap().to_owned();
    let run_id = r["run_id"].as_str().unwrap().to_owned();

    let pings = rec.under("/ping/");
    let paths: Vec<&str> = pings.iter().map(|p| p.path()).collect();
    assert_eq!(
        paths,
        [
            format!("/ping/{HC_SECRET}/start"),
            format!("/ping/{HC_SECRET}/fail")
        ],
        "a failure must never reach the success URL: {pings:#?}"
    );
    assert!(pings
        .iter()
        .all(|p| p.query("rid").as_deref() == Some(&run_id)));
    let body = &pings[1].body;
    assert!(body.contains("pg") && body.contains("failure"), "{body}");
    assert!(body.contains(&error), "the body says what failed: {body}");
    assert!(body.len() <= 4000, "{}", body.len());

    // Failures notify without any `on`.
    let slack = rec.under("/slack/");
    assert_eq!(slack.len(), 1, "{slack:#?}");
    let text = slack[0].json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.contains("pg") && text.contains("failure") && text.contains("error:"),
        "{text}"
    );

    let hook = rec.under("/hook/");
    assert_eq!(hook.len(), 1, "{hook:#?}");
    let h = hook[0].json();
    assert_eq!(h["event"], "finish");
    assert_eq!(h["outcome"], "failure");
    assert_eq!(h["run_id"], run_id.as_str());
    assert_eq!(h["error"], error.as_str());
    // The previous release's names, kept for one release.
    assert_eq!(h["bytes"], 0);
    assert_eq!(h["time"], h["started_at"]);

    let err = run.stderr();
    assert!(err.contains("run finished"), "{err}");
    for secret in [HC_SECRET, SLACK_SECRET, "secret-hook-token"] {
        assert!(!err.contains(secret), "{secret} leaked: {err}");
    }
}

#[test]
fn unreachable_notification_targets_are_logged_redacted_and_do_not_fail_the_run() {
    let ws = Workspace::new();
    let src = files_dir(&ws, "src");
    // Nothing listens on this port: every notification fails to connect.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nnotify:\n  healthchecks: [\"{dead}/ping/{HC_SECRET}\"]\n  slack: [\"{dead}/slack/{SLACK_SECRET}\"]\n  on: [success]\njobs:\n  - name: j\n    sources:\n{}",
        ws.store_url(),
        files_source(&src),
    ));
    let t0 = Instant::now();
    let run = ccbackup(&cfg, &["run-now"]);
    run.expect_ok();
    assert!(t0.elapsed() < Duration::from_secs(30));
    let err = run.stderr();
    assert!(err.contains("could not send notification"), "{err}");
    assert!(err.contains("http://127.0.0.1/<redacted>"), "{err}");
    for secret in [HC_SECRET, SLACK_SECRET] {
        assert!(!err.contains(secret), "{secret} leaked: {err}");
    }
}

#[test]
fn a_silent_notification_target_costs_at_most_its_timeouts() {
    let ws = Workspace::new();
    let src = files_dir(&ws, "src");
    // Accepts connections and never answers.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hole.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hole.incoming().flatten() {
            held.push(s);
        }
    });
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nnotify:\n  healthchecks: [\"http://{addr}/ping/{HC_SECRET}\"]\n  timeout: 1s\njobs:\n  - name: j\n    sources:\n{}",
        ws.store_url(),
        files_source(&src),
    ));
    let t0 = Instant::now();
    let run = ccbackup(&cfg, &["run-now", "--json"]);
    let took = t0.elapsed();
    run.expect_ok();
    let r: Value = serde_json::from_str(run.stdout().trim()).unwrap();
    assert_eq!(r["outcome"], "success");
    // The start ping runs alongside the run and the end ping waits for it
    // (monitors must see start first): two 1 s timeouts (the configured
    // `timeout`, not the 10 s default) and the run itself. The bound is
    // loose for a loaded machine and still well under one default timeout.
    assert!(r["duration_seconds"].as_f64().unwrap() < 5.0, "{r}");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(9), "{took:?}");
    let err = run.stderr();
    assert!(
        err.contains("healthchecks") && err.contains("http://127.0.0.1/<redacted>"),
        "{err}"
    );
    assert!(!err.contains(HC_SECRET), "{err}");
}

// ---------------------------------------------------------------- email --

/// A real SMTP server (aiosmtpd) that requires nothing but accepts AUTH
/// LOGIN/PLAIN for one user over plain text, and prints every message
/// (decoded) to its log. Killed on drop.
struct Smtp {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

const SMTP_SCRIPT: &str = r#"
import email, email.policy, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, user, pw_file = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
with open(pw_file, "rb") as f:
    pw = f.read().strip()

class Printer:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        print("FROM", envelope.mail_from, "TO", ",".join(envelope.rcpt_tos),
              "AUTHENTICATED", bool(session.authenticated))
        print("SUBJECT", msg["subject"])
        print(msg.get_content())
        print("END-OF-MESSAGE", flush=True)
        return "250 OK"

def check(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == user and auth_data.password == pw
    # handled=False: aiosmtpd then answers 535 itself.
    return AuthResult(success=ok, handled=False)

c = Controller(Printer(), hostname="127.0.0.1", port=port,
               authenticator=check, auth_require_tls=False)
c.start()
print("READY", flush=True)
while True:
    time.sleep(3600)
"#;

/// A Python that has aiosmtpd: the prereqs venv first, then python3.
fn smtp_python() -> PathBuf {
    let candidates = [
        tools_dir().join("venv/bin/python"),
        PathBuf::from("python3"),
    ];
    for py in &candidates {
        let ok = Command::new(py)
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return py.clone();
        }
    }
    panic!("aiosmtpd is not installed (tried {candidates:?}); run `bash scripts/prereqs.sh`");
}

impl Smtp {
    fn start(user: &str, password_file: &Path) -> Smtp {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("smtp.py");
        std::fs::write(&script, SMTP_SCRIPT).unwrap();
        let log = dir.path().join("smtp.log");
        let out = std::fs::File::create(&log).unwrap();
        let port = free_port();
        let child = Command::new(smtp_python())
            .arg(&script)
            .arg(port.to_string())
            .arg(user)
            .arg(password_file)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the aiosmtpd SMTP server: {e}"));
        let mut s = Smtp {
            child,
            port,
            log,
            _dir: dir,
        };
        wait_until("the aiosmtpd SMTP server", Duration::from_secs(30), || {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("the aiosmtpd SMTP server exited ({st}):\n{}", s.log_text());
            }
            let log = s.log_text();
            if log.contains("READY") {
                Ok(())
            } else {
                Err(log)
            }
        });
        s
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The messages received so far, each from its FROM line to its end.
    fn messages(&self) -> Vec<String> {
        self.log_text()
            .split("END-OF-MESSAGE")
            .filter_map(|m| m.find("FROM ").map(|i| m[i..].to_owned()))
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this guard created.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

#[test]
fn email_arrives_with_subject_and_report_and_the_password_stays_secret() {
    let ws = Workspace::new();
    let pw = ws.path().join("smtp-password");
    std::fs::write(&pw, "smtp-PASSW0RD-xyz\n").unwrap();
    let smtp = Smtp::start("backup", &pw);
    let src = files_dir(&ws, "src");
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nnotify:\n  on: [success]\n  email:\n    server: 127.0.0.1\n    port: {}\n    starttls: false\n    from: ccbackup@hpc.example\n    to: [ops@hpc.example, oncall@hpc.example]\n    username: backup\n    password_file: {}\njobs:\n  - name: concertim\n    sources:\n{}  - name: pg\n    sources:\n{}",
        ws.store_url(),
        smtp.port,
        pw.display(),
        files_source(&src),
        unreachable_pg_source(),
    ));
    let run = ccbackup(&cfg, &["run-now", "--json"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let reports: Vec<Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2, "{}", run.stdout());

    // run-now waits for its notifications, so both mails are in by now.
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2, "{}", smtp.log_text());
    let ok = mails
        .iter()
        .find(|m| m.contains("SUBJECT [ccbackup] concertim: success"))
        .unwrap_or_else(|| panic!("no success mail: {}", smtp.log_text()));
    assert!(ok.contains("TO ops@hpc.example,oncall@hpc.example"), "{ok}");
    assert!(ok.contains("AUTHENTICATED True"), "{ok}");
    assert!(
        ok.contains(reports[0]["backup_id"].as_str().unwrap()),
        "{ok}"
    );
    assert!(ok.contains(reports[0]["run_id"].as_str().unwrap()), "{ok}");
    let bad = mails
        .iter()
        .find(|m| m.contains("SUBJECT [ccbackup] pg: failure"))
        .unwrap_or_else(|| panic!("no failure mail: {}", smtp.log_text()));
    assert!(bad.contains("error:"), "{bad}");

    let err = run.stderr();
    assert!(!err.contains("smtp-PASSW0RD-xyz"), "password leaked: {err}");
    assert!(!err.contains("could not send"), "{err}");
}

#[test]
fn a_wrong_smtp_password_is_logged_without_the_password() {
    let ws = Workspace::new();
    let right = ws.path().join("right");
    std::fs::write(&right, "the-right-one\n").unwrap();
    let wrong = ws.path().join("wrong");
    std::fs::write(&wrong, "wrong-PASSW0RD-abc\n").unwrap();
    let smtp = Smtp::start("backup", &right);
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nnotify:\n  email: {{server: 127.0.0.1, port: {}, starttls: false, from: a@b.example, to: [c@d.example], username: backup, password_file: {}}}\njobs:\n  - name: pg\n    sources:\n{}",
        ws.store_url(),
        smtp.port,
        wrong.display(),
        unreachable_pg_source(),
    ));
    let run = ccbackup(&cfg, &["run-now"]);
    assert_eq!(run.code(), Some(1));
    let err = run.stderr();
    assert!(
        err.contains("could not send notification") && err.contains("email"),
        "{err}"
    );
    assert!(
        err.contains(&format!("smtp://127.0.0.1:{}", smtp.port)),
        "{err}"
    );
    assert!(
        !err.contains("wrong-PASSW0RD-abc"),
        "password leaked: {err}"
    );
    assert!(smtp.messages().is_empty(), "{}", smtp.log_text());
}

// --------------------------------------------------------------- daemon --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_retried_run_keeps_one_run_id_in_every_notification() {
    use ccbackup::daemon::{self, metrics::Metrics, Options};
    let ws = Workspace::new();
    let rec = Recorder::start();
    let src = files_dir(&ws, "src");
    let cfg_path = ws.config(&format!(
        "store:\n  url: {}\nnotify:\n  healthchecks: [\"{}\"]\n  webhooks: [\"{}\"]\n  on: [start, success]\njobs:\n  - name: j\n    schedule: \"* * * * * *\"\n    run_at_start: never\n    sources:\n{}",
        ws.store_url(),
        rec.url(&format!("/ping/{HC_SECRET}")),
        rec.url("/hook/tok"),
        files_source(&src),
    ));
    // The daemon's start-up listing takes 6 failing calls (its retries),
    // the first run's lock attempts the next 6: that attempt fails with a
    // transient error and the run is retried.
    let mut repo = crate::lock::open_repo(&ws);
    let flaky = crate::support_store::FaultyStore::failing_first(repo.store.clone(), 12);
    repo.store = flaky.clone();
    let cfg = ccbackup::config::load(&cfg_path).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let metrics = Arc::new(Metrics::new(chrono::Utc::now()));
    let opts = Options {
        listen: Some("127.0.0.1:0".to_owned()),
        repo: Some(repo),
        metrics: Some(metrics.clone()),
        ..Default::default()
    };
    let task = tokio::spawn(daemon::run(cfg, opts, stop.clone()));
    let r2 = rec.clone();
    let all = tokio::task::spawn_blocking(move || {
        r2.wait("a finished run", Duration::from_secs(60), |all| {
            // Ticks that fell due while the retried run went on are
            // skipped and notified too (as failures, attempts 0): wait for
            // the run itself.
            all.iter().any(|r| {
                r.path().starts_with("/hook/")
                    && r.body.contains("\"finish\"")
                    && !r.body.contains("was skipped")
            })
        })
    })
    .await
    .unwrap();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let hooks: Vec<Value> = all
        .iter()
        .filter(|r| r.path().starts_with("/hook/"))
        .map(Req::json)
        .collect();
    let finish = hooks
        .iter()
        .find(|h| h["event"] == "finish" && h["attempts"].as_u64() > Some(0))
        .unwrap();
    assert_eq!(finish["outcome"], "success", "{finish}");
    assert!(
        finish["attempts"].as_u64().unwrap() >= 2,
        "not retried: {finish}"
    );
    let run_id = finish["run_id"].as_str().unwrap();
    let starts: Vec<&Value> = hooks.iter().filter(|h| h["event"] == "start").collect();
    assert_eq!(starts[0]["run_id"], run_id, "{hooks:#?}");
    assert_eq!(
        hooks.iter().filter(|h| h["run_id"] == run_id).count(),
        2,
        "one start and one finish per run, whatever the attempts: {hooks:#?}"
    );
    let pings: Vec<&Req> = all
        .iter()
        .filter(|r| r.query("rid").as_deref() == Some(run_id))
        .filter(|r| r.path().starts_with("/ping/"))
        .collect();
    let paths: Vec<&str> = pings.iter().map(|p| p.path()).collect();
    assert_eq!(
        paths,
        [
            format!("/ping/{HC_SECRET}/start"),
            format!("/ping/{HC_SECRET}")
        ],
        "{pings:#?}"
    );
}

#[test]
fn real_daemon_pings_start_and_fail_and_logs_no_secret() {
    let ws = Workspace::new();
    let rec = Recorder::start();
    let src = files_dir(&ws, "vanishing");
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ndaemon: {{listen: \"127.0.0.1:{}\", shutdown_grace: 5s}}\njobs:\n  - name: j\n    schedule: \"* * * * * *\"\n    run_at_start: never\n    notify:\n      healthchecks: [\"{}\"]\n      slack: [\"{}\"]\n    sources:\n{}",
        ws.store_url(),
        free_port(),
        rec.url(&format!("/ping/{HC_SECRET}")),
        rec.url(&format!("/slack/{SLACK_SECRET}")),
        files_source(&src),
    ));
    let log = ws.path().join("daemon.log");
    let mut child = Command::new(bin())
        .args(["--log-format", "json", "--config"])
        .arg(&cfg)
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Valid when the configuration was checked, gone before the first run
    // (no start-up run: the first run is the first scheduled tick).
    wait_until("the daemon to start", Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("daemon started")
    });
    std::fs::remove_dir_all(&src).unwrap();
    let all = rec.wait("a /fail ping", Duration::from_secs(30), |all| {
        all.iter().any(|r| r.path().ends_with("/fail"))
    });
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");

    let fail = all.iter().find(|r| r.path().ends_with("/fail")).unwrap();
    let rid = fail.query("rid").unwrap();
    let start_pos = all
        .iter()
        .position(|r| r.path().ends_with("/start") && r.query("rid").as_deref() == Some(&rid))
        .expect("a /start ping with the same rid");
    let fail_pos = all.iter().position(|r| std::ptr::eq(r, fail)).unwrap();
    assert!(start_pos < fail_pos);
    assert!(
        fail.body.contains("failure") && fail.body.contains("etc"),
        "{}",
        fail.body
    );
    assert!(
        !all.iter().any(|r| r.path() == format!("/ping/{HC_SECRET}")),
        "a failed run reached the success URL: {all:#?}"
    );
    let slack = all
        .iter()
        .find(|r| r.path().starts_with("/slack/"))
        .unwrap();
    assert!(slack.json()["text"].as_str().unwrap().contains("failure"));

    let text = std::fs::read_to_string(&log).unwrap();
    let finished: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "run finished")
        .collect();
    assert!(
        finished
            .iter()
            .any(|v| v["fields"]["run_id"] == rid.as_str() && v["fields"]["outcome"] == "failure"),
        "{text}"
    );
    for secret in [HC_SECRET, SLACK_SECRET] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

/// Issue 23.1: a daemon restarted after the source directory was lost
/// starts (no crash loop under `restart: unless-stopped`), and the
/// scheduled run fails that source and pings `/fail`.
#[test]
fn regression_issue23_daemon_starts_without_a_source_path_and_notifies_the_failure() {
    let ws = Workspace::new();
    let rec = Recorder::start();
    let gone = ws.path().join("lost-etc");
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ndaemon: {{listen: \"127.0.0.1:{}\", shutdown_grace: 5s}}\njobs:\n  - name: j\n    schedule: \"* * * * * *\"\n    run_at_start: never\n    notify:\n      healthchecks: [\"{}\"]\n    sources:\n{}",
        ws.store_url(),
        free_port(),
        rec.url(&format!("/ping/{HC_SECRET}")),
        files_source(&gone),
    ));
    let log = ws.path().join("daemon.log");
    let mut child = Command::new(bin())
        .args(["--log-format", "json", "--config"])
        .arg(&cfg)
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let all = wait_until("a /fail ping", Duration::from_secs(30), || {
        let all = rec.all();
        if all.iter().any(|r| r.path().ends_with("/fail")) {
            return Ok(all);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the daemon exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Err(format!("{all:#?}"))
    });
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    assert!(child.wait().unwrap().success());
    let fail = all.iter().find(|r| r.path().ends_with("/fail")).unwrap();
    assert!(
        fail.body.contains("etc") && fail.body.contains(&gone.display().to_string()),
        "{}",
        fail.body
    );
    assert!(ws.manifests().is_empty());
}
