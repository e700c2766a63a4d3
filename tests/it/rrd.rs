//! RRD and plain-directory sources end to end: archive real rrdtool files
//! (also while rrdtool updates them), respect librrd's locks, restore safely.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccbackup::backup::source::files::archive_dir;
use ccbackup::backup::source::files::ArchiveWriteError;
use ccbackup::backup::source::rrd::{archive_rrd_tree, OnInvalid, RrdError, RrdOptions};
use ccbackup::progress::Progress;
use ccbackup::restore::extract::{
    extract_tree, extract_tree_checked, ExtractError, ExtractOptions,
};
use ccbackup::rrd::{validate_rrd, RrdInvalid};

use crate::support::wait_until;
use crate::support_rrd::{self as s, RrdFile};

fn archive(root: &Path, opts: &RrdOptions) -> Vec<u8> {
    let (_, out) = archive_rrd_tree(root, Vec::new(), opts, &Progress::new()).unwrap();
    out
}

/// Regular-file entries of a tar: path bytes -> contents.
fn tar_files(tar_bytes: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut a = tar::Archive::new(tar_bytes);
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() == tar::EntryType::Regular {
            let p = e.path().unwrap().as_os_str().as_bytes().to_vec();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            out.insert(p, v);
        }
    }
    out
}

fn opts_fast() -> RrdOptions {
    RrdOptions {
        lock_timeout: Duration::from_millis(300),
        validation_retries: 1,
        ..RrdOptions::default()
    }
}

#[test]
fn real_files_validate_and_damage_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.rrd");
    let two = dir.path().join("two.rrd");
    s::create(&one, &["sum"]);
    s::create(&two, &["sum", "num"]);
    s::update(&one, s::START, 100, 1).unwrap();
    let b1 = std::fs::read(&one).unwrap();
    let b2 = std::fs::read(&two).unwrap();
    assert_eq!(b1.len() as u64, s::SIZE_1DS);
    assert_eq!(b2.len() as u64, s::SIZE_2DS);
    let i1 = validate_rrd(&b1).unwrap();
    assert_eq!((i1.version, i1.ds_count, i1.rra_count), (3, 1, 9));
    assert_eq!(i1.expected_size, s::SIZE_1DS);
    assert_eq!(validate_rrd(&b2).unwrap().ds_count, 2);

    let truncated = &b1[..b1.len() - 8];
    assert_eq!(
        validate_rrd(truncated),
        Err(RrdInvalid::SizeMismatch {
            expected: s::SIZE_1DS,
            actual: s::SIZE_1DS - 8
        })
    );
    assert!(matches!(
        validate_rrd(&b1[..1000]),
        Err(RrdInvalid::TooShort { .. })
    ));
    let mut longer = b1.clone();
    longer.push(0);
    assert!(matches!(
        validate_rrd(&longer),
        Err(RrdInvalid::SizeMismatch { .. })
    ));
    let mut magic = b1.clone();
    magic[1] ^= 0x20;
    assert_eq!(validate_rrd(&magic), Err(RrdInvalid::BadMagic));
    let mut cookie = b1.clone();
    cookie[16..24].copy_from_slice(&8.642135E130f64.to_be_bytes());
    assert_eq!(validate_rrd(&cookie), Err(RrdInvalid::ForeignArchitecture));
    let mut version = b1.clone();
    version[4..8].copy_from_slice(b"0009");
    assert!(matches!(
        validate_rrd(&version),
        Err(RrdInvalid::BadVersion { .. })
    ));
    // A lying row count moves the expected size.
    let mut rows = b1.clone();
    let at = 128 + 120 + 24;
    rows[at..at + 8].copy_from_slice(&241u64.to_ne_bytes());
    assert!(matches!(
        validate_rrd(&rows),
        Err(RrdInvalid::SizeMismatch { .. })
    ));
}

