//! Encryption of artifacts to age recipients, in the standard age format, so
//! `age -d -i KEY artifact | zstd -dc` works with the stock tools.
//!
//! The sidecar holds only recipients (public keys): it can write backups
//! but not read them. Identities (secret keys) are needed only by `restore`
//! and `verify --restore-test`, and are loaded from a file on demand; they
//! never reach logs, argv, error messages or `Debug` output.
//!
//! Order on the way in is source -> zstd -> age -> sha256 -> store, so the
//! manifest's checksum is of what is stored and checksum-only verification
//! needs no secret.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;

use crate::repo::manifest::{Artifact, EncryptionInfo};

/// The only format ccbackup writes, recorded in the manifest.
pub const FORMAT: &str = "age";

/// Largest age header read. The age crate parses a header again for every
/// piece it reads, so a header of many stanzas costs time that grows with
/// its square; a real one is about 200 bytes per recipient.
pub const MAX_AGE_HEADER: usize = 64 * 1024;

/// Pure: where the age header in `prefix` ends (after its `--- MAC` line),
/// or `None` when it does not end within `MAX_AGE_HEADER` bytes.
fn age_header_end(prefix: &[u8]) -> Option<usize> {
    let window = &prefix[..prefix.len().min(MAX_AGE_HEADER)];
    let mac = window.windows(5).position(|w| w == b"\n--- ")? + 1;
    let nl = window[mac..].iter().position(|&b| b == b'\n')?;
    Some(mac + nl + 1)
}

/// Checks that the age header of `file` ends within [`MAX_AGE_HEADER`]
/// bytes, reading no more than that, and rewinds the file.
fn check_age_header(file: &mut std::fs::File, key: &str) -> Result<(), CryptoError> {
    use std::io::{Seek, SeekFrom};
    let open_err = |cause| CryptoError::Open {
        key: key.to_owned(),
        cause,
    };
    let mut prefix = Vec::with_capacity(MAX_AGE_HEADER + 1);
    (&mut *file)
        .take(MAX_AGE_HEADER as u64 + 1)
        .read_to_end(&mut prefix)
        .map_err(open_err)?;
    // A short file without a header end is age's to call invalid.
    if prefix.len() > MAX_AGE_HEADER && age_header_end(&prefix).is_none() {
        return Err(CryptoError::HeaderTooLarge {
            key: key.escape_debug().to_string(),
        });
    }
    file.seek(SeekFrom::Start(0)).map_err(open_err)?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("{key} is encrypted: restoring or restore-testing it needs an age identity (--identity FILE or encryption.identity_file)")]
    NoIdentity { key: String },
    #[error("the identity does not match any recipient of {key}; it was encrypted to {}", recipients.join(", "))]
    WrongIdentity {
        key: String,
        recipients: Vec<String>,
    },
    #[error("{key} is encrypted with {format:?}, which this ccbackup cannot read")]
    UnknownFormat { key: String, format: String },
    #[error("cannot decrypt {key}: its age header is larger than {MAX_AGE_HEADER} bytes; real headers take a few hundred bytes per recipient, so this one was crafted")]
    HeaderTooLarge { key: String },
    #[error("cannot decrypt {key}: {why}")]
    Decrypt { key: String, why: String },
    #[error("cannot open {key}: {cause}")]
    Open { key: String, cause: io::Error },
    #[error("cannot read identity file {}: {cause}", path.display())]
    IdentityFile {
        path: PathBuf,
        cause: crate::sys::secret_file::SecretFileError,
    },
    #[error("identity file {} line {line}: not an age identity (expected AGE-SECRET-KEY-1...)", path.display())]
    BadIdentity { path: PathBuf, line: usize },
    #[error("identity file {} holds no identity", path.display())]
    EmptyIdentity { path: PathBuf },
}

/// Public keys artifacts are encrypted to.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<age::x25519::Recipient>,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.strings()).finish()
    }
}

impl Recipients {
    /// Parses `age1...` recipients; the error says which one is wrong.
    pub fn parse<'a>(list: impl IntoIterator<Item = &'a str>) -> Result<Recipients, String> {
        let mut keys = Vec::new();
        for r in list {
            let r = r.trim();
            let key = age::x25519::Recipient::from_str(r).map_err(|e| {
                format!(
                    "`{}` is not an age recipient (age1...): {e}",
                    r.escape_debug()
                )
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("no recipients: encryption needs at least one age1... public key".into());
        }
        Ok(Recipients { keys })
    }

    /// Recipients from a file in the format `age -R` reads: one per line,
    /// `#` comments and blank lines ignored.
    pub fn lines(text: &str) -> impl Iterator<Item = &str> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
    }

    pub fn strings(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.to_string()).collect()
    }

    /// Wraps `out` so what is written to it is encrypted to every recipient.
    pub fn encrypt<W: io::Write>(&self, out: W) -> io::Result<age::stream::StreamWriter<W>> {
        let enc =
            age::Encryptor::with_recipients(self.keys.iter().map(|k| k as &dyn age::Recipient))
                .map_err(io::Error::other)?;
        enc.wrap_output(out)
    }

    pub fn info(&self) -> EncryptionInfo {
        EncryptionInfo {
            format: FORMAT.to_owned(),
            recipients: self.strings(),
        }
    }
}

