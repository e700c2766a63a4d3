//! Tamper evidence from a versioned bucket's history: retention's own
//! deletes are not tampering; an attacker's delete of a backup the policy
//! keeps, or a rewritten manifest, is, and `list` says how to get it back.

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

#[test]
fn list_tells_retention_deletes_from_tampering_and_names_the_as_of_time() {
    let server = start_moto(false);
    lock_bucket(&server, "ccb-tamper");
    let ws = Workspace::new();
    let keys = ws.path().join("keys");
    keys_generate(&keys);
    let data = ws.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f.txt"), "x\n").unwrap();
    let cfg = ws.config(&format!(
        "{}signing:\n  secret_key_file: {}\njobs:\n  - name: site\n    retention: {{keep_last: 2}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        store_yaml(&server, "ccb-tamper", "site"),
        keys.join("minisign.key").display(),
        data.display()
    ));
    let mut ids = Vec::new();
    for _ in 0..3 {
        // Backup IDs carry whole seconds, which is what the history is
        // judged by: one backup a second, as schedules make them.
        boundary();
        let run = ccbackup_env(&cfg, &["run-now"], &[]);
        run.expect_ok();
        ids.push(run.stdout().trim().to_owned());
    }
    // Retention removed the oldest (delete markers): that is not tampering.
    let clean = ccbackup_env(&cfg, &["list", "--json"], &[]);
    clean.expect_ok();
    let r = rows(&clean.stdout());
    assert_eq!(listed(&clean.stdout(), "complete"), ids[1..].to_vec());
    assert!(r.iter().all(|e| e["tampered"].is_null()), "{r:?}");
    assert!(!clean.stderr().contains("TAMPERING"), "{}", clean.stderr());
    crate::schemas::assert_valid("list.json", &serde_json::Value::Array(r));

    let before = boundary();
    let attacker = attacker_repo(&server, "ccb-tamper", "site");
    rewrite_backup(&attacker, &keys.join("minisign.key"), "site", &ids[1]);
    delete_manifest(&attacker, &ids[2]);

    let run = ccbackup_env(&cfg, &["list", "--json"], &[]);
    run.expect_ok();
    let r = rows(&run.stdout());
    crate::schemas::assert_valid("list.json", &serde_json::Value::Array(r.clone()));
    let row = |id: &str| r.iter().find(|e| e["backup_id"] == id).cloned();
    assert!(row(&ids[0]).is_none(), "retention's delete is shown: {r:?}");
    let rewritten = row(&ids[1]).unwrap();
    assert_eq!(rewritten["tampered"], "rewritten", "{r:?}");
    let deleted = row(&ids[2]).unwrap();
    assert_eq!(deleted["status"], "deleted", "{r:?}");
    assert_eq!(deleted["tampered"], "deleted");
    let recover = deleted["recover_as_of"].as_str().unwrap().to_owned();
    let recover_t = chrono::DateTime::parse_from_rfc3339(&recover).unwrap();
    assert!(
        recover_t >= before - chrono::Duration::seconds(1),
        "{recover}"
    );
    assert!(
        run.stderr().contains("TAMPERING: 2 backups"),
        "{}",
        run.stderr()
    );

    let text = ccbackup_env(&cfg, &["list"], &[]);
    let out = text.stdout();
    assert!(
        out.lines().any(|l| l.contains(&ids[2])
            && l.contains("DELETED at")
            && l.contains(&format!("recoverable with --as-of {recover}"))),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(&ids[1]) && l.contains("REWRITTEN")),
        "{out}"
    );

    // The time named brings both back as they were written.
    let past = ccbackup_env(&cfg, &["list", "--json", "--as-of", &recover], &[]);
    past.expect_ok();
    assert_eq!(listed(&past.stdout(), "complete"), ids[1..].to_vec());
    ccbackup_env(
        &cfg,
        &["verify", "--backup", "all", "--as-of", &recover],
        &[],
    )
    .expect_ok();
}

/// The attacker deletes one backup's manifest (plain DELETE).
fn delete_manifest(repo: &ccbackup::repo::store::Repo, id: &str) {
    use object_store::ObjectStoreExt;
    block_on(async {
        repo.store
            .delete(&ccbackup::repo::store::manifest_path("site", id))
            .await
            .unwrap();
    });
}
