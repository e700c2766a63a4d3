//! `ls`: prints what a backup holds as the library lists it, one line per
//! item (or one JSON document, docs/schema/ls.json), while the artifacts
//! stream past. Names are shown through `inspect::escape`.
//!
//! Output comes before the checksum verdict (nothing is buffered, so memory
//! stays bounded), so every artifact's listing ends with its verdict: `ok`
//! when its sha256 matched, or lines starting `!!` saying the listing is
//! incomplete or, on a checksum mismatch, NOT TRUSTWORTHY; the command
//! then fails (exit 1). In JSON the verdicts are in `artifacts` and
//! `outcome`, at the end of the one document.

use serde_json::{json, Map, Value};

use super::out::{note, say};
use super::*;
use crate::cli::LsArgs;
use crate::inspect::escape::{json_name, text, text_str, to_json};
use crate::inspect::{EntryKind, Item, Listing, LsError, LsRequest, TreeEntry};
use crate::repo::manifest::{Artifact, ArtifactKind};

pub(super) async fn ls(cfg: &Config, a: LsArgs, intr: &Interrupt) -> Result<(), AppError> {
    let job = one_job(cfg, a.job.as_deref())?;
    if a.pick.backup == "all" {
        return Err(AppError::Usage(
            "ls takes one backup: an ID or `latest`".into(),
        ));
    }
    let mut json = a.json.then(|| JsonOut::new(&job.name));
    let result = ls_one(cfg, job, a, intr, &mut json).await;
    if let Some(j) = json {
        j.finish(&result);
    }
    result
}

async fn ls_one(
    cfg: &Config,
    job: &JobConfig,
    a: LsArgs,
    intr: &Interrupt,
    json: &mut Option<JsonOut>,
) -> Result<(), AppError> {
    let repo = store::open(&cfg.store)
        .map_err(failed)?
        .with_signing(cfg.signing.as_ref());
    let sel = select_backups(&repo, &job.name, &a.pick.backup).await?;
    for d in &sel.damaged {
        note!(
            "warning: newer backup {}/{} is damaged and was skipped: {}",
            d.job,
            d.id,
            d.problem
        );
    }
    let Some(m) = sel.manifests.into_iter().next() else {
        return Err(failed(anyhow::anyhow!("no backup selected")));
    };
    let identities =
        super::restore::identities_for(job, a.identity.as_deref(), std::slice::from_ref(&m))?;
    let req = LsRequest {
        source: a.pick.source,
        globs: a.globs,
        identities,
        job_encrypts: job.encryption.is_some(),
        allow_unencrypted: a.allow_unencrypted,
        cancel: intr.token(),
    };
    let started = crate::backup::report::rfc3339(m.started_at);
    let failures = match json {
        Some(j) => {
            j.head(Some(&m.id), Some(&started));
            crate::inspect::list(&repo, &m, &req, j).await
        }
        None => {
            say!("backup {}/{} taken {started}", m.job, m.id);
            crate::inspect::list(&repo, &m, &req, &mut TextOut { long: a.long }).await
        }
    }
    .map_err(|e| match e {
        LsError::Usage(u) => AppError::Usage(u),
        other => failed(other),
    })?;
    if intr.is_interrupted() {
        return Err(failed(anyhow::anyhow!("ls stopped before the end")));
    }
    if failures.failed.is_empty() {
        return Ok(());
    }
    let untrusted = if failures.untrusted > 0 {
        format!(
            "; {} did not match the checksum its manifest records, so what was listed from {} is NOT TRUSTWORTHY",
            failures.untrusted,
            if failures.untrusted == 1 { "it" } else { "them" }
        )
    } else {
        String::new()
    };
    Err(failed(anyhow::anyhow!(
        "{} artifact{} could not be listed in full{untrusted}: {}",
        failures.failed.len(),
        if failures.failed.len() == 1 { "" } else { "s" },
        text_str(&failures.failed.join("; "))
    )))
}

/// The lines of the text output.
struct TextOut {
    long: bool,
}

fn kind_label(a: &Artifact) -> &'static str {
    match a.kind {
        ArtifactKind::PgDump => "database dump",
        ArtifactKind::PgGlobals => "roles and tablespaces",
        ArtifactKind::RrdTar => "rrd tree",
        ArtifactKind::FilesTar => "files",
    }
}

/// `a.b`, each part escaped; absent parts are empty.
fn dotted(schema: Option<&[u8]>, name: Option<&[u8]>) -> String {
    match schema.filter(|s| !s.is_empty()) {
        Some(s) => format!("{}.{}", text(s), text(name.unwrap_or_default())),
        None => text(name.unwrap_or_default()),
    }
}

impl Listing for TextOut {
    fn artifact(&mut self, art: &Artifact) {
        say!(
            "{} ({}, {}):",
            text_str(&art.source),
            kind_label(art),
            text_str(&art.key)
        );
    }

