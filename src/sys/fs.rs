//! File-descriptor-relative file system primitives that never follow a
//! symlink in the last component, shared by the backup walker
//! ([`super::walk`]) and restore's extraction.
//!
//! Both sides work below a directory someone else can change while we look
//! at it (a source tree written by its owner, a restore destination), so
//! every lookup is one name relative to an open directory, with
//! `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`: a component swapped for a symlink
//! makes the call fail (`ELOOP`/`ENOTDIR`) instead of leading outside.
//!
//! Errors are plain [`io::Error`]s carrying the errno, because callers
//! decide on `raw_os_error()` (`ENOENT`, `EEXIST`, `ELOOP`, ...).

use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, RenameFlags, Timespec, Timestamps, Uid,
};

/// The errno of an error from this module (0 for one without).
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// What an entry is, from `lstat` (symlinks are never followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// Sockets, fifos, character and block devices.
    Other,
}

/// The parts of `struct stat` the archive sources and restore need.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub dev: u64,
    pub ino: u64,
}

impl Stat {
    // The field types of `struct stat` differ between targets, so plain
    // casts are the portable spelling here.
    #[allow(clippy::unnecessary_cast)]
    fn from_raw(st: &rustix::fs::Stat) -> Self {
        let kind = match FileType::from_raw_mode(st.st_mode as _) {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        Stat {
            kind,
            mode: st.st_mode as u32 & 0o7777,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime as i64,
            mtime_nsec: st.st_mtime_nsec as i64,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        }
    }

    /// `fstat` of an open file or directory.
    pub fn of(fd: impl AsFd) -> io::Result<Stat> {
        Ok(Stat::from_raw(&rustix::fs::fstat(fd)?))
    }
}

/// `lstat` of `name` inside the directory `dir`.
pub fn lstat_at(dir: impl AsFd, name: &CStr) -> io::Result<Stat> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(Stat::from_raw(&st))
}

/// Opens a directory by path, following symlinks: for roots the operator
/// configured (a walk's source, a restore destination), where a symlinked
/// mount path is their choice. Everything below is opened with
/// [`open_dir_at`].
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path, flags, Mode::empty())?)
}

/// Opens the directory `name` inside `dir`, refusing to follow a symlink.
pub fn open_dir_at(dir: impl AsFd, name: &CStr) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// Opens the file `name` inside `dir` read-only, without following a
/// symlink and without blocking on a fifo (or acquiring a terminal) that
/// replaced it.
pub fn open_file_at(dir: impl AsFd, name: &CStr) -> io::Result<File> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?.into())
}

/// Creates a new regular file `name` in `dir` (mode 0600 before the
/// umask), write-only; never opens an existing file or a symlink (`EEXIST`).
pub fn create_excl(dir: impl AsFd, name: &CStr) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?.into())
}

/// Creates a new regular file `name` in `dir` for reading and writing
/// with `mode` (before the umask); never opens an existing file or a
/// symlink (`EEXIST`).
pub fn create_new_at(dir: impl AsFd, name: &CStr, mode: u32) -> io::Result<File> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(mode))?.into())
}

/// Where [`open_dir_beneath`] stopped: the index of the component that
/// could not be opened (or created), why, and the directories opened
/// before it (so a caller can look at what is there without resolving a
/// path again).
#[derive(Debug)]
pub struct Beneath {
    pub depth: usize,
    pub source: io::Error,
    pub opened: Vec<OwnedFd>,
}

/// Opens the directory `parts` below `root`, one component at a time with
/// [`open_dir_at`], so no component is ever a symlink followed; with
/// `create`, missing directories are made with that mode (before the
/// umask). Returns every directory opened on the way, `root`'s child
/// first, so callers can work back up (removing emptied parents) without
/// looking a path up again.
pub fn open_dir_beneath(
    root: impl AsFd,
    parts: &[CString],
    create: Option<u32>,
) -> Result<Vec<OwnedFd>, Beneath> {
    let root = root.as_fd();
    let mut chain: Vec<OwnedFd> = Vec::with_capacity(parts.len());
    for (depth, name) in parts.iter().enumerate() {
        let parent = chain.last().map_or(root, |d| d.as_fd());
        let opened = match (open_dir_at(parent, name), create) {
            (Err(e), Some(mode)) if errno(&e) == libc::ENOENT => {
                // Someone else creating it in between is as good.
                match mkdir_at(parent, name, mode) {
                    Err(e) if errno(&e) != libc::EEXIST => Err(e),
                    _ => open_dir_at(parent, name),
                }
            }
            (r, _) => r,
        };
        match opened {
            Ok(fd) => chain.push(fd),
            Err(source) => {
                return Err(Beneath {
                    depth,
                    source,
                    opened: chain,
                })
            }
        }
    }
    Ok(chain)
}

