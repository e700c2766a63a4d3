//! Disaster day (issue 23): commands that read backups start when the
//! sources are gone; what reads a source fails that source, clearly.

use serde_json::Value;

use crate::support::*;

/// A job backing up `etc` (a plain directory) and `rrd`, both of which the
/// test may delete.
fn two_dirs(ws: &Workspace) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let etc = ws.path().join("etc");
    let rrd = ws.path().join("rrd");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&rrd).unwrap();
    std::fs::write(etc.join("credentials.yml.enc"), "x").unwrap();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n      - name: rrd\n        rrd: {{path: {}}}\n",
        ws.store_url(),
        etc.display(),
        rrd.display()
    ));
    (cfg, etc, rrd)
}

#[test]
fn regression_issue23_check_config_warns_about_missing_paths_and_passes() {
    let ws = Workspace::new();
    let (cfg, etc, rrd) = two_dirs(&ws);
    std::fs::remove_dir_all(&etc).unwrap();
    std::fs::remove_dir_all(&rrd).unwrap();
    let run = ccbackup(&cfg, &["check-config"]);
    run.expect_ok();
    let out = run.stdout();
    // Each warning names file, line and key, and the path.
    let cfg_s = cfg.display().to_string();
    for (key, path) in [
        ("jobs[0].sources[0].files.path", &etc),
        ("jobs[0].sources[1].rrd.path", &rrd),
    ] {
        assert!(
            out.lines().any(|l| l.starts_with("warning: ")
                && l.contains(&format!("{cfg_s}:"))
                && l.contains(key)
                && l.contains(&path.display().to_string())),
            "no warning for {key}: {out}"
        );
    }
    assert!(out.contains(": ok (1 job)"), "{out}");
}

#[test]
fn regression_issue23_run_now_fails_the_missing_source_naming_it() {
    let ws = Workspace::new();
    let (cfg, etc, _rrd) = two_dirs(&ws);
    std::fs::remove_dir_all(&etc).unwrap();
    let run = ccbackup(&cfg, &["run-now", "--json"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let r: Value = serde_json::from_str(run.stdout().trim()).unwrap();
    assert_eq!(r["outcome"], "failure", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("etc") && error.contains(&etc.display().to_string()),
        "{error}"
    );
    assert!(error.contains("does not exist"), "{error}");
    assert!(
        ws.manifests().is_empty(),
        "a failed backup wrote a manifest"
    );
}

/// `list`, `verify` and `restore` start with every source path gone, and
/// restore creates the destination.
#[test]
fn regression_issue23_reading_commands_start_without_source_paths() {
    let ws = Workspace::new();
    let (cfg, etc, rrd) = two_dirs(&ws);
    ccbackup(&cfg, &["run-now"]).expect_ok();
    std::fs::remove_dir_all(&etc).unwrap();
    std::fs::remove_dir_all(&rrd).unwrap();
    ccbackup(&cfg, &["list"]).expect_ok();
    ccbackup(&cfg, &["verify"]).expect_ok();
    ccbackup(&cfg, &["restore", "--dry-run"]).expect_ok();
    ccbackup(&cfg, &["restore", "--source", "etc"]).expect_ok();
    assert_eq!(
        std::fs::read_to_string(etc.join("credentials.yml.enc")).unwrap(),
        "x"
    );
}

/// Runs ccbackup with stdout a real pipe whose reading end is already
/// closed, as `ccbackup list | head -1` is once `head` has its line.
/// With `stderr_too`, stderr goes into the same closed pipe, as with
/// `ccbackup run-now 2>&1 | head -1`.
fn into_closed_pipe(
    cfg: &std::path::Path,
    args: &[&str],
    stdin: &str,
    stderr_too: bool,
) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let stderr = if stderr_too {
        Stdio::from(writer.try_clone().unwrap())
    } else {
        Stdio::piped()
    };
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(cfg)
        .args(["--log-format", "text"])
        .args(args)
        .env_remove("CCBACKUP_CONFIG")
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn regression_issue23_every_command_writing_into_a_closed_pipe_exits_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let ws = Workspace::new();
    let etc = ws.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("f"), "x").unwrap();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    schedule: \"0 2 * * *\"\n    retention: {{keep_last: 1}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        etc.display()
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let keys = [ws.path().join("keys-1"), ws.path().join("keys-2")];
    let policy = ws.path().join("policy.yaml");
    std::fs::write(&policy, "keep_last: 2\n").unwrap();
    let times = "2026-01-01T00:00:00Z\n2026-01-02T00:00:00Z\n2026-01-03T00:00:00Z\n";
    let cases: &[(&[&str], &str)] = &[
        (&["list"], ""),
        (&["list", "--json"], ""),
        (&["run-now"], ""),
        (&["run-now", "--json"], ""),
        (&["check-config"], ""),
        (&["schedule"], ""),
        (&["verify"], ""),
        (&["restore", "--dry-run"], ""),
        (&["prune", "--dry-run"], ""),
        (&["prune", "--dry-run", "--json"], ""),
        (&["policy", "simulate", policy.to_str().unwrap()], times),
        (
            &["policy", "simulate", policy.to_str().unwrap(), "--json"],
            times,
        ),
        (&["--help"], ""),
    ];
    for (stderr_too, keys) in [false, true].into_iter().zip(&keys) {
        let keygen: &[&str] = &["keys", "generate", keys.to_str().unwrap()];
        for (args, stdin) in cases.iter().chain([(keygen, "")].iter()) {
            let out = into_closed_pipe(&cfg, args, stdin, stderr_too);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let quiet = out.status.code() == Some(0)
                || out.status.code() == Some(141)
                || out.status.signal() == Some(libc::SIGPIPE);
            assert!(
                quiet && !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
                "ccbackup {args:?} into a closed pipe (stderr too: {stderr_too}): {}\n{stderr}",
                out.status
            );
        }
    }
    // A failing command into a closed pipe still fails, quietly.
    let bad = ws.path().join("bad.yaml");
    std::fs::write(&bad, "store: {url: \"file:///tmp/x\"}\njobs: nope\n").unwrap();
    let out = into_closed_pipe(&bad, &["list"], "", true);
    assert_eq!(out.status.code(), Some(2), "{}", out.status);
}

