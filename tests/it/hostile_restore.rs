//! Issue 22, the reading side: what someone with write access to the store
//! (a leaked bucket key) can still plant, and key files a restore or the
//! writer must refuse. Every object is crafted by the test and the real
//! binary runs against it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::*;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn output(run: &Run) -> String {
    format!("{}\n{}", run.stdout(), run.stderr())
}

/// `minisign -G -W` (the stock Debian CLI, no password) in `dir`.
fn stock_minisign_pair(dir: &Path) -> (PathBuf, PathBuf) {
    require_tool("minisign");
    let (sk, pk) = (dir.join("stock.key"), dir.join("stock.pub"));
    let out = Command::new("minisign")
        .args(["-G", "-W", "-s"])
        .arg(&sk)
        .arg("-p")
        .arg(&pk)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (sk, pk)
}

fn files_config(ws: &Workspace, data: &Path, extra: &str) -> PathBuf {
    ws.config(&format!(
        "store:\n  url: {}\n{extra}jobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.display()
    ))
}

#[test]
fn regression_issue22_stock_minisign_keys_sign_and_the_cli_verifies() {
    let keys = tempfile::tempdir().unwrap();
    let (sk, pk) = stock_minisign_pair(keys.path());
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("a.txt"), b"a").unwrap();
    let ws = Workspace::new();
    let cfg = files_config(
        &ws,
        data.path(),
        &format!("signing:\n  secret_key_file: {}\n", sk.display()),
    );
    let run = ccbackup(&cfg, &["check-config"]);
    assert!(run.ok(), "{}", output(&run));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let m = ws.manifests().remove(0);
    let out = Command::new("minisign")
        .arg("-V")
        .arg("-m")
        .arg(&m)
        .arg("-p")
        .arg(&pk)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let list = ccbackup(&cfg, &["list"]);
    list.expect_ok();
    assert!(!list.stdout().contains("UNTRUSTED"), "{}", list.stdout());

    // Damage (one byte of the Ed25519 seed) is called damage, not a password.
    let text = std::fs::read_to_string(&sk).unwrap();
    let line = text.lines().nth(1).unwrap();
    let i = 100; // inside the secret key bytes, well clear of the header
    let flipped = if &line[i..i + 1] == "A" { "B" } else { "A" };
    let damaged = format!(
        "{}\n{}{flipped}{}\n",
        text.lines().next().unwrap(),
        &line[..i],
        &line[i + 1..]
    );
    std::fs::write(&sk, damaged).unwrap();
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", output(&run));
    assert!(run.stderr().contains("corrupt"), "{}", run.stderr());
    assert!(!run.stderr().contains("password"), "{}", run.stderr());

    // A password-protected key is called that.
    let out = Command::new("minisign")
        .args(["-G", "-f", "-s"])
        .arg(&sk)
        .arg("-p")
        .arg(&pk)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"pw\npw\n")?;
            c.wait()
        })
        .unwrap();
    assert!(out.success());
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", output(&run));
    assert!(
        run.stderr().contains("password-protected"),
        "{}",
        run.stderr()
    );
}

