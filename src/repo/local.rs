//! A `file://` store that never follows symlinks and reads only regular
//! files.
//!
//! object_store's `LocalFileSystem` lists with symlinks followed and opens
//! paths as given. In a store someone else can write, a symlink
//! `job/id/data -> /etc` would make the sweep or retention delete `/etc`,
//! a symlinked artifact would make `verify` print the size and sha256 of
//! any local file, and a FIFO would hang every reader. This wrapper lists
//! with its own walker (symlinks and special files are skipped and logged,
//! never followed, so loops cannot happen), and checks before every read,
//! write and delete that no component below the store root is a symlink
//! and that what is read is a regular file.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

#[derive(Debug)]
pub struct NoFollow {
    inner: Arc<LocalFileSystem>,
    root: PathBuf,
}

impl NoFollow {
    pub fn new(inner: LocalFileSystem, root: PathBuf) -> NoFollow {
        NoFollow {
            inner: Arc::new(inner),
            root,
        }
    }
}

impl std::fmt::Display for NoFollow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoFollow({})", self.root.display())
    }
}

fn refused(path: &Path, why: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "file",
        source: format!(
            "refusing {}: {why}",
            path.display().to_string().escape_debug()
        )
        .into(),
    }
}

/// Checks that no existing component of `full` below `root` is a symlink,
/// and with `regular`, that `full` itself is a regular file if it exists.
/// Missing components are fine (the operation then reports NotFound or
/// creates them).
fn check(root: &Path, full: &Path, regular: bool) -> object_store::Result<()> {
    let Ok(rel) = full.strip_prefix(root) else {
        return Err(refused(full, "it is outside the store"));
    };
    let mut cur = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, c) in parts.iter().enumerate() {
        cur.push(c);
        let md = match std::fs::symlink_metadata(&cur) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(refused(&cur, &e.to_string())),
        };
        let last = i + 1 == parts.len();
        if md.file_type().is_symlink() {
            return Err(refused(&cur, "it is a symlink inside the store"));
        }
        if last && regular && !md.file_type().is_file() {
            return Err(refused(&cur, "it is not a regular file"));
        }
        if !last && !md.is_dir() {
            return Err(refused(&cur, "a parent is not a directory"));
        }
    }
    Ok(())
}

/// Opens `rel` below `root` for reading: no symlink anywhere on the way,
/// `O_NOFOLLOW` on the file itself and `O_NONBLOCK` so a FIFO cannot hang
/// us, and the opened file must be regular.
pub fn open_regular(root: &Path, rel: &[&str]) -> io::Result<File> {
    let mut full = root.to_path_buf();
    full.extend(rel);
    check(root, &full, true).map_err(io::Error::other)?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(&full)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            full.display().to_string().escape_debug()
        )));
    }
    Ok(f)
}

/// Removes the directories above `full` that are empty, up to (not
/// including) `root`; stops at the first that is not.
fn remove_empty_parents(root: &Path, full: &Path) {
    let mut dir = full.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Lists regular files below `dir`, never following symlinks.
fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectMeta>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        let path = entry.path();
        if ft.is_symlink() || !(ft.is_dir() || ft.is_file()) {
            tracing::warn!(path = %path.display().to_string().escape_debug(), "ignoring a symlink or special file in the store; ccbackup never writes one");
            continue;
        }
        if ft.is_dir() {
            walk(root, &path, out);
            continue;
        }
        let name = entry.file_name();
        // object_store's own multipart staging files (`name#n`).
        if name.to_string_lossy().contains('#') {
            continue;
        }
        let Ok(md) = entry.metadata() else { continue };
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let last_modified =
            DateTime::<Utc>::from_timestamp(md.mtime(), md.mtime_nsec() as u32).unwrap_or_default();
        out.push(ObjectMeta {
            location: ObjPath::from_iter(parts),
            last_modified,
            size: md.len(),
            e_tag: None,
            version: None,
        });
    }
}

/// Removes what killed or failed runs leave in a `file://` store that no
/// listing shows: object_store's multipart staging files (`<key>#<n>`,
/// left by a process killed mid-upload or a cleanup that could not delete)
/// and directories left empty (a failed run's `<job>/<id>/`), under the
/// job's directory, when they were last changed before `cutoff` (a younger
/// one may belong to a running upload). The job's directory itself stays;
/// symlinks and special files are never touched. Returns the removed keys
/// (directories end in `/`).
pub async fn sweep_staging(
    root: PathBuf,
    job: String,
    cutoff: DateTime<Utc>,
) -> io::Result<Vec<String>> {
    tokio::task::spawn_blocking(move || {
        let dir = root.join(&job);
        check(&root, &dir, false).map_err(io::Error::other)?;
        let mut out = Vec::new();
        // Everything below the store's root is opened relative to its
        // parent and never through a symlink, so a directory swapped for a
        // symlink mid-sweep is not followed out of the store.
        let root_fd = match crate::sys::fs::open_dir(&root) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        let Ok(name) = std::ffi::CString::new(job.as_bytes()) else {
            return Ok(out);
        };
        let job_fd = match crate::sys::fs::open_dir_at(&root_fd, &name) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            // A symlink or a file where the job's directory should be.
            Err(e) if matches!(crate::sys::fs::errno(&e), libc::ELOOP | libc::ENOTDIR) => {
                return Ok(out)
            }
            Err(e) => return Err(e),
        };
        sweep_dir(&job_fd, &job, cutoff, &mut out);
        Ok(out)
    })
    .await
    .map_err(io::Error::other)?
}

