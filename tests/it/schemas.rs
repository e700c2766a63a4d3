//! Issue 23 item 7: one vocabulary for every output. The same fact has the
//! same name and type in `list --json`, `run-now --json`, `prune --json`,
//! webhooks and the log events; nulls are JSON nulls, lists are arrays, and
//! no Rust `Debug` text reaches an output.

use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// Runs ccbackup with JSON logs, as the daemon's container does.
fn ccbackup_json_logs(config: &std::path::Path, args: &[&str]) -> Run {
    let out = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(["--log-format", "json"])
        .args(args)
        .env_remove("CCBACKUP_CONFIG")
        .output()
        .expect("run ccbackup");
    Run { out }
}

/// The log events (JSON lines on stderr) with this message.
fn events(stderr: &str, message: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

/// A job backing up `dir`, with `retention` (YAML) if given; written as
/// `name` in the workspace.
fn files_job(
    ws: &Workspace,
    name: &str,
    dir: &std::path::Path,
    retention: Option<&str>,
) -> std::path::PathBuf {
    let retention = retention.map_or(String::new(), |r| format!("    retention: {r}\n"));
    let p = ws.path().join(name);
    std::fs::write(
        &p,
        format!(
            "store:\n  url: {}\njobs:\n  - name: etc\n{retention}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
            ws.store_url(),
            dir.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn regression_issue23_outputs_share_one_vocabulary() {
    let ws = Workspace::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("credentials.yml.enc"), b"enc").unwrap();
    let cfg = files_job(&ws, "config.yaml", dir.path(), None);

    let run = ccbackup_json_logs(&cfg, &["run-now", "--json"]);
    run.expect_ok();
    let report: Value = serde_json::from_str(run.stdout().trim()).unwrap();
    let id = report["backup_id"].as_str().unwrap().to_owned();

    // The log event carries the report's own values and types.
    let finished = events(&run.stderr(), "run finished");
    assert_eq!(finished.len(), 1, "{}", run.stderr());
    let f = &finished[0]["fields"];
    assert_eq!(f["error"], Value::Null, "{f}");
    assert_eq!(f["reasons"], serde_json::json!([]), "{f}");
    assert_eq!(f["copy_errors"], serde_json::json!([]), "{f}");
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
        "host",
        "kind",
    ] {
        assert_eq!(f[key], report[key], "{key}: {f} vs {report}");
    }
    // Milliseconds, not float noise.
    for d in [&report["duration_seconds"], &f["duration_seconds"]] {
        let ms = d.as_f64().unwrap() * 1000.0;
        assert!((ms - ms.round()).abs() < 1e-6, "{d}");
        assert!(
            d.to_string().split('.').nth(1).is_none_or(|x| x.len() <= 3),
            "{d}"
        );
    }

    // A second backup, so prune has one to remove.
    ccbackup(&cfg, &["run-now"]).expect_ok();

    // list --json: the run report's names for the same facts.
    let list = ccbackup(&cfg, &["list", "--json"]);
    list.expect_ok();
    let rows: Value = serde_json::from_str(&list.stdout()).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["backup_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no row with backup_id {id}: {rows}"));
    assert_eq!(row["job"], "etc");
    assert_eq!(row["started_at"], report["started_at"]);
    assert_eq!(row["stored_bytes"], report["stored_bytes"]);
    assert_eq!(row["raw_bytes"], report["raw_bytes"]);
    for old in ["id", "time", "size", "raw_size"] {
        assert!(row.get(old).is_none(), "old name `{old}` in {row}");
    }

    // prune --json rows, the same names again.
    let pruning = files_job(&ws, "prune.yaml", dir.path(), Some("{keep_last: 1}"));
    let prune = ccbackup(&pruning, &["prune", "--json"]);
    prune.expect_ok();
    let jobs: Value = serde_json::from_str(&prune.stdout()).unwrap();
    let entries = jobs[0]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{jobs}");
    let old = entries
        .iter()
        .find(|e| e["backup_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no entry with backup_id {id}: {jobs}"));
    assert_eq!(old["started_at"], report["started_at"]);
    assert_eq!(old["keep"], false);
    assert!(entries
        .iter()
        .all(|e| e.get("id").is_none() && e.get("time").is_none()));
}

/// The published schema of an output.
fn schema(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/schema")
        .join(name)
}

fn check_jsonschema() -> std::path::PathBuf {
    crate::support_s3::find_tool(
        "check-jsonschema",
        &[
            "schema-venv/bin/check-jsonschema",
            "venv/bin/check-jsonschema",
        ],
    )
}

/// Whether the real check-jsonschema accepts `doc` under `schema`, and
/// what it said.
fn validate(schema_name: &str, doc: &Value) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.json");
    std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let out = Command::new(check_jsonschema())
        .arg("--schemafile")
        .arg(schema(schema_name))
        .arg(&file)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[track_caller]
pub fn assert_valid(schema_name: &str, doc: &Value) {
    let (ok, said) = validate(schema_name, doc);
    assert!(ok, "{schema_name} rejects {doc:#}:\n{said}");
}

/// A one-shot HTTP endpoint that records the bodies POSTed to it.
struct Hook {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Hook {
    fn start() -> Hook {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = bodies.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 8192];
                let (head, want) = loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break (None, 0),
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..i]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (Some(i + 4), len);
                    }
                };
                let Some(start) = head else { continue };
                while got.len() < start + want {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                keep.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&got[start..]).into_owned());
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
        Hook { url, bodies }
    }
}

