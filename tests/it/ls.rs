//! Issue 19 part 2: `ccbackup ls` lists what a backup holds without
//! restoring it, from real backups (files, RRD trees made by rrdtool,
//! PostgreSQL 15 and 16 dumps, encrypted backups), and stays safe on
//! corrupt artifacts, crafted archives and crafted manifests.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;
use crate::support_pg::{job_config, pg16, pg18_bin, pg_source};
use crate::support_rrd;

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn files_config(ws: &Workspace, data: &Path, extra: &str) -> PathBuf {
    ws.config(&format!(
        "store:\n  url: {}\n{extra}jobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        data.display()
    ))
}

/// Whether `s` holds a character a terminal would act on (other than the
/// line breaks between entries).
fn has_raw_controls(s: &str) -> bool {
    s.chars()
        .any(|c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c))
}

/// `ls --json` parsed; the document must be whole and valid JSON.
pub fn ls_json(cfg: &Path, args: &[&str]) -> (Run, Value) {
    let mut all = vec!["ls", "--json"];
    all.extend_from_slice(args);
    let run = ccbackup(cfg, &all);
    let doc: Value = serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("ls --json is not JSON ({e}):\n{}", run.stdout()));
    (run, doc)
}

/// The exact bytes of a listed path: `path_hex` when it is not UTF-8.
fn path_bytes(item: &Value) -> Vec<u8> {
    match item["path_hex"].as_str() {
        Some(h) => hex::decode(h).unwrap(),
        None => item["path"].as_str().unwrap().as_bytes().to_vec(),
    }
}

/// A tree with the names Concertim and operators produce, and the ones
/// that must not reach a terminal raw: `(dir, names as bytes)`.
fn odd_tree() -> (tempfile::TempDir, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let names: Vec<&[u8]> = vec![
        b"device:1a2b cpu load.txt",
        "température °C".as_bytes(),
        b"latin1-\xe9t\xe9",
        b"esc-\x1b[31mred\x1b[0m",
        b"line\nbreak",
        b"<b onclick=x>markup",
        b"back\\slash",
    ];
    std::fs::create_dir(root.join("sub dir")).unwrap();
    let mut out = Vec::new();
    for n in &names {
        let rel = Path::new("sub dir").join(std::ffi::OsStr::from_bytes(n));
        std::fs::write(root.join(&rel), b"12345").unwrap();
        out.push(rel.as_os_str().as_bytes().to_vec());
    }
    symlink("sub dir/latin1-x", root.join("link")).unwrap();
    (dir, out)
}

#[test]
fn ls_lists_a_files_tree_byte_exact_with_odd_names_shown_safely() {
    let (data, names) = odd_tree();
    let ws = Workspace::new();
    let cfg = files_config(&ws, data.path(), "");
    ccbackup(&cfg, &["run-now"]).expect_ok();

    let run = ccbackup(&cfg, &["ls"]);
    run.expect_ok();
    let out = run.stdout();
    assert!(!has_raw_controls(&out), "{out:?}");
    for shown in [
        "  sub dir/device:1a2b cpu load.txt\n",
        "  sub dir/température °C\n",
        "  sub dir/latin1-\\xe9t\\xe9\n",
        "  sub dir/esc-\\u{1b}[31mred\\u{1b}[0m\n",
        "  sub dir/line\\nbreak\n",
        "  sub dir/<b onclick=x>markup\n",
        "  sub dir/back\\\\slash\n",
        "  sub dir/\n",
        "  link -> sub dir/latin1-x\n",
        "ok: etc.tar.zst: checksum verified, 9 listed\n",
    ] {
        assert!(out.contains(shown), "no {shown:?} in\n{out}");
    }

    let long = ccbackup(&cfg, &["ls", "--long"]);
    long.expect_ok();
    let line = long
        .stdout()
        .lines()
        .find(|l| l.ends_with("température °C"))
        .unwrap()
        .to_owned();
    assert!(line.trim_start().starts_with("-rw-"), "{line}");
    assert!(line.contains(" 5 "), "{line}");

    // JSON gives every name back exactly, with bytes for the non-UTF-8 one.
    let (run, doc) = ls_json(&cfg, &[]);
    run.expect_ok();
    assert_eq!(doc["outcome"], "success");
    assert_eq!(doc["artifacts"][0]["outcome"], "verified");
    assert!(!has_raw_controls(&run.stdout()), "{}", run.stdout());
    let items = doc["items"].as_array().unwrap();
    let listed: Vec<Vec<u8>> = items.iter().map(path_bytes).collect();
    for n in &names {
        assert!(
            listed.contains(n),
            "{:?} not listed",
            String::from_utf8_lossy(n)
        );
    }
    let latin = items
        .iter()
        .find(|i| i["path_hex"].is_string())
        .expect("the latin1 name has its bytes");
    assert_eq!(latin["path"], "sub dir/latin1-\\xe9t\\xe9");
    let link = items.iter().find(|i| i["type"] == "symlink").unwrap();
    assert_eq!(link["link_target"], "sub dir/latin1-x");
    let file = items
        .iter()
        .find(|i| i["path"] == "sub dir/<b onclick=x>markup")
        .unwrap();
    assert_eq!(
        (file["size"].as_u64(), file["type"].as_str()),
        (Some(5), Some("file"))
    );

    // Globs select like restore's --include.
    let run = ccbackup(&cfg, &["ls", "sub dir/*°C", "link"]);
    run.expect_ok();
    let out = run.stdout();
    let entries: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  ") && !l.contains("ok:"))
        .collect();
    assert_eq!(
        entries,
        ["  link -> sub dir/latin1-x", "  sub dir/température °C"]
    );

    // The worst day: the source is gone, and ls still reads the store.
    let gone = data.path().with_extension("gone");
    std::fs::rename(data.path(), &gone).unwrap();
    let run = ccbackup(&cfg, &["ls", "link"]);
    std::fs::rename(&gone, data.path()).unwrap();
    run.expect_ok();
    assert!(
        run.stdout().contains("  link -> sub dir/latin1-x\n"),
        "{}",
        run.stdout()
    );
}

