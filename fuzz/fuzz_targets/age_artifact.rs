//! An encrypted artifact from the store: the header cap, age's header
//! parser and stream decryption, then zstd, read to the end under the
//! manifest's raw size.
#![no_main]
use std::io::Read;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

use ccbackup::crypto::{open_artifact, Identities};
use ccbackup::repo::manifest::{Artifact, ArtifactKind, Compression, EncryptionInfo};

const RECIPIENT: &str = "age1mln304cmqa5sfuhgk8dpgqt0nces95m8t824g7hrjhcyw8j7m5nsnqggqx";

struct Fixture {
    dir: tempfile::TempDir,
    ids: Identities,
    recipient: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        // The seeds in seeds/age_artifact are encrypted to this identity.
        let identity = include_str!("../fixture-age-identity.txt");
        let recipient = RECIPIENT.to_owned();
        let path = dir.path().join("identity");
        std::fs::write(&path, identity).expect("write identity");
        std::fs::set_permissions(
            &path,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod identity");
        let ids = Identities::load(&path).expect("load identity");
        Fixture { dir, ids, recipient }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let path = f.dir.path().join("artifact");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let art = Artifact {
        key: "etc.tar.zst".into(),
        source: "etc".into(),
        kind: ArtifactKind::FilesTar,
        raw_bytes: 1 << 20,
        stored_bytes: data.len() as u64,
        sha256: "0".repeat(64),
        compression: Compression {
            algorithm: "zstd".into(),
            level: 3,
        },
        detail: None,
        encryption: Some(EncryptionInfo {
            format: "age".into(),
            recipients: vec![f.recipient.clone()],
        }),
    };
    if let Ok(mut r) = open_artifact(&path, &art, Some(&f.ids)) {
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
});
