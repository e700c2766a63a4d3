//! Integration tests: one binary, modules per area, to keep link time down.

mod backup;
mod config_errors;
mod prune;
mod restore;
mod retention;
mod rrd;
mod support;
mod support_rrd;
