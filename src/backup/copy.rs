//! Second copies (3-2-1): every complete backup of the primary store is
//! copied, byte for byte and under the same keys, to each store in
//! `copies:`, whose retention is then applied by the job's own policy.
//!
//! A copy follows the invariants of a backup. Artifacts stream object by
//! object (get → sha256 and size counting → `WriteMultipart`, so memory is
//! bounded by `(concurrency + 1) * part_size` of the copy store) and are
//! checked against the manifest before their upload is completed: a
//! mismatch aborts the upload, and nothing of it becomes visible. The
//! manifest's signature (when present) and then the manifest itself are
//! written last, as the very bytes read from the primary, the manifest with
//! a create-only put; so a copy store holds a manifest only for a complete,
//! verified copy, and a signature made by the primary's key stays valid.
//! Anything a failed or interrupted copy wrote is removed; what removal
//! misses has no manifest and is swept by prune after `orphan_grace`.
//!
//! Each copy store has its own lock: the job's lease in that store is held
//! while copying into it and pruning it, so a backfill (`ccbackup copy`),
//! the daemon and a sidecar that uses the copy store as its primary never
//! interleave there. The primary is only read: a prune of the primary that
//! deletes a backup while it is being copied makes that copy fail cleanly.
//!
//! A failed copy never touches the primary backup: it stays complete and
//! pruned, and the failure is reported next to it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, JobConfig};
use crate::error::chain;
use crate::repo::lock::{self, LockError};
use crate::repo::manifest::{Artifact, Manifest, ManifestError};
use crate::repo::store::StoreSpec;
use crate::repo::store::{self, artifact_path, manifest_path, signature_path, Repo, StoreError};
use crate::retention::prune::{self, Outcome, PruneError};
use crate::retry::{self, Backoff, Class, Transient};
use crate::sys::child::KillSwitch;

mod held;
mod source;
use held::Held;
use source::{read_source, Source};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Open(#[from] StoreError),
    #[error(transparent)]
    Lock(LockError),
    #[error("cannot read {key} from {store}")]
    Read {
        store: String,
        key: String,
        source: object_store::Error,
    },
    #[error("cannot write {key} to {store}")]
    Write {
        store: String,
        key: String,
        source: object_store::Error,
    },
    #[error("artifact {key} in {store} does not match its manifest (expected {expected_bytes} bytes with sha256 {expected_sha256}, read {found_bytes} bytes{}); the backup was not copied", found_sha256.as_ref().map(|s| format!(" with sha256 {s}")).unwrap_or_default())]
    Mismatch {
        store: String,
        key: String,
        expected_bytes: u64,
        expected_sha256: String,
        found_bytes: u64,
        /// `None` when the read was stopped for being too long.
        found_sha256: Option<String>,
    },
    #[error("backup {job}/{id} in {store} cannot be copied")]
    Source {
        store: String,
        job: String,
        id: String,
        #[source]
        source: ManifestError,
    },
    #[error("the copy of {what} to {store} was stopped; what it had copied was removed")]
    Interrupted { store: String, what: String },
}

impl Transient for CopyError {
    fn class(&self) -> Class {
        match self {
            CopyError::Read { source, .. } | CopyError::Write { source, .. } => source.class(),
            _ => Class::Permanent,
        }
    }
}

/// What copying one backup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copied {
    /// Every artifact and the manifest were written; `repaired` says what
    /// was wrong with the backup the copy store held before, if it held one.
    Copied {
        artifacts: usize,
        bytes: u64,
        repaired: Option<String>,
    },
    /// The copy store already holds this backup's manifest.
    AlreadyPresent,
}

/// One copy store's part of a run or a backfill.
#[derive(Debug)]
pub struct StoreRun {
    /// The copy store's URL without credentials.
    pub store: String,
    /// Opening the store or taking its lock failed: nothing was copied.
    pub setup: Option<CopyError>,
    /// Per backup ID, in the order tried.
    pub backups: Vec<(String, Result<Copied, CopyError>)>,
    /// Retention in the copy store; `None` when it did not run.
    pub prune: Option<Result<Outcome, PruneError>>,
}

impl StoreRun {
    /// Every backup asked for is in the copy store now.
    pub fn copied_all(&self) -> bool {
        self.setup.is_none() && self.backups.iter().all(|(_, r)| r.is_ok())
    }

    /// What failed while copying: setting up the store or a backup.
    pub fn copy_errors(&self) -> impl Iterator<Item = &CopyError> {
        self.setup
            .iter()
            .chain(self.backups.iter().filter_map(|(_, r)| r.as_ref().err()))
    }

    /// Messages for everything that failed, copy and retention alike, each
    /// naming the copy store.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .copy_errors()
            .map(|e| format!("copy to {} failed: {}", self.store, chain(e)))
            .collect();
        if let Some(Err(e)) = &self.prune {
            out.push(format!(
                "retention in copy store {} failed: {}",
                self.store,
                chain(e)
            ));
        }
        out
    }
}

