//! Tree restores are all or nothing, with archives crafted the way an
//! attacker with write access to the bucket would: clashes between entries,
//! duplicate paths, names the file system refuses, a disk that fills up,
//! owners and setuid bits that must not be trusted.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ccbackup::restore::extract::{
    extract_tree_checked, ExtractError, ExtractOptions, ExtractReport,
};

use crate::support::*;

/// A tar archive built entry by entry, with GNU headers (long names
/// become GNU long-name entries).
struct Tar(tar::Builder<Vec<u8>>);

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn file(self, path: impl AsRef<Path>, data: &[u8]) -> Tar {
        self.file_owned(path, data, 0o644, 0)
    }

    fn file_owned(mut self, path: impl AsRef<Path>, data: &[u8], mode: u32, uid: u64) -> Tar {
        let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(uid);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    fn dir(self, path: &str, mode: u32) -> Tar {
        self.dir_owned(path, mode, 0)
    }

    fn dir_owned(mut self, path: &str, mode: u32, uid: u64) -> Tar {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        h.set_uid(uid);
        h.set_gid(uid);
        self.0.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    fn link(mut self, path: &str, target: &Path) -> Tar {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// Every entry below `root` (hidden ones too, so a leftover staging
/// directory shows) with its kind, mode, owner and content.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let child = rel.join(e.file_name());
            let p = root.join(&child);
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {:?}", std::fs::read_link(&p).unwrap())
            } else if m.is_dir() {
                stack.push(child.clone());
                format!("dir {:o} uid {}", m.mode() & 0o7777, m.uid())
            } else {
                let data = std::fs::read(&p).unwrap();
                format!(
                    "file {:o} uid {} {:?}",
                    m.mode() & 0o7777,
                    m.uid(),
                    String::from_utf8_lossy(&data[..data.len().min(64)])
                )
            };
            out.insert(child, what);
        }
    }
    out
}

fn checked(tar: &[u8], dest: &Path, opts: &ExtractOptions) -> Result<ExtractReport, ExtractError> {
    extract_tree_checked(|| Ok(tar), dest, opts)
}

/// A destination with something in it, to check it is left exactly so.
fn populated_dest(dir: &Path) -> PathBuf {
    let dest = dir.join("dest");
    std::fs::create_dir_all(dest.join("old dir")).unwrap();
    std::fs::write(dest.join("keep.txt"), b"theirs").unwrap();
    std::fs::write(dest.join("old dir/inner"), b"theirs too").unwrap();
    dest
}

/// Runs `f` on a thread whose umask (and only its) is `mask`: the binary
/// runs with a strict umask, and restored modes must not depend on it.
fn with_umask<T: Send>(mask: libc::mode_t, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: plain syscalls; CLONE_FS gives this thread its own
            // umask instead of changing the whole test process's.
            let rc = unsafe { libc::unshare(libc::CLONE_FS) };
            assert_eq!(rc, 0, "unshare(CLONE_FS): {}", io::Error::last_os_error());
            unsafe { libc::umask(mask) };
            f()
        })
        .join()
        .unwrap()
    })
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn symlink_then_child_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = populated_dest(dir.path());
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let before = snapshot(&dest);
    let tar = Tar::new()
        .file("a.txt", b"ours")
        .link("lnk", &outside)
        .file("lnk/x", b"pwned")
        .finish();
    let err = checked(&tar, &dest, &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, ExtractError::UnsafePath { .. }), "{err:?}");
    assert!(err.to_string().contains("lnk/x"), "{err}");
    assert_eq!(snapshot(&dest), before);
    assert!(snapshot(&outside).is_empty());
}

