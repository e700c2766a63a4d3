//! Issue 24 item 5: a PostgreSQL restart in the middle of a dump is a
//! transient failure that the daemon retries within its budget, decided
//! by asking the server (its postmaster start time changed, or it cannot
//! be reached), not by reading pg_dump's message. A throwaway cluster is
//! restarted for real while `pg_dump` waits on a table lock.

use std::sync::Arc;
use std::time::Duration;

use ccbackup::clock::Clock;
use ccbackup::config;
use ccbackup::daemon::{self, metrics::Metrics, Options};
use tokio_util::sync::CancellationToken;

use crate::support::*;
use crate::support_pg::{pg15_bin, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue24_a_server_restart_mid_dump_is_retried_to_success() {
    require_tool("runuser");
    let cluster = Cluster::start(15, &pg15_bin()).expect("a throwaway PostgreSQL 15 cluster");
    let db = unique("restart");
    cluster.create_db(&db);
    cluster.psql(
        &db,
        "CREATE TABLE big AS SELECT g, md5(g::text) FROM generate_series(1, 1000) g",
    );
    // pg_dump waits for this lock, so the dump is in progress when the
    // server restarts.
    let mut locker = std::process::Command::new(pg15_bin().join("psql"))
        .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-p", &cluster.port.to_string(), "-d", &db, "-c"])
        .arg("BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120); COMMIT;")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    schedule: \"0 3 1 1 *\"\n    run_at_start: always\n    sources:\n      - name: db\n        postgres:\n          host: 127.0.0.1\n          port: {}\n          user: postgres\n          databases: [\"{db}\"]\n          globals: false\n",
        ws.store_url(),
        cluster.port
    ));
    let waiting = |c: &Cluster| {
        c.try_psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ccbackup' AND wait_event_type = 'Lock'",
        )
        .is_ok_and(|n| n == "1")
    };
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::with_clock(Clock::system()));
    let opts = Options {
        listen: Some("127.0.0.1:0".to_owned()),
        metrics: Some(metrics.clone()),
        ..Default::default()
    };
    let task = tokio::spawn(daemon::run(config::load(&cfg).unwrap(), opts, stop.clone()));
    wait_until_async(
        "pg_dump waiting for the lock",
        Duration::from_secs(30),
        || waiting(&cluster),
    )
    .await;

    // The restart an operator or an upgrade does: pg_dump's connection is
    // terminated "due to administrator command", the locker's too.
    let restart = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg15_bin().join("pg_ctl"))
        .args(["restart", "-w", "-m", "fast", "-D"])
        .arg(cluster.dir.join("data"))
        .arg("-l")
        .arg(cluster.dir.join("log"))
        .output()
        .unwrap();
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    let _ = locker.wait();

    let runs = |outcome: &str| {
        metrics
            .get("j")
            .and_then(|s| s.runs.get(outcome).copied())
            .unwrap_or(0)
    };
    wait_until_async("the run to finish", Duration::from_secs(60), || {
        runs("success") + runs("failure") > 0
    })
    .await;
    let s = metrics.get("j").unwrap();
    assert_eq!(runs("success"), 1, "{s:?}");
    assert_eq!(runs("failure"), 0, "{s:?}");
    assert_eq!(ws.manifests().len(), 1);
    stop.cancel();
    task.await.unwrap().unwrap();
    let _ = locker.kill();
}
