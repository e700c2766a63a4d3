//! Immutable S3 stores, the writing side (`store.object_lock`), against
//! moto with a bucket made with Object Lock: every object of a backup is
//! locked as it is written (the manifest by its own PUT, multipart
//! artifacts by PutObjectRetention), retention extends what it keeps and
//! reports what a lock retains, leases keep working, a version delete (the
//! attacker's way around delete markers) is refused by the store, and
//! `doctor` judges the bucket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::support::*;
use crate::support_s3::*;
use crate::support_store::{denied, FaultyStore, Op};

const DAY: i64 = 86_400;

/// Creates a bucket with Object Lock (moto turns versioning on with it).
fn create_locked_bucket(server: &Server, bucket: &str) {
    let (status, body) = http(
        server.port,
        "PUT",
        &format!("/{bucket}"),
        &[("x-amz-bucket-object-lock-enabled", "true".to_owned())],
    );
    assert_eq!(status, 200, "create locked bucket {bucket}: {body}");
}

/// moto refuses anonymous object requests but checks no signature: any
/// SigV4-shaped header is an authenticated caller (here: the sidecar's
/// credentials, which the attacker holds).
const FAKE_AUTH: &str = "Authorization: AWS4-HMAC-SHA256 Credential=AKIATESTING/20260101/eu-west-2/s3/aws4_request, SignedHeaders=host, Signature=00";

