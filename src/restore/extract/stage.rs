//! Writing the archive into a private staging directory on the
//! destination's file system, from which [`super::place`] moves it into
//! place once all of it has been written.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use crate::sys::fs::{
    create_excl, errno, fchmod, fsync, lstat_at, mkdir_at, open_dir_at, remove_tree_at,
    rename_noreplace, symlink_at, Kind, Stat,
};

use super::chain::{cstring, kind_name, open_chain, split, ChainError};
use super::{open_dest_dir, Content, ExtractError, ExtractReport, Meta, Sink};

/// Part of every staging directory's name, so an operator recognises one
/// left behind by a killed process.
pub(super) const STAGING_MARK: &str = "ccbackup-restore-";

/// The staging directory: `dest/.ccbackup-restore-<rand>` when `dest`
/// exists (inside it, because `dest` may be a mount point), otherwise
/// `.<name>.ccbackup-restore-<rand>` next to the first missing component of
/// `dest`, renamed to that name at the end.
pub(super) struct StagingDir {
    /// The directory holding the staging directory.
    parent: OwnedFd,
    parent_path: PathBuf,
    name: CString,
    stat: Stat,
    /// Where archive entries go: the staging directory itself, or the
    /// innermost of the directories standing in for missing ones.
    root: OwnedFd,
    /// Set when `dest` does not exist.
    missing: Option<Missing>,
    /// Renamed into place or removed: nothing to clean up.
    gone: bool,
}

struct Missing {
    /// The first missing component of `dest`, in `parent`.
    top_name: CString,
    /// The staging directory and the directories below it that stand for
    /// the missing components, outermost first.
    chain: Vec<OwnedFd>,
}

fn dest_err(dest: &Path, cause: io::Error) -> ExtractError {
    ExtractError::Dest {
        path: dest.to_path_buf(),
        cause,
    }
}

