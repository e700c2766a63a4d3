//! Second copies (3-2-1): after a complete backup its bytes are copied to
//! every store in `copies:` (file:// and S3 on moto), verified on the way;
//! a copy store stands on its own (list, verify, restore), has its own
//! retention, and a failing copy never un-completes the primary backup.
//! `copy --from-primary` backfills, skips what is there, refuses corrupted
//! sources; signatures stay valid; interruption and transient failures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ccbackup::repo::store::Repo;
use ccbackup::repo::store::StoreSpec;
use ccbackup::secret::Secret;
use object_store::ObjectStoreExt;
use tokio_util::sync::CancellationToken;

use crate::support::*;
use crate::support_s3::*;
use crate::support_store::{FaultyStore, Op};

const SECRET: &str = "c0py-s3cr3t-Never-Shown-4471";

/// A source directory with a small file and one above the 5 MiB part size
/// (incompressible, so the S3 copy goes up in two parts).
fn source_dir(ws: &Workspace) -> PathBuf {
    let src = ws.path().join("src");
    std::fs::create_dir_all(src.join("sub dir")).unwrap();
    std::fs::write(src.join("sub dir").join("a:b.txt"), "small").unwrap();
    random_file(&src.join("big.bin"), 6 * 1024 * 1024 + 17);
    src
}

