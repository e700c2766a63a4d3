//! ccbackup: consistent backups of PostgreSQL databases, RRD metric trees and
//! plain directories to object storage, with declarative retention.
//!
//! A tour, following one backup:
//! - [`config`] parses and validates the YAML file (every problem at once).
//! - [`runner::run_once`] takes the job's [`lock`] and runs
//!   [`backup::run_job`], the one backup path (CLI and daemon). For each
//!   source it opens a stream ([`source::postgres`], [`source::rrd`],
//!   [`source::files`]) and hands it to [`pipeline`], which compresses,
//!   encrypts ([`crypto`], optional), hashes and uploads with bounded memory
//!   to the [`store`].
//! - [`guard`] compares the new backup with the job's last good one; a
//!   suspicious (empty, shrunken) backup is kept and marked, never pruned after.
//! - [`manifest`] is written last, create-only, signed first when a key is
//!   configured ([`signing`]): its presence is what makes a backup complete.
//! - After a good backup, [`prune`] applies the job's [`policy`] (planned by
//!   [`retention`]) and [`copy`] ships it to the copy stores.
//! - [`report`] turns the run into the one record that logs, metrics and
//!   [`notify`] use.
//!
//! Reading back, everything from the store is untrusted: [`catalog`] lists
//! backups by where they sit and reports damaged or unsigned manifests
//! apart; [`fetch`] checks sizes and checksums before [`restore`]
//! ([`extract`] for trees, [`globals`] for roles) or [`verify`] use a byte.
//!
//! Around it: [`daemon`] schedules runs and drills and serves health and
//! metrics; [`interrupt`] and [`gate`] make every command stop cleanly on a
//! signal; [`app`] dispatches commands; `main.rs` drops privileges
//! ([`privdrop`]) and maps errors to exit codes.

pub mod app;
pub mod backup;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod error;
pub mod interrupt;
pub mod notify;
pub mod pg;
pub mod privdrop;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod retry;
pub mod schedule;
pub mod secret;
pub mod sys;