/// Every JSON output, produced from a real backup of a PostgreSQL database
/// and a directory into a file:// store, matches its published schema.
#[test]
fn regression_issue23_every_json_output_matches_its_published_schema() {
    check_jsonschema();
    let db = TestDb::create(&unique("schemas"));
    db.sql("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 10);");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("credentials.yml.enc"), b"enc").unwrap();
    let hook = Hook::start();
    let ws = Workspace::new();
    let port = crate::support::free_port();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ndaemon:\n  listen: 127.0.0.1:{port}\nnotify:\n  webhooks: [\"{}\"]\n  on: [start, success, failure]\njobs:\n  - name: site\n    schedule: \"0 3 1 1 *\"\n    run_at_start: never\n    retention: {{keep_last: 1}}\n    sources:\n{}      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        hook.url,
        postgres_source("db", &[&db.name]),
        dir.path().display()
    ));

    // run-now --json, its log event and its webhook.
    let run = ccbackup_json_logs(&cfg, &["run-now", "--json"]);
    run.expect_ok();
    let report: Value = serde_json::from_str(run.stdout().trim()).unwrap();
    assert_valid("run-report.json", &report);
    let finished = events(&run.stderr(), "run finished");
    assert_eq!(finished.len(), 1, "{}", run.stderr());
    assert_valid("run-report.json", &finished[0]["fields"]);
    let finish = hook
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap())
        .find(|b| b["event"] == "finish")
        .unwrap_or_else(|| panic!("no finish webhook: {:?}", hook.bodies.lock().unwrap()));
    assert_valid("run-report.json", &finish);

    ccbackup(&cfg, &["run-now"]).expect_ok();

    let list = ccbackup(&cfg, &["list", "--json"]);
    list.expect_ok();
    assert_valid("list.json", &serde_json::from_str(&list.stdout()).unwrap());

    for args in [&["prune", "--dry-run", "--json"][..], &["prune", "--json"]] {
        let prune = ccbackup(&cfg, args);
        prune.expect_ok();
        assert_valid(
            "prune.json",
            &serde_json::from_str(&prune.stdout()).unwrap(),
        );
    }

    // doctor exits 1 when a check fails; its JSON is the same either way.
    let doctor = ccbackup(&cfg, &["doctor", "--json"]);
    let checks: Value = serde_json::from_str(&doctor.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}{}", doctor.stdout(), doctor.stderr()));
    assert!(!checks.as_array().unwrap().is_empty());
    assert_valid("doctor.json", &checks);

    let policy = ws.path().join("policy.yaml");
    std::fs::write(&policy, "keep_daily: 2\n").unwrap();
    let mut sim = Command::new(bin())
        .args(["policy", "simulate", "--json"])
        .arg(&policy)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = sim.stdin.take().unwrap();
        stdin
            .write_all(b"2026-03-02T10:00:00Z\n2026-03-03T10:00:00Z\n2026-03-03T09:00:00Z\n")
            .unwrap();
    }
    let sim = sim.wait_with_output().unwrap();
    assert!(sim.status.success());
    assert_valid(
        "policy-simulate.json",
        &serde_json::from_slice(&sim.stdout).unwrap(),
    );

    // /readyz of a running daemon.
    let mut daemon = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("daemon")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (_, body) = wait_until(
        "the daemon to answer /readyz",
        std::time::Duration::from_secs(30),
        || http_get(port, "/readyz"),
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_valid("readyz.json", &serde_json::from_str(&body).unwrap());
}