fn job_block(src: &Path, retention: &str) -> String {
    format!(
        "jobs:\n  - name: site\n{retention}    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        src.display()
    )
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// An S3 store's fields; `lead` starts the first line (`  - ` in a list,
/// `store:\n  ` for a primary), nested keys follow its indentation.
fn s3_fields(server: &Server, bucket: &str, lead: &str, indent: &str) -> String {
    format!(
        "{lead}url: s3://{bucket}/copies/site-a\n{indent}part_size: 5MiB\n{indent}options:\n{indent}  endpoint: {}\n{indent}  allow_http: true\n{indent}  region: eu-west-2\n{indent}  access_key_id: AKIATESTING\n{indent}  secret_access_key: {SECRET}\n",
        server.endpoint()
    )
}

fn s3_copy(server: &Server, bucket: &str) -> String {
    s3_fields(server, bucket, "  - ", "    ")
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Relative path -> sha256 of every file under `dir`.
fn tree(dir: &Path) -> Vec<(String, String)> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                out.push((rel, sha256_file(&p)));
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

fn manifest_ids(store: &Path, job: &str) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(store.join(job))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("manifest.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn s3_repo(server: &Server, bucket: &str) -> Repo {
    let opt = |k: &str, v: &str| (k.to_owned(), Secret::new(v));
    ccbackup::repo::store::open(&StoreSpec {
        url: url::Url::parse(&format!("s3://{bucket}/copies/site-a")).unwrap(),
        options: vec![
            opt("endpoint", &server.endpoint()),
            opt("allow_http", "true"),
            opt("region", "eu-west-2"),
            opt("access_key_id", "AKIATESTING"),
            opt("secret_access_key", SECRET),
        ],
        part_size: 5 * 1024 * 1024,
        concurrency: 2,
        max_clock_skew: ccbackup::repo::store::DEFAULT_MAX_CLOCK_SKEW,
        object_lock: None,
    })
    .unwrap()
}

fn file_repo(dir: &Path) -> Repo {
    ccbackup::repo::store::open(&StoreSpec {
        url: url::Url::parse(&file_url(dir)).unwrap(),
        options: vec![],
        part_size: 5 * 1024 * 1024,
        concurrency: 2,
        max_clock_skew: ccbackup::repo::store::DEFAULT_MAX_CLOCK_SKEW,
        object_lock: None,
    })
    .unwrap()
}

fn run_id(run: &Run) -> String {
    run.stdout()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn run_now_copies_identical_bytes_and_each_copy_stands_alone() {
    let server = start_moto(false);
    create_bucket(&server, "ccb-copy");
    let ws = Workspace::new();
    let src = source_dir(&ws);
    let copy_dir = ws.path().join("copy1");
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ncopies:\n  - url: {}\n{}{}",
        ws.store_url(),
        file_url(&copy_dir),
        s3_copy(&server, "ccb-copy"),
        job_block(&src, "")
    ));
    let run = ccbackup_env(&cfg, &["run-now"], &[]);
    run.expect_ok();
    let id = run_id(&run);
    assert!(!run.stderr().contains(SECRET), "{}", run.stderr());
    assert!(run.stderr().contains("backup copied"), "{}", run.stderr());

    // The file:// copy: same keys, same bytes (manifest and artifacts).
    let primary = tree(&ws.store_dir().join("site").join(&id));
    assert!(primary.iter().any(|(k, _)| k == "manifest.json"));
    assert!(primary.iter().any(|(k, _)| k == "etc.tar.zst"));
    assert_eq!(tree(&copy_dir.join("site").join(&id)), primary);

    // The S3 copy: the same keys under its prefix, the same bytes, and the
    // big artifact went up in parts.
    let mut keys = object_keys(&server, "ccb-copy");
    keys.retain(|k| !k.starts_with("copies/site-a/locks/"));
    let mut want: Vec<String> = primary
        .iter()
        .map(|(k, _)| format!("copies/site-a/site/{id}/{k}"))
        .collect();
    keys.sort();
    want.sort();
    assert_eq!(keys, want);
    let repo = s3_repo(&server, "ccb-copy");
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (k, sha) in &primary {
        let path = ccbackup::repo::store::artifact_path("site", &id, k);
        let bytes = rt
            .block_on(async { repo.store.get(&path).await?.bytes().await })
            .unwrap();
        use sha2::Digest;
        assert_eq!(&hex::encode(sha2::Sha256::digest(&bytes)), sha, "{k}");
    }
    let meta = rt
        .block_on(repo.store.head(&ccbackup::repo::store::artifact_path(
            "site",
            &id,
            "etc.tar.zst",
        )))
        .unwrap();
    let etag = meta.e_tag.unwrap_or_default();
    assert!(etag.trim_matches('"').ends_with("-2"), "etag {etag}");
    assert!(open_uploads(&server, "ccb-copy").is_empty());

    // Each copy store as the primary of its own configuration.
    for (name, store) in [
        (
            "file.yaml",
            format!("store:\n  url: {}\n", file_url(&copy_dir)),
        ),
        (
            "s3.yaml",
            s3_fields(&server, "ccb-copy", "store:\n  ", "  "),
        ),
    ] {
        let other = write(ws.path(), name, &format!("{store}{}", job_block(&src, "")));
        let list = ccbackup_env(&other, &["list"], &[]);
        list.expect_ok();
        assert!(list.stdout().contains(&id), "{name}: {}", list.stdout());
        ccbackup_env(&other, &["verify"], &[]).expect_ok();
        let to = ws.path().join(format!("restored-{name}"));
        ccbackup_env(
            &other,
            &["restore", "--source", "etc", "--to", to.to_str().unwrap()],
            &[],
        )
        .expect_ok();
        assert_eq!(tree(&to), tree(&src), "{name}");
    }
}

#[test]
fn retention_is_applied_in_every_store() {
    let server = start_moto(false);
    create_bucket(&server, "ccb-keep");
    let ws = Workspace::new();
    let src = source_dir(&ws);
    let copy_dir = ws.path().join("copy1");
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ncopies:\n  - url: {}\n{}{}",
        ws.store_url(),
        file_url(&copy_dir),
        s3_copy(&server, "ccb-keep"),
        job_block(&src, "    retention: {keep_last: 1}\n")
    ));
    let first = run_id(ccbackup_env(&cfg, &["run-now"], &[]).expect_ok());
    let second = run_id(ccbackup_env(&cfg, &["run-now"], &[]).expect_ok());
    assert_ne!(first, second);
    assert_eq!(manifest_ids(&ws.store_dir(), "site"), vec![second.clone()]);
    assert_eq!(manifest_ids(&copy_dir, "site"), vec![second.clone()]);
    assert!(!copy_dir.join("site").join(&first).exists());
    let s3_manifests: Vec<String> = object_keys(&server, "ccb-keep")
        .into_iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .collect();
    assert_eq!(
        s3_manifests,
        vec![format!("copies/site-a/site/{second}/manifest.json")]
    );
    assert!(object_keys(&server, "ccb-keep")
        .iter()
        .all(|k| !k.contains(&first)));
}

