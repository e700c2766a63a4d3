//! `--as-of TIME` on `list`, `verify` and `restore`, against a versioned
//! (Object Lock) moto bucket: after an attacker with the sidecar's
//! credentials and signing key deleted and rewrote everything, the store
//! as it was before gives the real backups back.

use std::path::{Path, PathBuf};

use crate::support::*;
use crate::support_attacker::*;
use crate::support_s3::*;

/// A directory source with a few files, one of them binary.
fn data_dir(root: &Path) -> PathBuf {
    let d = root.join("data");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a.txt"), "first file\n").unwrap();
    std::fs::write(d.join("sub").join("b.bin"), (0u8..=255).collect::<Vec<_>>()).unwrap();
    d
}

/// Config for a signed files job on `s3://bucket/site`.
fn config(ws: &Workspace, server: &Server, bucket: &str, data: &Path, keys: &Path) -> PathBuf {
    ws.config(&format!(
        "{}signing:\n  secret_key_file: {}\njobs:\n  - name: site\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        store_yaml(server, bucket, "site"),
        keys.join("minisign.key").display(),
        data.display()
    ))
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn as_of_lists_verifies_and_restores_what_an_attacker_deleted_and_rewrote() {
    let server = start_moto(false);
    lock_bucket(&server, "ccb-past");
    let ws = Workspace::new();
    let keys = ws.path().join("keys");
    keys_generate(&keys);
    let data = data_dir(ws.path());
    let cfg = config(&ws, &server, "ccb-past", &data, &keys);
    let first = ccbackup_env(&cfg, &["run-now"], &[]);
    first.expect_ok();
    let first = first.stdout().trim().to_owned();
    // One backup a second, so that `list` orders them by time, not by
    // their random ID suffix.
    boundary();
    let second = ccbackup_env(&cfg, &["run-now"], &[]);
    second.expect_ok();
    let second = second.stdout().trim().to_owned();
    let original = files_of(&data);
    let before = boundary();

    // The attack: a signed rewrite of the newest backup, then every object
    // deleted, then a fresh signed forgery.
    let attacker = attacker_repo(&server, "ccb-past", "site");
    let key = keys.join("minisign.key");
    rewrite_backup(&attacker, &key, "site", &second);
    let copy = capture(&attacker, "site", &first);
    delete_everything(&attacker);
    let forged = forge_backup(&attacker, &key, &copy, chrono::Utc::now());
    std::fs::remove_dir_all(&data).unwrap();

    // Now: only the forgery.
    let now = ccbackup_env(&cfg, &["list", "--json"], &[]);
    now.expect_ok();
    assert_eq!(listed(&now.stdout(), "complete"), vec![forged.clone()]);

    // As it was: both real backups, signed, and not the forgery.
    let at = rfc3339(before);
    let past = ccbackup_env(&cfg, &["list", "--json", "--as-of", &at], &[]);
    past.expect_ok();
    assert_eq!(
        listed(&past.stdout(), "complete"),
        vec![first.clone(), second.clone()],
        "{}",
        past.stdout()
    );
    let text = ccbackup_env(&cfg, &["list", "--as-of", &at], &[]);
    text.expect_ok();
    assert!(text.stdout().contains(&second) && !text.stdout().contains(&forged));

    let verify = ccbackup_env(&cfg, &["verify", "--backup", "all", "--as-of", &at], &[]);
    verify.expect_ok();

    // The newest backup as it was, byte for byte, though it was rewritten
    // and then deleted.
    let to = ws.path().join("restored");
    let restore = ccbackup_env(
        &cfg,
        &["restore", "--as-of", &at, "--to", to.to_str().unwrap()],
        &[],
    );
    restore.expect_ok();
    assert!(
        restore.stdout().contains(&second),
        "restored the wrong backup:\n{}",
        restore.stdout()
    );
    assert_eq!(files_of(&to), original);

    // Reading the past writes nothing: the attacker's state is untouched.
    let after = ccbackup_env(&cfg, &["list", "--json"], &[]);
    assert_eq!(listed(&after.stdout(), "complete"), vec![forged]);
}

#[test]
fn as_of_needs_a_store_that_keeps_versions() {
    let server = start_moto(false);
    create_bucket(&server, "ccb-plain");
    let ws = Workspace::new();
    let data = data_dir(ws.path());
    let unversioned = ws.config(&format!(
        "{}jobs:\n  - name: site\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        store_yaml(&server, "ccb-plain", "site"),
        data.display()
    ));
    let run = ccbackup_env(
        &unversioned,
        &["list", "--as-of", "2026-01-01T00:00:00Z"],
        &[],
    );
    assert!(!run.ok());
    assert!(
        run.stderr().contains("keeps no object versions") && run.stderr().contains("versioning"),
        "{}",
        run.stderr()
    );

    let local = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: site\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.display()
    ));
    for args in [
        vec!["list", "--as-of", "2026-01-01T00:00:00Z"],
        vec!["verify", "--as-of", "2026-01-01T00:00:00Z"],
        vec!["restore", "--as-of", "2026-01-01T00:00:00Z", "--dry-run"],
    ] {
        let run = ccbackup(&local, &args);
        assert!(!run.ok(), "{args:?}");
        assert!(
            run.stderr()
                .contains("--as-of needs an S3 store with bucket versioning"),
            "{args:?}: {}",
            run.stderr()
        );
    }
    let bad = ccbackup(&local, &["list", "--as-of", "last tuesday"]);
    assert_eq!(bad.code(), Some(2));
    assert!(bad.stderr().contains("RFC 3339"), "{}", bad.stderr());
}

/// `ListObjectVersions` read page by page, across versions and delete
/// markers, gives the same history as one page.
#[test]
fn version_listing_crosses_page_boundaries() {
    use ccbackup::repo::s3_versions::list_versions_paged;
    use object_store::{ObjectStoreExt, PutPayload};
    let server = start_moto(false);
    lock_bucket(&server, "ccb-pages");
    let repo = attacker_repo(&server, "ccb-pages", "site");
    block_on(async {
        for i in 0..7 {
            let key = object_store::path::Path::from(format!("j/k{i}"));
            for v in 0..2 {
                repo.store
                    .put(&key, PutPayload::from(format!("{i}.{v}").into_bytes()))
                    .await
                    .unwrap();
            }
            if i % 2 == 0 {
                repo.store.delete(&key).await.unwrap();
            }
        }
    });
    // Outside the store's prefix: never listed.
    let other = attacker_repo(&server, "ccb-pages", "site-b");
    block_on(async {
        other
            .store
            .put(
                &object_store::path::Path::from("j/x"),
                PutPayload::from_static(b"x"),
            )
            .await
            .unwrap();
    });
    let s3 = repo.s3.clone().unwrap();
    // moto lists one page's versions before its delete markers; pages
    // follow the keys. The history is the same set either way.
    let sorted = |mut v: Vec<ccbackup::repo::s3_versions::ObjectVersion>| {
        v.sort_by(|a, b| (&a.key, &a.version_id).cmp(&(&b.key, &b.version_id)));
        v
    };
    let whole = sorted(block_on(list_versions_paged(&s3, "site/", None)).unwrap());
    assert_eq!(whole.len(), 7 * 2 + 4, "{whole:?}");
    assert_eq!(whole.iter().filter(|v| v.delete_marker).count(), 4);
    for page in [1, 2, 3] {
        let paged = sorted(block_on(list_versions_paged(&s3, "site/", Some(page))).unwrap());
        assert_eq!(paged, whole, "page size {page}");
    }
}
