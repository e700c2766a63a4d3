//! The shipped examples stay valid: every example config passes
//! `check-config`, every policy file loads, both compose files pass
//! `docker-compose config -q`, and the Dockerfile passes hadolint at the
//! error threshold. The tools come from `scripts/prereqs.sh`; a missing one
//! fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use crate::support_s3::find_tool;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &str, ext: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo_root().join(dir))
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| ext.contains(&x))
        })
        .collect();
    out.sort();
    out
}

/// The host paths the examples name (secrets, the Concertim volumes), mapped
/// into a scratch tree so `check-config` can find them on any machine.
struct FakeHost {
    dir: tempfile::TempDir,
}

impl FakeHost {
    fn new() -> FakeHost {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            "run/secrets",
            "var/lib/metric-reporting-daemon/rrds",
            "opt/concertim/etc",
            "var/backups/ccbackup",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for s in [
            "db-password",
            "s3-access-key-id",
            "s3-secret-access-key",
            "azure-storage-key",
            "gcs-service-account.json",
        ] {
            std::fs::write(root.join("run/secrets").join(s), "placeholder\n").unwrap();
        }
        std::os::unix::fs::symlink(repo_root().join("policies"), root.join("policies")).unwrap();
        // config.s3.yaml encrypts to `age-recipient.txt` beside it: a real key.
        let keys = root.join("keys");
        ccbackup(
            &root.join("none.yaml"),
            &["keys", "generate", keys.to_str().unwrap()],
        )
        .expect_ok();
        std::fs::copy(
            keys.join("age-recipient.txt"),
            root.join("age-recipient.txt"),
        )
        .unwrap();
        // The examples sign with the key mounted as this secret.
        let key = root.join("run/secrets/minisign-key");
        std::fs::copy(keys.join("minisign.key"), &key).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        std::fs::create_dir_all(root.join("opt/concertim/opt/docker/secrets")).unwrap();
        FakeHost { dir }
    }

    /// The config with every absolute host path moved under the scratch tree.
    fn rewrite(&self, text: &str) -> String {
        let root = self.dir.path().display().to_string();
        let mut out = text.to_owned();
        for prefix in ["/run/secrets/", "/var/lib/", "/opt/concertim/"] {
            out = out.replace(prefix, &format!("{root}{prefix}"));
        }
        out.replace(
            "file:///var/backups/",
            &format!("file://{root}/var/backups/"),
        )
    }
}

#[test]
fn example_configs_pass_check_config() {
    let configs = files_in("examples", &["yaml", "yml"]);
    let configs: Vec<_> = configs
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("config."))
        })
        .collect();
    let names: Vec<_> = configs
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    for want in [
        "config.file.yaml",
        "config.s3.yaml",
        "config.azure.yaml",
        "config.gcs.yaml",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let host = FakeHost::new();
    for cfg in &configs {
        let text = std::fs::read_to_string(cfg).unwrap();
        let copy = host.dir.path().join(cfg.file_name().unwrap());
        std::fs::write(&copy, host.rewrite(&text)).unwrap();
        let run = ccbackup(&copy, &["check-config"]);
        assert!(
            run.ok(),
            "{} fails check-config:\n{}{}",
            cfg.display(),
            run.stdout(),
            run.stderr()
        );
    }
}

/// Issue 22, authenticated by default: every example configuration signs,
/// and the compose files hand the sidecar its signing key.
#[test]
fn examples_sign_by_default() {
    for cfg in files_in("examples", &["yaml"]) {
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(
            text.contains("\nsigning:\n  secret_key_file:"),
            "{} does not sign its manifests",
            cfg.display()
        );
    }
    let compose = std::fs::read_to_string(repo_root().join("examples/docker-compose.yml")).unwrap();
    assert!(
        compose.contains("- minisign-key") && compose.contains("minisign-key:\n    file:"),
        "docker-compose.yml does not give the sidecar its signing key"
    );
    let quickstart = std::fs::read_to_string(repo_root().join("examples/quickstart.sh")).unwrap();
    assert!(quickstart.contains("keys generate") && quickstart.contains("signing:"));
}

#[test]
fn every_policy_file_loads() {
    let policies = files_in("policies", &["yaml", "yml"]);
    assert!(!policies.is_empty());
    for p in &policies {
        if let Err(e) = ccbackup::retention::policy::load_policy_file(p) {
            panic!("{}: {e}", p.display());
        }
    }
}

