//! S3 for real: the binary against moto on loopback. Round trips (backup,
//! list, verify, restore, prune), multipart uploads above the part size,
//! credentials from options, `AWS_*` variables and docker-secret files, the
//! create-only manifest put, a killed upload, and the errors an operator
//! meets first: a missing bucket, rejected credentials, no server.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ccbackup::repo::store::StoreSpec;
use ccbackup::secret::Secret;
use object_store::ObjectStoreExt;

use crate::support::*;
use crate::support_s3::*;

const SECRET: &str = "s3cr3t-Do-Not-Print-9f8e7d";

fn store_block(server: &Server, bucket: &str, options: bool) -> String {
    let mut s = format!("store:\n  url: s3://{bucket}/backups/site-a\n  part_size: 5MiB\n");
    if options {
        s += &format!(
            "  options:\n    endpoint: {}\n    allow_http: true\n    region: eu-west-2\n    access_key_id: AKIATESTING\n    secret_access_key: {SECRET}\n",
            server.endpoint()
        );
    }
    s
}

fn files_job(data: &Path) -> String {
    format!(
        "jobs:\n  - name: site\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        data.display()
    )
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(&p, body).expect("write config");
    p
}

fn manifests(server: &Server, bucket: &str) -> Vec<String> {
    object_keys(server, bucket)
        .into_iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .collect()
}

fn repo_for(server: &Server, bucket: &str) -> ccbackup::repo::store::Repo {
    let opt = |k: &str, v: &str| (k.to_owned(), Secret::new(v));
    ccbackup::repo::store::open(&StoreSpec {
        url: url::Url::parse(&format!("s3://{bucket}/backups/site-a")).unwrap(),
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
    .expect("open s3 store")
}

#[test]
fn s3_round_trip_backup_list_verify_restore_prune() {
    let server = start_moto(false);
    create_bucket(&server, "ccb-round");
    let db = TestDb::create(&unique("s3rt"));
    fill_mixed(&db);
    let data = tempfile::tempdir().unwrap();
    // Incompressible and above the 5 MiB part size: three parts.
    random_file(&data.path().join("big.bin"), 12 * 1024 * 1024 + 123);
    std::fs::create_dir(data.path().join("sub dir")).unwrap();
    std::fs::write(data.path().join("sub dir").join("a:b.txt"), "small").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}jobs:\n  - name: site\n    retention: {{keep_last: 1}}\n    sources:\n{}      - name: etc\n        files: {{path: {}}}\n",
            store_block(&server, "ccb-round", true),
            postgres_source("db", &[&db.name]),
            data.path().display()
        ),
    );
    let run = ccbackup_env(&cfg, &["run-now"], &[]);
    run.expect_ok();
    let first = run.stdout().trim().to_owned();
    assert!(!run.stderr().contains(SECRET));

    // Keys live under the URL's prefix; the big artifact went up in parts
    // (a multipart ETag ends in -<parts>).
    let keys = object_keys(&server, "ccb-round");
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("backups/site-a/site/{first}/"))),
        "{keys:?}"
    );
    let repo = repo_for(&server, "ccb-round");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let meta = rt
        .block_on(repo.store.head(&ccbackup::repo::store::artifact_path(
            "site",
            &first,
            "etc.tar.zst",
        )))
        .expect("head artifact");
    assert!(meta.size > 12 * 1024 * 1024);
    let etag = meta.e_tag.unwrap_or_default();
    assert!(etag.trim_matches('"').ends_with("-3"), "etag {etag}");
    assert!(open_uploads(&server, "ccb-round").is_empty());

    let list = ccbackup_env(&cfg, &["list"], &[]);
    list.expect_ok();
    assert!(list.stdout().contains(&first), "{}", list.stdout());

    let verify = ccbackup_env(&cfg, &["verify"], &[]);
    verify.expect_ok();

    // Restore both sources and compare.
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("etc");
    ccbackup_env(
        &cfg,
        &["restore", "--source", "etc", "--to", to.to_str().unwrap()],
        &[],
    )
    .expect_ok();
    assert_eq!(
        sha256_file(&to.join("big.bin")),
        sha256_file(&data.path().join("big.bin"))
    );
    assert_eq!(
        std::fs::read_to_string(to.join("sub dir").join("a:b.txt")).unwrap(),
        "small"
    );
    let target = TestDb {
        name: format!("{}_restored", db.name),
    };
    ccbackup_env(
        &cfg,
        &["restore", "--source", "db", "--target-db", &target.name],
        &[],
    )
    .expect_ok();
    assert_eq!(target.sql("SELECT count(*) FROM app.racks"), "500");
    assert_eq!(
        target.sql("SELECT label FROM \"odd schema\".\"Devices:x\" WHERE id = 3"),
        "dévice 3"
    );

    // A second backup, then prune keeps only it (keep_last: 1).
    let second = ccbackup_env(&cfg, &["run-now"], &[]);
    second.expect_ok();
    let second = second.stdout().trim().to_owned();
    let prune = ccbackup_env(&cfg, &["prune"], &[]);
    prune.expect_ok();
    let left = manifests(&server, "ccb-round");
    assert_eq!(
        left,
        vec![format!("backups/site-a/site/{second}/manifest.json")]
    );
    assert!(
        object_keys(&server, "ccb-round")
            .iter()
            .all(|k| !k.contains(&first)),
        "the pruned backup's data is gone"
    );
}

