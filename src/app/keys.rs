//! `keys generate`: key material for operators who have neither `age` nor
//! `minisign` installed.

use super::out::say;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::*;

pub(super) fn generate(dir: &Path) -> Result<(), AppError> {
    let (identity, recipient) = crate::crypto::Identities::generate();
    let (secret, public, public_b64) = crate::repo::signing::generate().map_err(failed)?;
    let files: [(&str, String, u32); 4] = [
        ("age-identity.txt", identity, 0o600),
        ("age-recipient.txt", format!("{recipient}\n"), 0o644),
        ("minisign.key", secret, 0o600),
        ("minisign.pub", public, 0o644),
    ];
    // Refuse before writing anything: half a new key set next to an old
    // one is how keys get mixed up.
    for (name, _, _) in &files {
        let p = dir.join(name);
        if p.exists() {
            return Err(failed(anyhow::anyhow!(
                "{} exists; keys generate never overwrites keys (choose an empty directory)",
                p.display()
            )));
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| failed(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
    for (name, text, mode) in &files {
        let p = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(*mode)
            .open(&p)
            .map_err(|e| failed(anyhow::anyhow!("cannot create {}: {e}", p.display())))?;
        // Explicitly: the process umask (077) would make the public files
        // private too.
        f.set_permissions(std::fs::Permissions::from_mode(*mode))
            .and_then(|()| f.write_all(text.as_bytes()))
            .and_then(|()| f.sync_all())
            .map_err(|e| failed(anyhow::anyhow!("cannot write {}: {e}", p.display())))?;
    }
    say!("wrote keys to {}", dir.display());
    say!(
        "  age-identity.txt   SECRET: decrypts backups; keep it offline, not on the backed-up host"
    );
    say!("  age-recipient.txt  public: {recipient}");
    say!("  minisign.key       SECRET: the sidecar signs manifests with it (signing.secret_key_file)");
    say!("  minisign.pub       public: {public_b64} (signing.public_key)");
    Ok(())
}
