//! Issue 9: the store is untrusted input. Each test crafts what an attacker
//! with write access to the bucket could write (manifests, artifacts) and
//! runs the real binary against it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::*;

/// A job with a files source, backed up once.
struct Files {
    ws: Workspace,
    cfg: PathBuf,
    etc: tempfile::TempDir,
    id: String,
}

fn files_job(retention: &str) -> Files {
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("credentials.yml.enc"), b"real credentials").unwrap();
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n{retention}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        etc.path().display()
    ));
    let id = backup(&cfg);
    Files { ws, cfg, etc, id }
}

fn backup(cfg: &Path) -> String {
    let run = ccbackup(cfg, &["run-now"]);
    run.expect_ok();
    run.stdout().trim().to_owned()
}

fn manifest_path(ws: &Workspace, id: &str) -> PathBuf {
    ws.store_dir().join("j").join(id).join("manifest.json")
}

fn read_manifest(ws: &Workspace, id: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(manifest_path(ws, id)).unwrap()).unwrap()
}

fn write_manifest(ws: &Workspace, id: &str, v: &serde_json::Value) {
    let p = manifest_path(ws, id);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// An ID one second after `id`, so it sorts as newer.
fn id_after(id: &str, secs: i64, suffix: &str) -> String {
    let t = chrono::NaiveDateTime::parse_from_str(&id[..16], "%Y%m%dT%H%M%SZ").unwrap()
        + chrono::Duration::seconds(secs);
    format!("{}-{suffix}", t.format("%Y%m%dT%H%M%SZ"))
}

fn time_of(id: &str) -> String {
    let t = chrono::NaiveDateTime::parse_from_str(&id[..16], "%Y%m%dT%H%M%SZ").unwrap();
    t.and_utc().to_rfc3339()
}

#[test]
fn regression_issue9_tree_restore_goes_to_the_configured_path_not_the_manifest_root() {
    let f = files_job("");
    let evil = tempfile::tempdir().unwrap();
    // The attacker points the recorded root at another directory.
    let mut m = read_manifest(&f.ws, &f.id);
    m["artifacts"][0]["tree"]["root"] = serde_json::json!(evil.path().display().to_string());
    write_manifest(&f.ws, &f.id, &m);
    std::fs::remove_file(f.etc.path().join("credentials.yml.enc")).unwrap();

    let run = ccbackup(&f.cfg, &["restore", "--source", "etc", "--force"]);
    run.expect_ok();
    assert_eq!(
        std::fs::read(f.etc.path().join("credentials.yml.enc")).unwrap(),
        b"real credentials"
    );
    assert_eq!(std::fs::read_dir(evil.path()).unwrap().count(), 0);
    assert!(
        run.stdout().contains("recorded the root"),
        "the difference is not reported: {}",
        run.stdout()
    );
}

#[test]
fn regression_issue9_artifact_key_outside_the_backup_is_refused_not_hashed() {
    let f = files_job("");
    let target = Path::new("/etc/hostname");
    let sum = sha256_file(target);
    let mut m = read_manifest(&f.ws, &f.id);
    let depth = f.ws.store_dir().components().count() + 2;
    m["artifacts"][0]["key"] = serde_json::json!(format!("{}etc/hostname", "../".repeat(depth)));
    m["artifacts"][0]["sha256"] = serde_json::json!("0".repeat(64));
    m["artifacts"][0]["stored_bytes"] = serde_json::json!(std::fs::metadata(target).unwrap().len());
    write_manifest(&f.ws, &f.id, &m);

    let run = ccbackup(&f.cfg, &["verify", "--backup", "all"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(all.contains("damaged"), "{all}");
    assert!(
        !all.contains(&sum),
        "verify printed the hash of a file outside the store: {all}"
    );
    let run = ccbackup(
        &f.cfg,
        &["restore", "--source", "etc", "--to", "/tmp/never"],
    );
    assert_eq!(run.code(), Some(1));
    assert!(!Path::new("/tmp/never").exists());
}

#[test]
fn regression_issue9_manifest_id_and_job_must_match_its_directory() {
    let f = files_job("");
    let mut m = read_manifest(&f.ws, &f.id);
    m["id"] = serde_json::json!("/etc");
    write_manifest(&f.ws, &f.id, &m);
    let run = ccbackup(&f.cfg, &["list", "--json"]);
    run.expect_ok();
    let rows: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(rows[0]["backup_id"], serde_json::json!(f.id));
    assert_eq!(rows[0]["status"], serde_json::json!("damaged"));
    assert!(!run.stdout().contains("\"/etc\""), "{}", run.stdout());
}

#[test]
fn regression_issue9_a_copied_manifest_cannot_make_prune_delete_kept_data() {
    let f = files_job("    retention: {keep_last: 1}\n");
    let newest = backup(&f.cfg);
    // A copy of the newest manifest, under an older ID it does not name.
    let fake = id_after(&f.id, -3600, "aaaaaa");
    let m = read_manifest(&f.ws, &newest);
    write_manifest(&f.ws, &fake, &m);

    let run = ccbackup(&f.cfg, &["prune"]);
    run.expect_ok();
    assert!(run.stdout().contains("damaged"), "{}", run.stdout());
    // The real newest backup is whole, the damaged copy is left alone.
    ccbackup(&f.cfg, &["verify", "--backup", &newest]).expect_ok();
    assert!(
        manifest_path(&f.ws, &fake).exists(),
        "retention deleted a damaged manifest"
    );
    assert!(
        !manifest_path(&f.ws, &f.id).exists(),
        "the old backup should be pruned"
    );
}

#[test]
fn regression_issue9_one_damaged_manifest_blocks_nothing() {
    let f = files_job("    retention: {keep_last: 1}\n");
    let garbage = id_after(&f.id, 3600, "bbbbbb");
    std::fs::create_dir_all(manifest_path(&f.ws, &garbage).parent().unwrap()).unwrap();
    std::fs::write(manifest_path(&f.ws, &garbage), b"{ not json").unwrap();
    let missing = id_after(&f.id, 7200, "cccccc");
    write_manifest(
        &f.ws,
        &missing,
        &serde_json::json!({"format": 1, "job": "j"}),
    );

    let run = ccbackup(&f.cfg, &["list"]);
    run.expect_ok();
    assert_eq!(
        run.stdout().matches("DAMAGED").count(),
        2,
        "{}",
        run.stdout()
    );
    assert!(run.stdout().contains(&f.id));

    // The damaged ones are newer, yet `latest` is the newest good backup.
    ccbackup(&f.cfg, &["verify"]).expect_ok();
    let to = tempfile::tempdir().unwrap();
    let dest = to.path().join("out");
    let run = ccbackup(&f.cfg, &["restore", "--to", dest.to_str().unwrap()]);
    run.expect_ok();
    assert!(run.stderr().contains("damaged"), "{}", run.stderr());
    assert!(dest.join("credentials.yml.enc").exists());

    // verify all reports them as failures; naming one says why.
    let run = ccbackup(&f.cfg, &["verify", "--backup", "all"]);
    assert_eq!(run.code(), Some(1));
    assert_eq!(
        run.stdout().matches("damaged manifest").count(),
        2,
        "{}",
        run.stdout()
    );
    let run = ccbackup(&f.cfg, &["restore", "--backup", &garbage, "--to", "/tmp/x"]);
    assert_eq!(run.code(), Some(1));
    assert!(run.stderr().contains("is damaged"), "{}", run.stderr());

    // run-now's retention and prune work and leave the damaged ones alone.
    let newest = backup(&f.cfg);
    ccbackup(&f.cfg, &["prune"]).expect_ok();
    assert!(manifest_path(&f.ws, &garbage).exists());
    assert!(manifest_path(&f.ws, &missing).exists());
    assert!(manifest_path(&f.ws, &newest).exists());
    assert!(!manifest_path(&f.ws, &f.id).exists());
}

#[test]
fn regression_issue9_oversized_manifest_is_damaged_not_read() {
    let f = files_job("");
    let big = id_after(&f.id, 60, "dddddd");
    let mut m = read_manifest(&f.ws, &f.id);
    m["id"] = serde_json::json!(big);
    m["started_at"] = serde_json::json!(time_of(&big));
    m["padding"] = serde_json::json!("x".repeat(9 * 1024 * 1024));
    write_manifest(&f.ws, &big, &m);
    let run = ccbackup(&f.cfg, &["list"]);
    run.expect_ok();
    assert!(run.stdout().contains("larger than"), "{}", run.stdout());
}

#[test]
fn regression_issue9_file_store_objects_are_private() {
    let f = files_job("");
    let mut checked = 0;
    fn walk(p: &Path, checked: &mut usize) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let md = e.metadata().unwrap();
            let mode = md.permissions().mode() & 0o777;
            if md.is_dir() {
                assert_eq!(mode, 0o700, "{} is {mode:o}", e.path().display());
                walk(&e.path(), checked);
            } else {
                assert_eq!(mode, 0o600, "{} is {mode:o}", e.path().display());
                *checked += 1;
            }
        }
    }
    walk(&f.ws.store_dir(), &mut checked);
    assert!(checked >= 2, "no objects checked");
}

/// A directory of PostgreSQL client programs where `wrapped` are shell
/// scripts running `body` (with `$REAL` the real program), and the rest
/// symlinks to the server's own clients.
pub fn client_dir(wrapped: &[(&str, &str)]) -> tempfile::TempDir {
    let real_dir = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_dump").exists())
        .max()
        .expect("a PostgreSQL client under /usr/lib/postgresql");
    let dir = tempfile::tempdir().unwrap();
    for prog in ["pg_dump", "pg_dumpall", "pg_restore", "psql"] {
        let real = real_dir.join(prog);
        let link = dir.path().join(prog);
        match wrapped.iter().find(|(p, _)| *p == prog) {
            Some((_, body)) => {
                std::fs::write(
                    &link,
                    format!("#!/bin/sh\nREAL={}\n{body}\n", real.display()),
                )
                .unwrap();
                std::fs::set_permissions(&link, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            None => std::os::unix::fs::symlink(&real, &link).unwrap(),
        }
    }
    dir
}

fn pg_job(ws: &Workspace, db: &str, bin_dir: &Path, extra: &str) -> PathBuf {
    ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: db\n        postgres:\n          host: {PG_HOST}\n          port: {PG_PORT}\n          user: postgres\n          databases: [\"{db}\"]\n          bin_dir: {}\n{extra}",
        ws.store_url(),
        bin_dir.display()
    ))
}

#[test]
fn regression_issue9_children_get_a_clean_environment() {
    let db = TestDb::create(&unique("envclean"));
    db.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let out = tempfile::tempdir().unwrap();
    let env_file = out.path().join("env");
    let clients = client_dir(&[(
        "pg_dump",
        &format!(
            "[ \"$1\" = --version ] || env > {}\nexec \"$REAL\" \"$@\"",
            env_file.display()
        ),
    )]);
    let ws = Workspace::new();
    let cfg = pg_job(&ws, &db.name, clients.path(), "");
    let run = support_s3::ccbackup_env(
        &cfg,
        &["run-now"],
        &[
            ("AWS_SECRET_ACCESS_KEY", "do-not-leak"),
            // Each would redirect or break the dump if pg_dump saw it.
            ("PGHOSTADDR", "127.0.0.2"),
            ("PGPORT", "1"),
            ("PGOPTIONS", "-c statement_timeout=1"),
            ("PGSERVICE", "nonexistent"),
            ("PGDATABASE", "nonexistent"),
        ],
    );
    run.expect_ok();
    let env = std::fs::read_to_string(&env_file).unwrap();
    for leaked in [
        "AWS_SECRET_ACCESS_KEY",
        "PGHOSTADDR",
        "PGOPTIONS",
        "PGSERVICE",
        "PGDATABASE",
        "PGPORT",
    ] {
        assert!(!env.contains(leaked), "{leaked} reached pg_dump:\n{env}");
    }
}

#[test]
fn regression_issue9_system_databases_are_refused_as_targets() {
    let f_db = TestDb::create(&unique("sysdb"));
    f_db.sql("CREATE TABLE t (x int);");
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n{}",
        ws.store_url(),
        postgres_source("db", &[&f_db.name])
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    for target in ["postgres", "template1"] {
        let run = ccbackup(&cfg, &["restore", "--target-db", target]);
        assert_eq!(run.code(), Some(1), "{}", run.stderr());
        assert!(
            run.stderr().contains("--allow-system-db"),
            "{}",
            run.stderr()
        );
    }
    assert_eq!(psql("postgres", "SELECT count(*) FROM pg_class WHERE relname = 't' AND relnamespace = 'public'::regnamespace"), "0");
}

use crate::support_s3;

/// Exit code and peak RSS in KiB of a ccbackup run, measured by GNU time:
/// the rusage of a child forked from this (large) test process would count
/// the test's own pages until the exec.
pub fn run_measuring_rss(cfg: &Path, args: &[&str]) -> (i32, i64) {
    require_tool("/usr/bin/time");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rss");
    let status = std::process::Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&out)
        .arg(bin())
        .arg("--config")
        .arg(cfg)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let rss = std::fs::read_to_string(&out).unwrap();
    let rss = rss.lines().last().unwrap().trim().parse().unwrap();
    (status.code().unwrap_or(-1), rss)
}

#[test]
fn regression_issue9_restore_test_streams_big_files() {
    let data = tempfile::tempdir().unwrap();
    // 600 MiB of zeros: tiny once compressed, huge if read whole.
    let f = std::fs::File::create(data.path().join("big.img")).unwrap();
    f.set_len(600 * 1024 * 1024).unwrap();
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.path().display()
    ));
    backup(&cfg);
    let (code, rss_kib) = run_measuring_rss(&cfg, &["verify", "--restore-test"]);
    assert_eq!(code, 0);
    assert!(
        rss_kib < 200 * 1024,
        "verify --restore-test peaked at {} MiB",
        rss_kib / 1024
    );
}

