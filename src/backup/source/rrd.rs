//! RRD archive source: a consistent tar of a tree of RRD files that
//! `rrdtool update` keeps writing while we copy.
//!
//! librrd writes an update as several `write`s at different offsets under a
//! whole-file `fcntl` write lock taken with `F_SETLK` (it never waits). A copy
//! taken without the lock can mix two updates, so each file is copied like
//! this (design.md §1 "RRD files"):
//!
//! 1. open read-only (`O_NOFOLLOW`, relative to its directory);
//! 2. take an OFD read lock (`F_OFD_SETLK`, `F_RDLCK`, whole file), retrying
//!    with a short back-off while a writer holds the write lock. OFD locks
//!    conflict with librrd's process-associated locks, unlike `flock(2)`;
//! 3. `fstat`, read the whole file into a reused buffer, unlock. While we hold
//!    the lock a concurrent update fails and loses one sample, so the lock is
//!    held only for this read, never across validation, compression or I/O to
//!    the archive writer;
//! 4. validate the copy ([`validate_rrd`]); re-read a few times if it fails;
//! 5. append the bytes to the tar with the metadata from step 3.
//!
//! Memory is one file's buffer plus the walk's per-level listings, whatever
//! the number of files.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tar::{Builder, EntryType};

use super::files::{append_dir, header, with_builder, TarSink};
use crate::progress::Progress;
use crate::retry::{Class, Transient};
use crate::sys::walk::{self, Entry, Kind, Stat, Walk, WalkError};

/// What to do with a file that still fails validation after its re-reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnInvalid {
    /// Fail the whole archive, naming the file and the reason.
    #[default]
    Fail,
    /// Archive the bytes as read, list the file in [`RrdStats::invalid`] and
    /// warn: a damaged file is still better kept than lost.
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

/// Header facts of a file that passed [`validate_rrd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrdInfo {
    pub version: u8,
    pub ds_count: u64,
    pub rra_count: u64,
    pub expected_size: u64,
}

/// Why bytes are not a complete RRD file of this architecture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RrdInvalid {
    #[error("too short for its header: {len} bytes, header needs {needed}")]
    TooShort { len: u64, needed: u64 },
    #[error("no RRD magic at the start")]
    BadMagic,
    #[error("unsupported format version {found:?}")]
    BadVersion { found: String },
    #[error("float cookie mismatch: written on another architecture")]
    ForeignArchitecture,
    #[error("implausible header: {ds_count} data sources, {rra_count} archives")]
    BadCounts { ds_count: u64, rra_count: u64 },
    #[error("size is {actual} bytes but the header implies {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
}

// Layout of librrd's on-disk structs on LP64 (rrd_format.h): the file is the
// in-memory structs written one after another.
const MAGIC: &[u8; 4] = b"RRD\0";
const FLOAT_COOKIE: f64 = 8.642135E130;
const STAT_HEAD: u64 = 128;
const DS_DEF: u64 = 120;
const RRA_DEF: u64 = 120;
const RRA_DEF_ROW_CNT: u64 = 24;
/// `live_head_t` is `{ time_t last_up; long last_up_usec; }` from version 3
/// on; versions 1 and 2 stored only the `time_t` (librrd's rrd_open reads
/// them that way), so their header is 8 bytes shorter.
const LIVE_HEAD_V3: u64 = 16;
const LIVE_HEAD_V1: u64 = 8;
const PDP_PREP: u64 = 112;
const CDP_PREP: u64 = 80;
const RRA_PTR: u64 = 8;
const VALUE: u64 = 8;

fn u64_at(bytes: &[u8], off: u64) -> Option<u64> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(8)?;
    let raw: [u8; 8] = bytes.get(start..end)?.try_into().ok()?;
    Some(u64::from_ne_bytes(raw))
}

