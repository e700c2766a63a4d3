//! Retention: which backups to keep.
//!
//! [`policy`] is the declarative YAML model and its loader, [`planner`]
//! the pure decision (keep/delete with reasons) over a catalog, and
//! [`prune`] carries a plan out against the store; [`locks`] keeps what
//! it keeps locked on a store with Object Lock; [`tamper`] finds, in a
//! versioned store's history, the deletes and rewrites the policy does
//! not explain.

pub mod job;
pub mod locks;
pub mod planner;
pub mod policy;
pub mod prune;
pub mod tamper;
