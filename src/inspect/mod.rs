//! `ccbackup ls`: what a backup holds, read from the store without
//! restoring anything.
//!
//! Each artifact is streamed once: store -> size and sha256 check
//! (`restore::fetch::stream_checked`) -> age -> zstd (capped at the
//! manifest's raw size) -> a lister on a blocking thread (the tar walk of
//! [`tree`], the archive TOC or the globals statements of [`pg`]). Every
//! stage hands on bounded pieces through bounded channels, so memory does
//! not depend on the artifact's size; nothing is written to disk.
//!
//! Listing while downloading means entries are shown before the checksum
//! is known. A checksum that does not match is still an error: the
//! listing of that artifact is followed by a verdict saying it is not to
//! be trusted, and the command fails ([`Listing::verdict`]).
//!
//! The archive is hostile input, as for a restore: tar metadata entries are
//! capped ([`crate::restore::tarcap`]), an entry path restore would refuse
//! stops the listing with restore's own refusal, the number of entries is
//! capped by what the manifest records and by [`MAX_ENTRIES`], decompression
//! stops at the manifest's raw size, and the globals text passes restore's
//! statement allow-list. Names are handed on as bytes; how they are shown
//! safely is [`escape`]'s job.

pub mod escape;
mod pg;
mod stream;
mod tree;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::crypto::{CryptoError, Identities};
use crate::repo::manifest::{Artifact, ArtifactKind, Manifest};
use crate::repo::store::Repo;
use crate::restore::extract::{ExtractError, Selection};
use crate::restore::fetch::FetchError;

/// Most entries listed from one tree artifact, whatever its manifest says
/// (Concertim's largest trees hold tens of thousands of files).
pub const MAX_ENTRIES: u64 = 10_000_000;

#[derive(Debug, Clone, Default)]
pub struct LsRequest {
    /// Only this source.
    pub source: Option<String>,
    /// Restore's `--include` patterns over tree paths; when given, only
    /// tree sources are listed.
    pub globs: Vec<String>,
    pub identities: Option<Arc<Identities>>,
    /// The job encrypts its backups: an unencrypted artifact is refused as
    /// a possible downgrade unless `allow_unencrypted`.
    pub job_encrypts: bool,
    pub allow_unencrypted: bool,
    pub cancel: CancellationToken,
}

/// The type of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    HardLink,
    Fifo,
    CharDevice,
    BlockDevice,
    Other,
}

impl EntryKind {
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::HardLink => "hardlink",
            EntryKind::Fifo => "fifo",
            EntryKind::CharDevice => "char_device",
            EntryKind::BlockDevice => "block_device",
            EntryKind::Other => "other",
        }
    }
}

/// One entry of a tree archive, as its tar header gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative to the tree's root, exactly as archived (any bytes).
    pub path: Vec<u8>,
    pub kind: EntryKind,
    pub size: u64,
    /// Permission bits, setuid/setgid/sticky included.
    pub mode: u32,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    /// Seconds since 1970.
    pub mtime: u64,
    /// Symlink or hard link target.
    pub link: Option<Vec<u8>>,
}

/// One thing a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Tree(TreeEntry),
    /// A database dump, from the manifest.
    Database {
        name: String,
        server_version: String,
        pg_dump_version: String,
    },
    /// A table of a dump's TOC, with the row count the manifest recorded.
    Table {
        database: String,
        schema: Vec<u8>,
        name: Vec<u8>,
        owner: Option<Vec<u8>>,
        rows: Option<i64>,
    },
    /// Any other TOC entry (index, sequence, constraint, ...).
    Toc {
        database: String,
        dump_id: i64,
        desc: Vec<u8>,
        schema: Option<Vec<u8>>,
        name: Option<Vec<u8>>,
        owner: Option<Vec<u8>>,
    },
    /// A role the globals create, with the attributes they give it.
    Role {
        name: String,
        attributes: Vec<&'static str>,
    },
    Tablespace {
        name: String,
    },
}

/// Where listed items go (the command layer prints them as they come).
pub trait Listing {
    /// `art` is about to be read.
    fn artifact(&mut self, art: &Artifact);
    fn item(&mut self, art: &Artifact, item: Item);
    /// What became of `art`: `None` when all of it was read and its
    /// checksum matched; otherwise the listing of it is incomplete and,
    /// when the checksum failed, not to be trusted.
    fn verdict(&mut self, art: &Artifact, listed: u64, problem: Option<&LsError>);
}