#[test]
fn archive_while_rrdtool_updates_gives_valid_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rrds");
    let files = s::concertim_tree(&root, 3, 4);
    let stop = Arc::new(AtomicBool::new(false));
    let updates = Arc::new(AtomicU64::new(0));
    let creates = Arc::new(AtomicU64::new(0));
    let updater = {
        let (root, files) = (root.clone(), files.clone());
        let (stop, updates, creates) = (stop.clone(), updates.clone(), creates.clone());
        std::thread::spawn(move || {
            let mut last: Vec<u64> = vec![s::START; files.len()];
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (i, f) in files.iter().enumerate() {
                    if let Some(t) = s::update(&root.join(&f.rel), last[i], 60, f.ds) {
                        last[i] = t;
                        updates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // New devices appear while we walk: rrdtool writes a
                // `.rrdXXXXXX` temp file and renames it.
                let new = root.join(format!("unspecified/device:new-{round}/m.rrd"));
                if s::try_create(&new, &["sum"]).is_ok() {
                    creates.fetch_add(1, Ordering::Relaxed);
                }
                round += 1;
            }
        })
    };

    let started = Instant::now();
    let (mut archives, mut last) = (0, Vec::new());
    while started.elapsed() < Duration::from_millis(2500) || archives < 3 {
        let progress = Progress::new();
        let (stats, out) =
            archive_rrd_tree(&root, Vec::new(), &RrdOptions::default(), &progress).unwrap();
        assert!(stats.files >= files.len() as u64, "{stats:?}");
        assert!(stats.invalid.is_empty());
        assert_eq!(progress.files(), stats.files);
        for (path, bytes) in tar_files(&out) {
            validate_rrd(&bytes).unwrap_or_else(|e| {
                panic!("{}: {e}", String::from_utf8_lossy(&path));
            });
        }
        archives += 1;
        last = out;
    }
    stop.store(true, Ordering::Relaxed);
    updater.join().unwrap();
    eprintln!(
        "{} archives during {} rrdtool updates and {} creates",
        archives,
        updates.load(Ordering::Relaxed),
        creates.load(Ordering::Relaxed)
    );
    assert!(
        updates.load(Ordering::Relaxed) >= 20,
        "the updater barely ran ({} updates), the test proves nothing",
        updates.load(Ordering::Relaxed)
    );
    assert!(creates.load(Ordering::Relaxed) >= 1);

    // Restore the last archive and let librrd itself judge every file.
    let dest = dir.path().join("restored");
    let opts = ExtractOptions {
        validate_rrd: true,
        ..Default::default()
    };
    let report = extract_tree(&last[..], &dest, &opts).unwrap();
    assert_eq!(report.written as usize, tar_files(&last).len());
    for f in &files {
        let p = dest.join(&f.rel);
        let bytes = std::fs::read(&p).unwrap();
        validate_rrd(&bytes).unwrap();
        s::info_ok(&p).unwrap_or_else(|e| panic!("rrdtool info {}: {e}", p.display()));
    }
}

#[test]
fn held_write_lock_fails_the_archive_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = s::concertim_tree(dir.path(), 1, 2);
    let victim = &files[1].rel;
    let victim_name = victim.file_name().unwrap().to_string_lossy().into_owned();
    // An OFD lock like ours, and the classic process lock librrd takes.
    for cmd in [libc::F_OFD_SETLK, libc::F_SETLK] {
        let _lock = s::lock_file(&dir.path().join(victim), cmd, libc::F_WRLCK);
        let err = archive_rrd_tree(dir.path(), Vec::new(), &opts_fast(), &Progress::new())
            .expect_err("archive must fail while a writer holds the lock");
        // It kept trying for its whole lock timeout (as it measured it:
        // a slow machine makes the wait longer, never shorter).
        let RrdError::LockTimeout { waited, .. } = &err else {
            panic!("{err:?}");
        };
        assert!(*waited >= opts_fast().lock_timeout, "{waited:?}");
        assert!(err.to_string().contains(&victim_name), "{err}");
    }
}

