//! The blocking half of the `file://` store: every operation as one
//! function that opens the store's root and then walks down one name at a
//! time with [`crate::sys::fs`]'s no-follow calls. Nothing here checks a
//! path and later uses it by name, so a component swapped for a symlink in
//! between fails the call (`ELOOP`/`ENOTDIR`) instead of leading outside.
//! These functions block; [`super::NoFollow`] runs them in
//! `spawn_blocking`.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use chrono::{DateTime, Utc};
use object_store::path::Path as ObjPath;
use object_store::{ListResult, ObjectMeta, PutPayload};

use crate::sys::fs::{self as sfs, errno, Kind, Stat};

/// Mode of the files and directories the store creates, before the umask
/// (what object_store's `LocalFileSystem` used, so stores written before
/// and after this module look alike).
const FILE_MODE: u32 = 0o666;
pub(super) const DIR_MODE: u32 = 0o777;

/// Whether a write may replace an existing object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Publish {
    Overwrite,
    Create,
}

/// An error naming the object (escaped: keys come from a store someone
/// else may have written).
pub(super) fn refused(key: &str, why: impl std::fmt::Display) -> object_store::Error {
    object_store::Error::Generic {
        store: "file",
        source: format!("refusing {}: {why}", key.escape_debug()).into(),
    }
}

/// Maps an errno to object_store's error kinds callers decide on
/// (`NotFound`, `AlreadyExists`), and a symlink or non-directory met on the
/// way to a refusal that says so.
pub(super) fn store_err(key: &str, e: io::Error) -> object_store::Error {
    match errno(&e) {
        libc::ENOENT => object_store::Error::NotFound {
            path: key.to_owned(),
            source: Box::new(e),
        },
        libc::EEXIST => object_store::Error::AlreadyExists {
            path: key.to_owned(),
            source: Box::new(e),
        },
        libc::ELOOP | libc::ENOTDIR => refused(
            key,
            "a symlink or a non-directory is in its way inside the store; ccbackup never writes one",
        ),
        _ => object_store::Error::Generic {
            store: "file",
            source: format!("{}: {e}", key.escape_debug()).into(),
        },
    }
}

/// The components of a key as names to open.
pub(super) fn names<S: AsRef<str>>(parts: &[S]) -> io::Result<Vec<CString>> {
    parts
        .iter()
        .map(|p| CString::new(p.as_ref()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL)))
        .collect()
}

fn key_names(key: &ObjPath) -> object_store::Result<Vec<CString>> {
    let parts: Vec<_> = key.parts().collect();
    names(&parts).map_err(|e| store_err(key.as_ref(), e))
}

/// The directories on the way to an object, opened: the root and then
/// each directory below it.
struct Walked {
    root: OwnedFd,
    chain: Vec<OwnedFd>,
}

impl Walked {
    /// Opens `root` (the configured root may be a symlink: the operator
    /// chose it) and the directories `parts` below it, creating missing
    /// ones with `create`.
    fn open(root: &Path, parts: &[CString], create: bool) -> io::Result<Walked> {
        let root = sfs::open_dir(root)?;
        let chain = sfs::open_dir_beneath(&root, parts, create.then_some(DIR_MODE))
            .map_err(|b| b.source)?;
        Ok(Walked { root, chain })
    }

    fn dir(&self) -> BorrowedFd<'_> {
        self.chain.last().map_or(self.root.as_fd(), |d| d.as_fd())
    }

    /// Removes the directories of the chain that are empty, deepest
    /// first, stopping at the first that is not (never the root).
    fn remove_empty(&self, parts: &[CString]) {
        for depth in (0..self.chain.len()).rev() {
            let parent = match depth {
                0 => self.root.as_fd(),
                d => self.chain[d - 1].as_fd(),
            };
            if sfs::remove_dir_at(parent, &parts[depth]).is_err() {
                break;
            }
        }
    }
}

fn split(key: &ObjPath) -> object_store::Result<(Vec<CString>, CString)> {
    let mut parts = key_names(key)?;
    match parts.pop() {
        Some(name) => Ok((parts, name)),
        None => Err(refused(key.as_ref(), "it names the store's root")),
    }
}

/// Opens `parts` below `root` for reading: no symlink anywhere on the way
/// or at the end, never blocking on a FIFO, and only a regular file.
pub(super) fn open_file(root: &Path, parts: &[CString]) -> io::Result<(File, Stat)> {
    let Some((name, dirs)) = parts.split_last() else {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    };
    let walked = Walked::open(root, dirs, false)?;
    let file = sfs::open_file_at(walked.dir(), name)?;
    let st = Stat::of(&file)?;
    if st.kind != Kind::File {
        return Err(io::Error::other("it is not a regular file"));
    }
    Ok((file, st))
}