#[test]
fn s3_credentials_from_aws_env_and_from_secret_files() {
    let server = start_moto(false);
    create_bucket(&server, "ccb-env");
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f.txt"), "hello").unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Only the URL in the file; everything else from the standard variables.
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}{}",
            store_block(&server, "ccb-env", false),
            files_job(data.path())
        ),
    );
    let endpoint = server.endpoint();
    let env = [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIAFROMENV"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    let run = ccbackup_env(&cfg, &["run-now"], &env);
    run.expect_ok();
    assert!(!run.stderr().contains(SECRET));
    ccbackup_env(&cfg, &["list"], &env).expect_ok();
    assert_eq!(manifests(&server, "ccb-env").len(), 1);

    // Docker secrets: `<key>_file` options, with a trailing newline as
    // editors write it; numbers and booleans as YAML scalars.
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("s3-secret-key");
    let id_file = secrets.path().join("s3-access-key-id");
    std::fs::write(&key_file, format!("{SECRET}\n")).unwrap();
    std::fs::write(&id_file, "AKIAFROMFILE\n").unwrap();
    let cfg2 = write_config(
        dir.path(),
        &format!(
            "store:\n  url: s3://ccb-env/backups/site-a\n  concurrency: 2\n  options:\n    endpoint: {endpoint}\n    allow_http: yes\n    region: eu-west-2\n    virtual_hosted_style_request: false\n    access_key_id_file: {}\n    secret_access_key_file: {}\n{}",
            id_file.display(),
            key_file.display(),
            files_job(data.path())
        ),
    );
    ccbackup_env(&cfg2, &["check-config"], &[]).expect_ok();
    let run = ccbackup_env(&cfg2, &["run-now"], &[]);
    run.expect_ok();
    assert!(!run.stderr().contains(SECRET));
    assert_eq!(manifests(&server, "ccb-env").len(), 2);
    ccbackup_env(&cfg2, &["verify", "--backup", "all"], &[]).expect_ok();
}

#[test]
fn s3_manifest_put_is_create_only() {
    use ccbackup::repo::manifest::{self, Manifest, ManifestError};
    let server = start_moto(false);
    create_bucket(&server, "ccb-race");
    let repo = repo_for(&server, "ccb-race");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = chrono::Utc::now();
    let make = |id: &str, host: &str| Manifest {
        format: manifest::FORMAT,
        job: "site".to_owned(),
        id: id.to_owned(),
        started_at: now,
        finished_at: now,
        tool_version: "test".to_owned(),
        host: host.to_owned(),
        artifacts: Vec::new(),
        guard: Default::default(),
    };

    // Two writers one after the other: the second loses, the first stays.
    let id = ccbackup::repo::store::new_backup_id(now);
    rt.block_on(manifest::write(&repo, &make(&id, "first")))
        .expect("first write");
    let second = rt.block_on(manifest::write(&repo, &make(&id, "second")));
    assert!(
        matches!(second, Err(ManifestError::AlreadyExists { .. })),
        "{second:?}"
    );
    let stored = rt.block_on(manifest::read(&repo, "site", &id)).unwrap();
    assert_eq!(stored.host, "first");

    // Eight writers at once: exactly one wins.
    let id = ccbackup::repo::store::new_backup_id(now + chrono::Duration::seconds(1));
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let repo = repo.clone();
                let m = make(&id, &format!("w{i}"));
                tokio::spawn(async move { manifest::write(&repo, &m).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, ManifestError::AlreadyExists { .. })));
}