/// The archive meets a held lock and waits for it: it opens the file while
/// the test holds the write lock (seen as a second descriptor on it), and
/// finishes only after the test has released it, with the file archived.
#[test]
fn briefly_held_lock_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let files = s::concertim_tree(&root, 1, 1);
    let target = root.join(&files[0].rel);
    let lock = s::lock_file(&target, libc::F_OFD_SETLK, libc::F_WRLCK);
    let released = Arc::new(AtomicBool::new(false));
    let archiver = {
        let (root, released) = (root.clone(), released.clone());
        std::thread::spawn(move || {
            // Only a hang, never a slow machine, reaches this timeout.
            let opts = RrdOptions {
                lock_timeout: Duration::from_secs(120),
                ..RrdOptions::default()
            };
            let result = archive_rrd_tree(&root, Vec::new(), &opts, &Progress::new());
            (result, released.load(Ordering::SeqCst))
        })
    };
    // The archive opens a file right before taking its read lock, and
    // the write lock held here refuses that lock.
    wait_until(
        "the archive to open the locked file",
        Duration::from_secs(60),
        || s::open_descriptors(&target) >= 2,
    );
    assert!(
        !archiver.is_finished(),
        "the archive finished while the file was locked"
    );
    released.store(true, Ordering::SeqCst);
    drop(lock);
    let (result, finished_after_release) = archiver.join().unwrap();
    let (stats, out) = result.unwrap();
    assert!(
        finished_after_release,
        "the archive did not wait for the lock"
    );
    assert_eq!(stats.files, files.len() as u64);
    assert_eq!(tar_files(&out).len(), files.len());
}

#[test]
fn temp_files_and_other_names_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("unspecified/device:abc");
    s::create(&d.join("m.rrd"), &["sum"]);
    std::fs::copy(d.join("m.rrd"), d.join("n.rrdAb3xZ9")).unwrap();
    std::fs::write(d.join("notes.txt"), b"x").unwrap();
    symlink("m.rrd", d.join("link.rrd")).unwrap();
    let (stats, out) =
        archive_rrd_tree(dir.path(), Vec::new(), &opts_fast(), &Progress::new()).unwrap();
    assert_eq!(stats.files, 1);
    assert_eq!(stats.skipped_temp, 1);
    assert_eq!(stats.skipped_other, 2);
    assert_eq!(stats.dirs, 2);
    let names: Vec<_> = tar_files(&out).into_keys().collect();
    assert_eq!(names, vec![b"unspecified/device:abc/m.rrd".to_vec()]);
}

#[test]
fn non_utf8_and_long_names_round_trip_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let real = dir.path().join("real.rrd");
    s::create(&real, &["sum"]);
    let mut name = b"m\xff\xfe ".to_vec();
    name.extend(std::iter::repeat_n(b'x', 150));
    name.extend_from_slice(".rrd".as_bytes());
    let rel = Path::new("unspecified/device:0f0e-long").join(std::ffi::OsStr::from_bytes(&name));
    std::fs::create_dir_all(src.join(rel.parent().unwrap())).unwrap();
    std::fs::copy(&real, src.join(&rel)).unwrap();
    let out = archive(&src, &opts_fast());
    let files = tar_files(&out);
    assert_eq!(files.len(), 1);
    assert_eq!(files.keys().next().unwrap(), s::name_bytes(&rel));
    let dest = dir.path().join("dest");
    extract_tree(&out[..], &dest, &ExtractOptions::default()).unwrap();
    assert_eq!(
        std::fs::read(dest.join(&rel)).unwrap(),
        std::fs::read(&real).unwrap()
    );
}