    fn item(&mut self, _art: &Artifact, item: Item) {
        match item {
            Item::Tree(e) => say!("  {}", tree_line(&e, self.long)),
            Item::Database {
                name,
                server_version,
                pg_dump_version,
            } => say!(
                "  database {} (PostgreSQL {}, pg_dump {})",
                text_str(&name),
                text_str(&server_version),
                text_str(&pg_dump_version)
            ),
            Item::Table {
                schema,
                name,
                owner,
                rows,
                ..
            } => {
                let rows = match rows {
                    Some(1) => "1 row".to_owned(),
                    Some(n) => format!("{n} rows"),
                    None => "rows not recorded".to_owned(),
                };
                let owner = match (self.long, owner) {
                    (true, Some(o)) => format!(", owner {}", text(&o)),
                    _ => String::new(),
                };
                say!(
                    "    TABLE {} ({rows}{owner})",
                    dotted(Some(&schema), Some(&name))
                );
            }
            Item::Toc {
                dump_id,
                desc,
                schema,
                name,
                owner,
                ..
            } => {
                let what = format!(
                    "{} {}",
                    text(&desc),
                    dotted(schema.as_deref(), name.as_deref())
                );
                match (self.long, owner) {
                    (true, Some(o)) if !o.is_empty() => {
                        say!("    {what} (id {dump_id}, owner {})", text(&o))
                    }
                    (true, _) => say!("    {what} (id {dump_id})"),
                    (false, _) => say!("    {what}"),
                }
            }
            Item::Role { name, attributes } => {
                if attributes.is_empty() {
                    say!("  role {}", text_str(&name));
                } else {
                    say!("  role {} ({})", text_str(&name), attributes.join(" "));
                }
            }
            Item::Tablespace { name } => say!("  tablespace {}", text_str(&name)),
        }
    }

    fn verdict(&mut self, art: &Artifact, listed: u64, problem: Option<&LsError>) {
        let key = text_str(&art.key);
        match problem {
            None => say!("  ok: {key}: checksum verified, {listed} listed"),
            Some(e) if e.untrusted() => {
                say!("  !! {key}: NOT TRUSTWORTHY: the {listed} lines listed above from it came from bytes that do not match its checksum: {}", text_str(&chain(e).to_string()));
                note!("error: {key} does not match its checksum: its listing is NOT TRUSTWORTHY");
            }
            Some(e) => {
                say!(
                    "  !! {key}: listing stopped after {listed}: {}",
                    text_str(&chain(e).to_string())
                );
            }
        }
    }
}

fn type_char(k: EntryKind) -> char {
    match k {
        EntryKind::File => '-',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::HardLink => 'h',
        EntryKind::Fifo => 'p',
        EntryKind::CharDevice => 'c',
        EntryKind::BlockDevice => 'b',
        EntryKind::Other => '?',
    }
}

/// `rwxr-xr-x` with setuid, setgid and sticky as `ls -l` shows them.
fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for (shift, special, set_x, set_nox) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => set_x,
            (false, true) => set_nox,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn mtime_text(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| format!("@{secs}"))
}

fn mtime_rfc3339(secs: u64) -> Option<String> {
    let t = chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, 0)?;
    Some(crate::backup::report::rfc3339(t))
}

fn tree_line(e: &TreeEntry, long: bool) -> String {
    let mut name = text(&e.path);
    if e.kind == EntryKind::Dir {
        name.push('/');
    }
    if let Some(l) = &e.link {
        let arrow = if e.kind == EntryKind::HardLink {
            "link to"
        } else {
            "->"
        };
        name = format!("{name} {arrow} {}", text(l));
    }
    if !long {
        return name;
    }
    let owner = |v: Option<u64>| v.map_or("?".to_owned(), |n| n.to_string());
    format!(
        "{}{} {:>5}:{:<5} {:>12} {} {name}",
        type_char(e.kind),
        mode_string(e.mode),
        owner(e.uid),
        owner(e.gid),
        e.size,
        mtime_text(e.mtime),
    )
}

/// Puts a name as `key` (and `key_hex` when it is not UTF-8) into `obj`.
fn put_name(obj: &mut Map<String, Value>, key: &str, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            obj.insert(key.to_owned(), Value::Null);
        }
        Some(b) => {
            let (s, hex) = json_name(b);
            obj.insert(key.to_owned(), Value::String(s));
            if let Some(h) = hex {
                obj.insert(format!("{key}_hex"), Value::String(h));
            }
        }
    }
}

