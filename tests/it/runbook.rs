//! README's "Restore runbook for Concertim", run as written.
//!
//! The fenced block between `<!-- runbook:begin` and `<!-- runbook:end -->`
//! is executed by bash, line for line, with stand-ins for what needs Docker:
//! `docker compose run --rm ccbackup-restore ARGS` runs the ccbackup binary
//! with ARGS against a configuration whose paths are temp directories
//! standing for the volumes; the Concertim compose commands (stop, migrate,
//! start) are recorded so their order can be checked; host paths are mapped
//! into the temp tree. A throwaway PostgreSQL 15 cluster stands for the `db`
//! service: restoring globals rewrites every role of a cluster, which the
//! shared server must not suffer. Any other `docker` command fails the test,
//! so an edit of the runbook that breaks the restore breaks this test.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use crate::support_pg::{fingerprint, pg15_bin, Cluster};
use crate::support_rrd::{concertim_tree, require_rrdtool, update, START};

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The runbook's command lines, without the fence.
fn runbook_block() -> String {
    let text = readme();
    let start = text
        .find("<!-- runbook:begin")
        .expect("README has no <!-- runbook:begin --> marker");
    let end = text[start..]
        .find("<!-- runbook:end -->")
        .expect("README has no <!-- runbook:end --> marker")
        + start;
    let block = &text[start..end];
    let body = block
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.rsplit_once("```"))
        .expect("the runbook block is a ```sh fence")
        .0;
    body.to_owned()
}

/// Every regular file and directory under `root`: relative path ->
/// (bytes or None for a directory, mode, uid, gid).
type Tree = BTreeMap<PathBuf, (Option<Vec<u8>>, u32, u32, u32)>;

fn snapshot(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            let bytes = m.is_file().then(|| std::fs::read(&p).unwrap());
            out.insert(rel, (bytes, m.mode() & 0o7777, m.uid(), m.gid()));
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `SELECT` a single value as text.
fn one(c: &Cluster, db: &str, sql: &str) -> String {
    c.psql(db, sql)
}

/// Concertim's database on the throwaway server: `ct-vis` owned by
/// `www-data`, with pgcrypto and encrypted-looking columns.
fn make_database(c: &Cluster) {
    c.psql(
        "postgres",
        "CREATE ROLE \"www-data\" LOGIN PASSWORD 'old-db-password'",
    );
    c.psql("postgres", "CREATE DATABASE \"ct-vis\" OWNER \"www-data\"");
    c.psql("ct-vis", "CREATE EXTENSION pgcrypto");
    c.psql(
        "ct-vis",
        "SET ROLE \"www-data\";
         CREATE TABLE schema_migrations (version text PRIMARY KEY);
         INSERT INTO schema_migrations SELECT '2026' || lpad(g::text, 10, '0') FROM generate_series(1, 40) g;
         CREATE TABLE racks (id bigserial PRIMARY KEY, name text NOT NULL, u_height int, metadata jsonb);
         INSERT INTO racks (name, u_height, metadata)
           SELECT 'rack-' || g, 42, jsonb_build_object('room', 'B' || (g % 3)) FROM generate_series(1, 120) g;
         CREATE TABLE devices (id bigserial PRIMARY KEY, rack_id bigint REFERENCES racks(id), name text, secret_ciphertext bytea);
         INSERT INTO devices (rack_id, name, secret_ciphertext)
           SELECT 1 + (g % 120), 'node ' || g || ' ☃', digest(g::text, 'sha256') FROM generate_series(1, 2000) g;",
    );
}

fn owners(c: &Cluster) -> String {
    format!(
        "{} / {}",
        one(
            c,
            "postgres",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'ct-vis'"
        ),
        one(
            c,
            "ct-vis",
            "SELECT string_agg(tablename || '=' || tableowner, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
        )
    )
}

struct Host {
    ws: Workspace,
    cfg: PathBuf,
    rrd: PathBuf,
    etc: PathBuf,
    secrets: PathBuf,
    side: PathBuf,
    identity: PathBuf,
}

fn host(c: &Cluster) -> Host {
    let ws = Workspace::new();
    let root = ws.path().to_owned();
    let keys = root.join("keys");
    ccbackup(
        &root.join("none.yaml"),
        &["keys", "generate", keys.to_str().unwrap()],
    )
    .expect_ok();
    let (rrd, etc, secrets, side) = (
        root.join("volumes/rrd-data"),
        root.join("opt/concertim/etc"),
        root.join("opt/concertim/opt/docker/secrets"),
        root.join("root/ccbackup-restore"),
    );
    for d in [&rrd, &etc, &secrets, &side] {
        std::fs::create_dir_all(d).unwrap();
    }
    let cfg = ws.config(&format!(
        "store:\n  url: {}\nencryption:\n  recipients_file: {}\njobs:\n  - name: concertim\n    schedule: \"30 2 * * *\"\n    sources:\n      - name: db\n        postgres:\n          host: 127.0.0.1\n          port: {}\n          user: postgres\n          databases: [ct-vis]\n      - name: rrd\n        rrd: {{path: {}}}\n      - name: etc\n        files: {{path: {}}}\n      - name: secrets\n        files: {{path: {}}}\n",
        ws.store_url(),
        keys.join("age-recipient.txt").display(),
        c.port,
        rrd.display(),
        etc.display(),
        secrets.display()
    ));
    Host {
        identity: keys.join("age-identity.txt"),
        ws,
        cfg,
        rrd,
        etc,
        secrets,
        side,
    }
}

fn write_secrets_env(dir: &Path, db_pw: &str, jwt: &str, key: &str) {
    let p = dir.join("secrets.env");
    std::fs::write(
        &p,
        format!("POSTGRES_PASSWORD={db_pw}\nJWT_SECRET={jwt}\nRAILS_MASTER_KEY={key}\n"),
    )
    .unwrap();
    chmod(&p, 0o600);
}

/// What a Concertim install looks like from the host: the names the
/// runbook must find rather than assume (issue 23.2).
struct Layout {
    /// The compose file the operator points `CONCERTIM=` at.
    compose: &'static str,
    /// `docker compose -f FILE config --services`.
    services: &'static [&'static str],
    /// `docker volume ls --format '{{.Name}}'`.
    volumes: &'static [&'static str],
    /// What the runbook must stop (besides `visualisation`) and mount.
    writers: &'static str,
    rrd_volume: &'static str,
}