#[test]
fn file_used_as_directory_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = populated_dest(dir.path());
    let before = snapshot(&dest);
    let tar = Tar::new()
        .file("a.txt", b"ours")
        .file("x", b"a file")
        .file("x/y", b"below a file")
        .finish();
    let err = checked(&tar, &dest, &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, ExtractError::ArchiveClash { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("x/y") && msg.contains("nothing was restored"),
        "{msg}"
    );
    assert_eq!(snapshot(&dest), before);

    // A directory and a file at one path, in either order.
    for tar in [
        Tar::new().dir("d", 0o755).file("d", b"x").finish(),
        Tar::new().file("d", b"x").dir("d", 0o755).finish(),
    ] {
        let err = checked(&tar, &dest, &ExtractOptions::default()).unwrap_err();
        assert!(matches!(err, ExtractError::ArchiveClash { .. }), "{err:?}");
        assert_eq!(snapshot(&dest), before);
    }
}

#[test]
fn name_too_long_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = populated_dest(dir.path());
    let before = snapshot(&dest);
    let long = "n".repeat(300);
    let tar = Tar::new()
        .file("a.txt", b"ours")
        .dir("sub", 0o755)
        .file(format!("sub/{long}"), b"too long")
        .finish();
    let err = checked(&tar, &dest, &ExtractOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("File name too long"), "{msg}");
    assert_eq!(snapshot(&dest), before);
}

#[test]
fn duplicate_entries_fail_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = populated_dest(dir.path());
    let before = snapshot(&dest);
    let archives = [
        Tar::new()
            .file("a.txt", b"ours")
            .file("dup.txt", b"one")
            .file("dup.txt", b"two")
            .finish(),
        Tar::new()
            .dir("d", 0o755)
            .file("d/a.txt", b"ours")
            .dir("d", 0o777)
            .finish(),
    ];
    for (tar, dup) in archives.iter().zip(["dup.txt", "d"]) {
        let err = checked(tar, &dest, &ExtractOptions::default()).unwrap_err();
        assert!(
            matches!(&err, ExtractError::Duplicates { count: 1, first } if first == &[PathBuf::from(dup)]),
            "{err:?}"
        );
        assert!(err.to_string().contains(dup), "{err}");
        assert_eq!(snapshot(&dest), before);
    }
}

#[test]
fn existing_target_without_force_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = populated_dest(dir.path());
    let before = snapshot(&dest);
    let tar = Tar::new()
        .file("new.txt", b"ours")
        .dir("new dir", 0o755)
        .file("new dir/f", b"ours")
        .file("keep.txt", b"ours")
        .finish();
    let err = checked(&tar, &dest, &ExtractOptions::default()).unwrap_err();
    assert!(
        matches!(err, ExtractError::WouldReplace { count: 1, .. }),
        "{err:?}"
    );
    assert_eq!(snapshot(&dest), before);
}

#[test]
fn force_replaces_but_only_when_the_whole_archive_is_good() {
    let dir = tempfile::tempdir().unwrap();
    let dest = populated_dest(dir.path());
    let before = snapshot(&dest);
    let force = ExtractOptions {
        force: true,
        ..Default::default()
    };
    // A good replacement followed by a bad entry: the replacement must not
    // have happened.
    let bad = Tar::new()
        .file("keep.txt", b"ours")
        .file("x", b"a file")
        .file("x/y", b"below a file")
        .finish();
    checked(&bad, &dest, &force).unwrap_err();
    assert_eq!(snapshot(&dest), before);

    let good = Tar::new()
        .file("keep.txt", b"ours")
        .file("old dir/inner", b"ours too")
        .file("new.txt", b"new")
        .finish();
    let report = checked(&good, &dest, &force).unwrap();
    assert_eq!((report.written, report.replaced), (3, 2));
    assert_eq!(std::fs::read(dest.join("keep.txt")).unwrap(), b"ours");
    assert_eq!(
        std::fs::read(dest.join("old dir/inner")).unwrap(),
        b"ours too"
    );
    assert_eq!(std::fs::read(dest.join("new.txt")).unwrap(), b"new");
    assert_eq!(snapshot(&dest).len(), before.len() + 1);
}

