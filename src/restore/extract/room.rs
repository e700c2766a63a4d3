//! Whether a tree fits its destination's file system before anything is
//! written. Bytes alone are not enough: an archive of a few hundred KiB can
//! hold hundreds of thousands of empty directories, each costing an inode
//! and a block, so entries are counted against free blocks *and* inodes.

use std::path::Path;

/// Room kept free beyond what the tree needs, so a restore never fills the
/// file system to the last block.
pub const MARGIN_BYTES: u64 = 64 * 1024 * 1024;

/// What the tree will take: from the check pass over the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

/// What the destination's file system has free for an unprivileged user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Free {
    pub bytes: u64,
    pub block: u64,
    /// `None` where the file system has no inode limit (it reports none).
    pub inodes: Option<u64>,
}

/// Pure: `Ok` when the tree fits, else why not. Every file and directory
/// is counted as at least one block (and a file's partial last block as
/// one more), plus [`MARGIN_BYTES`]; every entry, plus the staging
/// directory, as one inode.
pub fn decide(need: Need, free: Free) -> Result<(), String> {
    let entries = need.files.saturating_add(need.dirs);
    let blocks = entries.saturating_mul(free.block.max(1));
    let bytes = need
        .bytes
        .saturating_add(blocks)
        .saturating_add(MARGIN_BYTES);
    if bytes > free.bytes {
        return Err(format!(
            "{} files and {} directories need at least {} (their content plus one {}-byte block \
             each, and a {} margin) but only {} are free",
            need.files,
            need.dirs,
            crate::progress::human(bytes),
            free.block,
            crate::progress::human(MARGIN_BYTES),
            crate::progress::human(free.bytes)
        ));
    }
    if let Some(inodes) = free.inodes {
        let want = entries.saturating_add(1);
        if want > inodes {
            return Err(format!(
                "{} files and {} directories need {want} inodes but only {inodes} are free",
                need.files, need.dirs
            ));
        }
    }
    Ok(())
}

/// The free room of the file system holding `dir` (or its nearest existing
/// ancestor: the destination may not exist yet).
pub fn free_at(dir: &Path) -> std::io::Result<(Free, std::path::PathBuf)> {
    let mut probe = dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => break,
        }
    }
    let st = rustix::fs::statvfs(probe)?;
    Ok((
        Free {
            bytes: st.f_bavail.saturating_mul(st.f_frsize),
            block: st.f_frsize,
            inodes: (st.f_files > 0).then_some(st.f_favail),
        },
        probe.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn free(bytes: u64, inodes: Option<u64>) -> Free {
        Free {
            bytes,
            block: 4096,
            inodes,
        }
    }

    #[test]
    fn regression_issue22_empty_directories_cost_blocks_and_inodes() {
        let dirs = Need {
            files: 0,
            dirs: 300_000,
            bytes: 0,
        };
        // 300k empty directories: no content, but 1.2 GB of blocks.
        let err = decide(dirs, free(GIB, None)).unwrap_err();
        assert!(err.contains("300000 directories"), "{err}");
        assert!(decide(dirs, free(2 * GIB, None)).is_ok());
        let err = decide(dirs, free(2 * GIB, Some(100_000))).unwrap_err();
        assert!(err.contains("300001 inodes but only 100000"), "{err}");
        assert!(decide(dirs, free(2 * GIB, Some(300_001))).is_ok());
    }

    #[test]
    fn content_and_margin_count_too() {
        let one = Need {
            files: 1,
            dirs: 0,
            bytes: GIB,
        };
        assert!(decide(one, free(GIB + MARGIN_BYTES, Some(10))).is_err());
        assert!(decide(one, free(GIB + MARGIN_BYTES + 4096, Some(10))).is_ok());
        let huge = Need {
            files: u64::MAX,
            dirs: u64::MAX,
            bytes: u64::MAX,
        };
        assert!(decide(huge, free(u64::MAX - 1, None)).is_err());
    }
}