#[test]
fn regression_review_symlinks_in_a_file_store_are_never_followed() {
    let f = files_job("    retention: {keep_last: 1}\n");
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("important.conf"), b"keep me").unwrap();
    // A leftover directory old enough to sweep, holding a symlink out of
    // the store, and a symlink inside a real backup that retention deletes.
    let leftover = f.ws.store_dir().join("j").join("20200101T000000Z-dddddd");
    std::fs::create_dir_all(&leftover).unwrap();
    std::os::unix::fs::symlink(host.path(), leftover.join("data")).unwrap();
    std::os::unix::fs::symlink(host.path(), backup_dir_of(&f.ws, &f.id).join("extra")).unwrap();
    // A loop must not break listing either.
    std::os::unix::fs::symlink(f.ws.store_dir().join("j"), leftover.join("loop")).unwrap();
    std::process::Command::new("touch")
        .args(["-h", "-d", "3 days ago"])
        .arg(leftover.join("data"))
        .status()
        .unwrap();
    ccbackup(&f.cfg, &["list"]).expect_ok();
    let newest = backup(&f.cfg);
    ccbackup(&f.cfg, &["prune"]).expect_ok();
    assert_eq!(
        std::fs::read(host.path().join("important.conf")).unwrap(),
        b"keep me"
    );
    assert!(manifest_path(&f.ws, &newest).exists());
}

