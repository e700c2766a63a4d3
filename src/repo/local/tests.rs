//! Tests of the `file://` store against a real directory: what a hostile
//! writer of the store can plant, what the old check-then-open design got
//! wrong, and that no file system call runs on the async executor.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rustix::process::Uid;

use super::*;

/// The uid tests switch to when they need permission checks to apply
/// (root bypasses them): `nobody` on Linux.
const NOBODY: u32 = 65534;

fn store(root: &Path) -> NoFollow {
    NoFollow::new(root.to_path_buf())
}

fn key(s: &str) -> ObjPath {
    ObjPath::from(s)
}

/// A store holding `j/1/manifest` (contents `ours`) inside a temporary
/// directory, next to an `outside` directory with a `manifest` of its own.
fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("store");
    std::fs::create_dir_all(root.join("j/1")).unwrap();
    std::fs::write(root.join("j/1/manifest"), b"ours").unwrap();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("manifest"), b"secret").unwrap();
    (d, root, outside)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .thread_keep_alive(std::time::Duration::from_secs(3600))
        .build()
        .unwrap()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn symlinks_and_fifos_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("store");
    std::fs::create_dir_all(root.join("j/1")).unwrap();
    std::fs::write(root.join("j/1/a"), b"x").unwrap();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"s").unwrap();
    symlink(&outside, root.join("j/1/link")).unwrap();
    symlink(outside.join("secret"), root.join("j/1/b")).unwrap();
    assert!(open_regular(&root, &["j", "1", "a"]).is_ok());
    let err = open_regular(&root, &["j", "1", "b"]).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(open_regular(&root, &["j", "1", "link", "secret"]).is_err());
    let missing = open_regular(&root, &["j", "1", "nope"]).unwrap_err();
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    let fifo = std::ffi::CString::new(root.join("j/1/f").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    assert!(open_regular(&root, &["j", "1", "f"]).is_err());
    let listed: Vec<String> = runtime().block_on(async {
        let s = store(&root);
        s.list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await
    });
    assert_eq!(listed, ["j/1/a"]);
}

#[test]
fn a_symlink_planted_after_a_listing_is_refused_not_followed() {
    let (_d, root, outside) = fixture();
    runtime().block_on(async {
        let s = store(&root);
        let listed: Vec<_> = s.list(Some(&key("j"))).collect().await;
        assert_eq!(listed.len(), 1);
        std::fs::remove_file(root.join("j/1/manifest")).unwrap();
        symlink(outside.join("manifest"), root.join("j/1/manifest")).unwrap();
        let err = s.get(&key("j/1/manifest")).await.unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        // Nor through a directory swapped for a symlink, for any operation.
        std::fs::remove_dir_all(root.join("j/1")).unwrap();
        symlink(&outside, root.join("j/1")).unwrap();
        assert!(s.get(&key("j/1/manifest")).await.is_err());
        assert!(s.head(&key("j/1/manifest")).await.is_err());
        assert!(s
            .put(&key("j/1/new"), PutPayload::from_static(b"n"))
            .await
            .is_err());
        assert!(s.delete(&key("j/1/manifest")).await.is_err());
        assert!(s.list_with_delimiter(Some(&key("j/1"))).await.is_err());
        let copied = s.copy(&key("j/1/manifest"), &key("j/2")).await;
        assert!(copied.is_err());
    });
    assert!(!outside.join("new").exists());
    assert_eq!(std::fs::read(outside.join("manifest")).unwrap(), b"secret");
    assert!(!root.join("j/2").exists());
}

#[test]
fn a_directory_swapped_for_a_symlink_mid_read_is_never_followed() {
    // Another thread keeps exchanging `j/1` with a symlink to `outside`
    // (atomically, so `j/1` always exists). Whatever the interleaving,
    // every read either fails or returns the store's own manifest: a
    // design that checks the path and then opens it by name can be
    // raced into reading `outside/manifest`.
    let (_d, root, outside) = fixture();
    symlink(&outside, root.join("j/swap")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, jdir) = (stop.clone(), root.join("j"));
        std::thread::spawn(move || {
            let dir = crate::sys::fs::open_dir(&jdir).unwrap();
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    &dir,
                    c"1",
                    &dir,
                    c"swap",
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
            }
        })
    };
    let got = runtime().block_on(async {
        let s = store(&root);
        let mut got = Vec::new();
        for _ in 0..3000 {
            if let Ok(r) = s.get(&key("j/1/manifest")).await {
                if let Ok(b) = r.bytes().await {
                    got.push(b);
                }
            }
        }
        got
    });
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(got.iter().all(|b| b.as_ref() == b"ours"), "read outside");
}

/// Sets the calling thread's uids (only this thread's: the raw syscall,
/// not libc's process-wide `setresuid`), restoring root when dropped.
struct ThreadUid;

impl ThreadUid {
    fn switch(real: u32, effective: u32, saved: u32) -> ThreadUid {
        rustix::thread::set_thread_res_uid(
            Uid::from_raw(real),
            Uid::from_raw(effective),
            Uid::from_raw(saved),
        )
        .unwrap();
        ThreadUid
    }
}

impl Drop for ThreadUid {
    fn drop(&mut self) {
        let root = Uid::from_raw(0);
        let _ = rustix::thread::set_thread_res_uid(root, root, root);
    }
}

