//! Sources: where backup bytes come from. Each source kind reads its data
//! and writes it into a [`Sink`]; it never talks to the store itself.

pub mod files;
pub mod pgcount;
pub mod postgres;
pub mod rrd;

use std::future::Future;

use crate::backup::pipeline::{PipelineError, SourceWriter, Uploaded};
use crate::repo::manifest::{Artifact, ArtifactKind, PostgresInfo, TreeInfo};
use crate::sys::child::KillSwitch;

/// Where a source puts what it reads. Sources only produce bytes; the
/// backup run decides where they go and how they are compressed,
/// encrypted, hashed and stored ([`crate::backup::sink`]).
pub trait Sink: Sync {
    /// Streams what `produce` writes into the artifact `rel` (relative to
    /// the backup's directory), returning `produce`'s result and what was
    /// stored.
    fn put<T, E, F>(
        &self,
        rel: &str,
        produce: F,
    ) -> impl Future<Output = Result<(T, Uploaded), PipelineError<E>>> + Send
    where
        T: Send + 'static,
        E: std::error::Error + Send + 'static,
        F: FnOnce(&mut SourceWriter) -> Result<T, E> + Send + 'static;

    /// Stops this run's child processes when fired.
    fn kill(&self) -> &KillSwitch;

    /// The manifest record of an artifact [`Sink::put`] stored at `key`.
    fn artifact(
        &self,
        key: String,
        source: &str,
        kind: ArtifactKind,
        up: Uploaded,
        postgres: Option<PostgresInfo>,
        tree: Option<TreeInfo>,
    ) -> Artifact;
}