fn backup_dir_of(ws: &Workspace, id: &str) -> PathBuf {
    ws.store_dir().join("j").join(id)
}

#[test]
fn regression_review_symlinked_or_fifo_artifacts_are_refused_without_hanging() {
    let f = files_job("");
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("s"), b"top secret").unwrap();
    let art = backup_dir_of(&f.ws, &f.id).join("etc.tar.zst");
    std::fs::remove_file(&art).unwrap();
    std::os::unix::fs::symlink(secret.path().join("s"), &art).unwrap();
    let mut m = read_manifest(&f.ws, &f.id);
    m["artifacts"][0]["stored_bytes"] = serde_json::json!(10);
    write_manifest(&f.ws, &f.id, &m);
    let run = ccbackup(&f.cfg, &["verify"]);
    assert_eq!(run.code(), Some(1));
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        !all.contains(&sha256_file(&secret.path().join("s"))),
        "{all}"
    );
    assert!(all.contains("symlink"), "{all}");

    std::fs::remove_file(&art).unwrap();
    let c = std::ffi::CString::new(art.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Bounded by the test harness's own timeout if it hung; it must not.
    let run = ccbackup(&f.cfg, &["verify"]);
    assert_eq!(run.code(), Some(1));
    // The catalog's listing already skips it, so the backup is damaged
    // (its artifact missing) before anything opens the FIFO.
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        all.contains("not a regular file") || all.contains("special file"),
        "{all}"
    );
}

