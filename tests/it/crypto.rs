//! Issue 13: artifacts encrypted to age recipients and manifests signed with
//! minisign, checked with the stock `age` and `minisign` CLIs, on the
//! file, S3 (moto) and Azure (Azurite) stores.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use crate::support_rrd;
use crate::support_s3::*;

struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(bin())
            .args(["keys", "generate"])
            .arg(dir.path().join("k"))
            .env("CCBACKUP_CONFIG", "/nonexistent")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Keys { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("k").join(name)
    }
    fn recipient(&self) -> String {
        std::fs::read_to_string(self.path("age-recipient.txt"))
            .unwrap()
            .trim()
            .to_owned()
    }
    fn public_key(&self) -> String {
        let text = std::fs::read_to_string(self.path("minisign.pub")).unwrap();
        text.lines().last().unwrap().trim().to_owned()
    }
    fn identity(&self) -> String {
        self.path("age-identity.txt").display().to_string()
    }
    /// The `encryption` and `signing` sections for a config.
    fn sections(&self) -> String {
        format!(
            "encryption:\n  recipients: [\"{}\"]\nsigning:\n  secret_key_file: {}\n  public_key: \"{}\"\n",
            self.recipient(),
            self.path("minisign.key").display(),
            self.public_key()
        )
    }
}

#[test]
fn keys_generate_writes_private_keys_and_never_overwrites() {
    let k = Keys::new();
    for (name, mode) in [
        ("age-identity.txt", 0o600),
        ("minisign.key", 0o600),
        ("age-recipient.txt", 0o644),
        ("minisign.pub", 0o644),
    ] {
        let m = std::fs::metadata(k.path(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{name}");
    }
    let d = std::fs::metadata(k.dir.path().join("k"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(d, 0o700);
    let before = std::fs::read(k.path("age-identity.txt")).unwrap();
    let again = Command::new(bin())
        .args(["keys", "generate"])
        .arg(k.dir.path().join("k"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(std::fs::read(k.path("age-identity.txt")).unwrap(), before);
    // The stock age CLI accepts the identity.
    require_tool("age");
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(k.path("age-identity.txt"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), k.recipient());
}

struct Encrypted {
    ws: Workspace,
    cfg: PathBuf,
    keys: Keys,
    db: TestDb,
    rrd: tempfile::TempDir,
    etc: tempfile::TempDir,
    id: String,
}

fn encrypted_backup(retention: &str) -> Encrypted {
    let keys = Keys::new();
    let db = TestDb::create(&unique("enc"));
    fill_mixed(&db);
    let rrd = tempfile::tempdir().unwrap();
    support_rrd::concertim_tree(rrd.path(), 2, 2);
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("credentials.yml.enc"), b"rails credentials").unwrap();
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\n{}jobs:\n  - name: j\n{retention}    sources:\n{}      - name: rrd\n        rrd: {{path: {}}}\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        keys.sections(),
        postgres_source("db", &[&db.name]),
        rrd.path().display(),
        etc.path().display()
    ));
    let run = ccbackup(&cfg, &["run-now"]);
    run.expect_ok();
    let id = run.stdout().trim().to_owned();
    Encrypted {
        ws,
        cfg,
        keys,
        db,
        rrd,
        etc,
        id,
    }
}

fn backup_dir(ws: &Workspace, id: &str) -> PathBuf {
    ws.store_dir().join("j").join(id)
}

fn manifest(ws: &Workspace, id: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(backup_dir(ws, id).join("manifest.json")).unwrap())
        .unwrap()
}

/// `age -d -i IDENTITY FILE | zstd -dc`, with the stock tools.
fn stock_decrypt(identity: &str, file: &Path) -> Vec<u8> {
    require_tool("age");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i '{identity}' '{}' | zstd -dc",
            file.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn encrypted_artifacts_open_with_the_stock_age_cli_and_hold_no_plaintext() {
    let e = encrypted_backup("");
    let m = manifest(&e.ws, &e.id);
    for a in m["artifacts"].as_array().unwrap() {
        assert_eq!(a["encryption"]["format"], "age", "{a}");
        assert_eq!(a["encryption"]["recipients"][0], e.keys.recipient());
        let key = a["key"].as_str().unwrap();
        let stored = std::fs::read(backup_dir(&e.ws, &e.id).join(key)).unwrap();
        assert!(
            stored.starts_with(b"age-encryption.org/v1\n"),
            "{key} is not an age file"
        );
        // The sha256 is of what is stored.
        assert_eq!(
            sha256_file(&backup_dir(&e.ws, &e.id).join(key)),
            a["sha256"].as_str().unwrap()
        );
        assert!(!stored.windows(17).any(|w| w == b"rails credentials"));
    }
    let dir = backup_dir(&e.ws, &e.id);
    let etc = stock_decrypt(&e.keys.identity(), &dir.join("etc.tar.zst"));
    let mut ar = tar::Archive::new(&etc[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|x| x.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("credentials.yml.enc")),
        "{names:?}"
    );
    // The dump is a custom-format archive pg_restore lists.
    let dump_key = m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "pg_dump")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let dump = stock_decrypt(&e.keys.identity(), &dir.join(&dump_key));
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("d.dump");
    std::fs::write(&f, dump).unwrap();
    let out = Command::new("pg_restore")
        .arg("-l")
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("TABLE DATA"));
    // The manifest names nothing inside the trees.
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert!(!text.contains("credentials.yml.enc"));
    assert!(!text.contains("device:"));
}

#[test]
fn encrypted_restore_needs_the_right_identity_and_then_round_trips() {
    let e = encrypted_backup("");
    // Checksum-only verify needs no secret.
    ccbackup(&e.cfg, &["verify"]).expect_ok();
    let target = unique("enc_target");
    let exists = |t: &str| {
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{t}'"),
        )
    };

    let run = ccbackup(
        &e.cfg,
        &["restore", "--source", "db", "--target-db", &target],
    );
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr().contains("needs an age identity"),
        "{}",
        run.stderr()
    );
    assert_eq!(exists(&target), "0");
    let run = ccbackup(&e.cfg, &["verify", "--restore-test"]);
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stdout().contains("needs an age identity"),
        "{}",
        run.stdout()
    );

    let other = Keys::new();
    let run = ccbackup(
        &e.cfg,
        &[
            "restore",
            "--source",
            "db",
            "--target-db",
            &target,
            "--identity",
            &other.identity(),
        ],
    );
    assert_eq!(run.code(), Some(1));
    assert!(run.stderr().contains("does not match"), "{}", run.stderr());
    assert_eq!(exists(&target), "0");
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("etc");
    let run = ccbackup(
        &e.cfg,
        &[
            "restore",
            "--source",
            "etc",
            "--to",
            to.to_str().unwrap(),
            "--identity",
            &other.identity(),
        ],
    );
    assert_eq!(run.code(), Some(1));
    assert!(!to.exists());

    let id = e.keys.identity();
    ccbackup(&e.cfg, &["verify", "--restore-test", "--identity", &id]).expect_ok();
    ccbackup(
        &e.cfg,
        &[
            "restore",
            "--source",
            "db",
            "--target-db",
            &target,
            "--identity",
            &id,
        ],
    )
    .expect_ok();
    let count = |db: &str| psql(db, "SELECT count(*) FROM app.racks");
    assert_eq!(count(&target), count(&e.db.name));
    psql(
        "postgres",
        &format!("DROP DATABASE {}", quote_ident(&target)),
    );
    ccbackup(
        &e.cfg,
        &[
            "restore",
            "--source",
            "etc",
            "--to",
            to.to_str().unwrap(),
            "--identity",
            &id,
        ],
    )
    .expect_ok();
    assert_eq!(
        std::fs::read(to.join("credentials.yml.enc")).unwrap(),
        b"rails credentials"
    );
    let rrd_to = out.path().join("rrd");
    ccbackup(
        &e.cfg,
        &[
            "restore",
            "--source",
            "rrd",
            "--to",
            rrd_to.to_str().unwrap(),
            "--identity",
            &id,
        ],
    )
    .expect_ok();
    let _ = (&e.rrd, &e.etc);
}

