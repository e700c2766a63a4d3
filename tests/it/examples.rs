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
    let tool = find_tool("docker-compose", &[]);
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