#[test]
fn a_failing_copy_is_reported_and_never_uncompletes_the_primary_backup() {
    let server = start_moto(false);
    let ws = Workspace::new();
    let src = source_dir(&ws);
    // A path under a regular file cannot be created, even by root.
    let blocker = ws.path().join("blocker");
    std::fs::write(&blocker, "not a directory").unwrap();
    let bad_file = blocker.join("copy");
    let good_dir = ws.path().join("good");
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ncopies:\n  - url: {}\n{}  - url: {}\n{}",
        ws.store_url(),
        file_url(&bad_file),
        // No such bucket on this moto.
        s3_copy(&server, "ccb-missing"),
        file_url(&good_dir),
        job_block(&src, "    retention: {keep_last: 1}\n")
    ));
    let mut ids = Vec::new();
    for _ in 0..2 {
        let run = ccbackup_env(&cfg, &["run-now"], &[]);
        assert_eq!(run.code(), Some(1), "{}", run.stderr());
        let id = run_id(&run);
        assert!(id.starts_with("20"), "the ID is printed: {}", run.stdout());
        let err = run.stderr();
        assert!(
            err.contains(&format!(
                "backup {id} is complete; copy to {} failed",
                file_url(&bad_file)
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "backup {id} is complete; copy to s3://ccb-missing/copies/site-a failed"
            )),
            "{err}"
        );
        assert!(err.contains("bucket does not exist"), "{err}");
        assert!(!err.contains(SECRET), "{err}");
        ids.push(id);
    }
    // The primary is complete and pruned; the working copy got both runs
    // and its own retention.
    assert_eq!(manifest_ids(&ws.store_dir(), "site"), vec![ids[1].clone()]);
    assert_eq!(manifest_ids(&good_dir, "site"), vec![ids[1].clone()]);
    ccbackup(&cfg, &["verify"]).expect_ok();
}

/// On paused time: the every-second runs take none.
#[tokio::test(start_paused = true)]
async fn the_daemon_counts_copy_failures_and_successes_in_metrics() {
    use std::time::Duration;
    let ws = Workspace::new();
    let src = ws.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "hello").unwrap();
    let blocker = ws.path().join("blocker");
    std::fs::write(&blocker, "x").unwrap();
    let bad = file_url(&blocker.join("copy"));
    let good = file_url(&ws.path().join("good"));
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ncopies:\n  - url: {bad}\n  - url: {good}\ndaemon: {{shutdown_grace: 5s}}\njobs:\n  - name: j\n    schedule: \"* * * * * *\"\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        src.display()
    ));
    let cfg = ccbackup::config::load(&cfg).unwrap();
    let stop = CancellationToken::new();
    let clock = ccbackup::clock::Clock::following_tokio(chrono::Utc::now());
    let metrics = Arc::new(ccbackup::daemon::metrics::Metrics::with_clock(
        clock.clone(),
    ));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opts = ccbackup::daemon::Options {
        listen: Some("127.0.0.1:0".to_owned()),
        bound: Some(tx),
        metrics: Some(metrics.clone()),
        clock,
        ..Default::default()
    };
    let task = tokio::spawn(ccbackup::daemon::run(cfg, opts, stop.clone()));
    let addr = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    wait_until_async("copy metrics", Duration::from_secs(30), || {
        let done = metrics.get("j").is_some_and(|s| {
            s.copies.get(&bad).is_some_and(|c| c.failures >= 2)
                && s.copies
                    .get(&good)
                    .is_some_and(|c| c.last_success.is_some())
        });
        if done {
            Ok(())
        } else {
            Err(format!("{:?}", metrics.get("j")))
        }
    })
    .await;
    let (_, body) = http_get_async(addr, "/metrics").await.unwrap();
    let failures = format!("ccbackup_copy_failures_total{{job=\"j\",store=\"{bad}\"}} ");
    let line = body
        .lines()
        .find(|l| l.starts_with(&failures))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        line[failures.len()..].parse::<f64>().unwrap() >= 2.0,
        "{line}"
    );
    assert!(
        body.contains(&format!(
            "ccbackup_copy_last_success_timestamp_seconds{{job=\"j\",store=\"{good}\"}} "
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "ccbackup_copy_failures_total{{job=\"j\",store=\"{good}\"}} 0"
        )),
        "{body}"
    );
    // Failed copies are not failed runs.
    let stats = metrics.get("j").unwrap();
    assert_eq!(
        stats.runs.get("failure").copied().unwrap_or(0),
        0,
        "{stats:?}"
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!ws.manifests().is_empty());
}

