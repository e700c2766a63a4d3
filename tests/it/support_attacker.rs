//! An attacker holding everything the sidecar holds (store credentials and
//! the minisign secret key), against a versioned moto bucket: deletes
//! every object with plain DELETEs and writes validly signed forgeries.
//! Used by the `--as-of`, tamper, key-window and ransomware-runbook tests.

#![allow(dead_code)]

use std::path::Path;

use ccbackup::repo::store::{Repo, StoreSpec};
use ccbackup::secret::Secret;
use chrono::{DateTime, SubsecRound, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::support_s3::{http, Server};

pub const ACCESS_KEY: &str = "AKIASIDECAR";
pub const SECRET_KEY: &str = "sidecar-secret-9d8c7b";

/// A bucket created with Object Lock enabled (moto switches versioning on
/// with it), as the README's one-time setup makes it.
pub fn lock_bucket(server: &Server, bucket: &str) {
    let (status, body) = http(
        server.port,
        "PUT",
        &format!("/{bucket}"),
        &[("x-amz-bucket-object-lock-enabled", "true".to_owned())],
    );
    assert_eq!(status, 200, "create lock bucket {bucket}: {body}");
}

/// The `store:` block of a configuration for `s3://bucket/prefix` on moto.
pub fn store_yaml(server: &Server, bucket: &str, prefix: &str) -> String {
    format!(
        "store:\n  url: s3://{bucket}/{prefix}\n  options:\n    endpoint: {}\n    allow_http: true\n    region: eu-west-2\n    access_key_id: {ACCESS_KEY}\n    secret_access_key: {SECRET_KEY}\n",
        server.endpoint()
    )
}

/// The store as the attacker reaches it: same URL, same credentials.
pub fn attacker_repo(server: &Server, bucket: &str, prefix: &str) -> Repo {
    let opt = |k: &str, v: &str| (k.to_owned(), Secret::new(v));
    ccbackup::repo::store::open(&StoreSpec {
        url: url::Url::parse(&format!("s3://{bucket}/{prefix}")).unwrap(),
        options: vec![
            opt("endpoint", &server.endpoint()),
            opt("allow_http", "true"),
            opt("region", "eu-west-2"),
            opt("access_key_id", ACCESS_KEY),
            opt("secret_access_key", SECRET_KEY),
        ],
        part_size: 5 * 1024 * 1024,
        concurrency: 2,
        max_clock_skew: ccbackup::repo::store::DEFAULT_MAX_CLOCK_SKEW,
        object_lock: None,
    })
    .expect("open s3 store")
}

/// A time after everything written so far and before anything written
/// next, as the store records it. moto keeps `LastModified` to the whole
/// second, so this waits (on the wall clock, which is what the store reads)
/// until the next second has begun: what happens afterwards is dated later.
pub fn boundary() -> DateTime<Utc> {
    let now = Utc::now();
    let next = now.trunc_subsecs(0) + chrono::Duration::seconds(1);
    while Utc::now() < next {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    now
}

/// RFC 3339 with milliseconds, as `--as-of` takes it.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Every key the store lists now.
pub fn keys(repo: &Repo) -> Vec<ObjPath> {
    block_on(async {
        repo.store
            .list(None)
            .map_ok(|m| m.location)
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
    })
}

/// Plain DELETE of every object: what a compromised sidecar can do.
pub fn delete_everything(repo: &Repo) {
    let all = keys(repo);
    assert!(!all.is_empty(), "nothing to delete");
    block_on(async {
        for k in all {
            repo.store.delete(&k).await.unwrap();
        }
    });
}

fn sign(secret_key: &Path, data: &[u8]) -> String {
    let signer = ccbackup::repo::signing::Signer::load(secret_key).unwrap();
    signer.sign(data, "forged").unwrap()
}

/// Overwrites `job/id`'s manifest with a signed forgery whose artifacts
/// claim other content (and overwrites the first artifact to match), so
/// the backup now restores the attacker's bytes.
pub fn rewrite_backup(repo: &Repo, secret_key: &Path, job: &str, id: &str) {
    block_on(async {
        let mkey = ccbackup::repo::store::manifest_path(job, id);
        let bytes = repo.store.get(&mkey).await.unwrap().bytes().await.unwrap();
        let mut m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let junk = b"attacker's bytes".to_vec();
        let art = &mut m["artifacts"][0];
        let rel = art["key"].as_str().unwrap().to_owned();
        art["stored_bytes"] = junk.len().into();
        art["sha256"] = ccbackup_sha256(&junk).into();
        m["host"] = "attacker".into();
        let forged = serde_json::to_vec_pretty(&m).unwrap();
        let sig = sign(secret_key, &forged);
        repo.store
            .put(
                &ccbackup::repo::store::artifact_path(job, id, &rel),
                PutPayload::from(junk),
            )
            .await
            .unwrap();
        repo.store
            .put(
                &ccbackup::repo::store::signature_path(job, id),
                PutPayload::from(sig.into_bytes()),
            )
            .await
            .unwrap();
        repo.store
            .put(&mkey, PutPayload::from(forged))
            .await
            .unwrap();
    });
}

/// What the attacker copied of a real backup before deleting it: its
/// manifest and artifacts.
pub struct Captured {
    job: String,
    manifest: serde_json::Value,
    artifacts: Vec<(String, bytes::Bytes)>,
}

pub fn capture(repo: &Repo, job: &str, id: &str) -> Captured {
    block_on(async {
        let mkey = ccbackup::repo::store::manifest_path(job, id);
        let bytes = repo.store.get(&mkey).await.unwrap().bytes().await.unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let mut artifacts = Vec::new();
        for a in manifest["artifacts"].as_array().unwrap() {
            let rel = a["key"].as_str().unwrap().to_owned();
            let data = repo
                .store
                .get(&ccbackup::repo::store::artifact_path(job, id, &rel))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            artifacts.push((rel, data));
        }
        Captured {
            job: job.to_owned(),
            manifest,
            artifacts,
        }
    })
}

/// Writes a new, complete, validly signed backup dated `at` from a
/// captured one, under a manifest that claims the new ID. Returns the ID.
pub fn forge_backup(repo: &Repo, secret_key: &Path, from: &Captured, at: DateTime<Utc>) -> String {
    let new_id = ccbackup::repo::store::new_backup_id(at);
    let job = from.job.as_str();
    block_on(async {
        let mut m = from.manifest.clone();
        let stamp = at
            .trunc_subsecs(0)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        m["id"] = new_id.clone().into();
        m["started_at"] = stamp.clone().into();
        m["finished_at"] = stamp.into();
        for (rel, data) in &from.artifacts {
            repo.store
                .put(
                    &ccbackup::repo::store::artifact_path(job, &new_id, rel),
                    PutPayload::from(data.clone()),
                )
                .await
                .unwrap();
        }
        let forged = serde_json::to_vec_pretty(&m).unwrap();
        let sig = sign(secret_key, &forged);
        repo.store
            .put(
                &ccbackup::repo::store::signature_path(job, &new_id),
                PutPayload::from(sig.into_bytes()),
            )
            .await
            .unwrap();
        repo.store
            .put(
                &ccbackup::repo::store::manifest_path(job, &new_id),
                PutPayload::from(forged),
            )
            .await
            .unwrap();
    });
    new_id
}

fn ccbackup_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Backup IDs `list --json` reports with `status`.
pub fn listed(stdout: &str, status: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(stdout).unwrap_or_else(|e| {
        panic!("list --json is not JSON ({e}):\n{stdout}");
    });
    v.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == status)
        .map(|e| e["backup_id"].as_str().unwrap().to_owned())
        .collect()
}
