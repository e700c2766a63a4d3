//! `signing.public_keys` with trust windows: after a compromise the old key
//! keeps vouching for the backups the store recorded before its
//! `not_after`, and for nothing written later, whatever the manifest claims.

use std::path::Path;

use crate::support::*;
use crate::support_attacker::*;
use crate::support_s3::*;

fn job(data: &Path) -> String {
    format!(
        "jobs:\n  - name: site\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        data.display()
    )
}

#[test]
fn a_rotated_key_trusts_old_backups_and_not_forgeries_stored_after_its_cut_off() {
    let server = start_moto(false);
    lock_bucket(&server, "ccb-keys");
    let ws = Workspace::new();
    let (old, new) = (ws.path().join("old"), ws.path().join("new"));
    keys_generate(&old);
    keys_generate(&new);
    let data = ws.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f.txt"), "real\n").unwrap();
    let store = store_yaml(&server, "ccb-keys", "site");
    let before = ws.config(&format!(
        "{store}signing:\n  secret_key_file: {}\n{}",
        old.join("minisign.key").display(),
        job(&data)
    ));
    let real = ccbackup_env(&before, &["run-now"], &[]);
    real.expect_ok();
    let real = real.stdout().trim().to_owned();
    let cut = boundary();

    // The attacker signs a new backup with the stolen key, and dates its
    // content before the cut-off: only the store's own time tells.
    let attacker = attacker_repo(&server, "ccb-keys", "site");
    let copy = capture(&attacker, "site", &real);
    let claimed = cut - chrono::Duration::minutes(30);
    let forged = forge_backup(&attacker, &old.join("minisign.key"), &copy, claimed);
    assert!(forged < real, "the forgery claims to be older: {forged}");

    // With the old key alone, the forgery counts.
    let run = ccbackup_env(&before, &["list", "--json"], &[]);
    run.expect_ok();
    let mut both = vec![forged.clone(), real.clone()];
    both.sort();
    let mut complete = listed(&run.stdout(), "complete");
    complete.sort();
    assert_eq!(complete, both);

    // Rotated: a new signing key, the old one trusted up to the cut-off.
    let after = ws.config(&format!(
        "{store}signing:\n  secret_key_file: {}\n  public_keys:\n    - key_file: {}\n      not_after: {}\n    - key_file: {}\n{}",
        new.join("minisign.key").display(),
        old.join("minisign.pub").display(),
        rfc3339(cut),
        new.join("minisign.pub").display(),
        job(&data)
    ));
    ccbackup_env(&after, &["check-config"], &[]).expect_ok();
    let run = ccbackup_env(&after, &["list", "--json"], &[]);
    run.expect_ok();
    assert_eq!(listed(&run.stdout(), "complete"), vec![real.clone()]);
    assert_eq!(listed(&run.stdout(), "untrusted"), vec![forged.clone()]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let problem = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["backup_id"] == forged.as_str())
        .unwrap()["problem"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        problem.contains("trusted only for manifests the store recorded by"),
        "{problem}"
    );

    // Restore does not take it either; verify checks the real one.
    let plan = ccbackup_env(
        &after,
        &["restore", "--dry-run", "--to", "/nonexistent/x"],
        &[],
    );
    plan.expect_ok();
    assert!(plan.stdout().contains(&real), "{}", plan.stdout());
    assert!(!plan.stdout().contains(&forged), "{}", plan.stdout());
    ccbackup_env(&after, &["verify", "--backup", &real], &[]).expect_ok();

    // New backups are signed with the new key and trusted.
    let next = ccbackup_env(&after, &["run-now"], &[]);
    next.expect_ok();
    let next = next.stdout().trim().to_owned();
    let run = ccbackup_env(&after, &["list", "--json"], &[]);
    assert_eq!(listed(&run.stdout(), "complete"), vec![real, next]);
}

#[test]
fn public_keys_problems_name_line_and_key() {
    let ws = Workspace::new();
    let keys = ws.path().join("k");
    keys_generate(&keys);
    let data = ws.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let body = format!(
        "store:\n  url: {}\nsigning:\n  public_keys:\n    - key_file: {}\n      not_after: last week\n    - not_after: 2026-01-01T00:00:00Z\n{}",
        ws.store_url(),
        keys.join("minisign.pub").display(),
        job(&data)
    );
    let cfg = ws.config(&body);
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let err = run.stderr();
    let file = cfg.display().to_string();
    for (line, key) in [
        (6, "signing.public_keys[0].not_after"),
        (7, "signing.public_keys[1]"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{file}:{line}:")) && l.contains(key)),
            "missing {key} at line {line}:\n{err}"
        );
    }

    // The key that signs new backups cannot have a cut-off.
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nsigning:\n  secret_key_file: {}\n  public_keys:\n    - key_file: {}\n      not_after: 2026-01-01T00:00:00Z\n{}",
        ws.store_url(),
        keys.join("minisign.key").display(),
        keys.join("minisign.pub").display(),
        job(&data)
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    assert!(
        run.stderr().contains("signing.public_keys")
            && run
                .stderr()
                .contains("new backups signed with it would not be trusted"),
        "{}",
        run.stderr()
    );

    // Both forms at once.
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nsigning:\n  public_key_file: {}\n  public_keys:\n    - key_file: {}\n{}",
        ws.store_url(),
        keys.join("minisign.pub").display(),
        keys.join("minisign.pub").display(),
        job(&data)
    ));
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    assert!(run.stderr().contains("not both"), "{}", run.stderr());
}