#[test]
fn copy_from_primary_backfills_an_empty_copy_store_and_then_does_nothing() {
    let ws = Workspace::new();
    let src = source_dir(&ws);
    let plain = ws.config(&format!(
        "store:\n  url: {}\n{}",
        ws.store_url(),
        job_block(&src, "")
    ));
    let a = run_id(ccbackup(&plain, &["run-now"]).expect_ok());
    let b = run_id(ccbackup(&plain, &["run-now"]).expect_ok());
    let copy_dir = ws.path().join("late");
    let with_copy = write(
        ws.path(),
        "copies.yaml",
        &format!(
            "store:\n  url: {}\ncopies:\n  - url: {}\n{}",
            ws.store_url(),
            file_url(&copy_dir),
            job_block(&src, "")
        ),
    );
    let first = ccbackup(&with_copy, &["copy", "--from-primary"]);
    first.expect_ok();
    assert!(
        first.stdout().contains("2 copied, 0 already there"),
        "{}",
        first.stdout()
    );
    // Two runs in one second get IDs in random order: compare as sets.
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    let mut got = manifest_ids(&copy_dir, "site");
    got.sort();
    assert_eq!(got, want);
    for id in [&a, &b] {
        assert_eq!(
            tree(&copy_dir.join("site").join(id)),
            tree(&ws.store_dir().join("site").join(id))
        );
    }
    let again = ccbackup(&with_copy, &["copy", "--from-primary", "--to", "0"]);
    again.expect_ok();
    assert!(
        again.stdout().contains("0 copied, 2 already there"),
        "{}",
        again.stdout()
    );

    // A half-copied backup (no manifest in the copy) is redone.
    std::fs::remove_file(copy_dir.join("site").join(&a).join("manifest.json")).unwrap();
    let redo = ccbackup(&with_copy, &["copy", "--from-primary", "--job", "site"]);
    redo.expect_ok();
    assert!(
        redo.stdout().contains("1 copied, 1 already there"),
        "{}",
        redo.stdout()
    );
    assert_eq!(
        tree(&copy_dir.join("site").join(&a)),
        tree(&ws.store_dir().join("site").join(&a))
    );
    let bad = ccbackup(&with_copy, &["copy", "--from-primary", "--to", "7"]);
    assert_eq!(bad.code(), Some(2), "{}", bad.stderr());
    assert!(
        bad.stderr().contains("names no copy store"),
        "{}",
        bad.stderr()
    );
}

