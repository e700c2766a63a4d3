//! Restore side of the RRD and plain-directory sources: unpack a tar stream
//! into a directory without ever writing outside it and without replacing
//! existing data unless asked.
//!
//! Safety:
//! - entries with absolute paths or `..` components are refused (the whole
//!   extraction fails: our archives never contain them, so one that does has
//!   been tampered with);
//! - every parent directory is opened component by component relative to the
//!   destination with `O_NOFOLLOW`, so an entry below a symlink (one from the
//!   archive or one already on disk) is refused instead of followed;
//! - files and symlinks are written under a temporary name in their final
//!   directory (`.<name>.ccbackup-tmp-<rand>`), fsync'd, then renamed over the
//!   target, the way librrd itself creates files: a reader sees the old file
//!   or the new one, never a torn one. Directories are fsync'd after renames.
//!
//! Existing targets: **without `force` nothing existing is ever replaced**.
//! [`extract_tree`] reads its stream once, so it cannot know about conflicts
//! before it starts writing; it skips each existing target, lists it in
//! [`ExtractReport::skipped_existing`] and carries on (no error), and uses
//! `RENAME_NOREPLACE` so a target that appears while we write is not replaced
//! either. To get all-or-nothing behaviour, use [`extract_tree_checked`]: it
//! reads the archive twice, first as a dry run, and fails *before writing
//! anything* if a target exists (without `force`), an entry is unsafe, or an
//! RRD file is invalid. Restore should use that.
//!
//! Existing directories are merged into, not conflicts; their mode and mtime
//! are left alone unless `force`. A type clash (a directory where the archive
//! has a file, a file or symlink where it has a directory) is always an error:
//! we never delete a directory or follow a link to make room.
//!
//! Metadata: permission bits and mtime (whole seconds) are restored; owner
//! and group only when running as root (like GNU tar), since otherwise
//! `chown` would fail. Directory modes and mtimes are applied when the walk
//! leaves the directory, because creating entries inside changes its mtime
//! and a read-only mode would stop us creating them; meanwhile new
//! directories are 0700, so no one sees a half-restored directory with its
//! final permissions. Implicit parents (no entry in the archive, e.g. filtered
//! out by `include`) are created 0755 minus the umask. If extraction fails
//! part-way, directories it created may be left at 0700 and files already
//! renamed stay; temp files are removed.
//!
//! Entry types other than directories, regular files and symlinks (hard
//! links, devices, fifos) are skipped and counted; our sources never produce
//! them.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tar::EntryType;

