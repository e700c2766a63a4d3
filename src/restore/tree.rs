//! Restoring one tree artifact (RRD or plain directory) into place.

use std::path::Path;

use super::report::{TreeOutcome, Warning};
use super::{fetch, RestoreError, RestoreRequest};
use crate::crypto::Opener;
use crate::repo::manifest::Artifact;
use crate::repo::manifest::ArtifactKind;
use crate::restore::extract::ExtractReport;
use crate::restore::extract::{extract_tree_checked, ExtractOptions};

/// When the backup recorded another root than the configured destination,
/// say so: the recorded root is information, never where files go.
pub(super) fn recorded_root(a: &Artifact, dest: &Path, req: &RestoreRequest) -> Option<Warning> {
    let root = &a.tree()?.root;
    if req.to.is_some() || Path::new(root) == dest {
        return None;
    }
    Some(Warning::RecordedRoot {
        root: root.clone(),
        artifact: a.key.clone(),
        dest: dest.to_owned(),
    })
}

/// What extracting `a` into `dest` did (or in a dry run would do).
pub(super) fn tree_outcome(
    a: &Artifact,
    dest: &Path,
    r: ExtractReport,
    dry_run: bool,
) -> TreeOutcome {
    TreeOutcome {
        artifact: a.key.clone(),
        dest: dest.to_owned(),
        dry_run,
        files: r.written,
        bytes: r.bytes,
        would_replace: r.would_replace,
        replaced: r.replaced,
        no_room: r.no_room,
    }
}

/// The tree is staged whole on the destination's file system before it is
/// moved into place: refuse up front when it cannot fit.
pub(super) fn check_tree_space(a: &Artifact, dest: &Path) -> Result<(), RestoreError> {
    let mut probe = dest;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => return Ok(()),
        }
    }
    let free = fetch::free_space(probe).map_err(RestoreError::Staging)?;
    let need = a.raw_bytes + 64 * 1024 * 1024;
    if free < need {
        return Err(RestoreError::Plan(format!(
            "not enough space on {} to stage {} ({} needed, {} free); nothing was written",
            probe.display(),
            a.key,
            crate::progress::human(need),
            crate::progress::human(free)
        )));
    }
    Ok(())
}

pub(super) async fn restore_tree(
    a: &Artifact,
    dest: &Path,
    staged: &Path,
    req: &RestoreRequest,
) -> Result<ExtractReport, RestoreError> {
    if !req.dry_run {
        check_tree_space(a, dest)?;
    }
    let opts = ExtractOptions {
        force: req.force,
        include: req.include.clone(),
        validate_rrd: a.kind == ArtifactKind::RrdTar,
        dry_run: req.dry_run,
        same_owner: req.same_owner,
        check_room: true,
    };
    let opener = Opener {
        path: staged.to_owned(),
        art: a.clone(),
        ids: req.identities.clone(),
        progress: req.progress.clone(),
    };
    let dest_c = dest.to_owned();
    let key = a.key.clone();
    let stop = req.cancel.clone();
    tokio::task::spawn_blocking(move || {
        extract_tree_checked(
            || {
                let r = crate::restore::tarcap::TarCap::new(opener.open()?);
                Ok(crate::interrupt::CancelRead::new(r, stop.clone()))
            },
            &dest_c,
            &opts,
        )
    })
    .await
    .map_err(|_| RestoreError::Join)?
    .map_err(|source| RestoreError::Extract {
        key,
        dest: dest.display().to_string(),
        source,
    })
}
