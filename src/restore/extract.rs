//! Restore side of the RRD and plain-directory sources: unpack a tar stream
//! into a directory, all or nothing, without ever writing outside it and
//! without replacing existing data unless asked. Archives come from the
//! store, which is untrusted: every entry is treated as hostile.
//!
//! How: the whole archive is first written into a private staging
//! directory (0700) on the destination's own file system: inside `dest`
//! (`dest/.ccbackup-restore-<rand>`, because `dest` may be a mount point),
//! or, when `dest` does not exist, next to it
//! (`.<name>.ccbackup-restore-<rand>`, renamed to `<name>` at the end, so a
//! missing `dest` only ever appears complete). Files are fsync'd, RRD files
//! validated. Only when every entry has been written is the staged tree
//! checked against `dest` and moved into place (see `place`); the staging
//! directory is removed in every case. So any failure while reading or
//! writing (a bad entry, a clash between entries, a full disk, a name too
//! long) leaves `dest` exactly as it was. The cost: the file system needs
//! room for the whole restored tree, even when it replaces existing files.
//!
//! Safety:
//! - entries with absolute paths, `..` components or NUL bytes are refused
//!   (our archives never contain them, so one that does has been tampered
//!   with);
//! - every directory is opened component by component relative to the
//!   staging root or `dest` with `O_NOFOLLOW`, so an entry below a symlink
//!   (from the archive or already in `dest`) is refused, never followed;
//! - the staging tree starts empty, so an entry that finds something at its
//!   path clashes with an earlier entry: the same path twice fails the call
//!   (all such paths are named), a file used as a directory or a directory
//!   and a file at one path fail it at once.
//!
//! Existing targets: **without `force` nothing existing is ever replaced.**
//! [`extract_tree_checked`] (what restore uses) reads the archive twice:
//! first a pre-check against `dest` that fails before writing anything if a
//! target exists, an entry is unsafe, clashes in type with `dest` or is an
//! invalid RRD file; then the staged extraction. A file that appears in
//! `dest` after the check is not replaced either (`RENAME_NOREPLACE`): the
//! rest of the restore stays in place and the call fails naming it
//! ([`ExtractError::Appeared`]). The single-pass [`extract_tree`] skips
//! existing targets and lists them in [`ExtractReport::skipped_existing`].
//!
//! Existing directories are merged into, not conflicts; their mode and mtime
//! are left alone unless `force`. A type clash (a directory where the archive
//! has a file, a file or symlink where it has a directory) is always an error:
//! we never delete a directory or follow a link to make room. If a move
//! fails half-way (only possible when `dest` changes during the restore, or
//! on an I/O error), the error says so ([`ExtractError::PartlyRestored`]).
//!
//! Metadata: permission bits and mtime (whole seconds) are restored, with
//! setuid/setgid stripped unless [`ExtractOptions::same_owner`]; owner and
//! group only with `same_owner` when running as root (like GNU tar's
//! `--same-owner`), never from an archive by default, so a crafted entry
//! cannot plant a setuid file owned by someone else. Directories that exist
//! only to hold filtered entries get 0755. Modes are set with `fchmod`, so
//! the process umask does not matter.
//!
//! Entry types other than directories, regular files and symlinks (hard
//! links, devices, fifos) are skipped and counted; our sources never produce
//! them.

mod chain;
mod check;
mod glob;
mod place;
mod room;
mod stage;

use std::ffi::CStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::rrd::{validate_rrd, RrdInvalid};
use crate::sys::fs;

use chain::{kind_name, ChainError};
use glob::Globs;
use place::OnExisting;

