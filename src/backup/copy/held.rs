//! What a copy store already holds of one backup, judged against the
//! primary's manifest: a manifest HEAD alone would let whatever sits under
//! that key (junk, another signature, a manifest without its artifacts)
//! pass as "already copied" forever.

use std::collections::HashMap;

use futures::TryStreamExt;
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use super::source::Source;
use super::CopyError;
use crate::repo::manifest::read_capped;
use crate::repo::manifest::MAX_MANIFEST_BYTES;
use crate::repo::signing::MAX_SIGNATURE_BYTES;
use crate::repo::store::{backup_dir, manifest_path, signature_path, Repo};
use crate::retry::{self, Backoff};

/// The copy store's side of one backup.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// No manifest: copy it.
    Nothing,
    /// The same manifest bytes, signature and artifact sizes as the primary.
    Same,
    /// A manifest that does not match; the text says how.
    Differs(String),
}

/// Pure: compares what the copy store holds with the primary's backup.
/// `listed` is every object under the backup's directory in the copy
/// store, keyed below that directory.
pub(super) fn judge(
    source: &Source,
    manifest: Option<&[u8]>,
    signature: Option<&[u8]>,
    listed: &HashMap<String, u64>,
) -> Held {
    let Some(manifest) = manifest else {
        return Held::Nothing;
    };
    if manifest != source.bytes.as_slice() {
        return Held::Differs("its manifest differs from the primary's".to_owned());
    }
    if let Some(want) = &source.signature {
        if signature.map(signed_part) != Some(signed_part(want)) {
            return Held::Differs("its signature differs from the primary's".to_owned());
        }
    }
    for a in &source.manifest.artifacts {
        match listed.get(&a.key) {
            Some(&n) if n == a.stored_bytes => {}
            Some(&n) => {
                return Held::Differs(format!(
                    "artifact {} has {n} bytes, the manifest says {}",
                    a.key, a.stored_bytes
                ))
            }
            None => return Held::Differs(format!("artifact {} is missing", a.key)),
        }
    }
    Held::Same
}

/// The part of a minisign signature file the signature covers: everything
/// after its first line, the "untrusted comment", which anyone may edit
/// without invalidating it. An edited comment in the primary must not make
/// a good copy look different (and be rewritten).
fn signed_part(sig: &[u8]) -> &[u8] {
    match sig.iter().position(|&b| b == b'\n') {
        Some(i) => &sig[i + 1..],
        None => sig,
    }
}

/// Reads the copy store's manifest, signature and listing of the backup
/// `source` describes, and judges them.
pub(super) async fn held(
    dst: &Repo,
    source: &Source,
    cancel: &CancellationToken,
) -> Result<Held, CopyError> {
    let m = &source.manifest;
    let read_err = |key: &object_store::path::Path, source| CopyError::Read {
        store: dst.display.clone(),
        key: key.to_string(),
        source,
    };
    let mkey = manifest_path(&m.job, &m.id);
    let what = format!("reading {mkey} in {}", dst.display);
    let manifest = match retry::retry(Backoff::STORE, &what, cancel, || {
        read_capped(dst, &mkey, MAX_MANIFEST_BYTES)
    })
    .await
    {
        Ok(Some(b)) => b,
        // Larger than any manifest: certainly not the primary's.
        Ok(None) => return Ok(Held::Differs("its manifest is oversized".to_owned())),
        Err(object_store::Error::NotFound { .. }) => return Ok(Held::Nothing),
        Err(e) => return Err(read_err(&mkey, e)),
    };
    let skey = signature_path(&m.job, &m.id);
    let what = format!("reading {skey} in {}", dst.display);
    let signature = match retry::retry(Backoff::STORE, &what, cancel, || {
        read_capped(dst, &skey, MAX_SIGNATURE_BYTES)
    })
    .await
    {
        Ok(s) => s,
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(read_err(&skey, e)),
    };
    let dir = backup_dir(&m.job, &m.id);
    let prefix_parts = dir.parts().count();
    let listed: HashMap<String, u64> = dst
        .store
        .list(Some(&dir))
        .map_ok(|meta| {
            let key: Vec<String> = meta
                .location
                .parts()
                .skip(prefix_parts)
                .map(|p| p.as_ref().to_owned())
                .collect();
            (key.join("/"), meta.size)
        })
        .try_collect()
        .await
        .map_err(|e| read_err(&dir, e))?;
    Ok(judge(
        source,
        Some(&manifest),
        signature.as_deref(),
        &listed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(signed: bool) -> Source {
        let text = include_str!("../../../tests/fixtures/manifest-format1.json");
        Source {
            manifest: crate::repo::manifest::parse(text.as_bytes(), "fixture").unwrap(),
            bytes: text.as_bytes().to_vec(),
            signature: signed.then(|| b"sig".to_vec()),
        }
    }

    fn listing(s: &Source) -> HashMap<String, u64> {
        s.manifest
            .artifacts
            .iter()
            .map(|a| (a.key.clone(), a.stored_bytes))
            .collect()
    }

    #[test]
    fn an_edited_untrusted_comment_is_not_a_difference() {
        let mut s = source(true);
        s.signature = Some(b"untrusted comment: one\nSIG\ntrusted comment: t\nGSIG\n".to_vec());
        let all = listing(&s);
        let edited = b"untrusted comment: planted by someone\nSIG\ntrusted comment: t\nGSIG\n";
        assert_eq!(judge(&s, Some(&s.bytes), Some(edited), &all), Held::Same);
        let resigned = b"untrusted comment: one\nOTHER\ntrusted comment: t\nGSIG\n";
        assert!(matches!(
            judge(&s, Some(&s.bytes), Some(resigned), &all),
            Held::Differs(_)
        ));
    }

    #[test]
    fn only_the_primarys_very_backup_counts_as_already_copied() {
        let s = source(true);
        let all = listing(&s);
        assert_eq!(judge(&s, None, None, &all), Held::Nothing);
        assert_eq!(judge(&s, Some(&s.bytes), Some(b"sig"), &all), Held::Same);
        for (manifest, sig) in [
            (&b"{\"junk\": true}"[..], &b"sig"[..]),
            (&s.bytes[..], &b"other"[..]),
        ] {
            assert!(matches!(
                judge(&s, Some(manifest), Some(sig), &all),
                Held::Differs(_)
            ));
        }
        assert!(matches!(
            judge(&s, Some(&s.bytes), None, &all),
            Held::Differs(_)
        ));
        let mut short = all.clone();
        let first = s.manifest.artifacts[0].key.clone();
        short.insert(first.clone(), 1);
        assert!(matches!(
            judge(&s, Some(&s.bytes), Some(b"sig"), &short),
            Held::Differs(why) if why.contains("bytes")
        ));
        short.remove(&first);
        assert!(matches!(
            judge(&s, Some(&s.bytes), Some(b"sig"), &short),
            Held::Differs(why) if why.contains("missing")
        ));
        // An unsigned primary does not care about a signature beside the copy.
        let u = source(false);
        assert_eq!(
            judge(&u, Some(&u.bytes), Some(b"x"), &listing(&u)),
            Held::Same
        );
    }
}