#[test]
fn a_corrupted_source_artifact_is_detected_and_not_copied() {
    let ws = Workspace::new();
    let src = source_dir(&ws);
    let plain = ws.config(&format!(
        "store:\n  url: {}\n{}",
        ws.store_url(),
        job_block(&src, "")
    ));
    let id = run_id(ccbackup(&plain, &["run-now"]).expect_ok());
    let art = ws.store_dir().join("site").join(&id).join("etc.tar.zst");
    let mut bytes = std::fs::read(&art).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&art, &bytes).unwrap();

    let copy_dir = ws.path().join("copy");
    let with_copy = write(
        ws.path(),
        "copies.yaml",
        &format!(
            "store:\n  url: {}\ncopies:\n  - url: {}\n{}",
            ws.store_url(),
            file_url(&copy_dir),
            job_block(&src, "")
        ),
    );
    let run = ccbackup(&with_copy, &["copy", "--from-primary"]);
    assert_eq!(run.code(), Some(1), "{}", run.stdout());
    assert!(
        run.stderr().contains("does not match its manifest"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("etc.tar.zst"), "{}", run.stderr());
    // Nothing of it is left in the copy store: no manifest, no artifact,
    // no multipart staging file.
    assert!(manifest_ids(&copy_dir, "site").is_empty());
    assert_eq!(tree(&copy_dir.join("site")), vec![]);
}