#[derive(Debug, thiserror::Error)]
pub enum LsError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Pattern(ExtractError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("cannot read {key}: {cause}")]
    Read { key: String, cause: std::io::Error },
    #[error("cannot list {key}: {source}")]
    Entry { key: String, source: ExtractError },
    #[error(
        "{key} holds more than {max} entries{}; stopped listing it (the archive may have been tampered with)",
        match recorded { Some(n) => format!(" although its manifest records {n}"), None => String::new() }
    )]
    TooMany {
        key: String,
        max: u64,
        recorded: Option<u64>,
    },
    #[error("cannot read the table of contents of {key}: {why}")]
    Toc { key: String, why: String },
    #[error("refusing the globals in {key}: {why}")]
    Globals { key: String, why: String },
    #[error("{0}")]
    Refused(String),
    #[error("the listing worker stopped unexpectedly")]
    Join,
}

impl LsError {
    /// The checksum (or size) of the stored bytes did not match: what was
    /// listed came from bytes that are not the backup's.
    pub fn untrusted(&self) -> bool {
        matches!(self, LsError::Fetch(FetchError::Corrupt { .. }))
    }
}

/// The artifacts `req` asks for, in manifest order.
pub fn selected<'a>(m: &'a Manifest, req: &LsRequest) -> Result<Vec<&'a Artifact>, LsError> {
    if let Some(s) = &req.source {
        if !m.artifacts.iter().any(|a| &a.source == s) {
            return Err(LsError::Usage(format!(
                "backup {}/{} has no source `{}` (it has: {})",
                m.job,
                m.id,
                s.escape_debug(),
                m.source_names()
                    .iter()
                    .map(|n| n.escape_debug().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let arts: Vec<&Artifact> = m
        .artifacts
        .iter()
        .filter(|a| req.source.as_ref().is_none_or(|s| &a.source == s))
        .filter(|a| req.globs.is_empty() || is_tree(a))
        .collect();
    if arts.is_empty() && !req.globs.is_empty() {
        return Err(LsError::Usage(format!(
            "GLOBs select paths of RRD and directory sources, and backup {}/{} has none{}",
            m.job,
            m.id,
            match &req.source {
                Some(s) => format!(" named `{}`", s.escape_debug()),
                None => String::new(),
            }
        )));
    }
    Ok(arts)
}

fn is_tree(a: &Artifact) -> bool {
    matches!(a.kind, ArtifactKind::RrdTar | ArtifactKind::FilesTar)
}

/// Lists the selected artifacts of `m` into `out`, one after the other.
/// A failed artifact does not stop the others from being listed; the
/// result says how many failed (each verdict went to `out` already).
pub async fn list(
    repo: &Repo,
    m: &Manifest,
    req: &LsRequest,
    out: &mut dyn Listing,
) -> Result<Failures, LsError> {
    let arts = selected(m, req)?;
    let select = Arc::new(Selection::new(&req.globs).map_err(LsError::Pattern)?);
    // Refusals that need no download come first, before any output.
    for a in &arts {
        crate::restore::refuse_downgrade(req.job_encrypts, a, req.allow_unencrypted)
            .map_err(LsError::Refused)?;
    }
    if req.identities.is_none() {
        if let Some(a) = arts.iter().find(|a| a.encryption.is_some()) {
            return Err(CryptoError::NoIdentity { key: a.key.clone() }.into());
        }
    }
    let mut failures = Failures::default();
    for a in arts {
        if req.cancel.is_cancelled() {
            break;
        }
        out.artifact(a);
        if let Some(pg) = a.postgres() {
            if let Some(db) = &pg.database {
                out.item(
                    a,
                    Item::Database {
                        name: db.clone(),
                        server_version: pg.server_version.clone(),
                        pg_dump_version: pg.pg_dump_version.clone(),
                    },
                );
            }
        }
        let reader = match a.kind {
            ArtifactKind::RrdTar | ArtifactKind::FilesTar => {
                stream::Reader::Tree(select.clone(), tree::entry_cap(a))
            }
            ArtifactKind::PgDump => stream::Reader::Toc(pg::TableRows::of(a)),
            ArtifactKind::PgGlobals => stream::Reader::Globals,
        };
        let (listed, result) = stream::list_artifact(repo, m, a, req, reader, out).await;
        out.verdict(a, listed, result.as_ref().err());
        if let Err(e) = result {
            failures.untrusted += u64::from(e.untrusted());
            failures
                .failed
                .push(format!("{}: {}", a.key, crate::error::chain(&e)));
        }
    }
    Ok(failures)
}

/// The artifacts whose listing failed.
#[derive(Debug, Default)]
pub struct Failures {
    /// `key: error` per failed artifact.
    pub failed: Vec<String>,
    /// How many of them failed their checksum.
    pub untrusted: u64,
}