/// Kills `run-now` while its multipart upload is open. No manifest may
/// exist afterwards, `list` shows nothing, and `prune` sweeps the uploaded
/// leftovers once they are older than `orphan_grace`.
///
/// A SIGKILLed process cannot abort its own multipart upload, and
/// object_store has no API to list open uploads; prune lists them itself
/// (signed `ListMultipartUploads`) and aborts those older than
/// `orphan_grace`, so none is left open after it.
#[test]
fn s3_killed_upload_leaves_no_manifest() {
    let server = start_moto(false);
    create_bucket(&server, "ccb-kill");
    let data = tempfile::tempdir().unwrap();
    random_file(&data.path().join("big.bin"), 48 * 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}daemon:\n  lock_ttl: 2s\njobs:\n  - name: site\n    retention: {{keep_last: 1}}\n    orphan_grace: 1s\n    sources:\n      - name: small\n        files: {{path: {}}}\n      - name: etc\n        files: {{path: {}}}\n",
            store_block(&server, "ccb-kill", true),
            dir.path().join("smalldir").display(),
            data.path().display()
        ),
    );
    std::fs::create_dir(dir.path().join("smalldir")).unwrap();
    std::fs::write(dir.path().join("smalldir").join("x"), "x").unwrap();

    let mut child = ccbackup_cmd(&cfg, &["run-now"], &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the big artifact's multipart upload is open, then kill.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if open_uploads(&server, "ccb-kill")
            .iter()
            .any(|k| k.ends_with("etc.tar.zst"))
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "run-now finished before it could be killed mid-upload"
        );
        assert!(Instant::now() < deadline, "no multipart upload appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(manifests(&server, "ccb-kill").is_empty());
    let list = ccbackup_env(&cfg, &["list"], &[]);
    list.expect_ok();
    assert!(!list.stdout().contains("site "), "{}", list.stdout());
    let leftover_objects = object_keys(&server, "ccb-kill");
    assert!(
        !leftover_objects.is_empty(),
        "the small source was uploaded before the kill"
    );

    // The signed listing sees the upload the kill left open.
    let repo = repo_for(&server, "ccb-kill");
    let s3 = repo.s3.as_ref().expect("an s3 store has an upload sweeper");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let open = rt
        .block_on(s3.list(&s3.job_prefix("site")))
        .expect("list open uploads");
    assert!(
        open.iter()
            .any(|u| u.key.ends_with("etc.tar.zst") && u.initiated.is_some()),
        "{open:?}"
    );

    // Past the orphan grace and the killed run's lock lease.
    std::thread::sleep(Duration::from_millis(2500));
    let prune = ccbackup_env(&cfg, &["prune"], &[]);
    prune.expect_ok();
    assert!(
        object_keys(&server, "ccb-kill").is_empty(),
        "sweep left objects behind"
    );
    assert!(
        !prune.stderr().contains(SECRET),
        "secret leaked:\n{}",
        prune.stderr()
    );
    assert!(
        prune.stdout().contains("stale multipart upload(s) aborted"),
        "{}\n{}",
        prune.stdout(),
        prune.stderr()
    );
    assert!(
        open_uploads(&server, "ccb-kill").is_empty(),
        "prune left open multipart uploads: {:?}\n{}",
        open_uploads(&server, "ccb-kill"),
        prune.stderr()
    );
    // The signed listing agrees.
    let left = rt
        .block_on(s3.list(&s3.job_prefix("site")))
        .expect("list open uploads");
    assert!(left.is_empty(), "{left:?}");
}