/// Concertim v1.x installed by its playbook.
const V1: Layout = Layout {
    compose: "/opt/concertim/opt/docker/docker-compose.yml",
    services: &["db", "metric_reporting_daemon", "visualisation", "proxy"],
    volumes: &[
        "concertim_db-data",
        "concertim_rrd-data",
        "ccbackup_ccbackup-tmp",
    ],
    writers: "metric_reporting_daemon",
    rrd_volume: "concertim_rrd-data",
};

/// v1.x with the openstack services: `metrics` writes too, through
/// `visualisation`, and is stopped with the RRD writer.
const V1_OPENSTACK: Layout = Layout {
    compose: "/opt/concertim/opt/docker/docker-compose.yml",
    services: &[
        "db",
        "metric_reporting_daemon",
        "visualisation",
        "proxy",
        "api_server",
        "metrics",
    ],
    volumes: &["concertim_db-data", "concertim_rrd-data"],
    writers: "metric_reporting_daemon metrics",
    rrd_volume: "concertim_rrd-data",
};

/// Concertim 0.x built from the playbook checkout's `docker/` directory
/// (project `concertim_ui`), as its docker README describes.
const V0: Layout = Layout {
    compose: "/root/concertim_ui/docker/docker-compose.yml",
    services: &["metrics", "visualisation", "proxy", "db"],
    volumes: &[
        "concertim_ui_db-data",
        "concertim_ui_rrd-data",
        "concertim_ui_static-content",
        "concertim_ui_concertim-etc",
    ],
    writers: "metrics",
    rrd_volume: "concertim_ui_rrd-data",
};