#[test]
fn invalid_files_fail_or_are_included() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("unspecified/device:abc");
    s::create(&d.join("good.rrd"), &["sum"]);
    let mut bad = std::fs::read(d.join("good.rrd")).unwrap();
    bad.truncate(bad.len() - 100);
    std::fs::write(d.join("bad.rrd"), &bad).unwrap();

    let err = archive_rrd_tree(dir.path(), Vec::new(), &opts_fast(), &Progress::new())
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("bad.rrd") && msg.contains("header implies"),
        "{msg}"
    );
    assert!(matches!(err, RrdError::Invalid { reads: 2, .. }), "{err:?}");

    let include = RrdOptions {
        on_invalid: OnInvalid::Include,
        ..opts_fast()
    };
    let (stats, out) =
        archive_rrd_tree(dir.path(), Vec::new(), &include, &Progress::new()).unwrap();
    assert_eq!(stats.files, 2);
    assert_eq!(
        stats.invalid,
        vec![PathBuf::from("unspecified/device:abc/bad.rrd")]
    );
    assert_eq!(
        tar_files(&out)[&b"unspecified/device:abc/bad.rrd".to_vec()],
        bad
    );

    // The restore side refuses it too, and leaves nothing behind: not even
    // the destination it would have created.
    let dest = dir.path().join("dest");
    let opts = ExtractOptions {
        validate_rrd: true,
        ..Default::default()
    };
    let err = extract_tree(&out[..], &dest, &opts).unwrap_err();
    assert!(matches!(err, ExtractError::InvalidRrd { .. }), "{err:?}");
    assert!(err.to_string().contains("bad.rrd"), "{err}");
    assert!(!dest.exists());
    for p in s::list_tree(dir.path()) {
        assert!(!p.to_string_lossy().contains("ccbackup-restore"), "{p:?}");
    }

    let small = RrdOptions {
        max_file_size: 1000,
        ..opts_fast()
    };
    let err = archive_rrd_tree(dir.path(), Vec::new(), &small, &Progress::new())
        .err()
        .unwrap();
    assert!(matches!(err, RrdError::TooLarge { .. }), "{err:?}");
}

/// Accepts `limit` bytes, then fails like an aborted upload.
struct FailingWriter {
    limit: usize,
    written: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written >= self.limit {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "upload aborted"));
        }
        let n = buf.len().min(self.limit - self.written);
        self.written += n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn writer_failure_stops_the_archive_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let files = s::concertim_tree(dir.path(), 2, 4);
    let progress = Progress::new();
    let out = FailingWriter {
        limit: 150_000,
        written: 0,
    };
    let err = archive_rrd_tree(dir.path(), out, &opts_fast(), &progress)
        .err()
        .unwrap();
    assert!(
        matches!(err, RrdError::Archive(ArchiveWriteError::Write { .. })),
        "{err:?}"
    );
    assert!(progress.files() < files.len() as u64);
}

// ---- plain directories and the restore side ----

fn set_mtime(path: &Path, secs: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: zeroed timespecs are valid; pointers valid for the call.
    let mut ts: [libc::timespec; 2] = unsafe { std::mem::zeroed() };
    ts[0].tv_sec = secs;
    ts[1].tv_sec = secs;
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "{}", io::Error::last_os_error());
}

/// A tree with the awkward parts: modes, mtimes, symlinks, an empty
/// directory, names with `:`, spaces and unicode.
fn files_tree(root: &Path) {
    let d = root.join("conf: dir ü");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    std::fs::write(d.join("credentials.yml.enc"), b"secret").unwrap();
    std::fs::write(d.join("sub/run me.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::write(root.join("read only ★"), vec![42u8; 100_000]).unwrap();
    std::fs::write(root.join("zero"), b"").unwrap();
    symlink("../read only ★", d.join("rel-link")).unwrap();
    symlink("/nonexistent/target", root.join("abs-link")).unwrap();
    let mode = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(&d.join("credentials.yml.enc"), 0o600).unwrap();
    mode(&d.join("sub/run me.sh"), 0o755).unwrap();
    mode(&root.join("read only ★"), 0o444).unwrap();
    mode(&root.join("empty"), 0o750).unwrap();
    set_mtime(&d.join("rel-link"), 1_500_000_001);
    set_mtime(&root.join("abs-link"), 1_500_000_002);
    for (i, p) in [
        d.join("credentials.yml.enc"),
        d.join("sub/run me.sh"),
        root.join("read only ★"),
        root.join("zero"),
        d.join("sub"),
        d.clone(),
        root.join("empty"),
    ]
    .iter()
    .enumerate()
    {
        set_mtime(p, 1_600_000_000 + i as i64 * 1000);
    }
}

/// Everything we promise to keep, per relative path.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    s::list_tree(root)
        .into_iter()
        .map(|rel| {
            let p = root.join(&rel);
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!(
                    "link {:?} mtime {}",
                    std::fs::read_link(&p).unwrap(),
                    m.mtime()
                )
            } else if ft.is_dir() {
                format!("dir {:o} mtime {}", m.mode() & 0o7777, m.mtime())
            } else {
                let data = std::fs::read(&p).unwrap();
                format!(
                    "file {:o} mtime {} uid {} gid {} len {} sum {}",
                    m.mode() & 0o7777,
                    m.mtime(),
                    m.uid(),
                    m.gid(),
                    data.len(),
                    data.iter().map(|&b| b as u64).sum::<u64>()
                )
            };
            (rel, what)
        })
        .collect()
}

