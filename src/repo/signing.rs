//! Signed manifests: a detached minisign signature beside every manifest
//! (`manifest.json.minisig`), so `minisign -Vm manifest.json -P KEY` checks
//! it with the stock tool.
//!
//! What it protects: someone with write access to the store (a leaked
//! bucket key) can delete backups, but cannot forge one: with a public key
//! configured, a manifest that is unsigned, signed by another key or changed
//! after signing is not trusted by `list`, `verify`, `restore` or retention.
//! Since the manifest holds every artifact's sha256, the signature covers
//! the data too. What it does not: the sidecar holds the secret key, so
//! whoever controls the sidecar can sign.

use std::fmt;
use std::io::Cursor;
use std::path::Path;

use chrono::{DateTime, Utc};
use ct_codecs::Decoder as _;

/// Largest signature file read (real ones are about 300 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cannot read signing key {path}: {cause}")]
    Read {
        path: String,
        cause: crate::sys::secret_file::SecretFileError,
    },
    #[error("{what} is not a minisign {kind}: {why}")]
    Parse {
        what: String,
        kind: &'static str,
        why: String,
    },
    #[error("signing key {path} is password-protected; ccbackup signs unattended and needs an unencrypted key (`minisign -G -W` or `ccbackup keys generate`)")]
    Encrypted { path: String },
    #[error("signing key {path} is corrupt ({why}); create a new pair with `ccbackup keys generate` or `minisign -G -W`")]
    Corrupt { path: String, why: String },
    #[error("cannot sign the manifest: {0}")]
    Sign(String),
}

/// The secret key the sidecar signs manifests with.
pub struct Signer {
    key: minisign::SecretKey,
    public: minisign::PublicKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

impl Signer {
    pub fn load(path: &Path) -> Result<Signer, SigningError> {
        let shown = path.display().to_string();
        let text = crate::sys::secret_file::read(path).map_err(|cause| SigningError::Read {
            path: shown.clone(),
            cause,
        })?;
        let key = match secret_key(&text) {
            Ok(k) => k,
            Err(KeyProblem::NotAKey(why)) => {
                return Err(SigningError::Parse {
                    what: shown,
                    kind: "secret key",
                    why,
                })
            }
            Err(KeyProblem::Protected) => return Err(SigningError::Encrypted { path: shown }),
            Err(KeyProblem::Corrupt(why)) => {
                return Err(SigningError::Corrupt { path: shown, why })
            }
        };
        let public =
            minisign::PublicKey::from_secret_key(&key).map_err(|e| SigningError::Corrupt {
                path: shown.clone(),
                why: e.to_string(),
            })?;
        // A key whose two halves do not belong together signs what its own
        // public half rejects: find that now, not in the first backup.
        let probe = b"ccbackup signing key check";
        let works = minisign::sign(Some(&public), &key, Cursor::new(probe), None, None)
            .ok()
            .is_some_and(|sig| {
                minisign::verify(&public, &sig, Cursor::new(probe), true, false, false).is_ok()
            });
        if !works {
            return Err(SigningError::Corrupt {
                path: shown,
                why: "its secret and public halves do not belong together".into(),
            });
        }
        Ok(Signer { key, public })
    }

    /// The detached signature of `data`, as the `.minisig` file text.
    pub fn sign(&self, data: &[u8], comment: &str) -> Result<String, SigningError> {
        let trusted = comment.replace(['\n', '\r'], " ");
        minisign::sign(
            Some(&self.public),
            &self.key,
            Cursor::new(data),
            Some(&trusted),
            Some("signature from ccbackup"),
        )
        .map(|b| b.into_string())
        .map_err(|e| SigningError::Sign(e.to_string()))
    }