/// Secret keys that can decrypt artifacts.
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities(<{} redacted>)", self.keys.len())
    }
}

impl Identities {
    /// Reads an identity file as `age-keygen` writes it: `AGE-SECRET-KEY-1...`
    /// lines, `#` comments and blank lines ignored. Errors name the line,
    /// never its content.
    pub fn load(path: &Path) -> Result<Identities, CryptoError> {
        let text =
            crate::sys::secret_file::read(path).map_err(|cause| CryptoError::IdentityFile {
                path: path.to_owned(),
                cause,
            })?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Identities, CryptoError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let key = age::x25519::Identity::from_str(l).map_err(|_| CryptoError::BadIdentity {
                path: path.to_owned(),
                line: i + 1,
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(CryptoError::EmptyIdentity {
                path: path.to_owned(),
            });
        }
        Ok(Identities { keys })
    }

    /// A new identity, as `keys generate` writes it: (file text, recipient).
    pub fn generate() -> (String, String) {
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        let text = format!(
            "# created by ccbackup keys generate\n# public key: {public}\n{}\n",
            id.to_string().expose_secret()
        );
        (text, public)
    }
}

/// Opens an artifact stored (or staged) at `path` and returns a reader of
/// its raw bytes: decrypted when the manifest says it is encrypted, then
/// decompressed. A missing or wrong identity fails here, before any byte is
/// applied.
pub fn open_artifact(
    path: &Path,
    art: &Artifact,
    ids: Option<&Identities>,
) -> Result<Box<dyn Read + Send>, CryptoError> {
    let open_err = |cause| CryptoError::Open {
        key: art.key.clone(),
        cause,
    };
    let mut raw = std::fs::File::open(path).map_err(open_err)?;
    if art.encryption.is_some() {
        check_age_header(&mut raw, &art.key)?;
    }
    decode(io::BufReader::with_capacity(1024 * 1024, raw), art, ids)
}

/// [`open_artifact`] for stored bytes arriving as a stream (`ccbackup ls`
/// reads while it downloads): the age header is capped the same way, by
/// reading at most [`MAX_AGE_HEADER`] bytes ahead and handing them back.
pub fn open_stream<R: Read + Send + 'static>(
    mut raw: R,
    art: &Artifact,
    ids: Option<&Identities>,
) -> Result<Box<dyn Read + Send>, CryptoError> {
    if art.encryption.is_none() {
        return decode(io::BufReader::with_capacity(256 * 1024, raw), art, ids);
    }
    let mut prefix = Vec::with_capacity(MAX_AGE_HEADER + 1);
    (&mut raw)
        .take(MAX_AGE_HEADER as u64 + 1)
        .read_to_end(&mut prefix)
        .map_err(|cause| CryptoError::Open {
            key: art.key.clone(),
            cause,
        })?;
    if prefix.len() > MAX_AGE_HEADER && age_header_end(&prefix).is_none() {
        return Err(CryptoError::HeaderTooLarge {
            key: art.key.escape_debug().to_string(),
        });
    }
    let whole = io::Cursor::new(prefix).chain(raw);
    decode(io::BufReader::with_capacity(256 * 1024, whole), art, ids)
}

/// Stored bytes to raw bytes: decrypted when the manifest says so, then
/// decompressed, never more than the manifest's `raw_bytes`.
fn decode<R: io::BufRead + Send + 'static>(
    stored: R,
    art: &Artifact,
    ids: Option<&Identities>,
) -> Result<Box<dyn Read + Send>, CryptoError> {
    let stored: Box<dyn Read + Send> = match &art.encryption {
        None => Box::new(stored),
        Some(info) => Box::new(decrypt(stored, art, info, ids)?),
    };
    let dec = zstd::stream::read::Decoder::new(stored).map_err(|cause| CryptoError::Open {
        key: art.key.clone(),
        cause,
    })?;
    Ok(Box::new(Capped {
        inner: dec,
        left: art.raw_bytes,
        limit: art.raw_bytes,
        key: art.key.clone(),
    }))
}