fn files_archive(root: &Path) -> Vec<u8> {
    let (stats, out) = archive_dir(root, Vec::new(), &Progress::new()).unwrap();
    assert_eq!(stats.files, 4);
    assert_eq!(stats.symlinks, 2);
    assert_eq!(stats.dirs, 3);
    out
}

#[test]
fn files_source_round_trips_metadata_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    files_tree(&src);
    let out = files_archive(&src);
    let dest = dir.path().join("dest");
    let report = extract_tree(&out[..], &dest, &ExtractOptions::default()).unwrap();
    assert_eq!(report.written, 6);
    assert_eq!(report.bytes, 6 + 10 + 100_000);
    assert_eq!(snapshot(&src), snapshot(&dest));
    for rel in s::list_tree(&src) {
        let p = src.join(&rel);
        if std::fs::symlink_metadata(&p).unwrap().is_file() {
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(dest.join(&rel)).unwrap()
            );
        }
    }
}

#[test]
fn extract_never_replaces_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    files_tree(&src);
    let out = files_archive(&src);
    let dest = dir.path().join("dest");
    extract_tree(&out[..], &dest, &ExtractOptions::default()).unwrap();
    let cred = dest.join("conf: dir ü/credentials.yml.enc");
    let script = dest.join("conf: dir ü/sub/run me.sh");
    std::fs::write(&cred, b"newer data").unwrap();
    std::fs::remove_file(&script).unwrap();

    // Single pass: existing targets are skipped and listed, the rest restored.
    let report = extract_tree(&out[..], &dest, &ExtractOptions::default()).unwrap();
    assert_eq!(std::fs::read(&cred).unwrap(), b"newer data");
    assert!(script.exists());
    assert_eq!(report.written, 1);
    assert_eq!(report.skipped_existing.len(), 5);
    assert!(report
        .skipped_existing
        .contains(&PathBuf::from("conf: dir ü/credentials.yml.enc")));

    // Checked: refuses before writing anything.
    std::fs::remove_file(&script).unwrap();
    let err = extract_tree_checked(|| Ok(&out[..]), &dest, &ExtractOptions::default()).unwrap_err();
    assert!(
        matches!(err, ExtractError::WouldReplace { count: 5, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("credentials.yml.enc"), "{err}");
    assert!(
        !script.exists(),
        "nothing may be written before the refusal"
    );
    assert_eq!(std::fs::read(&cred).unwrap(), b"newer data");

    // With force everything is put back.
    let force = ExtractOptions {
        force: true,
        ..Default::default()
    };
    let report = extract_tree_checked(|| Ok(&out[..]), &dest, &force).unwrap();
    assert_eq!(report.replaced, 5);
    assert_eq!(report.written, 6);
    assert_eq!(snapshot(&src), snapshot(&dest));
}

#[test]
fn dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    files_tree(&src);
    let out = files_archive(&src);
    let dry = ExtractOptions {
        dry_run: true,
        ..Default::default()
    };
    let missing = dir.path().join("missing");
    let report = extract_tree(&out[..], &missing, &dry).unwrap();
    assert!(!missing.exists());
    assert_eq!(report.written, 6);
    assert_eq!(report.dirs_created, 3);
    assert!(report.would_replace.is_empty());

    let dest = dir.path().join("dest");
    std::fs::create_dir_all(dest.join("conf: dir ü")).unwrap();
    std::fs::write(dest.join("zero"), b"keep me").unwrap();
    let before = snapshot(&dest);
    for force in [false, true] {
        let opts = ExtractOptions {
            force,
            ..dry.clone()
        };
        let report = extract_tree(&out[..], &dest, &opts).unwrap();
        assert_eq!(report.would_replace, vec![PathBuf::from("zero")]);
        assert_eq!(report.written, if force { 6 } else { 5 });
        assert_eq!(snapshot(&dest), before);
    }
}

