//! Integration tests: one binary, modules per area, to keep link time down.

// Tests fail loudly by unwrapping; the lint is for the library and binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests print to their own captured output; `app::out` is for the binary.
#![allow(clippy::disallowed_macros)]

mod alerting;
mod authenticated;
mod azure;
mod backup;
mod config_errors;
mod copies;
mod crypto;
mod daemon;
mod daemon_signals;
mod daemon_time;
mod disaster;
mod docs;
mod doctor;
mod drills;
mod examples;
mod extract_atomic;
mod faults_manifest;
mod faults_memory;
mod faults_pg;
mod faults_staging;
mod fuzz_smoke;
mod globals;
mod guard;
mod hardening;
mod hostile_catalog;
mod hostile_restore;
mod immutable_past;
mod interrupt;
mod key_windows;
mod layout;
mod lock;
mod notify;
mod pgauth;
mod pgversions;
mod privdrop;
mod progress;
mod prune;
mod ransomware_runbook;
mod readiness;
mod restore;
mod retention;
mod rough_edges;
mod rowcount;
mod rrd;
mod runbook;
mod s3;
mod schemas;
mod scripts;
mod support;
mod support_attacker;
mod support_pg;
mod support_proxy;
mod support_rrd;
mod support_s3;
mod tamper_daemon;
mod tampering;
