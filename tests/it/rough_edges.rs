//! Issue 23.13's smaller items, each as an operator meets it.

use std::process::Command;

use crate::support::*;

fn help(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn regression_issue23_commands_without_configuration_do_not_offer_config_or_user() {
    for args in [
        &["keys", "generate"][..],
        &["keys"][..],
        &["policy", "simulate"][..],
        &["policy"][..],
    ] {
        let h = help(args);
        for opt in ["--config", "--user", "--keep-read-access"] {
            assert!(!h.contains(opt), "{args:?} --help lists {opt}:\n{h}");
        }
        assert!(h.contains("--log-level"), "{args:?}:\n{h}");
    }
    // Commands that read the configuration still list it.
    for args in [&["list"][..], &["restore"][..], &["doctor"][..]] {
        let h = help(args);
        assert!(
            h.contains("--config") && h.contains("--user"),
            "{args:?}:\n{h}"
        );
    }
}

#[test]
fn regression_issue23_policy_simulate_help_says_newest_first() {
    let h = help(&["policy", "simulate"]);
    assert!(h.contains("newest first"), "{h}");
    assert!(!h.contains("input order"), "{h}");
}

#[test]
fn regression_issue23_restore_refusal_names_the_force_flag() {
    let ws = Workspace::new();
    let dir = ws.path().join("etc");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a"), "x").unwrap();
    std::fs::write(dir.join("b"), "y").unwrap();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        dir.display()
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let run = ccbackup(&cfg, &["restore", "--source", "etc"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr().contains("--force") && !run.stderr().contains("use force "),
        "{}",
        run.stderr()
    );
}

/// Retention in the primary and in a copy store logs which store each
/// deletion was in.
#[test]
fn regression_issue23_retention_deletions_name_their_store() {
    let ws = Workspace::new();
    let dir = ws.path().join("etc");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a"), "x").unwrap();
    let copy = ws.path().join("copy");
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ncopies:\n  - url: file://{}\njobs:\n  - name: j\n    retention: {{keep_last: 1}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        copy.display(),
        dir.display()
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let run = ccbackup(&cfg, &["run-now"]);
    run.expect_ok();
    let err = run.stderr();
    let deleted: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("backup deleted by retention"))
        .collect();
    assert_eq!(deleted.len(), 2, "{err}");
    for store in [ws.store_url(), format!("file://{}", copy.display())] {
        assert!(
            deleted
                .iter()
                .any(|l| l.contains(&format!("store={store}"))),
            "no deletion logged for {store}:\n{err}"
        );
    }
}

/// The scheduler library's own start-up chatter stays out of the log.
#[test]
fn regression_issue23_daemon_start_does_not_log_job_creator_lines() {
    let ws = Workspace::new();
    let dir = ws.path().join("etc");
    std::fs::create_dir(&dir).unwrap();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ndaemon: {{listen: \"127.0.0.1:{}\", shutdown_grace: 5s}}\njobs:\n  - name: j\n    schedule: \"0 2 * * *\"\n    run_at_start: never\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        crate::support::free_port(),
        dir.display()
    ));
    let log = ws.path().join("daemon.log");
    let mut child = Command::new(bin())
        .args(["--log-format", "text", "--config"])
        .arg(&cfg)
        .arg("daemon")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until(
        "the daemon to start",
        std::time::Duration::from_secs(30),
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("daemon started")
        },
    );
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("Job creator created"), "{text}");
    assert!(text.contains("INFO"), "{text}");
}

/// The case the issue met: run-now interrupted while a dump uploads. It
/// says "nothing was left in the store", and nothing is: no file and no
/// empty `<job>/<id>/` directory.
#[test]
fn regression_issue23_interrupted_backup_leaves_no_empty_directory_in_a_file_store() {
    use std::process::Stdio;
    let db = TestDb::create(&unique("intr_dirs"));
    db.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let tmp = tempfile::tempdir().unwrap();
    let started = tmp.path().join("started");
    // pg_dump writes a little, says so, then stalls until killed.
    let clients = crate::hardening::client_dir(&[(
        "pg_dump",
        &format!(
            "[ \"$1\" = --version ] && exec \"$REAL\" --version\nhead -c 100000 /dev/urandom\necho go > {s}.tmp\nmv {s}.tmp {s}\nsleep 300 & wait",
            s = started.display()
        ),
    )]);
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: db\n        postgres:\n          host: {PG_HOST}\n          port: {PG_PORT}\n          user: postgres\n          databases: [\"{}\"]\n          globals: false\n          bin_dir: {}\n",
        ws.store_url(),
        db.name,
        clients.path().display()
    ));
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["--log-format", "text", "run-now"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "pg_dump to start",
        std::time::Duration::from_secs(60),
        || {
            assert!(child.try_wait().unwrap().is_none(), "run-now ended early");
            started.exists()
        },
    );
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("nothing was left in the store"), "{err}");
    let mut left = Vec::new();
    let mut stack = vec![ws.store_dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.parent() == Some(&ws.store_dir().join("j")) || !e.file_type().unwrap().is_dir() {
                left.push(p.clone());
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    assert!(left.is_empty(), "left in the store: {left:?}\n{err}");
}
