//! A store wrapper that refuses writes once a run is cancelled (daemon
//! shutdown, or SIGINT/SIGTERM of a one-shot command), so a cancelled
//! backup can never commit a manifest however far it got.

use std::sync::Arc;

use async_trait::async_trait;
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, MultipartUpload, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, UploadPart,
};
use tokio_util::sync::CancellationToken;

use crate::repo::store::Repo;

/// A copy of `repo` whose writes fail once `cancel` fires.
pub fn gated(repo: &Repo, cancel: CancellationToken) -> Repo {
    let mut r = repo.clone();
    r.store = Arc::new(CancelGate {
        inner: repo.store.clone(),
        cancel,
    });
    r
}

/// Store wrapper that refuses writes (puts, multipart parts and completion,
/// copies) once its run is cancelled, so a cancelled backup can never commit
/// a manifest however far it got. Reads, lists, deletes and aborts pass, so
/// the failed run can still clean up and release its lock.
#[derive(Debug)]
struct CancelGate {
    inner: Arc<dyn ObjectStore>,
    cancel: CancellationToken,
}

impl std::fmt::Display for CancelGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CancelGate({})", self.inner)
    }
}

fn cancelled_error() -> object_store::Error {
    object_store::Error::Generic {
        store: "ccbackup",
        source: "the run was cancelled".into(),
    }
}

wrapping_store! {
CancelGate, inner;

    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.cancel.is_cancelled() {
            return Err(cancelled_error());
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if self.cancel.is_cancelled() {
            return Err(cancelled_error());
        }
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(GatedUpload {
            inner,
            cancel: self.cancel.clone(),
        }))
    }

    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        if self.cancel.is_cancelled() {
            return Err(cancelled_error());
        }
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct GatedUpload {
    inner: Box<dyn MultipartUpload>,
    cancel: CancellationToken,
}

#[async_trait]
impl MultipartUpload for GatedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        if self.cancel.is_cancelled() {
            return Box::pin(futures::future::ready(Err(cancelled_error())));
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if self.cancel.is_cancelled() {
            return Err(cancelled_error());
        }
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}
