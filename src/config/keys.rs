//! Validation of the `encryption` and `signing` sections. Key files are
//! resolved against the configuration file's directory, like policy files.
//! Recipients and signing keys are read at load time (the sidecar needs
//! them for every run); identities only when a restore needs them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::check::Problems;
use super::raw;
use super::EncryptionConfig;
use crate::crypto::Recipients;
use crate::repo::signing::SigningKeys;
use crate::repo::signing::{Signer, Verifier};

fn path_of(v: &Spanned<String>, base: &Path) -> PathBuf {
    base.join(&v.value)
}

pub(super) fn encryption(
    e: &Spanned<raw::RawEncryption>,
    key: &str,
    base: &Path,
    p: &mut Problems,
) -> Option<EncryptionConfig> {
    let mut listed: Vec<String> = e.value.recipients.iter().map(|r| r.value.clone()).collect();
    let mut ok = true;
    for (i, r) in e.value.recipients.iter().enumerate() {
        if let Err(why) = Recipients::parse([r.value.as_str()]) {
            p.at(&r.referenced, format!("{key}.recipients[{i}]"), why);
            ok = false;
        }
    }
    if let Some(f) = &e.value.recipients_file {
        let path = path_of(f, base);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let l = line.trim();
                    if l.is_empty() || l.starts_with('#') {
                        continue;
                    }
                    match Recipients::parse([l]) {
                        Ok(_) => listed.push(l.to_owned()),
                        Err(why) => {
                            p.at(
                                &f.referenced,
                                format!("{key}.recipients_file"),
                                format!("{} line {}: {why}", path.display(), n + 1),
                            );
                            ok = false;
                        }
                    }
                }
            }
            Err(err) => {
                p.at(
                    &f.referenced,
                    format!("{key}.recipients_file"),
                    format!("cannot read {}: {err}", path.display()),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    let recipients = match Recipients::parse(listed.iter().map(String::as_str)) {
        Ok(r) => r,
        Err(why) => {
            p.at(&e.referenced, format!("{key}.recipients"), why);
            return None;
        }
    };
    Some(EncryptionConfig {
        recipients: Arc::new(recipients),
        identity_file: e.value.identity_file.as_ref().map(|f| path_of(f, base)),
    })
}

/// `public_key` or `public_key_file` (not both): the one verifying key.
fn one_public_key(
    v: &raw::RawSigning,
    key: &str,
    base: &Path,
    p: &mut Problems,
) -> Option<Verifier> {
    match (&v.public_key, &v.public_key_file) {
        (Some(_), Some(f)) => {
            p.at(
                &f.referenced,
                format!("{key}.public_key_file"),
                "give public_key or public_key_file, not both",
            );
            None
        }
        (Some(k), None) => Verifier::parse(&k.value, "signing.public_key")
            .map_err(|e| p.at(&k.referenced, format!("{key}.public_key"), e.to_string()))
            .ok(),
        (None, Some(f)) => {
            let path = path_of(f, base);
            match std::fs::read_to_string(&path) {
                Ok(text) => Verifier::parse(&text, &path.display().to_string())
                    .map_err(|e| {
                        p.at(
                            &f.referenced,
                            format!("{key}.public_key_file"),
                            e.to_string(),
                        )
                    })
                    .ok(),
                Err(err) => {
                    p.at(
                        &f.referenced,
                        format!("{key}.public_key_file"),
                        format!("cannot read {}: {err}", path.display()),
                    );
                    None
                }
            }
        }
        (None, None) => None,
    }
}

pub(super) fn signing(
    s: &Spanned<raw::RawSigning>,
    key: &str,
    base: &Path,
    p: &mut Problems,
) -> Option<SigningKeys> {
    let v = &s.value;
    let signer = v.secret_key_file.as_ref().and_then(|f| {
        Signer::load(&path_of(f, base))
            .map_err(|e| {
                p.at(
                    &f.referenced,
                    format!("{key}.secret_key_file"),
                    e.to_string(),
                )
            })
            .ok()
    });
    let public = one_public_key(v, key, base, p);
    let public = match (
        &v.public_keys,
        v.public_key.is_some() || v.public_key_file.is_some(),
    ) {
        (Some(list), true) => {
            p.at(
                &list.referenced,
                format!("{key}.public_keys"),
                "give public_keys, or public_key/public_key_file, not both",
            );
            None
        }
        (Some(list), false) => public_keys(list, key, base, p),
        (None, _) => public,
    };
    if let (Some(sk), Some(pk)) = (&signer, &public) {
        let (loc, which) = match (&v.public_key, &v.public_key_file, &v.public_keys) {
            (Some(k), _, _) => (&k.referenced, "public_key"),
            (_, Some(f), _) => (&f.referenced, "public_key_file"),
            (_, _, Some(l)) => (&l.referenced, "public_keys"),
            _ => (&s.referenced, ""),
        };
        let problem = match pk.window_of(&sk.verifier()) {
            None => Some(
                "secret_key_file and the public key are not a pair: manifests signed with the one would not verify with the other".to_owned(),
            ),
            Some(Some(t)) => Some(format!(
                "the key of secret_key_file has not_after {}: new backups signed with it would not be trusted; sign with a new key (`ccbackup keys generate`) and keep this one only to verify older backups",
                t.to_rfc3339()
            )),
            Some(None) => None,
        };
        if let Some(problem) = problem {
            p.at(
                loc,
                format!("{key}.{which}").trim_end_matches('.').to_owned(),
                problem,
            );
            return None;
        }
    }
    if signer.is_none() && public.is_none() {
        if v.secret_key_file.is_none()
            && v.public_key.is_none()
            && v.public_key_file.is_none()
            && v.public_keys.is_none()
        {
            p.at(
                &s.referenced,
                key.to_owned(),
                "set secret_key_file (to sign) and/or public_key or public_key_file (to verify)",
            );
        }
        return None;
    }
    // A writer verifies with its own key, so its retention never counts a
    // manifest someone else wrote.
    let verifier = public.or_else(|| signer.as_ref().map(|s| s.verifier()));
    let unsigned_before = v
        .unsigned_before
        .as_ref()
        .and_then(|t| time(t, &format!("{key}.unsigned_before"), p));
    Some(SigningKeys {
        signer: signer.map(Arc::new),
        verifier: verifier.map(Arc::new),
        unsigned_before,
    })
}

/// An RFC 3339 time, or a problem at its line.
pub(super) fn time(
    t: &Spanned<String>,
    key: &str,
    p: &mut Problems,
) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(t.value.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            p.at(
                &t.referenced,
                key.to_owned(),
                format!(
                    "{:?} is not an RFC 3339 time ({e}); e.g. 2026-12-07T12:00:00Z",
                    t.value
                ),
            )
        })
        .ok()
}