fn compose_check(file: &Path) {
    let tool = find_tool("docker-compose", &["venv/bin/docker-compose"]);
    let out = Command::new(tool)
        .arg("-f")
        .arg(file)
        .args(["config", "-q"])
        .output()
        .expect("run docker-compose");
    assert!(
        out.status.success(),
        "{} is not a valid compose file:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn compose_files_are_valid() {
    let files = files_in("examples", &["yml"]);
    let names: Vec<_> = files
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .filter(|n| n.starts_with("docker-compose"))
        .collect();
    assert!(
        names.contains(&"docker-compose.yml".to_owned())
            && names.contains(&"docker-compose.s3.yml".to_owned()),
        "{names:?}"
    );
    for n in names {
        compose_check(&repo_root().join("examples").join(n));
    }
}

#[test]
fn compose_sidecar_mounts_data_read_only_and_uses_secrets() {
    let text = std::fs::read_to_string(repo_root().join("examples/docker-compose.yml")).unwrap();
    assert!(text.contains("rrd-data:/var/lib/metric-reporting-daemon/rrds:ro"));
    assert!(text.contains("/opt/concertim/etc:/opt/concertim/etc:ro"));
    assert!(text.contains("- db-password"));
    // The password never appears in the environment or the command line.
    assert!(!text.contains("POSTGRES_PASSWORD:"));
}

/// The service, volume and path names of Concertim v1.x, and the details
/// that make stopping and restoring work.
#[test]
fn compose_matches_concertim_v1_and_stops_gracefully() {
    let text = std::fs::read_to_string(repo_root().join("examples/docker-compose.yml")).unwrap();
    for want in [
        "name: ${CONCERTIM_RRD_VOLUME:-concertim_rrd-data}",
        "concertim_db-data",
        "/opt/concertim/opt/docker/docker-compose.yml",
        "network_mode: host",
        "ccbackup-restore:",
        "profiles: [restore]",
        "CCBACKUP_USER: root",
        "cap_add: [SETUID, SETGID, DAC_READ_SEARCH]",
    ] {
        assert!(text.contains(want), "docker-compose.yml lacks {want}");
    }
    // Docker kills after stop_grace_period (default 10 s): it must outlast
    // the daemon's shutdown grace, or a running backup is SIGKILLed.
    let cfg = std::fs::read_to_string(repo_root().join("examples/config.s3.yaml")).unwrap();
    let grace = minutes(&cfg, "shutdown_grace:");
    for f in [
        "examples/docker-compose.yml",
        "examples/docker-compose.s3.yml",
    ] {
        let text = std::fs::read_to_string(repo_root().join(f)).unwrap();
        assert!(
            minutes(&text, "stop_grace_period:") > grace,
            "{f}: stop_grace_period must exceed daemon.shutdown_grace ({grace} min)"
        );
        assert!(
            !text.contains("metrics:"),
            "{f}: Concertim v1.x calls it metric_reporting_daemon"
        );
    }
}

/// `KEY: <n>m` in a YAML text, in minutes.
fn minutes(text: &str, key: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("no {key}"));
    let v = line.split_once(key).unwrap().1.trim();
    v.strip_suffix('m')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{key} {v} is not in minutes"))
}

/// No example, script or doc of ours names postgres_exporter's port.
#[test]
fn nothing_uses_postgres_exporters_port() {
    let mut files = files_in("examples", &["yml", "yaml", "sh"]);
    files.extend(files_in("scripts", &["sh"]));
    files.push(repo_root().join("Dockerfile"));
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("9187") || text.contains("not 9187"),
            "{} names 9187",
            f.display()
        );
    }
}

#[test]
fn dockerfile_passes_hadolint() {
    let tool = find_tool("hadolint", &["venv/bin/hadolint"]);
    let out = Command::new(tool)
        .args(["--failure-threshold", "error"])
        .arg(repo_root().join("Dockerfile"))
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    for want in [
        "ENTRYPOINT [\"ccbackup\"]",
        "CMD [\"daemon\"]",
        "HEALTHCHECK",
        "CMD [\"ccbackup\", \"healthcheck\"]",
        "debian:trixie-slim",
        "postgresql-client-17",
        "PG_CLIENTS=debian",
        "CCBACKUP_USER=ccbackup",
    ] {
        assert!(text.contains(want), "Dockerfile lacks {want}");
    }
    // Started as root on purpose (secrets), dropping by itself: no USER line
    // that would make the secrets unreadable.
    assert!(
        !text.lines().any(|l| l.starts_with("USER ")),
        "Dockerfile sets USER"
    );
}

/// Issue 23 item 9: installing the test prerequisites must not install or
/// enable services. Every apt install goes without Recommends, and none of
/// the packages that bring a server (Prometheus and node exporter, Docker
/// and containerd through Debian's docker-compose) is installed by apt: the
/// tools the tests need come from a package unpacked without its maintainer
/// scripts, or from PyPI.
#[test]
fn prereqs_install_no_services() {
    let script = std::fs::read_to_string(repo_root().join("scripts/prereqs.sh")).unwrap();
    let mut installs = 0;
    for (n, line) in script.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("");
        if code.contains("apt-get install") {
            installs += 1;
            assert!(
                code.contains("--no-install-recommends"),
                "prereqs.sh:{}: apt-get install without --no-install-recommends: {line}",
                n + 1
            );
        }
        if code.contains("need+=(") || code.contains("apt_install ") {
            for pkg in ["prometheus", "docker-compose", "docker.io", "containerd"] {
                let listed = code
                    .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
                    .any(|w| w == pkg);
                assert!(
                    !listed,
                    "prereqs.sh:{}: installs `{pkg}` with apt, which enables services: {line}",
                    n + 1
                );
            }
        }
    }
    assert!(
        installs > 0,
        "prereqs.sh installs nothing with apt? the check is stale"
    );
}

