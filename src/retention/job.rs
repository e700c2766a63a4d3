//! What pruning needs to know of a job. Retention sits below `config`, so
//! it names its input here instead of importing `config::JobConfig`;
//! config implements this for the jobs it builds.

use std::time::Duration;

use super::policy::Policy;

/// A job as retention sees it: its name, its policy, and the two limits
/// that protect a store from a wrong policy or a crash.
pub trait RetentionJob {
    /// The job's name: its backups' prefix in the store.
    fn name(&self) -> &str;
    /// The job's retention policy; `None` when it has none (nothing is
    /// pruned).
    fn policy(&self) -> Option<&Policy>;
    /// The most backups one prune may delete.
    fn max_deletions(&self) -> usize;
    /// Incomplete backups younger than this are left alone.
    fn orphan_grace(&self) -> Duration;
}