/// `signing.public_keys`: every key trusted, each up to its `not_after`.
fn public_keys(
    list: &Spanned<Vec<Spanned<raw::RawPublicKey>>>,
    key: &str,
    base: &Path,
    p: &mut Problems,
) -> Option<Verifier> {
    let before = p.0.len();
    let mut keys = Vec::new();
    for (i, e) in list.value.iter().enumerate() {
        let at = format!("{key}.public_keys[{i}]");
        let parsed = match (&e.value.key, &e.value.key_file) {
            (Some(k), None) => Verifier::parse(&k.value, &format!("{at}.key"))
                .map_err(|err| p.at(&k.referenced, format!("{at}.key"), err.to_string()))
                .ok(),
            (None, Some(f)) => {
                let path = path_of(f, base);
                match std::fs::read_to_string(&path) {
                    Ok(text) => Verifier::parse(&text, &path.display().to_string())
                        .map_err(|err| {
                            p.at(&f.referenced, format!("{at}.key_file"), err.to_string())
                        })
                        .ok(),
                    Err(err) => {
                        p.at(
                            &f.referenced,
                            format!("{at}.key_file"),
                            format!("cannot read {}: {err}", path.display()),
                        );
                        None
                    }
                }
            }
            _ => {
                p.at(
                    &e.referenced,
                    at.clone(),
                    "give key or key_file (one of them)",
                );
                None
            }
        };
        let not_after = e
            .value
            .not_after
            .as_ref()
            .map(|t| time(t, &format!("{at}.not_after"), p));
        // A not_after that did not parse is a problem already reported.
        match (parsed, not_after) {
            (Some(v), None) => keys.push(v),
            (Some(v), Some(Some(t))) => keys.push(v.until(Some(t))),
            _ => {}
        }
    }
    if list.value.is_empty() {
        p.at(
            &list.referenced,
            format!("{key}.public_keys"),
            "the list is empty; give at least one key",
        );
    }
    if p.0.len() > before {
        return None;
    }
    Verifier::join(keys)
}