#[test]
fn ls_lists_real_rrd_files_and_only_the_source_asked_for() {
    support_rrd::require_rrdtool();
    let rrd = tempfile::tempdir().unwrap();
    let files = support_rrd::concertim_tree(rrd.path(), 2, 4);
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("credentials.yml.enc"), b"x").unwrap();
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n      - name: rrd\n        rrd: {{path: {}}}\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        rrd.path().display(),
        etc.path().display()
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let (run, doc) = ls_json(&cfg, &["--source", "rrd"]);
    run.expect_ok();
    let items = doc["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["source"] == "rrd"), "{doc}");
    for f in &files {
        let rel = f.rel.as_os_str().as_bytes();
        let item = items
            .iter()
            .find(|i| path_bytes(i) == rel)
            .unwrap_or_else(|| panic!("{} not listed", f.rel.display()));
        let size = std::fs::metadata(rrd.path().join(&f.rel)).unwrap().len();
        assert_eq!(item["size"].as_u64(), Some(size));
        assert_eq!(size, if f.ds == 1 { 66_760 } else { 132_224 });
    }
    let text = ccbackup(&cfg, &["ls", "--source", "rrd", "**/__SummaryInfo__/*"]);
    text.expect_ok();
    assert!(
        text.stdout()
            .contains("  unspecified/__SummaryInfo__/power usage (W).rrd\n"),
        "{}",
        text.stdout()
    );
    assert!(!text.stdout().contains("device:"), "{}", text.stdout());
    let run = ccbackup(&cfg, &["ls", "--source", "nope"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("has no source `nope` (it has: rrd, etc)"),
        "{}",
        run.stderr()
    );
}

/// A PostgreSQL backup of `db` (holding [`fill_mixed`] plus an index and a
/// view) with its globals; the role `role` exists on the server.
fn check_pg_listing(out: &str, db: &str, role: &str) {
    for shown in [
        format!("  database {db} (PostgreSQL "),
        "    TABLE app.racks (500 rows)\n".to_owned(),
        "    TABLE odd schema.Devices:x (37 rows)\n".to_owned(),
        "    TABLE public.empty_table (0 rows)\n".to_owned(),
        "    SEQUENCE app.racks_id_seq\n".to_owned(),
        "    INDEX app.racks_name_idx\n".to_owned(),
        "    VIEW app.rack_names\n".to_owned(),
        "    SCHEMA app\n".to_owned(),
        "    CONSTRAINT app.racks racks_pkey\n".to_owned(),
        format!("  role {role} (CREATEDB LOGIN)\n"),
        "  ok: db/globals.sql.zst: checksum verified".to_owned(),
    ] {
        assert!(out.contains(&shown), "no {shown:?} in\n{out}");
    }
    assert!(!out.contains("TABLE DATA"), "{out}");
    assert!(!out.to_lowercase().contains("scram-sha-256"), "{out}");
}

fn fill_for_ls(sql: impl Fn(&str)) {
    sql("CREATE INDEX racks_name_idx ON app.racks (name); \
         CREATE VIEW app.rack_names AS SELECT name FROM app.racks;");
}

#[test]
fn ls_lists_databases_tables_rows_toc_and_roles_on_15() {
    let db = TestDb::create(&unique("ls_pg"));
    fill_mixed(&db);
    fill_for_ls(|s| {
        db.sql(s);
    });
    let role = unique("ls_role");
    psql(
        "postgres",
        &format!("CREATE ROLE {role} LOGIN CREATEDB PASSWORD 'not shown'"),
    );
    struct DropRole(String);
    impl Drop for DropRole {
        fn drop(&mut self) {
            let _ = std::process::Command::new("psql")
                .args([
                    "-X", "-q", "-h", PG_HOST, "-U", "postgres", "-d", "postgres", "-c",
                ])
                .arg(format!("DROP ROLE IF EXISTS {}", self.0))
                .output();
        }
    }
    let _role = DropRole(role.clone());
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n{}",
        ws.store_url(),
        postgres_source("db", &[&db.name])
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let run = ccbackup(&cfg, &["ls"]);
    run.expect_ok();
    check_pg_listing(&run.stdout(), &db.name, &role);

    let long = ccbackup(&cfg, &["ls", "--long"]);
    long.expect_ok();
    assert!(
        long.stdout()
            .contains("    TABLE app.racks (500 rows, owner postgres)\n"),
        "{}",
        long.stdout()
    );

    let (run, doc) = ls_json(&cfg, &[]);
    run.expect_ok();
    let items = doc["items"].as_array().unwrap();
    let racks = items
        .iter()
        .find(|i| i["type"] == "table" && i["name"] == "racks")
        .unwrap();
    assert_eq!(
        (racks["schema"].as_str(), racks["rows"].as_i64()),
        (Some("app"), Some(500))
    );
    assert_eq!(racks["database"], db.name.as_str());
    assert!(items
        .iter()
        .any(|i| i["type"] == "role" && i["name"] == role.as_str()));
    assert!(items
        .iter()
        .any(|i| i["type"] == "toc" && i["desc"] == "SEQUENCE" && i["name"] == "racks_id_seq"));
    // The TOC is the one `pg_restore -l` prints, entry for entry.
    let dump = ws
        .stored_files()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".dump.zst"))
        .unwrap();
    let raw = ws.path().join("dump.raw");
    std::fs::write(&raw, unzstd(&dump)).unwrap();
    let out = std::process::Command::new("pg_restore")
        .arg("-l")
        .arg(&raw)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8(out.stdout).unwrap();
    let entries: Vec<&str> = listed
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .collect();
    let from_dump: Vec<&Value> = items
        .iter()
        .filter(|i| i["type"] == "toc" || i["type"] == "table")
        .collect();
    let table_data = entries
        .iter()
        .filter(|l| l.contains(" TABLE DATA "))
        .count();
    assert_eq!(from_dump.len(), entries.len() - table_data, "{listed}");
    for i in items.iter().filter(|i| i["type"] == "toc") {
        let id = format!("{}; ", i["dump_id"]);
        let line = entries
            .iter()
            .find(|l| l.starts_with(&id))
            .unwrap_or_else(|| panic!("dump id {id} not in\n{listed}"));
        let name = i["name"].as_str().unwrap();
        let desc = i["desc"].as_str().unwrap();
        assert!(
            line.contains(&format!(" {desc} ")) && line.contains(name),
            "{i} vs {line}"
        );
    }

    // Globs select tree paths, which a database-only backup has none of.
    let run = ccbackup(&cfg, &["ls", "--long", "x*"]);
    assert_eq!(run.code(), Some(2), "{}", run.stdout());
    assert!(!run.stdout().contains("TABLE"), "{}", run.stdout());
    assert!(
        run.stderr()
            .contains("GLOBs select paths of RRD and directory sources, and backup"),
        "{}",
        run.stderr()
    );
}