/// Renames `from` in `from_dir` to `to` in `to_dir`, replacing a
/// non-directory target.
pub fn rename_at(from_dir: impl AsFd, from: &CStr, to_dir: impl AsFd, to: &CStr) -> io::Result<()> {
    Ok(rustix::fs::renameat(from_dir, from, to_dir, to)?)
}

/// The target of the symlink `name` in `dir`, byte-exact.
pub fn read_link_at(dir: impl AsFd, name: &CStr) -> io::Result<PathBuf> {
    let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
    Ok(PathBuf::from(OsString::from_vec(target.into_bytes())))
}

/// Names in a directory (without `.` and `..`), sorted by bytes.
pub fn list_dir(dir: impl AsFd) -> io::Result<Vec<CString>> {
    // A `Dir` owns its descriptor and we keep `dir` for the *at calls, so
    // it gets a duplicate. The duplicate shares its read position with
    // `dir`: rewind, in case the directory was listed through it before.
    let mut stream = Dir::new(rustix::io::fcntl_dupfd_cloexec(dir, 0)?)?;
    stream.rewind();
    let mut names = Vec::new();
    for entry in stream {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        names.push(name.to_owned());
    }
    // CString compares its bytes including the trailing NUL, which sorts a
    // prefix first: exactly byte order of the names.
    names.sort_unstable();
    Ok(names)
}

/// `mkdirat`; the mode is applied with [`fchmod`] by callers that care,
/// since the process umask may strip bits from it.
pub fn mkdir_at(dir: impl AsFd, name: &CStr, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode))?)
}

/// Creates the symlink `name` in `dir` pointing at `target`.
pub fn symlink_at(dir: impl AsFd, name: &CStr, target: &CStr) -> io::Result<()> {
    Ok(rustix::fs::symlinkat(target, dir, name)?)
}

/// Removes the non-directory `name` in `dir` (a symlink itself, never its
/// target).
pub fn unlink_at(dir: impl AsFd, name: &CStr) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}

/// Removes the empty directory `name` in `dir`.
pub fn remove_dir_at(dir: impl AsFd, name: &CStr) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// Renames `name` from one directory to the same name in another,
/// replacing a non-directory target.
pub fn rename_replace(from_dir: impl AsFd, name: &CStr, to_dir: impl AsFd) -> io::Result<()> {
    Ok(rustix::fs::renameat(from_dir, name, to_dir, name)?)
}

/// Rename that fails with `EEXIST` instead of replacing. On file systems
/// without `RENAME_NOREPLACE` (`EINVAL`, or `ENOSYS` from old kernels),
/// non-directories fall back to link + unlink (also atomic and
/// no-replace); directories to a check and a plain rename, which can at
/// worst replace an empty directory created in between.
pub fn rename_noreplace(
    from_dir: impl AsFd,
    from: &CStr,
    to_dir: impl AsFd,
    to: &CStr,
    is_dir: bool,
) -> io::Result<()> {
    let (from_dir, to_dir) = (from_dir.as_fd(), to_dir.as_fd());
    match rustix::fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
        other => return Ok(other?),
    }
    if is_dir {
        match lstat_at(to_dir, to) {
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::EEXIST)),
            Err(e) if errno(&e) == libc::ENOENT => {}
            Err(e) => return Err(e),
        }
        return Ok(rustix::fs::renameat(from_dir, from, to_dir, to)?);
    }
    // No AT_SYMLINK_FOLLOW: a symlink is linked itself.
    rustix::fs::linkat(from_dir, from, to_dir, to, AtFlags::empty())?;
    unlink_at(from_dir, from)
}