/// Issue 19: `ls --json` of a real backup (a tree with a name that is not
/// UTF-8 and a symlink, a database with its TOC, the globals' roles)
/// matches docs/schema/ls.json, and so does the document of a failed
/// listing; an item without its path does not.
#[test]
fn regression_issue19_ls_json_matches_its_published_schema() {
    use std::os::unix::ffi::OsStrExt;
    check_jsonschema();
    let db = TestDb::create(&unique("schemas_ls"));
    db.sql("CREATE TABLE t (id serial PRIMARY KEY); INSERT INTO t DEFAULT VALUES;");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path()
            .join(std::ffi::OsStr::from_bytes(b"bad\xff \x1b[1m")),
        b"x",
    )
    .unwrap();
    std::os::unix::fs::symlink("bad", dir.path().join("link")).unwrap();
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n{}      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        postgres_source("db", &[&db.name]),
        dir.path().display()
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let run = ccbackup(&cfg, &["ls", "--json"]);
    run.expect_ok();
    let doc: Value = serde_json::from_str(&run.stdout()).unwrap();
    let types: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["type"].as_str())
        .collect();
    for t in ["file", "symlink", "database", "table", "toc", "role"] {
        assert!(types.contains(&t), "no {t} item in {doc:#}");
    }
    assert_valid("ls.json", &doc);

    let art = ws
        .stored_files()
        .into_iter()
        .find(|p| p.ends_with("etc.tar.zst"))
        .unwrap();
    let mut bytes = std::fs::read(&art).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&art, bytes).unwrap();
    let run = ccbackup(&cfg, &["ls", "--json", "--source", "etc"]);
    assert_eq!(run.code(), Some(1));
    let doc: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(doc["outcome"], "failure");
    assert_valid("ls.json", &doc);

    let mut broken = doc.clone();
    broken["items"] =
        serde_json::json!([{"source": "etc", "artifact": "etc.tar.zst", "type": "file"}]);
    assert!(!validate("ls.json", &broken).0);
}

/// The schemas are strict: the shapes this release replaced fail them.
#[test]
fn regression_issue23_schemas_reject_the_old_shapes() {
    let old_row = serde_json::json!([{
        "id": "20261207T172429Z-ab833a", "job": "etc", "time": "2026-12-07T17:24:29Z",
        "status": "complete", "sources": ["etc"], "size": 108, "raw_size": 2048,
        "artifacts": 1, "trust": "unchecked"
    }]);
    let (ok, said) = validate("list.json", &old_row);
    assert!(!ok, "an old list row passed: {said}");

    let new_row = serde_json::json!([{
        "backup_id": "20261207T172429Z-ab833a", "job": "etc",
        "started_at": "2026-12-07T17:24:29Z", "status": "complete", "sources": ["etc"],
        "stored_bytes": 108, "raw_bytes": 2048, "artifacts": 1, "problem": null,
        "suspicious": [], "shrink_accepted": [], "trust": "unchecked",
        "tampered": null, "recover_as_of": null
    }]);
    assert_valid("list.json", &new_row);

    // The old `run finished` event fields: empty strings for null and for
    // an empty list. (Durations in whole milliseconds are checked on the
    // real outputs above: JSON Schema's multipleOf is not exact for 0.001.)
    let mut event = serde_json::json!({
        "message": "run finished", "run_id": "354d9aa0-119c-43bd-bc26-142820647071",
        "kind": "backup", "job": "etc", "backup_id": "20261207T172429Z-ab833a",
        "outcome": "success", "started_at": "2026-12-07T17:24:29Z",
        "finished_at": "2026-12-07T17:24:29Z", "duration_seconds": 0.009,
        "stored_bytes": 108, "raw_bytes": 2048, "attempts": 1, "deletions": 0,
        "error": null, "host": "h", "reasons": [], "copy_errors": []
    });
    assert_valid("run-report.json", &event);
    for (key, old) in [
        ("error", serde_json::json!("")),
        ("backup_id", serde_json::json!("")),
        ("reasons", serde_json::json!("")),
    ] {
        let good = event[key].clone();
        event[key] = old;
        let (ok, said) = validate("run-report.json", &event);
        assert!(!ok, "old `{key}` passed: {said}");
        event[key] = good;
    }
    // A missing field fails too.
    event.as_object_mut().unwrap().remove("copy_errors");
    assert!(!validate("run-report.json", &event).0);
}

