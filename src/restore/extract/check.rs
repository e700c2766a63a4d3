//! The pre-check (and dry run): compares every archive entry with what is
//! in the destination, without writing anything.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::sys::fs::{errno, lstat_at, Kind};

use super::chain::{kind_name, open_chain, split};
use super::{dest_chain_error, open_dest_dir, Content, ExtractError, ExtractReport, Meta, Sink};

pub(super) struct Checker<'a> {
    dest: &'a Path,
    /// None when `dest` does not exist yet: then every entry is new.
    root: Option<OwnedFd>,
    force: bool,
    report: ExtractReport,
    /// The directory looked up last (None: it does not exist in dest),
    /// kept because archives list a directory's files together.
    cache: Option<(PathBuf, Option<Rc<OwnedFd>>)>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(dest: &'a Path, force: bool) -> Result<Self, ExtractError> {
        let root = match open_dest_dir(dest) {
            Ok(fd) => Some(fd),
            Err(e) if errno(&e) == libc::ENOENT => None,
            Err(cause) => {
                return Err(ExtractError::Dest {
                    path: dest.to_path_buf(),
                    cause,
                })
            }
        };
        Ok(Checker {
            dest,
            root,
            force,
            report: ExtractReport::default(),
            cache: None,
        })
    }

    pub(super) fn into_report(self) -> ExtractReport {
        self.report
    }

    /// The directory `rel` in dest, or None if it does not exist (yet).
    fn parent(&mut self, rel: &Path, entry: &Path) -> Result<Option<Rc<OwnedFd>>, ExtractError> {
        if let Some((cached, fd)) = &self.cache {
            if cached == rel {
                return Ok(fd.clone());
            }
        }
        let Some(root) = &self.root else {
            return Ok(None);
        };
        let fd = open_chain(root, rel, false)
            .map_err(|e| dest_chain_error(self.dest, entry, e))?
            .map(Rc::new);
        self.cache = Some((rel.to_path_buf(), fd.clone()));
        Ok(fd)
    }

    /// Whether a file or symlink at `rel` would be written; an existing
    /// target is listed in `would_replace` and written only with `force`.
    fn target(&mut self, rel: &Path, wanted: &'static str) -> Result<bool, ExtractError> {
        let (parent, name) = split(rel);
        let Some(pfd) = self.parent(parent, rel)? else {
            return Ok(true);
        };
        match lstat_at(&*pfd, &name) {
            Err(e) if errno(&e) == libc::ENOENT => Ok(true),
            Err(cause) => Err(ExtractError::Io {
                op: "inspect",
                path: self.dest.join(rel),
                cause,
            }),
            Ok(st) if st.kind == Kind::Dir => Err(ExtractError::TypeConflict {
                path: self.dest.join(rel),
                existing: "directory",
                wanted,
            }),
            Ok(_) => {
                self.report.would_replace.push(rel.to_path_buf());
                Ok(self.force)
            }
        }
    }
}

impl Sink for Checker<'_> {
    fn counts(&mut self) -> &mut ExtractReport {
        &mut self.report
    }

    fn dir(&mut self, rel: &Path, _meta: Meta) -> Result<(), ExtractError> {
        self.report.dirs_seen += 1;
        let (parent, name) = split(rel);
        let Some(pfd) = self.parent(parent, rel)? else {
            self.report.dirs_created += 1;
            return Ok(());
        };
        match lstat_at(&*pfd, &name) {
            Ok(st) if st.kind == Kind::Dir => Ok(()),
            Ok(st) => Err(ExtractError::TypeConflict {
                path: self.dest.join(rel),
                existing: kind_name(st.kind),
                wanted: "directory",
            }),
            Err(e) if errno(&e) == libc::ENOENT => {
                self.report.dirs_created += 1;
                Ok(())
            }
            Err(cause) => Err(ExtractError::Io {
                op: "inspect",
                path: self.dest.join(rel),
                cause,
            }),
        }
    }

    fn file(&mut self, rel: &Path, content: Content<'_>, _meta: Meta) -> Result<(), ExtractError> {
        if self.target(rel, "file")? {
            self.report.written += 1;
            self.report.bytes += content.size();
        }
        Ok(())
    }

    fn symlink(&mut self, rel: &Path, _target: &Path, _meta: Meta) -> Result<(), ExtractError> {
        if self.target(rel, "symlink")? {
            self.report.written += 1;
        }
        Ok(())
    }
}
