//! README's "Ransomware runbook", run as written against moto.
//!
//! The sidecar backs up a database and a directory into an Object Lock
//! bucket; an attacker with its bucket credentials and signing key rewrites
//! every manifest with a signed forgery, deletes everything, and plants a
//! new signed backup. Then the fenced block between
//! `<!-- ransomware-runbook:begin` and `<!-- ransomware-runbook:end -->` is
//! run by bash, line for line, with `ccbackup` standing for the binary with
//! the rotated configuration (the YAML the runbook shows) and host paths
//! mapped into a temp tree. The restored database and files must equal the
//! originals.

use std::path::Path;
use std::process::Command;

use crate::support::*;
use crate::support_attacker::*;
use crate::support_s3::*;

fn runbook_block() -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = text
        .find("<!-- ransomware-runbook:begin")
        .expect("README has no ransomware-runbook:begin marker");
    let end = text[start..]
        .find("<!-- ransomware-runbook:end -->")
        .expect("README has no ransomware-runbook:end marker")
        + start;
    text[start..end]
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.rsplit_once("```"))
        .expect("the runbook block is a ```sh fence")
        .0
        .to_owned()
}

fn count(db: &str, table: &str) -> String {
    psql(db, &format!("SELECT count(*) FROM {table}"))
}

#[test]
fn the_ransomware_runbook_brings_back_the_real_backups_byte_identical() {
    require_tool("pg_dump");
    let server = start_moto(false);
    lock_bucket(&server, "ccb-ransom");
    let ws = Workspace::new();
    let root = ws.path();
    let etc = root.join("etc/ccbackup");
    let old_keys = etc.join("keys");
    keys_generate(&old_keys);
    // ct-vis on the shared server under a unique name, and a directory.
    let db = TestDb::create(&unique("ransom_ctvis"));
    fill_mixed(&db);
    let target = TestDb::create(&unique("ransom_restored"));
    let data = root.join("data");
    std::fs::create_dir_all(data.join("config")).unwrap();
    std::fs::write(data.join("config/credentials.yml.enc"), b"\x00enc\xffbytes").unwrap();
    std::fs::write(data.join("settings.yml"), "site: a\n").unwrap();
    let store = store_yaml(&server, "ccb-ransom", "site");
    let jobs = format!(
        "jobs:\n  - name: concertim\n    sources:\n{}      - name: etc\n        files: {{path: {}}}\n",
        postgres_source("db", &[&db.name]),
        data.display()
    );
    let sidecar = ws.config(&format!(
        "{store}signing:\n  secret_key_file: {}\n{jobs}",
        old_keys.join("minisign.key").display()
    ));
    let real = ccbackup_env(&sidecar, &["run-now"], &[]);
    real.expect_ok();
    let real = real.stdout().trim().to_owned();
    let incident = boundary();

    // The attack, with the sidecar's credentials and key.
    let attacker = attacker_repo(&server, "ccb-ransom", "site");
    let stolen = old_keys.join("minisign.key");
    let copy = capture(&attacker, "concertim", &real);
    rewrite_backup(&attacker, &stolen, "concertim", &real);
    delete_everything(&attacker);
    let forged = forge_backup(&attacker, &stolen, &copy, chrono::Utc::now());
    // The originals are lost on the host too.
    let rows = (
        count(&db.name, "app.racks"),
        count(&db.name, "\"odd schema\".\"Devices:x\""),
    );
    let digest_sql = "SELECT md5(string_agg(name || meta::text || encode(blob, 'hex'), ',' ORDER BY id)) FROM app.racks";
    let digest = psql(&db.name, digest_sql);
    let files = (
        std::fs::read(data.join("config/credentials.yml.enc")).unwrap(),
        std::fs::read(data.join("settings.yml")).unwrap(),
    );
    std::fs::remove_dir_all(&data).unwrap();

    // The rotated configuration, as the runbook's YAML shows it.
    let run_cfg = root.join("run.yaml");
    std::fs::write(
        &run_cfg,
        format!(
            "{store}signing:\n  secret_key_file: {new}/minisign.key\n  public_keys:\n    - key_file: {old}/minisign.pub\n      not_after: {at}\n    - key_file: {new}/minisign.pub\n{jobs}",
            new = etc.join("keys-new").display(),
            old = old_keys.display(),
            at = rfc3339(incident),
        ),
    )
    .unwrap();
    // The runbook names the database `ct-vis`; here it has unique names.
    let script = runbook_block()
        .replace("/etc/ccbackup/", &format!("{}/", etc.display()))
        .replace("/srv/restore", &root.join("restore").display().to_string())
        .replace("--database ct-vis ", &format!("--database {} ", db.name))
        .replace("ct-vis-restored", &target.name);
    let prelude = format!(
        "set -euo pipefail\nccbackup() {{ echo \"+ ccbackup $*\"; {bin} --config {cfg} --log-format text \"$@\"; }}\nINCIDENT={at}\n",
        bin = bin(),
        cfg = run_cfg.display(),
        at = rfc3339(incident),
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(format!("{prelude}{script}"));
    for v in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT",
        "AWS_REGION",
        "CCBACKUP_CONFIG",
    ] {
        cmd.env_remove(v);
    }
    // The database must be gone for the restore to prove anything.
    psql(
        &db.name,
        "DROP SCHEMA app CASCADE; DROP SCHEMA \"odd schema\" CASCADE;",
    );
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "runbook failed:\n{stdout}\n{stderr}");

    // `list` now: the forgery is untrusted, the real backup shows as deleted
    // (and rewritten first), with the time to read it back.
    let now_part = stdout
        .split("+ ccbackup list --as-of")
        .next()
        .unwrap()
        .split("+ ccbackup list\n")
        .nth(1)
        .unwrap();
    assert!(
        now_part
            .lines()
            .any(|l| l.contains(&forged) && l.contains("UNTRUSTED")),
        "{now_part}\n{stderr}"
    );
    assert!(
        now_part
            .lines()
            .any(|l| l.contains(&real) && l.contains("recoverable with --as-of")),
        "{now_part}"
    );
    // As of the incident: the real backup, and not the forgery.
    let past_part = stdout
        .split("+ ccbackup list --as-of")
        .nth(1)
        .unwrap()
        .split("+ ccbackup verify")
        .next()
        .unwrap();
    assert!(
        past_part.contains(&real) && !past_part.contains(&forged),
        "{past_part}"
    );

    // Byte-identical data: row counts in the restored database, files.
    assert_eq!(
        (
            count(&target.name, "app.racks"),
            count(&target.name, "\"odd schema\".\"Devices:x\"")
        ),
        rows
    );
    assert_eq!(psql(&target.name, digest_sql), digest);
    let restored = root.join("restore/etc");
    assert_eq!(
        std::fs::read(restored.join("config/credentials.yml.enc")).unwrap(),
        files.0
    );
    assert_eq!(
        std::fs::read(restored.join("settings.yml")).unwrap(),
        files.1
    );
}