/// One raw request; returns status, lower-cased headers and body.
fn raw(
    server: &Server,
    method: &str,
    target: &str,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n{FAKE_AUTH}\r\nContent-Length: {}\r\n\r\n{body}",
        server.port,
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// The lock of `key` (mode, retain-until) as a HEAD shows it.
fn lock_of(server: &Server, bucket: &str, key: &str) -> Option<(String, DateTime<Utc>)> {
    let (status, headers, _) = raw(server, "HEAD", &format!("/{bucket}/{key}"), "");
    assert_eq!(status, 200, "HEAD {key}");
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mode = get("x-amz-object-lock-mode")?;
    let until = get("x-amz-object-lock-retain-until-date")?;
    let until = DateTime::parse_from_rfc3339(&until)
        .unwrap_or_else(|e| panic!("retain-until {until}: {e}"))
        .with_timezone(&Utc);
    Some((mode, until))
}

/// `(key, version id, is delete marker)` for everything under `prefix`.
fn versions(server: &Server, bucket: &str, prefix: &str) -> Vec<(String, String, bool)> {
    let (status, _, body) = raw(
        server,
        "GET",
        &format!("/{bucket}?versions&prefix={prefix}"),
        "",
    );
    assert_eq!(status, 200, "list versions: {body}");
    let field = |s: &str, tag: &str| {
        s.split(&format!("<{tag}>"))
            .nth(1)
            .and_then(|r| r.split_once(&format!("</{tag}>")))
            .map(|(v, _)| v.to_owned())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (tag, marker) in [("Version", false), ("DeleteMarker", true)] {
        for chunk in body.split(&format!("<{tag}>")).skip(1) {
            let chunk = chunk.split(&format!("</{tag}>")).next().unwrap_or("");
            out.push((field(chunk, "Key"), field(chunk, "VersionId"), marker));
        }
    }
    out
}

struct Site {
    server: Server,
    bucket: String,
    ws: Workspace,
    data: PathBuf,
    keys: PathBuf,
}

impl Site {
    fn new(bucket: &str, locked: bool) -> Site {
        let server = start_moto(false);
        if locked {
            create_locked_bucket(&server, bucket);
        } else {
            create_bucket(&server, bucket);
        }
        let ws = Workspace::new();
        let data = ws.path().join("data");
        std::fs::create_dir(&data).unwrap();
        // Above the 5 MiB part size: a multipart artifact.
        random_file(&data.join("big.bin"), 6 * 1024 * 1024 + 7);
        std::fs::write(data.join("small.txt"), "small").unwrap();
        let keys = ws.path().join("keys");
        keys_generate(&keys);
        Site {
            server,
            bucket: bucket.to_owned(),
            ws,
            data,
            keys,
        }
    }

    fn store(&self, bucket: &str, lock: &str) -> String {
        format!(
            "  url: s3://{bucket}/site-a\n  part_size: 5MiB\n  options:\n    endpoint: {}\n    allow_http: true\n    region: eu-west-2\n    access_key_id: AKIATESTING\n    secret_access_key: not-a-secret\n{lock}",
            self.server.endpoint()
        )
    }

    /// A config whose store (and optional copy) carries `lock`.
    fn config(&self, lock: &str, retention: &str, copy: Option<&str>) -> PathBuf {
        // The copy's block is the store's, two deeper and as a list item.
        let copies = copy.map_or(String::new(), |b| {
            let block: String = self
                .store(b, lock)
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect();
            format!("copies:\n  -{}", &block[3..])
        });
        self.ws.config(&format!(
            "store:\n{}{copies}signing:\n  secret_key_file: {}\njobs:\n  - name: site\n{retention}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
            self.store(&self.bucket, lock),
            self.keys.join("minisign.key").display(),
            self.data.display()
        ))
    }

    fn backup(&self, cfg: &Path) -> String {
        let run = ccbackup_env(cfg, &["run-now"], &[]);
        run.expect_ok();
        run.stdout().trim().to_owned()
    }
}

const GOVERNANCE_30D: &str = "  object_lock:\n    mode: governance\n    period: 30d\n";

/// Every object under `site-a/site/<id>/` is locked in `mode` at least
/// `days` past the backup's start (and not absurdly further).
fn assert_all_locked(server: &Server, bucket: &str, id: &str, mode: &str, days: i64) -> usize {
    let started = ccbackup::repo::store::backup_id_time(id).expect("backup id time");
    let prefix = format!("site-a/site/{id}/");
    let keys: Vec<String> = object_keys(server, bucket)
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect();
    for name in ["manifest.json", "manifest.json.minisig", "etc.tar.zst"] {
        assert!(
            keys.contains(&format!("{prefix}{name}")),
            "{name} missing: {keys:?}"
        );
    }
    let latest = Utc::now() + chrono::Duration::seconds(days * DAY + 60);
    for k in &keys {
        let (m, until) = lock_of(server, bucket, k).unwrap_or_else(|| panic!("{k} is not locked"));
        assert_eq!(m, mode, "{k}");
        assert!(
            until >= started + chrono::Duration::seconds(days * DAY),
            "{k} locked only until {until}"
        );
        assert!(until <= latest, "{k} locked until {until}");
    }
    keys.len()
}

#[test]
fn every_object_of_a_backup_is_locked_as_it_is_written_and_leases_still_work() {
    let site = Site::new("ccb-immutable", true);
    let cfg = site.config(GOVERNANCE_30D, "", None);
    let first = site.backup(&cfg);
    // The big artifact went up in parts (a multipart ETag ends in -<parts>)
    // and is locked like the rest.
    assert!(assert_all_locked(&site.server, &site.bucket, &first, "GOVERNANCE", 30) >= 3);
    let (_, headers, _) = raw(
        &site.server,
        "HEAD",
        &format!("/{}/site-a/site/{first}/etc.tar.zst", site.bucket),
        "",
    );
    let etag = headers
        .iter()
        .find(|(k, _)| k == "etag")
        .map(|(_, v)| v.clone());
    assert!(
        etag.as_deref()
            .unwrap_or("")
            .trim_matches('"')
            .ends_with("-2"),
        "{etag:?}"
    );
    // Its upload carried a SHA-256 checksum (S3 wants one in a bucket with
    // a default retention).
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "x-amz-checksum-algorithm" && v == "SHA256"),
        "{headers:?}"
    );
    // The lease was taken and released twice (a plain DELETE on a versioned
    // bucket: a delete marker), so a second run is not locked out.
    let second = site.backup(&cfg);
    assert_ne!(first, second);
    assert_all_locked(&site.server, &site.bucket, &second, "GOVERNANCE", 30);
    let leases = versions(&site.server, &site.bucket, "site-a/locks/");
    assert!(leases.iter().any(|(_, _, marker)| *marker), "{leases:?}");
    assert!(
        !object_keys(&site.server, &site.bucket)
            .iter()
            .any(|k| k.starts_with("site-a/locks/")),
        "a lease is still held"
    );
    for (key, version, marker) in leases.iter().filter(|v| !v.2) {
        let (status, headers, _) = raw(
            &site.server,
            "HEAD",
            &format!("/{}/{key}?versionId={version}", site.bucket),
            "",
        );
        assert_eq!(status, 200, "{key} {version} {marker}");
        assert!(
            !headers.iter().any(|(k, _)| k == "x-amz-object-lock-mode"),
            "lease {key} is locked: {headers:?}"
        );
    }

    // The attacker's way around delete markers: deleting the manifest's
    // version. The store refuses it; a plain DELETE only hides it.
    let manifest = format!("site-a/site/{first}/manifest.json");
    let v: Vec<_> = versions(&site.server, &site.bucket, &manifest)
        .into_iter()
        .filter(|v| v.0 == manifest)
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    let (status, _, body) = raw(
        &site.server,
        "DELETE",
        &format!("/{}/{manifest}?versionId={}", site.bucket, v[0].1),
        "",
    );
    assert_eq!(status, 403, "version delete of a locked manifest: {body}");
    assert!(body.contains("AccessDenied"), "{body}");
    let (status, _, _) = raw(
        &site.server,
        "GET",
        &format!("/{}/{manifest}?versionId={}", site.bucket, v[0].1),
        "",
    );
    assert_eq!(status, 200);
    ccbackup_env(&cfg, &["verify"], &[]).expect_ok();
}