#[test]
fn signed_manifests_verify_with_the_stock_minisign_cli() {
    let e = encrypted_backup("");
    require_tool("minisign");
    let dir = backup_dir(&e.ws, &e.id);
    assert!(dir.join("manifest.json.minisig").exists());
    let out = Command::new("minisign")
        .arg("-V")
        .arg("-m")
        .arg(dir.join("manifest.json"))
        .arg("-P")
        .arg(e.keys.public_key())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tampered_or_unsigned_manifests_are_not_trusted_and_retention_ignores_forgeries() {
    let e = encrypted_backup("    retention: {keep_last: 1}\n");
    let dir = backup_dir(&e.ws, &e.id);

    // A forged "newer" backup: the real one copied under a later ID, its
    // manifest rewritten to match the new place, with no valid signature.
    let t = chrono::Utc::now() + chrono::Duration::hours(1);
    let forged = format!("{}-ffffff", t.format("%Y%m%dT%H%M%SZ"));
    let fdir = e.ws.store_dir().join("j").join(&forged);
    std::fs::create_dir_all(&fdir).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), fdir.join(entry.file_name())).unwrap();
        }
    }
    let mut m = manifest(&e.ws, &e.id);
    m["id"] = serde_json::json!(forged);
    m["started_at"] = serde_json::json!(t.with_nanosecond(0).unwrap().to_rfc3339());
    std::fs::write(
        fdir.join("manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();

    let list = ccbackup(&e.cfg, &["list"]);
    list.expect_ok();
    assert!(list.stdout().contains("UNTRUSTED"), "{}", list.stdout());
    let run = ccbackup(
        &e.cfg,
        &[
            "restore",
            "--backup",
            &forged,
            "--source",
            "etc",
            "--to",
            "/tmp/never-forged",
        ],
    );
    assert_eq!(run.code(), Some(1));
    assert!(run.stderr().contains("not trustworthy"), "{}", run.stderr());
    // Without its signature it is just as untrusted.
    std::fs::remove_file(fdir.join("manifest.json.minisig")).unwrap();
    let run = ccbackup(&e.cfg, &["verify", "--backup", &forged]);
    assert_eq!(run.code(), Some(1));
    assert!(run.stderr().contains("not signed"), "{}", run.stderr());

    // A second real backup: keep_last 1 keeps it and deletes the first; the
    // forgery counts for nothing and is not deleted either.
    let second = ccbackup(&e.cfg, &["run-now"]);
    second.expect_ok();
    let second = second.stdout().trim().to_owned();
    assert!(backup_dir(&e.ws, &second).join("manifest.json").exists());
    assert!(
        !dir.join("manifest.json").exists(),
        "the older real backup should be pruned"
    );
    assert!(fdir.join("manifest.json").exists());

    // Changing one byte of a signed manifest breaks its signature.
    let p = backup_dir(&e.ws, &second).join("manifest.json");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replacen("\"host\": \"", "\"host\": \"x", 1)).unwrap();
    let run = ccbackup(&e.cfg, &["verify", "--backup", &second]);
    assert_eq!(run.code(), Some(1));
    assert!(run.stderr().contains("not trustworthy"), "{}", run.stderr());
}