/// Removes `name` in `dir` and everything below it without following
/// symlinks; a missing `name` is not an error. Directories are made 0700
/// first, so a read-only mode (ours to change) does not stop the unlinks.
pub fn remove_tree_at(dir: impl AsFd, name: &CStr) -> io::Result<()> {
    let dir = dir.as_fd();
    let sub = match open_dir_at(dir, name) {
        Ok(fd) => fd,
        Err(e) if errno(&e) == libc::ENOENT => return Ok(()),
        Err(e) if matches!(errno(&e), libc::ELOOP | libc::ENOTDIR) => {
            return unlink_at(dir, name);
        }
        Err(e) => return Err(e),
    };
    // Best effort: failing here shows up as a failed unlink below.
    let _ = fchmod(&sub, 0o700);
    for child in list_dir(&sub)? {
        match lstat_at(&sub, &child)?.kind {
            Kind::Dir => remove_tree_at(&sub, &child)?,
            _ => unlink_at(&sub, &child)?,
        }
    }
    drop(sub);
    remove_dir_at(dir, name)
}

pub fn fsync(fd: impl AsFd) -> io::Result<()> {
    Ok(rustix::fs::fsync(fd)?)
}

/// Sets all permission bits, including setuid/setgid/sticky, whatever the
/// umask.
pub fn fchmod(fd: impl AsFd, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?)
}

/// `u32::MAX` is `(uid_t)-1`, which chown reads as "leave unchanged".
fn ids(uid: u32, gid: u32) -> (Option<Uid>, Option<Gid>) {
    (
        (uid != u32::MAX).then(|| Uid::from_raw(uid)),
        (gid != u32::MAX).then(|| Gid::from_raw(gid)),
    )
}

/// `fchown` of an open file or directory.
pub fn fchown(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = ids(uid, gid);
    Ok(rustix::fs::fchown(fd, uid, gid)?)
}

