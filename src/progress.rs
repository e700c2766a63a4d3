//! Shared counters that sources, the pipeline and restores bump while a
//! command runs, and the one-line view a terminal shows of them.
//!
//! Work runs on blocking threads and the reporter on the async runtime, so
//! the counters are plain atomics: cheap to bump from the hot per-file loop
//! and readable at any time without a lock.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

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

#[derive(Debug)]
pub struct Progress {
    raw_bytes: AtomicU64,
    stored_bytes: AtomicU64,
    files: AtomicU64,
    phase: AtomicU8,
    /// Bytes the current phase will handle, when known (from the manifest);
    /// 0 when unknown. Compared with the phase's own counter.
    total: AtomicU64,
    done: AtomicU64,
    /// When the current phase started, in nanoseconds after `base`: its
    /// rate is its own bytes over its own time.
    phase_started: AtomicU64,
    base: Instant,
    /// What a restore put in place: files and their content bytes, and
    /// databases. Not the stream read to get there, which may be read
    /// twice (checked, then extracted) and includes archive headers.
    written_files: AtomicU64,
    written_bytes: AtomicU64,
    databases: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            raw_bytes: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            phase: AtomicU8::new(0),
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            phase_started: AtomicU64::new(0),
            base: Instant::now(),
            written_files: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
            databases: AtomicU64::new(0),
        }
    }
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    /// A restore put `files` files holding `bytes` bytes in place.
    pub fn add_written(&self, files: u64, bytes: u64) {
        self.written_files.fetch_add(files, Ordering::Relaxed);
        self.written_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A restore restored one database.
    pub fn add_database(&self) {
        self.databases.fetch_add(1, Ordering::Relaxed);
    }

    /// `2 databases, 9 files, 81.0 KiB written`, naming only what there
    /// was; `nothing written` when there was nothing.
    pub fn written_summary(&self) -> String {
        let dbs = self.databases.load(Ordering::Relaxed);
        let files = self.written_files.load(Ordering::Relaxed);
        let bytes = self.written_bytes.load(Ordering::Relaxed);
        let mut parts = Vec::new();
        if dbs > 0 {
            parts.push(count(dbs, "database", "databases"));
        }
        if files > 0 || dbs == 0 {
            parts.push(format!(
                "{}, {} written",
                count(files, "file", "files"),
                human(bytes)
            ));
        } else {
            return format!("{} restored", parts.join(", "));
        }
        parts.join(", ")
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
        self.new_pass();
    }

    /// The phase reads its input from the start again (a tree is read once
    /// to check it and once to extract it): count from zero, so the line
    /// never says more than the total.
    pub fn new_pass(&self) {
        self.done.store(0, Ordering::Relaxed);
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.phase_started.store(now, Ordering::Relaxed);
    }

    fn phase_elapsed(&self) -> Duration {
        let started = Duration::from_nanos(self.phase_started.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(started)
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
        self.render(label, elapsed, self.phase_elapsed())
    }

    /// [`Progress::line`] with both times given: `elapsed` since the
    /// command started (a backup's rate), `in_phase` since the current
    /// phase or pass started (the rate of checking, downloading,
    /// restoring).
    fn render(&self, label: &str, elapsed: Duration, in_phase: Duration) -> String {
        let phase = self.phase();
        if phase == Phase::BackingUp {
            let secs = elapsed.as_secs_f64().max(0.001);
            return format!(
                "{label}: {} read, {} stored, {}, {}/s",
                human(self.raw_bytes()),
                human(self.stored_bytes()),
                count(self.files(), "file", "files"),
                human((self.raw_bytes() as f64 / secs) as u64)
            );
        }
        let secs = in_phase.as_secs_f64().max(0.001);
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
            human((done as f64 / secs) as u64)
        )
    }
}

/// `1 file`, `2 files`, `0 files`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A reader that counts what passes through it into a `Progress`.
pub struct Counted<R> {
    inner: R,
    progress: std::sync::Arc<Progress>,
}

impl<R> Counted<R> {
    /// Each reader is a new pass over its input (see [`Progress::new_pass`]).
    pub fn new(inner: R, progress: std::sync::Arc<Progress>) -> Self {
        progress.new_pass();
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
        let one = Progress::new();
        one.add_files(1);
        assert!(one.line("x", Duration::from_secs(1)).contains(" 1 file, "));
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

    /// Issue 23.8: a tree read twice (checked, then extracted) never
    /// shows more than its total.
    #[test]
    fn a_second_pass_counts_from_zero() {
        use std::io::Read;
        let p = std::sync::Arc::new(Progress::new());
        p.start_phase(Phase::Restoring, 4096);
        for _ in 0..2 {
            let mut r = Counted::new(&[7u8; 4096][..], p.clone());
            std::io::copy(&mut r, &mut std::io::sink()).unwrap();
            let mut rest = Vec::new();
            r.read_to_end(&mut rest).unwrap();
        }
        let l = p.line("restore", Duration::from_secs(1));
        assert!(
            l.starts_with("restore: restoring 4.0 KiB of 4.0 KiB (100%)"),
            "{l}"
        );
    }

    /// Issue 23.8: checking a file:// artifact in place reads nothing
    /// through the raw or stored counters; its rate is its own.
    #[test]
    fn the_checking_phase_has_its_own_rate() {
        let p = Progress::new();
        p.add_stored_bytes(10 << 20);
        p.start_phase(Phase::Checking, 4 << 20);
        p.add_done(2 << 20);
        let l = p.render("verify", Duration::from_secs(10), Duration::from_secs(2));
        assert_eq!(l, "verify: checking 2.0 MiB of 4.0 MiB (50%), 1.0 MiB/s");
    }

    #[test]
    fn written_summary_names_what_was_written() {
        let p = Progress::new();
        assert_eq!(p.written_summary(), "0 files, 0 B written");
        p.add_written(1, 1000);
        assert_eq!(p.written_summary(), "1 file, 1000 B written");
        p.add_written(8, 80 * 1024);
        p.add_database();
        assert_eq!(p.written_summary(), "1 database, 9 files, 81.0 KiB written");
        let db = Progress::new();
        db.add_database();
        db.add_database();
        assert_eq!(db.written_summary(), "2 databases restored");
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
