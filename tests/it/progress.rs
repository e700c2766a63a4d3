//! Issue 10: restore and verify show progress on a terminal (phase, bytes,
//! percentage from the manifest's sizes), print one summary line, and emit
//! no escape codes when nothing is a terminal or NO_COLOR is set.

use std::path::Path;
use std::process::Command;

use crate::hardening::client_dir;
use crate::support::*;

/// Runs ccbackup under a pseudo-terminal (`script`), returning what the
/// terminal showed.
fn on_terminal(cfg: &Path, args: &str, env: &[(&str, &str)]) -> String {
    require_tool("script");
    let cmd = format!("{} --config {} {args}", bin(), cfg.display());
    let out = Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn restore_shows_phase_and_percentage_on_a_terminal_and_a_summary() {
    let db = TestDb::create(&unique("progress"));
    db.sql("CREATE TABLE t AS SELECT g AS x FROM generate_series(1, 1000) g;");
    // pg_restore waits two seconds first, so the 0.5 s progress line shows
    // the restoring phase several times.
    let clients = client_dir(&[(
        "pg_restore",
        "[ \"$1\" = --version ] && exec \"$REAL\" --version\nsleep 2\nexec \"$REAL\" \"$@\"",
    )]);
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: db\n        postgres:\n          host: {PG_HOST}\n          port: {PG_PORT}\n          user: postgres\n          databases: [\"{}\"]\n          bin_dir: {}\n",
        ws.store_url(),
        db.name,
        clients.path().display()
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let target = unique("progress_target");
    let shown = on_terminal(&cfg, &format!("restore --target-db {target}"), &[]);
    assert!(shown.contains("restore: restoring"), "{shown}");
    assert!(shown.contains("%)"), "no percentage: {shown}");
    assert!(
        shown.contains("\x1b[2K"),
        "the line is not redrawn: {shown}"
    );
    let last = shown.lines().rfind(|l| !l.trim().is_empty()).unwrap();
    assert!(
        last.contains("restored backup j/"),
        "no summary line: {shown}"
    );
    psql(
        "postgres",
        &format!("DROP DATABASE {}", quote_ident(&target)),
    );

    // Piped: no progress, no escape codes, still the summary.
    let target = unique("progress_pipe");
    let run = ccbackup(&cfg, &["restore", "--target-db", &target]);
    run.expect_ok();
    assert!(!run.stderr().contains('\x1b'), "{}", run.stderr());
    assert!(!run.stdout().contains('\x1b'));
    assert!(
        run.stdout().contains("restored backup j/"),
        "{}",
        run.stdout()
    );
    psql(
        "postgres",
        &format!("DROP DATABASE {}", quote_ident(&target)),
    );

    // verify prints one summary line too.
    let run = ccbackup(&cfg, &["verify"]);
    run.expect_ok();
    assert!(
        run.stdout()
            .lines()
            .last()
            .unwrap()
            .starts_with("verified 2 artifacts of 1 backup"),
        "{}",
        run.stdout()
    );
}

#[test]
fn no_color_turns_off_escape_codes_on_a_terminal() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), b"x").unwrap();
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.path().display()
    ));
    let coloured = on_terminal(&cfg, "--log-format text run-now", &[]);
    assert!(
        coloured.contains("\x1b["),
        "expected coloured logs on a terminal: {coloured}"
    );
    let plain = on_terminal(&cfg, "--log-format text run-now", &[("NO_COLOR", "1")]);
    assert!(
        !plain.contains("\x1b[3") && !plain.contains("\x1b[2m"),
        "{plain:?}"
    );
}

/// Issue 23.8: the summary counts what was written (files and their
/// bytes, databases), not the decompressed stream read to get there, and
/// says "1 file" / "2 files".
#[test]
fn regression_issue23_restore_summary_counts_files_and_bytes_written() {
    let db = TestDb::create(&unique("summary"));
    db.sql("CREATE TABLE t AS SELECT g AS x FROM generate_series(1, 1000) g;");
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("a"), vec![b'a'; 1000]).unwrap();
    std::fs::write(data.path().join("b"), vec![b'b'; 2500]).unwrap();
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n{}      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        postgres_source("db", &[&db.name]),
        data.path().display()
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let out = tempfile::tempdir().unwrap();
    let last = |run: &Run| run.stdout().lines().last().unwrap_or_default().to_owned();

    let to = out.path().join("both");
    let run = ccbackup(
        &cfg,
        &["restore", "--source", "etc", "--to", to.to_str().unwrap()],
    );
    run.expect_ok();
    assert!(
        last(&run).ends_with("(2 files, 3.4 KiB written)"),
        "{}",
        run.stdout()
    );

    let to = out.path().join("one");
    let run = ccbackup(
        &cfg,
        &[
            "restore",
            "--source",
            "etc",
            "--include",
            "a",
            "--to",
            to.to_str().unwrap(),
        ],
    );
    run.expect_ok();
    assert!(
        last(&run).ends_with("(1 file, 1000 B written)"),
        "{}",
        run.stdout()
    );

    let target = unique("summary_target");
    let run = ccbackup(&cfg, &["restore", "--source", "db", "--target-db", &target]);
    run.expect_ok();
    assert!(
        last(&run).ends_with("(1 database restored)"),
        "{}",
        run.stdout()
    );
    psql(
        "postgres",
        &format!("DROP DATABASE {}", quote_ident(&target)),
    );
}
