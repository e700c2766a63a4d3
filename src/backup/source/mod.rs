//! Sources: where backup bytes come from. Each source kind reads its data
//! and writes it into a [`Sink`]; it never talks to the store itself.

pub mod files;
pub mod pgcount;
pub mod postgres;
pub mod registry;
pub mod rrd;

pub use registry::{Source, SourceError};

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backup::pipeline::{PipelineError, SourceWriter, Uploaded};
use crate::progress::Progress;
use crate::repo::manifest::{Artifact, ArtifactDetail, ArtifactKind};
use crate::sys::child::KillSwitch;

/// Where a source puts what it reads. Sources only produce bytes; the
/// backup run decides where they go and how they are compressed,
/// encrypted, hashed and stored ([`crate::backup::sink`]).
pub trait Sink: Sync {
    /// Streams what `produce` writes into the artifact `rel` (relative to
    /// the backup's directory), an artifact of `kind`, returning
    /// `produce`'s result and what was stored.
    fn put<T, E, F>(
        &self,
        rel: &str,
        kind: ArtifactKind,
        produce: F,
    ) -> impl Future<Output = Result<(T, Uploaded), PipelineError<E>>> + Send
    where
        T: Send + 'static,
        E: std::error::Error + Send + 'static,
        F: FnOnce(&mut SourceWriter) -> Result<T, E> + Send + 'static;

    /// Stops this run's child processes when fired.
    fn kill(&self) -> &KillSwitch;

    /// The run's progress counters, which tree sources advance per file.
    fn progress(&self) -> Arc<Progress>;

    /// Whether artifacts are encrypted, so their manifest records must not
    /// name what is inside them.
    fn withholds_names(&self) -> bool;

    /// The manifest record of an artifact [`Sink::put`] stored at `key`.
    fn artifact(
        &self,
        key: String,
        source: &str,
        kind: ArtifactKind,
        up: Uploaded,
        detail: Option<ArtifactDetail>,
    ) -> Artifact;
}

/// A tree source whose directory is not there: lost with a volume, or not
/// mounted. Said plainly, because after a disaster it is the expected case.
#[derive(Debug, thiserror::Error)]
#[error(
    "directory {} does not exist: restore it (`ccbackup restore --source NAME`) or fix the source's `path`",
    path.display()
)]
pub struct RootMissing {
    pub path: PathBuf,
}

/// Starts a walk of a tree source's root, telling a missing root apart
/// from other trouble opening it.
pub(crate) fn walk_root(root: &Path) -> Result<crate::sys::walk::Walk, RootError> {
    crate::sys::walk::Walk::new(root).map_err(|e| {
        if e.source.kind() == std::io::ErrorKind::NotFound {
            RootError::Missing(RootMissing {
                path: root.to_path_buf(),
            })
        } else {
            RootError::Walk(e)
        }
    })
}

pub(crate) enum RootError {
    Missing(RootMissing),
    Walk(crate::sys::walk::WalkError),
}
