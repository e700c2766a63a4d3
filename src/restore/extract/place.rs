//! Moving a fully written staging tree into the destination.
//!
//! First a read-only check of the staged tree against the destination
//! (type clashes, symlinks, other file systems, existing targets), so that
//! in the common case every refusal happens before anything moves. Then the
//! moves: a staged directory missing from the destination is renamed in
//! whole; an existing one is merged into; files and symlinks are renamed
//! over their target with `force` and with `RENAME_NOREPLACE` otherwise.
//!
//! Directory metadata is applied here, not while staging: a directory
//! moved to another parent must stay writable for the rename (it updates
//! `..`), so the directories below a moved one get theirs before the move
//! and the moved one right after it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::sys::fs::{
    errno, fchmod, fsync, list_dir, lstat_at, open_dir_at, rename_noreplace, rename_replace, Kind,
    Stat,
};

use super::chain::kind_name;
use super::stage::{Staged, StagingDir};
use super::{ExtractError, ExtractReport, Meta};

/// What to do about a file or symlink whose target exists without `force`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnExisting {
    /// Leave it, list it in `skipped_existing`, restore the rest.
    Skip,
    /// Fail: before moving anything if it is seen by the check, otherwise
    /// (it appeared during the moves) after the rest is in place.
    Refuse,
}

/// Moves the staged tree into place. Errors after the first move are
/// wrapped in [`ExtractError::PartlyRestored`].
pub(super) fn place(
    staging: &mut StagingDir,
    staged: Staged,
    dest: &Path,
    force: bool,
    on_existing: OnExisting,
) -> Result<ExtractReport, ExtractError> {
    let mut p = Placer {
        dest,
        force,
        on_existing,
        dirs: &staged.dirs,
        staging: staging.id(),
        report: staged.report,
        existing: Vec::new(),
        moved: 0,
    };
    match staging.dest_dir() {
        None => {
            let counts = p.finish_below(staging.root(), Path::new(""))?;
            p.add(counts);
            staging.publish()?;
        }
        Some(dest_fd) => {
            let root = staging.root();
            p.check(root, dest_fd, Path::new(""))?;
            if !p.existing.is_empty() {
                return Err(ExtractError::WouldReplace {
                    dest: dest.to_path_buf(),
                    count: p.existing.len(),
                    first: p.existing.into_iter().take(5).collect(),
                });
            }
            p.merge_all(root, dest_fd)?;
        }
    }
    Ok(p.report)
}

/// Entries moved or found below a directory, added to the report only once
/// the directory is in place.
#[derive(Default)]
struct Counts {
    written: u64,
    bytes: u64,
    dirs: u64,
}

struct Placer<'a> {
    dest: &'a Path,
    force: bool,
    on_existing: OnExisting,
    dirs: &'a HashMap<PathBuf, Meta>,
    /// Device and inode of the staging directory.
    staging: (u64, u64),
    report: ExtractReport,
    /// Targets that exist, with [`OnExisting::Refuse`].
    existing: Vec<PathBuf>,
    /// Renames done so far: after the first one a failure leaves the
    /// destination partly restored.
    moved: u64,
}

fn child_rel(rel: &Path, name: &std::ffi::CStr) -> PathBuf {
    rel.join(OsStr::from_bytes(name.to_bytes()))
}

