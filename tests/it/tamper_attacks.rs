//! Attacks on issue 18's promise by someone holding the sidecar's store
//! credentials and signing key, against moto: each is either seen by the
//! tamper check and undone with `--as-of`, or shown to be harmless.

use object_store::{ObjectStoreExt, PutPayload};

use crate::support::*;
use crate::support_attacker::*;
use crate::support_s3::*;

fn rows(stdout: &str) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Two signed backups of a job keeping both; returns config and IDs.
fn two_backups(ws: &Workspace, server: &Server, bucket: &str) -> (std::path::PathBuf, Vec<String>) {
    lock_bucket(server, bucket);
    let keys = ws.path().join("keys");
    keys_generate(&keys);
    let data = ws.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f.txt"), "the real bytes\n").unwrap();
    let cfg = ws.config(&format!(
        "{}signing:\n  secret_key_file: {}\njobs:\n  - name: site\n    retention: {{keep_last: 5}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        store_yaml(server, bucket, "site"),
        keys.join("minisign.key").display(),
        data.display()
    ));
    let mut ids = Vec::new();
    for _ in 0..2 {
        boundary();
        let run = ccbackup_env(&cfg, &["run-now"], &[]);
        run.expect_ok();
        ids.push(run.stdout().trim().to_owned());
    }
    boundary();
    (cfg, ids)
}

/// The keys of backup `id` other than its manifest and signature.
fn artifacts(repo: &ccbackup::repo::store::Repo, id: &str) -> Vec<object_store::path::Path> {
    keys(repo)
        .into_iter()
        .filter(|k| {
            let s = k.as_ref();
            s.contains(&format!("/{id}/"))
                && !s.ends_with(ccbackup::repo::store::MANIFEST_NAME)
                && !s.ends_with(ccbackup::repo::store::SIGNATURE_NAME)
        })
        .collect()
}

