//! A `file://` store that never follows symlinks, reads only regular
//! files and keeps the async executor free of file system calls.
//!
//! In a store someone else can write, a symlink `job/id/data -> /etc`
//! would make the sweep or retention delete `/etc`, a symlinked artifact
//! would make `verify` print the size and sha256 of any local file, and a
//! FIFO would hang every reader. So every operation ([`ops`]) opens the
//! store's root and walks down one name at a time relative to the
//! directory it has open, with `O_NOFOLLOW` (`crate::sys::fs`): a symlink
//! anywhere below the root, planted before or *during* the operation,
//! makes it fail instead of leading outside. There is no "check the path,
//! then open it" step to race. Listings skip (and log) symlinks and special
//! files, which ccbackup never writes, and fail on a directory they cannot
//! read: silently skipping it would hide backups from retention, the
//! catalogue and `verify`.
//!
//! Every operation runs inside `tokio::task::spawn_blocking`, including
//! the reads of a returned file (object_store reads a
//! `GetResultPayload::File` in its own blocking tasks), so a slow disk or
//! network file system never stalls the runtime's timers and other jobs.
//!
//! Nothing is delegated to object_store's `LocalFileSystem` any more, not
//! even multipart uploads ([`upload`]): it resolves every call by path and
//! follows symlinks, so a delegated operation would reopen the race this
//! module exists to close. What it did that callers rely on is kept:
//! writes go through a staging file `<key>#<n>` renamed into place (readers
//! never see half an object; killed runs' leftovers are removed by
//! [`sweep_staging`]), create-only puts fail with `AlreadyExists`, deletes
//! remove the directories they leave empty, `PutMode::Update` is not
//! implemented (the lease falls back as it did), and e-tags change when an
//! object is replaced.

mod ops;
mod sweep;
mod upload;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path as ObjPath;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use ops::Publish;
pub use sweep::sweep_staging;

#[derive(Debug)]
pub struct NoFollow {
    root: PathBuf,
}

impl NoFollow {
    /// A store at `root`, a directory the operator configured (it may be
    /// a symlink itself; nothing below it is followed).
    pub fn new(root: PathBuf) -> NoFollow {
        NoFollow { root }
    }
}

impl std::fmt::Display for NoFollow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoFollow({})", self.root.display())
    }
}

/// Runs a file system operation on tokio's blocking pool.
async fn blocking<T, F>(op: F) -> object_store::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> object_store::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(op)
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "file",
            source: Box::new(e),
        })?
}

/// Opens `rel` below `root` for reading: no symlink anywhere on the way
/// or at the end, `O_NONBLOCK` so a FIFO cannot hang us, and only a
/// regular file. Blocking: for callers already off the executor.
pub fn open_regular(root: &Path, rel: &[&str]) -> io::Result<File> {
    let shown = || rel.join("/").escape_debug().to_string();
    let parts = ops::names(rel)?;
    match ops::open_file(root, &parts) {
        Ok((file, _)) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
        Err(e) if matches!(crate::sys::fs::errno(&e), libc::ELOOP | libc::ENOTDIR) => {
            Err(io::Error::other(format!(
                "refusing {}: a symlink or a non-directory is in its way inside the store",
                shown()
            )))
        }
        Err(e) => Err(io::Error::other(format!("refusing {}: {e}", shown()))),
    }
}

fn publish_of_put(mode: &PutMode) -> Option<Publish> {
    match mode {
        PutMode::Overwrite => Some(Publish::Overwrite),
        PutMode::Create => Some(Publish::Create),
        PutMode::Update(_) => None,
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
        let Some(how) = publish_of_put(&opts.mode) else {
            return Err(object_store::Error::NotImplemented {
                operation: "`put_opts` with mode `PutMode::Update`".into(),
                implementer: self.to_string(),
            });
        };
        if !opts.attributes.is_empty() {
            return Err(object_store::Error::NotImplemented {
                operation: "`put_opts` with `opts.attributes` specified".into(),
                implementer: self.to_string(),
            });
        }
        let (root, key) = (self.root.clone(), location.clone());
        let e_tag = blocking(move || ops::put(&root, &key, &payload, how)).await?;
        Ok(PutResult {
            e_tag,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let (root, key) = (self.root.clone(), location.clone());
        let up = blocking(move || upload::start(&root, &key)).await?;
        Ok(Box::new(up))
    }

    async fn get_opts(
        &self,
        location: &ObjPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let (root, key) = (self.root.clone(), location.clone());
        blocking(move || {
            let (file, meta) = ops::get(&root, &key)?;
            options.check_preconditions(&meta)?;
            let range = match &options.range {
                Some(r) => r
                    .as_range(meta.size)
                    .map_err(|e| ops::refused(key.as_ref(), e))?,
                None => 0..meta.size,
            };
            // The path only names the file in read errors; reads go
            // through the descriptor opened above.
            let shown = root.join(key.as_ref());
            Ok(GetResult {
                payload: GetResultPayload::File(file, shown),
                attributes: Default::default(),
                range,
                meta,
                extensions: Default::default(),
            })
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        let root = self.root.clone();
        locations
            .map(move |r| {
                let root = root.clone();
                async move {
                    let key = r?;
                    blocking(move || ops::delete(&root, &key).map(|()| key)).await
                }
            })
            // One at a time: deletes of one backup share directories, and
            // removing emptied parents must not race itself.
            .buffered(1)
            .boxed()
    }

    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (root, prefix) = (self.root.clone(), prefix.cloned());
        futures::stream::once(blocking(move || ops::list(&root, prefix.as_ref())))
            .flat_map(|r| match r {
                Ok(v) => futures::stream::iter(v.into_iter().map(Ok)).boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<ListResult> {
        let (root, prefix) = (self.root.clone(), prefix.cloned());
        blocking(move || ops::list_one(&root, prefix.as_ref())).await
    }

    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let how = match options.mode {
            CopyMode::Overwrite => Publish::Overwrite,
            CopyMode::Create => Publish::Create,
        };
        let (root, from, to) = (self.root.clone(), from.clone(), to.clone());
        blocking(move || ops::copy(&root, &from, &to, how)).await
    }
}

#[cfg(test)]
mod tests;
