//! One backup copied from one store to another: `copy_backup` and the
//! streaming, checking and cleanup under it (see [`super`] for the
//! invariants).

use std::sync::atomic::{AtomicBool, Ordering};

use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::held::{self, Held};
use super::source::{read_source, Source};
use super::{Copied, CopyError};
use crate::error::chain;
use crate::repo::manifest::Artifact;
use crate::repo::store::{artifact_path, manifest_path, signature_path, Repo};
use crate::retry::{self, Backoff};

/// Copies one complete backup from `src` to `dst`: artifacts, then the
/// signature, then the manifest (create-only). A backup `dst` already
/// holds with the primary's very manifest, signature and artifact sizes is
/// left alone; one that differs is repaired: its manifest goes first (so
/// it is never complete while its artifacts are rewritten), then it is
/// copied again.
pub async fn copy_backup(
    src: &Repo,
    dst: &Repo,
    job: &str,
    id: &str,
    cancel: &CancellationToken,
) -> Result<Copied, CopyError> {
    let mkey = manifest_path(job, id);
    let source = read_source(src, job, id).await?;
    let repaired = match held::held(dst, &source, cancel).await? {
        Held::Same => return Ok(Copied::AlreadyPresent),
        Held::Nothing => None,
        Held::Differs(why) => {
            tracing::warn!(job, backup = id, store = %dst.display, problem = %why, "the copy store's backup does not match the primary's; copying it again");
            Some(why)
        }
    };
    let mut written: Vec<ObjPath> = Vec::new();
    let maybe_landed = AtomicBool::new(false);
    let result = write_copy(
        src,
        dst,
        &source,
        repaired.is_some(),
        (cancel, &maybe_landed),
        &mut written,
    )
    .await;
    match result {
        Ok(Copied::Copied {
            artifacts, bytes, ..
        }) => Ok(Copied::Copied {
            artifacts,
            bytes,
            repaired,
        }),
        Ok(c) => Ok(c),
        Err(e) => {
            // Only when the manifest is known to be absent: a put that
            // failed ambiguously may have committed it, and data under a
            // manifest must never be removed. An absent manifest proves
            // nothing after a manifest put whose outcome is unknown (it
            // can still land): that data stays for the sweep.
            // Any attempt counts, not only the last: a retry that could not
            // connect says nothing about an earlier attempt that timed out.
            let unknown = maybe_landed.load(Ordering::SeqCst);
            // A repair rewrote objects of a backup the copy store already
            // had: they are the primary's verified bytes, and removing them
            // could destroy a copy that was good (the primary may be the
            // damaged side). What a repair leaves is for the operator.
            if repaired.is_none()
                && !unknown
                && matches!(
                    dst.store.head(&mkey).await,
                    Err(object_store::Error::NotFound { .. })
                )
            {
                remove(dst, &written).await;
            }
            Err(e)
        }
    }
}

async fn write_copy(
    src: &Repo,
    dst: &Repo,
    source: &Source,
    replace: bool,
    (cancel, maybe_landed): (&CancellationToken, &AtomicBool),
    written: &mut Vec<ObjPath>,
) -> Result<Copied, CopyError> {
    let m = &source.manifest;
    let interrupted = || CopyError::Interrupted {
        store: dst.display.clone(),
        what: format!("backup {}/{}", m.job, m.id),
    };
    for a in &m.artifacts {
        if cancel.is_cancelled() {
            return Err(interrupted());
        }
        let key = artifact_path(&m.job, &m.id, &a.key);
        copy_artifact(src, dst, &key, a, cancel).await?;
        written.push(key);
    }
    if cancel.is_cancelled() {
        return Err(interrupted());
    }
    if let Some(sig) = &source.signature {
        // A plain put, not create-only: a signature left by an interrupted
        // copy must not block the redo, and without a manifest beside it no
        // reader looks at it. The manifest below is the commit point.
        let key = signature_path(&m.job, &m.id);
        written.push(key.clone());
        // Only the manifest's fate decides the cleanup.
        let ignored = AtomicBool::new(false);
        put_retried(dst, &key, sig, PutOptions::default(), cancel, &ignored)
            .await
            .map_err(|source| write_err(dst, &key, source))?;
    }
    let mkey = manifest_path(&m.job, &m.id);
    if replace {
        // Only now, with every artifact copied and verified: a repair that
        // fails earlier leaves the copy's old manifest (and so its backup,
        // if it was good) where it was.
        let what = format!("removing {mkey} from {}", dst.display);
        match retry::retry(Backoff::STORE, &what, cancel, || dst.store.delete(&mkey)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(write_err(dst, &mkey, e)),
        }
    }
    let create = PutOptions::from(PutMode::Create);
    // A retried create that finds the manifest there met its own first
    // attempt, or another copier: the bytes are the same either way.
    let put = put_retried(dst, &mkey, &source.bytes, create, cancel, maybe_landed).await;
    match put {
        Ok(_) => Ok(Copied::Copied {
            artifacts: m.artifacts.len(),
            bytes: m.stored_bytes(),
            repaired: None,
        }),
        // Another copier finished first; its objects are these same bytes.
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(Copied::AlreadyPresent),
        Err(source) => Err(write_err(dst, &mkey, source)),
    }
}

