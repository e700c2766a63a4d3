//! The I/O around restoring some tables or schemas ([`super::select`]
//! decides which entries): the staged archive's table of contents from
//! `pg_restore --list --verbose`, what the target already holds, and the
//! `--use-list` file `pg_restore` then follows.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::database::choose;
use super::plan::{target_state, TargetState};
use super::select::{select, Selection, TargetFacts};
use super::{RestoreError, RestoreRequest};
use crate::config::PostgresConfig;
use crate::crypto::Opener;
use crate::pg::conn::{self, PgError};
use crate::pg::toc_list::{self, TocEntry};
use crate::repo::manifest::Artifact;
use crate::sys::child::{feed_capture, ChildError, KillSwitch};

/// The most `pg_restore --list` output read: far beyond the catalogue of
/// any real database (a line per object), and a crafted archive's table
/// of contents cannot make ccbackup hold more.
const LIST_CAP: usize = 64 * 1024 * 1024;

/// A writer that refuses to grow past a cap.
struct Capped(Vec<u8>);

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > LIST_CAP {
            return Err(std::io::Error::other(format!(
                "the archive's table of contents is longer than {LIST_CAP} bytes"
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads the staged archive's table of contents with the `pg_restore`
/// chosen for the target (it reads the archive, decompressed and
/// decrypted on the fly, only as far as the table of contents).
async fn list_toc(
    cfg: &PostgresConfig,
    a: &Artifact,
    staged: &Path,
    req: &RestoreRequest,
) -> Result<Vec<TocEntry>, RestoreError> {
    let chosen = choose(cfg, a).await?;
    let mut cmd = conn::base_command(&chosen.tools, "pg_restore", cfg);
    cmd.arg("--list").arg("--verbose");
    let opener = Opener {
        path: staged.to_owned(),
        art: a.clone(),
        ids: req.identities.clone(),
        progress: None,
    };
    let kill = KillSwitch::default();
    let _watch = crate::interrupt::kill_on_cancel(&req.cancel, &kill);
    let key = a.key.clone();
    let text = tokio::task::spawn_blocking(move || -> Result<String, ChildError> {
        let mut dec = opener.open().map_err(|source| ChildError::Read {
            program: "zstd".to_owned(),
            source,
        })?;
        let mut out = Capped(Vec::new());
        feed_capture("pg_restore", cmd, &mut dec, &mut out, &kill)?;
        // Names are bytes in the archive; the listing is only matched and
        // shown, so a name that is not UTF-8 is shown with replacements.
        Ok(String::from_utf8_lossy(&out.0).into_owned())
    })
    .await
    .map_err(|_| RestoreError::Join)?
    .map_err(|source| RestoreError::TocList {
        key: key.clone(),
        source,
    })?;
    toc_list::parse(&text).map_err(|source| RestoreError::TocParse { key, source })
}

/// The schemas and relations of `target` (none when it does not exist
/// yet: the new database will have `public` only).
async fn target_facts(cfg: &PostgresConfig, target: &str) -> Result<TargetFacts, RestoreError> {
    let admin = conn::connect(cfg, &cfg.maintenance_db).await?;
    if target_state(cfg, &admin, target).await? == TargetState::Missing {
        return Ok(TargetFacts::new_database());
    }
    let c = conn::connect(cfg, target).await?;
    let err = PgError::query(target, "list the target's schemas and relations");
    let schemas = c
        .query("SELECT nspname::text FROM pg_namespace", &[])
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let err = PgError::query(target, "list the target's schemas and relations");
    let relations = c
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r','p','v','m','S','f')",
            &[],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // An index name is taken in the whole schema: a restored index could
    // share it with an index of another table (see `select::refuse_replace`).
    let err = PgError::query(target, "list the target's indexes");
    let indexes = c
        .query(
            "SELECT n.nspname::text, i.relname::text, t.relname::text FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = i.relnamespace",
            &[],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    Ok(TargetFacts {
        schemas,
        relations,
        indexes,
    })
}

/// Lists the archive, looks at the target and selects the entries.
pub(super) async fn select_for(
    cfg: &PostgresConfig,
    a: &Artifact,
    target: &str,
    staged: &Path,
    req: &RestoreRequest,
) -> Result<Selection, RestoreError> {
    let entries = list_toc(cfg, a, staged, req).await?;
    let facts = target_facts(cfg, target).await?;
    select(&entries, &req.tables, &facts).map_err(RestoreError::Plan)
}

/// Writes the `pg_restore --use-list` file: one dump ID a line, in
/// archive order (nothing from the archive's names goes into it).
pub(super) fn write_list(sel: &Selection, dir: &Path) -> Result<PathBuf, RestoreError> {
    let path = dir.join("restore.list");
    let body: String = sel.ids.iter().map(|id| format!("{id}\n")).collect();
    std::fs::write(&path, body).map_err(RestoreError::Staging)?;
    Ok(path)
}