    /// The verifier for this key (a writer trusts its own signatures).
    pub fn verifier(&self) -> Verifier {
        Verifier {
            keys: vec![TrustedKey {
                key: self.public.clone(),
                not_after: None,
            }],
        }
    }
}

/// Why a secret key file cannot be used.
#[derive(Debug, PartialEq, Eq)]
enum KeyProblem {
    /// Not a minisign secret key at all.
    NotAKey(String),
    /// Encrypted with a password (scrypt).
    Protected,
    /// A minisign key whose content is damaged.
    Corrupt(String),
}

/// Length of a decoded minisign secret key: algorithms (3 x 2), salt (32),
/// scrypt limits (2 x 8), key id (8), Ed25519 key (64), checksum (32).
const SECRET_KEY_BYTES: usize = 158;
const CHECKSUM_AT: usize = SECRET_KEY_BYTES - 32;

/// Pure: the unencrypted secret key a minisign key file holds.
///
/// The stock `minisign -G -W` (0.11) leaves the checksum of an unencrypted
/// key all zero, which the minisign crate reads as damage; such a key is
/// accepted here (the caller still proves it signs). A non-zero checksum
/// must match, so damage is told apart from a password.
fn secret_key(text: &str) -> Result<minisign::SecretKey, KeyProblem> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .ok_or_else(|| KeyProblem::NotAKey("the file holds no key line".into()))?;
    let bytes = ct_codecs::Base64::decode_to_vec(line, None)
        .map_err(|_| KeyProblem::NotAKey("the key line is not base64".into()))?;
    if bytes.len() != SECRET_KEY_BYTES {
        return Err(KeyProblem::NotAKey(format!(
            "the key is {} bytes long, a minisign secret key is {SECRET_KEY_BYTES}",
            bytes.len()
        )));
    }
    if &bytes[0..2] != b"Ed" {
        return Err(KeyProblem::NotAKey(
            "it is not an Ed25519 minisign key".into(),
        ));
    }
    match &bytes[2..4] {
        b"Sc" => return Err(KeyProblem::Protected),
        [0, 0] => {}
        _ => return Err(KeyProblem::Corrupt("unknown key encryption".into())),
    }
    if &bytes[4..6] != b"B2" {
        return Err(KeyProblem::Corrupt("unknown checksum algorithm".into()));
    }
    let key =
        minisign::SecretKey::from_bytes(&bytes).map_err(|e| KeyProblem::Corrupt(e.to_string()))?;
    if bytes[CHECKSUM_AT..].iter().all(|&b| b == 0) {
        return Ok(key);
    }
    minisign::SecretKeyBox::from_string(&format!("untrusted comment: -\n{line}\n"))
        .and_then(|b| b.into_unencrypted_secret_key())
        .map_err(|_| KeyProblem::Corrupt("its checksum does not match".into()))
}

/// The public keys manifests must be signed with, each trusted for the
/// manifests the store recorded up to its `not_after`, if it has one.
///
/// The window is judged by the store's `LastModified` of the manifest, not
/// by any time the manifest states: after a compromise the attacker holds
/// the old secret key and can sign any claim, but cannot make the store
/// date a new write in the past.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<TrustedKey>,
}

#[derive(Clone)]
struct TrustedKey {
    key: minisign::PublicKey,
    not_after: Option<DateTime<Utc>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({})", self.to_base64())
    }
}

/// Pure: whether a key whose trust ends at `not_after` vouches for a
/// manifest the store recorded at `written`.
pub fn within_window(not_after: Option<DateTime<Utc>>, written: DateTime<Utc>) -> bool {
    not_after.is_none_or(|end| written <= end)
}

impl Verifier {
    /// From the base64 form (`RW...`), or a `.pub` file's text (comment line
    /// plus key). Trusted without an end.
    pub fn parse(text: &str, what: &str) -> Result<Verifier, SigningError> {
        let line = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .unwrap_or("");
        minisign::PublicKey::from_base64(line)
            .map(|key| Verifier {
                keys: vec![TrustedKey {
                    key,
                    not_after: None,
                }],
            })
            .map_err(|e| SigningError::Parse {
                what: what.to_owned(),
                kind: "public key",
                why: e.to_string(),
            })
    }

    /// The same keys, trusted only for manifests recorded by `not_after`.
    pub fn until(mut self, not_after: Option<DateTime<Utc>>) -> Verifier {
        for k in &mut self.keys {
            k.not_after = not_after;
        }
        self
    }