/// `ccbackup keys generate` into `dir/k`; returns (identity, recipient,
/// minisign secret key).
fn generated_keys(dir: &Path) -> (PathBuf, String, PathBuf) {
    let out = Command::new(bin())
        .args(["keys", "generate"])
        .arg(dir.join("k"))
        .env("CCBACKUP_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let k = dir.join("k");
    let recipient = std::fs::read_to_string(k.join("age-recipient.txt"))
        .unwrap()
        .trim()
        .to_owned();
    (
        k.join("age-identity.txt"),
        recipient,
        k.join("minisign.key"),
    )
}

#[test]
fn regression_issue22_key_files_others_can_read_are_refused_with_the_chmod() {
    let keys = tempfile::tempdir().unwrap();
    let (identity, recipient, signing) = generated_keys(keys.path());
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("a.txt"), b"secret a").unwrap();
    let ws = Workspace::new();
    let cfg = files_config(
        &ws,
        data.path(),
        &format!(
            "encryption:\n  recipients: [\"{recipient}\"]\nsigning:\n  secret_key_file: {}\n",
            signing.display()
        ),
    );
    ccbackup(&cfg, &["run-now"]).expect_ok();

    for mode in [0o640, 0o604] {
        chmod(&signing, mode);
        let run = ccbackup(&cfg, &["check-config"]);
        assert_eq!(run.code(), Some(2), "{mode:o}: {}", output(&run));
        let chmod_hint = format!("chmod 600 {}", signing.display());
        assert!(run.stderr().contains(&chmod_hint), "{}", run.stderr());
        assert!(
            run.stderr().contains("signing.secret_key_file"),
            "{}",
            run.stderr()
        );
    }
    chmod(&signing, 0o600);

    let to = ws.path().join("out");
    let id = identity.to_str().unwrap();
    chmod(&identity, 0o644);
    let run = ccbackup(
        &cfg,
        &["restore", "--to", to.to_str().unwrap(), "--identity", id],
    );
    assert_eq!(run.code(), Some(1), "{}", output(&run));
    assert!(
        run.stderr()
            .contains(&format!("chmod 600 {}", identity.display())),
        "{}",
        run.stderr()
    );
    assert!(!to.exists());
    chmod(&identity, 0o400);
    ccbackup(
        &cfg,
        &["restore", "--to", to.to_str().unwrap(), "--identity", id],
    )
    .expect_ok();
    assert_eq!(std::fs::read(to.join("a.txt")).unwrap(), b"secret a");
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &serde_json::Value) {
    std::fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

#[test]
fn regression_issue22_an_unencrypted_artifact_in_an_encrypting_job_is_a_downgrade() {
    let keys = tempfile::tempdir().unwrap();
    let (identity, recipient, _) = generated_keys(keys.path());
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("a.txt"), b"real").unwrap();
    let ws = Workspace::new();
    let cfg = files_config(
        &ws,
        data.path(),
        &format!("encryption:\n  recipients: [\"{recipient}\"]\n"),
    );
    ccbackup(&cfg, &["run-now"]).expect_ok();
    // The attacker swaps in a plaintext archive and drops `encryption`
    // from the manifest, fixing up the checksum.
    let mpath = ws.manifests().remove(0);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(7);
    h.set_mode(0o644);
    b.append_data(&mut h, "a.txt", &b"planted"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let z = zstd::stream::encode_all(&tar[..], 3).unwrap();
    let art = mpath.parent().unwrap().join("etc.tar.zst");
    std::fs::write(&art, &z).unwrap();
    let mut m = read_json(&mpath);
    let a = &mut m["artifacts"][0];
    a.as_object_mut().unwrap().remove("encryption");
    a["stored_bytes"] = serde_json::json!(z.len());
    a["raw_bytes"] = serde_json::json!(tar.len());
    a["sha256"] = serde_json::json!(sha256_file(&art));
    write_json(&mpath, &m);

    let to = ws.path().join("out");
    let id = identity.to_str().unwrap();
    let args = ["restore", "--to", to.to_str().unwrap(), "--identity", id];
    let run = ccbackup(&cfg, &args);
    assert_eq!(run.code(), Some(1), "{}", output(&run));
    assert!(
        run.stderr().contains("stored unencrypted"),
        "{}",
        run.stderr()
    );
    assert!(!to.exists(), "the planted plaintext was restored");
    let dry = ccbackup(&cfg, &["restore", "--dry-run", "--to", "/nonexistent/x"]);
    assert!(
        dry.stdout().contains("would be refused") && dry.stdout().contains("stored unencrypted"),
        "{}",
        output(&dry)
    );
    let run = ccbackup(&cfg, &["verify", "--restore-test", "--identity", id]);
    assert_eq!(run.code(), Some(1), "{}", output(&run));
    assert!(
        run.stdout().contains("stored unencrypted"),
        "{}",
        output(&run)
    );
    // A backup from before encryption was switched on, on purpose.
    let mut with = args.to_vec();
    with.push("--allow-unencrypted");
    ccbackup(&cfg, &with).expect_ok();
    assert_eq!(std::fs::read(to.join("a.txt")).unwrap(), b"planted");
}

fn database_exists(name: &str) -> bool {
    psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    ) == "1"
}

/// Drops the named databases from the shared server, even when a test fails.
struct DropDbs(Vec<String>);

impl Drop for DropDbs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = Command::new("psql")
                .args(["-X", "-q", "-h", PG_HOST, "-p", &PG_PORT.to_string()])
                .args(["-U", "postgres", "-d", "postgres", "-c"])
                .arg(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(d)
                ))
                .output();
        }
    }
}

