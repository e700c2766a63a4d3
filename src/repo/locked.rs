//! A store wrapper that locks every object of a backup as it is written
//! (`store.object_lock` on an S3 store).
//!
//! Keys `<job>/<backup id>/...` are backup objects; everything else (the
//! lease under `locks/`) is written as it is, so a lease can still be
//! removed by a plain DELETE.
//!
//! * Single puts (the manifest and its signature) go out as one PUT that
//!   carries the lock with `Content-MD5`, create-only when asked: the
//!   manifest is never visible unlocked, and if the lock is refused the
//!   manifest does not exist, so the backup is not complete. (Locking the
//!   manifest with PutObjectRetention after a create-only put would leave
//!   a moment in which it exists unlocked, and a failed lock call would
//!   leave a complete backup without a lock.)
//! * Multipart uploads (every artifact) get `PutObjectRetention` right
//!   after they complete, before `complete` returns: the artifact is not
//!   part of any backup until the manifest naming it is written, which
//!   happens only after all its artifacts uploaded, hence locked.
//!
//! The retain-until date is `now + period` at the time of the write,
//! which is at least the backup's start plus `period`. It is never taken
//! from the key, so a crafted backup ID (say, dated in 9999) copied from
//! another store cannot lock an object for ever.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, UploadPart,
};

use crate::clock::Clock;
use crate::repo::s3_lock::{ObjectLockSpec, S3Lock};

/// The locking wrapper around an S3 store (prefix already applied inside).
#[derive(Debug)]
pub struct LockedStore {
    inner: Arc<dyn ObjectStore>,
    /// Which keys belong to a backup (the store's key layout decides).
    is_backup_object: fn(&str) -> bool,
    lock: Arc<S3Lock>,
    spec: ObjectLockSpec,
    clock: Clock,
}

impl LockedStore {
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        is_backup_object: fn(&str) -> bool,
        lock: Arc<S3Lock>,
        spec: ObjectLockSpec,
    ) -> Self {
        LockedStore {
            inner,
            is_backup_object,
            lock,
            spec,
            clock: Clock::system(),
        }
    }
}

impl std::fmt::Display for LockedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Locked({})", self.inner)
    }
}

/// A lock that could not be set, as the error of the write it belongs to.
#[derive(Debug, thiserror::Error)]
#[error("an object was written but not locked (store.object_lock needs a bucket with Object Lock: `ccbackup doctor` checks it)")]
struct LockFailed(#[source] crate::repo::s3_lock::LockError);

fn lock_failed(e: crate::repo::s3_lock::LockError) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: Box::new(LockFailed(e)),
    }
}

wrapping_store! {
LockedStore, inner;

    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if !(self.is_backup_object)(location.as_ref()) {
            return self.inner.put_opts(location, payload, opts).await;
        }
        let create_only = match opts.mode {
            PutMode::Create => true,
            PutMode::Overwrite => false,
            // ccbackup never updates a backup object in place; refusing
            // beats writing one unlocked.
            PutMode::Update(_) => {
                return Err(object_store::Error::NotImplemented {
                    operation: "a conditional update of a locked backup object".into(),
                    implementer: "ccbackup's object_lock".into(),
                })
            }
        };
        let body: bytes::Bytes = payload.into_iter().flatten().collect::<Vec<u8>>().into();
        let until = self.spec.until(self.clock.now());
        self.lock
            .put_locked(location.as_ref(), body, create_only, self.spec.mode, until)
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        if !(self.is_backup_object)(location.as_ref()) {
            return Ok(inner);
        }
        Ok(Box::new(LockedUpload {
            inner,
            key: location.to_string(),
            lock: self.lock.clone(),
            spec: self.spec,
            clock: self.clock.clone(),
            completed: false,
        }))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjPath>,
        offset: &ObjPath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        if (self.is_backup_object)(to.as_ref()) {
            let until = self.spec.until(self.clock.now());
            self.lock
                .put_retention(to.as_ref(), self.spec.mode.as_s3(), until)
                .await
                .map_err(lock_failed)?;
        }
        Ok(())
    }
}

/// A multipart upload whose object is locked once it is complete.
#[derive(Debug)]
struct LockedUpload {
    inner: Box<dyn MultipartUpload>,
    key: String,
    lock: Arc<S3Lock>,
    spec: ObjectLockSpec,
    clock: Clock,
    /// The upload completed (the object exists), so there is nothing left
    /// to abort even if locking it failed.
    completed: bool,
}

#[async_trait]
impl MultipartUpload for LockedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let done = self.inner.complete().await?;
        self.completed = true;
        let until = self.spec.until(self.clock.now());
        self.lock
            .put_retention(&self.key, self.spec.mode.as_s3(), until)
            .await
            .map_err(lock_failed)?;
        Ok(done)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        if self.completed {
            // The object stays, unlocked and named by no manifest: a
            // leftover that prune sweeps after orphan_grace. Aborting the
            // finished upload would only fail, hiding why the write failed.
            return Ok(());
        }
        self.inner.abort().await
    }
}
