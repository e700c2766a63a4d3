//! Issue 22 (round 3 of the hostile store), the catalogue and retention
//! side, and issue 24's phantom backups: whoever can write to the store
//! plants objects the test builds by hand, and the real binary must keep
//! listing, restoring, pruning and backing up everything else.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use crate::support_s3::*;

/// A files job on a `file://` store, optionally signed and with a copy
/// store, whose config can be rewritten with another retention.
struct Job {
    ws: Workspace,
    src: PathBuf,
    copy: PathBuf,
    keys: Option<tempfile::TempDir>,
}

fn generate_keys() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    keys_generate(&dir.path().join("k"));
    dir
}

impl Job {
    fn new(signed: bool) -> Job {
        let ws = Workspace::new();
        let src = ws.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("credentials.yml.enc"), b"real credentials").unwrap();
        std::fs::write(src.join("sub").join("a.txt"), b"a").unwrap();
        let copy = ws.path().join("copy");
        Job {
            ws,
            src,
            copy,
            keys: signed.then(generate_keys),
        }
    }

    fn signing(&self) -> String {
        let Some(k) = &self.keys else {
            return String::new();
        };
        let kd = k.path().join("k");
        let public = std::fs::read_to_string(kd.join("minisign.pub")).unwrap();
        format!(
            "signing:\n  secret_key_file: {}\n  public_key: \"{}\"\n",
            kd.join("minisign.key").display(),
            public.lines().last().unwrap().trim()
        )
    }

    /// The config with `retention` (a YAML line at job level, or "") and,
    /// with `copies`, the copy store.
    fn config(&self, retention: &str, copies: bool) -> PathBuf {
        let copies = if copies {
            format!("copies:\n  - url: file://{}\n", self.copy.display())
        } else {
            String::new()
        };
        self.ws.config(&format!(
            "store:\n  url: {}\n{copies}{}jobs:\n  - name: j\n{retention}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
            self.ws.store_url(),
            self.signing(),
            self.src.display()
        ))
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.ws.store_dir().join("j").join(id)
    }
}

fn run_now(cfg: &Path) -> String {
    let run = ccbackup(cfg, &["run-now"]);
    run.expect_ok();
    run.stdout().lines().next().unwrap().trim().to_owned()
}

fn id_at(t: chrono::DateTime<chrono::Utc>, suffix: &str) -> String {
    format!("{}-{suffix}", t.format("%Y%m%dT%H%M%SZ"))
}