#[test]
fn nested_existing_directories_are_merged_into() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    std::fs::create_dir_all(dest.join("d/e")).unwrap();
    std::fs::set_permissions(
        dest.join("d"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    std::fs::write(dest.join("d/old.txt"), b"theirs").unwrap();
    std::fs::write(dest.join("d/e/old.txt"), b"theirs").unwrap();
    let tar = Tar::new()
        .dir("d", 0o700)
        .dir("d/e", 0o700)
        .file("d/e/new.txt", b"ours")
        .file("d/f/g/new.txt", b"ours")
        .dir("d/h", 0o751)
        .file("d/h/new.txt", b"ours")
        .file("top.txt", b"ours")
        .finish();
    let report = with_umask(0o077, || checked(&tar, &dest, &ExtractOptions::default())).unwrap();
    assert_eq!(report.written, 4);
    let got = snapshot(&dest);
    let new_entries = [
        ("d/e/new.txt", "file 644 uid 0 \"ours\""),
        // Made only to hold an entry: 0755, not 0755 minus the umask.
        ("d/f", "dir 755 uid 0"),
        ("d/f/g", "dir 755 uid 0"),
        ("d/f/g/new.txt", "file 644 uid 0 \"ours\""),
        ("d/h", "dir 751 uid 0"),
        ("d/h/new.txt", "file 644 uid 0 \"ours\""),
        ("top.txt", "file 644 uid 0 \"ours\""),
    ];
    for (p, w) in new_entries {
        assert_eq!(
            got.get(Path::new(p)).map(String::as_str),
            Some(w),
            "{p}: {got:#?}"
        );
    }
    assert_eq!(got.len(), new_entries.len() + 4, "{got:#?}");
    assert_eq!(std::fs::read(dest.join("d/old.txt")).unwrap(), b"theirs");
    assert_eq!(std::fs::read(dest.join("d/e/old.txt")).unwrap(), b"theirs");
    // Existing directories keep their mode without force, take the
    // archive's with it.
    assert_eq!(mode(&dest.join("d")), 0o750);
    let force = ExtractOptions {
        force: true,
        ..Default::default()
    };
    checked(&tar, &dest, &force).unwrap();
    assert_eq!(mode(&dest.join("d")), 0o700);
    assert_eq!(mode(&dest.join("d/e")), 0o700);
}

#[test]
fn missing_dest_is_created_only_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("new/deeper/dest");
    let bad = Tar::new()
        .file("a.txt", b"ours")
        .file("x", b"a file")
        .file("x/y", b"below a file")
        .finish();
    checked(&bad, &dest, &ExtractOptions::default()).unwrap_err();
    assert!(
        snapshot(dir.path()).is_empty(),
        "{:?}",
        snapshot(dir.path())
    );

    let good = Tar::new()
        .file("a.txt", b"ours")
        .file("sub/b.txt", b"ours")
        .finish();
    let report = with_umask(0o077, || checked(&good, &dest, &ExtractOptions::default())).unwrap();
    assert_eq!(report.written, 2);
    let got = snapshot(dir.path());
    let want: Vec<(&str, &str)> = vec![
        ("new", "dir 755 uid 0"),
        ("new/deeper", "dir 755 uid 0"),
        ("new/deeper/dest", "dir 755 uid 0"),
        ("new/deeper/dest/a.txt", "file 644 uid 0 \"ours\""),
        ("new/deeper/dest/sub", "dir 755 uid 0"),
        ("new/deeper/dest/sub/b.txt", "file 644 uid 0 \"ours\""),
    ];
    let want: BTreeMap<PathBuf, String> = want
        .into_iter()
        .map(|(p, w)| (PathBuf::from(p), w.to_string()))
        .collect();
    assert_eq!(got, want);
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test checks chown and setuid handling and must run as root"
    );
}