fn changed_before(st: &crate::sys::fs::Stat, cutoff: DateTime<Utc>) -> bool {
    DateTime::<Utc>::from_timestamp(st.mtime, st.mtime_nsec as u32).is_some_and(|t| t < cutoff)
}

/// Sweeps below the directory `dir` (whose key is `rel`); true when it is
/// empty afterwards. What cannot be read or removed is left (and logged):
/// one odd entry must not stop the sweep of the others.
fn sweep_dir(
    dir: &std::os::fd::OwnedFd,
    rel: &str,
    cutoff: DateTime<Utc>,
    out: &mut Vec<String>,
) -> bool {
    use crate::sys::fs::{list_dir, lstat_at, open_dir_at, remove_dir_at, unlink_at, Kind};
    let names = match list_dir(dir) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(dir = %rel, error = %e, "cannot list a directory of the store; not swept");
            return false;
        }
    };
    let mut empty = true;
    for name in names {
        let key = format!("{rel}/{}", name.to_string_lossy());
        let Ok(st) = lstat_at(dir, &name) else {
            empty = false;
            continue;
        };
        let removed = match st.kind {
            Kind::Dir => {
                // Judged by its time before the sweep: removing a staging
                // file inside makes it look freshly changed.
                let old = changed_before(&st, cutoff);
                let swept = match open_dir_at(dir, &name) {
                    Ok(sub) => sweep_dir(&sub, &key, cutoff, out),
                    Err(_) => false,
                };
                let gone = swept && old && remove_dir_at(dir, &name).is_ok();
                if gone {
                    out.push(format!("{key}/"));
                }
                gone
            }
            Kind::File if name.to_bytes().contains(&b'#') && changed_before(&st, cutoff) => {
                let gone = unlink_at(dir, &name).is_ok();
                if gone {
                    out.push(key);
                }
                gone
            }
            _ => false,
        };
        if !removed {
            empty = false;
        }
    }
    empty
}

impl NoFollow {
    fn fs(&self, location: &ObjPath) -> object_store::Result<PathBuf> {
        self.inner.path_to_filesystem(location)
    }
}

#[async_trait]
impl ObjectStore for NoFollow {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        check(&self.root, &self.fs(location)?, false)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        check(&self.root, &self.fs(location)?, false)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        check(&self.root, &self.fs(location)?, true)?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        let inner = self.inner.clone();
        let root = self.root.clone();
        // Unlinking a symlink itself is harmless; going *through* one is
        // what must not happen, so the parents are checked.
        let checked = locations.map(move |r| {
            let p = r?;
            let full = inner.path_to_filesystem(&p)?;
            if let Some(parent) = full.parent() {
                check(&root, parent, false)?;
            }
            // An object that is already gone (an aborted multipart upload
            // never became one) may still have left its directories:
            // `LocalFileSystem` removes empty parents only after deleting a
            // file.
            if matches!(std::fs::symlink_metadata(&full), Err(e) if e.kind() == io::ErrorKind::NotFound)
            {
                remove_empty_parents(&root, &full);
            }
            Ok(p)
        });
        self.inner.delete_stream(checked.boxed())
    }

    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let root = self.root.clone();
        let start = match prefix {
            None => Ok(root.clone()),
            Some(p) => self.fs(p),
        };
        futures::stream::once(async move {
            let start = start?;
            check(&root, &start, false)?;
            tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                walk(&root, &start, &mut out);
                out
            })
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "file",
                source: Box::new(e),
            })
        })
        .flat_map(|r: object_store::Result<Vec<ObjectMeta>>| match r {
            Ok(v) => futures::stream::iter(v.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<ListResult> {
        let dir = match prefix {
            None => self.root.clone(),
            Some(p) => self.fs(p)?,
        };
        check(&self.root, &dir, false)?;
        let mut objects = Vec::new();
        let mut common_prefixes = Vec::new();
        let base: Vec<String> = prefix
            .map(|p| p.parts().map(|x| x.as_ref().to_owned()).collect())
            .unwrap_or_default();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for entry in rd.flatten() {
                let Ok(ft) = entry.file_type() else { continue };
                let name = entry.file_name().to_string_lossy().into_owned();
                let mut parts = base.clone();
                parts.push(name.clone());
                if ft.is_dir() {
                    common_prefixes.push(ObjPath::from_iter(parts));
                } else if ft.is_file() && !name.contains('#') {
                    let Ok(md) = entry.metadata() else { continue };
                    objects.push(ObjectMeta {
                        location: ObjPath::from_iter(parts),
                        last_modified: DateTime::<Utc>::from_timestamp(
                            md.mtime(),
                            md.mtime_nsec() as u32,
                        )
                        .unwrap_or_default(),
                        size: md.len(),
                        e_tag: None,
                        version: None,
                    });
                }
            }
        }
        Ok(ListResult {
            common_prefixes,
            objects,
            extensions: Default::default(),
        })
    }

    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        check(&self.root, &self.fs(from)?, true)?;
        check(&self.root, &self.fs(to)?, false)?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_fifos_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("store");
        std::fs::create_dir_all(root.join("j/1")).unwrap();
        std::fs::write(root.join("j/1/a"), b"x").unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("j/1/link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("j/1/b")).unwrap();
        assert!(open_regular(&root, &["j", "1", "a"]).is_ok());
        assert!(open_regular(&root, &["j", "1", "b"]).is_err());
        assert!(open_regular(&root, &["j", "1", "link", "secret"]).is_err());
        let fifo = root.join("j/1/f");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(open_regular(&root, &["j", "1", "f"]).is_err());
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        let names: Vec<String> = out.iter().map(|m| m.location.to_string()).collect();
        assert_eq!(names, ["j/1/a"]);
    }
}
