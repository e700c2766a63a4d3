//! Taking a backup.
//!
//! [`runner`] takes the job's lock and runs [`run`], the one backup path
//! for the CLI and the daemon. Each [`source`] writes its bytes into the
//! [`pipeline`] (zstd, optional age encryption, sha256, multipart upload,
//! bounded memory); [`guard`] compares the result with the last good
//! backup; [`report`] is the record of the run that logs, metrics and
//! notifications share; [`copy`] ships finished backups to copy stores.

pub mod copy;
pub mod guard;
pub mod pipeline;
pub mod report;
pub mod run;
pub mod runner;
pub mod sink;
pub mod source;