/// [`open_file`] for a key, with store errors.
pub(super) fn get(root: &Path, key: &ObjPath) -> object_store::Result<(File, ObjectMeta)> {
    let parts = key_names(key)?;
    match open_file(root, &parts) {
        Ok((file, st)) => Ok((file, meta(key.clone(), &st))),
        Err(e) if e.raw_os_error().is_none() => Err(refused(key.as_ref(), e)),
        Err(e) => Err(store_err(key.as_ref(), e)),
    }
}

/// What a listing or a read reports of a file. The e-tag changes when the
/// file is replaced (a new inode) or rewritten (size, time), which is what
/// a lease holder compares.
pub(super) fn meta(location: ObjPath, st: &Stat) -> ObjectMeta {
    let nanos = u32::try_from(st.mtime_nsec).unwrap_or(0);
    let micros = st.mtime.saturating_mul(1_000_000) + i64::from(nanos / 1000);
    ObjectMeta {
        location,
        last_modified: DateTime::<Utc>::from_timestamp(st.mtime, nanos).unwrap_or_default(),
        size: st.size,
        e_tag: Some(format!("\"{:x}-{micros:x}-{:x}\"", st.ino, st.size)),
        version: None,
    }
}

/// Creates a staging file `<name>#<n>` next to the target (the name
/// object_store used, which listings skip and the prune sweep removes
/// when a killed run leaves one).
pub(super) fn stage(dir: BorrowedFd<'_>, name: &CString) -> io::Result<(File, CString)> {
    for n in 1u32.. {
        let mut staged = name.as_bytes().to_vec();
        staged.extend_from_slice(format!("#{n}").as_bytes());
        let staged =
            CString::new(staged).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        match sfs::create_new_at(dir, &staged, FILE_MODE) {
            Ok(f) => return Ok((f, staged)),
            Err(e) if errno(&e) == libc::EEXIST => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EEXIST))
}

/// Moves a staging file to its name: replacing what is there, or only if
/// nothing is. The staging file is removed if that fails.
pub(super) fn publish(
    dir: BorrowedFd<'_>,
    staged: &CString,
    name: &CString,
    how: Publish,
) -> io::Result<()> {
    let done = match how {
        Publish::Overwrite => sfs::rename_at(dir, staged, dir, name),
        Publish::Create => sfs::rename_noreplace(dir, staged, dir, name, false),
    };
    if done.is_err() {
        // The failure is what the caller reports; a leftover is swept.
        let _ = sfs::unlink_at(dir, staged);
    }
    done
}

/// Writes `payload` to `key` through a staging file; returns the e-tag.
pub(super) fn put(
    root: &Path,
    key: &ObjPath,
    payload: &PutPayload,
    how: Publish,
) -> object_store::Result<Option<String>> {
    let (dirs, name) = split(key)?;
    let fail = |e| store_err(key.as_ref(), e);
    let walked = Walked::open(root, &dirs, true).map_err(fail)?;
    let (mut file, staged) = stage(walked.dir(), &name).map_err(fail)?;
    let written = payload
        .iter()
        .try_for_each(|chunk| file.write_all(chunk))
        .and_then(|()| Stat::of(&file));
    let st = match written {
        Ok(st) => st,
        Err(e) => {
            let _ = sfs::unlink_at(walked.dir(), &staged);
            return Err(fail(e));
        }
    };
    publish(walked.dir(), &staged, &name, how).map_err(fail)?;
    Ok(meta(key.clone(), &st).e_tag)
}

/// Copies `from` to `to` through a staging file next to `to`.
pub(super) fn copy(
    root: &Path,
    from: &ObjPath,
    to: &ObjPath,
    how: Publish,
) -> object_store::Result<()> {
    let (mut src, _) = get(root, from)?;
    let (dirs, name) = split(to)?;
    let fail = |e| store_err(to.as_ref(), e);
    let walked = Walked::open(root, &dirs, true).map_err(fail)?;
    let (mut file, staged) = stage(walked.dir(), &name).map_err(fail)?;
    if let Err(e) = io::copy(&mut src, &mut file) {
        let _ = sfs::unlink_at(walked.dir(), &staged);
        return Err(fail(e));
    }
    publish(walked.dir(), &staged, &name, how).map_err(fail)
}

/// Removes `key` (a symlink itself, never what it points at) and then the
/// directories it leaves empty. A key that is already gone is
/// `NotFound`, after removing the empty directories it may have left (an
/// aborted multipart upload never became an object).
pub(super) fn delete(root: &Path, key: &ObjPath) -> object_store::Result<()> {
    let (dirs, name) = split(key)?;
    let fail = |e| store_err(key.as_ref(), e);
    let walked = Walked::open(root, &dirs, false).map_err(fail)?;
    let gone = sfs::unlink_at(walked.dir(), &name);
    if gone.is_ok() || gone.as_ref().is_err_and(|e| errno(e) == libc::ENOENT) {
        walked.remove_empty(&dirs);
    }
    gone.map_err(fail)
}