#[test]
fn object_lock_on_a_bucket_without_it_fails_the_backup_without_a_manifest() {
    let site = Site::new("ccb-unlockable", false);
    let cfg = site.config(GOVERNANCE_30D, "", None);
    let run = ccbackup_env(&cfg, &["run-now"], &[]);
    assert_ne!(
        run.code(),
        Some(0),
        "backup into a bucket without Object Lock succeeded"
    );
    let err = run.stderr();
    assert!(
        err.contains("cannot lock `site/")
            && err.contains("store.object_lock needs a bucket with Object Lock"),
        "{err}"
    );
    assert!(!err.contains("NoSuchUpload"), "{err}");
    assert!(
        !object_keys(&site.server, &site.bucket)
            .iter()
            .any(|k| k.ends_with("/manifest.json")),
        "a manifest was written unlocked"
    );
}

#[test]
fn object_lock_on_a_file_store_is_a_config_error_saying_what_to_do() {
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\n  object_lock:\n    mode: governance\n    period: 30d\njobs:\n  - name: j\n    sources:\n      - name: e\n        files: {{path: /tmp}}\n",
        ws.store_url()
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let err = run.stderr();
    assert!(
        err.contains(&format!("{}:4:", cfg.display()))
            && err.contains("store.object_lock: file:// stores cannot be locked"),
        "{err}"
    );
}

const GOVERNANCE_2D: &str = "  object_lock:\n    mode: governance\n    period: 2d\n";

fn keys_of(server: &Server, bucket: &str, id: &str) -> Vec<String> {
    object_keys(server, bucket)
        .into_iter()
        .filter(|k| k.contains(&format!("/{id}/")))
        .collect()
}