/// `mkdir` with a fresh random name; retried because a collision is
/// harmless (`mkdir` never reuses an existing directory).
fn make_unique_dir(parent: &OwnedFd, prefix: &[u8]) -> io::Result<(CString, OwnedFd)> {
    let mut last = io::Error::from_raw_os_error(libc::EEXIST);
    for _ in 0..16 {
        let mut name = prefix.to_vec();
        name.extend_from_slice(format!("{STAGING_MARK}{:016x}", rand::random::<u64>()).as_bytes());
        let name = cstring(OsStr::from_bytes(&name));
        match mkdir_at(parent, &name, 0o700) {
            Ok(()) => {
                let fd = open_dir_at(parent, &name)?;
                // The umask may have taken bits we need; no one else gets any.
                fchmod(&fd, 0o700)?;
                return Ok((name, fd));
            }
            Err(e) if errno(&e) == libc::EEXIST => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

impl StagingDir {
    pub(super) fn create(dest: &Path) -> Result<StagingDir, ExtractError> {
        match std::fs::metadata(dest) {
            Ok(m) if m.is_dir() => {
                let parent = open_dest_dir(dest).map_err(|e| dest_err(dest, e))?;
                Self::inside(parent, dest.to_path_buf(), b".", None)
            }
            Ok(_) => Err(dest_err(dest, io::Error::from_raw_os_error(libc::ENOTDIR))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::for_missing(dest),
            Err(e) => Err(dest_err(dest, e)),
        }
    }

    fn inside(
        parent: OwnedFd,
        parent_path: PathBuf,
        prefix: &[u8],
        missing: Option<(CString, Vec<CString>)>,
    ) -> Result<StagingDir, ExtractError> {
        let io_err = |cause| ExtractError::Io {
            op: "create a staging directory in",
            path: parent_path.clone(),
            cause,
        };
        let (name, top) = make_unique_dir(&parent, prefix).map_err(io_err)?;
        let stat = Stat::of(&top).map_err(io_err)?;
        let mut staging = StagingDir {
            parent,
            parent_path: parent_path.clone(),
            name,
            stat,
            root: top.try_clone().map_err(io_err)?,
            missing: None,
            gone: false,
        };
        // From here on, dropping `staging` removes what was created.
        if let Some((top_name, below)) = missing {
            let mut chain = vec![top];
            let mut innermost = staging.root.try_clone().map_err(io_err)?;
            for comp in below {
                mkdir_at(&innermost, &comp, 0o700).map_err(io_err)?;
                let fd = open_dir_at(&innermost, &comp).map_err(io_err)?;
                chain.push(fd.try_clone().map_err(io_err)?);
                innermost = fd;
            }
            staging.root = innermost;
            staging.missing = Some(Missing { top_name, chain });
        }
        Ok(staging)
    }

    /// `dest` does not exist: stage next to its first missing component.
    fn for_missing(dest: &Path) -> Result<StagingDir, ExtractError> {
        let mut missing = Vec::new();
        let mut ancestor = dest;
        let existing = loop {
            match ancestor.components().next_back() {
                Some(Component::Normal(n)) => missing.push(cstring(n)),
                _ => {
                    return Err(dest_err(
                        dest,
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "a missing destination must be a plain path (no `..`)",
                        ),
                    ))
                }
            }
            ancestor = ancestor.parent().unwrap_or(Path::new(""));
            let probe = if ancestor.as_os_str().is_empty() {
                Path::new(".")
            } else {
                ancestor
            };
            match std::fs::metadata(probe) {
                Ok(m) if m.is_dir() => break probe,
                Ok(_) => return Err(dest_err(probe, io::Error::from_raw_os_error(libc::ENOTDIR))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(dest_err(probe, e)),
            }
        };
        missing.reverse();
        let top_name = missing.remove(0);
        let parent = open_dest_dir(existing).map_err(|e| dest_err(existing, e))?;
        // Keep the name within NAME_MAX (255) even for a long first component.
        let mut prefix = vec![b'.'];
        prefix.extend_from_slice(&top_name.as_bytes()[..top_name.as_bytes().len().min(200)]);
        prefix.push(b'.');
        Self::inside(
            parent,
            existing.to_path_buf(),
            &prefix,
            Some((top_name, missing)),
        )
    }

    /// Where the archive's entries are written.
    pub(super) fn root(&self) -> &OwnedFd {
        &self.root
    }

    /// The existing destination directory, or None when it is created by
    /// [`StagingDir::publish`].
    pub(super) fn dest_dir(&self) -> Option<&OwnedFd> {
        match self.missing {
            None => Some(&self.parent),
            Some(_) => None,
        }
    }

    /// Device and inode of the staging directory, so an archive entry that
    /// has its name is never merged into it.
    pub(super) fn id(&self) -> (u64, u64) {
        (self.stat.dev, self.stat.ino)
    }

    /// For a missing `dest`: gives the directories standing for its missing
    /// components mode 0755 and renames the staging directory to the first
    /// of them, so the whole tree appears at once.
    pub(super) fn publish(&mut self) -> Result<(), ExtractError> {
        let Some(missing) = &self.missing else {
            return Ok(());
        };
        let path = self
            .parent_path
            .join(OsStr::from_bytes(missing.top_name.as_bytes()));
        let io_err = |op| {
            let path = path.clone();
            move |cause| ExtractError::Io { op, path, cause }
        };
        for fd in &missing.chain {
            fchmod(fd, 0o755)
                .and_then(|()| fsync(fd))
                .map_err(io_err("set the mode of"))?;
        }
        let parent = &self.parent;
        rename_noreplace(parent, &self.name, parent, &missing.top_name, true)
            .map_err(io_err("move the restored tree into place at"))?;
        self.gone = true;
        fsync(parent).map_err(io_err("fsync the directory holding"))
    }

    /// Removes the staging directory and whatever is left in it.
    pub(super) fn remove(mut self) -> Result<(), ExtractError> {
        if self.gone {
            return Ok(());
        }
        self.gone = true;
        remove_tree_at(&self.parent, &self.name).map_err(|cause| ExtractError::Io {
            op: "remove the staging directory",
            path: self.path(),
            cause,
        })
    }

    fn path(&self) -> PathBuf {
        self.parent_path
            .join(OsStr::from_bytes(self.name.as_bytes()))
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if self.gone {
            return;
        }
        if let Err(e) = remove_tree_at(&self.parent, &self.name) {
            tracing::warn!(path = %self.path().display(), error = %e, "cannot remove the restore staging directory; remove it by hand");
        }
    }
}

/// What staging learnt that the move phase needs.
pub(super) struct Staged {
    /// Metadata of every directory the archive has an entry for; the others
    /// were created for entries below them and get mode 0755.
    pub(super) dirs: HashMap<PathBuf, Meta>,
    /// Only `filtered_out` and `skipped_other` are set.
    pub(super) report: ExtractReport,
}

/// The directory most recently written into, kept open because archives
/// list a directory's files together.
struct Cached {
    rel: PathBuf,
    fd: Rc<OwnedFd>,
    /// Entries were created in it since it was last fsync'd.
    dirty: bool,
}

/// Writes entries below the staging root. The tree starts empty, so an
/// entry that finds something at its path clashes with an earlier entry.
pub(super) struct Stager<'a> {
    dest: &'a Path,
    root: &'a OwnedFd,
    cache: Option<Cached>,
    dirs: HashMap<PathBuf, Meta>,
    duplicates: Vec<PathBuf>,
    report: ExtractReport,
    copy_buf: Vec<u8>,
}

impl<'a> Stager<'a> {
    pub(super) fn new(dest: &'a Path, root: &'a OwnedFd) -> Self {
        Stager {
            dest,
            root,
            cache: None,
            dirs: HashMap::new(),
            duplicates: Vec::new(),
            report: ExtractReport::default(),
            copy_buf: vec![0; 64 * 1024],
        }
    }

    /// Flushes the last directory and fails if the archive listed a path
    /// twice (all of them are named).
    pub(super) fn finish(mut self) -> Result<Staged, ExtractError> {
        self.flush()?;
        if !self.duplicates.is_empty() {
            return Err(ExtractError::Duplicates {
                count: self.duplicates.len(),
                first: self.duplicates.into_iter().take(5).collect(),
            });
        }
        Ok(Staged {
            dirs: self.dirs,
            report: self.report,
        })
    }

    fn io_err(&self, op: &'static str, rel: &Path) -> impl FnOnce(io::Error) -> ExtractError {
        let path = self.dest.join(rel);
        move |cause| ExtractError::Io { op, path, cause }
    }

    fn parent(&mut self, rel: &Path, entry: &Path) -> Result<Rc<OwnedFd>, ExtractError> {
        if let Some(c) = &self.cache {
            if c.rel == rel {
                return Ok(Rc::clone(&c.fd));
            }
        }
        self.flush()?;
        let fd = match open_chain(self.root, rel, true) {
            Ok(Some(fd)) => fd,
            Ok(None) => {
                return Err(self.io_err("create directory", rel)(
                    io::ErrorKind::NotFound.into(),
                ))
            }
            Err(e) => return Err(self.chain_error(entry, e)),
        };
        let fd = Rc::new(fd);
        self.cache = Some(Cached {
            rel: rel.to_path_buf(),
            fd: Rc::clone(&fd),
            dirty: false,
        });
        Ok(fd)
    }

    /// The staging tree holds only what the archive put there, so a
    /// non-directory on the way down is one of its own entries.
    fn chain_error(&self, entry: &Path, e: ChainError) -> ExtractError {
        match e {
            ChainError::Symlink => ExtractError::UnsafePath {
                path: entry.to_path_buf(),
                why: "a parent directory is a symlink",
            },
            ChainError::NotDir(p, kind) => ExtractError::ArchiveClash {
                path: self.dest.join(entry),
                what: format!(
                    "{} below {}, which it has as a {}",
                    entry.display(),
                    p.display(),
                    kind_name(kind)
                ),
            },
            ChainError::Io(p, cause) => ExtractError::Io {
                op: "create directory",
                path: self.dest.join(p),
                cause,
            },
        }
    }

    fn mark_dirty(&mut self) {
        if let Some(c) = &mut self.cache {
            c.dirty = true;
        }
    }

    fn flush(&mut self) -> Result<(), ExtractError> {
        if let Some(c) = self.cache.take() {
            if c.dirty {
                fsync(&*c.fd).map_err(self.io_err("fsync directory", &c.rel))?;
            }
        }
        Ok(())
    }

    /// Something is already at `rel`: the archive lists the path twice
    /// (recorded, the call fails at the end) or once as a directory and
    /// once as something else (fails now).
    fn taken(
        &mut self,
        pfd: &OwnedFd,
        name: &CString,
        rel: &Path,
        wanted: &'static str,
    ) -> Result<(), ExtractError> {
        let st = lstat_at(pfd, name).map_err(self.io_err("inspect", rel))?;
        if st.kind == Kind::Dir || wanted == "directory" {
            return Err(ExtractError::ArchiveClash {
                path: self.dest.join(rel),
                what: format!(
                    "{} both as a {} and as a {wanted}",
                    rel.display(),
                    kind_name(st.kind)
                ),
            });
        }
        self.duplicates.push(rel.to_path_buf());
        Ok(())
    }
}

impl Sink for Stager<'_> {
    fn counts(&mut self) -> &mut ExtractReport {
        &mut self.report
    }

    fn dir(&mut self, rel: &Path, meta: Meta) -> Result<(), ExtractError> {
        if self.dirs.contains_key(rel) {
            self.duplicates.push(rel.to_path_buf());
            return Ok(());
        }
        let (parent, name) = split(rel);
        let pfd = self.parent(parent, rel)?;
        match mkdir_at(&*pfd, &name, 0o700) {
            Ok(()) => self.mark_dirty(),
            Err(e) if errno(&e) == libc::EEXIST => {
                let st = lstat_at(&*pfd, &name).map_err(self.io_err("inspect", rel))?;
                // A directory here was made for an entry listed before it.
                if st.kind != Kind::Dir {
                    return self.taken(&pfd, &name, rel, "directory");
                }
            }
            Err(e) => return Err(self.io_err("create directory", rel)(e)),
        }
        self.dirs.insert(rel.to_path_buf(), meta);
        Ok(())
    }

    fn file(&mut self, rel: &Path, content: Content<'_>, meta: Meta) -> Result<(), ExtractError> {
        let (parent, name) = split(rel);
        let pfd = self.parent(parent, rel)?;
        let mut file = match create_excl(&*pfd, &name) {
            Ok(f) => f,
            Err(e) if errno(&e) == libc::EEXIST => return self.taken(&pfd, &name, rel, "file"),
            Err(e) => return Err(self.io_err("create", rel)(e)),
        };
        match content {
            Content::Bytes(b) => file.write_all(b).map_err(self.io_err("write", rel))?,
            Content::Stream(r, _) => {
                copy_entry(r, &mut file, &mut self.copy_buf).map_err(|e| match e {
                    CopyError::Read(e) => ExtractError::Archive(e),
                    CopyError::Write(cause) => ExtractError::Io {
                        op: "write",
                        path: self.dest.join(rel),
                        cause,
                    },
                })?
            }
        }
        meta.apply_to(&file)
            .and_then(|()| file.sync_all())
            .map_err(self.io_err("finish writing", rel))?;
        self.mark_dirty();
        Ok(())
    }

    fn symlink(&mut self, rel: &Path, target: &Path, meta: Meta) -> Result<(), ExtractError> {
        let (parent, name) = split(rel);
        let pfd = self.parent(parent, rel)?;
        match symlink_at(&*pfd, &name, &cstring(target.as_os_str())) {
            Ok(()) => {}
            Err(e) if errno(&e) == libc::EEXIST => return self.taken(&pfd, &name, rel, "symlink"),
            Err(e) => return Err(self.io_err("create symlink", rel)(e)),
        }
        meta.apply_at(&*pfd, &name)
            .map_err(self.io_err("set owner and mtime of symlink", rel))?;
        self.mark_dirty();
        Ok(())
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_entry(
    src: &mut dyn Read,
    dst: &mut std::fs::File,
    buf: &mut [u8],
) -> Result<(), CopyError> {
    loop {
        let n = match src.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        dst.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}