/// Checks that `bytes` are a whole RRD file as librrd on this machine would
/// read it: magic, version 0001-0005, the float cookie, and the exact size
/// implied by the header. Pure; every offset is bounds- and
/// overflow-checked, so arbitrary input is safe.
pub fn validate_rrd(bytes: &[u8]) -> Result<RrdInfo, RrdInvalid> {
    let len = bytes.len() as u64;
    if len < STAT_HEAD {
        // Magic first, so a short non-RRD says what it is.
        if bytes.len() >= 4 && &bytes[..4] != MAGIC {
            return Err(RrdInvalid::BadMagic);
        }
        return Err(RrdInvalid::TooShort {
            len,
            needed: STAT_HEAD,
        });
    }
    if &bytes[..4] != MAGIC {
        return Err(RrdInvalid::BadMagic);
    }
    let version = match &bytes[4..8] {
        b"0001" => 1,
        b"0002" => 2,
        b"0003" => 3,
        b"0004" => 4,
        b"0005" => 5,
        other => {
            return Err(RrdInvalid::BadVersion {
                found: other.escape_ascii().to_string(),
            })
        }
    };
    let mut cookie = [0u8; 8];
    cookie.copy_from_slice(&bytes[16..24]);
    if f64::from_ne_bytes(cookie) != FLOAT_COOKIE {
        return Err(RrdInvalid::ForeignArchitecture);
    }
    let too_short = |needed| RrdInvalid::TooShort { len, needed };
    let ds = u64_at(bytes, 24).ok_or(too_short(32))?;
    let rra = u64_at(bytes, 32).ok_or(too_short(40))?;
    let bad_counts = RrdInvalid::BadCounts {
        ds_count: ds,
        rra_count: rra,
    };
    if ds == 0 || rra == 0 {
        return Err(bad_counts);
    }
    let live_head = if version >= 3 {
        LIVE_HEAD_V3
    } else {
        LIVE_HEAD_V1
    };
    let rra_defs_at = DS_DEF
        .checked_mul(ds)
        .and_then(|d| d.checked_add(STAT_HEAD))
        .ok_or_else(|| bad_counts.clone())?;
    let defs_end = RRA_DEF
        .checked_mul(rra)
        .and_then(|r| r.checked_add(rra_defs_at))
        .ok_or_else(|| bad_counts.clone())?;
    // Bounds the loop below by the buffer, so a lying rra_cnt cannot make us
    // spin over billions of entries.
    if defs_end > len {
        return Err(too_short(defs_end));
    }
    let header = (|| {
        let cdp = CDP_PREP.checked_mul(ds)?.checked_mul(rra)?;
        defs_end
            .checked_add(live_head)?
            .checked_add(PDP_PREP.checked_mul(ds)?)?
            .checked_add(cdp)?
            .checked_add(RRA_PTR.checked_mul(rra)?)
    })()
    .ok_or_else(|| bad_counts.clone())?;
    let mut rows: u64 = 0;
    for i in 0..rra {
        let at = rra_defs_at + i * RRA_DEF + RRA_DEF_ROW_CNT;
        let row_cnt = u64_at(bytes, at).ok_or(too_short(at + 8))?;
        rows = rows
            .checked_add(row_cnt)
            .ok_or_else(|| bad_counts.clone())?;
    }
    let expected = rows
        .checked_mul(ds)
        .and_then(|v| v.checked_mul(VALUE))
        .and_then(|v| v.checked_add(header))
        .ok_or_else(|| bad_counts.clone())?;
    if expected != len {
        return Err(RrdInvalid::SizeMismatch {
            expected,
            actual: len,
        });
    }
    Ok(RrdInfo {
        version,
        ds_count: ds,
        rra_count: rra,
        expected_size: expected,
    })
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RrdStats {
    pub files: u64,
    pub bytes: u64,
    pub dirs: u64,
    /// librrd's `<name>.rrdXXXXXX` files from an `rrdtool create` in progress.
    pub skipped_temp: u64,
    /// Regular files not named `*.rrd`, symlinks and special files.
    pub skipped_other: u64,
    pub vanished: u64,
    /// Files archived despite failing validation (only with
    /// [`OnInvalid::Include`]), relative to the root.
    pub invalid: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RrdError {
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error("cannot open rrd file {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot lock rrd file {}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "gave up after {waited:?} waiting for a writer to release the lock on rrd file {}",
        path.display()
    )]
    LockTimeout { path: PathBuf, waited: Duration },
    #[error(
        "rrd file {} is {size} bytes, over the {max} byte limit (max_file_size)",
        path.display()
    )]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("cannot read rrd file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("rrd file {} is invalid after {reads} reads: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        reads: u32,
        reason: RrdInvalid,
    },
    #[error("cannot write the archive (at {})", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot finish the archive")]
    Finish(#[source] io::Error),
}