/// Issue 23 item 10: `examples/docker-compose.s3.yml` runs as written. No
/// container engine or registry is reachable here, so each part is checked
/// on its own: after `trial/setup.sh`, the file resolves with
/// `docker-compose config` and every file it mounts or names as a secret
/// exists; the init script creates `ct-vis` on a real PostgreSQL 16; the
/// stand-in writer makes RRD files rrdtool accepts; the sidecar's
/// configuration (signed and encrypted) passes check-config.
#[test]
fn s3_trial_resolves_and_its_parts_work() {
    let tmp = tempfile::tempdir().unwrap();
    for d in ["examples", "policies"] {
        let st = Command::new("cp")
            .arg("-a")
            .arg(repo_root().join(d))
            .arg(tmp.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
    let examples = tmp.path().join("examples");
    let trial = examples.join("trial");
    for leftover in ["secrets", "keys"] {
        let _ = std::fs::remove_dir_all(trial.join(leftover));
    }
    let bin_dir = Path::new(bin()).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let setup = Command::new("bash")
        .arg(trial.join("setup.sh"))
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "setup.sh: {}",
        String::from_utf8_lossy(&setup.stderr)
    );

    // Every host file the compose file names exists once setup.sh ran.
    let out = Command::new(find_tool("docker-compose", &["venv/bin/docker-compose"]))
        .arg("-f")
        .arg(examples.join("docker-compose.s3.yml"))
        .args(["--profile", "standin", "config"])
        .output()
        .unwrap();
    let resolved = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = tmp.path().display().to_string();
    let mut named = Vec::new();
    for line in resolved.lines() {
        let t = line
            .trim()
            .trim_start_matches("- ")
            .trim_start_matches("file: ");
        if let Some(host) = t.strip_prefix(&root) {
            let host = host.split(':').next().unwrap();
            named.push(host.to_owned());
            assert!(
                Path::new(&format!("{root}{host}")).exists(),
                "docker-compose.s3.yml names {host}, which does not exist after setup.sh:\n{resolved}"
            );
        }
    }
    for want in [
        "/examples/trial/secrets/db-password",
        "/examples/trial/keys/minisign.key",
        "/examples/trial/init-ct-vis.sql",
        "/examples/trial/rrd-writer.sh",
        "/examples/trial/config.yaml",
    ] {
        assert!(
            named.iter().any(|n| n == want),
            "{want} not mounted: {named:?}"
        );
    }
    assert!(
        !named.iter().any(|n| n.ends_with("age-identity.txt")),
        "the trial's sidecar must not hold the age identity: {named:?}"
    );

    // The init script gives the stand-in database a ct-vis like Concertim's.
    let pg = crate::support_pg::Cluster::start(16, &crate::support_pg::pg16_server_bin())
        .unwrap_or_else(|e| panic!("a PostgreSQL 16 server: {e}"));
    let init = Command::new(crate::support_pg::pg18_bin().join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args([
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .arg("-f")
        .arg(trial.join("init-ct-vis.sql"))
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "init-ct-vis.sql: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    assert_eq!(
        pg.psql(
            "ct-vis",
            "SELECT pg_catalog.pg_get_userbyid(datdba) || ' ' || (SELECT count(*) FROM devices) \
             FROM pg_database WHERE datname = current_database()"
        ),
        "www-data 400"
    );

    // The stand-in writer makes Concertim-shaped files that rrdtool reads.
    require_tool("rrdtool");
    let rrds = tmp.path().join("rrds");
    let writer = Command::new("sh")
        .arg(trial.join("rrd-writer.sh"))
        .env("RRD_DIR", &rrds)
        .env("DEVICES", "2")
        .env("ONCE", "1")
        .output()
        .unwrap();
    assert!(
        writer.status.success(),
        "rrd-writer.sh: {}",
        String::from_utf8_lossy(&writer.stderr)
    );
    let file = rrds.join("unspecified/device:00000002-0000-4000-8000-000000000000/net:rx.rrd");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 66_760);
    let info = Command::new("rrdtool")
        .arg("info")
        .arg(&file)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("ds[sum].last_ds"), "{info}");
    assert_eq!(
        std::fs::metadata(rrds.join("unspecified/__SummaryInfo__/power.rrd"))
            .unwrap()
            .len(),
        132_224
    );

    // The sidecar's configuration, with the container's paths mapped.
    let host = FakeHost::new();
    let text = std::fs::read_to_string(trial.join("config.yaml")).unwrap();
    assert!(text.contains("signing:") && text.contains("encryption:"));
    let text = host.rewrite(&text).replace(
        "/etc/ccbackup/keys/",
        &format!("{}/", trial.join("keys").display()),
    );
    let cfg = host.dir.path().join("trial.yaml");
    std::fs::write(&cfg, text).unwrap();
    let run = ccbackup(&cfg, &["check-config"]);
    assert!(run.ok(), "{}{}", run.stdout(), run.stderr());
}
