//! The prune-time sweep of what killed or failed runs leave in a
//! `file://` store that no listing shows.

use std::io;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// Removes what killed or failed runs leave in a `file://` store that no
/// listing shows: object_store's multipart staging files (`<key>#<n>`,
/// left by a process killed mid-upload or a cleanup that could not delete)
/// and directories left empty (a failed run's `<job>/<id>/`), under the
/// job's directory, when they were last changed before `cutoff` (a younger
/// one may belong to a running upload). The job's directory itself stays;
/// symlinks and special files are never touched. Returns the removed keys
/// (directories end in `/`).
pub async fn sweep_staging(
    root: PathBuf,
    job: String,
    cutoff: DateTime<Utc>,
) -> io::Result<Vec<String>> {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        // Everything below the store's root is opened relative to its
        // parent and never through a symlink, so a directory swapped for a
        // symlink mid-sweep is not followed out of the store.
        let root_fd = match crate::sys::fs::open_dir(&root) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        let Ok(name) = std::ffi::CString::new(job.as_bytes()) else {
            return Ok(out);
        };
        let job_fd = match crate::sys::fs::open_dir_at(&root_fd, &name) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            // A symlink or a file where the job's directory should be:
            // never followed, and said so.
            Err(e) if matches!(crate::sys::fs::errno(&e), libc::ELOOP | libc::ENOTDIR) => {
                return Err(io::Error::other(format!(
                    "refusing {}: it is a symlink or not a directory inside the store",
                    job.escape_debug()
                )))
            }
            Err(e) => return Err(e),
        };
        sweep_dir(&job_fd, &job, cutoff, &mut out);
        Ok(out)
    })
    .await
    .map_err(io::Error::other)?
}

fn changed_before(st: &crate::sys::fs::Stat, cutoff: DateTime<Utc>) -> bool {
    DateTime::<Utc>::from_timestamp(st.mtime, st.mtime_nsec as u32).is_some_and(|t| t < cutoff)
}

/// Sweeps below the directory `dir` (whose key is `rel`); true when it is
/// empty afterwards. What cannot be read or removed is left (and logged):
/// one odd entry must not stop the sweep of the others.
fn sweep_dir(
    dir: &std::os::fd::OwnedFd,
    rel: &str,
    cutoff: DateTime<Utc>,
    out: &mut Vec<String>,
) -> bool {
    use crate::sys::fs::{list_dir, lstat_at, open_dir_at, remove_dir_at, unlink_at, Kind};
    let names = match list_dir(dir) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(dir = %rel, error = %e, "cannot list a directory of the store; not swept");
            return false;
        }
    };
    let mut empty = true;
    for name in names {
        let key = format!("{rel}/{}", name.to_string_lossy());
        let Ok(st) = lstat_at(dir, &name) else {
            empty = false;
            continue;
        };
        let removed = match st.kind {
            Kind::Dir => {
                // Judged by its time before the sweep: removing a staging
                // file inside makes it look freshly changed.
                let old = changed_before(&st, cutoff);
                let swept = match open_dir_at(dir, &name) {
                    Ok(sub) => sweep_dir(&sub, &key, cutoff, out),
                    Err(_) => false,
                };
                let gone = swept && old && remove_dir_at(dir, &name).is_ok();
                if gone {
                    out.push(format!("{key}/"));
                }
                gone
            }
            Kind::File if name.to_bytes().contains(&b'#') && changed_before(&st, cutoff) => {
                let gone = unlink_at(dir, &name).is_ok();
                if gone {
                    out.push(key);
                }
                gone
            }
            _ => false,
        };
        if !removed {
            empty = false;
        }
    }
    empty
}
