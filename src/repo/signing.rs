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

/// Largest signature file read (real ones are about 300 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cannot read signing key {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("{what} is not a minisign {kind}: {why}")]
    Parse {
        what: String,
        kind: &'static str,
        why: String,
    },
    #[error("signing key {path} is password-protected; ccbackup signs unattended and needs an unencrypted key (`minisign -G -W` or `ccbackup keys generate`)")]
    Encrypted { path: String },
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
        let text = std::fs::read_to_string(path).map_err(|cause| SigningError::Read {
            path: shown.clone(),
            cause,
        })?;
        let boxed =
            minisign::SecretKeyBox::from_string(&text).map_err(|e| SigningError::Parse {
                what: shown.clone(),
                kind: "secret key",
                why: e.to_string(),
            })?;
        let key = boxed
            .into_unencrypted_secret_key()
            .map_err(|_| SigningError::Encrypted {
                path: shown.clone(),
            })?;
        if key.is_encrypted() {
            return Err(SigningError::Encrypted { path: shown });
        }
        let public =
            minisign::PublicKey::from_secret_key(&key).map_err(|e| SigningError::Parse {
                what: shown,
                kind: "secret key",
                why: e.to_string(),
            })?;
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
            key: self.public.clone(),
        }
    }
}

/// A public key manifests must be signed with.
#[derive(Clone)]
pub struct Verifier {
    key: minisign::PublicKey,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({})", self.key.to_base64())
    }
}

impl Verifier {
    /// From the base64 form (`RW...`), or a `.pub` file's text (comment line
    /// plus key).
    pub fn parse(text: &str, what: &str) -> Result<Verifier, SigningError> {
        let line = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .unwrap_or("");
        minisign::PublicKey::from_base64(line)
            .map(|key| Verifier { key })
            .map_err(|e| SigningError::Parse {
                what: what.to_owned(),
                kind: "public key",
                why: e.to_string(),
            })
    }

    pub fn to_base64(&self) -> String {
        self.key.to_base64()
    }

    /// Checks a detached signature of `data`.
    pub fn verify(&self, data: &[u8], signature: &str) -> Result<(), String> {
        let sig = minisign::SignatureBox::from_string(signature)
            .map_err(|e| format!("the signature is not readable: {e}"))?;
        minisign::verify(&self.key, &sig, Cursor::new(data), true, false, false).map_err(|e| {
            format!("the signature does not verify with the configured public key: {e}")
        })
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
#[derive(Debug, Clone, Default)]
pub struct SigningKeys {
    pub signer: Option<std::sync::Arc<Signer>>,
    pub verifier: Option<std::sync::Arc<Verifier>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> (tempfile::TempDir, Signer, String) {
        let (secret, public, b64) = generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, secret).unwrap();
        let s = Signer::load(&p).unwrap();
        assert_eq!(Verifier::parse(&public, "pub").unwrap().to_base64(), b64);
        (dir, s, b64)
    }

    #[test]
    fn signs_and_verifies_and_rejects_changes_and_other_keys() {
        let (_d, s, b64) = signer();
        let sig = s.sign(b"{\"id\":1}", "ccbackup j/1").unwrap();
        let v = Verifier::parse(&b64, "pub").unwrap();
        v.verify(b"{\"id\":1}", &sig).unwrap();
        assert!(v.verify(b"{\"id\":2}", &sig).is_err());
        let (_d2, other, _) = signer();
        let sig2 = other.sign(b"{\"id\":1}", "x").unwrap();
        assert!(v.verify(b"{\"id\":1}", &sig2).is_err());
        assert!(v.verify(b"{\"id\":1}", "garbage").is_err());
        assert!(!format!("{s:?}").contains(&b64));
    }
}
