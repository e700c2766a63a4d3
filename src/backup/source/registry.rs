//! The [`Source`] trait every source kind implements, and the registry: the
//! single place that maps a configured source kind to its implementation
//! and its error.

use std::future::Future;

use super::files::FilesError;
use super::postgres::PgSourceError;
use super::rrd::RrdError;
use super::Sink;
use crate::backup::pipeline::PipelineError;
use crate::config::SourceKind;
use crate::repo::manifest::Artifact;
use crate::retry::{Class, Transient};

/// Why one source produced no backup.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Postgres(PgSourceError),
    #[error(transparent)]
    Rrd(PipelineError<RrdError>),
    #[error(transparent)]
    Files(PipelineError<FilesError>),
}

impl Transient for SourceError {
    fn class(&self) -> Class {
        match self {
            SourceError::Postgres(e) => e.class(),
            SourceError::Rrd(e) => e.class(),
            SourceError::Files(e) => e.class(),
        }
    }
}

/// One configured source (its configuration block implements this).
pub trait Source: Sync {
    /// Reads the source and writes each artifact into `sink`, returning the
    /// artifacts' manifest records, each with the detail of its kind
    /// ([`crate::repo::manifest::ArtifactDetail`]). `name` is the source's
    /// name in the job, which the artifact keys start with.
    fn produce<S: Sink>(
        &self,
        sink: &S,
        name: &str,
    ) -> impl Future<Output = Result<Vec<Artifact>, SourceError>> + Send;
}

/// Backs up the source `kind` configures under `name`.
pub async fn produce<S: Sink>(
    kind: &SourceKind,
    sink: &S,
    name: &str,
) -> Result<Vec<Artifact>, SourceError> {
    match kind {
        SourceKind::Postgres(cfg) => cfg.produce(sink, name).await,
        SourceKind::Rrd(cfg) => cfg.produce(sink, name).await,
        SourceKind::Files(cfg) => cfg.produce(sink, name).await,
    }
}