use crate::source::rrd::{validate_rrd, RrdInvalid};
use crate::source::walk::{lstat_at, open_dir_at, Kind};

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
    /// Write nothing; report what would be written and replaced.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractReport {
    /// Regular files and symlinks written (dry run: that would be written).
    pub written: u64,
    /// Content bytes of those files.
    pub bytes: u64,
    /// Directories created (dry run: that would be created).
    pub dirs_created: u64,
    /// Existing files or symlinks replaced (only with `force`).
    pub replaced: u64,
    /// Existing targets left alone because `force` was off (real runs).
    pub skipped_existing: Vec<PathBuf>,
    /// Dry run only: existing targets the archive contains, i.e. what a run
    /// with `force` replaces and a run without it skips.
    pub would_replace: Vec<PathBuf>,
    /// Entries not selected by `include`.
    pub filtered_out: u64,
    /// Hard links, devices, fifos and other entry types we do not restore.
    pub skipped_other: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("cannot open restore destination {}", path.display())]
    Dest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid include pattern {pattern:?}: {why}")]
    BadPattern { pattern: String, why: &'static str },
    #[error("cannot read the archive")]
    Archive(#[source] io::Error),
    #[error("refusing archive entry {}: {why}", path.display())]
    UnsafePath { path: PathBuf, why: &'static str },
    #[error("restored rrd file {} is invalid: {reason}", path.display())]
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
    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{count} restore targets already exist in {}, e.g. {}; nothing was written (use force to replace them)",
        dest.display(),
        list_paths(first)
    )]
    WouldReplace {
        dest: PathBuf,
        count: usize,
        first: Vec<PathBuf>,
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
const MAX_VALIDATE: u64 = 1 << 30;

/// Extracts `archive` (an uncompressed tar stream) into `dest`, creating
/// `dest` if needed. See the module docs for what happens to existing files.
pub fn extract_tree<R: Read>(
    archive: R,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractReport, ExtractError> {
    let patterns = opts
        .include
        .iter()
        .map(|p| Glob::new(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut x = Extractor::new(dest, opts, patterns)?;
    let mut archive = tar::Archive::new(archive);
    let entries = archive.entries().map_err(ExtractError::Archive)?;
    for entry in entries {
        let mut entry = entry.map_err(ExtractError::Archive)?;
        x.entry(&mut entry)?;
    }
    x.finish()
}

/// All-or-nothing variant: `open` is called once for a dry run that checks
/// every entry (paths, type clashes, RRD validity, existing targets) and,
/// if that passes, once more for the real extraction. Without `force`, any
/// existing target fails the call before anything is written.
pub fn extract_tree_checked<R: Read>(
    mut open: impl FnMut() -> io::Result<R>,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractReport, ExtractError> {
    let dry = ExtractOptions {
        dry_run: true,
        ..opts.clone()
    };
    let plan = extract_tree(open().map_err(ExtractError::Archive)?, dest, &dry)?;
    if opts.dry_run {
        return Ok(plan);
    }
    if !opts.force && !plan.would_replace.is_empty() {
        return Err(ExtractError::WouldReplace {
            dest: dest.to_path_buf(),
            count: plan.would_replace.len(),
            first: plan.would_replace.into_iter().take(5).collect(),
        });
    }
    extract_tree(open().map_err(ExtractError::Archive)?, dest, opts)
}

/// Metadata taken from a tar header.
#[derive(Debug, Clone, Copy)]
struct Meta {
    mode: u32,
    mtime: i64,
    uid: Option<u32>,
    gid: Option<u32>,
}

impl Meta {
    fn from_header(h: &tar::Header) -> Result<Meta, ExtractError> {
        let mode = h.mode().map_err(ExtractError::Archive)? & 0o7777;
        let mtime = h.mtime().map_err(ExtractError::Archive)?;
        let uid = h.uid().ok().and_then(|u| u32::try_from(u).ok());
        let gid = h.gid().ok().and_then(|g| u32::try_from(g).ok());
        Ok(Meta {
            mode,
            mtime: i64::try_from(mtime).unwrap_or(i64::MAX),
            uid,
            gid,
        })
    }
}

struct PendingDir {
    rel: PathBuf,
    meta: Meta,
}

/// The directory most recently written into, kept open because archives
/// list a directory's files together.
struct Cached {
    rel: PathBuf,
    /// None in a dry run when the directory does not exist yet.
    fd: Option<OwnedFd>,
    /// Entries were renamed into it since it was last fsync'd.
    dirty: bool,
}

struct Extractor<'a> {
    dest: PathBuf,
    /// None in a dry run when `dest` does not exist yet.
    dest_fd: Option<OwnedFd>,
    opts: &'a ExtractOptions,
    patterns: Vec<Glob>,
    report: ExtractReport,
    cache: Option<Cached>,
    pending: Vec<PendingDir>,
    as_root: bool,
    rrd_buf: Vec<u8>,
    copy_buf: Vec<u8>,
}

fn cstring(name: &OsStr) -> CString {
    // Names come from path components, which cannot contain NUL on Unix
    // (tar's reader stops a name at the first NUL).
    CString::new(name.as_bytes()).unwrap_or_default()
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Dir => "directory",
        Kind::File => "file",
        Kind::Symlink => "symlink",
        Kind::Other => "special file",
    }
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

impl<'a> Extractor<'a> {
    fn new(
        dest: &Path,
        opts: &'a ExtractOptions,
        patterns: Vec<Glob>,
    ) -> Result<Self, ExtractError> {
        let dest_err = |source| ExtractError::Dest {
            path: dest.to_path_buf(),
            source,
        };
        if !opts.dry_run {
            std::fs::create_dir_all(dest).map_err(dest_err)?;
        }
        let dest_fd = match File::open(dest) {
            Ok(f) => Some(OwnedFd::from(f)),
            Err(e) if opts.dry_run && e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(dest_err(e)),
        };
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        Ok(Extractor {
            dest: dest.to_path_buf(),
            dest_fd,
            opts,
            patterns,
            report: ExtractReport::default(),
            cache: None,
            pending: Vec::new(),
            as_root,
            rrd_buf: Vec::new(),
            copy_buf: vec![0; 64 * 1024],
        })
    }

    fn io_err(&self, op: &'static str, rel: &Path) -> impl FnOnce(io::Error) -> ExtractError {
        let path = self.dest.join(rel);
        move |source| ExtractError::Io { op, path, source }
    }

    fn included(&self, rel: &Path) -> bool {
        if self.patterns.is_empty() {
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
            .any(|p| self.patterns.iter().any(|g| g.matches(p)))
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let raw = entry.path().map_err(ExtractError::Archive)?.into_owned();
        let Some(rel) = safe_rel(&raw)? else {
            return Ok(());
        };
        self.leave_dirs_outside(&rel)?;
        if !self.included(&rel) {
            self.report.filtered_out += 1;
            return Ok(());
        }
        let meta = Meta::from_header(entry.header())?;
        match entry.header().entry_type() {
            EntryType::Directory => self.dir(&rel, meta),
            EntryType::Regular | EntryType::Continuous => self.file(&rel, entry, meta),
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
                self.symlink(&rel, &target, meta)
            }
            other => {
                tracing::warn!(path = %rel.display(), entry_type = ?other, "skipping entry type we do not restore");
                self.report.skipped_other += 1;
                Ok(())
            }
        }
    }

    /// Applies the final metadata of directories the archive has left.
    fn leave_dirs_outside(&mut self, rel: &Path) -> Result<(), ExtractError> {
        while let Some(top) = self.pending.last() {
            if rel != top.rel && rel.starts_with(&top.rel) {
                break;
            }
            if let Some(dir) = self.pending.pop() {
                self.finalize_dir(&dir)?;
            }
        }
        Ok(())
    }

    fn finalize_dir(&mut self, dir: &PendingDir) -> Result<(), ExtractError> {
        let Some(root) = &self.dest_fd else {
            return Ok(());
        };
        let fd = match open_chain(root, &dir.rel, false, &mut 0) {
            Ok(Some(fd)) => fd,
            // Removed behind our back: nothing left to set.
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.into_error(&self.dest)),
        };
        apply_meta_fd(fd.as_raw_fd(), &dir.meta, self.as_root)
            .and_then(|()| fsync(fd.as_raw_fd()))
            .map_err(self.io_err("set mode and mtime of", &dir.rel))
    }

    /// Opens (creating in a real run) the directory `rel` and returns its fd,
    /// or None in a dry run when it does not exist yet.
    fn parent_fd(&mut self, rel: &Path) -> Result<Option<RawFd>, ExtractError> {
        if let Some(c) = &self.cache {
            if c.rel == rel {
                return Ok(c.fd.as_ref().map(|f| f.as_raw_fd()));
            }
        }
        self.flush_cache()?;
        let Some(root) = &self.dest_fd else {
            return Ok(None);
        };
        let fd = open_chain(root, rel, !self.opts.dry_run, &mut self.report.dirs_created)
            .map_err(|e| e.into_error(&self.dest))?;
        let raw = fd.as_ref().map(|f| f.as_raw_fd());
        self.cache = Some(Cached {
            rel: rel.to_path_buf(),
            fd,
            dirty: false,
        });
        Ok(raw)
    }

    fn mark_dirty(&mut self) {
        if let Some(c) = &mut self.cache {
            c.dirty = true;
        }
    }

    fn flush_cache(&mut self) -> Result<(), ExtractError> {
        if let Some(c) = self.cache.take() {
            if let (true, Some(fd)) = (c.dirty, &c.fd) {
                fsync(fd.as_raw_fd()).map_err(self.io_err("fsync directory", &c.rel))?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<ExtractReport, ExtractError> {
        self.flush_cache()?;
        while let Some(dir) = self.pending.pop() {
            self.finalize_dir(&dir)?;
        }
        Ok(self.report)
    }

    fn dir(&mut self, rel: &Path, meta: Meta) -> Result<(), ExtractError> {
        let (parent_rel, name) = split(rel);
        let Some(pfd) = self.parent_fd(parent_rel)? else {
            self.report.dirs_created += 1;
            return Ok(());
        };
        let created = match lstat_at(&pfd, &name) {
            Ok(st) if st.kind == Kind::Dir => false,
            Ok(st) => {
                return Err(ExtractError::TypeConflict {
                    path: self.dest.join(rel),
                    existing: kind_name(st.kind),
                    wanted: "directory",
                })
            }
            Err(e) if errno(&e) == libc::ENOENT => {
                self.report.dirs_created += 1;
                if self.opts.dry_run {
                    return Ok(());
                }
                mkdir_at(pfd, &name, 0o700).map_err(self.io_err("create directory", rel))?;
                self.mark_dirty();
                true
            }
            Err(e) => return Err(self.io_err("inspect", rel)(e)),
        };
        if !self.opts.dry_run && (created || self.opts.force) {
            self.pending.push(PendingDir {
                rel: rel.to_path_buf(),
                meta,
            });
        }
        Ok(())
    }

    /// Decides what to do about an existing target: Ok(Some(replace)) to
    /// write (replace = a target exists and `force` is on), Ok(None) to skip.
    fn check_target(
        &mut self,
        pfd: RawFd,
        name: &CStr,
        rel: &Path,
        wanted: &'static str,
    ) -> Result<Option<bool>, ExtractError> {
        match lstat_at(&pfd, name) {
            Err(e) if errno(&e) == libc::ENOENT => Ok(Some(false)),
            Err(e) => Err(self.io_err("inspect", rel)(e)),
            Ok(st) if st.kind == Kind::Dir => Err(ExtractError::TypeConflict {
                path: self.dest.join(rel),
                existing: "directory",
                wanted,
            }),
            Ok(_) if self.opts.dry_run => {
                self.report.would_replace.push(rel.to_path_buf());
                Ok(self.opts.force.then_some(true))
            }
            Ok(_) if self.opts.force => Ok(Some(true)),
            Ok(_) => {
                self.report.skipped_existing.push(rel.to_path_buf());
                Ok(None)
            }
        }
    }

    fn file<R: Read>(
        &mut self,
        rel: &Path,
        entry: &mut tar::Entry<'_, R>,
        meta: Meta,
    ) -> Result<(), ExtractError> {
        let (parent_rel, name) = split(rel);
        let size = entry.size();
        let validate = self.opts.validate_rrd && name.as_bytes().ends_with(b".rrd");
        if validate {
            if size > MAX_VALIDATE {
                return Err(ExtractError::TooLarge {
                    path: rel.to_path_buf(),
                    size,
                });
            }
            self.rrd_buf.clear();
            entry
                .read_to_end(&mut self.rrd_buf)
                .map_err(ExtractError::Archive)?;
            validate_rrd(&self.rrd_buf).map_err(|reason| ExtractError::InvalidRrd {
                path: rel.to_path_buf(),
                reason,
            })?;
        }
        let Some(pfd) = self.parent_fd(parent_rel)? else {
            self.report.written += 1;
            self.report.bytes += size;
            return Ok(());
        };
        let Some(replace) = self.check_target(pfd, &name, rel, "file")? else {
            return Ok(());
        };
        if self.opts.dry_run {
            self.report.written += 1;
            self.report.bytes += size;
            return Ok(());
        }
        let (tmp, mut file) =
            TempName::create_file(pfd, &name).map_err(self.io_err("create", rel))?;
        let written = if validate {
            file.write_all(&self.rrd_buf)
                .map_err(self.io_err("write", rel))?;
            self.rrd_buf.len() as u64
        } else {
            copy_entry(entry, &mut file, &mut self.copy_buf).map_err(|e| match e {
                CopyError::Read(e) => ExtractError::Archive(e),
                CopyError::Write(e) => ExtractError::Io {
                    op: "write",
                    path: self.dest.join(rel),
                    source: e,
                },
            })?
        };
        apply_meta_fd(file.as_raw_fd(), &meta, self.as_root)
            .and_then(|()| file.sync_all())
            .map_err(self.io_err("finish writing", rel))?;
        drop(file);
        self.install(pfd, tmp, &name, rel, replace)?;
        self.report.bytes += written;
        Ok(())
    }

    fn symlink(&mut self, rel: &Path, target: &Path, meta: Meta) -> Result<(), ExtractError> {
        let (parent_rel, name) = split(rel);
        let Some(pfd) = self.parent_fd(parent_rel)? else {
            self.report.written += 1;
            return Ok(());
        };
        let Some(replace) = self.check_target(pfd, &name, rel, "symlink")? else {
            return Ok(());
        };
        if self.opts.dry_run {
            self.report.written += 1;
            return Ok(());
        }
        let c_target = cstring(target.as_os_str());
        let tmp = TempName::create_symlink(pfd, &name, &c_target)
            .map_err(self.io_err("create symlink", rel))?;
        apply_meta_at(pfd, &tmp.name, &meta, self.as_root)
            .map_err(self.io_err("set owner and mtime of symlink", rel))?;
        self.install(pfd, tmp, &name, rel, replace)
    }

    /// Renames the temp over the target (replace) or into place only if the
    /// target still does not exist.
    fn install(
        &mut self,
        pfd: RawFd,
        mut tmp: TempName,
        name: &CStr,
        rel: &Path,
        replace: bool,
    ) -> Result<(), ExtractError> {
        let res = if replace {
            rename_at(pfd, &tmp.name, name)
        } else {
            rename_noreplace_at(pfd, &tmp.name, name)
        };
        match res {
            Ok(()) => {
                tmp.disarm();
                self.mark_dirty();
                self.report.written += 1;
                if replace {
                    self.report.replaced += 1;
                }
                Ok(())
            }
            Err(e) if errno(&e) == libc::EEXIST => {
                // Appeared while we were writing: still never replaced.
                self.report.skipped_existing.push(rel.to_path_buf());
                Ok(())
            }
            Err(e) => Err(self.io_err("rename into place", rel)(e)),
        }
    }
}

fn split(rel: &Path) -> (&Path, CString) {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let name = cstring(rel.file_name().unwrap_or_default());
    (parent, name)
}

/// Why opening a parent chain failed, turned into an error once the
/// destination path is at hand.
enum ChainError {
    Symlink(PathBuf),
    NotDir(PathBuf, Kind),
    Io(PathBuf, io::Error),
}

impl ChainError {
    fn into_error(self, dest: &Path) -> ExtractError {
        match self {
            ChainError::Symlink(p) => ExtractError::UnsafePath {
                path: p,
                why: "a parent directory is a symlink",
            },
            ChainError::NotDir(p, kind) => ExtractError::TypeConflict {
                path: dest.join(p),
                existing: kind_name(kind),
                wanted: "directory",
            },
            ChainError::Io(p, source) => ExtractError::Io {
                op: "open directory",
                path: dest.join(p),
                source,
            },
        }
    }
}

/// Opens `rel` below `root` one component at a time without following
/// symlinks, creating missing directories (0755 minus umask) when `create`.
/// Ok(None): a component is missing and `create` is off.
fn open_chain(
    root: &OwnedFd,
    rel: &Path,
    create: bool,
    created: &mut u64,
) -> Result<Option<OwnedFd>, ChainError> {
    let mut cur: Option<OwnedFd> = None;
    let mut so_far = PathBuf::new();
    for comp in rel.components() {
        so_far.push(comp);
        let base = cur.as_ref().map_or(root.as_raw_fd(), |f| f.as_raw_fd());
        let name = cstring(comp.as_os_str());
        let mut made = false;
        let fd = loop {
            match open_dir_at(&base, &name) {
                Ok(fd) => break fd,
                Err(e) if errno(&e) == libc::ENOENT && create && !made => {
                    match mkdir_at(base, &name, 0o755) {
                        Ok(()) => {
                            *created += 1;
                            fsync(base).map_err(|e| ChainError::Io(so_far.clone(), e))?;
                        }
                        Err(e) if errno(&e) == libc::EEXIST => {}
                        Err(e) => return Err(ChainError::Io(so_far, e)),
                    }
                    made = true;
                }
                Err(e) if errno(&e) == libc::ENOENT && !create => return Ok(None),
                Err(e) if matches!(errno(&e), libc::ELOOP | libc::ENOTDIR) => {
                    return Err(match lstat_at(&base, &name) {
                        Ok(st) if st.kind == Kind::Symlink => ChainError::Symlink(so_far),
                        Ok(st) => ChainError::NotDir(so_far, st.kind),
                        Err(e2) => ChainError::Io(so_far, e2),
                    });
                }
                Err(e) => return Err(ChainError::Io(so_far, e)),
            }
        };
        cur = Some(fd);
    }
    match cur {
        Some(fd) => Ok(Some(fd)),
        None => root
            .try_clone()
            .map(Some)
            .map_err(|e| ChainError::Io(PathBuf::new(), e)),
    }
}

/// A temp entry in the target directory, unlinked on drop unless it was
/// renamed into place.
struct TempName {
    parent: RawFd,
    name: CString,
    armed: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempName {
    fn candidate(target: &CStr) -> CString {
        // Keep within NAME_MAX (255) even for long targets.
        let base = target.to_bytes();
        let base = &base[..base.len().min(200)];
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let rand = (u64::from(std::process::id()) << 32 ^ u64::from(nanos))
            .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut name = Vec::with_capacity(base.len() + 32);
        name.push(b'.');
        name.extend_from_slice(base);
        name.extend_from_slice(format!(".ccbackup-tmp-{rand:016x}").as_bytes());
        CString::new(name).unwrap_or_default()
    }

    /// Retries a few names: O_EXCL makes a collision harmless.
    fn create_with(
        parent: RawFd,
        target: &CStr,
        mut make: impl FnMut(&CStr) -> io::Result<Option<File>>,
    ) -> io::Result<(TempName, Option<File>)> {
        let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
        for _ in 0..16 {
            let name = TempName::candidate(target);
            match make(&name) {
                Ok(file) => {
                    return Ok((
                        TempName {
                            parent,
                            name,
                            armed: true,
                        },
                        file,
                    ))
                }
                Err(e) if errno(&e) == libc::EEXIST => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn create_file(parent: RawFd, target: &CStr) -> io::Result<(TempName, File)> {
        let (tmp, file) = TempName::create_with(parent, target, |name| {
            let flags =
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            // SAFETY: valid fd, NUL-terminated name, mode passed as varargs.
            let fd = unsafe { libc::openat(parent, name.as_ptr(), flags, 0o600 as libc::c_uint) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fresh descriptor owned by nobody else.
            Ok(Some(unsafe { File::from_raw_fd(fd) }))
        })?;
        match file {
            Some(f) => Ok((tmp, f)),
            None => Err(io::Error::other("temp file was not opened")),
        }
    }

    fn create_symlink(parent: RawFd, target_name: &CStr, link_to: &CStr) -> io::Result<TempName> {
        let (tmp, _) = TempName::create_with(parent, target_name, |name| {
            // SAFETY: NUL-terminated strings and a valid directory fd.
            let rc = unsafe { libc::symlinkat(link_to.as_ptr(), parent, name.as_ptr()) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(None)
        })?;
        Ok(tmp)
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempName {
    fn drop(&mut self) {
        if self.armed {
            // SAFETY: valid fd (the cached parent outlives this value) and
            // NUL-terminated name. Nothing useful can be done on failure.
            unsafe { libc::unlinkat(self.parent, self.name.as_ptr(), 0) };
        }
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_entry(src: &mut impl Read, dst: &mut File, buf: &mut [u8]) -> Result<u64, CopyError> {
    let mut total = 0u64;
    loop {
        let n = match src.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        dst.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

fn cvt(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn fsync(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a caller-owned fd.
    cvt(unsafe { libc::fsync(fd) })
}

fn mkdir_at(dir: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: valid fd and NUL-terminated name.
    cvt(unsafe { libc::mkdirat(dir, name.as_ptr(), mode) })
}

fn rename_at(dir: RawFd, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: valid fd and NUL-terminated names.
    cvt(unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) })
}

/// Rename that fails with EEXIST instead of replacing. Falls back to
/// link + unlink (also atomic no-replace) on filesystems without
/// `RENAME_NOREPLACE`.
fn rename_noreplace_at(dir: RawFd, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: valid fd and NUL-terminated names.
    let rc =
        unsafe { libc::renameat2(dir, from.as_ptr(), dir, to.as_ptr(), libc::RENAME_NOREPLACE) };
    match cvt(rc) {
        Err(e) if matches!(errno(&e), libc::EINVAL | libc::ENOSYS) => {
            // SAFETY: as above.
            cvt(unsafe { libc::linkat(dir, from.as_ptr(), dir, to.as_ptr(), 0) })?;
            // SAFETY: as above.
            cvt(unsafe { libc::unlinkat(dir, from.as_ptr(), 0) })
        }
        other => other,
    }
}

fn timespecs(mtime: i64) -> [libc::timespec; 2] {
    // SAFETY: all-zero is a valid timespec (it may have padding fields).
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    ts.tv_sec = mtime as libc::time_t;
    [ts, ts]
}

fn apply_meta_fd(fd: RawFd, meta: &Meta, as_root: bool) -> io::Result<()> {
    if as_root {
        if let (Some(uid), Some(gid)) = (meta.uid, meta.gid) {
            // Before chmod: chown clears setuid/setgid bits.
            // SAFETY: plain syscall on a caller-owned fd.
            cvt(unsafe { libc::fchown(fd, uid, gid) })?;
        }
    }
    // SAFETY: plain syscalls on a caller-owned fd; `times` outlives the call.
    cvt(unsafe { libc::fchmod(fd, meta.mode as libc::mode_t) })?;
    let times = timespecs(meta.mtime);
    cvt(unsafe { libc::futimens(fd, times.as_ptr()) })
}

/// Owner and mtime of a symlink itself (symlinks have no mode on Linux).
fn apply_meta_at(dir: RawFd, name: &CStr, meta: &Meta, as_root: bool) -> io::Result<()> {
    if as_root {
        if let (Some(uid), Some(gid)) = (meta.uid, meta.gid) {
            // SAFETY: valid fd and NUL-terminated name.
            cvt(unsafe {
                libc::fchownat(dir, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
            })?;
        }
    }
    let times = timespecs(meta.mtime);
    // SAFETY: valid fd, NUL-terminated name, `times` outlives the call.
    cvt(unsafe {
        libc::utimensat(
            dir,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(u8),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**`
    AnyDepth,
    /// `**/`: nothing, or anything ending in `/`.
    AnyDirs,
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

/// A compiled include pattern, matched against path bytes.
#[derive(Debug, Clone)]
struct Glob {
    toks: Vec<Tok>,
}

impl Glob {
    fn new(pattern: &str) -> Result<Glob, ExtractError> {
        let bad = |why| ExtractError::BadPattern {
            pattern: pattern.to_string(),
            why,
        };
        let p = pattern.as_bytes();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < p.len() {
            match p[i] {
                b'*' if p.get(i + 1) == Some(&b'*') => {
                    if p.get(i + 2) == Some(&b'/') {
                        toks.push(Tok::AnyDirs);
                        i += 3;
                    } else {
                        toks.push(Tok::AnyDepth);
                        i += 2;
                    }
                }
                b'*' => {
                    toks.push(Tok::Star);
                    i += 1;
                }
                b'?' => {
                    toks.push(Tok::One);
                    i += 1;
                }
                b'\\' => {
                    let c = *p.get(i + 1).ok_or_else(|| bad("ends with a lone `\\`"))?;
                    toks.push(Tok::Lit(c));
                    i += 2;
                }
                b'[' => {
                    let mut j = i + 1;
                    let negated = matches!(p.get(j), Some(b'!') | Some(b'^'));
                    if negated {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let c = *p.get(j).ok_or_else(|| bad("unclosed `[`"))?;
                        if c == b']' && !first {
                            j += 1;
                            break;
                        }
                        first = false;
                        if p.get(j + 1) == Some(&b'-') && p.get(j + 2).is_some_and(|&e| e != b']') {
                            ranges.push((c, p[j + 2]));
                            j += 3;
                        } else {
                            ranges.push((c, c));
                            j += 1;
                        }
                    }
                    toks.push(Tok::Class { negated, ranges });
                    i = j;
                }
                c => {
                    toks.push(Tok::Lit(c));
                    i += 1;
                }
            }
        }
        Ok(Glob { toks })
    }

    /// Dynamic programming over (token, text position), one row at a time:
    /// linear memory, no exponential backtracking on many stars.
    fn matches(&self, text: &[u8]) -> bool {
        let n = text.len();
        // next[t]: tokens after the current one match text[t..].
        let mut next = vec![false; n + 1];
        next[n] = true;
        let mut cur = vec![false; n + 1];
        for tok in self.toks.iter().rev() {
            // For `**/`: whether some `/` at or after t is followed by a match.
            let mut slash_then_rest = false;
            for t in (0..=n).rev() {
                let c = text.get(t).copied();
                cur[t] = match tok {
                    Tok::Lit(l) => c == Some(*l) && next[t + 1],
                    Tok::One => c.is_some_and(|c| c != b'/') && next[t + 1],
                    Tok::Class { negated, ranges } => {
                        c.is_some_and(|c| {
                            c != b'/'
                                && ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                        }) && next[t + 1]
                    }
                    Tok::Star => next[t] || (c.is_some_and(|c| c != b'/') && cur[t + 1]),
                    Tok::AnyDepth => next[t] || (c.is_some() && cur[t + 1]),
                    Tok::AnyDirs => {
                        if c == Some(b'/') && next[t + 1] {
                            slash_then_rest = true;
                        }
                        next[t] || slash_then_rest
                    }
                };
            }
            std::mem::swap(&mut cur, &mut next);
        }
        next[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str, t: &str) -> bool {
        Glob::new(p).unwrap().matches(t.as_bytes())
    }

    #[test]
    fn glob_semantics() {
        assert!(g("*.rrd", "a.rrd"));
        assert!(!g("*.rrd", "d/a.rrd"));
        assert!(g("**/*.rrd", "d/a.rrd"));
        assert!(g("**/*.rrd", "a.rrd"));
        assert!(g("unspecified/**/x.rrd", "unspecified/x.rrd"));
        assert!(g("unspecified/**/x.rrd", "unspecified/a/b/x.rrd"));
        assert!(!g("unspecified/**/x.rrd", "unspecified/a/bx.rrd"));
        assert!(g("unspecified/device:*", "unspecified/device:1234"));
        assert!(!g("unspecified/device:*", "unspecified/__SummaryInfo__"));
        assert!(g("a?c", "abc"));
        assert!(!g("a?c", "a/c"));
        assert!(g("[a-c]x", "bx"));
        assert!(!g("[!a-c]x", "bx"));
        assert!(g("[!a-c]x", "dx"));
        assert!(g("\\*", "*"));
        assert!(!g("\\*", "a"));
        assert!(g("a**", "a/b/c"));
        assert!(g("*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!g("*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(Glob::new("[abc").is_err());
        assert!(Glob::new("abc\\").is_err());
    }

    #[test]
    fn unsafe_paths() {
        assert!(safe_rel(Path::new("../x")).is_err());
        assert!(safe_rel(Path::new("a/../../x")).is_err());
        assert!(safe_rel(Path::new("/etc/passwd")).is_err());
        assert_eq!(safe_rel(Path::new("./")).unwrap(), None);
        assert_eq!(
            safe_rel(Path::new("./a//b/")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
    }
}