#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Replace existing files and symlinks (never directories).
    pub force: bool,
    /// Glob patterns over the entry's relative path (`*`, `?`, `[a-z]`, `[!x]`
    /// stay within one path component, `**` crosses `/`, `**/` also matches
    /// nothing, `\` escapes). Anchored at the archive root. An entry is
    /// selected when the pattern matches its path or one of its parent
    /// directories. Empty: everything.
    pub include: Vec<String>,
    /// Validate `*.rrd` files before they replace anything.
    pub validate_rrd: bool,
    /// Write nothing; report what would be written and replaced. Checks
    /// entries against the destination only: clashes between entries are
    /// found by the real run (which then writes nothing).
    pub dry_run: bool,
    /// Trust the archive's owners and setuid/setgid bits: as root, chown to
    /// the archived uid/gid and keep the full mode. Off: files belong to the
    /// restoring user and setuid/setgid are cleared.
    pub same_owner: bool,
    /// Before writing, refuse a tree whose files and directories (one
    /// block and one inode each at least) do not fit the destination's
    /// file system. Restore always sets it.
    pub check_room: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractReport {
    /// Regular files and symlinks written (dry run: that would be written).
    pub written: u64,
    /// Content bytes of those files.
    pub bytes: u64,
    /// Directories created (dry run: that would be created).
    pub dirs_created: u64,
    /// Directory entries in the archive, existing at the destination or
    /// not: each is made in staging first.
    pub dirs_seen: u64,
    /// Existing files or symlinks replaced (only with `force`).
    pub replaced: u64,
    /// Existing targets left alone because `force` was off
    /// ([`extract_tree`] only; [`extract_tree_checked`] fails instead).
    pub skipped_existing: Vec<PathBuf>,
    /// Dry run only: existing targets the archive contains, i.e. what a run
    /// with `force` replaces and a run without it refuses.
    pub would_replace: Vec<PathBuf>,
    /// Entries not selected by `include`.
    pub filtered_out: u64,
    /// Hard links, devices, fifos and other entry types we do not restore.
    pub skipped_other: u64,
    /// Dry run only: why the tree would not fit its destination.
    pub no_room: Option<String>,
}