fn time_of(id: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::NaiveDateTime::parse_from_str(&id[..16], "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Plants, under `store/j/<new_id>`, a copy of backup `id` (artifacts and
/// all) whose manifest claims `new_id`: what an attacker without the
/// signing key makes of a real backup. `edit` changes the manifest further.
fn forge(store: &Path, id: &str, new_id: &str, edit: impl Fn(&mut serde_json::Value)) {
    let to = store.join("j").join(new_id);
    copy_dir(&store.join("j").join(id), &to);
    let _ = std::fs::remove_file(to.join("manifest.json.minisig"));
    let p = to.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let t = time_of(new_id).to_rfc3339();
    m["id"] = serde_json::json!(new_id);
    m["started_at"] = serde_json::json!(t);
    m["finished_at"] = serde_json::json!(t);
    edit(&mut m);
    std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
}

fn list_json(cfg: &Path) -> Vec<serde_json::Value> {
    let run = ccbackup(cfg, &["list", "--json"]);
    run.expect_ok();
    serde_json::from_str::<serde_json::Value>(&run.stdout())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn status_of(list: &[serde_json::Value], id: &str) -> String {
    list.iter()
        .find(|e| e["backup_id"] == id)
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| format!("absent from {list:?}"))
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string and mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn regression_issue22_planted_signatures_and_names_damage_only_their_own_backup() {
    let j = Job::new(true);
    let cfg = j.config("    retention: {keep_last: 2}\n", true);
    let a = run_now(&cfg);
    let b = run_now(&cfg);
    let bt = time_of(&b);
    // A signature that is a directory, a FIFO, a symlink to a valid one.
    let sig_dir = id_at(bt + chrono::Duration::seconds(10), "aaaaa1");
    let sig_fifo = id_at(bt + chrono::Duration::seconds(20), "aaaaa2");
    let sig_link = id_at(bt + chrono::Duration::seconds(30), "aaaaa3");
    for id in [&sig_dir, &sig_fifo, &sig_link] {
        copy_dir(&j.dir(&b), &j.dir(id));
        std::fs::remove_file(j.dir(id).join("manifest.json.minisig")).unwrap();
    }
    let d = j.dir(&sig_dir).join("manifest.json.minisig");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("x"), b"x").unwrap();
    mkfifo(&j.dir(&sig_fifo).join("manifest.json.minisig"));
    std::os::unix::fs::symlink(
        j.dir(&b).join("manifest.json.minisig"),
        j.dir(&sig_link).join("manifest.json.minisig"),
    )
    .unwrap();
    // A top-level name with a control character.
    let odd = j.ws.store_dir().join("odd\u{1}job").join(&b);
    copy_dir(&j.dir(&b), &odd);

    let run = ccbackup(&cfg, &["list"]);
    run.expect_ok();
    let out = run.stdout();
    assert!(out.contains(&a) && out.contains(&b), "{out}");
    for id in [&sig_dir, &sig_fifo, &sig_link] {
        assert!(
            out.lines()
                .any(|l| l.contains(id.as_str())
                    && (l.contains("DAMAGED") || l.contains("UNTRUSTED"))),
            "{id} not reported as damaged:\n{out}"
        );
    }
    ccbackup(&cfg, &["list", "--job", "j"]).expect_ok();
    ccbackup(&cfg, &["verify"]).expect_ok();
    let to = tempfile::tempdir().unwrap();
    let dest = to.path().join("out");
    ccbackup(
        &cfg,
        &["restore", "--backup", &a, "--to", dest.to_str().unwrap()],
    )
    .expect_ok();
    assert_eq!(
        std::fs::read(dest.join("credentials.yml.enc")).unwrap(),
        b"real credentials"
    );
    ccbackup(&cfg, &["copy", "--from-primary"]).expect_ok();
    let run = ccbackup(&cfg, &["run-now"]);
    run.expect_ok();
    assert!(!run.stderr().contains("SUSPICIOUS"), "{}", run.stderr());
    let newest = run.stdout().lines().next().unwrap().trim().to_owned();
    ccbackup(&cfg, &["prune"]).expect_ok();
    // keep_last 2 counted only the real backups: the oldest went.
    assert!(!j.dir(&a).join("manifest.json").exists());
    assert!(j.dir(&b).join("manifest.json").exists());
    assert!(j.dir(&newest).join("manifest.json").exists());
    for id in [&sig_dir, &sig_fifo, &sig_link] {
        assert!(j.dir(id).join("manifest.json").exists(), "{id} deleted");
    }
}

#[test]
fn regression_issue22_a_manifest_the_service_user_cannot_read_is_damage_to_it_alone() {
    let j = Job::new(false);
    let cfg = j.config("", false);
    let a = run_now(&cfg);
    let b = run_now(&cfg);
    let cfg = j.config("    retention: {keep_last: 1}\n", false);
    std::fs::set_permissions(j.ws.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(j.ws.store_dir())
        .status()
        .unwrap();
    assert!(chown.success());
    // The newest manifest belongs to root alone.
    let locked = j.dir(&b).join("manifest.json");
    std::os::unix::fs::chown(&locked, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o600)).unwrap();

    let as_nobody = |args: &[&str]| {
        let out = Command::new(bin())
            .args(["--log-format", "text", "--config"])
            .arg(&cfg)
            .args(["--user", "65534:65534"])
            .args(args)
            .env_remove("CCBACKUP_USER")
            .env_remove("CCBACKUP_CONFIG")
            .output()
            .unwrap();
        Run { out }
    };
    let run = as_nobody(&["list"]);
    run.expect_ok();
    assert!(
        run.stdout()
            .lines()
            .any(|l| l.contains(b.as_str()) && l.contains("DAMAGED")),
        "{}",
        run.stdout()
    );
    assert!(run.stdout().contains(&a), "{}", run.stdout());
    as_nobody(&["verify"]).expect_ok();
    as_nobody(&["prune", "--dry-run"]).expect_ok();
}

/// moto serves objects only to signed requests, but checks no signature.
const MOTO_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIATESTING/20260101/eu-west-2/s3/aws4_request, SignedHeaders=host, Signature=00";

/// PUTs `body` to moto with extra headers (moto accepts unsigned requests).
fn put_object(server: &Server, key: &str, body: &[u8], headers: &[(&str, &str)]) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut req = format!(
        "PUT /{key} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        server.port,
        body.len()
    );
    for (k, v) in headers.iter().chain(&[("Authorization", MOTO_AUTH)]) {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "PUT {key}: {text}");
}

#[test]
fn regression_issue22_an_archived_object_on_s3_is_damage_not_a_credentials_problem() {
    let server = start_moto(false);
    create_bucket(&server, "hostile");
    let j = Job::new(true);
    let cfg = j.ws.config(&format!(
        "store:\n  url: s3://hostile/pfx\n  options:\n    endpoint: {}\n    allow_http: true\n    region: eu-west-2\n    access_key_id: AKIATESTING\n    secret_access_key: notasecret\n{}jobs:\n  - name: j\n    retention: {{keep_last: 1}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        server.endpoint(),
        j.signing(),
        j.src.display()
    ));
    let run = |args: &[&str]| ccbackup_env(&cfg, args, &[]);
    let r = run(&["run-now"]);
    r.expect_ok();
    let a = r.stdout().lines().next().unwrap().trim().to_owned();
    let auth = [("Authorization", MOTO_AUTH.to_owned())];
    let (status, manifest) = http(
        server.port,
        "GET",
        &format!("/hostile/pfx/j/{a}/manifest.json"),
        &auth,
    );
    assert_eq!(status, 200);
    let (status, sig) = http(
        server.port,
        "GET",
        &format!("/hostile/pfx/j/{a}/manifest.json.minisig"),
        &auth,
    );
    assert_eq!(status, 200);
    let at = time_of(&a);
    // A manifest in GLACIER; a signature in GLACIER. (moto ignores SSE-C
    // on GET, so a customer-key object cannot be planted here; S3 refuses
    // its GET the same way, with a 4xx for that one object.)
    let glacier = id_at(at + chrono::Duration::seconds(10), "bbbbb1");
    let glacier_sig = id_at(at + chrono::Duration::seconds(20), "bbbbb2");
    put_object(
        &server,
        &format!("hostile/pfx/j/{glacier}/manifest.json"),
        manifest.as_bytes(),
        &[("x-amz-storage-class", "GLACIER")],
    );
    put_object(
        &server,
        &format!("hostile/pfx/j/{glacier_sig}/manifest.json"),
        manifest.as_bytes(),
        &[],
    );
    put_object(
        &server,
        &format!("hostile/pfx/j/{glacier_sig}/manifest.json.minisig"),
        sig.as_bytes(),
        &[("x-amz-storage-class", "GLACIER")],
    );
    let r = run(&["list"]);
    r.expect_ok();
    let all = format!("{}{}", r.stdout(), r.stderr());
    assert!(!all.contains("credentials"), "{all}");
    for id in [&glacier, &glacier_sig] {
        assert!(
            r.stdout()
                .lines()
                .any(|l| l.contains(id.as_str()) && l.contains("DAMAGED")),
            "{id}:\n{all}"
        );
    }
    run(&["verify"]).expect_ok();
    let r = run(&["run-now"]);
    r.expect_ok();
    assert!(!r.stderr().contains("SUSPICIOUS"), "{}", r.stderr());
    run(&["prune"]).expect_ok();

    // Issue 24: a manifest whose artifact is gone from the bucket is a
    // phantom, seen from the listing alone.
    let b = r.stdout().lines().next().unwrap().trim().to_owned();
    let (status, _) = http(
        server.port,
        "DELETE",
        &format!("/hostile/pfx/j/{b}/etc.tar.zst"),
        &auth,
    );
    assert_eq!(status, 204);
    let r = run(&["list"]);
    r.expect_ok();
    assert!(
        r.stdout()
            .lines()
            .any(|l| l.contains(b.as_str()) && l.contains("DAMAGED") && l.contains("missing")),
        "{}",
        r.stdout()
    );
    let r = run(&["run-now"]);
    r.expect_ok();
    let c = r.stdout().lines().next().unwrap().trim().to_owned();
    let keys = object_keys(&server, "hostile");
    assert!(
        keys.contains(&format!("pfx/j/{b}/manifest.json")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("pfx/j/{c}/manifest.json")),
        "{keys:?}"
    );
}

#[test]
fn regression_issue24_a_manifest_whose_artifacts_are_gone_is_damaged_and_not_counted() {
    let j = Job::new(false);
    let cfg = j.config("", false);
    let a = run_now(&cfg);
    let b = run_now(&cfg);
    let c = run_now(&cfg);
    let cfg = j.config("    retention: {keep_last: 1}\n", false);
    // A phantom: the manifest landed, the artifacts were cleaned up.
    std::fs::remove_file(j.dir(&c).join("etc.tar.zst")).unwrap();
    // And one whose artifact is not the size its manifest says.
    let art = j.dir(&b).join("etc.tar.zst");
    let mut bytes = std::fs::read(&art).unwrap();
    bytes.extend_from_slice(b"trailing junk");
    std::fs::write(&art, bytes).unwrap();

    let list = list_json(&cfg);
    assert_eq!(status_of(&list, &a), "complete");
    assert_eq!(status_of(&list, &b), "damaged");
    assert_eq!(status_of(&list, &c), "damaged");
    let text = ccbackup(&cfg, &["list"]).stdout();
    assert!(text.contains("missing"), "{text}");
    // Latest is the newest backup that is whole.
    let run = ccbackup(&cfg, &["prune", "--dry-run"]);
    run.expect_ok();
    assert!(
        run.stdout().contains("1 kept, 0 would be deleted"),
        "{}",
        run.stdout()
    );
    ccbackup(&cfg, &["verify"]).expect_ok();
    let d = run_now(&cfg);
    // keep_last 1 keeps the new one; the whole old one goes, the damaged
    // ones are neither counted nor deleted.
    assert!(!j.dir(&a).join("manifest.json").exists());
    assert!(j.dir(&b).join("manifest.json").exists());
    assert!(j.dir(&c).join("manifest.json").exists());
    assert!(j.dir(&d).join("manifest.json").exists());
}

#[test]
fn regression_issue22_future_dated_forgeries_are_not_counted_and_never_cost_the_new_backup() {
    let j = Job::new(false);
    let cfg = j.config("    retention: {keep_last: 1}\n", false);
    let a = run_now(&cfg);
    let store = j.ws.store_dir();
    let future: Vec<String> = (1..=3)
        .map(|i| format!("20300101T00000{i}Z-ffff0{i}"))
        .collect();
    for f in &future {
        forge(&store, &a, f, |_| {});
    }
    let b = run_now(&cfg);
    assert!(
        j.dir(&b).join("manifest.json").exists(),
        "the new backup was deleted"
    );
    assert!(!j.dir(&a).join("manifest.json").exists());
    let list = list_json(&cfg);
    for f in &future {
        assert_eq!(status_of(&list, f), "future");
        assert!(j.dir(f).join("manifest.json").exists());
    }
    let run = ccbackup(&cfg, &["list"]);
    assert!(run.stderr().contains("future"), "{}", run.stderr());
    // `latest` is the real backup.
    let to = tempfile::tempdir().unwrap();
    let dest = to.path().join("out");
    let r = ccbackup(&cfg, &["restore", "--to", dest.to_str().unwrap()]);
    r.expect_ok();
    assert!(format!("{}{}", r.stdout(), r.stderr()).contains(&b));

    // Forgeries just inside the allowed skew do count as newer; the run's
    // own backup still survives, and the run says retention refused.
    // 200 s ahead: inside the default 5 min skew, and still ahead of the
    // run's own backup however slow this machine is today.
    let soon = chrono::Utc::now() + chrono::Duration::seconds(200);
    for (i, s) in ["eeee01", "eeee02"].iter().enumerate() {
        forge(
            &store,
            &b,
            &id_at(soon + chrono::Duration::seconds(i as i64), s),
            |_| {},
        );
    }
    let run = ccbackup(&cfg, &["run-now"]);
    assert_eq!(run.code(), Some(1), "{}{}", run.stdout(), run.stderr());
    let c = run
        .stdout()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(
        j.dir(&c).join("manifest.json").exists(),
        "own backup {c} deleted"
    );
    assert!(j.dir(&b).join("manifest.json").exists());
    assert!(run.stderr().contains(&c), "{}", run.stderr());

    // A wider skew is the operator's call, validated like every key.
    let bad = j.ws.config(
        &std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("store:\n", "store:\n  max_clock_skew: soon\n"),
    );
    let run = ccbackup(&bad, &["check-config"]);
    assert_ne!(run.code(), Some(0));
    assert!(
        run.stderr().contains("store.max_clock_skew"),
        "{}",
        run.stderr()
    );
}

#[test]
fn regression_issue22_forgeries_are_never_copied_and_the_copy_store_keeps_its_real_backups() {
    let j = Job::new(false);
    let cfg = j.config("    retention: {keep_last: 1}\n", true);
    let a = run_now(&cfg);
    let store = j.ws.store_dir();
    for i in 1..=3 {
        forge(&store, &a, &format!("20300101T00000{i}Z-ffff0{i}"), |_| {});
    }
    let run = ccbackup(&cfg, &["copy", "--from-primary"]);
    run.expect_ok();
    let copied = |id: &str| j.copy.join("j").join(id).join("manifest.json").exists();
    for i in 1..=3 {
        assert!(
            !copied(&format!("20300101T00000{i}Z-ffff0{i}")),
            "{}",
            run.stdout()
        );
    }
    // Forgeries planted straight into the copy store change nothing there.
    for i in 4..=6 {
        forge(&j.copy, &a, &format!("20300101T00000{i}Z-ffff0{i}"), |_| {});
    }
    let b = run_now(&cfg);
    assert!(copied(&b), "the new backup is not in the copy store");
    assert!(!copied(&a));
}

#[test]
fn regression_issue22_the_guard_baseline_is_never_a_future_forgery_and_is_named() {
    let j = Job::new(false);
    let cfg = j.config("", false);
    let a = run_now(&cfg);
    let inflate = |m: &mut serde_json::Value| {
        let art = &mut m["artifacts"][0];
        let files = art["tree"]["files"].as_u64().unwrap();
        art["tree"]["files"] = serde_json::json!(files * 1000);
        let raw = art["raw_bytes"].as_u64().unwrap();
        art["raw_bytes"] = serde_json::json!(raw * 1000);
    };
    forge(&j.ws.store_dir(), &a, "20300101T000000Z-ffff00", inflate);
    let run = ccbackup(&cfg, &["run-now"]);
    run.expect_ok();
    assert!(!run.stderr().contains("SUSPICIOUS"), "{}", run.stderr());
    let b = run.stdout().lines().next().unwrap().trim().to_owned();

    // A forged baseline in the past still wins in an unsigned store, but
    // the message names it and says how to get past it.
    let past = id_at(time_of(&b) + chrono::Duration::seconds(1), "ffff01");
    forge(&j.ws.store_dir(), &a, &past, inflate);
    let run = ccbackup(&cfg, &["run-now"]);
    assert!(run.stderr().contains("SUSPICIOUS"), "{}", run.stderr());
    assert!(run.stderr().contains(&past), "{}", run.stderr());
    assert!(run.stderr().contains("--accept-shrink"), "{}", run.stderr());
}

#[test]
fn regression_issue22_copy_from_primary_repairs_a_copy_whose_manifest_is_junk() {
    let j = Job::new(true);
    let cfg = j.config("", true);
    let a = run_now(&cfg);
    let copy_manifest = j.copy.join("j").join(&a).join("manifest.json");
    let primary = std::fs::read(j.dir(&a).join("manifest.json")).unwrap();
    assert_eq!(std::fs::read(&copy_manifest).unwrap(), primary);
    std::fs::write(&copy_manifest, b"{\"junk\": true}").unwrap();
    let run = ccbackup(&cfg, &["copy", "--from-primary"]);
    run.expect_ok();
    assert_eq!(
        std::fs::read(&copy_manifest).unwrap(),
        primary,
        "{}",
        run.stdout()
    );
    assert!(run.stdout().contains("repaired"), "{}", run.stdout());
    // The signature is checked too.
    let copy_sig = j.copy.join("j").join(&a).join("manifest.json.minisig");
    std::fs::write(&copy_sig, b"untrusted comment: x\nnot a signature\n").unwrap();
    ccbackup(&cfg, &["copy", "--from-primary"]).expect_ok();
    assert_eq!(
        std::fs::read(&copy_sig).unwrap(),
        std::fs::read(j.dir(&a).join("manifest.json.minisig")).unwrap()
    );
}

#[test]
fn regression_issue22_a_lease_from_the_future_does_not_lock_the_job() {
    let j = Job::new(false);
    let cfg = j.config("", false);
    run_now(&cfg);
    let lease = j.ws.store_dir().join("locks").join("j.json");
    let plant = || {
        std::fs::create_dir_all(lease.parent().unwrap()).unwrap();
        let far: chrono::DateTime<chrono::Utc> = "2099-01-01T00:00:00Z".parse().unwrap();
        std::fs::write(
            &lease,
            ccbackup::repo::lock::lease_json("intruder", "elsewhere", far),
        )
        .unwrap();
        let touched = Command::new("touch")
            .args(["-d", "2099-01-01T00:00:00Z"])
            .arg(&lease)
            .status()
            .unwrap();
        assert!(touched.success());
    };
    plant();
    run_now(&cfg);
    plant();
    let run = ccbackup(&cfg, &["unlock", "--job", "j"]);
    run.expect_ok();
    assert!(!lease.exists());
}

/// Exit code and peak RSS in KiB of a ccbackup run, measured by GNU time
/// on the child alone.
fn peak_rss(cfg: &Path, args: &[&str]) -> (i32, u64) {
    require_tool("/usr/bin/time");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rss");
    let status = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&out)
        .arg(bin())
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("CCBACKUP_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let rss = text.lines().last().unwrap().trim().parse().unwrap();
    (status.code().unwrap_or(-1), rss)
}

#[test]
fn regression_issue22_catalog_memory_stays_bounded_whatever_the_store_holds() {
    let j = Job::new(false);
    let cfg = j.config("", false);
    let a = run_now(&cfg);
    let store = j.ws.store_dir();
    // 40 manifests just under the 8 MiB byte cap, each a list of 1.35
    // million three-byte strings in a field ccbackup parses.
    let strings = format!("{}\"aaa\"", "\"aaa\",".repeat(1_349_999));
    for i in 0..40 {
        let id = id_at(
            time_of(&a) - chrono::Duration::days(1) + chrono::Duration::seconds(i),
            &format!("dddd{i:02}"),
        );
        forge(&store, &a, &id, |m| {
            m["artifacts"][0]["tree"]["invalid"] = serde_json::json!(["PLACEHOLDER"]);
        });
        let p = j.dir(&id).join("manifest.json");
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text.replace("\"PLACEHOLDER\"", &strings);
        assert!(text.len() < 8 * 1024 * 1024 && text.len() > 8_000_000);
        std::fs::write(&p, text).unwrap();
    }
    let (code, rss_kib) = peak_rss(&cfg, &["list"]);
    assert_eq!(code, 0);
    // Reading eight manifests at once is 64 MiB; the cap leaves room for
    // the binary and the runtime, and is a twentieth of what parsing and
    // keeping them all took.
    assert!(
        rss_kib < 160 * 1024,
        "list peaked at {} MiB",
        rss_kib / 1024
    );
    let run = ccbackup(&cfg, &["list"]);
    run.expect_ok();
    assert!(run.stdout().contains("once parsed"), "{}", run.stdout());
    assert!(run.stdout().contains(&a));
}

/// Review of round 3: a primary whose signature comment was edited and one
/// of whose artifacts was corrupted (same size) must not cost the copy
/// store its good copy. Before: the copy's manifest was deleted first, the
/// corrupt artifact failed its check, and the rewritten artifacts were
/// removed, leaving nothing.
#[test]
fn regression_review_a_damaged_primary_never_destroys_a_good_copy() {
    let j = Job::new(true);
    let cfg = j.config("", true);
    let a = run_now(&cfg);
    let copy_dir = j.copy.join("j").join(&a);
    let good_manifest = std::fs::read(copy_dir.join("manifest.json")).unwrap();
    let good_artifact = std::fs::read(copy_dir.join("etc.tar.zst")).unwrap();

    // The attack on the primary: an edited untrusted comment (the
    // signature still verifies) and a flipped byte in the artifact.
    let sig = j.dir(&a).join("manifest.json.minisig");
    let text = std::fs::read_to_string(&sig).unwrap();
    let (_, rest) = text.split_once('\n').unwrap();
    std::fs::write(&sig, format!("untrusted comment: planted\n{rest}")).unwrap();
    let art = j.dir(&a).join("etc.tar.zst");
    let mut bytes = std::fs::read(&art).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&art, &bytes).unwrap();

    let _ = ccbackup(&cfg, &["copy", "--from-primary"]);
    assert_eq!(
        std::fs::read(copy_dir.join("manifest.json")).unwrap(),
        good_manifest,
        "the copy's manifest is gone"
    );
    assert_eq!(
        std::fs::read(copy_dir.join("etc.tar.zst")).unwrap(),
        good_artifact,
        "the copy's artifact changed"
    );

    // And a primary whose artifact is corrupt while its manifest differs
    // from the copy's (a real repair case) still leaves the copy whole.
    std::fs::write(copy_dir.join("manifest.json"), b"{\"junk\": true}").unwrap();
    let run = ccbackup(&cfg, &["copy", "--from-primary"]);
    assert!(!run.ok(), "a corrupt primary artifact must fail the copy");
    assert_eq!(
        std::fs::read(copy_dir.join("etc.tar.zst")).unwrap(),
        good_artifact,
        "a failed repair removed or replaced the copy's artifact"
    );
}

/// Review of round 3: a `lock_ttl` longer than the longest lease ccbackup
/// believes would make every honest lease look forged (and free to take).
#[test]
fn regression_review_lock_ttl_beyond_the_lease_cap_is_a_config_error() {
    let j = Job::new(false);
    let cfg = j.config("", false);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("jobs:\n", "daemon:\n  lock_ttl: 12h\njobs:\n"),
    )
    .unwrap();
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}{}", run.stdout(), run.stderr());
    assert!(
        run.stderr().contains("daemon.lock_ttl") && run.stderr().contains("at most 6h"),
        "{}",
        run.stderr()
    );
}
