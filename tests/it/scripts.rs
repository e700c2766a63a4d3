//! The demo and smoke scripts as an operator runs them (issue 23.13): with
//! `CARGO_TARGET_DIR` pointing elsewhere and database names of their own.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::*;

/// `examples/quickstart.sh` end to end against the real server, with the
/// binary found under `CARGO_TARGET_DIR` and other database names. `cargo`
/// is a stand-in that builds nothing: the test binary's ccbackup sits
/// where a release build would put it.
#[test]
fn regression_issue23_quickstart_honours_cargo_target_dir_and_database_names() {
    require_tool("rrdtool");
    require_tool("zstd");
    let ws = Workspace::new();
    let target = ws.path().join("elsewhere");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::os::unix::fs::symlink(bin(), target.join("release/ccbackup")).unwrap();
    let fake = ws.path().join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("cargo"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(fake.join("cargo"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = unique("qs-demo");
    let restored = unique("qs-demo-restored");
    let _guards = (
        TestDb { name: db.clone() },
        TestDb {
            name: restored.clone(),
        },
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env(
            "PATH",
            format!(
                "{}:{}",
                fake.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("CARGO_TARGET_DIR", &target)
        .env("CCBACKUP_DEMO_DIR", ws.path().join("demo"))
        .env("CCBACKUP_DEMO_DB", &db)
        .env("CCBACKUP_DEMO_RESTORED_DB", &restored)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quickstart failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("quickstart OK"), "{stdout}");
    // Issue 22: the first thing a newcomer runs signs and encrypts.
    assert!(
        stdout.contains("the store holds a signed manifest and only encrypted artifacts"),
        "{stdout}"
    );
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname IN ('{db}', '{restored}')")
        ),
        "2"
    );
}

/// The container smoke test finds the binary under `CARGO_TARGET_DIR` and
/// takes its database name from `CCBACKUP_SMOKE_DB` (it needs podman and
/// root, so it is not run here; its syntax and these two lines are).
#[test]
fn regression_issue23_container_smoke_honours_cargo_target_dir_and_database_name() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/container-smoke.sh");
    let ok = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(ok.success());
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.contains("${CARGO_TARGET_DIR:-target}/release/ccbackup"),
        "the smoke test installs target/release/ccbackup whatever CARGO_TARGET_DIR says"
    );
    assert!(
        !text.contains("install -m 0755 target/release/ccbackup"),
        "a fixed target/ path is left"
    );
    assert!(
        text.contains("db=\"${CCBACKUP_SMOKE_DB:-"),
        "no CCBACKUP_SMOKE_DB"
    );
}