#[test]
fn owners_and_setuid_are_trusted_only_with_same_owner() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let tar = Tar::new()
        .dir_owned("d", 0o2755, 12345)
        .file_owned("d/suid", b"#!/bin/sh\n", 0o4755, 12345)
        .finish();

    let plain = dir.path().join("plain");
    checked(&tar, &plain, &ExtractOptions::default()).unwrap();
    let want = |uid, dmode, fmode| -> BTreeMap<PathBuf, String> {
        [
            ("d", format!("dir {dmode:o} uid {uid}")),
            (
                "d/suid",
                format!("file {fmode:o} uid {uid} \"#!/bin/sh\\n\""),
            ),
        ]
        .into_iter()
        .map(|(p, w)| (PathBuf::from(p), w))
        .collect()
    };
    assert_eq!(snapshot(&plain), want(0, 0o755, 0o755));

    let trusted = dir.path().join("trusted");
    let same = ExtractOptions {
        same_owner: true,
        ..Default::default()
    };
    checked(&tar, &trusted, &same).unwrap();
    assert_eq!(snapshot(&trusted), want(12345, 0o2755, 0o4755));
}

/// A small tmpfs, unmounted (even when the test fails) on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs to mount a tmpfs (as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.0.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
        }
    }
}

/// 300 KiB that do not compress, different per file.
fn noise(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..300 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn full_disk_leaves_dest_as_it_was_and_says_why() {
    require_root();
    // The backup: six files of 300 KiB, through the real binary.
    let src = tempfile::tempdir().unwrap();
    let mut tar = Tar::new();
    for i in 0..6 {
        let data = noise(i);
        std::fs::write(src.path().join(format!("f{i}")), &data).unwrap();
        tar = tar.file(format!("f{i}"), &data);
    }
    let tar = tar.finish();
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "store:\n  url: {}\njobs:\n  - name: files\n    sources:\n      - name: etc\n        files: {{path: {}}}\n",
        ws.store_url(),
        src.path().display()
    ));
    ccbackup(&cfg, &["run-now"]).expect_ok();

    // The destination is the mount point itself, 1 MiB, with a file in it.
    let fs = Tmpfs::mount("1m");
    let dest = fs.path();
    std::fs::write(dest.join("keep.txt"), b"theirs").unwrap();
    symlink("keep.txt", dest.join("keep-link")).unwrap();
    let before = snapshot(dest);

    let run = ccbackup(
        &cfg,
        &["restore", "--source", "etc", "--to", dest.to_str().unwrap()],
    );
    assert!(!run.ok(), "{}", run.stdout());
    // Refused up front (the tree cannot fit) or when the disk filled: either
    // way the cause is named and nothing was left.
    assert!(
        run.stderr().contains("No space left on device")
            || run.stderr().contains("not enough space"),
        "{}",
        run.stderr()
    );
    assert_eq!(snapshot(dest), before);

    // The library error says it too.
    let err = checked(&tar, dest, &ExtractOptions::default()).unwrap_err();
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert_eq!(snapshot(dest), before);
}

#[test]
fn mount_point_below_dest_is_refused_before_anything_moves() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let dest = populated_dest(dir.path());
    let fs = Tmpfs::mount("1m");
    let sub = dest.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let status = Command::new("mount")
        .args(["--bind"])
        .arg(fs.path())
        .arg(&sub)
        .status()
        .unwrap();
    assert!(status.success(), "this test needs to bind-mount a tmpfs");
    let _unmount = BindMount(sub.clone());
    std::fs::write(sub.join("on tmpfs"), b"theirs").unwrap();
    let before = snapshot(&dest);
    let tar = Tar::new()
        .file("a.txt", b"ours")
        .file("sub/x", b"ours")
        .finish();
    let err = checked(&tar, &dest, &ExtractOptions::default()).unwrap_err();
    assert!(
        matches!(err, ExtractError::OtherFileSystem { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("sub"), "{err}");
    assert_eq!(snapshot(&dest), before);
}

/// Unmounts a bind mount on drop.
struct BindMount(PathBuf);

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