/// After a complete backup: copies it to every copy store and prunes each.
/// Never fails: what went wrong is in the reports (and logged).
pub async fn after_backup(
    cfg: &Config,
    job: &JobConfig,
    primary: &Repo,
    m: &Manifest,
    kill: &KillSwitch,
) -> Vec<StoreRun> {
    if cfg.copies.is_empty() {
        return Vec::new();
    }
    // The copies' branch of the run's cancellation tree.
    let cancel = kill.child_token();
    let mut out = Vec::new();
    for c in &cfg.copies {
        let ids = std::slice::from_ref(&m.id);
        let run = to_store_keeping(cfg, c, job, primary, ids, Some(&m.id), &cancel).await;
        log_run(job, &run);
        out.push(run);
    }
    out
}

fn log_run(job: &JobConfig, run: &StoreRun) {
    if let Some(e) = &run.setup {
        tracing::error!(job = %job.name, store = %run.store, error = %chain(e), "copy failed; the backup in the primary store is complete");
    }
    for (id, r) in &run.backups {
        match r {
            Ok(Copied::Copied {
                artifacts,
                bytes,
                repaired,
            }) => {
                let repaired = repaired.as_deref().unwrap_or("");
                tracing::info!(job = %job.name, backup = %id, store = %run.store, artifacts, bytes, repaired, "backup copied")
            }
            Ok(Copied::AlreadyPresent) => {
                tracing::info!(job = %job.name, backup = %id, store = %run.store, "backup already in the copy store")
            }
            Err(e) => {
                tracing::error!(job = %job.name, backup = %id, store = %run.store, error = %chain(e), "copy failed; the backup in the primary store is complete")
            }
        }
    }
    if let Some(Err(e)) = &run.prune {
        tracing::error!(job = %job.name, store = %run.store, error = %chain(e), "retention in the copy store failed");
    }
}

/// Copies `ids` (oldest first) of `job` into one copy store under its lock,
/// skipping backups it holds already, then applies the job's retention
/// there if every copy succeeded.
pub async fn to_store(
    cfg: &Config,
    copy: &StoreSpec,
    job: &JobConfig,
    primary: &Repo,
    ids: &[String],
    cancel: &CancellationToken,
) -> StoreRun {
    to_store_keeping(cfg, copy, job, primary, ids, None, cancel).await
}

/// [`to_store`]; the copy store's retention never deletes `own`, the
/// backup the current run wrote (see [`prune::plan_job_keeping`]).
async fn to_store_keeping(
    cfg: &Config,
    copy: &StoreSpec,
    job: &JobConfig,
    primary: &Repo,
    ids: &[String],
    own: Option<&str>,
    cancel: &CancellationToken,
) -> StoreRun {
    let mut run = StoreRun {
        store: store::display_url(&copy.url),
        setup: None,
        backups: Vec::new(),
        prune: None,
    };
    let dst = match store::open(copy) {
        Ok(r) => r.with_signing(cfg.signing.as_ref()),
        Err(e) => {
            run.setup = Some(e.into());
            return run;
        }
    };
    let guard = match lock::acquire(
        &dst,
        &job.name,
        cfg.daemon.lock_ttl,
        "copy",
        Duration::ZERO,
        |_| {},
    )
    .await
    {
        Ok(g) => g,
        Err(e) => {
            run.setup = Some(CopyError::Lock(e));
            return run;
        }
    };
    // Losing the copy store's lease stops writing there, like a backup.
    let cancel = cancel.child_token();
    let lost = guard.lost();
    let on_lost = cancel.clone();
    let watcher = tokio::spawn(async move {
        lost.cancelled().await;
        on_lost.cancel();
    });
    let dst = crate::repo::gate::gated(&dst, cancel.clone());
    for id in ids {
        if cancel.is_cancelled() {
            break;
        }
        let r = copy_backup(primary, &dst, &job.name, id, &cancel).await;
        run.backups.push((id.clone(), r));
    }
    if job.retention.is_some() && !cancel.is_cancelled() && run.copied_all() {
        run.prune = Some(prune_copy(&dst, job, own, &cancel).await);
    }
    watcher.abort();
    if let Err(e) = guard.release().await {
        tracing::warn!(job = %job.name, store = %run.store, error = %chain(&e), "could not release the copy store's lock; it expires on its own");
    }
    run
}

async fn prune_copy(
    dst: &Repo,
    job: &JobConfig,
    own: Option<&str>,
    cancel: &CancellationToken,
) -> Result<Outcome, PruneError> {
    let decision = match own {
        Some(own) => prune::plan_job_keeping(dst, job, own).await?,
        None => prune::plan_job(dst, job).await?,
    };
    prune::apply_until(dst, &decision, cancel).await
}

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

/// One line per copy that failed, and per copy store whose retention
/// failed, for run-now's exit status and the run report.
pub fn failure_messages(id: &str, runs: &[StoreRun]) -> Vec<String> {
    let mut out = Vec::new();
    for r in runs {
        for e in r.copy_errors() {
            out.push(format!(
                "backup {id} is complete; copy to {} failed: {}",
                r.store,
                chain(e)
            ));
        }
        if let Some(Err(e)) = &r.prune {
            out.push(format!(
                "backup {id} is complete and copied to {}, but retention there failed: {}",
                r.store,
                chain(e)
            ));
        }
    }
    out
}