#[test]
fn ls_reads_an_18_client_dump_of_a_16_server() {
    let c = pg16();
    let db = unique("ls_pg16");
    c.create_db(&db);
    c.psql(
        &db,
        "CREATE SCHEMA app; CREATE TABLE app.racks (id bigserial PRIMARY KEY, name text); \
         INSERT INTO app.racks (name) SELECT 'r' || g FROM generate_series(1, 42) g; \
         CREATE INDEX racks_name_idx ON app.racks (name);",
    );
    let ws = Workspace::new();
    let cfg = ws.config(&job_config(
        &ws.store_url(),
        &pg_source("db", c.port, &format!("[\"{db}\"]"), Some(&pg18_bin()), ""),
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let run = ccbackup(&cfg, &["ls"]);
    run.expect_ok();
    let out = run.stdout();
    assert!(
        out.contains(&format!("  database {db} (PostgreSQL 16.")),
        "{out}"
    );
    assert!(out.contains("pg_dump 18."), "{out}");
    assert!(out.contains("    TABLE app.racks (42 rows)\n"), "{out}");
    assert!(out.contains("    INDEX app.racks_name_idx\n"), "{out}");
    c.psql("postgres", &format!("DROP DATABASE {}", quote_ident(&db)));
}

#[test]
fn ls_of_an_encrypted_backup_needs_the_identity() {
    let keys = tempfile::tempdir().unwrap();
    keys_generate(&keys.path().join("k"));
    let k = keys.path().join("k");
    let recipient = std::fs::read_to_string(k.join("age-recipient.txt")).unwrap();
    let (data, _) = odd_tree();
    let ws = Workspace::new();
    let cfg = files_config(
        &ws,
        data.path(),
        &format!("encryption:\n  recipients: [\"{}\"]\n", recipient.trim()),
    );
    ccbackup(&cfg, &["run-now"]).expect_ok();

    let run = ccbackup(&cfg, &["ls"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr().contains("needs an age identity"),
        "{}",
        run.stderr()
    );
    assert!(!run.stdout().contains("sub dir"), "{}", run.stdout());
    let (run, doc) = ls_json(&cfg, &[]);
    assert_eq!(run.code(), Some(1));
    assert_eq!(doc["outcome"], "failure");
    assert_eq!(doc["items"], serde_json::json!([]));
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("needs an age identity"),
        "{doc}"
    );

    let other = tempfile::tempdir().unwrap();
    keys_generate(&other.path().join("k"));
    let wrong = other.path().join("k/age-identity.txt");
    let run = ccbackup(&cfg, &["ls", "--identity", wrong.to_str().unwrap()]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr().contains("does not match any recipient"),
        "{}",
        run.stderr()
    );

    let id = k.join("age-identity.txt");
    let run = ccbackup(&cfg, &["ls", "--identity", id.to_str().unwrap()]);
    run.expect_ok();
    assert!(
        run.stdout().contains("  sub dir/température °C\n"),
        "{}",
        run.stdout()
    );
    assert!(run.stdout().contains("ok: etc.tar.zst: checksum verified"));
}

#[test]
fn ls_of_a_corrupt_artifact_fails_loudly_and_marks_what_it_listed() {
    let data = tempfile::tempdir().unwrap();
    for i in 0..200 {
        std::fs::write(data.path().join(format!("f{i:03}")), format!("{i}")).unwrap();
    }
    let ws = Workspace::new();
    let cfg = files_config(&ws, data.path(), "");
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let mpath = ws.manifests().remove(0);
    let art = mpath.parent().unwrap().join("etc.tar.zst");
    let mut bytes = std::fs::read(&art).unwrap();
    let last = bytes.len() - 8;
    bytes[last] ^= 0x40;
    std::fs::write(&art, &bytes).unwrap();

    let run = ccbackup(&cfg, &["ls"]);
    assert_eq!(run.code(), Some(1), "{}", run.stdout());
    let out = run.stdout();
    assert!(out.contains("!! etc.tar.zst: NOT TRUSTWORTHY"), "{out}");
    assert!(!out.contains("ok: etc.tar.zst"), "{out}");
    assert!(run.stderr().contains("sha256 differs"), "{}", run.stderr());
    assert!(run.stderr().contains("NOT TRUSTWORTHY"), "{}", run.stderr());

    let (run, doc) = ls_json(&cfg, &[]);
    assert_eq!(run.code(), Some(1));
    assert_eq!(doc["outcome"], "failure");
    assert_eq!(doc["artifacts"][0]["outcome"], "untrusted");
    assert!(doc["error"].as_str().unwrap().contains("NOT TRUSTWORTHY"));
}

/// Puts `stored` in place of the backup's only artifact and fixes up the
/// manifest's sizes, checksum and counts, as anyone with store access can.
fn plant(mpath: &Path, raw: &[u8], recorded: u64) {
    let mut m = read_json(mpath);
    let a = &mut m["artifacts"][0];
    let art = mpath.parent().unwrap().join(a["key"].as_str().unwrap());
    let stored = zstd::encode_all(raw, 3).unwrap();
    std::fs::write(&art, &stored).unwrap();
    a["stored_bytes"] = serde_json::json!(stored.len());
    a["raw_bytes"] = serde_json::json!(raw.len());
    a["sha256"] = serde_json::json!(sha256_file(&art));
    a["tree"]["files"] = serde_json::json!(recorded);
    a["tree"]["dirs"] = serde_json::json!(0);
    a["tree"]["symlinks"] = serde_json::json!(0);
    write_json(mpath, &m);
}

/// A GNU tar of empty regular files named by raw bytes (< 100 each).
fn crafted_tar(names: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in names {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..n.len()].copy_from_slice(n);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn one_file_backup() -> (tempfile::TempDir, Workspace, PathBuf, PathBuf) {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("a.txt"), b"real").unwrap();
    let ws = Workspace::new();
    let cfg = files_config(&ws, data.path(), "");
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let mpath = ws.manifests().remove(0);
    (data, ws, cfg, mpath)
}

#[test]
fn ls_shows_crafted_names_inert_and_refuses_what_restore_refuses() {
    let (_data, _ws, cfg, mpath) = one_file_backup();
    let names: Vec<Vec<u8>> = vec![
        b"\x1b]0;pwned\x07title".to_vec(),
        b"\x1b[2J\x1b[Hclear".to_vec(),
        b"<script>alert(1)<\\script>".to_vec(),
        "evil\u{202e}txt.exe".as_bytes().to_vec(),
        "csi\u{9b}31m".as_bytes().to_vec(),
        b"cr\rover".to_vec(),
    ];
    plant(&mpath, &crafted_tar(&names), names.len() as u64);
    let run = ccbackup(&cfg, &["ls"]);
    run.expect_ok();
    let out = run.stdout();
    assert!(!has_raw_controls(&out), "{out:?}");
    for shown in [
        "  \\u{1b}]0;pwned\\u{7}title\n",
        "  \\u{1b}[2J\\u{1b}[Hclear\n",
        "  <script>alert(1)<\\\\script>\n",
        "  evil\\u{202e}txt.exe\n",
        "  csi\\u{9b}31m\n",
        "  cr\\rover\n",
    ] {
        assert!(out.contains(shown), "no {shown:?} in\n{out}");
    }
    let (run, doc) = ls_json(&cfg, &[]);
    run.expect_ok();
    assert!(!has_raw_controls(&run.stdout()), "{:?}", run.stdout());
    let listed: Vec<Vec<u8>> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(path_bytes)
        .collect();
    assert_eq!(listed, names);

    // A path restore would refuse stops the listing with restore's words.
    plant(
        &mpath,
        &crafted_tar(&[b"ok".to_vec(), b"../../etc/passwd".to_vec()]),
        2,
    );
    let run = ccbackup(&cfg, &["ls"]);
    assert_eq!(run.code(), Some(1));
    assert!(run.stdout().contains("  ok\n"), "{}", run.stdout());
    assert!(
        run.stdout()
            .contains("!! etc.tar.zst: listing stopped after 1"),
        "{}",
        run.stdout()
    );
    assert!(run.stderr().contains("`..` component"), "{}", run.stderr());
}

#[test]
fn ls_caps_entry_counts_and_metadata_of_crafted_archives() {
    let (_data, _ws, cfg, mpath) = one_file_backup();
    // 20,000 entries where the manifest records 10: listing stops at 11.
    let many: Vec<Vec<u8>> = (0..20_000).map(|i| format!("e{i}").into_bytes()).collect();
    plant(&mpath, &crafted_tar(&many), 10);
    let run = ccbackup(&cfg, &["ls"]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert_eq!(
        run.stdout()
            .lines()
            .filter(|l| l.starts_with("  e"))
            .count(),
        11,
        "{}",
        run.stdout()
    );
    assert!(
        run.stderr()
            .contains("holds more than 11 entries although its manifest records 10"),
        "{}",
        run.stderr()
    );

    // 200,000 entries the manifest agrees to are all listed, in bounded memory.
    let many: Vec<Vec<u8>> = (0..200_000)
        .map(|i| format!("d/e{i}").into_bytes())
        .collect();
    plant(&mpath, &crafted_tar(&many), 200_000);
    let run = ccbackup(&cfg, &["ls"]);
    run.expect_ok();
    assert!(
        run.stdout()
            .ends_with("  ok: etc.tar.zst: checksum verified, 200000 listed\n"),
        "{}",
        run.stderr()
    );
    let rss = ls_peak_rss(&cfg);
    assert!(
        rss < 60 * 1024,
        "ls of 200,000 entries peaked at {} MiB",
        rss / 1024
    );

    // A 1 MiB GNU long name (a few KiB stored) is refused, not read into memory.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "x".repeat(1 << 20), &[][..]).unwrap();
    plant(&mpath, &b.into_inner().unwrap(), 1);
    let run = ccbackup(&cfg, &["ls"]);
    assert_eq!(run.code(), Some(1));
    assert!(run.stderr().contains("long-name"), "{}", run.stderr());

    // A manifest that calls the tree the globals but keeps its `tree`
    // record contradicts itself: refused before anything is read.
    plant(&mpath, &crafted_tar(&[b"a".to_vec()]), 1);
    let mut m = read_json(&mpath);
    m["artifacts"][0]["kind"] = serde_json::json!("pg_globals");
    write_json(&mpath, &m);
    let run = ccbackup(&cfg, &["ls"]);
    assert_eq!(run.code(), Some(1), "{}", run.stdout());
    assert!(
        run.stderr()
            .contains("of kind `pg_globals` records `tree`, which that kind never has"),
        "{}",
        run.stderr()
    );
    assert!(!run.stdout().contains("  a\n"), "{}", run.stdout());
    // Without the `tree` record it is the globals, and gets their checks.
    let tree = m["artifacts"][0]["tree"].take();
    m["artifacts"][0].as_object_mut().unwrap().remove("tree");
    write_json(&mpath, &m);
    let run = ccbackup(&cfg, &["ls"]);
    assert_eq!(run.code(), Some(1), "{}", run.stdout());
    assert!(
        run.stderr().contains("refusing the globals"),
        "{}",
        run.stderr()
    );
    assert!(!run.stdout().contains("  role"), "{}", run.stdout());

    // The manifest's raw size caps decompression.
    m["artifacts"][0]["tree"] = tree;
    write_json(&mpath, &m);
    let raw = crafted_tar(&[b"a".to_vec(), b"b".to_vec()]);
    plant(&mpath, &raw, 2);
    let mut m = read_json(&mpath);
    m["artifacts"][0]["kind"] = serde_json::json!("files_tar");
    m["artifacts"][0]["raw_bytes"] = serde_json::json!(600);
    write_json(&mpath, &m);
    let run = ccbackup(&cfg, &["ls"]);
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr()
            .contains("decompresses to more than the 600 bytes"),
        "{}",
        run.stderr()
    );
}

#[test]
fn ls_shows_crafted_manifest_names_inert() {
    let db = TestDb::create(&unique("ls_crafted"));
    db.sql("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);");
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: j\n    sources:\n{}",
        ws.store_url(),
        postgres_source("db", &[&db.name])
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();
    let mpath = ws.manifests().remove(0);
    let mut m = read_json(&mpath);
    for a in m["artifacts"].as_array_mut().unwrap() {
        if a["kind"] == "pg_dump" {
            a["postgres"]["database"] = serde_json::json!("x\u{1b}[2J<img src=x onerror=alert(1)>");
            a["postgres"]["server_version"] = serde_json::json!("15\u{1b}]0;t\u{7}");
            a["postgres"]["tables"] = serde_json::json!([
                {"schema": "public", "table": "t", "rows": 99}
            ]);
        }
    }
    write_json(&mpath, &m);
    let run = ccbackup(&cfg, &["ls"]);
    run.expect_ok();
    let out = run.stdout();
    assert!(!has_raw_controls(&out), "{out:?}");
    assert!(
        out.contains(
            "  database x\\u{1b}[2J<img src=x onerror=alert(1)> (PostgreSQL 15\\u{1b}]0;t\\u{7}, "
        ),
        "{out}"
    );
    // The rows are the manifest's; the tables are the archive's.
    assert!(out.contains("    TABLE public.t (99 rows)\n"), "{out}");
    let (run, doc) = ls_json(&cfg, &[]);
    run.expect_ok();
    assert!(!has_raw_controls(&run.stdout()), "{:?}", run.stdout());
    let dbi = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "database")
        .unwrap();
    assert_eq!(dbi["database"], "x\u{1b}[2J<img src=x onerror=alert(1)>");
}

/// Peak RSS (KiB) of `ccbackup ls` on `cfg`, which must succeed.
fn ls_peak_rss(cfg: &Path) -> i64 {
    let (code, rss) = crate::hardening::run_measuring_rss(cfg, &["ls", "--long"]);
    assert_eq!(code, 0);
    rss
}

#[test]
fn ls_streams_a_large_artifact_from_s3_and_a_file_store_in_bounded_memory() {
    use crate::support_s3::{create_bucket, random_file, start_moto};
    let data = tempfile::tempdir().unwrap();
    // Incompressible: the stored artifact is as large as the data.
    random_file(&data.path().join("big.bin"), 64 << 20);
    std::fs::write(data.path().join("small:1.txt"), b"small").unwrap();
    let server = start_moto(false);
    create_bucket(&server, "ccb-ls");
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "jobs:\n  - name: j\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        data.path().display()
    );
    let s3 = dir.path().join("s3.yaml");
    std::fs::write(
        &s3,
        format!(
            "store:\n  url: s3://ccb-ls/x\n  part_size: 8MiB\n  options:\n    endpoint: {}\n    allow_http: true\n    region: eu-west-2\n    access_key_id: AKIATESTING\n    secret_access_key: testing\n{source}",
            server.endpoint()
        ),
    )
    .unwrap();
    let local = dir.path().join("file.yaml");
    std::fs::write(
        &local,
        format!(
            "store:\n  url: file://{}/store\n{source}",
            dir.path().display()
        ),
    )
    .unwrap();
    for cfg in [&s3, &local] {
        ccbackup(cfg, &["run-now"]).expect_ok();
        let run = ccbackup(cfg, &["ls", "--long"]);
        run.expect_ok();
        let out = run.stdout();
        assert!(out.contains(&format!(" {} ", 64u64 << 20)), "{out}");
        assert!(out.contains(" small:1.txt\n"), "{out}");
        assert!(
            out.contains("ok: etc.tar.zst: checksum verified, 2 listed"),
            "{out}"
        );
        let rss = ls_peak_rss(cfg);
        assert!(rss < 60 * 1024, "ls peaked at {} MiB", rss / 1024);
    }
}

