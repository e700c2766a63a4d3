//! Issue 22, fuzzing: the entry points of the fuzz targets in `fuzz/`
//! (run for minutes with `cargo +nightly fuzz run TARGET`), here over a
//! bounded number of proptest inputs so a regression shows in the normal
//! suite. Inputs are the committed seeds with random edits (flipped bytes,
//! insertions, deletions, truncation) and plain random bytes. Each target
//! must return, with an error or a value, never panic; the archive target
//! must also never write anything.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out.sort();
    out
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(i, v)| Edit::Insert(i, v)),
        (any::<usize>(), 1usize..512).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = data.len().max(1);
        match e {
            Edit::Flip(i, b) => {
                if !data.is_empty() {
                    let i = i % data.len();
                    data[i] ^= b | 1;
                }
            }
            Edit::Insert(i, v) => {
                let i = i % (data.len() + 1);
                data.splice(i..i, v.iter().copied());
            }
            Edit::Delete(i, n) => {
                let i = i % len;
                let end = (i + n).min(data.len());
                if i < end {
                    data.drain(i..end);
                }
            }
            Edit::Truncate(i) => data.truncate(i % len),
        }
    }
    data
}

/// A seed with up to eight edits, or plain random bytes.
fn input(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let s = seeds(target);
    let n = s.len();
    prop_oneof![
        4 => (0..n, proptest::collection::vec(edit(), 0..8))
            .prop_map(move |(i, edits)| apply(s[i].clone(), &edits)),
        1 => proptest::collection::vec(any::<u8>(), 0..2048),
    ]
}

/// What the tar_check target passes: a dry run, which writes nothing.
fn dry_run(validate_rrd: bool) -> ccbackup::restore::extract::ExtractOptions {
    ccbackup::restore::extract::ExtractOptions {
        force: false,
        include: Vec::new(),
        validate_rrd,
        dry_run: true,
        same_owner: false,
        check_room: false,
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifest_parser_never_panics(data in input("manifest")) {
        let key = "job/20261201T020000Z-abcdef/manifest.json";
        if let Ok(m) = ccbackup::repo::manifest::parse(&data, key) {
            let _ = ccbackup::repo::manifest::check_location(&m, "job", "20261201T020000Z-abcdef");
            let _ = (m.stored_bytes(), m.raw_bytes(), m.source_names());
        }
    }

    #[test]
    fn archive_check_never_panics_or_writes(data in input("tar_check")) {
        let scratch = tempfile::tempdir().unwrap();
        let dest = scratch.path().join("dest");
        let opts = dry_run(true);
        let _ = ccbackup::restore::extract::extract_tree(&data[..], &dest, &opts);
        prop_assert!(!Path::new(&dest).exists(), "a dry run created the destination");
        prop_assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
    }

    #[test]
    fn row_counter_never_panics(data in input("pgcount"), chunk in 1usize..4096) {
        let mut counter = ccbackup::backup::source::pgcount::RowCounter::new();
        for piece in data.chunks(chunk) {
            counter.feed(piece);
        }
        let _ = counter.finish();
    }

    #[test]
    fn toc_listing_and_table_selection_never_panic(data in input("toc_select")) {
        let text = String::from_utf8_lossy(&data);
        if let Ok(entries) = ccbackup::pg::toc_list::parse(&text) {
            let _ = ccbackup::restore::select::select(&entries, &toc_request(), &ccbackup::restore::select::TargetFacts::new_database());
        }
    }

    #[test]
    fn globals_checker_never_panics(data in input("globals")) {
        if let Ok(checked) = ccbackup::restore::globals::check_all(std::io::Cursor::new(&data)) {
            for c in &checked {
                let _ = ccbackup::restore::globals::redacted(&c.stmt);
            }
        }
    }
}

/// What the `toc_select` target asks for: a table and a whole schema.
fn toc_request() -> ccbackup::restore::select::TableRequest {
    ccbackup::restore::select::TableRequest {
        tables: vec![("app".into(), "racks".into())],
        schemas: vec!["public".into()],
    }
}

fn age_fixture() -> &'static (tempfile::TempDir, ccbackup::crypto::Identities) {
    static F: std::sync::OnceLock<(tempfile::TempDir, ccbackup::crypto::Identities)> =
        std::sync::OnceLock::new();
    F.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/fixture-age-identity.txt");
        std::fs::copy(src, &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ids = ccbackup::crypto::Identities::load(&path).unwrap();
        (dir, ids)
    })
}