/// The runbook with host paths mapped into the temp tree, the chosen
/// backup and the layout's compose file filled in (as the operator edits
/// them), after a prelude of stand-ins for docker and `cd`.
fn script(h: &Host, backup: &str, events: &Path, layout: &Layout) -> String {
    let mut body = String::new();
    let mut saw_backup = false;
    let mut saw_compose = false;
    for line in runbook_block().lines() {
        if let Some(rest) = line.strip_prefix("BACKUP=") {
            assert!(!rest.is_empty());
            body.push_str(&format!("BACKUP={backup}\n"));
            saw_backup = true;
            continue;
        }
        if line.starts_with("CONCERTIM=") {
            body.push_str(&format!("CONCERTIM={}\n", layout.compose));
            saw_compose = true;
            continue;
        }
        let mapped = line
            .replace(
                "/run/secrets/age-identity",
                &h.identity.display().to_string(),
            )
            .replace("/root/ccbackup-restore/", &format!("{}/", h.side.display()))
            .replace(" /restore/", &format!(" {}/", h.side.display()))
            .replace(
                "/opt/concertim/opt/docker/secrets/",
                &format!("{}/", h.secrets.display()),
            );
        body.push_str(&mapped);
        body.push('\n');
    }
    assert!(saw_backup, "the runbook sets BACKUP= from the list");
    assert!(
        saw_compose,
        "the runbook sets CONCERTIM= to the compose file"
    );
    format!(
        r#"set -euo pipefail
docker() {{
  local args="$*"
  case "$args" in
    "compose run --rm ccbackup-restore "*)
      shift 4
      echo "ccbackup $* [volume=${{CONCERTIM_RRD_VOLUME:-unset}}]" >> '{events}'
      '{bin}' --config '{cfg}' --log-format text "$@" ;;
    "compose -f {compose} config --services")
      printf '%s\n' {services} ;;
    "volume ls --format {{{{.Name}}}}")
      printf '%s\n' {volumes} ;;
    "compose -f {compose} stop {writers} visualisation")
      echo stop-writers >> '{events}' ;;
    "compose -f {compose} run --rm visualisation bin/rails db:migrate")
      echo migrate >> '{events}' ;;
    "compose -f {compose} start")
      echo start >> '{events}' ;;
    *) echo "runbook test: no stand-in for: docker $args" >&2; exit 97 ;;
  esac
}}
cd() {{
  [ "$1" = /opt/ccbackup ] || {{ echo "runbook test: unexpected cd $1" >&2; exit 98; }}
  builtin cd '{work}'
}}
{body}"#,
        events = events.display(),
        compose = layout.compose,
        services = layout.services.join(" "),
        volumes = layout.volumes.join(" "),
        writers = layout.writers,
        bin = bin(),
        cfg = h.cfg.display(),
        work = h.ws.path().display(),
    )
}

#[test]
fn the_concertim_runbook_restores_everything_after_losing_everything() {
    runbook_after_disaster(Aftermath::Reinstalled, &V1);
}

/// Issue 23.2: the same runbook on a Concertim 0.x host, whose RRD writer
/// is `metrics` and whose volumes carry another project's name.
#[test]
fn regression_issue23_runbook_finds_the_names_of_a_concertim_0x_host() {
    runbook_after_disaster(Aftermath::Reinstalled, &V0);
}