#[test]
fn attack_an_artifact_replaced_under_an_untouched_manifest_is_seen_and_undone() {
    let server = start_moto(false);
    let ws = Workspace::new();
    let (cfg, ids) = two_backups(&ws, &server, "ccb-art");
    let attacker = attacker_repo(&server, "ccb-art", "site");
    let arts = artifacts(&attacker, &ids[1]);
    assert!(!arts.is_empty());
    block_on(async {
        for a in &arts {
            attacker
                .store
                .put(a, PutPayload::from_static(b"ransom note"))
                .await
                .unwrap();
        }
    });
    // A restore from the store as it is now refuses the replaced bytes.
    let out = ws.path().join("out");
    let bad = ccbackup_env(
        &cfg,
        &[
            "restore",
            "--backup",
            &ids[1],
            "--to",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_ne!(bad.code(), Some(0), "{}", bad.stdout());
    // The tamper check names it, and the time it gives restores it.
    let list = ccbackup_env(&cfg, &["list", "--json"], &[]);
    list.expect_ok();
    let r = rows(&list.stdout());
    let row = r
        .iter()
        .find(|e| e["backup_id"] == ids[1].as_str())
        .unwrap();
    assert_eq!(row["tampered"], "rewritten", "{r:?}");
    let as_of = row["recover_as_of"].as_str().unwrap().to_owned();
    assert!(
        list.stderr().contains("TAMPERING: 1 backup"),
        "{}",
        list.stderr()
    );
    ccbackup_env(
        &cfg,
        &["verify", "--backup", &ids[1], "--as-of", &as_of],
        &[],
    )
    .expect_ok();
}

#[test]
fn attack_deleting_only_the_signature_is_seen_and_undone() {
    let server = start_moto(false);
    let ws = Workspace::new();
    let (cfg, ids) = two_backups(&ws, &server, "ccb-sig");
    let attacker = attacker_repo(&server, "ccb-sig", "site");
    block_on(async {
        attacker
            .store
            .delete(&ccbackup::repo::store::signature_path("site", &ids[0]))
            .await
            .unwrap();
    });
    let list = ccbackup_env(&cfg, &["list", "--json"], &[]);
    list.expect_ok();
    let r = rows(&list.stdout());
    let row = r
        .iter()
        .find(|e| e["backup_id"] == ids[0].as_str())
        .unwrap();
    assert_eq!(row["tampered"], "deleted", "{r:?}");
    let as_of = row["recover_as_of"].as_str().unwrap().to_owned();
    ccbackup_env(
        &cfg,
        &["verify", "--backup", &ids[0], "--as-of", &as_of],
        &[],
    )
    .expect_ok();
}

#[test]
fn attack_as_of_times_and_keys_with_xml_metacharacters() {
    let server = start_moto(false);
    let ws = Workspace::new();
    let (cfg, ids) = two_backups(&ws, &server, "ccb-xml");
    let attacker = attacker_repo(&server, "ccb-xml", "site");
    // Keys the version listing returns XML-escaped, and many versions.
    block_on(async {
        for name in [
            "site/a&b<c>\"'.txt",
            "site/</Key><Key>site/x",
            "site/]]><!--",
        ] {
            let k = object_store::path::Path::from(name);
            for _ in 0..3 {
                attacker
                    .store
                    .put(&k, PutPayload::from_static(b"noise"))
                    .await
                    .unwrap();
            }
        }
    });
    let list = ccbackup_env(&cfg, &["list", "--json"], &[]);
    list.expect_ok();
    assert_eq!(listed(&list.stdout(), "complete"), ids, "{}", list.stdout());
    assert!(!list.stderr().contains("TAMPERING"), "{}", list.stderr());
    let now = rfc3339(chrono::Utc::now());
    let past = ccbackup_env(&cfg, &["list", "--json", "--as-of", &now], &[]);
    past.expect_ok();
    assert_eq!(listed(&past.stdout(), "complete"), ids);

    // Before any backup: nothing, said plainly, not an error.
    let before = ccbackup_env(
        &cfg,
        &["list", "--json", "--as-of", "2000-01-01T00:00:00Z"],
        &[],
    );
    before.expect_ok();
    assert_eq!(rows(&before.stdout()).len(), 0);

    // In the future: the present with the tamper check skipped would look
    // like a view of the past; refused instead.
    let future = rfc3339(chrono::Utc::now() + chrono::Duration::days(400));
    let run = ccbackup_env(&cfg, &["list", "--as-of", &future], &[]);
    assert_eq!(run.code(), Some(2), "{}\n{}", run.stdout(), run.stderr());
    assert!(run.stderr().contains("future"), "{}", run.stderr());
}

#[test]
fn attack_delete_markers_on_artifacts_only_are_seen_and_undone() {
    let server = start_moto(false);
    let ws = Workspace::new();
    let (cfg, ids) = two_backups(&ws, &server, "ccb-arts");
    let attacker = attacker_repo(&server, "ccb-arts", "site");
    let arts = artifacts(&attacker, &ids[1]);
    assert!(!arts.is_empty());
    block_on(async {
        for a in arts {
            attacker.store.delete(&a).await.unwrap();
        }
    });
    let out = ws.path().join("out");
    let bad = ccbackup_env(
        &cfg,
        &[
            "restore",
            "--backup",
            &ids[1],
            "--to",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_ne!(bad.code(), Some(0), "{}", bad.stdout());
    let list = ccbackup_env(&cfg, &["list", "--json"], &[]);
    list.expect_ok();
    let r = rows(&list.stdout());
    let row = r
        .iter()
        .find(|e| e["backup_id"] == ids[1].as_str())
        .unwrap();
    assert_eq!(row["tampered"], "deleted", "{r:?}");
    let as_of = row["recover_as_of"].as_str().unwrap().to_owned();
    ccbackup_env(
        &cfg,
        &["verify", "--backup", &ids[1], "--as-of", &as_of],
        &[],
    )
    .expect_ok();
}