/// Fails once more bytes come out than the manifest's `raw_bytes`: a small
/// crafted artifact must not decompress into a full disk.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
    key: String,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(format!(
                "{} decompresses to more than the {} bytes its manifest records",
                self.key.escape_debug(),
                self.limit
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A staged artifact and what it takes to read it, for code that opens it
/// on a blocking thread (possibly twice: tree restores check, then write).
#[derive(Clone)]
pub struct Opener {
    pub path: PathBuf,
    pub art: Artifact,
    pub ids: Option<std::sync::Arc<Identities>>,
    /// Counts the raw bytes read, for the progress line.
    pub progress: Option<std::sync::Arc<crate::progress::Progress>>,
}

impl Opener {
    /// [`open_artifact`] with its error as an `io::Error` carrying the
    /// message (the key, and what is missing or wrong).
    pub fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        let r =
            open_artifact(&self.path, &self.art, self.ids.as_deref()).map_err(io::Error::other)?;
        Ok(match &self.progress {
            Some(p) => Box::new(crate::progress::Counted::new(r, p.clone())),
            None => r,
        })
    }
}

fn decrypt<R: io::BufRead + Send + 'static>(
    input: R,
    art: &Artifact,
    info: &EncryptionInfo,
    ids: Option<&Identities>,
) -> Result<age::stream::StreamReader<R>, CryptoError> {
    if info.format != FORMAT {
        return Err(CryptoError::UnknownFormat {
            key: art.key.clone(),
            format: info.format.escape_debug().to_string(),
        });
    }
    let ids = ids.ok_or_else(|| CryptoError::NoIdentity {
        key: art.key.clone(),
    })?;
    let why = |e: age::DecryptError| CryptoError::Decrypt {
        key: art.key.clone(),
        why: e.to_string(),
    };
    // The buffered parser reads the header line by line; the unbuffered
    // one re-parses it for every few bytes it reads.
    let dec = age::Decryptor::new_buffered(input).map_err(why)?;
    dec.decrypt(ids.keys.iter().map(|k| k as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => CryptoError::WrongIdentity {
                key: art.key.clone(),
                recipients: info
                    .recipients
                    .iter()
                    .map(|r| r.escape_debug().to_string())
                    .collect(),
            },
            other => why(other),
        })
}

/// Whether any of `arts` needs an identity to be read.
pub fn any_encrypted<'a>(arts: impl IntoIterator<Item = &'a Artifact>) -> bool {
    arts.into_iter().any(|a| a.encryption.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn round_trip_and_wrong_identity() {
        let (text, public) = Identities::generate();
        let ids = Identities::parse(&text, Path::new("k")).unwrap();
        let rec = Recipients::parse([public.as_str()]).unwrap();
        let mut w = rec.encrypt(Vec::new()).unwrap();
        w.write_all(b"secret payload").unwrap();
        let sealed = w.finish().unwrap();
        assert!(!sealed.windows(6).any(|x| x == b"secret"));

        let mut out = Vec::new();
        let dec = age::Decryptor::new(&sealed[..]).unwrap();
        dec.decrypt(ids.keys.iter().map(|k| k as &dyn age::Identity))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"secret payload");

        let (other, _) = Identities::generate();
        let other = Identities::parse(&other, Path::new("k")).unwrap();
        let dec = age::Decryptor::new(&sealed[..]).unwrap();
        assert!(matches!(
            dec.decrypt(other.keys.iter().map(|k| k as &dyn age::Identity)),
            Err(age::DecryptError::NoMatchingKeys)
        ));
    }

    #[test]
    fn regression_issue22_age_headers_end_within_the_cap() {
        let (_, public) = Identities::generate();
        let rec = Recipients::parse([public.as_str()]).unwrap();
        let mut w = rec.encrypt(Vec::new()).unwrap();
        w.write_all(&vec![0u8; 100_000]).unwrap();
        let sealed = w.finish().unwrap();
        let end = age_header_end(&sealed).unwrap();
        // One recipient, plus the random "grease" stanza age adds.
        assert!(end < 1024, "{end}");
        assert!(sealed[..end].ends_with(b"\n"));
        assert!(std::str::from_utf8(&sealed[..end])
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .starts_with("--- "));
        let mut bomb = b"age-encryption.org/v1\n".to_vec();
        while bomb.len() <= MAX_AGE_HEADER {
            bomb.extend_from_slice(b"-> X25519 AAAA\nAAAA\n");
        }
        bomb.extend_from_slice(b"--- AAAA\n");
        assert_eq!(age_header_end(&bomb), None);
    }

    #[test]
    fn identities_never_show_in_debug_or_errors() {
        let (text, _) = Identities::generate();
        let secret = text.lines().last().unwrap().to_owned();
        let ids = Identities::parse(&text, Path::new("k")).unwrap();
        assert!(!format!("{ids:?}").contains(&secret));
        let bad = format!("{}\n{}x\n", secret, secret);
        let err = Identities::parse(&bad, Path::new("k"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains(&secret[10..]), "{err}");
    }

    #[test]
    fn recipients_are_checked() {
        assert!(Recipients::parse(["age1nope"]).is_err());
        assert!(Recipients::parse(std::iter::empty()).is_err());
        let (_, public) = Identities::generate();
        let text = format!("# comment\n\n {public} \n");
        let r = Recipients::parse(Recipients::lines(&text)).unwrap();
        assert_eq!(r.strings().len(), 1);
    }
}