/// Opens the directory a listing starts at; `None` when there is none (a
/// listing of a missing prefix, or of a prefix that is a file, is empty).
/// A symlink, or a file where a directory above the prefix should be,
/// fails the listing.
fn open_prefix(root: &Path, prefix: Option<&ObjPath>) -> object_store::Result<Option<Walked>> {
    let shown = prefix.map_or("", |p| p.as_ref());
    let parts = match prefix {
        Some(p) => key_names(p)?,
        None => Vec::new(),
    };
    let root_fd = sfs::open_dir(root).map_err(|e| store_err(shown, e))?;
    let chain = match sfs::open_dir_beneath(&root_fd, &parts, None) {
        Ok(chain) => chain,
        Err(b) if errno(&b.source) == libc::ENOENT => return Ok(None),
        Err(b) if errno(&b.source) == libc::ENOTDIR && b.depth + 1 == parts.len() => {
            let parent = b.opened.last().map_or(root_fd.as_fd(), |d| d.as_fd());
            let odd =
                sfs::lstat_at(parent, &parts[b.depth]).map_or(true, |st| st.kind != Kind::File);
            if odd {
                return Err(store_err(shown, b.source));
            }
            return Ok(None);
        }
        Err(b) => return Err(store_err(shown, b.source)),
    };
    Ok(Some(Walked {
        root: root_fd,
        chain,
    }))
}

fn skip_odd(key: &str) {
    tracing::warn!(
        key = %key.escape_debug(),
        "ignoring a symlink or special file in the store; ccbackup never writes one"
    );
}

/// The regular files below `prefix`, never following a symlink (they and
/// special files are skipped and logged; staging files are skipped). An
/// entry that vanishes while we look is skipped (a concurrent delete); any
/// other failure, such as a directory we may not read, fails the listing.
pub(super) fn list(root: &Path, prefix: Option<&ObjPath>) -> object_store::Result<Vec<ObjectMeta>> {
    let mut out = Vec::new();
    if let Some(w) = open_prefix(root, prefix)? {
        let base: Vec<String> = prefix
            .map(|p| p.parts().map(|x| x.as_ref().to_owned()).collect())
            .unwrap_or_default();
        walk(w.dir(), &base, &mut out)?;
    }
    Ok(out)
}

fn walk(
    dir: BorrowedFd<'_>,
    base: &[String],
    out: &mut Vec<ObjectMeta>,
) -> object_store::Result<()> {
    let here = base.join("/");
    let entries = sfs::list_dir(dir).map_err(|e| store_err(&here, e))?;
    for name in entries {
        let mut parts = base.to_vec();
        parts.push(name.to_string_lossy().into_owned());
        let key = parts.join("/");
        let st = match sfs::lstat_at(dir, &name) {
            Ok(st) => st,
            Err(e) if errno(&e) == libc::ENOENT => continue,
            Err(e) => return Err(store_err(&key, e)),
        };
        match st.kind {
            Kind::Dir => match sfs::open_dir_at(dir, &name) {
                Ok(sub) => walk(sub.as_fd(), &parts, out)?,
                Err(e) if errno(&e) == libc::ENOENT => {}
                // Swapped for a symlink since the lstat: skipped like one.
                Err(e) if matches!(errno(&e), libc::ELOOP | libc::ENOTDIR) => skip_odd(&key),
                Err(e) => return Err(store_err(&key, e)),
            },
            Kind::File if name.as_bytes().contains(&b'#') => {}
            Kind::File => out.push(meta(ObjPath::from_iter(parts), &st)),
            Kind::Symlink | Kind::Other => skip_odd(&key),
        }
    }
    Ok(())
}

/// One level below `prefix`: its directories as common prefixes and its
/// regular files as objects, with the same rules as [`list`].
pub(super) fn list_one(root: &Path, prefix: Option<&ObjPath>) -> object_store::Result<ListResult> {
    let mut result = ListResult {
        common_prefixes: Vec::new(),
        objects: Vec::new(),
        extensions: Default::default(),
    };
    let Some(w) = open_prefix(root, prefix)? else {
        return Ok(result);
    };
    let base: Vec<String> = prefix
        .map(|p| p.parts().map(|x| x.as_ref().to_owned()).collect())
        .unwrap_or_default();
    let entries = sfs::list_dir(w.dir()).map_err(|e| store_err(&base.join("/"), e))?;
    for name in entries {
        let mut parts = base.clone();
        parts.push(name.to_string_lossy().into_owned());
        let st = match sfs::lstat_at(w.dir(), &name) {
            Ok(st) => st,
            Err(e) if errno(&e) == libc::ENOENT => continue,
            Err(e) => return Err(store_err(&parts.join("/"), e)),
        };
        match st.kind {
            Kind::Dir => result.common_prefixes.push(ObjPath::from_iter(parts)),
            Kind::File if !name.as_bytes().contains(&b'#') => {
                result.objects.push(meta(ObjPath::from_iter(parts), &st))
            }
            _ => {}
        }
    }
    Ok(result)
}