use chrono::Timelike;

fn store_round_trip(store: &str, env: &[(&str, &str)]) {
    let keys = Keys::new();
    let data = tempfile::tempdir().unwrap();
    random_file(&data.path().join("big.bin"), 6 * 1024 * 1024 + 7);
    std::fs::write(data.path().join("small.txt"), "small").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{store}{}jobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
            keys.sections(),
            data.path().display()
        ),
    )
    .unwrap();
    ccbackup_env(&cfg, &["run-now"], env).expect_ok();
    let list = ccbackup_env(&cfg, &["list"], env);
    list.expect_ok();
    assert!(!list.stdout().contains("UNTRUSTED"), "{}", list.stdout());
    ccbackup_env(&cfg, &["verify"], env).expect_ok();
    let to = dir.path().join("out");
    let run = ccbackup_env(&cfg, &["restore", "--to", to.to_str().unwrap()], env);
    assert_eq!(run.code(), Some(1), "restored without an identity");
    ccbackup_env(
        &cfg,
        &[
            "restore",
            "--to",
            to.to_str().unwrap(),
            "--identity",
            &keys.identity(),
        ],
        env,
    )
    .expect_ok();
    assert_eq!(
        sha256_file(&to.join("big.bin")),
        sha256_file(&data.path().join("big.bin"))
    );
}

#[test]
fn encrypted_and_signed_round_trip_on_s3() {
    let server = start_moto(false);
    create_bucket(&server, "ccb-crypto");
    let store = format!(
        "store:\n  url: s3://ccb-crypto/x\n  part_size: 5MiB\n  options:\n    endpoint: {}\n    allow_http: true\n    region: eu-west-2\n    access_key_id: AKIATESTING\n    secret_access_key: testing\n",
        server.endpoint()
    );
    store_round_trip(&store, &[]);
}

#[test]
fn encrypted_and_signed_round_trip_on_azure() {
    let server = start_azurite();
    create_container(&server, "ccbcrypto");
    let url = server.endpoint();
    store_round_trip(
        "store:\n  url: az://ccbcrypto/x\n  part_size: 5MiB\n  options:\n    use_emulator: true\n",
        &[("AZURITE_BLOB_STORAGE_URL", url.as_str())],
    );
}