#[test]
fn regression_issue22_a_manifest_cannot_choose_the_database_restored_into() {
    let db = TestDb::create(&unique("named_db"));
    db.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let other = unique("planted_target");
    let copy = unique("named_copy");
    let _cleanup = DropDbs(vec![other.clone(), copy.clone()]);
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n{}",
        ws.store_url(),
        postgres_source("db", &[&db.name])
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    // The manifest now says the dump is of another database.
    let mpath = ws.manifests().remove(0);
    let mut m = read_json(&mpath);
    for a in m["artifacts"].as_array_mut().unwrap() {
        if a["kind"] == "pg_dump" {
            a["postgres"]["database"] = serde_json::json!(other);
        }
    }
    write_json(&mpath, &m);

    let run = ccbackup(&cfg, &["restore"]);
    assert_eq!(run.code(), Some(1), "{}", output(&run));
    assert!(run.stderr().contains("does not list"), "{}", run.stderr());
    assert!(
        !database_exists(&other),
        "restored into the manifest's choice"
    );
    let dry = ccbackup(&cfg, &["restore", "--dry-run"]);
    assert!(dry.stdout().contains("does not list"), "{}", output(&dry));

    // Named by the operator, it is theirs to choose.
    ccbackup(
        &cfg,
        &["restore", "--database", &other, "--target-db", &copy],
    )
    .expect_ok();
    assert!(database_exists(&copy));
    ccbackup(&cfg, &["restore", "--database", &other]).expect_ok();
    assert!(database_exists(&other));
}

/// An encrypted files backup of `data`: (workspace, config, identity,
/// manifest path).
fn encrypted_files_backup(keys: &Path, data: &Path) -> (Workspace, PathBuf, PathBuf, PathBuf) {
    let (identity, recipient, _) = generated_keys(keys);
    std::fs::write(data.join("a.txt"), b"real").unwrap();
    let ws = Workspace::new();
    let cfg = files_config(
        &ws,
        data,
        &format!("encryption:\n  recipients: [\"{recipient}\"]\n"),
    );
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let mpath = ws.manifests().remove(0);
    (ws, cfg, identity, mpath)
}

/// Puts `stored` in place of the backup's only artifact, fixing up the
/// manifest's size and checksum as anyone with store access can.
fn plant_artifact(mpath: &Path, stored: &[u8], raw_bytes: u64) -> PathBuf {
    let mut m = read_json(mpath);
    let a = &mut m["artifacts"][0];
    let art = mpath.parent().unwrap().join(a["key"].as_str().unwrap());
    std::fs::write(&art, stored).unwrap();
    a["stored_bytes"] = serde_json::json!(stored.len());
    a["raw_bytes"] = serde_json::json!(raw_bytes);
    a["sha256"] = serde_json::json!(sha256_file(&art));
    write_json(mpath, &m);
    art
}

#[test]
fn regression_issue22_an_age_header_of_many_stanzas_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (ws, cfg, identity, mpath) = encrypted_files_backup(keys.path(), data.path());
    // Stanzas as real as the parser wants them, just far too many: 66 KiB.
    let b64 = "A".repeat(43);
    let mut bomb = b"age-encryption.org/v1\n".to_vec();
    while bomb.len() < 66 * 1024 {
        bomb.extend_from_slice(format!("-> X25519 {b64}\n{b64}\n").as_bytes());
    }
    bomb.extend_from_slice(format!("--- {b64}\n").as_bytes());
    bomb.extend_from_slice(&[0u8; 64]);
    plant_artifact(&mpath, &bomb, 100);
    let to = ws.path().join("out");
    let id = identity.to_str().unwrap();
    let run = ccbackup(
        &cfg,
        &["restore", "--to", to.to_str().unwrap(), "--identity", id],
    );
    assert_eq!(run.code(), Some(1), "{}", output(&run));
    assert!(
        run.stderr()
            .contains("age header is larger than 65536 bytes"),
        "{}",
        run.stderr()
    );
    assert!(!to.exists());
    let run = ccbackup(&cfg, &["verify", "--restore-test", "--identity", id]);
    assert_eq!(run.code(), Some(1), "{}", output(&run));
    assert!(
        run.stdout().contains("age header is larger than"),
        "{}",
        output(&run)
    );
}

