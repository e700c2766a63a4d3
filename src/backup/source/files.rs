//! Plain directory archive source: a tar of everything under a root.
//!
//! Kept: regular files (contents, permission bits, mtime in whole seconds,
//! numeric uid/gid), directories (including empty ones), symlinks as symlinks
//! (never followed). Skipped with a warning: sockets, fifos and devices, which
//! cannot be meaningfully restored from bytes. Hard links are archived as
//! independent copies. Tar paths are relative to the root and byte-exact;
//! long names and link targets use the GNU long-name extension.
//!
//! A file that changes size while it is read is still archived with the size
//! seen by `fstat` (tar needs the size up front): a shrunken file is padded
//! with zeros and a grown one cut, both with a warning, so the archive stream
//! itself never becomes corrupt. Use a snapshot of the volume when that
//! matters.
//!
//! This module also holds the tar plumbing the RRD source shares.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use super::{Sink, SourceError};
use crate::config::FilesConfig;
use crate::progress::Progress;
use crate::repo::manifest::{Artifact, ArtifactDetail, ArtifactKind, TreeInfo};
use crate::retry::{Class, Transient};
use crate::sys::walk::{self, Entry, Kind, Stat, WalkError};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FilesStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// Entries that disappeared between listing and reading.
    pub vanished: u64,
    /// Sockets, fifos and devices.
    pub skipped_special: u64,
    /// Files whose size changed while they were read (archived padded/cut).
    pub changed_while_reading: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error(transparent)]
    Missing(#[from] super::RootMissing),
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Archive(#[from] ArchiveWriteError),
}

/// Writing a tree source's tar stream (files and RRD trees alike) into the
/// upload pipeline.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveWriteError {
    #[error("cannot write the archive (at {})", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot finish the archive")]
    Finish(#[source] io::Error),
}

impl ArchiveWriteError {
    /// The error of writing the entry at `path`.
    pub(crate) fn at(path: &Path) -> impl Fn(io::Error) -> ArchiveWriteError + '_ {
        move |source| ArchiveWriteError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl Transient for ArchiveWriteError {
    /// Writes go to the upload pipeline, whose trouble may pass.
    fn class(&self) -> Class {
        match self {
            ArchiveWriteError::Write { source, .. } | ArchiveWriteError::Finish(source) => {
                source.class()
            }
        }
    }
}

impl Transient for FilesError {
    /// Writes go to the upload pipeline, whose trouble may pass; a local
    /// file that cannot be read or is invalid stays so.
    fn class(&self) -> Class {
        match self {
            FilesError::Archive(a) => a.class(),
            _ => Class::Permanent,
        }
    }
}

/// Writes a tar of everything under `root` into `out` and returns `out` once
/// the archive is complete. On error, nothing more is written to `out` (in
/// particular no end-of-archive marker), so a partial stream never looks like
/// a finished archive.
pub fn archive_dir<W: Write>(
    root: &Path,
    out: W,
    progress: &Progress,
) -> Result<(FilesStats, W), FilesError> {
    with_builder(
        out,
        |b| archive_into(root, b, progress),
        |e| ArchiveWriteError::Finish(e).into(),
    )
}

fn archive_into<W: Write>(
    root: &Path,
    builder: &mut Builder<TarSink<W>>,
    progress: &Progress,
) -> Result<FilesStats, FilesError> {
    let mut stats = FilesStats::default();
    let mut walk = super::walk_root(root).map_err(|e| match e {
        super::RootError::Missing(m) => FilesError::Missing(m),
        super::RootError::Walk(w) => FilesError::Walk(w),
    })?;
    for entry in walk.by_ref() {
        let entry = entry?;
        let rel = entry.path();
        let write_err = ArchiveWriteError::at(rel);
        match entry.stat().kind {
            Kind::Dir => {
                append_dir(builder, &entry).map_err(write_err)?;
                stats.dirs += 1;
            }
            Kind::Symlink => {
                let target = match entry.read_link() {
                    Ok(t) => t,
                    Err(e) if walk::is_vanished(&e) || is_not_a_link(&e) => {
                        stats.vanished += 1;
                        continue;
                    }
                    Err(source) => {
                        return Err(FilesError::Read {
                            path: root.join(rel),
                            source,
                        })
                    }
                };
                let mut h = header(EntryType::Symlink, entry.stat(), 0);
                builder
                    .append_link(&mut h, rel, &target)
                    .map_err(write_err)?;
                stats.symlinks += 1;
            }
            Kind::File => {
                if let Some(n) = append_file(root, builder, &entry, &mut stats)? {
                    stats.files += 1;
                    stats.bytes += n;
                    progress.add_files(1);
                }
            }
            Kind::Other => {
                tracing::warn!(path = %root.join(rel).display(), "skipping socket, fifo or device");
                stats.skipped_special += 1;
            }
        }
    }
    stats.vanished += walk.vanished();
    Ok(stats)
}

fn is_not_a_link(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// Returns the number of content bytes archived, or None if the file went away.
fn append_file<W: Write>(
    root: &Path,
    builder: &mut Builder<TarSink<W>>,
    entry: &Entry,
    stats: &mut FilesStats,
) -> Result<Option<u64>, FilesError> {
    let rel = entry.path();
    let file = match entry.open_file() {
        Ok(f) => f,
        Err(e) if walk::is_vanished(&e) => {
            tracing::debug!(path = %root.join(rel).display(), "file vanished before open");
            stats.vanished += 1;
            return Ok(None);
        }
        Err(source) => {
            return Err(FilesError::Read {
                path: root.join(rel),
                source,
            })
        }
    };
    let st = Stat::of(&file).map_err(|source| FilesError::Read {
        path: root.join(rel),
        source,
    })?;
    if st.kind != Kind::File {
        // Replaced by something else between lstat and open.
        stats.vanished += 1;
        return Ok(None);
    }
    let mut h = header(EntryType::Regular, &st, st.size);
    let mut reader = ExactReader::new(file, st.size);
    let res = builder.append_data(&mut h, rel, &mut reader);
    if let Some(source) = reader.read_error.take() {
        return Err(FilesError::Read {
            path: root.join(rel),
            source,
        });
    }
    res.map_err(ArchiveWriteError::at(rel))?;
    if reader.padded > 0 || reader.grew() {
        tracing::warn!(
            path = %root.join(rel).display(),
            "file changed size while being archived; stored with its size at open"
        );
        stats.changed_while_reading += 1;
    }
    Ok(Some(st.size))
}

/// Yields exactly `len` bytes: the file's bytes, then zeros if the file
/// ended early. Tar writes the size before the data, so any other length
/// would desynchronise every entry after this one.
struct ExactReader {
    file: std::fs::File,
    remaining: u64,
    padded: u64,
    eof: bool,
    read_error: Option<io::Error>,
}

impl ExactReader {
    fn new(file: std::fs::File, len: u64) -> Self {
        ExactReader {
            file,
            remaining: len,
            padded: 0,
            eof: false,
            read_error: None,
        }
    }

    /// Whether the file has more bytes than were archived.
    fn grew(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.file.read(&mut probe), Ok(1))
    }
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        if !self.eof {
            loop {
                match self.file.read(&mut buf[..want]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => {
                        // Raw bytes are counted once, by the pipeline.
                        self.remaining -= n as u64;
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // Kept so the caller can tell a source failure from
                        // a failure of the archive writer.
                        let msg = e.to_string();
                        self.read_error = Some(e);
                        return Err(io::Error::other(msg));
                    }
                }
            }
        }
        buf[..want].fill(0);
        self.remaining -= want as u64;
        self.padded += want as u64;
        Ok(want)
    }
}

/// A fresh GNU header carrying the metadata we preserve.
pub(crate) fn header(entry_type: EntryType, st: &Stat, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(entry_type);
    h.set_mode(st.mode & 0o7777);
    h.set_uid(u64::from(st.uid));
    h.set_gid(u64::from(st.gid));
    // Tar cannot express times before the epoch in the plain field; such
    // files are vanishingly rare and 0 is the conventional stand-in.
    h.set_mtime(u64::try_from(st.mtime).unwrap_or(0));
    h.set_size(size);
    h
}

pub(crate) fn append_dir<W: Write>(builder: &mut Builder<W>, entry: &Entry) -> io::Result<()> {
    let mut h = header(EntryType::Directory, entry.stat(), 0);
    // The trailing slash is what other tar tools expect of directory names.
    let mut name = entry.path().as_os_str().to_os_string();
    name.push("/");
    builder.append_data(&mut h, Path::new(&name), io::empty())
}

/// Wraps the caller's writer so that, once an archive is abandoned, the tar
/// builder's drop cannot append the end-of-archive marker that would make a
/// truncated stream look complete.
pub(crate) struct TarSink<W> {
    inner: W,
    abandoned: bool,
}

impl<W: Write> Write for TarSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.abandoned {
            return Err(io::Error::other("archive abandoned after an error"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.abandoned {
            return Ok(());
        }
        self.inner.flush()
    }
}

/// Runs `body` with a tar builder over `out`; on success finishes the archive
/// and hands `out` back, on error abandons it.
pub(crate) fn with_builder<W: Write, S, E>(
    out: W,
    body: impl FnOnce(&mut Builder<TarSink<W>>) -> Result<S, E>,
    finish_err: impl Fn(io::Error) -> E,
) -> Result<(S, W), E> {
    let mut builder = Builder::new(TarSink {
        inner: out,
        abandoned: false,
    });
    match body(&mut builder) {
        Ok(stats) => {
            let mut sink = builder.into_inner().map_err(&finish_err)?;
            sink.inner.flush().map_err(finish_err)?;
            Ok((stats, sink.inner))
        }
        Err(e) => {
            builder.get_mut().abandoned = true;
            Err(e)
        }
    }
}

impl super::Source for FilesConfig {
    async fn produce<S: Sink>(&self, sink: &S, name: &str) -> Result<Vec<Artifact>, SourceError> {
        let rel = format!("{name}.tar.zst");
        let root = self.path.clone();
        let progress = sink.progress();
        let (stats, up) = sink
            .put(&rel, ArtifactKind::FilesTar, move |w| {
                archive_dir(&root, w, &progress).map(|(s, _)| s)
            })
            .await
            .map_err(SourceError::Files)?;
        let tree = TreeInfo {
            root: self.path.display().to_string(),
            files: stats.files,
            dirs: stats.dirs,
            symlinks: stats.symlinks,
            invalid: Vec::new(),
            invalid_withheld: 0,
        };
        Ok(vec![sink.artifact(
            rel,
            name,
            ArtifactKind::FilesTar,
            up,
            Some(ArtifactDetail::Tree(tree)),
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn list(tar_bytes: &[u8]) -> Vec<(String, EntryType, u64)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let p = e.path().unwrap().to_string_lossy().into_owned();
                (p, e.header().entry_type(), e.size())
            })
            .collect()
    }

    #[test]
    fn archives_files_dirs_symlinks_and_skips_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir(r.join("empty")).unwrap();
        std::fs::write(r.join("f"), b"hello").unwrap();
        std::fs::set_permissions(r.join("f"), std::fs::Permissions::from_mode(0o640)).unwrap();
        symlink("/etc/passwd", r.join("link")).unwrap();
        let fifo =
            std::ffi::CString::new(r.join("pipe").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let progress = Progress::new();
        let (stats, out) = archive_dir(r, Vec::new(), &progress).unwrap();
        assert_eq!(stats.files, 1);
        assert_eq!(stats.dirs, 1);
        assert_eq!(stats.symlinks, 1);
        assert_eq!(stats.skipped_special, 1);
        assert_eq!(stats.bytes, 5);
        assert_eq!(progress.files(), 1);
        let got = list(&out);
        assert_eq!(
            got,
            vec![
                ("empty/".to_string(), EntryType::Directory, 0),
                ("f".to_string(), EntryType::Regular, 5),
                ("link".to_string(), EntryType::Symlink, 0),
            ]
        );
        let mut a = tar::Archive::new(&out[..]);
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            if e.header().entry_type() == EntryType::Regular {
                assert_eq!(e.header().mode().unwrap(), 0o640);
            }
            if e.header().entry_type() == EntryType::Symlink {
                assert_eq!(e.link_name().unwrap().unwrap(), Path::new("/etc/passwd"));
            }
        }
    }

    #[test]
    fn exact_reader_pads_a_shrunken_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"abc").unwrap();
        let f = std::fs::File::open(dir.path().join("f")).unwrap();
        let mut r = ExactReader::new(f, 6);
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        assert_eq!(v, b"abc\0\0\0");
        assert_eq!(r.padded, 3);
        let f = std::fs::File::open(dir.path().join("f")).unwrap();
        let mut r = ExactReader::new(f, 2);
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        assert_eq!(v, b"ab");
        assert!(r.grew());
    }

    struct FailAfter {
        left: usize,
    }

    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "upload failed"));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writer_failure_aborts_with_write_error() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..20 {
            std::fs::write(dir.path().join(format!("f{i:02}")), vec![7u8; 4096]).unwrap();
        }
        let err = archive_dir(dir.path(), FailAfter { left: 10_000 }, &Progress::new())
            .err()
            .unwrap();
        assert!(
            matches!(err, FilesError::Archive(ArchiveWriteError::Write { .. })),
            "{err:?}"
        );
        assert!(err.to_string().contains("f0"), "{err}");
    }
}
