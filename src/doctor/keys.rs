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
            Some(f) => out.extend(secret_file(&about, "identity_file", f)),
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
                out.extend(secret_file(&about, "password_file", f));
            }
        }
    }
    out
}

fn secret_file(about: &About, what: &str, path: &Path) -> Vec<Check> {
    let read = std::fs::metadata(path).and_then(|m| {
        if m.len() > MAX_KEY_FILE {
            return Err(std::io::Error::other(format!(
                "{} bytes, too large for a key file",
                m.len()
            )));
        }
        std::fs::read(path).map(|_| m)
    });
    let meta = match read {
        Ok(m) => m,
        Err(e) => {
            return vec![about.fail(
            &format!("{what} readable"),
            format!("{}: {e}", path.display()),
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
