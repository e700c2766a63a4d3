//! ccbackup: consistent backups of PostgreSQL databases, RRD metric trees and
//! plain directories to object storage, with declarative retention.
//!
//! The tree reads like the system: [`repo`] (the store and what lives in it),
//! [`backup`] (taking one), [`restore`] (bringing one back), [`retention`]
//! (which to keep), [`schedule`] and [`daemon`] (when), with [`config`],
//! [`pg`], [`rrd`], [`sys`] and small shared modules beside them and
//! [`app`], the command layer, on top. `tests/it/layout.rs` keeps it that
//! way: modules import only down the layers `app` → `daemon` → `notify` →
//! `backup` | `restore` → `pg` → `config` → `retention` | `crypto` → `repo`
//! → `sys` → [`options`], with no import cycles, no module over 600
//! lines of code and no function over 100 (bar a shrinking list). Config is an input layer: it builds the option types in
//! [`options`] for the code above it and nothing below it imports it back.
//!
//! A tour, following one backup:
//! - [`config`] parses and validates the YAML file (every problem at once,
//!   with its key path and line) into its own types and the domains' option
//!   types ([`options`]); [`duration`] is the one duration grammar.
//! - [`backup::runner::run_once`] takes the job's [`repo::lock`] and runs
//!   [`backup::run::run_job`], the one backup path (CLI and daemon). Each
//!   source ([`backup::source::postgres`], [`backup::source::rrd`],
//!   [`backup::source::files`]) writes its bytes into a
//!   [`backup::source::Sink`]; the run's sink ([`backup::sink`]) feeds them
//!   to the [`backup::pipeline`], which compresses, encrypts ([`crypto`],
//!   optional), hashes and uploads with bounded memory to the
//!   [`repo::store`].
//! - [`backup::guard`] compares the new backup with the job's last good one;
//!   a suspicious (empty, shrunken) backup is kept and marked, never pruned
//!   after.
//! - [`repo::manifest`] is written last, create-only, signed first when a key
//!   is configured ([`repo::signing`]): its presence is what makes a backup
//!   complete.
//! - After a good backup, [`retention::prune`] applies the job's
//!   [`retention::policy`] (planned by [`retention::planner`], a pure
//!   function) and [`backup::copy`] ships it to the copy stores.
//! - [`backup::report`] turns the run into the one record that logs, metrics
//!   and [`notify`] use.
//!
//! Reading back, everything from the store is untrusted: [`repo::catalog`]
//! lists backups by where they sit and reports damaged or unsigned manifests
//! apart; [`restore::fetch`] checks sizes and checksums before [`restore`]
//! ([`restore::extract`] for trees, [`restore::globals`] for roles,
//! [`restore::select`] for some tables of a dump) or [`restore::verify`]
//! use a byte. [`inspect`] (`ccbackup ls`) lists what a backup holds while
//! each artifact streams through the same checks, with restore's archive
//! caps and the backup's own dump TOC parser.
//!
//! [`doctor`] tries, on a small scale, everything a job will need (stores,
//! databases, paths, key files, notification endpoints) before it is needed.
//!
//! Around it: [`daemon`] schedules runs and drills and serves health and
//! metrics, and [`daemon::job::run_reported`] is the one run of a job with
//! its notifications, report and log event, for the daemon and `run-now`
//! alike (the runner lists the job's catalogue once per run and hands it
//! on); [`retry`] retries what is transient; [`interrupt`] and
//! [`repo::gate`] make every command stop cleanly on a signal; [`sys`] holds
//! the child-process and no-follow file primitives; [`app`] dispatches
//! commands; `main.rs` drops privileges ([`privdrop`]) and maps errors to
//! exit codes. Every time that is judged (leases, grace, schedules, staleness)
//! comes from [`clock`], so tests can run the daemon on paused tokio time.

pub mod app;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod doctor;
pub mod duration;
pub mod error;
pub mod inspect;
pub mod interrupt;
pub mod notify;
pub mod options;
pub mod pg;
pub mod privdrop;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod retry;
pub mod rrd;
pub mod schedule;
pub mod secret;
pub mod sys;
pub mod text;
