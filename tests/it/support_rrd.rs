//! Helpers for RRD tests: real files made by the `rrdtool` CLI, shaped like
//! Concertim's (testing.md "RRD files"), in Concertim's directory layout.
//!
//! `rrdtool` must be installed (`apt-get install rrdtool`); without it every
//! test using these helpers fails with a message saying so, never passes.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// First timestamp of every file; updates continue from here in 15 s steps.
pub const START: u64 = 1_700_000_000;
pub const STEP: u64 = 15;
/// `rrdtool create` sizes quoted in design.md.
pub const SIZE_1DS: u64 = 66_760;
pub const SIZE_2DS: u64 = 132_224;

/// Panics (fails the test) when rrdtool is missing, with the fix.
pub fn require_rrdtool() {
    let ok = Command::new("rrdtool")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "rrdtool is required for the RRD tests and was not found: apt-get install -y rrdtool"
    );
}

/// `rrdtool create` with Concertim's step and archives, one DS per name.
pub fn create(path: &Path, ds_names: &[&str]) {
    require_rrdtool();
    if let Err(e) = try_create(path, ds_names) {
        panic!("rrdtool create {}: {e}", path.display());
    }
}

/// [`create`] for background loops, where a panic would only be noise.
pub fn try_create(path: &Path, ds_names: &[&str]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let mut cmd = Command::new("rrdtool");
    cmd.arg("create")
        .arg(path)
        .args(["--start", &START.to_string(), "--step", &STEP.to_string()]);
    for ds in ds_names {
        cmd.arg(format!("DS:{ds}:GAUGE:120:U:U"));
    }
    for cf in ["AVERAGE", "MIN", "MAX"] {
        for (steps, rows) in [(1, 240), (20, 288), (240, 2160)] {
            cmd.arg(format!("RRA:{cf}:0.5:{steps}:{rows}"));
        }
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// One `rrdtool update` call carrying `count` samples after `after`;
/// returns the last timestamp written. Returns None if rrdtool failed (for
/// instance because the file was locked), so background loops can go on.
pub fn update(path: &Path, after: u64, count: u64, ds_count: usize) -> Option<u64> {
    let mut cmd = Command::new("rrdtool");
    cmd.arg("update").arg(path);
    let mut t = after;
    for i in 0..count {
        t += STEP;
        let values: Vec<String> = (0..ds_count)
            .map(|d| format!("{}", i * 7 + d as u64))
            .collect();
        cmd.arg(format!("{t}:{}", values.join(":")));
    }
    let out = cmd.output().ok()?;
    out.status.success().then_some(t)
}

/// Whether `rrdtool info` accepts the file.
pub fn info_ok(path: &Path) -> Result<(), String> {
    let out = Command::new("rrdtool")
        .arg("info")
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A metric file with its DS count, relative to the tree root.
#[derive(Debug, Clone)]
pub struct RrdFile {
    pub rel: PathBuf,
    pub ds: usize,
}

/// Names Concertim produces: free-form metric names with spaces, unicode and
/// `:`; devices named by uuid.
pub const METRICS: &[&str] = &[
    "ct.capacity.rack",
    "power usage (W)",
    "température °C",
    "load: 1 min",
];

/// Builds `unspecified/device:<uuid>/<metric>.rrd` for `devices` devices
/// (1 DS each) and `unspecified/__SummaryInfo__/<metric>.rrd` (2 DS each).
pub fn concertim_tree(root: &Path, devices: usize, metrics_per_device: usize) -> Vec<RrdFile> {
    let mut files = Vec::new();
    for d in 0..devices {
        let uuid = format!("{d:08x}-5c1e-4e4b-9d2a-{:012x}", d * 7919);
        for m in METRICS.iter().take(metrics_per_device) {
            let rel = PathBuf::from("unspecified")
                .join(format!("device:{uuid}"))
                .join(format!("{m}.rrd"));
            create(&root.join(&rel), &["sum"]);
            files.push(RrdFile { rel, ds: 1 });
        }
    }
    for m in ["ct.capacity.rack", "power usage (W)"] {
        let rel = PathBuf::from("unspecified/__SummaryInfo__").join(format!("{m}.rrd"));
        create(&root.join(&rel), &["sum", "num"]);
        files.push(RrdFile { rel, ds: 2 });
    }
    files
}

/// A whole-file lock held until drop.
pub struct HeldLock {
    file: File,
    cmd: libc::c_int,
}

fn set_lock(file: &File, cmd: libc::c_int, l_type: libc::c_int) -> std::io::Result<()> {
    // SAFETY: all-zero is a valid flock; fd and pointer valid for the call.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Unlock explicitly rather than by closing: a child forked by a
        // concurrent test can briefly share this open file description and
        // would otherwise keep an OFD lock alive after our close.
        let _ = set_lock(&self.file, self.cmd, libc::F_UNLCK);
    }
}

/// Takes a whole-file lock of `l_type` with `cmd` (F_OFD_SETLK or F_SETLK)
/// on a fresh descriptor, like a writer would.
pub fn lock_file(path: &Path, cmd: libc::c_int, l_type: libc::c_int) -> HeldLock {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    if let Err(e) = set_lock(&file, cmd, l_type) {
        panic!("lock {}: {e}", path.display());
    }
    HeldLock { file, cmd }
}

/// Relative paths and kinds of everything under `root`, sorted.
pub fn list_tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let child = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                stack.push(child.clone());
            }
            out.push(child);
        }
    }
    out.sort();
    out
}

pub fn name_bytes(p: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    OsStr::as_bytes(p.as_os_str())
}

/// How many descriptors of this process are open on `path` (an
/// absolute, symlink-free path): how a test sees that code in another
/// thread has opened a file, without hooks in that code.
pub fn open_descriptors(path: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == path))
        .count()
}