/// Issue 23.1: the RRD volume, `/opt/concertim/etc` and the secrets
/// directory are gone and nothing recreated them (only a new `secrets.env`
/// exists, which the runbook merges into); `ct-vis` is gone too. Every
/// command of the runbook starts anyway and the restores create what is
/// missing. (On a v1.x host with the openstack services, whose `metrics`
/// service is stopped too.)
#[test]
fn regression_issue23_runbook_works_with_every_source_path_deleted() {
    runbook_after_disaster(Aftermath::PathsGone, &V1_OPENSTACK);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Aftermath {
    /// The playbook reinstalled Concertim: empty volumes, a migrated empty
    /// `ct-vis`, a new credentials file.
    Reinstalled,
    /// The source directories do not exist at all and there is no `ct-vis`.
    PathsGone,
}

fn runbook_after_disaster(aftermath: Aftermath, layout: &Layout) {
    require_rrdtool();
    let c = Cluster::start(15, &pg15_bin())
        .unwrap_or_else(|e| panic!("a PostgreSQL 15 cluster is needed: {e}"));
    make_database(&c);
    let h = host(&c);
    let files = concertim_tree(&h.rrd, 3, 4);
    for f in &files {
        assert!(update(&h.rrd.join(&f.rel), START, 40, f.ds).is_some());
    }
    std::fs::write(
        h.etc.join("credentials.yml.enc"),
        b"old rails credentials \x00\xff",
    )
    .unwrap();
    chmod(&h.etc.join("credentials.yml.enc"), 0o600);
    std::fs::write(
        h.etc.join("metric-reporting-daemon.yml"),
        "retention: 90d\n",
    )
    .unwrap();
    write_secrets_env(&h.secrets, "old-db-password", "old-jwt", "old-master-key");

    // The backup to go back to, and what it holds.
    let chosen = ccbackup(&h.cfg, &["run-now"])
        .expect_ok()
        .stdout()
        .trim()
        .to_owned();
    let want_db = fingerprint(&c, "ct-vis");
    let want_owners = owners(&c);
    let (want_rrd, want_etc) = (snapshot(&h.rrd), snapshot(&h.etc));
    // A newer backup the runbook must not pick: it restores the chosen one.
    c.psql(
        "ct-vis",
        "INSERT INTO racks (name) VALUES ('after the chosen backup')",
    );
    assert!(update(&h.rrd.join(&files[0].rel), START + 10_000, 5, files[0].ds).is_some());
    std::fs::write(h.etc.join("credentials.yml.enc"), b"newer").unwrap();
    let newer = ccbackup(&h.cfg, &["run-now"])
        .expect_ok()
        .stdout()
        .trim()
        .to_owned();
    assert_ne!(chosen, newer);

    // Everything is lost; the playbook reinstalls Concertim: new secrets,
    // an empty migrated ct-vis owned by postgres, a new credentials file,
    // an empty RRD volume.
    c.psql("postgres", "DROP DATABASE \"ct-vis\"");
    c.psql("postgres", "DROP ROLE \"www-data\"");
    for d in [&h.rrd, &h.etc, &h.secrets] {
        std::fs::remove_dir_all(d).unwrap();
    }
    if aftermath == Aftermath::Reinstalled {
        for d in [&h.rrd, &h.etc] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(h.etc.join("credentials.yml.enc"), b"fresh install").unwrap();
        c.psql("postgres", "CREATE DATABASE \"ct-vis\"");
        c.psql(
            "ct-vis",
            "CREATE TABLE schema_migrations (version text PRIMARY KEY); INSERT INTO schema_migrations VALUES ('1')",
        );
    }
    // The runbook merges the old RAILS_MASTER_KEY into the new secrets.env.
    std::fs::create_dir_all(&h.secrets).unwrap();
    write_secrets_env(&h.secrets, "new-db-password", "new-jwt", "new-master-key");

    let events = h.ws.path().join("events");
    let sh = h.ws.path().join("runbook.sh");
    std::fs::write(&sh, script(&h, &chosen, &events, layout)).unwrap();
    let out = Command::new("bash").arg(&sh).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the runbook failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );

    // The order the runbook promises.
    let ev: Vec<String> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let pos = |pred: &dyn Fn(&str) -> bool| ev.iter().position(|e| pred(e));
    let first_write = pos(&|e| e.starts_with("ccbackup restore") && !e.contains("--dry-run"))
        .expect("the runbook restores something");
    let stop = pos(&|e| e == "stop-writers").expect("the runbook stops the writers");
    let migrate = pos(&|e| e == "migrate").expect("the runbook migrates");
    assert!(
        stop < first_write,
        "writers stopped after a restore began: {ev:?}"
    );
    assert!(
        ev.iter()
            .rposition(|e| e.starts_with("ccbackup restore"))
            .unwrap()
            < migrate,
        "{ev:?}"
    );
    assert_eq!(ev.last().map(String::as_str), Some("start"), "{ev:?}");
    // Every restore ran with the volume the runbook found.
    let volume = format!("[volume={}]", layout.rrd_volume);
    assert!(
        ev.iter()
            .filter(|e| e.starts_with("ccbackup "))
            .all(|e| e.ends_with(&volume)),
        "{ev:?}"
    );
    assert!(
        stdout.contains(&format!(
            "metric writers: {}; RRD volume: {}",
            layout.writers, layout.rrd_volume
        )),
        "{stdout}"
    );
    assert!(pos(&|e| e.starts_with("ccbackup list")).unwrap() < first_write);

    // The list showed both backups; the dry run ran without --force and
    // said what it would refuse.
    assert!(
        stdout.contains(&chosen) && stdout.contains(&newer),
        "{stdout}"
    );
    if aftermath == Aftermath::Reinstalled {
        // The playbook's ct-vis is there and needs --force.
        assert!(stdout.contains("would be refused"), "{stdout}");
    }
    assert!(stdout.contains("would restore"), "{stdout}");

    // Database: same tables, rows, content and owners as in the chosen backup.
    assert_eq!(fingerprint(&c, "ct-vis"), want_db);
    assert_eq!(owners(&c), want_owners);
    assert!(want_owners.starts_with("www-data / "), "{want_owners}");
    // postgres kept the password ccbackup connects with (--keep-role-passwords).
    // RRD tree and etc: byte-identical, same modes and owners.
    assert_eq!(snapshot(&h.rrd), want_rrd);
    assert_eq!(snapshot(&h.etc), want_etc);
    // secrets.env: the old RAILS_MASTER_KEY (it opens the old
    // credentials.yml.enc), the new installation's other secrets, 0600.
    let env = std::fs::read_to_string(h.secrets.join("secrets.env")).unwrap();
    assert_eq!(
        env,
        "POSTGRES_PASSWORD=new-db-password\nJWT_SECRET=new-jwt\nRAILS_MASTER_KEY=old-master-key\n"
    );
    let mode = std::fs::metadata(h.secrets.join("secrets.env"))
        .unwrap()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!h.side.join("secrets").exists(), "the side copy is removed");
}

