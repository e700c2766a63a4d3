//! The real `ccbackup daemon` binary under signals: SIGHUP with a broken
//! config keeps the old one running; SIGTERM stops it cleanly (exit 0).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Plain HTTP GET; `None` while nothing listens.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
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
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn sighup_with_a_bad_config_keeps_running_and_sigterm_exits_zero() {
    let ws = Workspace::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), b"x").unwrap();
    let port = free_port();
    let good = format!(
        "store:\n  url: {}\ndaemon:\n  listen: 127.0.0.1:{port}\njobs:\n  - name: j\n    schedule: \"0 3 1 1 *\"\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.path().display()
    );
    let cfg = ws.config(&good);
    let mut child = Command::new(bin())
        .args(["--log-format", "json", "--config"])
        .arg(&cfg)
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut up = false;
    while Instant::now() < deadline {
        if get(port, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !up {
        let _ = child.kill();
        panic!("daemon did not answer /healthz on port {port}");
    }

    // A broken config on SIGHUP is reported and the running one kept.
    std::fs::write(&cfg, "store: [this is not valid\n").unwrap();
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        child.try_wait().unwrap().is_none(),
        "daemon died on a bad reload"
    );
    assert!(get(port, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200")));

    signal(&child, "-TERM");
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let mut stderr = String::new();
    if status.is_none() {
        let _ = child.kill();
    }
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("daemon ignored SIGTERM:\n{stderr}"));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("reload failed"), "{stderr}");
}
