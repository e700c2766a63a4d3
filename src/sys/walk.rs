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

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fs::{list_dir, lstat_at, open_dir, open_dir_at, open_file_at, read_link_at};
pub use super::fs::{Kind, Stat};

/// A walk step that failed for a reason other than the entry vanishing.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}", path.display())]
pub struct WalkError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
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
        open_file_at(&*self.parent, &self.name)
    }

    /// Reads the target of a symlink entry, byte-exact.
    pub fn read_link(&self) -> io::Result<PathBuf> {
        read_link_at(&*self.parent, &self.name)
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
        // The root itself may be a symlink (a volume mount path often is);
        // that is the operator's choice, so it is the one place we follow one.
        let fd = open_dir(root).map_err(|e| fail("open directory", e))?;
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