#[test]
fn prune_extends_what_it_keeps_and_reports_what_the_lock_retains() {
    let site = Site::new("ccb-lock-prune", true);
    let plain = site.config(GOVERNANCE_2D, "", None);
    let old = site.backup(&plain);
    let new = site.backup(&plain);
    let cfg = site.config(GOVERNANCE_2D, "    retention: {keep_last: 1}\n", None);

    let run = ccbackup_env(&cfg, &["prune", "--json"], &[]);
    run.expect_ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout()).expect("prune --json");
    crate::schemas::assert_valid("prune.json", &v);
    let job = &v[0];
    assert_eq!(job["deleted"], serde_json::json!([old]), "{job}");
    // The deleted backup is only hidden by delete markers: its locked
    // versions stay until the lock ends, and prune says so.
    let retained = job["retained_by_lock"]
        .as_array()
        .expect("retained_by_lock");
    assert_eq!(retained.len(), 1, "{job}");
    assert_eq!(retained[0]["backup_id"], old.as_str());
    let until: DateTime<Utc> = retained[0]["until"].as_str().unwrap().parse().unwrap();
    let old_time = ccbackup::repo::store::backup_id_time(&old).unwrap();
    assert!(
        until >= old_time + chrono::Duration::seconds(2 * DAY),
        "{until}"
    );
    let locks = &job["locks"];
    assert_eq!(locks["failed"], serde_json::json!([]), "{job}");
    let kept_objects = keys_of(&site.server, &site.bucket, &new).len() as u64;
    assert_eq!(
        locks["extended"].as_u64().unwrap() + locks["already_locked"].as_u64().unwrap(),
        kept_objects,
        "{job}"
    );
    let manifest = format!("site-a/site/{old}/manifest.json");
    let hist: Vec<_> = versions(&site.server, &site.bucket, &manifest)
        .into_iter()
        .filter(|v| v.0 == manifest)
        .collect();
    assert_eq!(hist.iter().filter(|v| v.2).count(), 1, "{hist:?}");
    assert_eq!(hist.iter().filter(|v| !v.2).count(), 1, "{hist:?}");
    assert!(keys_of(&site.server, &site.bucket, &old).is_empty());

    // The daemon's retention and prune share this code; ten days later the
    // kept backup's locks are moved to that day plus the period.
    let config = ccbackup::config::load(&cfg).expect("load config");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let later = Utc::now() + chrono::Duration::seconds(10 * DAY);
    let out = rt.block_on(async {
        let clock = ccbackup::clock::Clock::following_tokio(later);
        let repo = ccbackup::repo::store::open(&config.store)
            .expect("open")
            .with_signing(config.signing.as_ref())
            .with_clock(clock);
        let d = ccbackup::retention::prune::plan_job(&repo, &config.jobs[0])
            .await
            .expect("plan");
        ccbackup::retention::prune::apply(&repo, &d)
            .await
            .expect("apply")
    });
    let report = out.locks.expect("lock report");
    assert_eq!(report.extended as u64, kept_objects, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let target = later + chrono::Duration::seconds(2 * DAY);
    for k in keys_of(&site.server, &site.bucket, &new) {
        let (mode, until) = lock_of(&site.server, &site.bucket, &k).expect("locked");
        assert_eq!(mode, "GOVERNANCE");
        assert!(
            until >= target - chrono::Duration::seconds(1),
            "{k}: {until}"
        );
    }

    // Back at today's date nothing is shortened, and the text output says
    // what the locks did.
    let text = ccbackup_env(&cfg, &["prune"], &[]);
    text.expect_ok();
    assert!(
        text.stdout().contains("locks: 0 object(s) extended to "),
        "{}",
        text.stdout()
    );
    assert!(
        text.stdout()
            .contains(&format!("{kept_objects} already locked that far")),
        "{}",
        text.stdout()
    );
    for k in keys_of(&site.server, &site.bucket, &new) {
        let (_, until) = lock_of(&site.server, &site.bucket, &k).expect("locked");
        assert!(
            until >= target - chrono::Duration::seconds(1),
            "{k}: {until}"
        );
    }
}

/// `doctor --json` checks of one subject, as (check, status, detail).
fn doctor(cfg: &Path) -> (Option<i32>, Vec<(String, String, String)>) {
    let run = ccbackup_env(cfg, &["doctor", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("doctor --json: {e}\n{}\n{}", run.stdout(), run.stderr()));
    crate::schemas::assert_valid("doctor.json", &v);
    let checks = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["subject"].as_str().unwrap_or("").starts_with("store "))
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
                c["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (run.code(), checks)
}

fn finding<'a>(checks: &'a [(String, String, String)], check: &str) -> (&'a str, &'a str) {
    checks
        .iter()
        .find(|c| c.0 == check)
        .map(|c| (c.1.as_str(), c.2.as_str()))
        .unwrap_or_else(|| panic!("no `{check}` check in {checks:?}"))
}