/// Issue 23 item 7: `restore --json` and `verify --json` print one typed
/// report each (what was restored or checked, per artifact, with what was
/// written), matching their schemas, with the facts the text output gives.
#[test]
fn regression_issue23_restore_and_verify_print_typed_json_reports() {
    check_jsonschema();
    let db = TestDb::create(&unique("schemas_restore"));
    db.sql("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 10);");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"alpha").unwrap();
    std::fs::write(dir.path().join("b.txt"), b"bravo!").unwrap();
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: site\n    sources:\n{}      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        postgres_source("db", &[&db.name]),
        dir.path().display()
    ));
    let run = ccbackup(&cfg, &["run-now"]);
    run.expect_ok();
    let id = run.stdout().trim().to_owned();

    let verify = ccbackup(&cfg, &["verify", "--json"]);
    verify.expect_ok();
    let v: Value = serde_json::from_str(&verify.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}", verify.stdout()));
    assert_valid("verify.json", &v);
    assert_eq!(v["outcome"], "success", "{v}");
    let arts = v["artifacts"].as_array().unwrap();
    // globals, the database and the directory
    assert_eq!(arts.len(), 3, "{v}");
    assert!(arts
        .iter()
        .all(|a| a["backup_id"] == id.as_str() && a["outcome"] == "ok" && a["problem"].is_null()));

    let dry = ccbackup(&cfg, &["restore", "--json", "--dry-run", "--source", "etc"]);
    dry.expect_ok();
    let d: Value =
        serde_json::from_str(&dry.stdout()).unwrap_or_else(|e| panic!("{e}: {}", dry.stdout()));
    assert_valid("restore.json", &d);
    assert_eq!(d["dry_run"], true);
    assert_eq!(d["steps"][0]["outcome"], "planned", "{d}");
    // The configured path holds both files: a restore needs --force, and
    // without it none would be written (as the text says).
    assert_eq!(d["steps"][0]["would_replace"], 2, "{d}");
    assert_eq!(d["steps"][0]["files_written"], 0, "{d}");
    assert_eq!(d["files_written"], 0, "{d}");

    let to = ws.path().join("restored-etc");
    let real = ccbackup(
        &cfg,
        &[
            "restore",
            "--json",
            "--source",
            "etc",
            "--to",
            to.to_str().unwrap(),
        ],
    );
    real.expect_ok();
    let r: Value =
        serde_json::from_str(&real.stdout()).unwrap_or_else(|e| panic!("{e}: {}", real.stdout()));
    assert_valid("restore.json", &r);
    assert_eq!(r["backup_id"], id.as_str());
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["files_written"], 2, "{r}");
    assert_eq!(r["bytes_written"], 11, "{r}");
    let step = &r["steps"][0];
    assert_eq!(step["kind"], "tree");
    assert_eq!(step["outcome"], "restored");
    assert_eq!(step["target"], to.to_str().unwrap());
    assert_eq!(std::fs::read(to.join("b.txt")).unwrap(), b"bravo!");

    // Into another database: a database step.
    let target = unique("schemas_restored");
    let into = ccbackup(
        &cfg,
        &[
            "restore",
            "--json",
            "--source",
            "db",
            "--target-db",
            &target,
        ],
    );
    let _drop = DropDb(target.clone());
    into.expect_ok();
    let r: Value = serde_json::from_str(&into.stdout()).unwrap();
    assert_valid("restore.json", &r);
    let step = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "database")
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(step["target"], target.as_str());
    assert_eq!(step["database"], db.name.as_str());
    assert_eq!(step["outcome"], "restored");
    assert_eq!(r["databases_restored"], 1, "{r}");

    // A refused restore is still one JSON report, with the reason.
    let again = ccbackup(
        &cfg,
        &[
            "restore",
            "--json",
            "--source",
            "etc",
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert!(!again.ok());
    let r: Value = serde_json::from_str(&again.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}{}", again.stdout(), again.stderr()));
    assert_valid("restore.json", &r);
    assert_eq!(r["outcome"], "failure");
    assert!(r["error"].as_str().unwrap().contains("--force"), "{r}");

    // A damaged artifact: verify says which one, and still prints JSON.
    let art = ws
        .stored_files()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("etc.tar.zst"))
        .unwrap();
    let mut bytes = std::fs::read(&art).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&art, bytes).unwrap();
    let bad = ccbackup(&cfg, &["verify", "--json"]);
    assert!(!bad.ok());
    let v: Value = serde_json::from_str(&bad.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}{}", bad.stdout(), bad.stderr()));
    assert_valid("verify.json", &v);
    assert_eq!(v["outcome"], "failure", "{v}");
    assert_eq!(
        (v["checked"].as_u64(), v["bad"].as_u64()),
        (Some(3), Some(1)),
        "{v}"
    );
    let failed: Vec<&Value> = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{v}");
    assert_eq!(failed[0]["artifact"], "etc.tar.zst", "{v}");
    assert!(failed[0]["problem"].is_string(), "{v}");
}