impl Placer<'_> {
    fn io_err(&self, op: &'static str, rel: &Path) -> impl FnOnce(io::Error) -> ExtractError {
        let path = self.dest.join(rel);
        move |cause| ExtractError::Io { op, path, cause }
    }

    fn add(&mut self, c: Counts) {
        self.report.written += c.written;
        self.report.bytes += c.bytes;
        self.report.dirs_created += c.dirs;
    }

    fn list(&self, dir: &OwnedFd, rel: &Path) -> Result<Vec<std::ffi::CString>, ExtractError> {
        list_dir(dir).map_err(self.io_err("list the staged copy of", rel))
    }

    fn lstat(
        &self,
        dir: &OwnedFd,
        name: &std::ffi::CStr,
        rel: &Path,
    ) -> Result<Stat, ExtractError> {
        lstat_at(dir, name).map_err(self.io_err("inspect", rel))
    }

    /// The read-only pass over staged directory `s` and its counterpart `d`.
    fn check(&mut self, s: &OwnedFd, d: &OwnedFd, rel: &Path) -> Result<(), ExtractError> {
        for name in self.list(s, rel)? {
            let child = child_rel(rel, &name);
            let staged = self.lstat(s, &name, &child)?;
            let target = match lstat_at(d, &name) {
                Ok(t) => t,
                Err(e) if errno(&e) == libc::ENOENT => continue,
                Err(e) => return Err(self.io_err("inspect", &child)(e)),
            };
            match (staged.kind, target.kind) {
                (Kind::Dir, Kind::Dir) => {
                    if (target.dev, target.ino) == self.staging {
                        return Err(ExtractError::UnsafePath {
                            path: child,
                            why: "it has the name of this restore's staging directory",
                        });
                    }
                    let dsub =
                        open_dir_at(d, &name).map_err(self.io_err("open directory", &child))?;
                    let dsub_stat = Stat::of(&dsub).map_err(self.io_err("inspect", &child))?;
                    if dsub_stat.dev != self.staging.0 {
                        return Err(ExtractError::OtherFileSystem {
                            path: self.dest.join(&child),
                            dest: self.dest.to_path_buf(),
                        });
                    }
                    let ssub = open_dir_at(s, &name)
                        .map_err(self.io_err("open the staged copy of", &child))?;
                    self.check(&ssub, &dsub, &child)?;
                }
                (Kind::Dir, Kind::Symlink) => {
                    return Err(ExtractError::UnsafePath {
                        path: child,
                        why: "it is a symlink in the destination, and restore never follows one",
                    })
                }
                (Kind::Dir, other) => {
                    return Err(ExtractError::TypeConflict {
                        path: self.dest.join(&child),
                        existing: kind_name(other),
                        wanted: "directory",
                    })
                }
                (wanted, Kind::Dir) => {
                    return Err(ExtractError::TypeConflict {
                        path: self.dest.join(&child),
                        existing: "directory",
                        wanted: kind_name(wanted),
                    })
                }
                _ if self.force || self.on_existing == OnExisting::Skip => {}
                _ => self.existing.push(child),
            }
        }
        Ok(())
    }

    /// Merges the staged root into the destination; with
    /// [`OnExisting::Refuse`], targets that appeared since the check are
    /// left alone and named in the error, after the rest is in place.
    fn merge_all(&mut self, s: &OwnedFd, d: &OwnedFd) -> Result<(), ExtractError> {
        if let Err(cause) = self.merge(s, d, Path::new("")) {
            if self.moved == 0 {
                return Err(cause);
            }
            return Err(ExtractError::PartlyRestored {
                moved: self.moved,
                cause: Box::new(cause),
            });
        }
        if self.existing.is_empty() {
            return Ok(());
        }
        Err(ExtractError::Appeared {
            dest: self.dest.to_path_buf(),
            count: self.existing.len(),
            first: std::mem::take(&mut self.existing)
                .into_iter()
                .take(5)
                .collect(),
        })
    }

    fn merge(&mut self, s: &OwnedFd, d: &OwnedFd, rel: &Path) -> Result<(), ExtractError> {
        let mut dirty = false;
        for name in self.list(s, rel)? {
            let child = child_rel(rel, &name);
            let staged = self.lstat(s, &name, &child)?;
            if staged.kind == Kind::Dir {
                dirty |= self.merge_dir(s, d, &name, &child)?;
                continue;
            }
            let moved = if self.force {
                let existed = lstat_at(d, &name).is_ok();
                rename_replace(s, &name, d).map(|()| existed)
            } else {
                rename_noreplace(s, &name, d, &name, false).map(|()| false)
            };
            match moved {
                Ok(replaced) => {
                    self.moved += 1;
                    dirty = true;
                    self.report.written += 1;
                    if staged.kind == Kind::File {
                        self.report.bytes += staged.size;
                    }
                    self.report.replaced += u64::from(replaced);
                }
                Err(e) if errno(&e) == libc::EEXIST => match self.on_existing {
                    OnExisting::Skip => self.report.skipped_existing.push(child),
                    OnExisting::Refuse => self.existing.push(child),
                },
                Err(e) => return Err(self.io_err("move into place", &child)(e)),
            }
        }
        if dirty {
            fsync(d).map_err(self.io_err("fsync directory", rel))?;
        }
        Ok(())
    }

    /// Renames the staged directory `name` into `d` in whole, or merges it
    /// into the one already there. Returns whether `d` changed.
    fn merge_dir(
        &mut self,
        s: &OwnedFd,
        d: &OwnedFd,
        name: &std::ffi::CStr,
        child: &Path,
    ) -> Result<bool, ExtractError> {
        let ssub = open_dir_at(s, name).map_err(self.io_err("open the staged copy of", child))?;
        let open_target = |p: &Self| {
            open_dir_at(d, name).map_err(|e| match errno(&e) {
                libc::ELOOP | libc::ENOTDIR => ExtractError::TypeConflict {
                    path: p.dest.join(child),
                    existing: "non-directory",
                    wanted: "directory",
                },
                _ => p.io_err("open directory", child)(e),
            })
        };
        match lstat_at(d, name) {
            Err(e) if errno(&e) == libc::ENOENT => {}
            Err(e) => return Err(self.io_err("inspect", child)(e)),
            Ok(_) => {
                let dsub = open_target(self)?;
                self.merge(&ssub, &dsub, child)?;
                if self.force && self.dirs.contains_key(child) {
                    self.finish_dir(&dsub, child)?;
                }
                return Ok(false);
            }
        }
        let counts = self.finish_below(&ssub, child)?;
        match rename_noreplace(s, name, d, name, true) {
            Ok(()) => {
                self.moved += 1;
                self.add(counts);
                self.report.dirs_created += 1;
                self.finish_dir(&ssub, child)?;
                Ok(true)
            }
            Err(e) if errno(&e) == libc::EEXIST => {
                // Created since the lstat above: merge into it instead.
                let dsub = open_target(self)?;
                self.merge(&ssub, &dsub, child)?;
                Ok(false)
            }
            Err(e) => Err(self.io_err("move into place", child)(e)),
        }
    }

    /// Applies the metadata of every directory strictly below `dir`
    /// (deepest first, so setting a mode never blocks a later step) and
    /// counts what is there.
    fn finish_below(&self, dir: &OwnedFd, rel: &Path) -> Result<Counts, ExtractError> {
        let mut counts = Counts::default();
        for name in self.list(dir, rel)? {
            let child = child_rel(rel, &name);
            let st = self.lstat(dir, &name, &child)?;
            match st.kind {
                Kind::Dir => {
                    let sub = open_dir_at(dir, &name)
                        .map_err(self.io_err("open the staged copy of", &child))?;
                    let below = self.finish_below(&sub, &child)?;
                    self.finish_dir(&sub, &child)?;
                    counts.written += below.written;
                    counts.bytes += below.bytes;
                    counts.dirs += below.dirs + 1;
                }
                Kind::File => {
                    counts.written += 1;
                    counts.bytes += st.size;
                }
                _ => counts.written += 1,
            }
        }
        Ok(counts)
    }

    /// The archive's metadata for a directory it lists, 0755 for one made
    /// only to hold other entries (whatever the umask).
    fn finish_dir(&self, fd: &OwnedFd, rel: &Path) -> Result<(), ExtractError> {
        match self.dirs.get(rel) {
            Some(meta) => meta.apply_to(fd),
            None => fchmod(fd, 0o755),
        }
        .and_then(|()| fsync(fd))
        .map_err(self.io_err("set mode and mtime of", rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn open(p: &Path) -> OwnedFd {
        super::super::open_dest_dir(p).unwrap()
    }

    /// A placer into `dest` that refuses existing targets, with nothing
    /// placed yet.
    fn test_placer<'a>(
        dest: &'a Path,
        force: bool,
        dirs: &'a HashMap<PathBuf, Meta>,
    ) -> Placer<'a> {
        Placer {
            dest,
            force,
            on_existing: OnExisting::Refuse,
            dirs,
            staging: (0, 0),
            report: ExtractReport::default(),
            existing: Vec::new(),
            moved: 0,
        }
    }

    /// A target created after the check (here: before the moves, with the
    /// check skipped) is never replaced; the rest is moved and the error
    /// names it.
    #[test]
    fn target_appearing_during_the_moves_is_left_alone_and_named() {
        let tmp = tempfile::tempdir().unwrap();
        let (s, d) = (tmp.path().join("s"), tmp.path().join("d"));
        fs::create_dir_all(s.join("sub")).unwrap();
        fs::create_dir(&d).unwrap();
        fs::write(s.join("a"), b"ours").unwrap();
        fs::write(s.join("b"), b"ours").unwrap();
        fs::write(s.join("sub/c"), b"ours").unwrap();
        fs::write(d.join("b"), b"theirs").unwrap();
        let dirs = HashMap::new();
        let mut p = test_placer(&d, false, &dirs);
        let err = p.merge_all(&open(&s), &open(&d)).unwrap_err();
        assert!(
            matches!(&err, ExtractError::Appeared { count: 1, first, .. } if first == &[PathBuf::from("b")]),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains('b') && msg.contains("left alone"), "{msg}");
        assert_eq!(fs::read(d.join("b")).unwrap(), b"theirs");
        assert_eq!(fs::read(d.join("a")).unwrap(), b"ours");
        assert_eq!(fs::read(d.join("sub/c")).unwrap(), b"ours");
        assert_eq!(p.report.written, 2);

        // Without Refuse the same situation is a skip, not an error.
        fs::write(s.join("b2"), b"ours").unwrap();
        fs::write(d.join("b2"), b"theirs").unwrap();
        p.on_existing = OnExisting::Skip;
        p.merge_all(&open(&s), &open(&d)).unwrap();
        assert!(p.report.skipped_existing.contains(&PathBuf::from("b2")));
        assert_eq!(fs::read(d.join("b2")).unwrap(), b"theirs");
    }

    /// A failure after the first move says the destination is partly
    /// restored (here: a directory appeared where a file goes, with force).
    #[test]
    fn failure_after_a_move_says_partly_restored() {
        let tmp = tempfile::tempdir().unwrap();
        let (s, d) = (tmp.path().join("s"), tmp.path().join("d"));
        fs::create_dir(&s).unwrap();
        fs::create_dir_all(d.join("b")).unwrap();
        fs::write(s.join("a"), b"ours").unwrap();
        fs::write(s.join("b"), b"ours").unwrap();
        let dirs = HashMap::new();
        let mut p = test_placer(&d, true, &dirs);
        let err = p.merge_all(&open(&s), &open(&d)).unwrap_err();
        assert!(
            matches!(&err, ExtractError::PartlyRestored { moved: 1, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("partly restored"), "{err}");
        assert!(d.join("b").is_dir());
    }
}