#[test]
fn doctor_judges_a_bucket_for_object_lock() {
    // A plain bucket: no versioning, no Object Lock.
    let plain = Site::new("ccb-doctor-nolock", false);
    let cfg = plain.config(GOVERNANCE_2D, "", None);
    let (code, checks) = doctor(&cfg);
    assert_ne!(code, Some(0), "{checks:?}");
    let (status, detail) = finding(&checks, "object lock configured");
    assert_eq!(status, "fail", "{detail}");
    assert!(detail.contains("has no Object Lock"), "{detail}");
    assert!(finding(&checks, "versioning").1.contains("never enabled"));

    // Object Lock but no lifecycle rule, and a policy keeping dailies for a
    // week with a 2-day lock.
    let site = Site::new("ccb-doctor-lock", true);
    let cfg = site.config(GOVERNANCE_2D, "    retention: {keep_daily: 7}\n", None);
    let (_, checks) = doctor(&cfg);
    assert_eq!(
        finding(&checks, "object lock configured").0,
        "ok",
        "{checks:?}"
    );
    let (status, detail) = finding(&checks, "lifecycle");
    assert_eq!(status, "warn", "{detail}");
    assert!(
        detail.contains("NoncurrentVersionExpiration") || detail.contains("noncurrent"),
        "{detail}"
    );
    let (status, detail) = finding(&checks, "lock period");
    assert_eq!(status, "warn", "{detail}");
    assert!(
        detail.contains("2 days are shorter than the policy's shortest keep window (7 days)"),
        "{detail}"
    );
    assert_eq!(
        finding(&checks, "newest backup locked").1,
        "no complete backup yet"
    );

    // With a lifecycle rule, a covering period and a backup: all good, and
    // the newest backup's retain-until is reported.
    let rule = "<LifecycleConfiguration><Rule><ID>expire-old-versions</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>30</NoncurrentDays></NoncurrentVersionExpiration></Rule></LifecycleConfiguration>";
    let (status, _, body) = raw(
        &site.server,
        "PUT",
        &format!("/{}?lifecycle", site.bucket),
        rule,
    );
    assert_eq!(status, 200, "put lifecycle: {body}");
    let week = "  object_lock:\n    mode: compliance\n    period: 8d\n";
    let cfg = site.config(week, "    retention: {keep_daily: 7}\n", None);
    let id = site.backup(&cfg);
    let (code, checks) = doctor(&cfg);
    assert_eq!(code, Some(0), "{checks:?}");
    let (status, detail) = finding(&checks, "lifecycle");
    assert_eq!(status, "ok", "{detail}");
    assert!(
        detail.contains("expire-old-versions") && detail.contains("30 days"),
        "{detail}"
    );
    assert_eq!(finding(&checks, "lock period").0, "ok");
    let (status, detail) = finding(&checks, "newest backup locked");
    assert_eq!(status, "info");
    assert!(
        detail.starts_with(&format!("{id}: COMPLIANCE until ")),
        "{detail}"
    );
}

#[test]
fn a_copy_store_with_object_lock_is_locked_like_the_primary() {
    let site = Site::new("ccb-lock-primary", true);
    create_locked_bucket(&site.server, "ccb-lock-copy");
    let cfg = site.config(
        GOVERNANCE_30D,
        "    retention: {keep_last: 5}\n",
        Some("ccb-lock-copy"),
    );
    let id = site.backup(&cfg);
    assert!(assert_all_locked(&site.server, &site.bucket, &id, "GOVERNANCE", 30) >= 3);
    let copied = assert_all_locked(&site.server, "ccb-lock-copy", &id, "GOVERNANCE", 30);
    assert!(copied >= 3);

    // The copy store's retention extends what it keeps, as the primary's.
    let config = ccbackup::config::load(&cfg).expect("load config");
    let later = Utc::now() + chrono::Duration::seconds(10 * DAY);
    let out = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let repo = ccbackup::repo::store::open(&config.copies[0])
            .expect("open the copy store")
            .with_signing(config.signing.as_ref())
            .with_clock(ccbackup::clock::Clock::following_tokio(later));
        let d = ccbackup::retention::prune::plan_job(&repo, &config.jobs[0])
            .await
            .expect("plan");
        ccbackup::retention::prune::apply(&repo, &d)
            .await
            .expect("apply")
    });
    let report = out.locks.expect("lock report");
    assert_eq!(report.extended, copied, "{report:?}");
    let target = later + chrono::Duration::seconds(30 * DAY) - chrono::Duration::seconds(1);
    for k in keys_of(&site.server, "ccb-lock-copy", &id) {
        let (_, until) = lock_of(&site.server, "ccb-lock-copy", &k).expect("locked");
        assert!(until >= target, "{k}: {until}");
    }
}

#[test]
fn a_delete_the_store_refuses_for_a_locked_backup_is_retained_not_failed() {
    let site = Site::new("ccb-lock-refuse", true);
    let plain = site.config(GOVERNANCE_2D, "", None);
    let old = site.backup(&plain);
    let new = site.backup(&plain);
    let cfg = site.config(GOVERNANCE_2D, "    retention: {keep_last: 1}\n", None);
    let config = ccbackup::config::load(&cfg).expect("load config");
    let result = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut repo = ccbackup::repo::store::open(&config.store)
            .expect("open")
            .with_signing(config.signing.as_ref());
        // Every delete refused, as S3 refuses an object it may not delete.
        repo.store = std::sync::Arc::new(FaultyStore::new(repo.store.clone(), |op, p, _| {
            if op == Op::Delete {
                return Err(denied(
                    p,
                    "AccessDenied: Access Denied because object protected by object lock",
                ));
            }
            Ok(())
        }));
        let d = ccbackup::retention::prune::plan_job(&repo, &config.jobs[0])
            .await
            .expect("plan");
        assert_eq!(d.removed_ids(), vec![old.clone()]);
        ccbackup::retention::prune::apply(&repo, &d).await
    });
    let out = result.expect("a refused delete of a locked backup is not a failure");
    assert!(out.deleted.is_empty(), "{out:?}");
    assert_eq!(out.retained_by_lock.len(), 1, "{out:?}");
    assert_eq!(out.retained_by_lock[0].backup_id, old);
    let old_time = ccbackup::repo::store::backup_id_time(&old).unwrap();
    assert!(out.retained_by_lock[0].until >= old_time + chrono::Duration::seconds(2 * DAY));
    // Both backups are still there, whole.
    assert!(!keys_of(&site.server, &site.bucket, &old).is_empty());
    assert!(!keys_of(&site.server, &site.bucket, &new).is_empty());
}

