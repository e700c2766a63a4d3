//! Issue 22, authenticated by default: an unsigned store is said loudly
//! (check-config, doctor, `/metrics`), and a store that moves to signing
//! keeps its older unsigned backups readable and prunable without ever
//! letting an unsigned backup outrank a signed one.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

fn keys(ws: &Workspace) -> PathBuf {
    let dir = ws.path().join("keys");
    keys_generate(&dir);
    dir
}

fn config(ws: &Workspace, src: &Path, signing: &str, retention: &str) -> PathBuf {
    ws.config(&format!(
        "store:\n  url: {}\n{signing}jobs:\n  - name: j\n    retention: {{{retention}}}\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        src.display()
    ))
}

fn list(cfg: &Path) -> Vec<serde_json::Value> {
    let run = ccbackup(cfg, &["list", "--json"]);
    run.expect_ok();
    serde_json::from_str(&run.stdout()).unwrap()
}

fn by_id<'a>(rows: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["backup_id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {rows:?}"))
}

#[test]
fn an_unsigned_store_is_said_loudly() {
    let ws = Workspace::new();
    let src = ws.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    let unsigned = config(&ws, &src, "", "keep_last: 3");
    let run = ccbackup(&unsigned, &["check-config"]);
    run.expect_ok();
    assert!(
        run.stdout()
            .contains("warning: the store is not authenticated")
            && run.stdout().contains("forged dump runs its SQL on restore")
            && run.stdout().contains("keys generate"),
        "{}",
        run.stdout()
    );
    let doctor = ccbackup(&unsigned, &["doctor", "--json"]);
    assert!(
        doctor.stdout().contains("NOT AUTHENTICATED"),
        "{}{}",
        doctor.stdout(),
        doctor.stderr()
    );

    let k = keys(&ws);
    let signed = config(
        &ws,
        &src,
        &format!(
            "signing:\n  secret_key_file: {}\n",
            k.join("minisign.key").display()
        ),
        "keep_last: 3",
    );
    let run = ccbackup(&signed, &["check-config"]);
    run.expect_ok();
    assert!(
        !run.stdout().contains("not authenticated"),
        "{}",
        run.stdout()
    );
    let doctor = ccbackup(&signed, &["doctor", "--json"]);
    assert!(
        !doctor.stdout().contains("NOT AUTHENTICATED")
            && doctor.stdout().contains("only manifests signed by"),
        "{}",
        doctor.stdout()
    );
}

#[test]
fn the_metrics_say_whether_the_store_is_authenticated() {
    let m = ccbackup::daemon::metrics::Metrics::new(chrono::Utc::now());
    assert!(m.render().contains("\nccbackup_store_authenticated 0\n"));
    m.set_authenticated(true);
    assert!(m.render().contains("\nccbackup_store_authenticated 1\n"));
}

/// Rewrites the manifest of `from` into a new backup directory `id`, as
/// someone with write access to the store could (unsigned).
fn plant(ws: &Workspace, from: &str, id: &str) {
    let job = ws.store_dir().join("j");
    let dst = job.join(id);
    let st = Command::new("cp")
        .arg("-a")
        .arg(job.join(from))
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    let _ = std::fs::remove_file(dst.join("manifest.json.minisig"));
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dst.join("manifest.json")).unwrap()).unwrap();
    let t = ccbackup::repo::store::backup_id_time(id).unwrap();
    m["id"] = id.into();
    m["started_at"] = t.to_rfc3339().into();
    m["finished_at"] = t.to_rfc3339().into();
    std::fs::write(dst.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
}

fn id_at(t: chrono::DateTime<chrono::Utc>) -> String {
    format!("{}-fa4ed0", t.format("%Y%m%dT%H%M%SZ"))
}

