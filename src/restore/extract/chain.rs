//! Archive paths below a directory descriptor: opening (and in the staging
//! tree creating) the parent directories of an entry one component at a
//! time, never through a symlink. The system calls are in [`crate::sys::fs`].

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::sys::fs::{errno, fsync, lstat_at, mkdir_at, open_dir_at, Kind};

pub(super) fn cstring(name: &OsStr) -> CString {
    // `safe_rel` refuses names with NUL bytes, so this cannot fail for
    // archive paths; an empty name would only make the call fail.
    CString::new(name.as_bytes()).unwrap_or_default()
}

pub(super) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Dir => "directory",
        Kind::File => "file",
        Kind::Symlink => "symlink",
        Kind::Other => "special file",
    }
}

/// Parent path and last component of a relative entry path.
pub(super) fn split(rel: &Path) -> (&Path, CString) {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let name = cstring(rel.file_name().unwrap_or_default());
    (parent, name)
}

/// Why opening a parent chain failed; callers turn it into the error that
/// fits (a clash inside the archive, or with the destination).
pub(super) enum ChainError {
    Symlink,
    NotDir(PathBuf, Kind),
    Io(PathBuf, io::Error),
}

/// Opens `rel` below `root` one component at a time without following
/// symlinks. With `create`, missing directories are made 0700 (they live in
/// the private staging tree; their final mode is set when they are moved
/// into place). Ok(None): a component is missing and `create` is off.
pub(super) fn open_chain(
    root: &OwnedFd,
    rel: &Path,
    create: bool,
) -> Result<Option<OwnedFd>, ChainError> {
    let mut cur: Option<OwnedFd> = None;
    let mut so_far = PathBuf::new();
    for comp in rel.components() {
        so_far.push(comp);
        let base = cur.as_ref().unwrap_or(root).as_fd();
        let name = cstring(comp.as_os_str());
        let mut made = false;
        let fd = loop {
            match open_dir_at(base, &name) {
                Ok(fd) => break fd,
                Err(e) if errno(&e) == libc::ENOENT && create && !made => {
                    match mkdir_at(base, &name, 0o700) {
                        Ok(()) => fsync(base).map_err(|e| ChainError::Io(so_far.clone(), e))?,
                        Err(e) if errno(&e) == libc::EEXIST => {}
                        Err(e) => return Err(ChainError::Io(so_far, e)),
                    }
                    made = true;
                }
                Err(e) if errno(&e) == libc::ENOENT && !create => return Ok(None),
                Err(e) if matches!(errno(&e), libc::ELOOP | libc::ENOTDIR) => {
                    return Err(match lstat_at(base, &name) {
                        Ok(st) if st.kind == Kind::Symlink => ChainError::Symlink,
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