/// A stand-in for the EC2 instance metadata service on loopback: hands out
/// one temporary credential (IMDSv2: token, role name, credential) and
/// records what was asked, so a test can tell the credential came from here.
struct InstanceMetadata {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl InstanceMetadata {
    fn start() -> InstanceMetadata {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // Headers up to the blank line; these requests have no body.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut parts = request.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                log.lock().unwrap().push(format!("{method} {path}"));
                let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
                let body = match (method, path) {
                    ("PUT", "/latest/api/token") => "imds-token".to_owned(),
                    ("GET", "/latest/meta-data/iam/security-credentials/") => "ccb-role".to_owned(),
                    ("GET", "/latest/meta-data/iam/security-credentials/ccb-role") => format!(
                        r#"{{"Code":"Success","AccessKeyId":"ASIAINSTANCEROLE","SecretAccessKey":"{SECRET}","Token":"role-session-token","Expiration":"{expires}"}}"#
                    ),
                    _ => String::new(),
                };
                let status = if body.is_empty() {
                    "404 Not Found"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        InstanceMetadata { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Opens a multipart upload under job `site` directly on moto, as a killed
/// run would have left it.
fn leave_open_upload(server: &Server, bucket: &str) -> String {
    let key = "backups/site-a/site/20200101T000000Z-abcdef/db.dump.zst";
    let (status, body) = http(
        server.port,
        "POST",
        &format!("/{bucket}/{key}?uploads"),
        &[],
    );
    assert_eq!(status, 200, "create multipart upload: {body}");
    assert_eq!(open_uploads(server, bucket), [key]);
    key.to_owned()
}

/// Runs prune on a job whose only leftover is an open upload past its
/// orphan grace, with `store_options` and `env`; asserts it was aborted.
fn prune_aborts_open_upload(bucket: &str, store_options: &str, env: &[(&str, &str)]) {
    let server = start_moto(false);
    create_bucket(&server, bucket);
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "store:\n  url: s3://{bucket}/backups/site-a\n  options:\n    endpoint: {}\n    allow_http: true\n    region: eu-west-2\n{store_options}jobs:\n  - name: site\n    retention: {{keep_last: 1}}\n    orphan_grace: 1s\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
            server.endpoint(),
            data.path().display()
        ),
    );
    leave_open_upload(&server, bucket);
    // Past the orphan grace (S3 times are whole seconds).
    std::thread::sleep(Duration::from_millis(2100));
    let prune = ccbackup_env(&cfg, &["prune"], env);
    prune.expect_ok();
    assert!(
        open_uploads(&server, bucket).is_empty(),
        "prune left the upload open:\n{}\n{}",
        prune.stdout(),
        prune.stderr()
    );
    assert!(
        prune
            .stdout()
            .contains("1 stale multipart upload(s) aborted"),
        "{}\n{}",
        prune.stdout(),
        prune.stderr()
    );
    let all = format!("{}{}", prune.stdout(), prune.stderr());
    assert!(!all.contains(SECRET), "secret leaked:\n{all}");
}

/// The sweep signs with whatever credential source object_store resolves,
/// not only static keys: here an instance role from the metadata service.
#[test]
fn s3_sweep_uses_instance_role_credentials() {
    let imds = InstanceMetadata::start();
    prune_aborts_open_upload(
        "ccb-imds",
        &format!("    metadata_endpoint: http://127.0.0.1:{}\n", imds.port),
        &[],
    );
    let seen = imds.seen();
    assert!(
        seen.iter()
            .any(|r| r == "GET /latest/meta-data/iam/security-credentials/ccb-role"),
        "the credential was not fetched from the metadata service: {seen:?}"
    );
}

/// Credentials from the `AWS_*` variables, through object_store's provider.
#[test]
fn s3_sweep_uses_environment_credentials() {
    prune_aborts_open_upload(
        "ccb-envcred",
        "",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAFROMENV"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
    );
}

/// Every store-level failure: non-zero exit, a message naming the store and
/// the problem, no manifest, and never the secret key.
fn assert_store_failure(run: &Run, store: &str, what: &str) {
    assert!(!run.ok(), "expected a failure:\n{}", run.stderr());
    let err = run.stderr();
    let last = err
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{err}"));
    assert!(last.contains(store), "store not named: {last}");
    assert!(last.contains(what), "expected `{what}` in: {last}");
    assert!(!err.contains(SECRET), "secret leaked:\n{err}");
}

#[test]
fn s3_missing_bucket_is_a_clear_error() {
    let server = start_moto(false);
    create_bucket(&server, "ccb-other");
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), "x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}{}",
            store_block(&server, "ccb-missing", true),
            files_job(data.path())
        ),
    );
    let run = ccbackup_env(&cfg, &["run-now"], &[]);
    assert_store_failure(
        &run,
        "s3://ccb-missing/backups/site-a",
        "bucket does not exist",
    );
    let list = ccbackup_env(&cfg, &["list"], &[]);
    assert_store_failure(
        &list,
        "s3://ccb-missing/backups/site-a",
        "bucket does not exist",
    );
    assert!(object_keys(&server, "ccb-other").is_empty());
}

#[test]
fn s3_wrong_credentials_are_a_clear_error_without_the_secret() {
    // This moto knows no access keys, so it refuses ours like AWS refuses
    // a wrong one (InvalidAccessKeyId, 403).
    let server = start_moto(true);
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), "x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}{}",
            store_block(&server, "ccb-auth", true),
            files_job(data.path())
        ),
    );
    let run = ccbackup_env(&cfg, &["run-now"], &[]);
    assert_store_failure(
        &run,
        "s3://ccb-auth/backups/site-a",
        "rejected the credentials",
    );
    let list = ccbackup_env(&cfg, &["list"], &[]);
    assert_store_failure(
        &list,
        "s3://ccb-auth/backups/site-a",
        "rejected the credentials",
    );
}

#[test]
fn s3_unreachable_endpoint_is_a_clear_error() {
    let port = free_port(); // nothing listens here
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), "x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "store:\n  url: s3://ccb-gone/backups\n  options:\n    endpoint: http://127.0.0.1:{port}\n    allow_http: true\n    region: eu-west-2\n    access_key_id: AKIATESTING\n    secret_access_key: {SECRET}\n{}",
            files_job(data.path())
        ),
    );
    let started = Instant::now();
    let run = ccbackup_env(&cfg, &["run-now"], &[]);
    assert_store_failure(&run, "s3://ccb-gone/backups", "cannot connect");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "gave up only after {:?}",
        started.elapsed()
    );
}
