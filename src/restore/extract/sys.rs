//! Thin, fd-relative wrappers over the system calls extraction needs. None
//! of them follows a symlink in the last component.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::sys::walk::{list_dir, lstat_at, open_dir_at, Kind};

use super::Meta;

pub(super) fn cstring(name: &OsStr) -> CString {
    // `safe_rel` refuses names with NUL bytes, so this cannot fail for
    // archive paths; an empty name would only make the call fail.
    CString::new(name.as_bytes()).unwrap_or_default()
}

pub(super) fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
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

fn cvt(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(super) fn fsync(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a caller-owned fd.
    cvt(unsafe { libc::fsync(fd) })
}

/// `mkdirat`; the mode is applied with `fchmod` by callers that care,
/// since the process umask may strip bits from it.
pub(super) fn mkdir_at(dir: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: valid fd and NUL-terminated name.
    cvt(unsafe { libc::mkdirat(dir, name.as_ptr(), mode) })
}

pub(super) fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a caller-owned fd.
    cvt(unsafe { libc::fchmod(fd, mode as libc::mode_t) })
}

/// Creates a new regular file (never opens an existing one or a symlink).
pub(super) fn create_excl(dir: RawFd, name: &CStr) -> io::Result<File> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid fd, NUL-terminated name, mode passed as varargs.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags, 0o600 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

pub(super) fn symlink_at(dir: RawFd, name: &CStr, target: &CStr) -> io::Result<()> {
    // SAFETY: NUL-terminated strings and a valid directory fd.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) })
}

/// Rename from one directory to another, replacing a non-directory target.
pub(super) fn rename_replace(from_dir: RawFd, name: &CStr, to_dir: RawFd) -> io::Result<()> {
    // SAFETY: valid fds and NUL-terminated names.
    cvt(unsafe { libc::renameat(from_dir, name.as_ptr(), to_dir, name.as_ptr()) })
}

/// Rename that fails with EEXIST instead of replacing. On file systems
/// without `RENAME_NOREPLACE`, non-directories fall back to link + unlink
/// (also atomic and no-replace); directories to a check and a plain rename,
/// which can at worst replace an empty directory created in between.
pub(super) fn rename_noreplace(
    from_dir: RawFd,
    from: &CStr,
    to_dir: RawFd,
    to: &CStr,
    is_dir: bool,
) -> io::Result<()> {
    // SAFETY: valid fds and NUL-terminated names.
    let rc = unsafe {
        libc::renameat2(
            from_dir,
            from.as_ptr(),
            to_dir,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    match cvt(rc) {
        Err(e) if matches!(errno(&e), libc::EINVAL | libc::ENOSYS) => {
            if is_dir {
                match lstat_at(&to_dir, to) {
                    Ok(_) => return Err(io::Error::from_raw_os_error(libc::EEXIST)),
                    Err(e) if errno(&e) == libc::ENOENT => {}
                    Err(e) => return Err(e),
                }
                // SAFETY: as above.
                return cvt(unsafe {
                    libc::renameat(from_dir, from.as_ptr(), to_dir, to.as_ptr())
                });
            }
            // SAFETY: as above; no AT_SYMLINK_FOLLOW, so a symlink is linked
            // itself.
            cvt(unsafe { libc::linkat(from_dir, from.as_ptr(), to_dir, to.as_ptr(), 0) })?;
            // SAFETY: as above.
            cvt(unsafe { libc::unlinkat(from_dir, from.as_ptr(), 0) })
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

/// Owner (if the metadata carries one), mode and mtime of an open file or
/// directory.
pub(super) fn apply_meta_fd(fd: RawFd, meta: &Meta) -> io::Result<()> {
    if let Some((uid, gid)) = meta.owner {
        // Before chmod: chown clears setuid/setgid bits.
        // SAFETY: plain syscall on a caller-owned fd.
        cvt(unsafe { libc::fchown(fd, uid, gid) })?;
    }
    fchmod(fd, meta.mode)?;
    let times = timespecs(meta.mtime);
    // SAFETY: plain syscall on a caller-owned fd; `times` outlives the call.
    cvt(unsafe { libc::futimens(fd, times.as_ptr()) })
}

/// Owner and mtime of a symlink itself (symlinks have no mode on Linux).
pub(super) fn apply_meta_at(dir: RawFd, name: &CStr, meta: &Meta) -> io::Result<()> {
    if let Some((uid, gid)) = meta.owner {
        // SAFETY: valid fd and NUL-terminated name.
        cvt(unsafe { libc::fchownat(dir, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })?;
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
        let base = cur.as_ref().map_or(root.as_raw_fd(), |f| f.as_raw_fd());
        let name = cstring(comp.as_os_str());
        let mut made = false;
        let fd = loop {
            match open_dir_at(&base, &name) {
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
                    return Err(match lstat_at(&base, &name) {
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

/// Removes `name` in `dir` and everything below it without following
/// symlinks. Directories are made 0700 first: we own everything in a
/// staging tree, but a restored read-only mode would stop the unlinks.
pub(super) fn remove_tree_at(dir: &OwnedFd, name: &CStr) -> io::Result<()> {
    let sub = match open_dir_at(dir, name) {
        Ok(fd) => fd,
        Err(e) if errno(&e) == libc::ENOENT => return Ok(()),
        Err(e) if matches!(errno(&e), libc::ELOOP | libc::ENOTDIR) => {
            // SAFETY: valid fd and NUL-terminated name.
            return cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) });
        }
        Err(e) => return Err(e),
    };
    // Best effort: failing here shows up as a failed unlink below.
    let _ = fchmod(sub.as_raw_fd(), 0o700);
    for child in list_dir(&sub)? {
        match lstat_at(&sub, &child)?.kind {
            Kind::Dir => remove_tree_at(&sub, &child)?,
            // SAFETY: valid fd and NUL-terminated name.
            _ => cvt(unsafe { libc::unlinkat(sub.as_raw_fd(), child.as_ptr(), 0) })?,
        }
    }
    drop(sub);
    // SAFETY: valid fd and NUL-terminated name.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) })
}
