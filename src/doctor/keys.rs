//! Secret and key files a job reads: there, readable, and private.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{About, Check};
use crate::config::{JobConfig, SourceKind};
use crate::repo::signing::SigningKeys;

/// Key files are small; anything bigger is not one.
const MAX_KEY_FILE: u64 = 1024 * 1024;

pub(super) fn check(job: &str, cfg: &JobConfig, signing: Option<&SigningKeys>) -> Vec<Check> {
    let mut out = Vec::new();
    let about = About::new(job, "signing");
    out.push(match signing.and_then(|s| s.verifier.as_ref()) {
        Some(v) => about.ok(
            "authenticated",
            format!("only manifests signed by {} count", v.to_base64()),
        ),
        None => about.info(
            "authenticated",
            format!("NOT AUTHENTICATED: {}", crate::repo::signing::UNSIGNED_RISK),
        ),
    });
    if let Some(enc) = &cfg.encryption {
        let about = About::new(job, "encryption");
        match &enc.identity_file {
            // Read when a restore needs it, by the user ccbackup then runs as.
            Some(f) => out.extend(secret_file(&about, "identity_file", f, read_now(f))),
            None => out.push(about.info(
                "identity_file",
                "none configured: restore and verify --restore-test need --identity",
            )),
        }
    }
    for s in &cfg.sources {
        if let SourceKind::Postgres(pg) = &s.kind {
            if let Some(f) = &pg.password_file {
                let about = About::new(job, format!("source {}", s.name));
                // Read with the configuration, before --user dropped root:
                // what counts is whether that worked, not whether this
                // user could read it again.
                let read = match &pg.password_unreadable {
                    None => Ok(()),
                    Some(why) => Err(why.clone()),
                };
                out.extend(secret_file(&about, "password_file", f, read));
            }
        }
    }
    out
}

/// Reads `path` as the current user, as a restore will.
fn read_now(path: &Path) -> Result<(), String> {
    let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if m.len() > MAX_KEY_FILE {
        return Err(format!(
            "{}: {} bytes, too large for a key file",
            path.display(),
            m.len()
        ));
    }
    std::fs::read(path)
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `read`: whether the file could be read when it has to be.
fn secret_file(about: &About, what: &str, path: &Path, read: Result<(), String>) -> Vec<Check> {
    let meta = match read
        .and_then(|()| std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display())))
    {
        Ok(m) => m,
        Err(e) => {
            return vec![about.fail(
            &format!("{what} readable"),
            e,
            "mount the secret (docker secrets) at that path, readable by the user ccbackup runs as",
        )]
        }
    };
    let mode = meta.permissions().mode();
    vec![
        about.ok(&format!("{what} readable"), path.display().to_string()),
        if is_private(mode) {
            about.ok(
                &format!("{what} private"),
                format!("mode {:04o}", mode & 0o7777),
            )
        } else {
            about.fail(
                &format!("{what} private"),
                format!(
                    "{} has mode {:04o}: group or others can read it",
                    path.display(),
                    mode & 0o7777
                ),
                format!("chmod 600 {}", path.display()),
            )
        },
    ]
}

/// Only the owner may read or write a secret.
fn is_private(mode: u32) -> bool {
    mode & 0o077 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_means_no_group_or_other_bits() {
        assert!(is_private(0o100600));
        assert!(is_private(0o400));
        assert!(!is_private(0o640));
        assert!(!is_private(0o604));
    }
}