/// What the age_artifact target does: open an encrypted artifact and read
/// it to the end; the number of bytes that came out.
fn open_encrypted(data: &[u8]) -> Result<usize, String> {
    use std::io::Read;
    let (dir, ids) = age_fixture();
    let scratch = tempfile::tempdir_in(dir.path()).unwrap();
    let path = scratch.path().join("artifact");
    std::fs::write(&path, data).unwrap();
    let art = ccbackup::repo::manifest::Artifact {
        key: "etc.tar.zst".into(),
        source: "etc".into(),
        kind: ccbackup::repo::manifest::ArtifactKind::FilesTar,
        raw_bytes: 1 << 20,
        stored_bytes: data.len() as u64,
        sha256: "0".repeat(64),
        compression: ccbackup::repo::manifest::Compression {
            algorithm: "zstd".into(),
            level: 3,
        },
        detail: None,
        encryption: Some(ccbackup::repo::manifest::EncryptionInfo {
            format: "age".into(),
            recipients: vec![
                "age1mln304cmqa5sfuhgk8dpgqt0nces95m8t824g7hrjhcyw8j7m5nsnqggqx".into(),
            ],
        }),
    };
    let mut r =
        ccbackup::crypto::open_artifact(&path, &art, Some(ids)).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out.len())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn lease_parser_never_panics(data in input("lease")) {
        if let ccbackup::repo::lock::LeaseContent::Lease(l) =
            ccbackup::repo::lock::parse_lease(&data)
        {
            let _ = l.describe();
        }
    }

    #[test]
    fn encrypted_artifacts_never_panic(data in input("age_artifact")) {
        let _ = open_encrypted(&data);
    }
}

/// The seeds themselves are what they claim: each parses, so the edits
/// above start from valid input and reach the deep parts of each parser.
#[test]
fn seeds_are_valid_inputs() {
    for s in seeds("manifest") {
        ccbackup::repo::manifest::parse(&s, "j/20260101T000000Z-abcdef/manifest.json").unwrap();
    }
    for s in seeds("pgcount") {
        let mut c = ccbackup::backup::source::pgcount::RowCounter::new();
        c.feed(&s);
        assert!(!c.finish().unwrap().is_empty());
    }
    for s in seeds("globals") {
        assert!(
            !ccbackup::restore::globals::check_all(std::io::Cursor::new(&s))
                .unwrap()
                .is_empty()
        );
    }
    for s in seeds("toc_select") {
        let entries = ccbackup::pg::toc_list::parse(&String::from_utf8_lossy(&s)).unwrap();
        let sel = ccbackup::restore::select::select(
            &entries,
            &toc_request(),
            &ccbackup::restore::select::TargetFacts::new_database(),
        )
        .unwrap();
        assert!(!sel.applied.is_empty() && !sel.left_out.is_empty());
    }
    for s in seeds("lease") {
        assert!(matches!(
            ccbackup::repo::lock::parse_lease(&s),
            ccbackup::repo::lock::LeaseContent::Lease(_)
        ));
    }
    for s in seeds("age_artifact") {
        assert!(open_encrypted(&s).unwrap() > 0);
    }
    for s in seeds("tar_check") {
        let scratch = tempfile::tempdir().unwrap();
        let opts = dry_run(false);
        let report =
            ccbackup::restore::extract::extract_tree(&s[..], &scratch.path().join("d"), &opts)
                .unwrap();
        assert!(report.written > 0);
    }
}