impl Transient for RrdError {
    /// Writes go to the upload pipeline, whose trouble may pass; a local
    /// file that cannot be read or is invalid stays so.
    fn class(&self) -> Class {
        match self {
            RrdError::Write { source, .. } | RrdError::Finish(source) => source.class(),
            _ => Class::Permanent,
        }
    }
}

/// Writes a tar of the RRD files (and the directories holding them) under
/// `root` into `out`, returning `out` once the archive is complete. On error
/// nothing more is written to `out`, so a partial stream never ends with a
/// valid end-of-archive marker.
pub fn archive_rrd_tree<W: Write>(
    root: &Path,
    out: W,
    opts: &RrdOptions,
    progress: &Progress,
) -> Result<(RrdStats, W), RrdError> {
    with_builder(
        out,
        |b| archive_into(root, b, opts, progress),
        RrdError::Finish,
    )
}

/// `rrdtool create` writes `<name>.rrd` + mkstemp's six random characters,
/// then renames.
fn is_rrd_temp(name: &[u8]) -> bool {
    name.len() > 10 && {
        let (head, tail) = name.split_at(name.len() - 6);
        head.ends_with(b".rrd") && tail.iter().all(u8::is_ascii_alphanumeric)
    }
}

fn archive_into<W: Write>(
    root: &Path,
    builder: &mut Builder<TarSink<W>>,
    opts: &RrdOptions,
    progress: &Progress,
) -> Result<RrdStats, RrdError> {
    let mut stats = RrdStats::default();
    let mut walk = Walk::new(root)?;
    let mut buf = Vec::new();
    for entry in walk.by_ref() {
        let entry = entry?;
        let rel = entry.path();
        let write_err = |source| RrdError::Write {
            path: rel.to_path_buf(),
            source,
        };
        match entry.stat().kind {
            Kind::Dir => {
                append_dir(builder, &entry).map_err(write_err)?;
                stats.dirs += 1;
            }
            Kind::File if is_rrd_temp(entry.file_name().as_bytes()) => {
                tracing::debug!(path = %rel.display(), "skipping rrdtool temp file");
                stats.skipped_temp += 1;
            }
            Kind::File if entry.file_name().as_bytes().ends_with(b".rrd") => {
                let full = root.join(rel);
                let Some(copy) = copy_rrd(&full, &entry, opts, &mut buf)? else {
                    stats.vanished += 1;
                    continue;
                };
                if let Some((reason, reads)) = copy.invalid {
                    match opts.on_invalid {
                        OnInvalid::Fail => {
                            return Err(RrdError::Invalid {
                                path: full,
                                reads,
                                reason,
                            })
                        }
                        OnInvalid::Include => {
                            tracing::warn!(
                                path = %full.display(),
                                %reason,
                                "archiving rrd file that fails validation"
                            );
                            stats.invalid.push(rel.to_path_buf());
                        }
                    }
                }
                let len = buf.len() as u64;
                let mut h = header(EntryType::Regular, &copy.stat, len);
                builder
                    .append_data(&mut h, rel, &buf[..])
                    .map_err(write_err)?;
                stats.files += 1;
                stats.bytes += len;
                // Raw bytes are counted once, by the pipeline.
                progress.add_files(1);
            }
            _ => {
                tracing::debug!(path = %rel.display(), "skipping non-rrd entry");
                stats.skipped_other += 1;
            }
        }
    }
    stats.vanished += walk.vanished();
    Ok(stats)
}

struct Copied {
    stat: Stat,
    /// Why the last read failed validation, and how many reads were made.
    invalid: Option<(RrdInvalid, u32)>,
}

/// Copies one file into `buf` under the lock, re-reading while it fails
/// validation. `None` when the file vanished.
fn copy_rrd(
    full: &Path,
    entry: &Entry,
    opts: &RrdOptions,
    buf: &mut Vec<u8>,
) -> Result<Option<Copied>, RrdError> {
    let file = match entry.open_file() {
        Ok(f) => f,
        Err(e) if walk::is_vanished(&e) => {
            tracing::debug!(path = %full.display(), "rrd file vanished before open");
            return Ok(None);
        }
        Err(source) => {
            return Err(RrdError::Open {
                path: full.to_path_buf(),
                source,
            })
        }
    };
    let mut reads = 0u32;
    loop {
        let Some(stat) = locked_read(full, &file, opts, buf)? else {
            return Ok(None);
        };
        reads += 1;
        match validate_rrd(buf) {
            Ok(_) => {
                return Ok(Some(Copied {
                    stat,
                    invalid: None,
                }))
            }
            Err(reason) if reads <= opts.validation_retries => {
                tracing::debug!(path = %full.display(), %reason, reads, "rrd copy invalid, re-reading");
                // A writer that ignores the lock (not librrd) may be mid-way:
                // give it a moment rather than re-reading the same tear.
                std::thread::sleep(Duration::from_millis(5 << reads.min(5)));
            }
            Err(reason) => {
                return Ok(Some(Copied {
                    stat,
                    invalid: Some((reason, reads)),
                }))
            }
        }
    }
}

