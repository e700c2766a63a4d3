//! The primary's side of a copy: its manifest and signature, read with
//! caps and checked the way [`crate::repo::manifest::read`] checks them.

use object_store::path::Path as ObjPath;

use super::CopyError;
use crate::repo::manifest::{
    self, read_capped, read_capped_dated, Manifest, ManifestError, MAX_MANIFEST_BYTES,
};
use crate::repo::signing::MAX_SIGNATURE_BYTES;
use crate::repo::store::{manifest_path, signature_path, Repo};

/// The manifest as stored in the primary, with its signature, checked the
/// way [`manifest::read`] checks it.
pub(super) struct Source {
    pub manifest: Manifest,
    pub bytes: Vec<u8>,
    pub signature: Option<Vec<u8>>,
}

pub(super) async fn read_source(src: &Repo, job: &str, id: &str) -> Result<Source, CopyError> {
    let source_err = |source| CopyError::Source {
        store: src.display.clone(),
        job: job.to_owned(),
        id: id.to_owned(),
        source,
    };
    let key = manifest_path(job, id);
    let read_err = |key: &ObjPath, source| {
        source_err(ManifestError::Read {
            key: key.to_string(),
            source,
        })
    };
    let (bytes, written) = read_capped_dated(src, &key, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| read_err(&key, e))?
        .ok_or_else(|| {
            source_err(ManifestError::TooLarge {
                key: key.to_string(),
            })
        })?;
    let sig_key = signature_path(job, id);
    let signature = match read_capped(src, &sig_key, MAX_SIGNATURE_BYTES).await {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            return Err(untrusted(
                source_err,
                &key,
                "its signature file is oversized",
            ))
        }
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(read_err(&sig_key, e)),
    };
    if let Some(v) = &src.verifier {
        let Some(sig) = &signature else {
            return Err(untrusted(source_err, &key, "it is not signed"));
        };
        v.verify(&bytes, &String::from_utf8_lossy(sig), written)
            .map_err(|why| untrusted(source_err, &key, &why))?;
    }
    let m = manifest::parse(&bytes, key.as_ref()).map_err(source_err)?;
    manifest::check_location(&m, job, id).map_err(|why| {
        source_err(ManifestError::Misplaced {
            key: key.to_string(),
            why,
        })
    })?;
    Ok(Source {
        manifest: m,
        bytes,
        signature,
    })
}

fn untrusted(wrap: impl Fn(ManifestError) -> CopyError, key: &ObjPath, why: &str) -> CopyError {
    wrap(ManifestError::Untrusted {
        key: key.to_string(),
        why: why.to_owned(),
    })
}