#[test]
fn no_file_system_call_runs_on_the_executor_thread() {
    // The executor thread alone gives up root (keeping it as the saved uid
    // to return to): every file system call it made would then fail on a
    // store only root may enter, while the one
    // blocking-pool thread, started before the switch, is still root. So
    // each operation succeeds only if all its file system calls run in
    // `spawn_blocking`.
    assert!(
        is_root(),
        "this test needs root to switch the executor thread's uid (the suite runs as root)"
    );
    let (d, root, _outside) = fixture();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let rt = runtime();
    rt.block_on(async {
        tokio::task::spawn_blocking(|| ()).await.unwrap();
        let s = store(&root);
        let _nobody = ThreadUid::switch(0, NOBODY, 0);
        assert!(std::fs::metadata(d.path().join("store")).is_err());
        s.get(&key("j/1/manifest"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        s.head(&key("j/1/manifest")).await.unwrap();
        s.put(&key("j/2/m"), PutPayload::from_static(b"two"))
            .await
            .unwrap();
        let listed: Vec<_> = s.list(Some(&key("j"))).collect().await;
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|r| r.is_ok()), "{listed:?}");
        let one = s.list_with_delimiter(Some(&key("j"))).await.unwrap();
        assert_eq!(one.common_prefixes.len(), 2);
        s.copy(&key("j/2/m"), &key("j/3/m")).await.unwrap();
        s.delete(&key("j/3/m")).await.unwrap();
        let mut up = s.put_multipart(&key("j/4/big")).await.unwrap();
        up.put_part(PutPayload::from_static(b"a")).await.unwrap();
        up.put_part(PutPayload::from_static(b"b")).await.unwrap();
        up.complete().await.unwrap();
        let big = s.get(&key("j/4/big")).await.unwrap().bytes().await.unwrap();
        assert_eq!(big.as_ref(), b"ab");
    });
}

#[test]
fn a_directory_the_store_cannot_read_fails_the_listing() {
    // Root reads every directory, so the listing runs on a thread that is
    // `nobody` for good (threads it starts, the blocking pool's, inherit
    // that), over a store whose `j/2` only root may read.
    assert!(
        is_root(),
        "this test needs root to switch a thread's uid (the suite runs as root)"
    );
    let (d, root, _outside) = fixture();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(root.join("j/2")).unwrap();
    std::fs::write(root.join("j/2/manifest"), b"two").unwrap();
    std::fs::set_permissions(root.join("j/2"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let (all, one) = std::thread::spawn(move || {
        let _nobody = ThreadUid::switch(NOBODY, NOBODY, NOBODY);
        runtime().block_on(async {
            let s = store(&root);
            let all: Vec<_> = s.list(None).collect().await;
            let one = s.list_with_delimiter(Some(&key("j/2"))).await;
            (all, one)
        })
    })
    .join()
    .unwrap();
    let errors: Vec<String> = all
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("j/2")),
        "the unreadable directory was skipped silently: {all:?}"
    );
    let err = one.unwrap_err().to_string();
    assert!(err.contains("j/2"), "{err}");
}

#[test]
fn listings_of_missing_or_file_prefixes_are_empty_and_of_symlinks_fail() {
    let (_d, root, outside) = fixture();
    symlink(&outside, root.join("j/link")).unwrap();
    runtime().block_on(async {
        let s = store(&root);
        for prefix in ["nope", "j/1/manifest", "j/nope/deeper"] {
            let listed: Vec<_> = s.list(Some(&key(prefix))).collect().await;
            assert!(listed.is_empty(), "{prefix}: {listed:?}");
            let one = s.list_with_delimiter(Some(&key(prefix))).await.unwrap();
            assert!(one.objects.is_empty() && one.common_prefixes.is_empty());
        }
        for prefix in ["j/link", "j/1/manifest/below"] {
            let listed: Vec<_> = s.list(Some(&key(prefix))).collect().await;
            assert!(
                matches!(listed.as_slice(), [Err(_)]),
                "{prefix}: {listed:?}"
            );
            assert!(s.list_with_delimiter(Some(&key(prefix))).await.is_err());
        }
        // A whole-store listing skips the symlink and lists the rest.
        let all: Vec<_> = s.list(None).collect().await;
        let keys: Vec<String> = all
            .into_iter()
            .map(|m| m.unwrap().location.to_string())
            .collect();
        assert_eq!(keys, ["j/1/manifest"]);
    });
}

#[test]
fn multipart_uploads_stage_beside_the_target_and_clean_up() {
    let (_d, root, _outside) = fixture();
    let staging = |dir: &str| -> Vec<String> {
        std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains('#'))
            .collect()
    };
    runtime().block_on(async {
        let s = store(&root);
        let mut up = s.put_multipart(&key("j/1/big")).await.unwrap();
        let first = up.put_part(PutPayload::from_static(b"one-"));
        let second = up.put_part(PutPayload::from_static(b"two"));
        // Written concurrently, placed by call order.
        let (a, b) = futures::join!(second, first);
        a.unwrap();
        b.unwrap();
        assert_eq!(staging("j/1"), ["big#1"]);
        // Not listed while staged.
        let listed: Vec<_> = s.list(Some(&key("j/1"))).collect().await;
        assert_eq!(listed.len(), 1);
        up.complete().await.unwrap();
        let got = s.get(&key("j/1/big")).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), b"one-two");

        let mut up = s.put_multipart(&key("j/1/gone")).await.unwrap();
        up.put_part(PutPayload::from_static(b"x")).await.unwrap();
        up.abort().await.unwrap();
        let up = s.put_multipart(&key("j/1/dropped")).await.unwrap();
        drop(up);
        // The removal runs on the blocking pool; this queues behind it.
        tokio::task::spawn_blocking(|| ()).await.unwrap();
    });
    assert!(staging("j/1").is_empty(), "{:?}", staging("j/1"));
    assert!(!root.join("j/1/gone").exists());
}