#[test]
fn include_globs_pick_a_subset() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files = s::concertim_tree(&src, 2, 3);
    let out = archive(&src, &opts_fast());
    let dest = dir.path().join("dest");
    let opts = ExtractOptions {
        include: vec!["unspecified/__SummaryInfo__".into(), "**/power*.rrd".into()],
        ..Default::default()
    };
    let report = extract_tree(&out[..], &dest, &opts).unwrap();
    let want: Vec<&RrdFile> = files
        .iter()
        .filter(|f| {
            f.rel.starts_with("unspecified/__SummaryInfo__")
                || f.rel
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("power")
        })
        .collect();
    assert_eq!(want.len(), 4);
    assert_eq!(report.written, 4);
    assert!(report.filtered_out > 0);
    let got: Vec<PathBuf> = s::list_tree(&dest)
        .into_iter()
        .filter(|p| dest.join(p).is_file())
        .collect();
    let mut want: Vec<PathBuf> = want.iter().map(|f| f.rel.clone()).collect();
    want.sort();
    assert_eq!(got, want);
}

/// Hand-written tar entries: the tar crate's builder refuses the names an
/// attacker would use.
fn raw_entry(out: &mut Vec<u8>, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish_tar(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0; 1024]);
    out
}

#[test]
fn extract_never_escapes_dest() {
    use tar::EntryType::{Regular, Symlink};
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let abs = outside.join("abs.txt");
    let cases: Vec<Vec<u8>> = vec![
        b"../outside/dotdot.txt".to_vec(),
        b"ok/../../outside/dotdot2.txt".to_vec(),
        abs.as_os_str().as_bytes().to_vec(),
    ];
    for name in cases {
        let mut t = Vec::new();
        raw_entry(&mut t, &name, Regular, b"", b"pwned");
        let t = finish_tar(t);
        for dry_run in [true, false] {
            let opts = ExtractOptions {
                dry_run,
                ..Default::default()
            };
            let err = extract_tree(&t[..], &dest, &opts).unwrap_err();
            assert!(matches!(err, ExtractError::UnsafePath { .. }), "{err:?}");
        }
    }

    // A symlink from the archive, then a file "through" it.
    let mut t = Vec::new();
    raw_entry(&mut t, b"lnk", Symlink, outside.as_os_str().as_bytes(), b"");
    raw_entry(&mut t, b"lnk/through-link.txt", Regular, b"", b"pwned");
    let err = extract_tree(&finish_tar(t)[..], &dest, &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, ExtractError::UnsafePath { .. }), "{err:?}");

    // A symlink already in dest, and a file replacing a symlink with force:
    // the link itself is replaced, its target untouched.
    symlink(&outside, dest.join("evil")).unwrap();
    std::fs::write(outside.join("target"), b"original").unwrap();
    symlink(outside.join("target"), dest.join("f")).unwrap();
    let mut t = Vec::new();
    raw_entry(&mut t, b"evil/through-existing.txt", Regular, b"", b"pwned");
    let err = extract_tree(&finish_tar(t)[..], &dest, &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, ExtractError::UnsafePath { .. }), "{err:?}");
    let mut t = Vec::new();
    raw_entry(&mut t, b"f", Regular, b"", b"restored");
    let force = ExtractOptions {
        force: true,
        ..Default::default()
    };
    extract_tree(&finish_tar(t)[..], &dest, &force).unwrap();
    assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"restored");
    assert!(!std::fs::symlink_metadata(dest.join("f"))
        .unwrap()
        .is_symlink());
    assert_eq!(std::fs::read(outside.join("target")).unwrap(), b"original");

    let mut left: Vec<_> = s::list_tree(&outside);
    left.sort();
    assert_eq!(
        left,
        vec![PathBuf::from("target")],
        "something escaped dest"
    );
    assert!(!dir.path().join("abs.txt").exists());
}
