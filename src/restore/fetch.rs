//! Reading artifacts back: stream an object, hash it as it arrives, and
//! compare size and sha256 with the manifest before anyone trusts it.

use std::io::Write;
use std::path::Path;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::progress::{Phase, Progress};

pub mod plain;
use crate::repo::manifest::Artifact;
use crate::repo::store::{artifact_path, Repo};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot read {key} from the store")]
    Read {
        key: String,
        source: object_store::Error,
    },
    #[error("artifact {key} is corrupt: {what} (expected {expected}, found {found})")]
    Corrupt {
        key: String,
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error("cannot write staging file {path}")]
    Stage {
        path: String,
        source: std::io::Error,
    },
    #[error("reading {key} was interrupted")]
    Cancelled { key: String },
    #[error("not enough space in {dir} to stage {key}: need {need} bytes, {free} free")]
    NoSpace {
        dir: String,
        key: String,
        need: u64,
        free: u64,
    },
}

/// Streams the artifact through `sink` while checking it; returns an error if
/// the size or checksum differ from the manifest. The sink sees every byte
/// before the verdict, so callers must not *apply* what they wrote until
/// this returns `Ok` (stage to a file, or only hash). The sink never sees
/// more than `stored_bytes`: the size the store reports is checked before
/// the first byte, and reading stops the moment more arrive.
pub async fn stream_verified(
    repo: &Repo,
    job: &str,
    id: &str,
    art: &Artifact,
    cancel: &CancellationToken,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), FetchError> {
    let key = artifact_path(job, id, &art.key);
    let key_s = key.to_string();
    let read_err = |source| FetchError::Read {
        key: key_s.clone(),
        source,
    };
    let got = repo.store.get(&key).await.map_err(read_err)?;
    let mut check = Check::new(art, &key_s);
    check.size_is(got.meta.size)?;
    let mut stream = got.into_stream();
    loop {
        let chunk = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(FetchError::Cancelled { key: key_s.clone() }),
            c = stream.try_next() => c.map_err(read_err)?,
        };
        let Some(chunk) = chunk else { break };
        check.take(&chunk)?;
        sink(&chunk).map_err(|source| FetchError::Stage {
            path: key_s.clone(),
            source,
        })?;
    }
    check.finish()
}

fn size_differs(art: &Artifact, key: &str, found: String) -> FetchError {
    FetchError::Corrupt {
        key: key.to_owned(),
        what: "size differs",
        expected: art.stored_bytes.to_string(),
        found,
    }
}

/// More bytes arrived than the manifest records; reading stopped there.
fn too_long(art: &Artifact, key: &str) -> FetchError {
    size_differs(art, key, format!("more than {}", art.stored_bytes))
}

/// Compares what was read with what the manifest recorded.
fn compare(art: &Artifact, key: &str, size: u64, hasher: Sha256) -> Result<(), FetchError> {
    if size != art.stored_bytes {
        return Err(size_differs(art, key, size.to_string()));
    }
    let sum = hex::encode(hasher.finalize());
    if sum != art.sha256 {
        return Err(FetchError::Corrupt {
            key: key.to_owned(),
            what: "sha256 differs",
            expected: art.sha256.clone(),
            found: sum,
        });
    }
    Ok(())
}

/// How a blocking read of a local artifact ended early.
enum LocalStop {
    Io(std::io::Error),
    TooLong,
    Cancelled,
}

impl From<std::io::Error> for LocalStop {
    fn from(e: std::io::Error) -> Self {
        LocalStop::Io(e)
    }
}

