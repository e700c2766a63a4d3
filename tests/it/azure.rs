//! Azure Blob for real: the binary against Azurite on loopback, with the
//! emulator switch and with explicit account, key file and endpoint.

use std::path::{Path, PathBuf};

use crate::support::*;
use crate::support_s3::*;

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(&p, body).expect("write config");
    p
}

fn jobs(db: &TestDb, data: &Path) -> String {
    format!(
        "jobs:\n  - name: site\n    retention: {{keep_last: 1}}\n    sources:\n{}      - name: etc\n        files: {{path: {}}}\n",
        postgres_source("db", &[&db.name]),
        data.display()
    )
}

#[test]
fn azure_round_trip_with_the_emulator() {
    let server = start_azurite();
    create_container(&server, "ccbackup");
    let db = TestDb::create(&unique("azrt"));
    fill_mixed(&db);
    let data = tempfile::tempdir().unwrap();
    // Above the part size, so blocks are staged and committed.
    random_file(&data.path().join("big.bin"), 11 * 1024 * 1024);
    std::fs::write(data.path().join("small.txt"), "small").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "store:\n  url: az://ccbackup/site-a\n  part_size: 5MiB\n  options:\n    use_emulator: true\n{}",
            jobs(&db, data.path())
        ),
    );
    // object_store reads the emulator's address from this variable.
    let url = server.endpoint();
    let env = [("AZURITE_BLOB_STORAGE_URL", url.as_str())];

    let run = ccbackup_env(&cfg, &["run-now"], &env);
    run.expect_ok();
    let id = run.stdout().trim().to_owned();
    let list = ccbackup_env(&cfg, &["list"], &env);
    list.expect_ok();
    assert!(list.stdout().contains(&id), "{}", list.stdout());
    ccbackup_env(&cfg, &["verify"], &env).expect_ok();

    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("etc");
    ccbackup_env(
        &cfg,
        &["restore", "--source", "etc", "--to", to.to_str().unwrap()],
        &env,
    )
    .expect_ok();
    assert_eq!(
        sha256_file(&to.join("big.bin")),
        sha256_file(&data.path().join("big.bin"))
    );
    let target = TestDb {
        name: format!("{}_restored", db.name),
    };
    ccbackup_env(
        &cfg,
        &["restore", "--source", "db", "--target-db", &target.name],
        &env,
    )
    .expect_ok();
    assert_eq!(target.sql("SELECT count(*) FROM app.racks"), "500");

    // Second backup, prune to one.
    let second = ccbackup_env(&cfg, &["run-now"], &env);
    second.expect_ok();
    ccbackup_env(&cfg, &["prune"], &env).expect_ok();
    let list = ccbackup_env(&cfg, &["list", "--json"], &env);
    list.expect_ok();
    let rows: serde_json::Value = serde_json::from_str(&list.stdout()).unwrap();
    assert_eq!(rows.as_array().map(|a| a.len()), Some(1), "{rows}");
    assert!(list.stdout().contains(second.stdout().trim()));
}

#[test]
fn azure_account_key_from_a_secret_file_and_explicit_endpoint() {
    let server = start_azurite();
    create_container(&server, "keyed");
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f.txt"), "hello azure").unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("azure-key");
    std::fs::write(&key_file, format!("{AZURITE_KEY}\n")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "store:\n  url: az://keyed/nested/prefix\n  options:\n    account_name: {AZURITE_ACCOUNT}\n    access_key_file: {}\n    endpoint: {}/{AZURITE_ACCOUNT}\n    allow_http: true\njobs:\n  - name: site\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
            key_file.display(),
            server.endpoint(),
            data.path().display()
        ),
    );
    let run = ccbackup_env(&cfg, &["run-now"], &[]);
    run.expect_ok();
    assert!(!run.stderr().contains(AZURITE_KEY));
    ccbackup_env(&cfg, &["verify"], &[]).expect_ok();
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("etc");
    ccbackup_env(
        &cfg,
        &["restore", "--source", "etc", "--to", to.to_str().unwrap()],
        &[],
    )
    .expect_ok();
    assert_eq!(
        std::fs::read_to_string(to.join("f.txt")).unwrap(),
        "hello azure"
    );

    // A container that does not exist: named, explained, nothing written.
    let missing = write_config(
        dir.path(),
        &std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("az://keyed/", "az://nosuch/"),
    );
    let run = ccbackup_env(&missing, &["run-now"], &[]);
    assert!(!run.ok());
    let err = run.stderr();
    assert!(
        err.contains("az://nosuch/nested/prefix") && err.contains("container does not exist"),
        "{err}"
    );
}
