//! The option types that `config` builds for the layers above it
//! (`backup`'s pipeline, RRD source and shrink guard). They live here, in a
//! leaf below `config`, so that config is an input layer: it turns YAML
//! into these values without importing the code that uses them, and that
//! code names its inputs without importing config. This module imports
//! nothing of the crate (`tests/it/layout.rs` checks it).

use std::collections::BTreeMap;
use std::time::Duration;

// ------------------------------------------------------------ compression --

/// How the backup pipeline compresses artifacts: the zstd settings a job
/// asks for. Not to be confused with [`crate::repo::manifest::Compression`],
/// the record a manifest keeps of what was used (algorithm and level, no
/// worker count: that changes the speed, not the bytes a restore reads);
/// the record is built from these settings by one `From`, so the two cannot
/// drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionSettings {
    /// zstd level, 1..=19 (we refuse the slow "ultra" levels).
    pub level: i32,
    /// zstd worker threads; 0 compresses on the producing thread.
    pub workers: u32,
}

/// One worker by default, as `zstd -T1` does: the producing thread keeps
/// reading `pg_dump`'s pipe while a block compresses, instead of leaving
/// pg_dump (and the server behind it) blocked on a full pipe.
impl Default for CompressionSettings {
    fn default() -> Self {
        Self {
            level: 3,
            workers: 1,
        }
    }
}

// -------------------------------------------------------------- rrd source --

/// What to do with a file that still fails validation after its re-reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnInvalid {
    /// Fail the whole archive, naming the file and the reason.
    #[default]
    Fail,
    /// Archive the bytes as read, list the file in the archive's statistics
    /// (`RrdStats::invalid`) and warn: a damaged file is still better kept
    /// than lost.
    Include,
}

#[derive(Debug, Clone)]
pub struct RrdOptions {
    /// How long to keep retrying while a writer holds a file's lock.
    pub lock_timeout: Duration,
    /// Extra reads of a file whose copy fails validation.
    pub validation_retries: u32,
    /// Files larger than this are refused (Concertim's are 66 KiB-130 KiB;
    /// anything huge is not an RRD we should buffer in memory).
    pub max_file_size: u64,
    pub on_invalid: OnInvalid,
}

impl Default for RrdOptions {
    fn default() -> Self {
        RrdOptions {
            lock_timeout: Duration::from_secs(2),
            validation_retries: 3,
            max_file_size: 256 * 1024 * 1024,
            on_invalid: OnInvalid::Fail,
        }
    }
}

// ------------------------------------------------------------- shrink guard --

/// Default `max_shrink`: losing more than half is suspicious.
pub const DEFAULT_MAX_SHRINK: f64 = 0.5;

/// Limits for one source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A tree source with fewer files than this is suspicious (0: off).
    pub min_files: u64,
    /// A source with fewer raw bytes than this is suspicious (0: off).
    pub min_bytes: u64,
    /// The largest loss against the baseline that is normal, as a fraction
    /// in `0.0..=1.0`; `1.0` turns the comparison off.
    pub max_shrink: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_files: 0,
            min_bytes: 0,
            max_shrink: DEFAULT_MAX_SHRINK,
        }
    }
}

/// A job's thresholds: its own, and those of sources that override them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuardConfig {
    pub job: Thresholds,
    pub sources: BTreeMap<String, Thresholds>,
}

impl GuardConfig {
    pub fn for_source(&self, source: &str) -> Thresholds {
        self.sources.get(source).copied().unwrap_or(self.job)
    }
}