/// Releases the OFD lock on every path out of [`locked_read`].
struct Unlock<'a>(&'a File);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        // Failure to unlock cannot be acted on; closing the file (which the
        // caller does right after) releases the lock anyway.
        let _ = ofd_lock(self.0, libc::F_UNLCK);
    }
}

/// Locks, `fstat`s and reads the whole file into `buf`, then unlocks.
/// `None` when the path no longer names a regular file.
fn locked_read(
    full: &Path,
    file: &File,
    opts: &RrdOptions,
    buf: &mut Vec<u8>,
) -> Result<Option<Stat>, RrdError> {
    let read_err = |source| RrdError::Read {
        path: full.to_path_buf(),
        source,
    };
    lock_shared(full, file, opts.lock_timeout)?;
    let unlock = Unlock(file);
    let stat = Stat::of(file).map_err(read_err)?;
    if stat.kind != Kind::File {
        return Ok(None);
    }
    let too_large = |size| RrdError::TooLarge {
        path: full.to_path_buf(),
        size,
        max: opts.max_file_size,
    };
    if stat.size > opts.max_file_size {
        return Err(too_large(stat.size));
    }
    buf.clear();
    // Reserve once (reused across files) so the read is one or two syscalls.
    buf.reserve(usize::try_from(stat.size).unwrap_or(0).saturating_add(1));
    let mut reader = file;
    reader.seek(SeekFrom::Start(0)).map_err(read_err)?;
    // One byte past the limit detects a file that grew after fstat.
    reader
        .take(opts.max_file_size.saturating_add(1))
        .read_to_end(buf)
        .map_err(read_err)?;
    drop(unlock);
    let len = buf.len() as u64;
    if len > opts.max_file_size {
        return Err(too_large(len));
    }
    Ok(Some(stat))
}