/// A dry run over an existing tree lists ten paths and says how many more.
#[test]
fn dry_run_says_how_many_paths_it_did_not_list() {
    let ws = Workspace::new();
    let dir = ws.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..25 {
        std::fs::write(dir.join(format!("f{i:02}")), format!("{i}")).unwrap();
    }
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        dir.display()
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let run = ccbackup(&cfg, &["restore", "--dry-run"]);
    run.expect_ok();
    let out = run.stdout();
    assert!(out.contains("25 existing files would be replaced"), "{out}");
    assert!(out.contains("... and 15 more"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("    f")).count(),
        10,
        "{out}"
    );
}

/// A dry run onto the database the backup came from prints the refusal
/// (and the rest of the plan) instead of failing for lack of --force.
#[test]
fn dry_run_reports_refusals_and_exits_zero() {
    let db = TestDb::create(&unique("ct-vis-dry"));
    db.sql("CREATE TABLE t AS SELECT 1 AS x");
    let ws = Workspace::new();
    let dir = ws.path().join("etc");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("credentials.yml.enc"), "x").unwrap();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n{}      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        postgres_source("db", &[&db.name]),
        dir.display()
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let run = ccbackup(&cfg, &["restore", "--dry-run"]);
    run.expect_ok();
    let out = run.stdout();
    assert!(out.contains("would be refused"), "{out}");
    assert!(out.contains("needs --force"), "{out}");
    assert!(out.contains("would restore"), "{out}");
    // The real thing is still refused, before anything is written.
    let run = ccbackup(&cfg, &["restore", "--source", "db"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
}

/// Restoring files does not need the database secret: an unreadable
/// password_file fails only what connects to that server.
#[test]
fn restoring_files_needs_no_database_password_file() {
    let db = TestDb::create(&unique("ct-vis-nopw"));
    db.sql("CREATE TABLE t AS SELECT 1 AS x");
    let ws = Workspace::new();
    let dir = ws.path().join("etc");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("credentials.yml.enc"), "rails").unwrap();
    let pw = ws.path().join("db-password");
    std::fs::write(&pw, "unused-with-trust\n").unwrap();
    let body = |pw: &Path| {
        format!(
            "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: db\n        postgres:\n          host: {PG_HOST}\n          port: {PG_PORT}\n          user: postgres\n          password_file: {}\n          databases: [\"{}\"]\n      - name: etc\n        files: {{path: {}}}\n",
            ws.store_url(),
            pw.display(),
            db.name,
            dir.display()
        )
    };
    let cfg = ws.config(&body(&pw));
    ccbackup(&cfg, &["run-now"]).expect_ok();

    // The secret is gone (not yet recovered, or unreadable).
    let missing = ws.path().join("secrets/db-password");
    let cfg = ws.config(&body(&missing));
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("etc");
    ccbackup(
        &cfg,
        &["restore", "--source", "etc", "--to", to.to_str().unwrap()],
    )
    .expect_ok();
    assert_eq!(
        std::fs::read(to.join("credentials.yml.enc")).unwrap(),
        b"rails"
    );
    ccbackup(&cfg, &["list"]).expect_ok();

    // What connects fails, naming the file; check-config still refuses.
    let target = format!("{}-restored", db.name);
    let run = ccbackup(&cfg, &["restore", "--source", "db", "--target-db", &target]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr().contains("password_file")
            && run.stderr().contains(&missing.display().to_string()),
        "{}",
        run.stderr()
    );
    let run = ccbackup(&cfg, &["check-config"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    assert!(run.stderr().contains("password_file"), "{}", run.stderr());
}
