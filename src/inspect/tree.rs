//! Listing a tree artifact: the tar headers, read through restore's
//! metadata cap and path rules, never the file contents (the tar reader
//! skips them).

use std::io::Read;
use std::os::unix::ffi::OsStrExt;

use tar::EntryType;

use super::{EntryKind, Item, LsError, TreeEntry, MAX_ENTRIES};
use crate::repo::manifest::Artifact;
use crate::restore::extract::{entry_path, Selection};
use crate::restore::tarcap::TarCap;

/// How many entries a tree artifact may hold before listing stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cap {
    pub(super) max: u64,
    /// What the manifest records (files, directories and symlinks).
    pub(super) recorded: Option<u64>,
}

/// Pure: the manifest's count (plus the root directory entry) when it has
/// one, never more than [`MAX_ENTRIES`].
pub(super) fn entry_cap(a: &Artifact) -> Cap {
    let recorded = a
        .tree()
        .map(|t| t.files.saturating_add(t.dirs).saturating_add(t.symlinks));
    let max = recorded.map_or(MAX_ENTRIES, |n| n.saturating_add(1).min(MAX_ENTRIES));
    Cap { max, recorded }
}

/// Walks the tar stream `r`, handing each selected entry to `emit` (which
/// returns false once nobody listens).
pub(super) fn list(
    r: impl Read,
    art: &Artifact,
    select: &Selection,
    cap: Cap,
    mut emit: impl FnMut(Item) -> bool,
) -> Result<(), LsError> {
    let read_err = |cause| LsError::Read {
        key: art.key.clone(),
        cause,
    };
    let mut archive = tar::Archive::new(TarCap::new(r));
    let mut seen = 0u64;
    for entry in archive.entries().map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        seen += 1;
        if seen > cap.max {
            return Err(LsError::TooMany {
                key: art.key.clone(),
                max: cap.max,
                recorded: cap.recorded,
            });
        }
        let raw = entry.path().map_err(read_err)?;
        let rel = entry_path(&raw).map_err(|source| LsError::Entry {
            key: art.key.clone(),
            source,
        })?;
        let Some(rel) = rel else { continue };
        if !select.selects(&rel) {
            continue;
        }
        let h = entry.header();
        let kind = kind_of(h.entry_type());
        let link = match kind {
            EntryKind::Symlink | EntryKind::HardLink => {
                entry.link_name_bytes().map(|b| b.into_owned())
            }
            _ => None,
        };
        let item = TreeEntry {
            path: rel.as_os_str().as_bytes().to_vec(),
            kind,
            size: if kind == EntryKind::File {
                entry.size()
            } else {
                0
            },
            mode: h.mode().map_err(read_err)? & 0o7777,
            uid: h.uid().ok(),
            gid: h.gid().ok(),
            mtime: h.mtime().map_err(read_err)?,
            link,
        };
        if !emit(Item::Tree(item)) {
            break;
        }
    }
    Ok(())
}

fn kind_of(t: EntryType) -> EntryKind {
    match t {
        EntryType::Regular | EntryType::Continuous => EntryKind::File,
        EntryType::Directory => EntryKind::Dir,
        EntryType::Symlink => EntryKind::Symlink,
        EntryType::Link => EntryKind::HardLink,
        EntryType::Fifo => EntryKind::Fifo,
        EntryType::Char => EntryKind::CharDevice,
        EntryType::Block => EntryKind::BlockDevice,
        _ => EntryKind::Other,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::repo::manifest::{ArtifactDetail, TreeInfo};

    /// An empty artifact of `kind`, zstd level 3, with no detail and no
    /// encryption: what the listers' tests vary starts from here.
    pub(in crate::inspect) fn empty_artifact(
        key: &str,
        source: &str,
        kind: crate::repo::manifest::ArtifactKind,
    ) -> Artifact {
        Artifact {
            key: key.into(),
            source: source.into(),
            kind,
            raw_bytes: 0,
            stored_bytes: 0,
            sha256: String::new(),
            compression: crate::repo::manifest::Compression {
                algorithm: "zstd".into(),
                level: 3,
            },
            detail: None,
            encryption: None,
        }
    }

    fn art(recorded: Option<u64>) -> Artifact {
        Artifact {
            detail: recorded.map(|n| {
                ArtifactDetail::Tree(TreeInfo {
                    root: "/r".into(),
                    files: n,
                    ..Default::default()
                })
            }),
            ..empty_artifact(
                "t.tar.zst",
                "t",
                crate::repo::manifest::ArtifactKind::FilesTar,
            )
        }
    }

    fn tar_of(names: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in names {
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..n.len()].copy_from_slice(n);
            h.set_size(1);
            h.set_mode(0o640);
            h.set_mtime(1_700_000_000);
            h.set_entry_type(EntryType::Regular);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(&[b'x'; 512]);
        }
        out.extend_from_slice(&[0; 1024]);
        out
    }

    fn names(data: &[u8], globs: &[&str], cap: Cap) -> Result<Vec<Vec<u8>>, LsError> {
        let select =
            Selection::new(&globs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let mut got = Vec::new();
        list(data, &art(None), &select, cap, |i| {
            if let Item::Tree(e) = i {
                got.push(e.path);
            }
            true
        })?;
        Ok(got)
    }

    #[test]
    fn bytes_come_through_exactly_and_globs_select() {
        let data = tar_of(&[b"a:b c", b"d/\xff\x1b[2J", b"d/x.rrd"]);
        let free = Cap {
            max: 10,
            recorded: None,
        };
        assert_eq!(
            names(&data, &[], free).unwrap(),
            vec![
                b"a:b c".to_vec(),
                b"d/\xff\x1b[2J".to_vec(),
                b"d/x.rrd".to_vec()
            ]
        );
        assert_eq!(
            names(&data, &["**.rrd"], free).unwrap(),
            vec![b"d/x.rrd".to_vec()]
        );
    }

    #[test]
    fn entry_counts_are_capped_by_the_manifest() {
        assert_eq!(entry_cap(&art(Some(2))).max, 3);
        assert_eq!(entry_cap(&art(None)).max, MAX_ENTRIES);
        assert_eq!(entry_cap(&art(Some(u64::MAX))).max, MAX_ENTRIES);
        let data = tar_of(&[b"a", b"b", b"c", b"d"]);
        let err = names(&data, &[], entry_cap(&art(Some(2)))).unwrap_err();
        assert!(matches!(err, LsError::TooMany { max: 3, .. }), "{err}");
    }

    proptest::proptest! {
        /// Any edit of a real archive is listed or refused, never a panic,
        /// and never more entries than the cap.
        #[test]
        fn edited_archives_never_panic_or_pass_the_cap(
            edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 0..12)
        ) {
            let mut data = tar_of(&[b"a", b"dir/b:c", b"d\xff"]);
            for (at, byte) in edits {
                let at = at % data.len();
                data[at] = byte;
            }
            let cap = Cap { max: 2, recorded: Some(1) };
            let mut n = 0u64;
            let _ = list(&data[..], &art(Some(1)), &Selection::new(&[]).unwrap(), cap, |_| {
                n += 1;
                true
            });
            proptest::prop_assert!(n <= 2);
        }
    }

    #[test]
    fn paths_restore_refuses_stop_the_listing() {
        let data = tar_of(&[b"ok", b"../../etc/passwd"]);
        let err = names(
            &data,
            &[],
            Cap {
                max: 10,
                recorded: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains(".."), "{err}");
    }
}