/// Messages carry their cause (the system error text) themselves, as the
/// binary prints only the top-level message.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("cannot open restore destination {}: {cause}", path.display())]
    Dest { path: PathBuf, cause: io::Error },
    #[error("invalid include pattern {pattern:?}: {why}")]
    BadPattern { pattern: String, why: &'static str },
    #[error("cannot read the archive: {0}")]
    Archive(io::Error),
    #[error("not enough space on {} for the restored tree: {why}; nothing was written", path.display())]
    NoRoom { path: PathBuf, why: String },
    #[error("refusing archive entry {}: {why}; nothing was restored", path.display())]
    UnsafePath { path: PathBuf, why: &'static str },
    #[error("restored rrd file {} is invalid: {reason}; nothing was restored", path.display())]
    InvalidRrd { path: PathBuf, reason: RrdInvalid },
    #[error(
        "archive entry {} is {size} bytes, too large to validate as an rrd file",
        path.display()
    )]
    TooLarge { path: PathBuf, size: u64 },
    #[error(
        "{} exists as a {existing} where the archive has a {wanted}; move it away first",
        path.display()
    )]
    TypeConflict {
        path: PathBuf,
        existing: &'static str,
        wanted: &'static str,
    },
    #[error(
        "refusing to restore {}: the archive has {what}; nothing was restored (the archive may have been tampered with)",
        path.display()
    )]
    ArchiveClash { path: PathBuf, what: String },
    #[error(
        "the archive lists {count} path{} more than once, e.g. {}; nothing was restored (the archive may have been tampered with)",
        if *count == 1 { "" } else { "s" },
        list_paths(first)
    )]
    Duplicates { count: usize, first: Vec<PathBuf> },
    #[error(
        "{} is on another file system than the restore destination {}; nothing was restored (restore into it separately)",
        path.display(),
        dest.display()
    )]
    OtherFileSystem { path: PathBuf, dest: PathBuf },
    #[error("cannot {op} {}: {cause}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error(
        "{count} restore targets already exist in {}, e.g. {}; nothing was written (use --force to replace them)",
        dest.display(),
        list_paths(first)
    )]
    WouldReplace {
        dest: PathBuf,
        count: usize,
        first: Vec<PathBuf>,
    },
    #[error(
        "{count} restore target{} appeared in {} while the restore ran and {} left alone, e.g. {}; everything else was restored",
        if *count == 1 { "" } else { "s" },
        dest.display(),
        if *count == 1 { "was" } else { "were" },
        list_paths(first)
    )]
    Appeared {
        dest: PathBuf,
        count: usize,
        first: Vec<PathBuf>,
    },
    #[error(
        "{cause}; this happened while moving the restored entries into place, after {moved} had been moved, so the destination is partly restored"
    )]
    PartlyRestored {
        moved: u64,
        cause: Box<ExtractError>,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// RRD files are buffered whole to be validated before they are written.
const MAX_VALIDATE: u64 = 64 << 20;

/// Extracts `archive` (an uncompressed tar stream) into `dest`, creating
/// `dest` if needed, all or nothing; existing targets are skipped without
/// `force` (see the module docs).
pub fn extract_tree<R: Read>(
    archive: R,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractReport, ExtractError> {
    let patterns = compile(&opts.include)?;
    if opts.dry_run {
        return check_pass(archive, dest, opts, &patterns);
    }
    stage_and_place(archive, dest, opts, &patterns, OnExisting::Skip)
}

/// What restore uses: `open` is called once for a pre-check of every entry
/// against `dest` (paths, type clashes, RRD validity, existing targets) and,
/// if that passes, once more for the staged extraction. Without `force`, any
/// existing target fails the call before anything is written. With
/// `dry_run`, only the pre-check runs and its report is returned.
pub fn extract_tree_checked<R: Read>(
    mut open: impl FnMut() -> io::Result<R>,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractReport, ExtractError> {
    let patterns = compile(&opts.include)?;
    let mut plan = check_pass(
        open().map_err(ExtractError::Archive)?,
        dest,
        opts,
        &patterns,
    )?;
    let room = if opts.check_room {
        check_room(&plan, dest)
    } else {
        Ok(())
    };
    if opts.dry_run {
        plan.no_room = room.err().map(|e| e.to_string());
        return Ok(plan);
    }
    room?;
    if !opts.force && !plan.would_replace.is_empty() {
        return Err(ExtractError::WouldReplace {
            dest: dest.to_path_buf(),
            count: plan.would_replace.len(),
            first: plan.would_replace.into_iter().take(5).collect(),
        });
    }
    let archive = open().map_err(ExtractError::Archive)?;
    stage_and_place(archive, dest, opts, &patterns, OnExisting::Refuse)
}

/// Whether the checked tree fits the destination's file system.
fn check_room(plan: &ExtractReport, dest: &Path) -> Result<(), ExtractError> {
    let (free, probe) = room::free_at(dest).map_err(|cause| ExtractError::Dest {
        path: dest.to_path_buf(),
        cause,
    })?;
    let need = room::Need {
        files: plan.written,
        dirs: plan.dirs_seen,
        bytes: plan.bytes,
    };
    room::decide(need, free).map_err(|why| ExtractError::NoRoom { path: probe, why })
}

/// Restore's `--include` patterns for code that lists an archive rather
/// than writing it (`ccbackup ls`): the same syntax, the same rule (a path
/// is selected when it or one of its parent directories matches).
#[derive(Debug, Clone)]
pub struct Selection(Globs);

impl Selection {
    pub fn new(patterns: &[String]) -> Result<Selection, ExtractError> {
        compile(patterns).map(Selection)
    }

    pub fn selects(&self, rel: &Path) -> bool {
        included(&self.0, rel)
    }
}

/// An entry's path as restore would use it: relative, `.` dropped, `None`
/// for the archive root; absolute paths, `..` and NUL bytes are refused,
/// the same refusal a restore of the archive would meet.
pub fn entry_path(raw: &Path) -> Result<Option<PathBuf>, ExtractError> {
    safe_rel(raw)
}

fn compile(include: &[String]) -> Result<Globs, ExtractError> {
    Globs::new(include)
}

fn check_pass<R: Read>(
    archive: R,
    dest: &Path,
    opts: &ExtractOptions,
    patterns: &Globs,
) -> Result<ExtractReport, ExtractError> {
    let mut checker = check::Checker::new(dest, opts.force)?;
    read_archive(archive, opts, patterns, &mut checker)?;
    Ok(checker.into_report())
}

fn stage_and_place<R: Read>(
    archive: R,
    dest: &Path,
    opts: &ExtractOptions,
    patterns: &Globs,
    on_existing: OnExisting,
) -> Result<ExtractReport, ExtractError> {
    // Dropping `staging` on an early return removes it.
    let mut staging = stage::StagingDir::create(dest)?;
    let mut stager = stage::Stager::new(dest, staging.root());
    read_archive(archive, opts, patterns, &mut stager)?;
    let staged = stager.finish()?;
    let result = place::place(&mut staging, staged, dest, opts.force, on_existing);
    let removed = staging.remove();
    let report = result?;
    removed?;
    Ok(report)
}

/// Opens an existing directory (following symlinks: `dest` comes from the
/// configuration, not from an archive).
fn open_dest_dir(path: &Path) -> io::Result<OwnedFd> {
    fs::open_dir(path)
}

/// A parent chain in `dest` that cannot be walked, as the error for `entry`.
fn dest_chain_error(dest: &Path, entry: &Path, e: ChainError) -> ExtractError {
    match e {
        ChainError::Symlink => ExtractError::UnsafePath {
            path: entry.to_path_buf(),
            why: "a parent directory is a symlink",
        },
        ChainError::NotDir(p, kind) => ExtractError::TypeConflict {
            path: dest.join(p),
            existing: kind_name(kind),
            wanted: "directory",
        },
        ChainError::Io(p, cause) => ExtractError::Io {
            op: "open directory",
            path: dest.join(p),
            cause,
        },
    }
}

/// Metadata taken from a tar header, already reduced to what we trust.
#[derive(Debug, Clone, Copy)]
struct Meta {
    mode: u32,
    mtime: i64,
    /// Set only with `same_owner` as root.
    owner: Option<(u32, u32)>,
}

impl Meta {
    fn from_header(h: &tar::Header, same_owner: bool, as_root: bool) -> Result<Meta, ExtractError> {
        let mode = h.mode().map_err(ExtractError::Archive)? & 0o7777;
        let mtime = h.mtime().map_err(ExtractError::Archive)?;
        let owner = if same_owner && as_root {
            let uid = h.uid().ok().and_then(|u| u32::try_from(u).ok());
            let gid = h.gid().ok().and_then(|g| u32::try_from(g).ok());
            uid.zip(gid)
        } else {
            None
        };
        Ok(Meta {
            mode: if same_owner { mode } else { mode & 0o1777 },
            mtime: i64::try_from(mtime).unwrap_or(i64::MAX),
            owner,
        })
    }

    /// Owner (if carried), mode and mtime of an open file or directory.
    fn apply_to(&self, fd: impl AsFd) -> io::Result<()> {
        let fd = fd.as_fd();
        if let Some((uid, gid)) = self.owner {
            // Before chmod: chown clears setuid/setgid bits.
            fs::fchown(fd, uid, gid)?;
        }
        fs::fchmod(fd, self.mode)?;
        fs::set_times(fd, self.mtime)
    }

    /// Owner and mtime of a symlink itself (symlinks have no mode on Linux).
    fn apply_at(&self, dir: impl AsFd, name: &CStr) -> io::Result<()> {
        let dir = dir.as_fd();
        if let Some((uid, gid)) = self.owner {
            fs::lchown_at(dir, name, uid, gid)?;
        }
        fs::set_times_at(dir, name, self.mtime)
    }
}

/// A regular file's content as handed to a [`Sink`].
enum Content<'a> {
    /// Already read (and validated).
    Bytes(&'a [u8]),
    /// Still in the archive, with its size from the header.
    Stream(&'a mut dyn Read, u64),
}

impl Content<'_> {
    fn size(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Stream(_, n) => *n,
        }
    }
}

/// Where safe, selected entries go: the pre-check or the staging writer.
trait Sink {
    fn counts(&mut self) -> &mut ExtractReport;
    fn dir(&mut self, rel: &Path, meta: Meta) -> Result<(), ExtractError>;
    fn file(&mut self, rel: &Path, content: Content<'_>, meta: Meta) -> Result<(), ExtractError>;
    fn symlink(&mut self, rel: &Path, target: &Path, meta: Meta) -> Result<(), ExtractError>;
}

fn read_archive<R: Read>(
    archive: R,
    opts: &ExtractOptions,
    patterns: &Globs,
    sink: &mut dyn Sink,
) -> Result<(), ExtractError> {
    let as_root = rustix::process::geteuid().is_root();
    let mut rrd_buf = Vec::new();
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries().map_err(ExtractError::Archive)? {
        let mut entry = entry.map_err(ExtractError::Archive)?;
        let raw = entry.path().map_err(ExtractError::Archive)?.into_owned();
        let Some(rel) = safe_rel(&raw)? else {
            continue;
        };
        if !included(patterns, &rel) {
            sink.counts().filtered_out += 1;
            continue;
        }
        let meta = Meta::from_header(entry.header(), opts.same_owner, as_root)?;
        match entry.header().entry_type() {
            EntryType::Directory => sink.dir(&rel, meta)?,
            EntryType::Regular | EntryType::Continuous => {
                if opts.validate_rrd && rel.as_os_str().as_bytes().ends_with(b".rrd") {
                    read_rrd(&mut entry, &rel, &mut rrd_buf)?;
                    sink.file(&rel, Content::Bytes(&rrd_buf), meta)?;
                } else {
                    let size = entry.size();
                    sink.file(&rel, Content::Stream(&mut entry, size), meta)?;
                }
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(ExtractError::Archive)?
                    .ok_or_else(|| {
                        ExtractError::Archive(io::Error::other(format!(
                            "symlink entry {} has no target",
                            rel.display()
                        )))
                    })?
                    .into_owned();
                sink.symlink(&rel, &target, meta)?;
            }
            other => {
                tracing::warn!(path = %rel.display(), entry_type = entry_type_name(other), "skipping entry type we do not restore");
                sink.counts().skipped_other += 1;
            }
        }
    }
    Ok(())
}

/// Reads an RRD entry whole and validates it, so an invalid one fails the
/// restore before it is written anywhere.
fn read_rrd<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    rel: &Path,
    buf: &mut Vec<u8>,
) -> Result<(), ExtractError> {
    // The reader never yields more than the header's size.
    let size = entry.size();
    if size > MAX_VALIDATE {
        return Err(ExtractError::TooLarge {
            path: rel.to_path_buf(),
            size,
        });
    }
    buf.clear();
    entry.read_to_end(buf).map_err(ExtractError::Archive)?;
    validate_rrd(buf)
        .map(|_| ())
        .map_err(|reason| ExtractError::InvalidRrd {
            path: rel.to_path_buf(),
            reason,
        })
}

fn included(patterns: &Globs, rel: &Path) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let bytes = rel.as_os_str().as_bytes();
    // The path itself and each of its parent directories.
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(|(i, _)| &bytes[..i])
        .chain(std::iter::once(bytes))
        .any(|p| patterns.matches(p))
}

/// Relative path with `.` dropped; None for the archive root itself.
fn safe_rel(path: &Path) -> Result<Option<PathBuf>, ExtractError> {
    let unsafe_path = |why| ExtractError::UnsafePath {
        path: path.to_path_buf(),
        why,
    };
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) if n.as_bytes().contains(&0) => {
                return Err(unsafe_path("it contains a NUL byte"))
            }
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_path("it contains a `..` component")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_path("it is an absolute path"))
            }
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// A tar entry type in words, for the log (never Rust's `Debug` names).
fn entry_type_name(t: EntryType) -> &'static str {
    if t.is_fifo() {
        "fifo"
    } else if t.is_character_special() {
        "character device"
    } else if t.is_block_special() {
        "block device"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn unsafe_paths() {
        assert!(safe_rel(Path::new("../x")).is_err());
        assert!(safe_rel(Path::new("a/../../x")).is_err());
        assert!(safe_rel(Path::new("/etc/passwd")).is_err());
        assert!(safe_rel(Path::new(OsStr::from_bytes(b"a\0b"))).is_err());
        assert_eq!(safe_rel(Path::new("./")).unwrap(), None);
        assert_eq!(
            safe_rel(Path::new("./a//b/")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
    }

    #[test]
    fn setuid_and_owner_only_with_same_owner() {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o6755);
        h.set_uid(12345);
        h.set_gid(54321);
        h.set_mtime(1_600_000_000);
        let m = Meta::from_header(&h, false, true).unwrap();
        assert_eq!((m.mode, m.owner), (0o755, None));
        let m = Meta::from_header(&h, true, true).unwrap();
        assert_eq!((m.mode, m.owner), (0o6755, Some((12345, 54321))));
        let m = Meta::from_header(&h, true, false).unwrap();
        assert_eq!((m.mode, m.owner), (0o6755, None));
    }
}