    /// All keys of `parts` (`signing.public_keys`); `None` when empty.
    pub fn join(parts: impl IntoIterator<Item = Verifier>) -> Option<Verifier> {
        let keys: Vec<TrustedKey> = parts.into_iter().flat_map(|v| v.keys).collect();
        (!keys.is_empty()).then_some(Verifier { keys })
    }

    /// The keys in base64, each with its window, for messages.
    pub fn to_base64(&self) -> String {
        self.keys
            .iter()
            .map(|k| match k.not_after {
                Some(t) => format!(
                    "{} (for manifests stored by {})",
                    k.key.to_base64(),
                    t.to_rfc3339()
                ),
                None => k.key.to_base64(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The trust window of `key` (base64) if it is one of these keys:
    /// `Some(None)` for a key trusted without an end.
    pub fn window_of(&self, key: &Verifier) -> Option<Option<DateTime<Utc>>> {
        let wanted: Vec<String> = key.keys.iter().map(|k| k.key.to_base64()).collect();
        self.keys
            .iter()
            .find(|k| wanted.contains(&k.key.to_base64()))
            .map(|k| k.not_after)
    }

    /// Checks a detached signature of `data`, a manifest the store recorded
    /// at `written`: it must verify with a key whose window covers that.
    pub fn verify(
        &self,
        data: &[u8],
        signature: &str,
        written: DateTime<Utc>,
    ) -> Result<(), String> {
        let sig = minisign::SignatureBox::from_string(signature)
            .map_err(|e| format!("the signature is not readable: {e}"))?;
        let mut expired = None;
        let mut last_err = None;
        for k in &self.keys {
            match minisign::verify(&k.key, &sig, Cursor::new(data), true, false, false) {
                Ok(()) if within_window(k.not_after, written) => return Ok(()),
                Ok(()) => expired = Some(k),
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(k) = expired {
            return Err(format!(
                "it is signed with key {}, which is trusted only for manifests the store \
                 recorded by {}, and the store recorded this one at {} (a key compromised \
                 and rotated out; see signing.public_keys)",
                k.key.to_base64(),
                k.not_after.map(|t| t.to_rfc3339()).unwrap_or_default(),
                written.to_rfc3339()
            ));
        }
        Err(format!(
            "the signature does not verify with the configured public key{}: {}",
            if self.keys.len() == 1 { "" } else { "s" },
            last_err.map(|e| e.to_string()).unwrap_or_default()
        ))
    }
}

/// A new key pair as `keys generate` writes it: (secret key file text,
/// public key file text, public key base64).
pub fn generate() -> Result<(String, String, String), SigningError> {
    let pair = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|e| SigningError::Sign(e.to_string()))?;
    let secret = pair
        .sk
        .to_box(Some("ccbackup manifest signing key"))
        .map_err(|e| SigningError::Sign(e.to_string()))?
        .into_string();
    let public = pair
        .pk
        .to_box()
        .map_err(|e| SigningError::Sign(e.to_string()))?
        .into_string();
    Ok((secret, public, pair.pk.to_base64()))
}

/// With a verifier, only manifests signed by its key count; with a signer,
/// every manifest written is signed.
/// What anyone who can write to an unsigned store can do, and the way
/// out: said by `check-config`, `doctor`, the daemon at start-up and
/// `ccbackup_store_authenticated`.
pub const UNSIGNED_RISK: &str = "no signing key is configured, so anyone who can write to it \
(a leaked bucket key) can plant backups that list, restore, verify and retention trust: a forged \
newer backup pushes real ones out of the policy, and a forged dump runs its SQL on restore; \
run `ccbackup keys generate DIR` and set signing.secret_key_file (see docs/threat-model.md)";

#[derive(Debug, Clone, Default)]
pub struct SigningKeys {
    pub signer: Option<std::sync::Arc<Signer>>,
    pub verifier: Option<std::sync::Arc<Verifier>>,
    /// Unsigned backups from before this time still count (a store that
    /// moved to signing keeps its older backups readable and prunable).
    pub unsigned_before: Option<chrono::DateTime<chrono::Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> (tempfile::TempDir, Signer, String) {
        let (secret, public, b64) = generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, secret).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Signer::load(&p).unwrap();
        assert_eq!(Verifier::parse(&public, "pub").unwrap().to_base64(), b64);
        (dir, s, b64)
    }

    /// A key as the stock `minisign -G -W` writes it: checksum all zero.
    fn stock_unencrypted(text: &str) -> (String, Vec<u8>) {
        use ct_codecs::Encoder as _;
        let line = text.lines().nth(1).unwrap();
        let mut bytes = ct_codecs::Base64::decode_to_vec(line, None).unwrap();
        let good = bytes.clone();
        bytes[CHECKSUM_AT..].fill(0);
        let enc = ct_codecs::Base64::encode_to_string(&bytes).unwrap();
        (
            format!("untrusted comment: minisign encrypted secret key\n{enc}\n"),
            good,
        )
    }

    #[test]
    fn regression_issue22_stock_keys_pass_and_damage_is_not_a_password() {
        use ct_codecs::Encoder as _;
        let (secret, _, _) = generate().unwrap();
        assert!(secret_key(&secret).is_ok());
        let (stock, mut good) = stock_unencrypted(&secret);
        assert!(secret_key(&stock).is_ok());
        // A wrong non-zero checksum is damage.
        good[CHECKSUM_AT] ^= 1;
        let enc = ct_codecs::Base64::encode_to_string(&good).unwrap();
        assert!(matches!(
            secret_key(&format!("untrusted comment: x\n{enc}\n")),
            Err(KeyProblem::Corrupt(_))
        ));
        // Scrypt-encrypted is a password, whatever its checksum says.
        good[2..4].copy_from_slice(b"Sc");
        let enc = ct_codecs::Base64::encode_to_string(&good).unwrap();
        assert_eq!(
            secret_key(&format!("untrusted comment: x\n{enc}\n")).err(),
            Some(KeyProblem::Protected)
        );
        assert!(matches!(
            secret_key("untrusted comment: x\nnot base64!\n"),
            Err(KeyProblem::NotAKey(_))
        ));
    }

    #[test]
    fn signs_and_verifies_and_rejects_changes_and_other_keys() {
        let (_d, s, b64) = signer();
        let sig = s.sign(b"{\"id\":1}", "ccbackup j/1").unwrap();
        let v = Verifier::parse(&b64, "pub").unwrap();
        let now = Utc::now();
        v.verify(b"{\"id\":1}", &sig, now).unwrap();
        assert!(v.verify(b"{\"id\":2}", &sig, now).is_err());
        let (_d2, other, _) = signer();
        let sig2 = other.sign(b"{\"id\":1}", "x").unwrap();
        assert!(v.verify(b"{\"id\":1}", &sig2, now).is_err());
        assert!(v.verify(b"{\"id\":1}", "garbage", now).is_err());
        assert!(!format!("{s:?}").contains(&b64));
    }

    #[test]
    fn a_key_counts_only_for_manifests_stored_within_its_window() {
        let (_d, old, old_b64) = signer();
        let (_d2, new, new_b64) = signer();
        let cut = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let keys = Verifier::join([
            Verifier::parse(&old_b64, "old").unwrap().until(Some(cut)),
            Verifier::parse(&new_b64, "new").unwrap(),
        ])
        .unwrap();
        let data = b"{}";
        let by_old = old.sign(data, "x").unwrap();
        let by_new = new.sign(data, "x").unwrap();
        let before = cut - chrono::Duration::seconds(1);
        let after = cut + chrono::Duration::milliseconds(1);
        keys.verify(data, &by_old, before).unwrap();
        keys.verify(data, &by_old, cut).unwrap();
        let e = keys.verify(data, &by_old, after).unwrap_err();
        assert!(
            e.contains(&old_b64) && e.contains("2026-12-07T12:00:00"),
            "{e}"
        );
        keys.verify(data, &by_new, after).unwrap();
        assert!(within_window(None, after));
        assert!(!within_window(Some(cut), after));
        assert_eq!(keys.window_of(&new.verifier()), Some(None));
        assert_eq!(keys.window_of(&old.verifier()), Some(Some(cut)));
        assert!(keys.to_base64().contains("for manifests stored by"));
    }
}