/// Replaces the files artifact of `id` with `tar` (compressed here) and
/// fixes up the manifest so only ccbackup's own checks stand in the way.
fn plant_tree(f: &Files, tar: &[u8], raw_bytes: u64) {
    let art = backup_dir_of(&f.ws, &f.id).join("etc.tar.zst");
    let z = zstd::stream::encode_all(tar, 3).unwrap();
    std::fs::write(&art, &z).unwrap();
    let mut m = read_manifest(&f.ws, &f.id);
    m["artifacts"][0]["stored_bytes"] = serde_json::json!(z.len());
    m["artifacts"][0]["sha256"] = serde_json::json!(sha256_file(&art));
    m["artifacts"][0]["raw_bytes"] = serde_json::json!(raw_bytes);
    write_manifest(&f.ws, &f.id, &m);
}

#[test]
fn regression_review_long_names_and_bombs_are_refused_with_bounded_memory() {
    let f = files_job("");
    // A GNU long name of 64 MiB: tiny compressed, huge in memory.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "a".repeat(64 << 20), &b"x"[..])
        .unwrap();
    let tar = b.into_inner().unwrap();
    plant_tree(&f, &tar, tar.len() as u64);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("r");
    let (code, rss) = run_measuring_rss(&f.cfg, &["restore", "--to", dest.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(rss < 150 * 1024, "peaked at {} MiB", rss / 1024);
    assert!(!dest.exists());
    let run = ccbackup(&f.cfg, &["restore", "--to", dest.to_str().unwrap()]);
    assert!(run.stderr().contains("long-name"), "{}", run.stderr());
    assert!(run.stderr().len() < 4096, "the error echoed the name");

    // A bomb: the manifest says 1 KiB, the archive inflates to 200 MiB.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(200 << 20);
    h.set_mode(0o644);
    b.append_data(&mut h, "zeros", std::io::repeat(0).take(200 << 20))
        .unwrap();
    let tar = b.into_inner().unwrap();
    plant_tree(&f, &tar, 1024);
    let run = ccbackup(&f.cfg, &["restore", "--to", dest.to_str().unwrap()]);
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr().contains("more than the 1024 bytes"),
        "{}",
        run.stderr()
    );
    assert!(!dest.exists());
}

#[test]
fn regression_review_store_text_never_reaches_the_terminal_raw() {
    let f = files_job("");
    let mut m = read_manifest(&f.ws, &f.id);
    m["artifacts"][0]["source"] = serde_json::json!("etc\u{1b}[2J\u{1b}[31mRED");
    write_manifest(&f.ws, &f.id, &m);
    let run = ccbackup(&f.cfg, &["list"]);
    run.expect_ok();
    assert!(!run.stdout().contains('\u{1b}'), "{:?}", run.stdout());
    let run = ccbackup(
        &f.cfg,
        &["restore", "--source", "etc\u{1b}[2J", "--to", "/tmp/x"],
    );
    assert!(!run.stderr().contains('\u{1b}'), "{:?}", run.stderr());
}

use std::io::Read as _;
