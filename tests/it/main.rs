//! Integration tests: one binary, modules per area, to keep link time down.

mod azure;
mod backup;
mod config_errors;
mod crypto;
mod daemon;
mod daemon_signals;
mod examples;
mod extract_atomic;
mod globals;
mod hardening;
mod interrupt;
mod lock;
mod pgauth;
mod pgversions;
mod privdrop;
mod prune;
mod restore;
mod retention;
mod rrd;
mod runbook;
mod s3;
mod support;
mod support_pg;
mod support_rrd;
mod support_s3;
