//! Deterministic recursive directory walk shared by the archive sources.
//!
//! Every directory is opened relative to its parent's descriptor with
//! `O_NOFOLLOW | O_DIRECTORY`, and every file is opened relative to the
//! descriptor of the directory it was listed in. A directory swapped for a
//! symlink between listing and opening therefore fails to open instead of
//! leading the walk outside the root, which a path-based walk cannot promise.
//!
//! Order: entries of a directory are visited sorted by the bytes of their
//! names, depth first, a directory before its contents. Two walks of an
//! unchanged tree produce the same sequence, so archives are reproducible.
//!
//! Memory: the walk keeps one sorted listing (and one descriptor) per level of
//! the current path, never the whole tree, so it does not grow with the number
//! of files, only with the size of the largest directories on one path.
//!
//! Entries that disappear between `readdir` and `lstat`/`open` (RRD temp files
//! renamed by librrd, files removed by their owner) are skipped and counted in
//! [`Walk::vanished`]; every other error is reported, because a backup that
//! silently misses readable data is worse than one that fails.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A walk step that failed for a reason other than the entry vanishing.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}", path.display())]
pub struct WalkError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
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

/// The parts of `struct stat` the archive sources need.
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
    // The libc field types differ between targets (e.g. `st_nlink`, `st_mode`
    // widths), so plain casts are the portable spelling here.
    #[allow(clippy::unnecessary_cast)]
    fn from_raw(st: &libc::stat) -> Self {
        let fmt = st.st_mode as u32 & libc::S_IFMT as u32;
        let kind = if fmt == libc::S_IFDIR as u32 {
            Kind::Dir
        } else if fmt == libc::S_IFREG as u32 {
            Kind::File
        } else if fmt == libc::S_IFLNK as u32 {
            Kind::Symlink
        } else {
            Kind::Other
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
    pub fn of(fd: &impl AsRawFd) -> io::Result<Stat> {
        let mut st = MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `st` is a valid out-pointer for one `struct stat`; the fd is
        // owned by the caller for the duration of the call.
        let rc = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstat succeeded, so it initialised the struct.
        Ok(Stat::from_raw(unsafe { &st.assume_init() }))
    }
}

/// One entry of the walk.
#[derive(Debug)]
pub struct Entry {
    rel: PathBuf,
    name: CString,
    parent: Arc<OwnedFd>,
    stat: Stat,
}

impl Entry {
    /// Path relative to the walk root, byte-exact.
    pub fn path(&self) -> &Path {
        &self.rel
    }

    pub fn file_name(&self) -> &OsStr {
        OsStr::from_bytes(self.name.to_bytes())
    }

    /// `lstat` of the entry when it was listed (for directories: `fstat` of
    /// the opened directory).
    pub fn stat(&self) -> &Stat {
        &self.stat
    }

    /// Opens the entry read-only relative to its parent directory, without
    /// following a symlink and without blocking on a fifo that replaced it.
    pub fn open_file(&self) -> io::Result<File> {
        let flags =
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
        // SAFETY: both pointers/fds are valid for the call; the name is
        // NUL-terminated.
        let fd = unsafe { libc::openat(self.parent.as_raw_fd(), self.name.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: openat returned a fresh descriptor that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Reads the target of a symlink entry, byte-exact.
    pub fn read_link(&self) -> io::Result<PathBuf> {
        let mut buf: Vec<u8> = Vec::with_capacity(256);
        loop {
            // SAFETY: the buffer has `capacity` writable bytes; readlinkat
            // writes at most that many and returns how many it wrote.
            let n = unsafe {
                libc::readlinkat(
                    self.parent.as_raw_fd(),
                    self.name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.capacity(),
                )
            };
            let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
            if n < buf.capacity() {
                // SAFETY: readlinkat initialised the first `n` bytes.
                unsafe { buf.set_len(n) };
                return Ok(PathBuf::from(std::ffi::OsString::from_vec(buf)));
            }
            // Possibly truncated: retry with more room (targets are bounded
            // by PATH_MAX in practice, so this ends quickly).
            if buf.capacity() > 1 << 20 {
                return Err(io::Error::other("symlink target longer than 1 MiB"));
            }
            buf.reserve(buf.capacity() * 2);
        }
    }
}

struct Level {
    fd: Arc<OwnedFd>,
    rel: PathBuf,
    names: std::vec::IntoIter<CString>,
}

/// Iterator over everything below a root directory (the root itself is not
/// yielded). See the module docs for order, safety and memory.
pub struct Walk {
    root: PathBuf,
    stack: Vec<Level>,
    vanished: u64,
}

impl Walk {
    pub fn new(root: &Path) -> Result<Walk, WalkError> {
        let fail = |op, source| WalkError {
            op,
            path: root.to_path_buf(),
            source,
        };
        let c_root = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| fail("open", io::Error::from(io::ErrorKind::InvalidInput)))?;
        // The root itself may be a symlink (a volume mount path often is);
        // that is the operator's choice, so it is the one place we follow one.
        // SAFETY: NUL-terminated path, plain flags.
        let fd = unsafe {
            libc::open(
                c_root.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(fail("open directory", io::Error::last_os_error()));
        }
        // SAFETY: fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let names = list_dir(&fd).map_err(|e| fail("list directory", e))?;
        Ok(Walk {
            root: root.to_path_buf(),
            stack: vec![Level {
                fd: Arc::new(fd),
                rel: PathBuf::new(),
                names: names.into_iter(),
            }],
            vanished: 0,
        })
    }

    /// Entries skipped because they disappeared (or changed type) while the
    /// walk was looking at them.
    pub fn vanished(&self) -> u64 {
        self.vanished
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn error(&self, op: &'static str, rel: &Path, source: io::Error) -> WalkError {
        WalkError {
            op,
            path: self.root.join(rel),
            source,
        }
    }
}

/// Errors meaning "the entry we listed is no longer what we listed": gone,
/// or replaced by something of another type (e.g. a directory by a symlink).
pub fn is_vanished(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
    )
}

impl Iterator for Walk {
    type Item = Result<Entry, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let level = self.stack.last_mut()?;
            let Some(name) = level.names.next() else {
                self.stack.pop();
                continue;
            };
            let rel = level.rel.join(OsStr::from_bytes(name.to_bytes()));
            let parent = Arc::clone(&level.fd);
            let stat = match lstat_at(&*parent, &name) {
                Ok(s) => s,
                Err(e) if is_vanished(&e) => {
                    self.vanished += 1;
                    tracing::debug!(path = %rel.display(), "entry vanished before lstat");
                    continue;
                }
                Err(e) => return Some(Err(self.error("lstat", &rel, e))),
            };
            if stat.kind != Kind::Dir {
                return Some(Ok(Entry {
                    rel,
                    name,
                    parent,
                    stat,
                }));
            }
            let dir = match open_dir_at(&*parent, &name) {
                Ok(fd) => fd,
                Err(e) if is_vanished(&e) => {
                    self.vanished += 1;
                    tracing::debug!(path = %rel.display(), "directory vanished before open");
                    continue;
                }
                Err(e) => return Some(Err(self.error("open directory", &rel, e))),
            };
            // Describe the directory we actually opened, not the one lstat saw.
            let stat = match Stat::of(&dir) {
                Ok(s) => s,
                Err(e) => return Some(Err(self.error("stat directory", &rel, e))),
            };
            let names = match list_dir(&dir) {
                Ok(n) => n,
                Err(e) => return Some(Err(self.error("list directory", &rel, e))),
            };
            self.stack.push(Level {
                fd: Arc::new(dir),
                rel: rel.clone(),
                names: names.into_iter(),
            });
            return Some(Ok(Entry {
                rel,
                name,
                parent,
                stat,
            }));
        }
    }
}

/// `lstat` of `name` inside the directory `dir`.
pub(crate) fn lstat_at(dir: &impl AsRawFd, name: &CStr) -> io::Result<Stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid fd, NUL-terminated name, out-pointer for one struct stat.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so it initialised the struct.
    Ok(Stat::from_raw(unsafe { &st.assume_init() }))
}

/// Opens the directory `name` inside `dir`, refusing to follow a symlink.
pub(crate) fn open_dir_at(dir: &impl AsRawFd, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid fd and NUL-terminated name.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Closes a `DIR*` on every path out of `list_dir`.
struct DirStream(*mut libc::DIR);

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful fdopendir and is closed
        // exactly once, here.
        unsafe { libc::closedir(self.0) };
    }
}