#[test]
fn bad_keys_are_configuration_errors_with_line_and_key() {
    let k = Keys::new();
    let other = Keys::new();
    let ws = Workspace::new();
    let dir = tempfile::tempdir().unwrap();
    let encrypted_key = dir.path().join("enc.key");
    // A key ccbackup cannot sign with (password-protected, or garbled).
    std::fs::write(
        &encrypted_key,
        "untrusted comment: minisign encrypted secret key\nRWRTY0IyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    )
    .unwrap();
    let body = format!(
        "store:\n  url: {}\nencryption:\n  recipients: [\"age1notakey\"]\nsigning:\n  secret_key_file: {}\n  public_key: \"{}\"\njobs:\n  - name: j\n    encryption:\n      recipients_file: /nonexistent/recipients\n    sources:\n      - name: etc\n        files: {{path: /tmp}}\n",
        ws.store_url(),
        k.path("minisign.key").display(),
        other.public_key(),
    );
    let cfg = ws.config(&body);
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let err = run.stderr();
    let file = cfg.display().to_string();
    for (line, key) in [
        (4, "encryption.recipients[0]"),
        (7, "signing.public_key"),
        (11, "jobs[0].encryption.recipients_file"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{file}:{line}:")) && l.contains(key)),
            "missing {key} at line {line} in:\n{err}"
        );
    }
    assert!(err.contains("not a pair"), "{err}");
    // Nothing secret is echoed.
    let secret = std::fs::read_to_string(k.path("minisign.key")).unwrap();
    assert!(!err.contains(secret.lines().last().unwrap()), "{err}");
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nsigning:\n  secret_key_file: {}\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: /tmp}}\n",
        ws.store_url(),
        encrypted_key.display()
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2));
    assert!(
        run.stderr().contains("signing.secret_key_file"),
        "{}",
        run.stderr()
    );
}

#[test]
fn key_rotation_adds_a_recipient_without_touching_old_backups_and_jobs_may_override() {
    let old = Keys::new();
    let new = Keys::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f.txt"), b"payload").unwrap();
    let ws = Workspace::new();
    let write_cfg = |recipients: &[String], job_extra: &str| {
        let list: Vec<String> = recipients.iter().map(|r| format!("\"{r}\"")).collect();
        ws.config(&format!(
            "store:\n  url: {}\nencryption:\n  recipients: [{}]\njobs:\n  - name: j\n{job_extra}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
            ws.store_url(),
            list.join(", "),
            data.path().display()
        ))
    };
    let cfg = write_cfg(&[old.recipient()], "");
    let first = ccbackup(&cfg, &["run-now"]);
    first.expect_ok();
    let first = first.stdout().trim().to_owned();
    // Rotation: both recipients for a while.
    let cfg = write_cfg(&[old.recipient(), new.recipient()], "");
    let second = ccbackup(&cfg, &["run-now"]);
    second.expect_ok();
    let second = second.stdout().trim().to_owned();
    let restore = |id: &str, keys: &Keys| {
        let to = tempfile::tempdir().unwrap();
        let dest = to.path().join("out");
        let run = ccbackup(
            &cfg,
            &[
                "restore",
                "--backup",
                id,
                "--to",
                dest.to_str().unwrap(),
                "--identity",
                &keys.identity(),
            ],
        );
        (run.code(), dest.join("f.txt").exists())
    };
    // The old backup was not rewritten: only the old identity opens it.
    assert_eq!(restore(&first, &old), (Some(0), true));
    assert_eq!(restore(&first, &new).0, Some(1));
    // The new one opens with either.
    assert_eq!(restore(&second, &new), (Some(0), true));
    assert_eq!(restore(&second, &old), (Some(0), true));
    let m = manifest(&ws, &second);
    assert_eq!(
        m["artifacts"][0]["encryption"]["recipients"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A job's own encryption replaces the top-level one.
    let cfg = write_cfg(
        &[old.recipient()],
        &format!(
            "    encryption:\n      recipients: [\"{}\"]\n",
            new.recipient()
        ),
    );
    let third = ccbackup(&cfg, &["run-now"]);
    third.expect_ok();
    let third = third.stdout().trim().to_owned();
    let m = manifest(&ws, &third);
    assert_eq!(
        m["artifacts"][0]["encryption"]["recipients"],
        serde_json::json!([new.recipient()])
    );
}

/// Issue 20 item 3: with `--jobs` the dump is decrypted and decompressed
/// while it downloads; a wrong identity still refuses before the target
/// database exists, the right one restores it whole.
#[test]
fn issue20_encrypted_restore_with_jobs_decodes_while_downloading() {
    let e = encrypted_backup("");
    let target = unique("enc_jobs");
    let other = Keys::new();
    let args = |identity: &str| -> Vec<String> {
        [
            "restore",
            "--source",
            "db",
            "--target-db",
            &target,
            "--jobs",
            "2",
            "--identity",
            identity,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let wrong = args(&other.identity());
    let run = ccbackup(
        &e.cfg,
        &wrong.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(run.code(), Some(1));
    assert!(run.stderr().contains("does not match"), "{}", run.stderr());
    let count = format!("SELECT count(*) FROM pg_database WHERE datname = '{target}'");
    assert_eq!(psql("postgres", &count), "0");
    let right = args(&e.keys.identity());
    ccbackup(
        &e.cfg,
        &right.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .expect_ok();
    let rows = "SELECT count(*), sum(length(name)) FROM app.racks";
    assert_eq!(psql(&target, rows), psql(&e.db.name, rows));
    psql(
        "postgres",
        &format!("DROP DATABASE \"{target}\" WITH (FORCE)"),
    );
}
