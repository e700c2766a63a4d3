//! What one run task needs: its own module so the run (`execute`), the
//! restore drill and the tamper check share it without importing each
//! other.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use crate::config::{Config, JobConfig};
use crate::repo::store::Repo;
use crate::sys::child::KillSwitch;

/// What one run task needs.
pub(super) struct RunCtx {
    pub(super) cfg: Arc<Config>,
    pub(super) repo: Repo,
    pub(super) job: JobConfig,
    pub(super) metrics: Arc<Metrics>,
    pub(super) client: reqwest::Client,
    pub(super) kill: KillSwitch,
    /// Hard cancel of this run (after the grace period).
    pub(super) cancel: CancellationToken,
    /// The daemon is shutting down: start no new attempt.
    pub(super) stopping: CancellationToken,
}