/// Drops a database when the test ends.
struct DropDb(String);

impl Drop for DropDb {
    fn drop(&mut self) {
        let _ = psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {}", quote_ident(&self.0)),
        );
    }
}

/// No Rust debug quoting in messages about the operator's own arguments:
/// `--wait-lock "soon"` printed `"soon"` with Rust's escapes.
#[test]
fn regression_issue23_argument_errors_quote_without_rust_debug_text() {
    let ws = Workspace::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = files_job(&ws, "config.yaml", dir.path(), None);
    let scheduled = ws.path().join("scheduled.yaml");
    std::fs::write(
        &scheduled,
        std::fs::read_to_string(&cfg).unwrap().replace(
            "jobs:\n  - name: etc\n",
            &format!(
                "copies:\n  - url: file://{}\njobs:\n  - name: etc\n    schedule: \"0 3 * * *\"\n",
                ws.path().join("copy").display()
            ),
        ),
    )
    .unwrap();
    for (args, shown) in [
        (&["run-now", "--wait-lock", "so\"on"][..], "`so\"on`"),
        (&["schedule", "--after", "to\"morrow"], "`to\"morrow`"),
        (
            &["copy", "--from-primary", "--to", "el\"sewhere"],
            "`el\"sewhere`",
        ),
    ] {
        let run = ccbackup(&scheduled, args);
        assert!(!run.ok(), "{args:?}");
        let err = run.stderr();
        assert!(
            err.contains(shown) && !err.contains("\\\""),
            "{args:?}: {err}"
        );
    }
}

/// `/status.json` of a daemon that ran a backup, copied it, drilled it and
/// lists a suspicious and a damaged backup matches its published schema.
#[test]
fn regression_issue19_status_json_matches_its_published_schema() {
    check_jsonschema();
    let ws = Workspace::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("credentials.yml.enc"), b"enc").unwrap();
    let port = crate::support::free_port();
    let copy = ws.path().join("copy");
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ncopies:\n  - url: file://{}\ndaemon:\n  listen: 127.0.0.1:{port}\njobs:\n  - name: site\n    schedule: \"0 3 1 1 *\"\n    run_at_start: always\n    retention: {{keep_last: 3}}\n    guard: {{min_files: 2}}\n    verify: {{schedule: \"* * * * * *\", restore_test: false}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        copy.display(),
        dir.path().display()
    ));
    // One file, below min_files: a suspicious backup.
    assert_eq!(ccbackup(&cfg, &["run-now"]).code(), Some(1));
    std::fs::write(dir.path().join("b.txt"), b"b").unwrap();
    let junk = ws.store_dir().join("site").join("20260102T000000Z-dddddd");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("manifest.json"), b"{").unwrap();

    let d = crate::status_page::Daemon::start(&cfg, port);
    let v = d.status_when("a run, a copy and a drill", |v| {
        let j = &v["jobs"][0];
        !j["last_run"].is_null()
            && !j["last_drill"].is_null()
            && !j["copies"][0]["newest_copied"].is_null()
    });
    drop(d);
    let statuses: Vec<&str> = v["jobs"][0]["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"suspicious")
            && statuses.contains(&"damaged")
            && statuses.contains(&"complete"),
        "{v:#}"
    );
    assert_valid("status.json", &v);
    // The schema is strict: a misspelt status fails it.
    let mut bad = v.clone();
    bad["jobs"][0]["backups"][0]["status"] = "Complete".into();
    assert!(!validate("status.json", &bad).0);
}