/// A `bin_dir` whose `pg_dump` runs `before` (shell) and then the real
/// `pg_dump`: the deterministic moment between ccbackup's discovery of the
/// databases and the dump of each one. The other programs are the real ones.
fn pg_bin_with_hook(dir: &std::path::Path, before: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = crate::support_pg::pg15_bin();
    let bin = dir.join("pgbin");
    std::fs::create_dir_all(&bin).unwrap();
    for p in ["pg_dumpall", "pg_restore", "psql"] {
        std::os::unix::fs::symlink(real.join(p), bin.join(p)).unwrap();
    }
    let script = bin.join("pg_dump");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{before}\nexec '{}' \"$@\"\n",
            real.join("pg_dump").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Issue 23.3: with `databases: all`, a database dropped after discovery
/// (before its properties are read, or before its pg_dump connects) is
/// skipped with a warning naming it; the run succeeds with the others. Any
/// other dump failure still fails the run.
#[test]
fn regression_issue23_database_dropped_after_discovery_is_skipped() {
    use crate::support_pg::{pg15_bin, Cluster};
    let c = Cluster::start(15, &pg15_bin())
        .unwrap_or_else(|e| panic!("a PostgreSQL 15 cluster is needed: {e}"));
    // Discovery lists databases by name; each dump runs in that order.
    for db in ["a_keep", "b_drops_c", "c_lost", "d_lost_self", "e_keep"] {
        c.psql("postgres", &format!("CREATE DATABASE {db}"));
        c.psql(db, "CREATE TABLE t AS SELECT 1 AS x");
    }
    let ws = Workspace::new();
    let psql = format!(
        "'{}' -X -q -h 127.0.0.1 -p {} -U postgres -d postgres -c",
        pg15_bin().join("psql").display(),
        c.port
    );
    let trigger = ws.path().join("break-f");
    let bin = pg_bin_with_hook(
        ws.path(),
        &format!(
            "case \"$*\" in\n  *b_drops_c*) {psql} 'DROP DATABASE c_lost' ;;\n  *d_lost_self*) {psql} 'DROP DATABASE d_lost_self' ;;\n  *f_broken*) [ -e '{}' ] && {{ echo 'pg_dump: error: simulated failure' >&2; exit 1; }} ;;\nesac",
            trigger.display()
        ),
    );
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: db\n        postgres: {{host: 127.0.0.1, port: {}, user: postgres, databases: all, globals: false, bin_dir: {}}}\n",
        ws.store_url(),
        c.port,
        bin.display()
    ));
    let run = ccbackup(&cfg, &["run-now", "--json"]);
    run.expect_ok();
    let r: serde_json::Value = serde_json::from_str(run.stdout().trim()).unwrap();
    assert_eq!(r["outcome"], "success", "{r}");
    let err = run.stderr();
    for gone in ["c_lost", "d_lost_self"] {
        assert!(
            err.lines()
                .any(|l| l.contains("WARN") && l.contains(gone) && l.contains("skipped")),
            "no warning naming {gone}:\n{err}"
        );
    }
    let manifest = std::fs::read_to_string(&ws.manifests()[0]).unwrap();
    for kept in ["a_keep", "b_drops_c", "e_keep"] {
        assert!(manifest.contains(kept), "{kept} missing: {manifest}");
    }
    let stored: Vec<String> = ws
        .stored_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        !stored
            .iter()
            .any(|p| p.contains("c_lost") || p.contains("d_lost_self")),
        "{stored:?}"
    );
    assert!(!manifest.contains("c_lost") && !manifest.contains("d_lost_self"));

    // A dump failing for another reason, of a database that still exists,
    // fails the run as before.
    c.psql("postgres", "CREATE DATABASE f_broken");
    std::fs::write(&trigger, "").unwrap();
    let run = ccbackup(&cfg, &["run-now"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(run.stderr().contains("f_broken"), "{}", run.stderr());
    assert_eq!(ws.manifests().len(), 1, "a failed run wrote a manifest");
}