/// A tar whose first entry is GNU sparse with a map of `ext` extension
/// blocks of empty extents (about 1 KiB of reader memory each), then a
/// plain file.
fn sparse_map_bomb(ext: usize) -> Vec<u8> {
    let octal = |v: u64| -> [u8; 12] {
        let mut f = [0u8; 12];
        f[..11].copy_from_slice(format!("{v:011o}").as_bytes());
        f
    };
    let mut h = tar::Header::new_gnu();
    h.set_path("sparse").unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(0);
    h.set_mode(0o644);
    {
        let g = h.as_gnu_mut().unwrap();
        for (i, e) in g.sparse.iter_mut().enumerate() {
            e.offset = octal(i as u64 + 1);
            e.numbytes = octal(0);
        }
        g.isextended[0] = 1;
        g.realsize = octal(4 + 21 * ext as u64);
    }
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    for b in 0..ext {
        let mut block = [0u8; 512];
        for i in 0..21u64 {
            let at = (i * 24) as usize;
            block[at..at + 12].copy_from_slice(&octal(5 + b as u64 * 21 + i));
            block[at + 12..at + 24].copy_from_slice(&octal(0));
        }
        block[504] = u8::from(b + 1 < ext);
        out.extend_from_slice(&block);
    }
    let mut b = tar::Builder::new(out);
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "after", &b"hello"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn regression_issue22_a_gnu_sparse_map_bomb_is_refused_in_bounded_memory() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("a.txt"), b"real").unwrap();
    let ws = Workspace::new();
    let cfg = files_config(&ws, data.path(), "");
    ccbackup(&cfg, &["run-now"]).expect_ok();
    // 200k map blocks: 100 MiB of tar, a few MiB stored.
    let tar = sparse_map_bomb(200_000);
    let z = zstd::stream::encode_all(&tar[..], 3).unwrap();
    plant_artifact(&ws.manifests().remove(0), &z, tar.len() as u64);
    let to = ws.path().join("out");
    let (code, rss) =
        crate::hardening::run_measuring_rss(&cfg, &["restore", "--to", to.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(rss < 100 * 1024, "restore peaked at {} MiB", rss / 1024);
    assert!(!to.exists());
    let run = ccbackup(&cfg, &["restore", "--to", to.to_str().unwrap()]);
    assert!(
        run.stderr().contains("sparse entry with more than"),
        "{}",
        run.stderr()
    );
    let (code, rss) = crate::hardening::run_measuring_rss(&cfg, &["verify", "--restore-test"]);
    assert_eq!(code, 1);
    assert!(rss < 100 * 1024, "verify peaked at {} MiB", rss / 1024);
}

/// A files backup of `data` (one file) in a `file://` store: (workspace,
/// config, manifest path).
fn files_backup(data: &Path) -> (Workspace, PathBuf, PathBuf) {
    std::fs::write(data.join("a.txt"), b"real").unwrap();
    let ws = Workspace::new();
    let cfg = files_config(&ws, data, "");
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let mpath = ws.manifests().remove(0);
    (ws, cfg, mpath)
}

fn stored_bytes(mpath: &Path) -> u64 {
    read_json(mpath)["artifacts"][0]["stored_bytes"]
        .as_u64()
        .unwrap()
}

/// Runs ccbackup with RLIMIT_FSIZE at `max_file` bytes: writing any file
/// past it kills the process with SIGXFSZ, so a clean exit proves that no
/// file it wrote (staging included) grew beyond the budget.
fn ccbackup_with_file_budget(cfg: &Path, args: &[&str], max_file: u64) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(cfg).args(args);
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: max_file,
                rlim_max: max_file,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

#[test]
fn regression_issue22_a_longer_artifact_never_stages_more_than_the_manifest_says() {
    let data = tempfile::tempdir().unwrap();
    let (ws, cfg, mpath) = files_backup(data.path());
    let stored = stored_bytes(&mpath);
    let art = mpath.parent().unwrap().join("etc.tar.zst");
    // 5 GiB, sparse: costs no disk here, but a reader that trusts it
    // stages or hashes all of it.
    let ok = Command::new("truncate")
        .args(["-s", "5G"])
        .arg(&art)
        .status()
        .unwrap();
    assert!(ok.success());
    let budget = stored + 4 * 1024 * 1024;
    for args in [
        &["restore", "--dry-run", "--to", "/nonexistent/x"][..],
        &["verify"][..],
    ] {
        let out = ccbackup_with_file_budget(&cfg, args, budget);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} (killed by a signal means it wrote past {budget} bytes): {text}"
        );
        // Refused by the catalogue (the listed size differs from the
        // manifest's, so the backup is damaged) or, when the object grew
        // after the listing, by the fetch: never read to its end.
        assert!(
            text.contains("size differs") || text.contains("its manifest says"),
            "{args:?}: {text}"
        );
        assert!(text.contains("5368709120"), "{args:?}: {text}");
    }
    let _ = ws;
}