#[test]
fn a_store_moving_to_signing_keeps_its_unsigned_history_below_the_signed_backups() {
    let ws = Workspace::new();
    let src = ws.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("credentials.yml.enc"), "v1").unwrap();
    let unsigned = config(&ws, &src, "", "keep_last: 10");
    let b1 = ccbackup(&unsigned, &["run-now"])
        .expect_ok()
        .stdout()
        .trim()
        .to_owned();
    std::fs::write(src.join("credentials.yml.enc"), "v2").unwrap();
    let b2 = ccbackup(&unsigned, &["run-now"])
        .expect_ok()
        .stdout()
        .trim()
        .to_owned();

    // The move: a key, and the time before which unsigned backups count.
    // Operators set it to when they switch; an hour ahead shows that even a
    // careless cut cannot admit an unsigned backup newer than a signed one.
    let k = keys(&ws);
    let cut = chrono::Utc::now() + chrono::Duration::hours(1);
    let signing = format!(
        "signing:\n  secret_key_file: {}\n  unsigned_before: {}\n",
        k.join("minisign.key").display(),
        cut.to_rfc3339()
    );
    let signed = config(&ws, &src, &signing, "keep_last: 10");
    std::fs::write(src.join("credentials.yml.enc"), "v3").unwrap();
    let s1 = ccbackup(&signed, &["run-now"])
        .expect_ok()
        .stdout()
        .trim()
        .to_owned();
    let s1_time = ccbackup::repo::store::backup_id_time(&s1).unwrap();

    // A forgery from someone who holds the bucket key but not the signing
    // key: unsigned, dated after the signed backup and before the cut.
    let forged = id_at(s1_time + chrono::Duration::seconds(90));
    plant(&ws, &b2, &forged);

    let rows = list(&signed);
    assert_eq!(by_id(&rows, &b1)["trust"], "legacy", "{rows:?}");
    assert_eq!(by_id(&rows, &b2)["trust"], "legacy");
    assert_eq!(by_id(&rows, &s1)["trust"], "signed");
    let f = by_id(&rows, &forged);
    assert_eq!(f["status"], "untrusted", "{f}");
    assert!(
        f["problem"].as_str().unwrap().contains("first signed"),
        "{f}"
    );
    let text = ccbackup(&signed, &["list"]).expect_ok().stdout();
    assert!(
        text.lines()
            .any(|l| l.contains(&b1) && l.contains("(unsigned, from before signing)")),
        "{text}"
    );

    // Without the cut, the old backups are what they always were with
    // signing on: untrusted.
    let strict = config(
        &ws,
        &src,
        &format!(
            "signing:\n  secret_key_file: {}\n",
            k.join("minisign.key").display()
        ),
        "keep_last: 10",
    );
    let rows = list(&strict);
    assert_eq!(by_id(&rows, &b1)["status"], "untrusted");
    // (All configs are the workspace's one config.yaml: write the cut back.)
    let signed = config(&ws, &src, &signing, "keep_last: 10");

    // Readable: a legacy backup restores.
    let to = ws.path().join("restored");
    ccbackup(
        &signed,
        &[
            "restore",
            "--backup",
            &b1,
            "--source",
            "etc",
            "--to",
            to.to_str().unwrap(),
        ],
    )
    .expect_ok();
    assert_eq!(
        std::fs::read_to_string(to.join("credentials.yml.enc")).unwrap(),
        "v1"
    );

    // Prunable, and never ahead of a signed backup: keep_last 2 keeps the
    // signed backup and the newest legacy one, deletes the oldest, and
    // leaves the forgery alone (untrusted objects are never deleted).
    let pruning = config(&ws, &src, &signing, "keep_last: 2");
    ccbackup(&pruning, &["prune"]).expect_ok();
    let rows = list(&pruning);
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["backup_id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&b1.as_str()), "{ids:?}");
    assert!(
        ids.contains(&b2.as_str()) && ids.contains(&s1.as_str()),
        "{ids:?}"
    );
    assert_eq!(by_id(&rows, &forged)["status"], "untrusted");
}