/// Owner of `name` in `dir` itself (a symlink, not its target).
pub fn lchown_at(dir: impl AsFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = ids(uid, gid);
    Ok(rustix::fs::chownat(
        dir,
        name,
        uid,
        gid,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Access and modification time both set to `secs` (whole seconds).
fn times(secs: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Sets the access and modification time of an open file or directory.
pub fn set_times(fd: impl AsFd, secs: i64) -> io::Result<()> {
    Ok(rustix::fs::futimens(fd, &times(secs))?)
}

/// Sets the times of `name` in `dir` itself (a symlink, not its target).
pub fn set_times_at(dir: impl AsFd, name: &CStr, secs: i64) -> io::Result<()> {
    Ok(rustix::fs::utimensat(
        dir,
        name,
        &times(secs),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn root(dir: &Path) -> OwnedFd {
        open_dir(dir).unwrap()
    }

    #[test]
    fn nothing_follows_a_symlink_in_the_last_component() {
        let tmp = tempfile::tempdir().unwrap();
        let d = root(tmp.path());
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        std::fs::write(tmp.path().join("real/f"), b"x").unwrap();
        symlink("real", tmp.path().join("dlink")).unwrap();
        symlink("real/f", tmp.path().join("flink")).unwrap();
        let err = open_dir_at(&d, c"dlink").unwrap_err();
        assert!(matches!(errno(&err), libc::ELOOP | libc::ENOTDIR), "{err}");
        assert_eq!(errno(&open_file_at(&d, c"flink").unwrap_err()), libc::ELOOP);
        assert_eq!(lstat_at(&d, c"flink").unwrap().kind, Kind::Symlink);
        assert_eq!(read_link_at(&d, c"flink").unwrap(), Path::new("real/f"));
        assert_eq!(errno(&create_excl(&d, c"flink").unwrap_err()), libc::EEXIST);
        assert_eq!(errno(&lstat_at(&d, c"nope").unwrap_err()), libc::ENOENT);
        lchown_at(&d, c"flink", u32::MAX, u32::MAX).unwrap();
        set_times_at(&d, c"flink", 1_000_000).unwrap();
        let target = std::fs::metadata(tmp.path().join("real/f")).unwrap();
        assert_ne!(target.mtime(), 1_000_000);
        assert_eq!(lstat_at(&d, c"flink").unwrap().mtime, 1_000_000);
    }

    #[test]
    fn open_dir_beneath_creates_and_stops_at_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let d = root(tmp.path());
        let parts =
            |p: &[&str]| -> Vec<CString> { p.iter().map(|n| CString::new(*n).unwrap()).collect() };
        let chain = open_dir_beneath(&d, &parts(&["a", "b"]), Some(0o755)).unwrap();
        assert_eq!(chain.len(), 2);
        assert!(tmp.path().join("a/b").is_dir());
        let missing = open_dir_beneath(&d, &parts(&["a", "x", "y"]), None).unwrap_err();
        assert_eq!((missing.depth, errno(&missing.source)), (1, libc::ENOENT));
        symlink(tmp.path().join("a"), tmp.path().join("a/b/up")).unwrap();
        for create in [None, Some(0o755)] {
            let err = open_dir_beneath(&d, &parts(&["a", "b", "up", "b"]), create).unwrap_err();
            assert_eq!(err.depth, 2);
            assert!(
                matches!(errno(&err.source), libc::ELOOP | libc::ENOTDIR),
                "{}",
                err.source
            );
        }
        std::fs::write(tmp.path().join("a/f"), b"x").unwrap();
        let f = create_new_at(&chain[0], c"g", 0o600).unwrap();
        drop(f);
        rename_at(&chain[0], c"g", &chain[1], c"h").unwrap();
        assert!(tmp.path().join("a/b/h").is_file());
        assert_eq!(
            errno(&create_new_at(&chain[0], c"f", 0o600).unwrap_err()),
            libc::EEXIST
        );
    }

    #[test]
    fn list_dir_is_sorted_and_repeatable_on_one_descriptor() {
        let tmp = tempfile::tempdir().unwrap();
        for n in ["b", "a", "ab", "A"] {
            std::fs::write(tmp.path().join(n), n).unwrap();
        }
        let d = root(tmp.path());
        let want: Vec<CString> = ["A", "a", "ab", "b"]
            .iter()
            .map(|n| CString::new(*n).unwrap())
            .collect();
        assert_eq!(list_dir(&d).unwrap(), want);
        // The duplicate shares the read position; the second listing must
        // not start where the first one ended.
        assert_eq!(list_dir(&d).unwrap(), want);
    }

    #[test]
    fn create_mkdir_modes_rename_and_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let d = root(tmp.path());
        mkdir_at(&d, c"sub", 0o700).unwrap();
        assert_eq!(
            errno(&mkdir_at(&d, c"sub", 0o700).unwrap_err()),
            libc::EEXIST
        );
        let sub = open_dir_at(&d, c"sub").unwrap();
        let f = create_excl(&sub, c"f").unwrap();
        // Before fchmod, as restore does: chown clears setuid.
        fchown(&f, u32::MAX, u32::MAX).unwrap();
        fchmod(&f, 0o4640).unwrap();
        set_times(&f, 1_600_000_000).unwrap();
        fsync(&f).unwrap();
        let st = Stat::of(&f).unwrap();
        assert_eq!(
            (st.kind, st.mode, st.mtime),
            (Kind::File, 0o4640, 1_600_000_000)
        );
        symlink_at(&sub, c"l", c"f").unwrap();

        std::fs::write(tmp.path().join("other"), b"o").unwrap();
        let err = rename_noreplace(&sub, c"f", &d, c"other", false).unwrap_err();
        assert_eq!(errno(&err), libc::EEXIST);
        rename_noreplace(&sub, c"f", &d, c"moved", false).unwrap();
        assert_eq!(lstat_at(&d, c"moved").unwrap().mode, 0o4640);
        rename_replace(&d, c"moved", &sub).unwrap();
        mkdir_at(&d, c"sub2", 0o755).unwrap();
        let err = rename_noreplace(&d, c"sub", &d, c"sub2", true).unwrap_err();
        assert_eq!(errno(&err), libc::EEXIST);

        // A read-only directory inside does not stop the removal, and a
        // symlink is removed, not followed.
        mkdir_at(&sub, c"ro", 0o700).unwrap();
        std::fs::write(tmp.path().join("sub/ro/x"), b"x").unwrap();
        std::fs::set_permissions(
            tmp.path().join("sub/ro"),
            std::fs::Permissions::from_mode(0o500),
        )
        .unwrap();
        symlink_at(&d, c"to-other", c"other").unwrap();
        remove_tree_at(&d, c"to-other").unwrap();
        assert!(tmp.path().join("other").exists());
        remove_tree_at(&d, c"sub").unwrap();
        assert!(!tmp.path().join("sub").exists());
        remove_tree_at(&d, c"sub").unwrap();
    }
}