fn rchar(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("rchar: ").map(|v| v.trim().parse().ok()))?
        })
        .unwrap_or(0)
}

#[test]
fn regression_issue22_sigterm_stops_verify_while_it_hashes_a_huge_artifact() {
    let data = tempfile::tempdir().unwrap();
    let (_ws, cfg, mpath) = files_backup(data.path());
    let art = mpath.parent().unwrap().join("etc.tar.zst");
    // A 1 TiB sparse artifact whose manifest agrees on the size: only the
    // checksum at the very end could tell, hours later.
    let ok = Command::new("truncate")
        .args(["-s", "1T"])
        .arg(&art)
        .status()
        .unwrap();
    assert!(ok.success());
    let mut m = read_json(&mpath);
    m["artifacts"][0]["stored_bytes"] = serde_json::json!(1u64 << 40);
    write_json(&mpath, &m);

    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("verify")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until it is hashing: it has read 64 MiB of the artifact.
    let mut seen = 0;
    for _ in 0..12000 {
        seen = rchar(pid);
        if seen > 64 << 20 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        seen > 64 << 20,
        "verify never started hashing ({seen} bytes read)"
    );
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    // A generous bound that only a verify ignoring the signal reaches: the
    // rest of the artifact would take many minutes.
    let mut status = None;
    for _ in 0..6000 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let read_at_exit = rchar(pid);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("verify still running 60 s after SIGTERM ({read_at_exit} bytes read)");
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("verify stopped"), "{err}");
}

/// A tmpfs with few inodes, mounted for one test and unmounted after it.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// `None` (and a loud note) where this process may not mount.
    fn mount(options: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs ({}); the room check is covered by its unit tests only",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(SmallFs { dir })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn regression_issue22_many_empty_directories_are_refused_before_writing() {
    let data = tempfile::tempdir().unwrap();
    let (ws, cfg, mpath) = files_backup(data.path());
    // 20,000 empty directories: 1.5 MiB of tar, a few KiB stored.
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..20_000 {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, format!("d{i}/"), std::io::empty())
            .unwrap();
    }
    let tar = b.into_inner().unwrap();
    let z = zstd::stream::encode_all(&tar[..], 3).unwrap();
    plant_artifact(&mpath, &z, tar.len() as u64);
    let Some(fs) = SmallFs::mount("size=256m,nr_inodes=5000,mode=0700") else {
        return;
    };
    let to = fs.dir.path().join("out");
    let dry = ccbackup(
        &cfg,
        &["restore", "--dry-run", "--to", to.to_str().unwrap()],
    );
    assert!(
        dry.stdout().contains("would be refused") && dry.stdout().contains("need 20001 inodes"),
        "{}",
        output(&dry)
    );
    let run = ccbackup(&cfg, &["restore", "--to", to.to_str().unwrap()]);
    assert_eq!(run.code(), Some(1), "{}", output(&run));
    assert!(
        run.stderr().contains("need 20001 inodes but only"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("nothing was written"),
        "{}",
        run.stderr()
    );
    assert!(!to.exists());
    // Nothing was left behind on the small file system either.
    assert_eq!(std::fs::read_dir(fs.dir.path()).unwrap().count(), 0);
    let _ = ws;
}

/// Runs `cmd` with the same file-size budget as [`ccbackup_with_file_budget`].
fn output_with_file_budget(mut cmd: Command, max_file: u64) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: max_file,
                rlim_max: max_file,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