/// A put with retries. `maybe_landed` is set when any attempt's outcome is
/// unknown (it may still be applied): the last attempt's error alone would
/// not say so, since a retry that cannot connect says nothing of an earlier
/// attempt that timed out.
async fn put_retried(
    dst: &Repo,
    key: &ObjPath,
    bytes: &[u8],
    opts: PutOptions,
    cancel: &CancellationToken,
    maybe_landed: &AtomicBool,
) -> Result<object_store::PutResult, object_store::Error> {
    let what = format!("writing {key} to {}", dst.display);
    retry::retry(Backoff::STORE, &what, cancel, || {
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(bytes));
        let attempt = dst.store.put_opts(key, payload, opts.clone());
        async move {
            let r = attempt.await;
            if let Err(e) = &r {
                if crate::repo::commit::fate_of(e) == crate::repo::commit::PutFate::Unknown {
                    maybe_landed.store(true, Ordering::SeqCst);
                }
            }
            r
        }
    })
    .await
}

fn write_err(dst: &Repo, key: &ObjPath, source: object_store::Error) -> CopyError {
    CopyError::Write {
        store: dst.display.clone(),
        key: key.to_string(),
        source,
    }
}

/// Best effort: what is left is swept by prune after `orphan_grace`.
async fn remove(dst: &Repo, keys: &[ObjPath]) {
    for k in keys {
        match dst.store.delete(k).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(store = %dst.display, key = %k, error = %chain(&e), "could not remove an object of a failed copy; prune sweeps it after orphan_grace")
            }
        }
    }
}

/// One artifact, retried while the failure is transient.
async fn copy_artifact(
    src: &Repo,
    dst: &Repo,
    key: &ObjPath,
    a: &Artifact,
    cancel: &CancellationToken,
) -> Result<(), CopyError> {
    let leg = Leg {
        src,
        dst,
        key,
        artifact: a,
        cancel,
    };
    let what = format!("copy of {key} to {}", dst.display);
    retry::retry(Backoff::STORE, &what, cancel, || leg.attempt()).await
}

/// One artifact on its way from `src` to `dst`.
struct Leg<'a> {
    src: &'a Repo,
    dst: &'a Repo,
    key: &'a ObjPath,
    artifact: &'a Artifact,
    cancel: &'a CancellationToken,
}

impl Leg<'_> {
    /// Streams the object into a multipart upload, hashing on the way, and
    /// completes the upload only when size and sha256 match the manifest.
    /// Every failure aborts the upload.
    async fn attempt(&self) -> Result<(), CopyError> {
        // A stalled store must not outlast a signal; nothing is written yet.
        let got = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Err(self.interrupted()),
            g = self.src.store.get(self.key) => g,
        };
        let mut stream = got.map_err(|e| self.read_err(e))?.into_stream();
        let upload = self.dst.store.put_multipart(self.key).await;
        let upload = upload.map_err(|e| self.write_err(e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.dst.part_size);
        let failure = match self.pump(&mut stream, &mut writer).await {
            Ok(()) if self.cancel.is_cancelled() => self.interrupted(),
            Ok(()) => {
                return writer
                    .finish()
                    .await
                    .map(drop)
                    .map_err(|e| self.write_err(e))
            }
            Err(e) => e,
        };
        if let Err(e) = writer.abort().await {
            tracing::warn!(store = %self.dst.display, key = %self.key, error = %chain(&e), "could not abort a multipart upload; prune sweeps its parts");
        }
        Err(failure)
    }

    /// Moves bytes from the source stream to the upload until the stream
    /// ends, then checks them; stops early once more bytes came than the
    /// manifest promises (a store must not choose how much we upload).
    async fn pump(
        &self,
        stream: &mut futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
        writer: &mut WriteMultipart,
    ) -> Result<(), CopyError> {
        let a = self.artifact;
        let mut hasher = Sha256::new();
        let mut count = 0u64;
        loop {
            let next = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(self.interrupted()),
                n = stream.try_next() => n,
            };
            let Some(chunk) = next.map_err(|e| self.read_err(e))? else {
                break;
            };
            count += chunk.len() as u64;
            if count > a.stored_bytes {
                return Err(self.mismatch(count, None));
            }
            hasher.update(&chunk);
            writer
                .wait_for_capacity(self.dst.concurrency)
                .await
                .map_err(|e| self.write_err(e))?;
            writer.put(chunk);
        }
        let sha = hex::encode(hasher.finalize());
        if count != a.stored_bytes || sha != a.sha256 {
            return Err(self.mismatch(count, Some(sha)));
        }
        Ok(())
    }

    fn read_err(&self, source: object_store::Error) -> CopyError {
        CopyError::Read {
            store: self.src.display.clone(),
            key: self.key.to_string(),
            source,
        }
    }

    fn write_err(&self, source: object_store::Error) -> CopyError {
        write_err(self.dst, self.key, source)
    }

    fn interrupted(&self) -> CopyError {
        CopyError::Interrupted {
            store: self.dst.display.clone(),
            what: self.key.to_string(),
        }
    }

    fn mismatch(&self, found_bytes: u64, found_sha256: Option<String>) -> CopyError {
        CopyError::Mismatch {
            store: self.src.display.clone(),
            key: self.key.to_string(),
            expected_bytes: self.artifact.stored_bytes,
            expected_sha256: self.artifact.sha256.clone(),
            found_bytes,
            found_sha256,
        }
    }
}
