//! Source bytes → zstd → (age, on a thread of its own) → sha256 →
//! multipart upload, with bounded memory.
//!
//! The source and the compressor run on one blocking thread; compressed
//! chunks cross to the async side through a bounded channel; the async side
//! hashes them and feeds a `WriteMultipart` that never has more than
//! `concurrency` parts in flight. A slow store therefore slows the source
//! instead of filling memory. Worst case in memory per artifact:
//! [`GATHER`] plus `CHANNEL_CHUNKS * CHUNK` plus `(concurrency + 1) *
//! part_size`, plus zstd:
//! its window and match tables (about 3 MiB at level 3) and, with a
//! worker, about four [`ZSTD_JOB`]s (the job being filled, the one being
//! compressed, and their outputs). A source with `postgres.parallel: N`
//! runs N of these at once.
//!
//! Order of commitment: the upload is finished only after the producer
//! returned success (for `pg_dump`: stdout reached EOF *and* the exit status
//! was zero). Any error aborts the multipart upload so no parts linger.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::crypto::Recipients;
use crate::error::chain;
use crate::options::CompressionSettings;
use crate::progress::Progress;
use crate::repo::manifest::ArtifactKind;
use crate::repo::store::Repo;
use crate::retry::{Class, Transient};

/// Size of one compressed chunk handed across the channel.
const CHUNK: usize = 1024 * 1024;
/// Chunks that may wait in the channel.
const CHANNEL_CHUNKS: usize = 4;
/// Input a zstd worker compresses as one job, for a database dump (see
/// [`job_size`]).
pub const ZSTD_JOB: u32 = 1024 * 1024;
/// The same for a tar of a tree (see [`job_size`]).
pub const ZSTD_TREE_JOB: u32 = 2 * 1024 * 1024;

/// How much input a zstd worker compresses as one job, by what is being
/// compressed. zstd's own choice at level 3 (8 MiB) keeps an input and an
/// output buffer per job in flight, about 33 MiB of a dump's peak; 1 MiB
/// jobs cost a dump no ratio (its redundancy is local, and the overlap
/// keeps the window's matches). A tree's redundancy is across files (RRD
/// files of one kind share their layout and their unset areas), which a
/// job only finds within itself and its overlap: with 1 MiB jobs a 50,000
/// file RRD tree took three times the CPU and stored twice the bytes of
/// 2 MiB jobs (4 MiB jobs saved no more CPU and cost 4 MiB more memory).
/// Memory stays flat either way: a fixed number of jobs is in flight,
/// whatever the input's size.
pub fn job_size(kind: ArtifactKind) -> u32 {
    match kind {
        ArtifactKind::PgDump | ArtifactKind::PgGlobals => ZSTD_JOB,
        ArtifactKind::RrdTar | ArtifactKind::FilesTar => ZSTD_TREE_JOB,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Source(E),
    #[error("upload of {key} failed")]
    Upload {
        key: String,
        source: object_store::Error,
    },
    #[error("compressing {key} failed")]
    Compress { key: String, source: io::Error },
    #[error("source thread for {key} stopped unexpectedly")]
    Panicked { key: String },
}

impl<E: std::error::Error + Transient + 'static> Transient for PipelineError<E> {
    fn class(&self) -> Class {
        match self {
            PipelineError::Source(e) => e.class(),
            PipelineError::Upload { source, .. } => source.class(),
            PipelineError::Compress { source, .. } => source.class(),
            PipelineError::Panicked { .. } => Class::Permanent,
        }
    }
}

/// Writer given to producers: counts raw bytes, compresses, and ships
/// compressed chunks to the uploader.
pub struct SourceWriter {
    inner: zstd::stream::write::Encoder<'static, ChunkSender>,
    /// Small writes gathered before they reach zstd (see [`GATHER`]).
    pending: Vec<u8>,
    raw: u64,
    progress: Arc<Progress>,
}

/// Writes shorter than this are gathered before they reach the encoder.
/// A tar writes a 512-byte header per file and pads each file to 512
/// bytes; with a zstd worker every call into the encoder takes and releases
/// its job mutexes, which cost a sixth of an RRD tree's backup CPU when
/// each header and padding went in alone.
const GATHER: usize = 256 * 1024;

impl SourceWriter {
    fn drain(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.inner.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }
}

impl Write for SourceWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.len() + buf.len() > GATHER {
            self.drain()?;
        }
        let n = if buf.len() >= GATHER {
            self.inner.write(buf)?
        } else {
            self.pending.extend_from_slice(buf);
            buf.len()
        };
        self.raw += n as u64;
        self.progress.add_raw_bytes(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.inner.flush()
    }
}

struct ChunkSender {
    buf: BytesMut,
    tx: mpsc::Sender<Bytes>,
}

