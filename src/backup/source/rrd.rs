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
//! 4. validate the copy ([`crate::rrd::validate_rrd`]); re-read a few times if it fails;
//! 5. append the bytes to the tar with the metadata from step 3.
//!
//! Memory is one file's buffer plus the walk's per-level listings, whatever
//! the number of files.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tar::{Builder, EntryType};

use super::files::{append_dir, header, with_builder, ArchiveWriteError, TarSink};
use super::{Sink, SourceError};
use crate::config::RrdConfig;
pub use crate::options::{OnInvalid, RrdOptions};
use crate::progress::Progress;
use crate::repo::manifest::{Artifact, ArtifactDetail, ArtifactKind, TreeInfo};
use crate::retry::{Class, Transient};
use crate::rrd::{validate_rrd, RrdInvalid};
use crate::sys::walk::{self, Entry, Kind, Stat, WalkError};

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
    #[error(transparent)]
    Missing(#[from] super::RootMissing),
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
    #[error(transparent)]
    Archive(#[from] ArchiveWriteError),
}

impl Transient for RrdError {
    /// Writes go to the upload pipeline, whose trouble may pass; a local
    /// file that cannot be read or is invalid stays so.
    fn class(&self) -> Class {
        match self {
            RrdError::Archive(a) => a.class(),
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
        |e| ArchiveWriteError::Finish(e).into(),
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
    let mut walk = super::walk_root(root).map_err(|e| match e {
        super::RootError::Missing(m) => RrdError::Missing(m),
        super::RootError::Walk(w) => RrdError::Walk(w),
    })?;
    let mut buf = Vec::new();
    for entry in walk.by_ref() {
        let entry = entry?;
        let rel = entry.path();
        let write_err = ArchiveWriteError::at(rel);
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
/// is process-associated `F_SETLK`); nix has one.
fn ofd_lock(file: &File, l_type: libc::c_int) -> io::Result<()> {
    // Built field by field: on a target whose `struct flock` has more
    // fields this fails to compile instead of leaving them undefined.
    // l_start = l_len = 0: the whole file, however long; l_pid must be 0
    // for OFD locks.
    let fl = libc::flock {
        l_type: l_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_SETLK(&fl))
        .map(|_| ())
        .map_err(io::Error::from)
}

/// Takes and releases the read lock a backup takes on `path`: what
/// `doctor` uses to show the file system supports it.
pub fn probe_lock(path: &Path, timeout: Duration) -> Result<(), RrdError> {
    let file = File::open(path).map_err(|source| RrdError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    lock_shared(path, &file, timeout)?;
    ofd_lock(&file, libc::F_UNLCK).map_err(|source| RrdError::Lock {
        path: path.to_path_buf(),
        source,
    })
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

impl super::Source for RrdConfig {
    async fn produce<S: Sink>(&self, sink: &S, name: &str) -> Result<Vec<Artifact>, SourceError> {
        let rel = format!("{name}.rrd.tar.zst");
        let root = self.path.clone();
        let opts = self.options.clone();
        let progress = sink.progress();
        let (stats, up) = sink
            .put(&rel, ArtifactKind::RrdTar, move |w| {
                archive_rrd_tree(&root, w, &opts, &progress).map(|(s, _)| s)
            })
            .await
            .map_err(SourceError::Rrd)?;
        let invalid: Vec<String> = stats
            .invalid
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let withhold = sink.withholds_names();
        if withhold && !invalid.is_empty() {
            // The names still reach the log, which stays on this host.
            // The list travels as JSON so the JSON log keeps it a list.
            let report = serde_json::json!({ "source": name, "files": invalid });
            tracing::warn!(report = %report, "invalid rrd files stored; names withheld from the encrypted backup's manifest");
        }
        let tree = TreeInfo {
            root: self.path.display().to_string(),
            files: stats.files,
            dirs: stats.dirs,
            symlinks: 0,
            invalid_withheld: if withhold { invalid.len() as u64 } else { 0 },
            invalid: if withhold { Vec::new() } else { invalid },
        };
        Ok(vec![sink.artifact(
            rel,
            name,
            ArtifactKind::RrdTar,
            up,
            Some(ArtifactDetail::Tree(tree)),
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rrd::tests::synth;

    fn one_entry(root: &Path) -> Entry {
        walk::Walk::new(root).unwrap().next().unwrap().unwrap()
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
