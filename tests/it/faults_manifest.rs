//! Issue 24 item 1: a manifest put whose outcome is unknown (the client
//! timed out with the request sent) against moto behind a proxy that holds
//! the put and forwards it later, as a slow store or a stuck load balancer
//! does. The artifacts of such a backup are never deleted: either the
//! read-back finds the manifest (the run succeeded) or the run fails saying
//! the outcome is unknown, and the manifest that lands later names
//! artifacts that are all there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support_proxy::{Release, StallProxy};
use crate::support_s3::*;

fn manifest_put(line: &str) -> bool {
    line.starts_with("PUT ") && line.contains("/manifest.json ")
}

/// A config whose store is reached through the proxy, with a 2 s client
/// timeout (the option object_store reads) so nothing waits 30 s.
fn config(dir: &Path, proxy: &StallProxy, bucket: &str, data: &Path) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!(
            "store:\n  url: s3://{bucket}/backups\n  options:\n    endpoint: {}\n    allow_http: true\n    region: eu-west-2\n    access_key_id: AKIATESTING\n    secret_access_key: notasecret\n    timeout: 2s\njobs:\n  - name: site\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
            proxy.endpoint(),
            data.display()
        ),
    )
    .unwrap();
    p
}

fn data_dir() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("credentials.yml.enc"), "x".repeat(5000)).unwrap();
    data
}

fn keys_of(server: &Server, bucket: &str, suffix: &str) -> Vec<String> {
    object_keys(server, bucket)
        .into_iter()
        .filter(|k| k.ends_with(suffix))
        .collect()
}

#[test]
fn issue24_manifest_put_applied_after_the_client_timed_out_counts_as_written() {
    let server = start_moto(false);
    create_bucket(&server, "ccb-late");
    let proxy = StallProxy::start(
        server.port,
        manifest_put,
        Release::After(Duration::from_secs(3)),
    );
    let data = data_dir();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &proxy, "ccb-late", data.path());

    let run = ccbackup_env(&cfg, &["run-now"], &[]);
    assert_eq!(proxy.held(), 1, "the manifest put was not held");
    proxy.wait_landed(1, Duration::from_secs(30));
    run.expect_ok();
    let id = run.stdout().trim().to_owned();
    assert!(
        run.stderr().contains("did not confirm the manifest write"),
        "{}",
        run.stderr()
    );
    // The manifest and the artifact it names are both there.
    assert_eq!(
        keys_of(&server, "ccb-late", "manifest.json"),
        vec![format!("backups/site/{id}/manifest.json")]
    );
    assert_eq!(
        keys_of(&server, "ccb-late", "etc.tar.zst"),
        vec![format!("backups/site/{id}/etc.tar.zst")]
    );
    ccbackup_env(&cfg, &["verify"], &[]).expect_ok();
}

#[test]
fn issue24_manifest_put_still_unknown_keeps_the_artifacts_and_says_so() {
    let server = start_moto(false);
    create_bucket(&server, "ccb-unknown");
    let proxy = StallProxy::start(server.port, manifest_put, Release::Manual);
    let data = data_dir();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &proxy, "ccb-unknown", data.path());

    let run = ccbackup_env(&cfg, &["run-now"], &[]);
    assert!(!run.ok(), "the run must fail:\n{}", run.stderr());
    assert_eq!(proxy.held(), 1);
    let err = run.stderr();
    let last = err.lines().rev().find(|l| l.starts_with("error:")).unwrap();
    assert!(
        last.contains("did not confirm that the manifest") && last.contains("left in place"),
        "{last}"
    );
    // It connected and nothing was retried: it must not say otherwise.
    assert!(!err.contains("cannot connect"), "{err}");
    assert!(!err.contains("after retries"), "{err}");
    assert!(last.contains("did not answer in time"), "{last}");
    // No manifest yet, and the artifact was not deleted.
    assert!(keys_of(&server, "ccb-unknown", "manifest.json").is_empty());
    let artifacts = keys_of(&server, "ccb-unknown", "etc.tar.zst");
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");

    // The store applies the put after all: the backup it makes is whole.
    proxy.release();
    proxy.wait_landed(1, Duration::from_secs(30));
    assert_eq!(keys_of(&server, "ccb-unknown", "manifest.json").len(), 1);
    let verify = ccbackup_env(&cfg, &["verify"], &[]);
    verify.expect_ok();
}

/// The same for a copy store (3-2-1): a copy whose manifest put never got
/// an answer keeps the copied artifacts, so the manifest that lands later
/// describes a whole backup in the copy store.
#[test]
fn issue24_copy_manifest_put_unknown_keeps_the_copied_artifacts() {
    let server = start_moto(false);
    create_bucket(&server, "ccb-copy");
    let proxy = StallProxy::start(server.port, manifest_put, Release::Manual);
    let data = data_dir();
    let dir = tempfile::tempdir().unwrap();
    let primary = dir.path().join("primary");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "store:\n  url: file://{}\ncopies:\n  - url: s3://ccb-copy/backups\n    options:\n      endpoint: {}\n      allow_http: true\n      region: eu-west-2\n      access_key_id: AKIATESTING\n      secret_access_key: notasecret\n      timeout: 2s\njobs:\n  - name: site\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
            primary.display(),
            proxy.endpoint(),
            data.path().display()
        ),
    )
    .unwrap();

    // The primary backup is complete; its copy's manifest put is held.
    let run = ccbackup_env(&cfg, &["run-now"], &[]);
    assert!(proxy.held() >= 1, "{}", run.stderr());
    let id = std::fs::read_dir(primary.join("site"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .unwrap();
    assert!(keys_of(&server, "ccb-copy", "manifest.json").is_empty());
    assert_eq!(
        keys_of(&server, "ccb-copy", "etc.tar.zst"),
        vec![format!("backups/site/{id}/etc.tar.zst")],
        "the copied artifact was removed:\n{}",
        run.stderr()
    );

    proxy.release();
    proxy.wait_landed(1, Duration::from_secs(30));
    assert_eq!(keys_of(&server, "ccb-copy", "manifest.json").len(), 1);
    assert_eq!(keys_of(&server, "ccb-copy", "etc.tar.zst").len(), 1);
}