#[test]
fn extending_a_compliance_lock_never_weakens_it_to_governance() {
    let site = Site::new("ccb-lock-compliance", true);
    let compliance = "  object_lock:\n    mode: compliance\n    period: 2d\n";
    let id = site.backup(&site.config(compliance, "", None));
    assert_all_locked(&site.server, &site.bucket, &id, "COMPLIANCE", 2);
    // The configuration moves to governance; the next retention run, a day
    // later, extends the existing locks and keeps them in compliance mode.
    let cfg = site.config(GOVERNANCE_2D, "    retention: {keep_last: 3}\n", None);
    let config = ccbackup::config::load(&cfg).expect("load config");
    let later = Utc::now() + chrono::Duration::seconds(DAY);
    let out = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let repo = ccbackup::repo::store::open(&config.store)
            .expect("open")
            .with_signing(config.signing.as_ref())
            .with_clock(ccbackup::clock::Clock::following_tokio(later));
        let d = ccbackup::retention::prune::plan_job(&repo, &config.jobs[0])
            .await
            .expect("plan");
        ccbackup::retention::prune::apply(&repo, &d)
            .await
            .expect("apply")
    });
    let report = out.locks.expect("lock report");
    assert!(
        report.failed.is_empty() && report.extended >= 3,
        "{report:?}"
    );
    for k in keys_of(&site.server, &site.bucket, &id) {
        let (mode, until) = lock_of(&site.server, &site.bucket, &k).expect("locked");
        assert_eq!(mode, "COMPLIANCE", "{k}");
        assert!(
            until >= later + chrono::Duration::seconds(2 * DAY - 1),
            "{k}: {until}"
        );
    }
}

#[test]
fn backups_written_before_object_lock_are_locked_by_the_next_retention_run() {
    let site = Site::new("ccb-lock-later", true);
    let id = site.backup(&site.config("", "", None));
    let prefix = format!("site-a/site/{id}/");
    let keys: Vec<String> = object_keys(&site.server, &site.bucket)
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect();
    assert!(keys.len() >= 3, "{keys:?}");
    for k in &keys {
        assert_eq!(lock_of(&site.server, &site.bucket, k), None, "{k}");
    }
    let cfg = site.config(GOVERNANCE_30D, "    retention: {keep_last: 3}\n", None);
    let run = ccbackup_env(&cfg, &["prune", "--json"], &[]);
    run.expect_ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(v[0]["locks"]["extended"], keys.len(), "{v}");
    let least = Utc::now() + chrono::Duration::seconds(30 * DAY - 60);
    for k in &keys {
        let (mode, until) = lock_of(&site.server, &site.bucket, k).expect("locked now");
        assert_eq!(mode, "GOVERNANCE");
        assert!(until >= least, "{k}: {until}");
    }
}

#[test]
fn locks_that_cannot_be_extended_fail_the_retention_run_and_say_so() {
    // A bucket without Object Lock: the backup (written without
    // object_lock) works, extending its locks cannot.
    let site = Site::new("ccb-lock-cannot", false);
    let id = site.backup(&site.config("", "", None));
    let cfg = site.config(GOVERNANCE_30D, "    retention: {keep_last: 3}\n", None);
    let run = ccbackup_env(&cfg, &["prune"], &[]);
    assert_ne!(run.code(), Some(0), "{}", run.stdout());
    let err = run.stderr();
    assert!(
        err.contains("pruning job `site`: the locks of ")
            && err.contains("kept object(s) could not be extended, first: cannot lock `site/")
            && err.contains(&id),
        "{err}"
    );
}
