//! Shared counters that sources, the pipeline and restores bump while a
//! command runs, and the one-line view a terminal shows of them.
//!
//! Work runs on blocking threads and the reporter on the async runtime, so
//! the counters are plain atomics: cheap to bump from the hot per-file loop
//! and readable at any time without a lock.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// What a command is doing, for the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    BackingUp = 0,
    Checking = 1,
    Downloading = 2,
    Restoring = 3,
    Testing = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Checking,
            2 => Phase::Downloading,
            3 => Phase::Restoring,
            4 => Phase::Testing,
            _ => Phase::BackingUp,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::BackingUp => "backing up",
            Phase::Checking => "checking",
            Phase::Downloading => "downloading",
            Phase::Restoring => "restoring",
            Phase::Testing => "restore-testing",
        }
    }
}

#[derive(Debug, Default)]
pub struct Progress {
    raw_bytes: AtomicU64,
    stored_bytes: AtomicU64,
    files: AtomicU64,
    phase: AtomicU8,
    /// Bytes the current phase will handle, when known (from the manifest);
    /// 0 when unknown. Compared with the phase's own counter.
    total: AtomicU64,
    done: AtomicU64,
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    /// Uncompressed bytes read from a source (or written by a restore).
    pub fn add_raw_bytes(&self, n: u64) {
        self.raw_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Compressed bytes handed to (or read from) the object store.
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

    /// Starts a phase that will handle `total` bytes (0: unknown).
    pub fn start_phase(&self, phase: Phase, total: u64) {
        self.phase.store(phase as u8, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }

    /// Bytes of the current phase handled.
    pub fn add_done(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    /// Pure: the line a terminal shows, e.g.
    /// `restore: downloading 1.2 GiB of 3.4 GiB (35%), 80.0 MiB/s`.
    pub fn line(&self, label: &str, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(0.001);
        let phase = self.phase();
        if phase == Phase::BackingUp {
            return format!(
                "{label}: {} read, {} stored, {} files, {}/s",
                human(self.raw_bytes()),
                human(self.stored_bytes()),
                self.files(),
                human((self.raw_bytes() as f64 / secs) as u64)
            );
        }
        let done = self.done.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        let of = if total > 0 {
            format!(
                " of {} ({}%)",
                human(total),
                (done.min(total) as u128 * 100 / total as u128)
            )
        } else {
            String::new()
        };
        format!(
            "{label}: {} {}{of}, {}/s",
            phase.name(),
            human(done),
            human((self.raw_bytes().max(self.stored_bytes()) as f64 / secs) as u64)
        )
    }
}

/// A reader that counts what passes through it into a `Progress`.
pub struct Counted<R> {
    inner: R,
    progress: std::sync::Arc<Progress>,
}

impl<R> Counted<R> {
    pub fn new(inner: R, progress: std::sync::Arc<Progress>) -> Self {
        Counted { inner, progress }
    }
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_raw_bytes(n as u64);
        self.progress.add_done(n as u64);
        Ok(n)
    }
}

/// Text for a terminal: control characters (other than newline and tab)
/// are escaped, so names and messages that came from the store cannot move
/// the cursor, clear the screen or recolour what follows.
///
/// ```
/// assert_eq!(ccbackup::progress::printable("a\x1b[2Jb"), "a\\u{1b}[2Jb");
/// ```
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Bytes for people: `512 B`, `1.5 KiB`, `3.0 GiB`.
///
/// ```
/// assert_eq!(ccbackup::progress::human(512), "512 B");
/// assert_eq!(ccbackup::progress::human(1536), "1.5 KiB");
/// ```
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_phase_amount_and_percentage_when_known() {
        let p = Progress::new();
        p.add_raw_bytes(2048);
        p.add_stored_bytes(1024);
        p.add_files(3);
        let l = p.line("nightly", Duration::from_secs(1));
        assert_eq!(
            l,
            "nightly: 2.0 KiB read, 1.0 KiB stored, 3 files, 2.0 KiB/s"
        );
        p.start_phase(Phase::Downloading, 4096);
        p.add_done(1024);
        let l = p.line("restore", Duration::from_secs(2));
        assert!(
            l.starts_with("restore: downloading 1.0 KiB of 4.0 KiB (25%)"),
            "{l}"
        );
        p.start_phase(Phase::Restoring, 0);
        p.add_done(10);
        let l = p.line("restore", Duration::from_secs(1));
        assert!(l.starts_with("restore: restoring 10 B,"), "{l}");
        assert!(!l.contains('%'));
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("a\x1b[2Jb\nc\td"), "a\\u{1b}[2Jb\nc\td");
    }

    #[test]
    fn human_bytes_scales() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