/// Hashes a local store file with large reads on a blocking thread (the
/// object store's generic reader goes through small chunks, several times
/// slower), copying it into `copy_to` on the way when given. The file is
/// opened once, without following symlinks: what is hashed is what is
/// copied, so a store file swapped after the check cannot be applied. Its
/// size is checked before the first read and never more than
/// `stored_bytes` are read; `cancel` stops the loop at the next chunk
/// (the blocking thread would otherwise outlive the command).
async fn hash_local_file(
    file: std::fs::File,
    key: String,
    art: &Artifact,
    copy_to: Option<&Path>,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
) -> Result<(), FetchError> {
    let on_disk = file.metadata().map_err(|source| FetchError::Stage {
        path: key.clone(),
        source,
    })?;
    if on_disk.len() != art.stored_bytes {
        return Err(size_differs(art, &key, on_disk.len().to_string()));
    }
    let k = key.clone();
    let progress = progress.clone();
    let copy_to = copy_to.map(Path::to_owned);
    let cleanup = copy_to.clone();
    let limit = art.stored_bytes;
    let stop = cancel.clone();
    let read = tokio::task::spawn_blocking(move || -> Result<(u64, Sha256), LocalStop> {
        use std::io::Read;
        let mut f = file;
        let mut out = match &copy_to {
            Some(p) => Some(std::io::BufWriter::with_capacity(
                1024 * 1024,
                std::fs::File::create(p)?,
            )),
            None => None,
        };
        let mut buf = vec![0u8; 1024 * 1024];
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            if stop.is_cancelled() {
                return Err(LocalStop::Cancelled);
            }
            let n = f.read(&mut buf)?;
            if n == 0 {
                if let Some(w) = &mut out {
                    w.flush()?;
                }
                return Ok((size, hasher));
            }
            size += n as u64;
            if size > limit {
                return Err(LocalStop::TooLong);
            }
            hasher.update(&buf[..n]);
            progress.add_done(n as u64);
            if let Some(w) = &mut out {
                w.write_all(&buf[..n])?;
            }
        }
    })
    .await
    .map_err(|e| FetchError::Stage {
        path: k.clone(),
        source: std::io::Error::other(e.to_string()),
    })?
    .map_err(|stop| match stop {
        LocalStop::Io(source) => FetchError::Stage {
            path: k.clone(),
            source,
        },
        LocalStop::TooLong => too_long(art, &k),
        LocalStop::Cancelled => FetchError::Cancelled { key: k.clone() },
    });
    let checked = read.and_then(|(size, hasher)| compare(art, &key, size, hasher));
    if checked.is_err() {
        if let Some(p) = cleanup {
            let _ = std::fs::remove_file(p);
        }
    }
    checked
}

/// Refuses to stage `art` at `dest` when its file system lacks the room,
/// with a margin so staging never fills the disk completely.
fn check_space(dest: &Path, art: &Artifact) -> Result<(), FetchError> {
    check_room(dest, &art.key, art.stored_bytes)
}

/// Refuses to write `bytes` of `key` at `dest` when its file system lacks
/// the room, keeping a margin free.
pub(crate) fn check_room(dest: &Path, key: &str, bytes: u64) -> Result<(), FetchError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let free = free_space(dir).map_err(|source| FetchError::Stage {
        path: dest.display().to_string(),
        source,
    })?;
    let need = bytes.saturating_add(64 * 1024 * 1024);
    if free < need {
        return Err(FetchError::NoSpace {
            dir: dir.display().to_string(),
            key: key.to_owned(),
            need,
            free,
        });
    }
    Ok(())
}

