//! What a create-only put that failed actually did.
//!
//! A put that timed out, or whose connection dropped after the body was
//! sent, may still be applied by the store, seconds later. For the
//! manifest that matters: cleaning up the artifacts of a backup whose
//! manifest then lands leaves a "complete" backup with nothing behind it.
//! So a failed manifest put is sorted into "the store refused it" (safe to
//! clean up) and "outcome unknown", and an unknown outcome is resolved by
//! reading the key back a few times. Only a read-back that finds exactly
//! the bytes we sent counts as written; an absent key does not prove the
//! put will never land, so it stays unknown.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::ObjectStoreExt;

use crate::repo::store::Repo;

/// What a failed put says about whether the object may exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutFate {
    /// The store answered with a refusal, or the request never left: the
    /// object was not written by this put.
    NotWritten,
    /// The request may have reached the store: it may be applied (now or
    /// later).
    Unknown,
}

/// Sorts a put's error by whether the request can have reached the store.
/// Typed refusals and connection failures are definite; a timeout, a
/// dropped connection or a server error after sending is not. Local
/// (`file://`) stores fail synchronously, so their errors are definite.
pub fn fate_of(e: &object_store::Error) -> PutFate {
    use object_store::client::{HttpError, HttpErrorKind};
    use object_store::Error as E;
    match e {
        e if crate::retry::is_refusal(e) => PutFate::NotWritten,
        E::Generic { source, .. } => {
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
            while let Some(err) = cur {
                if let Some(h) = err.downcast_ref::<HttpError>() {
                    return match h.kind() {
                        HttpErrorKind::Connect => PutFate::NotWritten,
                        _ => PutFate::Unknown,
                    };
                }
                if err.downcast_ref::<std::io::Error>().is_some() {
                    // Local file I/O: the write failed where we made it.
                    return PutFate::NotWritten;
                }
                if let Some(inner) = err.downcast_ref::<object_store::Error>() {
                    return fate_of(inner);
                }
                cur = err.source();
            }
            // A status the store answered with but object_store has no
            // variant for (5xx after its retries): S3 may still apply it.
            PutFate::Unknown
        }
        _ => PutFate::NotWritten,
    }
}

/// What reading the key back found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The key holds exactly what was sent: the put was applied.
    Written,
    /// The key holds something else: another writer owns it.
    Other,
    /// Nothing conclusive within the read-backs.
    StillUnknown,
}

/// Compares what a read found with what was sent.
pub fn judge(found: Option<&[u8]>, sent: &[u8]) -> Option<Resolution> {
    match found {
        Some(b) if b == sent => Some(Resolution::Written),
        Some(_) => Some(Resolution::Other),
        None => None,
    }
}

/// Pauses before each read-back. The first read comes quickly (the put
/// may simply have been slow to answer); later ones give a put held in a
/// queue or proxy time to land. About 15 s in all.
pub const READ_BACK_DELAYS: [Duration; 5] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// Reads `key` back after each of `delays` until it is found. Objects
/// larger than the body sent are not ours and are not read past that size.
pub async fn resolve(repo: &Repo, key: &ObjPath, sent: &[u8], delays: &[Duration]) -> Resolution {
    for (n, delay) in delays.iter().enumerate() {
        tokio::time::sleep(*delay).await;
        match read_up_to(repo, key, sent.len()).await {
            Ok(found) => {
                if let Some(r) = judge(found.as_deref(), sent) {
                    return r;
                }
            }
            Err(e) => {
                tracing::info!(key = %key, attempt = n + 1, error = %crate::error::chain(&e), "could not read back a manifest whose write was not confirmed");
            }
        }
    }
    Resolution::StillUnknown
}

/// `Ok(None)` when the key does not exist; more than `cap` bytes read as
/// a body that cannot equal ours (one byte over is enough to tell).
async fn read_up_to(
    repo: &Repo,
    key: &ObjPath,
    cap: usize,
) -> Result<Option<Vec<u8>>, object_store::Error> {
    let mut stream = match repo.store.get(key).await {
        Ok(r) => r.into_stream(),
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.try_next().await? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > cap {
            break;
        }
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::client::{HttpError, HttpErrorKind};

    fn http(kind: HttpErrorKind) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(kind, std::io::Error::other("x"))),
        }
    }

    #[test]
    fn only_refusals_and_connect_failures_are_definite() {
        assert_eq!(fate_of(&http(HttpErrorKind::Connect)), PutFate::NotWritten);
        for k in [
            HttpErrorKind::Timeout,
            HttpErrorKind::Interrupted,
            HttpErrorKind::Request,
            HttpErrorKind::Unknown,
            HttpErrorKind::Decode,
        ] {
            assert_eq!(fate_of(&http(k)), PutFate::Unknown, "{k:?}");
        }
        let denied = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: "AccessDenied".into(),
        };
        assert_eq!(fate_of(&denied), PutFate::NotWritten);
        let local = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::other("read-only file system")),
        };
        assert_eq!(fate_of(&local), PutFate::NotWritten);
        let status = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 500".into(),
        };
        assert_eq!(fate_of(&status), PutFate::Unknown);
    }

    #[test]
    fn only_the_exact_bytes_sent_count_as_written() {
        assert_eq!(judge(Some(b"abc"), b"abc"), Some(Resolution::Written));
        assert_eq!(judge(Some(b"abd"), b"abc"), Some(Resolution::Other));
        assert_eq!(judge(Some(b"abcd"), b"abc"), Some(Resolution::Other));
        assert_eq!(judge(None, b"abc"), None);
    }
}