#[test]
fn regression_issue22_a_longer_s3_object_is_refused_before_it_is_downloaded() {
    use crate::support_s3::*;
    use object_store::ObjectStoreExt;
    let server = start_moto(false);
    create_bucket(&server, "ccb-long");
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("a.txt"), b"real").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "store:\n  url: s3://ccb-long/x\n  options:\n    endpoint: {}\n    allow_http: true\n    region: eu-west-2\n    access_key_id: AKIATESTING\n    secret_access_key: testing\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
            server.endpoint(),
            data.path().display()
        ),
    )
    .unwrap();
    let run = ccbackup_env(&cfg, &["run-now"], &[]);
    run.expect_ok();
    let id = run.stdout().trim().to_owned();
    let opt = |k: &str, v: &str| (k.to_owned(), ccbackup::secret::Secret::new(v));
    let repo = ccbackup::repo::store::open(&ccbackup::repo::store::StoreSpec {
        url: url::Url::parse("s3://ccb-long/x").unwrap(),
        options: vec![
            opt("endpoint", &server.endpoint()),
            opt("allow_http", "true"),
            opt("region", "eu-west-2"),
            opt("access_key_id", "AKIATESTING"),
            opt("secret_access_key", "testing"),
        ],
        part_size: 5 * 1024 * 1024,
        concurrency: 2,
        max_clock_skew: ccbackup::repo::store::DEFAULT_MAX_CLOCK_SKEW,
        object_lock: None,
    })
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mkey = ccbackup::repo::store::artifact_path("j", &id, "manifest.json");
    let m: serde_json::Value = serde_json::from_slice(
        &rt.block_on(async { repo.store.get(&mkey).await?.bytes().await })
            .unwrap(),
    )
    .unwrap();
    let stored = m["artifacts"][0]["stored_bytes"].as_u64().unwrap();
    // 16 MiB where the manifest records a few hundred bytes.
    let long = vec![7u8; 16 << 20];
    let akey = ccbackup::repo::store::artifact_path("j", &id, "etc.tar.zst");
    rt.block_on(repo.store.put(&akey, long.into())).unwrap();

    let budget = stored + 4 * 1024 * 1024;
    for args in [
        &["restore", "--dry-run", "--to", "/nonexistent/x"][..],
        &["verify"][..],
    ] {
        let out = output_with_file_budget(ccbackup_cmd(&cfg, args, &[]), budget);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} (killed by a signal means it wrote past {budget} bytes): {text}"
        );
        // The catalogue's listing or the fetch's size check, whichever
        // sees it first: never downloaded.
        assert!(
            text.contains("size differs") || text.contains("its manifest says"),
            "{args:?}: {text}"
        );
        assert!(text.contains(&format!("{}", 16 << 20)), "{args:?}: {text}");
    }
}

#[test]
fn regression_issue22_sigterm_stops_restore_while_it_stages_a_large_artifact() {
    let data = tempfile::tempdir().unwrap();
    let (ws, cfg, mpath) = files_backup(data.path());
    let art = mpath.parent().unwrap().join("etc.tar.zst");
    // 8 GiB, sparse, and the manifest agrees: staging it is allowed, so
    // only the signal can stop the copy early.
    let ok = Command::new("truncate")
        .args(["-s", "8G"])
        .arg(&art)
        .status()
        .unwrap();
    assert!(ok.success());
    let mut m = read_json(&mpath);
    m["artifacts"][0]["stored_bytes"] = serde_json::json!(8u64 << 30);
    write_json(&mpath, &m);
    let staging = ws.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    // Restore checks the staging file system has room for the artifact
    // first and refuses otherwise (rightly): say so rather than fail below
    // with "restore ended before staging".
    let df = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(&staging)
        .output()
        .unwrap();
    let avail: u64 = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        avail > 9 << 30,
        "this test needs 9 GiB free where {} is ({avail} bytes free)",
        staging.display()
    );
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["restore", "--dry-run", "--to", "/nonexistent/x"])
        .arg("--staging-dir")
        .arg(&staging)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_until(
        "restore to start staging",
        std::time::Duration::from_secs(120),
        || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "restore ended before staging"
            );
            rchar(pid) >= 64 << 20
        },
    );
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    // Only a copy that ignores the signal reaches this bound.
    if poll_for(std::time::Duration::from_secs(60), || {
        child.try_wait().unwrap()
    })
    .is_err()
    {
        let _ = child.kill();
        let _ = child.wait();
        panic!("restore still running 60 s after SIGTERM");
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("nothing was applied"), "{err}");
    // Its staging went with it.
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0, "{err}");
}
