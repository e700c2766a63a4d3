//! Staging an artifact decoded: the download (with its size and sha256
//! check) hands chunks to a blocking thread that decrypts and decompresses
//! them straight into the staging file as they arrive. `pg_restore --jobs`
//! needs a seekable, uncompressed archive; writing it while the bytes come
//! in, instead of downloading first and decompressing after, lets it start
//! the moment the download ends.
//!
//! Nothing is trusted before the verdict: the file is handed on only when
//! the checksum matched *and* the decoder ended cleanly at exactly the raw
//! size the manifest records. On any error the file is removed.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{check_room, stream_checked, FetchError};
use crate::crypto::{CryptoError, Identities};
use crate::progress::{Phase, Progress};
use crate::repo::manifest::Artifact;
use crate::repo::store::Repo;

/// Chunks in flight between the download and the decoder.
const CHUNKS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum PlainError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("cannot decode {key} into {path}")]
    Write {
        key: String,
        path: String,
        source: io::Error,
    },
    #[error("{key} decodes to {found} bytes where its manifest records {expected}")]
    RawSize {
        key: String,
        expected: u64,
        found: u64,
    },
    #[error("decoding {key} stopped unexpectedly")]
    Join { key: String },
}

/// Downloads `art`, checks it, and writes its decoded bytes to `dest` (a
/// new file) in the same pass.
#[allow(clippy::too_many_arguments)]
pub async fn stage_plain(
    repo: &Repo,
    job: &str,
    id: &str,
    art: &Artifact,
    dest: &Path,
    ids: Option<Arc<Identities>>,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
) -> Result<(), PlainError> {
    check_room(dest, &art.key, art.raw_bytes)?;
    progress.start_phase(Phase::Downloading, art.stored_bytes);
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS);
    let file = std::fs::File::create_new(dest).map_err(|source| write_err(art, dest, source))?;
    let (blocking_art, counter, path) = (art.clone(), progress.clone(), dest.to_owned());
    let decode = tokio::task::spawn_blocking(move || -> Result<u64, PlainError> {
        let raw = Counted {
            inner: ChannelReader::new(rx),
            progress: counter,
        };
        // The decoder itself refuses to go past the raw size the manifest
        // records (a decompression bomb ends there).
        let mut decoded = crate::crypto::open_stream(raw, &blocking_art, ids.as_deref())?;
        let mut w = io::BufWriter::with_capacity(1024 * 1024, file);
        let n = io::copy(&mut decoded, &mut w).and_then(|n| w.flush().map(|()| n));
        n.map_err(|source| write_err(&blocking_art, &path, source))
    });
    let fetched = stream_checked(repo, job, id, art, cancel, tx).await;
    let decoded = decode.await;
    let verdict = verdict(art, fetched, decoded);
    if verdict.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    verdict
}

/// The checksum's verdict wins: a corrupt artifact usually fails to decode
/// too, and "corrupt" is the useful explanation.
fn verdict(
    art: &Artifact,
    fetched: Result<(), FetchError>,
    decoded: Result<Result<u64, PlainError>, tokio::task::JoinError>,
) -> Result<(), PlainError> {
    fetched?;
    let decoded = decoded.map_err(|_| PlainError::Join {
        key: art.key.clone(),
    })?;
    match decoded? {
        n if n != art.raw_bytes => Err(PlainError::RawSize {
            key: art.key.clone(),
            expected: art.raw_bytes,
            found: n,
        }),
        _ => Ok(()),
    }
}

fn write_err(art: &Artifact, dest: &Path, source: io::Error) -> PlainError {
    PlainError::Write {
        key: art.key.clone(),
        path: dest.display().to_string(),
        source,
    }
}

/// Counts the stored bytes the decoder consumes, for the progress line.
struct Counted<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_stored_bytes(n as u64);
        self.progress.add_done(n as u64);
        Ok(n)
    }
}

/// The stored bytes arriving over a channel, as a `Read` for a blocking
/// thread. The end of the channel reads as the end of the stream: whether
/// the download ended well is the download's verdict to give.
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Bytes>) -> ChannelReader {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
