//! Multipart uploads to a `file://` store: parts are written at their
//! offsets into one staging file `<name>#<n>`, opened once below the
//! no-follow directory chain, and `complete` renames it into place
//! relative to the same directory descriptor. Nothing is looked up by path
//! after the upload starts, so a directory swapped for a symlink mid-upload
//! cannot redirect it.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::path::Path as ObjPath;
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};

use super::blocking;
use super::ops::{self, store_err, Publish};
use crate::sys::fs::{self as sfs, Stat};

/// What every part and the completion share.
#[derive(Debug)]
struct Staged {
    key: ObjPath,
    dir: OwnedFd,
    name: CString,
    staged: CString,
    file: File,
}

#[derive(Debug)]
pub(super) struct Upload {
    state: Arc<Staged>,
    /// Where the next part goes: parts are numbered by call order, as
    /// object_store's callers expect, even when they are written
    /// concurrently.
    offset: u64,
    /// Completed or aborted: the staging file is no longer ours to remove.
    finished: bool,
}

impl Drop for Upload {
    /// An upload dropped unfinished (its run failed or was cancelled)
    /// removes its staging file, as object_store's did; what a killed
    /// process leaves is swept by prune.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let state = self.state.clone();
        let remove = move || {
            // Best effort: a leftover is swept later.
            let _ = sfs::unlink_at(state.dir.as_fd(), &state.staged);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Starts an upload: creates the directories and the staging file.
pub(super) fn start(root: &Path, key: &ObjPath) -> object_store::Result<Upload> {
    let fail = |e| store_err(key.as_ref(), e);
    let mut parts = ops::names(&key.parts().collect::<Vec<_>>()).map_err(fail)?;
    let Some(name) = parts.pop() else {
        return Err(ops::refused(key.as_ref(), "it names the store's root"));
    };
    let root_fd = sfs::open_dir(root).map_err(fail)?;
    let mut chain =
        sfs::open_dir_beneath(&root_fd, &parts, Some(ops::DIR_MODE)).map_err(|b| fail(b.source))?;
    let dir = chain.pop().unwrap_or(root_fd);
    let (file, staged) = ops::stage(dir.as_fd(), &name).map_err(fail)?;
    Ok(Upload {
        state: Arc::new(Staged {
            key: key.clone(),
            dir,
            name,
            staged,
            file,
        }),
        offset: 0,
        finished: false,
    })
}

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let mut at = self.offset;
        self.offset += data.content_length() as u64;
        let state = self.state.clone();
        Box::pin(blocking(move || {
            for chunk in data.iter() {
                state
                    .file
                    .write_all_at(chunk, at)
                    .map_err(|e| store_err(state.key.as_ref(), e))?;
                at += chunk.len() as u64;
            }
            Ok(())
        }))
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.finished = true;
        let state = self.state.clone();
        blocking(move || {
            let fail = |e| store_err(state.key.as_ref(), e);
            let st = Stat::of(&state.file).map_err(fail)?;
            ops::publish(
                state.dir.as_fd(),
                &state.staged,
                &state.name,
                Publish::Overwrite,
            )
            .map_err(fail)?;
            Ok(PutResult {
                e_tag: ops::meta(state.key.clone(), &st).e_tag,
                version: None,
                extensions: Default::default(),
            })
        })
        .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.finished = true;
        let state = self.state.clone();
        blocking(move || {
            sfs::unlink_at(state.dir.as_fd(), &state.staged)
                .map_err(|e| store_err(state.key.as_ref(), e))
        })
        .await
    }
}