impl ChunkSender {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "upload stopped"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `produce` on a blocking thread, writing into a compressing writer,
/// and uploads the result to `key`. Returns the producer's value and the
/// artifact's sizes and checksum.
pub async fn upload<T, E, F>(
    repo: &Repo,
    key: &ObjPath,
    compression: CompressionSettings,
    job: u32,
    encryption: Option<Arc<Recipients>>,
    progress: Arc<Progress>,
    produce: F,
) -> Result<(T, Uploaded), PipelineError<E>>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
    F: FnOnce(&mut SourceWriter) -> Result<T, E> + Send + 'static,
{
    let key_s = key.to_string();
    let (tx, plain_rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    // Encryption runs on a thread of its own between compression and
    // upload, so it overlaps with zstd instead of adding to its time.
    let (mut rx, sealer) = match encryption {
        None => (plain_rx, None),
        Some(r) => {
            let (sealed_tx, sealed_rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
            let h = tokio::task::spawn_blocking(move || seal(&r, plain_rx, sealed_tx));
            (sealed_rx, Some(h))
        }
    };

    let producer_progress = progress.clone();
    let producer = tokio::task::spawn_blocking(move || {
        compress(tx, compression, job, producer_progress, produce)
    });

    let upload = repo
        .store
        .put_multipart(key)
        .await
        .map_err(|source| PipelineError::Upload {
            key: key_s.clone(),
            source,
        });
    let mut writer = match upload {
        Ok(u) => WriteMultipart::new_with_chunk_size(u, repo.part_size),
        Err(e) => {
            // Dropping the receiver makes the producer fail fast.
            drop(rx);
            let _ = producer.await;
            if let Some(h) = sealer {
                let _ = h.await;
            }
            return Err(e);
        }
    };

    let (hasher, stored, upload_err) =
        stream_parts(&mut rx, &mut writer, repo.concurrency, &progress).await;
    drop(rx);

    let produced = producer.await;
    // The sealer ends when the producer's channel closes, whatever the
    // reason; only a failure of its own matters here.
    let sealed = match sealer {
        None => Ok(()),
        Some(h) => h
            .await
            .unwrap_or_else(|_| Err(io::Error::other("encryption thread stopped"))),
    };
    let produced = match (produced, sealed) {
        (Ok(Ok(_)), Err(e)) => Ok(Err(ProducerError::Compress(e))),
        (p, _) => p,
    };
    let failure = match (upload_err, produced) {
        (Some(source), _) => PipelineError::Upload {
            key: key_s.clone(),
            source,
        },
        (None, Ok(Ok((value, raw)))) => {
            return match writer.finish().await {
                Ok(_) => Ok((
                    value,
                    Uploaded {
                        raw_bytes: raw,
                        stored_bytes: stored,
                        sha256: hex::encode(hasher.finalize()),
                    },
                )),
                Err(source) => Err(PipelineError::Upload { key: key_s, source }),
            };
        }
        (None, Ok(Err(ProducerError::Source(e)))) => PipelineError::Source(e),
        (None, Ok(Err(ProducerError::Compress(source)))) => PipelineError::Compress {
            key: key_s.clone(),
            source,
        },
        (None, Err(_)) => PipelineError::Panicked { key: key_s.clone() },
    };
    if let Err(e) = writer.abort().await {
        tracing::warn!(key = %key_s, error = %chain(&e), "could not abort multipart upload; a sweep will remove its parts");
    }
    Err(failure)
}

/// The producer's side, on its blocking thread: `produce` writes into a
/// zstd encoder whose output goes to `tx` in chunks. Returns the
/// producer's value and the bytes it wrote before compression.
fn compress<T, E, F>(
    tx: mpsc::Sender<Bytes>,
    compression: CompressionSettings,
    job: u32,
    producer_progress: Arc<Progress>,
    produce: F,
) -> Result<(T, u64), ProducerError<E>>
where
    F: FnOnce(&mut SourceWriter) -> Result<T, E>,
{
    let sink = ChunkSender {
        buf: BytesMut::with_capacity(CHUNK),
        tx,
    };
    let mut enc = zstd::stream::write::Encoder::new(sink, compression.level)
        .map_err(ProducerError::Compress)?;
    if compression.workers > 0 {
        enc.multithread(compression.workers)
            .map_err(ProducerError::Compress)?;
        enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(job))
            .map_err(ProducerError::Compress)?;
    }
    // A frame checksum lets `zstd -d` alone detect corruption too.
    enc.include_checksum(true)
        .map_err(ProducerError::Compress)?;
    let mut w = SourceWriter {
        inner: enc,
        pending: Vec::with_capacity(GATHER),
        raw: 0,
        progress: producer_progress,
    };
    let value = produce(&mut w).map_err(ProducerError::Source)?;
    w.drain().map_err(ProducerError::Compress)?;
    let raw = w.raw;
    let mut sink = w.inner.finish().map_err(ProducerError::Compress)?;
    sink.send_buf().map_err(ProducerError::Compress)?;
    Ok((value, raw))
}

/// Feeds the chunks from `rx` to the multipart upload, hashing and
/// counting them; stops at the first upload error, which it returns.
async fn stream_parts(
    rx: &mut mpsc::Receiver<Bytes>,
    writer: &mut WriteMultipart,
    concurrency: usize,
    progress: &Progress,
) -> (Sha256, u64, Option<object_store::Error>) {
    let mut hasher = Sha256::new();
    let mut stored = 0u64;
    let mut upload_err = None;
    while let Some(chunk) = rx.recv().await {
        hasher.update(&chunk);
        stored += chunk.len() as u64;
        progress.add_stored_bytes(chunk.len() as u64);
        if let Err(e) = writer.wait_for_capacity(concurrency).await {
            upload_err = Some(e);
            break;
        }
        writer.put(chunk);
    }
    (hasher, stored, upload_err)
}

/// Encrypts the compressed stream from `rx` to the recipients and passes
/// it on in chunks of [`CHUNK`].
fn seal(r: &Recipients, mut rx: mpsc::Receiver<Bytes>, tx: mpsc::Sender<Bytes>) -> io::Result<()> {
    let sink = ChunkSender {
        buf: BytesMut::with_capacity(CHUNK),
        tx,
    };
    let mut w = r.encrypt(sink)?;
    while let Some(chunk) = rx.blocking_recv() {
        w.write_all(&chunk)?;
    }
    let mut sink = w.finish()?;
    sink.send_buf()
}

enum ProducerError<E> {
    Source(E),
    Compress(io::Error),
}
