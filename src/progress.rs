//! Shared counters that sources and the pipeline bump while a backup runs.
//!
//! Sources run on blocking threads and the progress reporter runs on the async
//! runtime, so the counters are plain atomics: cheap to bump from the hot
//! per-file loop and readable at any time without a lock.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Progress {
    raw_bytes: AtomicU64,
    stored_bytes: AtomicU64,
    files: AtomicU64,
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    /// Uncompressed bytes read from a source.
    pub fn add_raw_bytes(&self, n: u64) {
        self.raw_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Compressed bytes handed to the object store.
    pub fn add_stored_bytes(&self, n: u64) {
        self.stored_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Files (RRD or plain) added to an archive.
    pub fn add_files(&self, n: u64) {
        self.files.fetch_add(n, Ordering::Relaxed);
    }

    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes.load(Ordering::Relaxed)
    }

    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes.load(Ordering::Relaxed)
    }

    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }
}
