//! The real `ccbackup daemon` binary under signals: SIGHUP with a broken
//! config keeps the old one running; SIGTERM stops it cleanly (exit 0).

use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// The whole answer to a GET; `None` while nothing listens.
fn get(port: u16, path: &str) -> Option<String> {
    http_get_raw(port, path, Duration::from_secs(5))
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    poll_for(within, || child.try_wait().unwrap()).ok()
}

#[test]
fn sighup_with_a_bad_config_keeps_running_and_sigterm_exits_zero() {
    let ws = Workspace::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), b"x").unwrap();
    let port = free_port();
    let (hook, bodies) = crate::drills::hook();
    let good = format!(
        "store:\n  url: {}\ndaemon:\n  listen: 127.0.0.1:{port}\nnotify:\n  webhooks: [\"{hook}\"]\njobs:\n  - name: j\n    schedule: \"0 3 1 1 *\"\n    run_at_start: never\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.path().display()
    );
    let cfg = ws.config(&good);
    let mut d = spawn_daemon(&cfg, port, None);
    let metrics = || get(port, "/metrics").unwrap_or_default();
    assert!(metrics().contains("\nccbackup_config_reload_success 1\n"));

    // A broken config on SIGHUP is reported and the running one kept.
    std::fs::write(&cfg, "store: [this is not valid\n").unwrap();
    signal(&d.child, "-HUP");
    d.wait_log("configuration reload failed");
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "daemon died on a bad reload"
    );
    assert!(get(port, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    // Issue 24 item 6: counted, shown in /readyz, notified.
    let m = metrics();
    assert!(m.contains("\nccbackup_config_reload_success 0\n"), "{m}");
    assert!(
        m.contains("\nccbackup_config_reload_failures_total 1\n"),
        "{m}"
    );
    let ready = get(port, "/readyz").unwrap_or_default();
    let (_, body) = ready.split_once("\r\n\r\n").unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["config"]["reload_success"], false, "{ready}");
    assert!(
        v["config"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("config.yaml")),
        "{ready}"
    );
    let body = bodies
        .recv_timeout(Duration::from_secs(10))
        .expect("the rejected reload was not notified");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["kind"], "reload", "{body}");
    assert_eq!(v["outcome"], "failure", "{body}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("configuration reload rejected")),
        "{body}"
    );

    // A good file again: applied, and the gauge says so.
    std::fs::write(&cfg, &good).unwrap();
    signal(&d.child, "-HUP");
    d.wait_log("configuration reloaded");
    let m = metrics();
    assert!(m.contains("\nccbackup_config_reload_success 1\n"), "{m}");
    assert!(
        m.contains("\nccbackup_config_reload_failures_total 1\n"),
        "{m}"
    );
    d.stop();
}

/// The daemon binary with its JSON log lines arriving on a channel.
struct Daemon {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// Starts the daemon binary (under `prlimit` when `nofile` is given) and
/// waits until `/healthz` answers.
fn spawn_daemon(cfg: &std::path::Path, port: u16, nofile: Option<u32>) -> Daemon {
    use std::io::BufRead;
    let mut cmd = match nofile {
        Some(n) => {
            require_tool("prlimit");
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    let mut child = cmd
        .args(["--log-format", "json", "--config"])
        .arg(cfg)
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let up = poll_for(Duration::from_secs(20), || {
        get(port, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    if up.is_err() {
        let _ = child.kill();
        panic!("daemon did not answer /healthz on port {port}");
    }
    Daemon {
        child,
        lines,
        seen: Vec::new(),
    }
}

impl Daemon {
    /// Waits for a log line containing `needle` and returns it parsed.
    fn wait_log(&mut self, needle: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            self.seen.push(line.clone());
            if line.contains(needle) {
                return serde_json::from_str(&line).unwrap();
            }
        }
        panic!("no log line with {needle:?} in:\n{}", self.seen.join("\n"));
    }

    /// SIGTERM, wait for exit 0.
    fn stop(mut self) {
        signal(&self.child, "-TERM");
        let status = wait_exit(&mut self.child, Duration::from_secs(20));
        if status.is_none() {
            let _ = self.child.kill();
        }
        self.seen.extend(self.lines.try_iter());
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{}",
            self.seen.join("\n")
        );
    }
}

fn daemon_config(ws: &Workspace, port: u16) -> String {
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    format!(
        "store:\n  url: {}\ndaemon:\n  listen: 127.0.0.1:{port}\njobs:\n  - name: j\n    schedule: \"0 3 1 1 *\"\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.display()
    )
}

#[test]
fn idle_half_sent_requests_cannot_starve_healthz() {
    let ws = Workspace::new();
    let port = free_port();
    let cfg = ws.config(&daemon_config(&ws, port));
    // Fewer descriptors than idle clients: an unbounded server runs out.
    let daemon = spawn_daemon(&cfg, port, Some(128));
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /healthz HT").unwrap();
            s
        })
        .collect();
    // Well within a compose healthcheck's timeout, and less than the
    // server's own header timeout, so waiting for idle clients to time out
    // does not count.
    for _ in 0..3 {
        let answer = http_get_raw(port, "/healthz", Duration::from_secs(2));
        assert!(
            answer
                .as_deref()
                .is_some_and(|r| r.starts_with("HTTP/1.1 200")),
            "/healthz did not answer within 2 s beside 300 idle clients: {answer:?}"
        );
    }
    drop(idle);
    daemon.stop();
}

#[test]
fn sighup_changing_listen_warns_and_keeps_the_old_address() {
    let ws = Workspace::new();
    let port = free_port();
    let cfg = ws.config(&daemon_config(&ws, port));
    let mut daemon = spawn_daemon(&cfg, port, None);
    let other = free_port();
    std::fs::write(&cfg, daemon_config(&ws, other)).unwrap();
    signal(&daemon.child, "-HUP");
    let warning = daemon.wait_log("cannot be changed without a restart");
    assert_eq!(warning["level"], "WARN", "{warning}");
    let fields = warning["fields"].to_string();
    assert!(
        fields.contains(&format!("127.0.0.1:{port}"))
            && fields.contains(&format!("127.0.0.1:{other}")),
        "{warning}"
    );
    daemon.wait_log("configuration reloaded");
    assert!(get(port, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    assert!(
        get(other, "/healthz").is_none(),
        "now also on port {other}?"
    );
    daemon.stop();
}
