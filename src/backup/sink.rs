//! The artifact sink of one backup run: what a source writes goes through
//! the [`pipeline`] into the store, and every object
//! started is remembered so that a failed run can remove it.

use std::sync::{Arc, Mutex};

use object_store::path::Path as ObjPath;

use super::source::Sink;
use crate::backup::pipeline::{self, PipelineError, SourceWriter, Uploaded};
use crate::crypto::Recipients;
use crate::options::CompressionSettings;
use crate::progress::Progress;
use crate::repo::manifest::{Artifact, ArtifactDetail, ArtifactKind};
use crate::repo::store::{artifact_path, Repo};
use crate::sys::child::KillSwitch;

/// One backup run's sink (the store, the backup's place in it, compression
/// and encryption) with the run's progress counters and kill switch.
pub struct RunCtx {
    pub repo: Repo,
    pub job: String,
    pub id: String,
    pub compression: CompressionSettings,
    /// Recipients every artifact is encrypted to, when the job encrypts.
    pub encryption: Option<Arc<Recipients>>,
    pub progress: Arc<Progress>,
    pub kill: KillSwitch,
    /// Objects uploaded so far in this run, so a failed run can remove them.
    pub uploaded: Mutex<Vec<ObjPath>>,
}

impl Sink for RunCtx {
    async fn put<T, E, F>(
        &self,
        rel: &str,
        kind: ArtifactKind,
        produce: F,
    ) -> Result<(T, Uploaded), PipelineError<E>>
    where
        T: Send + 'static,
        E: std::error::Error + Send + 'static,
        F: FnOnce(&mut SourceWriter) -> Result<T, E> + Send + 'static,
    {
        let key = artifact_path(&self.job, &self.id, rel);
        if let Ok(mut u) = self.uploaded.lock() {
            // Recorded before the upload: an aborted upload may still leave
            // an object behind on stores without multipart staging.
            u.push(key.clone());
        }
        pipeline::upload(
            &self.repo,
            &key,
            self.compression,
            pipeline::job_size(kind),
            self.encryption.clone(),
            self.progress.clone(),
            produce,
        )
        .await
    }

    fn kill(&self) -> &KillSwitch {
        &self.kill
    }

    fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    fn withholds_names(&self) -> bool {
        self.encryption.is_some()
    }

    fn artifact(
        &self,
        key: String,
        source: &str,
        kind: ArtifactKind,
        up: Uploaded,
        detail: Option<ArtifactDetail>,
    ) -> Artifact {
        Artifact {
            key,
            source: source.to_owned(),
            kind,
            raw_bytes: up.raw_bytes,
            stored_bytes: up.stored_bytes,
            sha256: up.sha256,
            compression: self.compression.into(),
            detail,
            encryption: self.encryption.as_ref().map(|r| r.info()),
        }
    }
}