fn item_json(art: &Artifact, item: Item) -> Value {
    let mut o = Map::new();
    o.insert("source".into(), json!(art.source));
    o.insert("artifact".into(), json!(art.key));
    match item {
        Item::Tree(e) => {
            o.insert("type".into(), json!(e.kind.name()));
            put_name(&mut o, "path", Some(&e.path));
            o.insert("size".into(), json!(e.size));
            o.insert("mode".into(), json!(format!("{:04o}", e.mode)));
            o.insert("uid".into(), json!(e.uid));
            o.insert("gid".into(), json!(e.gid));
            o.insert("mtime".into(), json!(mtime_rfc3339(e.mtime)));
            o.insert("mtime_unix".into(), json!(e.mtime));
            put_name(&mut o, "link_target", e.link.as_deref());
        }
        Item::Database {
            name,
            server_version,
            pg_dump_version,
        } => {
            o.insert("type".into(), json!("database"));
            o.insert("database".into(), json!(name));
            o.insert("server_version".into(), json!(server_version));
            o.insert("pg_dump_version".into(), json!(pg_dump_version));
        }
        Item::Table {
            database,
            schema,
            name,
            owner,
            rows,
        } => {
            o.insert("type".into(), json!("table"));
            o.insert("database".into(), json!(database));
            put_name(&mut o, "schema", Some(&schema));
            put_name(&mut o, "name", Some(&name));
            put_name(&mut o, "owner", owner.as_deref());
            o.insert("rows".into(), json!(rows));
        }
        Item::Toc {
            database,
            dump_id,
            desc,
            schema,
            name,
            owner,
        } => {
            o.insert("type".into(), json!("toc"));
            o.insert("database".into(), json!(database));
            o.insert("dump_id".into(), json!(dump_id));
            put_name(&mut o, "desc", Some(&desc));
            put_name(&mut o, "schema", schema.as_deref());
            put_name(&mut o, "name", name.as_deref());
            put_name(&mut o, "owner", owner.as_deref());
        }
        Item::Role { name, attributes } => {
            o.insert("type".into(), json!("role"));
            o.insert("name".into(), json!(name));
            o.insert("attributes".into(), json!(attributes));
        }
        Item::Tablespace { name } => {
            o.insert("type".into(), json!("tablespace"));
            o.insert("name".into(), json!(name));
        }
    }
    Value::Object(o)
}

/// The JSON document, written as it goes: the head, one item per line,
/// then the verdicts and the outcome.
struct JsonOut {
    job: String,
    head_done: bool,
    items: u64,
    artifacts: Vec<Value>,
}

/// One value as safe JSON text (a value that cannot be written is null).
fn js(v: &impl serde::Serialize) -> String {
    to_json(v).unwrap_or_else(|_| "null".to_owned())
}

impl JsonOut {
    fn new(job: &str) -> JsonOut {
        JsonOut {
            job: job.to_owned(),
            head_done: false,
            items: 0,
            artifacts: Vec::new(),
        }
    }

    fn head(&mut self, id: Option<&str>, started: Option<&str>) {
        if self.head_done {
            return;
        }
        self.head_done = true;
        say!(
            "{{\"job\":{},\"backup_id\":{},\"started_at\":{},\"items\":[",
            js(&self.job),
            js(&id),
            js(&started)
        );
    }

    fn finish(mut self, result: &Result<(), AppError>) {
        self.head(None, None);
        let error = result.as_ref().err().map(|e| chain(e).to_string());
        let outcome = if error.is_some() {
            "failure"
        } else {
            "success"
        };
        say!(
            "],\"artifacts\":{},\"outcome\":{},\"error\":{}}}",
            js(&self.artifacts),
            js(&outcome),
            js(&error)
        );
    }
}

impl Listing for JsonOut {
    fn artifact(&mut self, _art: &Artifact) {}

    fn item(&mut self, art: &Artifact, item: Item) {
        let line = js(&item_json(art, item));
        if self.items == 0 {
            say!("{line}");
        } else {
            say!(",{line}");
        }
        self.items += 1;
    }

    fn verdict(&mut self, art: &Artifact, listed: u64, problem: Option<&LsError>) {
        let outcome = match problem {
            None => "verified",
            Some(e) if e.untrusted() => "untrusted",
            Some(_) => "incomplete",
        };
        self.artifacts.push(json!({
            "source": art.source,
            "artifact": art.key,
            "listed": listed,
            "outcome": outcome,
            "error": problem.map(|e| chain(e).to_string()),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_like_ls() {
        assert_eq!(mode_string(0o755), "rwxr-xr-x");
        assert_eq!(mode_string(0o4755), "rwsr-xr-x");
        assert_eq!(mode_string(0o1777), "rwxrwxrwt");
        assert_eq!(mode_string(0o2640), "rw-r-S---");
    }

    #[test]
    fn tree_lines_escape_names_and_targets() {
        let e = TreeEntry {
            path: b"a\x1b[2J/b\xff".to_vec(),
            kind: EntryKind::Symlink,
            size: 0,
            mode: 0o777,
            uid: Some(0),
            gid: None,
            mtime: 0,
            link: Some(b"../x\ny".to_vec()),
        };
        assert_eq!(tree_line(&e, false), "a\\u{1b}[2J/b\\xff -> ../x\\ny");
        let long = tree_line(&e, true);
        assert!(long.starts_with("lrwxrwxrwx     0:?     "), "{long}");
        assert!(long.contains("1970-01-01 00:00:00"), "{long}");
    }
}