/// Names in a directory (without `.` and `..`), sorted by bytes.
pub(crate) fn list_dir(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    // fdopendir takes ownership of its descriptor, and we keep `dir` for
    // openat, so hand it a duplicate.
    // SAFETY: plain fcntl on a valid fd.
    let dup = unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a valid directory descriptor we own.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        let err = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `dup` is still ours to close.
        unsafe { libc::close(dup) };
        return Err(err);
    }
    let stream = DirStream(stream);
    // The duplicate shares its read position with `dir`: start from the
    // top even if the directory was listed before through the same fd.
    // SAFETY: `stream.0` is an open DIR*.
    unsafe { libc::rewinddir(stream.0) };
    let mut names = Vec::new();
    loop {
        // readdir signals errors only through errno, so clear it first.
        // SAFETY: errno is thread-local; writing it is always allowed.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream.0` is an open DIR*.
        let ent = unsafe { libc::readdir(stream.0) };
        if ent.is_null() {
            let err = io::Error::last_os_error();
            if err.raw_os_error().unwrap_or(0) != 0 {
                return Err(err);
            }
            break;
        }
        // SAFETY: readdir returned a valid dirent whose d_name is
        // NUL-terminated and lives until the next readdir on this stream.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        names.push(name.to_owned());
    }
    drop(stream);
    // CString compares its bytes including the trailing NUL, which sorts a
    // prefix first: exactly byte order of the names.
    names.sort_unstable();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn walk_paths(root: &Path) -> Vec<(PathBuf, Kind)> {
        Walk::new(root)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().to_path_buf(), e.stat().kind)
            })
            .collect()
    }

    #[test]
    fn sorted_depth_first_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("b/inner")).unwrap();
        std::fs::create_dir(r.join("a")).unwrap();
        std::fs::write(r.join("b/inner/z"), b"z").unwrap();
        std::fs::write(r.join("b/B"), b"B").unwrap();
        std::fs::write(r.join("a.txt"), b"a").unwrap();
        symlink(r.join("b"), r.join("c-link")).unwrap();
        let got = walk_paths(r);
        let want: Vec<(PathBuf, Kind)> = vec![
            ("a".into(), Kind::Dir),
            ("a.txt".into(), Kind::File),
            ("b".into(), Kind::Dir),
            ("b/B".into(), Kind::File),
            ("b/inner".into(), Kind::Dir),
            ("b/inner/z".into(), Kind::File),
            ("c-link".into(), Kind::Symlink),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn non_utf8_and_odd_names_survive_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let weird = OsStr::from_bytes(b"bad-\xff\xfe-name: sp\xc3\xa9ce.rrd");
        std::fs::create_dir(dir.path().join("device:1234")).unwrap();
        std::fs::write(dir.path().join("device:1234").join(weird), b"x").unwrap();
        let e: Vec<_> = Walk::new(dir.path()).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[1].path().as_os_str().as_bytes(),
            b"device:1234/bad-\xff\xfe-name: sp\xc3\xa9ce.rrd"
        );
        let mut s = String::new();
        io::Read::read_to_string(&mut e[1].open_file().unwrap(), &mut s).unwrap();
        assert_eq!(s, "x");
    }

    #[test]
    fn vanished_entries_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["a", "b", "c"] {
            std::fs::write(dir.path().join(n), n).unwrap();
        }
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let mut walk = Walk::new(dir.path()).unwrap();
        // Listed already; remove two before they are looked at.
        std::fs::remove_file(dir.path().join("b")).unwrap();
        std::fs::remove_dir(dir.path().join("d")).unwrap();
        let names: Vec<_> = walk
            .by_ref()
            .map(|e| e.unwrap().path().to_path_buf())
            .collect();
        assert_eq!(names, vec![PathBuf::from("a"), PathBuf::from("c")]);
        assert_eq!(walk.vanished(), 2);
    }

    #[test]
    fn read_link_and_open_refuses_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = "x".repeat(300);
        symlink(&target, dir.path().join("l")).unwrap();
        let e = Walk::new(dir.path()).unwrap().next().unwrap().unwrap();
        assert_eq!(e.read_link().unwrap(), PathBuf::from(&target));
        let err = e.open_file().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn missing_root_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Walk::new(&dir.path().join("nope")).err().unwrap();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
