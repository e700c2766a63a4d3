//! The repository: the object store and what ccbackup keeps in it.
//!
//! [`store`] opens a store from a URL and options and names every object;
//! [`manifest`] is the record that makes a backup complete, [`signing`]
//! its signature, [`catalog`] lists backups by where they sit and treats
//! whatever the store says as untrusted; [`lock`] is the lease one job's
//! runs share; [`gate`] wraps a store so an interrupted command stops
//! writing; [`local`], [`s3_uploads`] and [`s3_lock`] are the backend
//! details, and [`locked`] locks what a backup writes on an S3 store with
//! Object Lock; [`s3_versions`] reads a versioned bucket's history and
//! [`as_of`] serves the store as it was at a past time, read-only.

#[macro_use]
mod delegate;

pub mod as_of;
pub mod catalog;
pub mod commit;
pub mod gate;
pub mod local;
pub mod lock;
pub mod locked;
pub mod manifest;
pub mod s3_lock;
pub mod s3_uploads;
pub mod s3_versions;
pub mod signing;
pub mod store;