/// Free bytes for unprivileged use on the file system holding `dir`.
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Downloads the artifact into `dest` (a new file), verified. On any error
/// the partial file is removed.
pub async fn stage(
    repo: &Repo,
    job: &str,
    id: &str,
    art: &Artifact,
    dest: &Path,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<(), FetchError> {
    let stage_err = |source| FetchError::Stage {
        path: dest.display().to_string(),
        source,
    };
    check_space(dest, art)?;
    let file = std::fs::File::create(dest).map_err(stage_err)?;
    let mut w = std::io::BufWriter::with_capacity(1024 * 1024, file);
    let result = stream_verified(repo, job, id, art, cancel, |b| {
        progress.add_stored_bytes(b.len() as u64);
        progress.add_done(b.len() as u64);
        w.write_all(b)
    })
    .await;
    let result = result.and_then(|()| w.flush().map_err(stage_err));
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// Checks an artifact's size and sha256 without keeping it (bounded memory).
pub async fn verify(
    repo: &Repo,
    job: &str,
    id: &str,
    art: &Artifact,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
) -> Result<(), FetchError> {
    if let Some(f) = local_file(repo, job, id, art).await? {
        let key = artifact_path(job, id, &art.key).to_string();
        return hash_local_file(f, key, art, None, progress, cancel).await;
    }
    stream_verified(repo, job, id, art, cancel, |b| {
        progress.add_stored_bytes(b.len() as u64);
        progress.add_done(b.len() as u64);
        Ok(())
    })
    .await
}

/// The artifact's file in a `file://` store, opened without following
/// symlinks; `None` when the store is not local or the file is missing
/// (then the generic path reports it). A symlink, FIFO or other special
/// file is an error: ccbackup never writes one.
async fn local_file(
    repo: &Repo,
    job: &str,
    id: &str,
    art: &Artifact,
) -> Result<Option<std::fs::File>, FetchError> {
    let Some(root) = repo.local_root.clone() else {
        return Ok(None);
    };
    let mut rel: Vec<String> = vec![job.to_owned(), id.to_owned()];
    rel.extend(art.key.split('/').map(str::to_owned));
    // Opening walks the store's directories: blocking calls, kept off the
    // executor like every other `file://` store call.
    let opened = tokio::task::spawn_blocking(move || {
        let rel: Vec<&str> = rel.iter().map(String::as_str).collect();
        crate::repo::local::open_regular(&root, &rel)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    match opened {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FetchError::Stage {
            path: artifact_path(job, id, &art.key).to_string(),
            source,
        }),
    }
}

/// Streams the artifact's stored bytes into `tx`, in order and in bounded
/// pieces, checking size and sha256 like [`stream_verified`] (a `file://`
/// artifact is opened without following symlinks, as for a restore). The
/// receiver sees every byte before the verdict, so whatever it makes of
/// them is trusted only once this returns `Ok`. A receiver that stops
/// early does not stop the check: the rest is read and hashed, so the
/// verdict is still given (a corrupt artifact often shows first as a
/// decoding error, and the checksum is the better explanation).
pub async fn stream_checked(
    repo: &Repo,
    job: &str,
    id: &str,
    art: &Artifact,
    cancel: &CancellationToken,
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
) -> Result<(), FetchError> {
    let key = artifact_path(job, id, &art.key);
    let key_s = key.to_string();
    let mut check = Check::new(art, &key_s);
    if let Some(file) = local_file(repo, job, id, art).await? {
        let io_err = |source| FetchError::Stage {
            path: key_s.clone(),
            source,
        };
        check.size_is(file.metadata().map_err(io_err)?.len())?;
        let mut file = tokio::fs::File::from_std(file);
        loop {
            let mut buf = bytes::BytesMut::zeroed(256 * 1024);
            let n = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(FetchError::Cancelled { key: key_s }),
                n = tokio::io::AsyncReadExt::read(&mut file, &mut buf) => n.map_err(io_err)?,
            };
            if n == 0 {
                break;
            }
            buf.truncate(n);
            check.take(&buf)?;
            // A receiver that has gone leaves only the check to do.
            let _ = tx.send(buf.freeze()).await;
        }
        return check.finish();
    }
    let read_err = |source| FetchError::Read {
        key: key_s.clone(),
        source,
    };
    let got = repo.store.get(&key).await.map_err(read_err)?;
    check.size_is(got.meta.size)?;
    let mut stream = got.into_stream();
    loop {
        let chunk = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(FetchError::Cancelled { key: key_s }),
            c = stream.try_next() => c.map_err(read_err)?,
        };
        let Some(chunk) = chunk else { break };
        check.take(&chunk)?;
        let _ = tx.send(chunk).await;
    }
    check.finish()
}

/// Size and sha256 of stored bytes as they pass, against the manifest.
struct Check<'a> {
    art: &'a Artifact,
    key: &'a str,
    hasher: Sha256,
    size: u64,
}

impl<'a> Check<'a> {
    fn new(art: &'a Artifact, key: &'a str) -> Self {
        Check {
            art,
            key,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The size the store reports, before the first byte is read.
    fn size_is(&self, reported: u64) -> Result<(), FetchError> {
        if reported != self.art.stored_bytes {
            return Err(size_differs(self.art, self.key, reported.to_string()));
        }
        Ok(())
    }

    /// Counts and hashes a chunk; refuses one that goes past the size.
    fn take(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        self.size += chunk.len() as u64;
        if self.size > self.art.stored_bytes {
            return Err(too_long(self.art, self.key));
        }
        self.hasher.update(chunk);
        Ok(())
    }

    fn finish(self) -> Result<(), FetchError> {
        compare(self.art, self.key, self.size, self.hasher)
    }
}

/// A verified private copy of the artifact to apply from, at
/// `stage_path`: a `file://` object is copied while it is hashed (never
/// applied from the store path, which someone else may swap after the
/// check), anything else is downloaded.
pub async fn verified_local(
    repo: &Repo,
    job: &str,
    id: &str,
    art: &Artifact,
    stage_path: &Path,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
) -> Result<std::path::PathBuf, FetchError> {
    if let Some(f) = local_file(repo, job, id, art).await? {
        progress.start_phase(Phase::Checking, art.stored_bytes);
        check_space(stage_path, art)?;
        let key = artifact_path(job, id, &art.key).to_string();
        hash_local_file(f, key, art, Some(stage_path), progress, cancel).await?;
        return Ok(stage_path.to_owned());
    }
    progress.start_phase(Phase::Downloading, art.stored_bytes);
    stage(repo, job, id, art, stage_path, progress, cancel).await?;
    Ok(stage_path.to_owned())
}