#[test]
fn a_signed_backup_stays_signed_in_the_copy() {
    let keys = tempfile::tempdir().unwrap();
    let kdir = keys.path().join("k");
    let out = std::process::Command::new(bin())
        .args(["keys", "generate"])
        .arg(&kdir)
        .env("CCBACKUP_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(kdir.join("minisign.pub"))
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();

    let ws = Workspace::new();
    let src = source_dir(&ws);
    let copy_dir = ws.path().join("copy");
    let cfg = ws.config(&format!(
        "store:\n  url: {}\ncopies:\n  - url: {}\nsigning:\n  secret_key_file: {}\n{}",
        ws.store_url(),
        file_url(&copy_dir),
        kdir.join("minisign.key").display(),
        job_block(&src, "")
    ));
    let id = run_id(ccbackup(&cfg, &["run-now"]).expect_ok());
    let sig = |base: &Path| {
        std::fs::read(base.join("site").join(&id).join("manifest.json.minisig")).unwrap()
    };
    assert_eq!(sig(&copy_dir), sig(&ws.store_dir()));

    let reader = write(
        ws.path(),
        "reader.yaml",
        &format!(
            "store:\n  url: {}\nsigning:\n  public_key: \"{public}\"\n{}",
            file_url(&copy_dir),
            job_block(&src, "")
        ),
    );
    let list = ccbackup(&reader, &["list", "--json"]);
    list.expect_ok();
    let v: serde_json::Value = serde_json::from_str(&list.stdout()).unwrap();
    assert_eq!(v[0]["backup_id"], id.as_str(), "{v}");
    assert_eq!(v[0]["status"], "complete", "{v}");
    ccbackup(&reader, &["verify"]).expect_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_copy_leaves_nothing_and_a_rerun_completes_it() {
    let ws = Workspace::new();
    let src = source_dir(&ws);
    let plain = ws.config(&format!(
        "store:\n  url: {}\n{}",
        ws.store_url(),
        job_block(&src, "")
    ));
    let id = run_id(ccbackup(&plain, &["run-now"]).expect_ok());
    let primary = file_repo(&ws.store_dir());
    let copy_dir = ws.path().join("copy");
    let mut dst = file_repo(&copy_dir);
    let cancel = CancellationToken::new();
    // Fires `cancel` once the first multipart upload has started, so the
    // copy is interrupted in the middle of its first artifact.
    let fire = cancel.clone();
    dst.store = Arc::new(FaultyStore::passing(dst.store.clone()).after(move |op, _| {
        if op == Op::PutMultipart {
            fire.cancel();
        }
    }));
    let err = ccbackup::backup::copy::copy_backup(&primary, &dst, "site", &id, &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ccbackup::backup::copy::CopyError::Interrupted { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("was stopped"), "{err}");
    assert_eq!(tree(&copy_dir), vec![], "nothing is left behind");

    let dst = file_repo(&copy_dir);
    let done =
        ccbackup::backup::copy::copy_backup(&primary, &dst, "site", &id, &CancellationToken::new())
            .await
            .unwrap();
    assert!(
        matches!(done, ccbackup::backup::copy::Copied::Copied { .. }),
        "{done:?}"
    );
    assert_eq!(
        tree(&copy_dir.join("site").join(&id)),
        tree(&ws.store_dir().join("site").join(&id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_of_the_copy_store_are_retried() {
    let ws = Workspace::new();
    let src = source_dir(&ws);
    let plain = ws.config(&format!(
        "store:\n  url: {}\n{}",
        ws.store_url(),
        job_block(&src, "")
    ));
    let id = run_id(ccbackup(&plain, &["run-now"]).expect_ok());
    let primary = file_repo(&ws.store_dir());
    let copy_dir = ws.path().join("copy");
    let mut dst = file_repo(&copy_dir);
    let flaky = FaultyStore::failing_first(dst.store.clone(), 3);
    dst.store = flaky.clone();
    let done =
        ccbackup::backup::copy::copy_backup(&primary, &dst, "site", &id, &CancellationToken::new())
            .await
            .unwrap();
    assert!(
        matches!(done, ccbackup::backup::copy::Copied::Copied { .. }),
        "{done:?}"
    );
    assert!(flaky.calls.load(std::sync::atomic::Ordering::SeqCst) > 3);
    assert_eq!(
        tree(&copy_dir.join("site").join(&id)),
        tree(&ws.store_dir().join("site").join(&id))
    );
}

#[test]
fn sigint_stops_a_backfill_between_objects_and_a_rerun_finishes_it() {
    use std::time::Duration;
    let server = start_moto(false);
    create_bucket(&server, "ccb-intr");
    let ws = Workspace::new();
    let src = source_dir(&ws);
    let plain = ws.config(&format!(
        "store:\n  url: {}\n{}",
        ws.store_url(),
        job_block(&src, "")
    ));
    let mut ids = Vec::new();
    for _ in 0..4 {
        random_file(&src.join("big.bin"), 8 * 1024 * 1024);
        ids.push(run_id(ccbackup(&plain, &["run-now"]).expect_ok()));
    }
    let with_copy = write(
        ws.path(),
        "copies.yaml",
        &format!(
            "store:\n  url: {}\ncopies:\n{}{}",
            ws.store_url(),
            s3_copy(&server, "ccb-intr"),
            job_block(&src, "")
        ),
    );
    let manifests = || -> Vec<String> {
        object_keys(&server, "ccb-intr")
            .into_iter()
            .filter(|k| k.ends_with("/manifest.json"))
            .collect()
    };
    let child = ccbackup_cmd(&with_copy, &["copy", "--from-primary"], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signal once the first backup is in the copy store: the next one is
    // on its way.
    wait_until("the first copy to finish", Duration::from_secs(60), || {
        !manifests().is_empty()
    });
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");

    // Every object left belongs to a backup whose manifest is there; no
    // upload is open; the copy store's lease is released.
    let done = manifests();
    assert!(
        done.len() < ids.len() || stderr.contains("already finished"),
        "{stderr}"
    );
    for k in object_keys(&server, "ccb-intr") {
        assert!(!k.contains("/locks/"), "lease left: {k}");
        let dir = k.rsplit_once('/').unwrap().0;
        assert!(
            done.iter().any(|m| m.starts_with(&format!("{dir}/"))),
            "{k} has no manifest beside it ({done:?})"
        );
    }
    assert!(open_uploads(&server, "ccb-intr").is_empty());

    let rerun = ccbackup_env(&with_copy, &["copy", "--from-primary"], &[]);
    rerun.expect_ok();
    assert_eq!(manifests().len(), ids.len(), "{}", rerun.stdout());
}
