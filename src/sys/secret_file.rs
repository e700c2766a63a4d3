//! Reading a file that holds a secret key. Like ssh with a private key,
//! ccbackup refuses one that group or others may read or write: whoever can
//! read an identity can read every backup, whoever can read the signing
//! key can forge them.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Largest key file read; real ones are a few hundred bytes per key.
pub const MAX_SECRET_FILE: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The mode lets group or others in; `chmod` fixes it.
    #[error("it is accessible by group or others (mode {mode:04o}); a secret key must be private: run `chmod 600 {path}`")]
    Exposed { path: String, mode: u32 },
    #[error("it is larger than {MAX_SECRET_FILE} bytes, which no key file is")]
    TooLarge,
}

/// Pure: whether `mode` keeps the file private to its owner.
pub fn is_private(mode: u32) -> bool {
    mode & 0o077 == 0
}

/// Reads the key file at `path` after checking, on the open file (so the
/// file checked is the file read), that only its owner may use it.
pub fn read(path: &Path) -> Result<String, SecretFileError> {
    let f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    let mode = meta.permissions().mode() & 0o7777;
    if !is_private(mode) {
        return Err(SecretFileError::Exposed {
            path: path.display().to_string(),
            mode,
        });
    }
    let mut text = String::new();
    f.take(MAX_SECRET_FILE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(SecretFileError::TooLarge);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owner_modes_are_private() {
        for m in [0o600, 0o400, 0o700, 0o4600] {
            assert!(is_private(m), "{m:o}");
        }
        for m in [0o640, 0o604, 0o644, 0o660, 0o610, 0o601, 0o444] {
            assert!(!is_private(m), "{m:o}");
        }
    }
}
