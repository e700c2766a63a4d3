//! A tree source's directory: there, readable, and (RRD) its files take
//! the read lock a backup takes.

use std::path::{Path, PathBuf};

use super::{About, Check};
use crate::backup::source::rrd;

/// RRD files tried for the lock; enough to show locking works on this file
/// system without walking 50,000 files.
const LOCK_SAMPLE: usize = 5;
/// Directory entries looked at while searching for them.
const SEARCH_LIMIT: usize = 2000;

pub(super) fn check(about: &About, path: &Path, is_rrd: bool) -> Vec<Check> {
    let mut out = Vec::new();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => out.push(about.ok("exists", path.display().to_string())),
        Ok(_) => {
            out.push(about.fail(
                "exists",
                format!("{} is not a directory", path.display()),
                "point the source's path at the directory (volume mount) to back up",
            ));
            return out;
        }
        Err(e) => {
            out.push(about.fail(
                "exists",
                format!("{}: {e}", path.display()),
                "mount the volume or fix the source's path; after a disaster `ccbackup restore --source NAME` brings it back",
            ));
            return out;
        }
    }
    match std::fs::read_dir(path).and_then(|mut d| d.next().transpose()) {
        Ok(_) => out.push(about.ok("readable", "listed")),
        Err(e) => {
            out.push(about.fail(
                "readable",
                format!("{}: {e}", path.display()),
                "ccbackup's user must read it: see --user and --keep-read-access",
            ));
            return out;
        }
    }
    if is_rrd {
        out.push(lockable(about, path));
    }
    out
}

fn lockable(about: &About, root: &Path) -> Check {
    let files = sample_rrd_files(root);
    if files.is_empty() {
        return about.info("lockable", "no .rrd files yet");
    }
    let timeout = std::time::Duration::from_secs(2);
    for f in &files {
        if let Err(e) = rrd::probe_lock(f, timeout) {
            return about.fail(
                "lockable",
                crate::error::chain(&e).to_string(),
                "ccbackup takes an OFD read lock (fcntl) on each file: the file system must support it and the file be readable",
            );
        }
    }
    about.ok(
        "lockable",
        format!(
            "took and released the read lock on {} .rrd files",
            files.len()
        ),
    )
}

/// Up to [`LOCK_SAMPLE`] regular `*.rrd` files under `root`, depth first,
/// never following symlinks.
fn sample_rrd_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            seen += 1;
            if found.len() >= LOCK_SAMPLE || seen > SEARCH_LIMIT {
                return found;
            }
            let Ok(t) = e.file_type() else { continue };
            let p = e.path();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() && p.extension().is_some_and(|x| x == "rrd") {
                found.push(p);
            }
        }
    }
    found
}