fn rchar(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("rchar: ").map(|v| v.trim().parse().ok()))?
        })
        .unwrap_or(0)
}

#[test]
fn ls_stops_on_sigterm_while_it_hashes_a_huge_artifact() {
    use std::process::{Command, Stdio};
    use std::time::Duration;
    let (_data, _ws, cfg, mpath) = one_file_backup();
    // The real artifact followed by 8 GiB of sparse zeros, and the manifest
    // agrees on the size: the tar ends early, and ls goes on hashing to give
    // the checksum verdict until the signal stops it. Nothing is staged.
    let art = mpath.parent().unwrap().join("etc.tar.zst");
    std::fs::File::options()
        .write(true)
        .open(&art)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let mut m = read_json(&mpath);
    m["artifacts"][0]["stored_bytes"] = serde_json::json!(8u64 << 30);
    write_json(&mpath, &m);
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("ls")
        .env_remove("CCBACKUP_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_until("ls to read the artifact", Duration::from_secs(120), || {
        assert!(child.try_wait().unwrap().is_none(), "ls ended early");
        rchar(pid) >= 64 << 20
    });
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    if poll_for(Duration::from_secs(60), || child.try_wait().unwrap()).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("ls still running 60 s after SIGTERM");
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("ok: "), "{stdout}");
    assert!(
        stdout.contains("!! etc.tar.zst: listing stopped after 1: reading"),
        "{stdout}"
    );
    assert!(stdout.contains("was interrupted"), "{stdout}");
}