/// `fcntl(F_OFD_SETLK)` over the whole file. rrdtool takes POSIX record
/// locks (`F_SETLK`) while it updates a file; OFD locks conflict with those,
/// but belong to our open file description rather than to the process, so
/// they are not silently dropped when another descriptor of the same file
/// in this process is closed. rustix has no OFD lock call (its `fcntl_lock`
/// is process-associated `F_SETLK`), so this stays a raw `fcntl`.
fn ofd_lock(file: &File, l_type: libc::c_int) -> io::Result<()> {
    // SAFETY: all-zero is a valid `struct flock` (it may have padding fields
    // on some targets, which is why it is not built field by field).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start = l_len = 0: the whole file, however long; l_pid must be 0 for
    // OFD locks.
    // SAFETY: valid fd and a pointer to an initialised flock.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn lock_shared(full: &Path, file: &File, timeout: Duration) -> Result<(), RrdError> {
    let start = Instant::now();
    // An update holds the lock for well under a millisecond, so start small.
    let mut delay = Duration::from_millis(1);
    loop {
        let err = match ofd_lock(file, libc::F_RDLCK) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => {
                let waited = start.elapsed();
                if waited >= timeout {
                    return Err(RrdError::LockTimeout {
                        path: full.to_path_buf(),
                        waited,
                    });
                }
                std::thread::sleep(delay.min(timeout - waited));
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            Some(libc::EINTR) => {}
            _ => {
                return Err(RrdError::Lock {
                    path: full.to_path_buf(),
                    source: err,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic but well-formed file: `ds` sources, the given row counts.
    fn synth(version: &[u8; 4], ds: u64, rows: &[u64]) -> Vec<u8> {
        let rra = rows.len() as u64;
        let live = if version >= b"0003" { 16 } else { 8 };
        let header = 128 + 120 * ds + 120 * rra + live + 112 * ds + 80 * ds * rra + 8 * rra;
        let total = header + 8 * ds * rows.iter().sum::<u64>();
        let mut b = vec![0u8; total as usize];
        b[..4].copy_from_slice(b"RRD\0");
        b[4..8].copy_from_slice(version);
        b[16..24].copy_from_slice(&FLOAT_COOKIE.to_ne_bytes());
        b[24..32].copy_from_slice(&ds.to_ne_bytes());
        b[32..40].copy_from_slice(&rra.to_ne_bytes());
        for (i, r) in rows.iter().enumerate() {
            let at = (128 + 120 * ds + 120 * i as u64 + 24) as usize;
            b[at..at + 8].copy_from_slice(&r.to_ne_bytes());
        }
        b
    }

    #[test]
    fn synthetic_files_of_every_version_validate() {
        for v in [b"0001", b"0002", b"0003", b"0004", b"0005"] {
            let b = synth(v, 2, &[10, 20]);
            let info = validate_rrd(&b).unwrap();
            assert_eq!(info.ds_count, 2);
            assert_eq!(info.rra_count, 2);
            assert_eq!(info.expected_size, b.len() as u64);
        }
        // Version 1-2 header is 8 bytes shorter: a v3-sized file is wrong.
        let mut b = synth(b"0003", 1, &[5]);
        b[4..8].copy_from_slice(b"0002");
        assert!(matches!(
            validate_rrd(&b),
            Err(RrdInvalid::SizeMismatch { .. })
        ));
    }

    #[test]
    fn rejects_hostile_headers_without_panicking() {
        let good = synth(b"0003", 1, &[5]);
        for (off, val) in [
            (24, u64::MAX),
            (32, u64::MAX),
            (24, 0),
            (32, 0),
            (32, 1 << 40),
        ] {
            let mut b = good.clone();
            b[off..off + 8].copy_from_slice(&val.to_ne_bytes());
            assert!(validate_rrd(&b).is_err(), "offset {off} value {val}");
        }
        let mut b = good.clone();
        let at = 128 + 120 + 24;
        b[at..at + 8].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert!(matches!(
            validate_rrd(&b),
            Err(RrdInvalid::BadCounts { .. })
        ));
        for len in 0..good.len() {
            assert!(validate_rrd(&good[..len]).is_err(), "len {len}");
        }
        let mut b = good.clone();
        b[4..8].copy_from_slice(b"0006");
        assert_eq!(
            validate_rrd(&b),
            Err(RrdInvalid::BadVersion {
                found: "0006".into()
            })
        );
        assert_eq!(validate_rrd(b"not an rrd"), Err(RrdInvalid::BadMagic));
    }

    fn one_entry(root: &Path) -> Entry {
        Walk::new(root).unwrap().next().unwrap().unwrap()
    }

    #[test]
    fn file_vanishing_after_listing_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.rrd"), synth(b"0003", 1, &[4])).unwrap();
        let entry = one_entry(dir.path());
        std::fs::remove_file(dir.path().join("a.rrd")).unwrap();
        let mut buf = Vec::new();
        let got = copy_rrd(Path::new("a.rrd"), &entry, &RrdOptions::default(), &mut buf).unwrap();
        assert!(got.is_none());
    }

    #[test]
    fn lock_is_released_right_after_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.rrd");
        std::fs::write(&path, synth(b"0003", 1, &[4])).unwrap();
        let entry = one_entry(dir.path());
        let file = entry.open_file().unwrap();
        let mut buf = Vec::new();
        locked_read(&path, &file, &RrdOptions::default(), &mut buf)
            .unwrap()
            .unwrap();
        assert!(validate_rrd(&buf).is_ok());
        // A writer (another open file description) can lock at once, while
        // our descriptor is still open.
        let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        ofd_lock(&writer, libc::F_WRLCK).unwrap();
        // And while the writer holds it, we cannot read-lock.
        let err = ofd_lock(&file, libc::F_RDLCK).unwrap_err();
        assert!(matches!(
            err.raw_os_error(),
            Some(libc::EAGAIN) | Some(libc::EACCES)
        ));
    }

    #[test]
    fn temp_names() {
        assert!(is_rrd_temp(b"a.rrdPTra7G"));
        assert!(is_rrd_temp(b"metric with space.rrd012345"));
        assert!(!is_rrd_temp(b"a.rrd"));
        assert!(!is_rrd_temp(b"a.rrd.bak"));
        assert!(!is_rrd_temp(b"a.rrdPTra7"));
        assert!(!is_rrd_temp(b"a.rrdPT-a7G"));
    }
}
