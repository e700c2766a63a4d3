//! `verify`: prove that stored backups are intact and, optionally, that they
//! really restore.
//!
//! Without `--restore-test` every artifact is streamed from the store and its
//! size and sha256 compared with the manifest (nothing is kept in memory or
//! on disk). With it, each database dump is restored into a scratch database
//! (unique name, dropped afterwards) and its tables and row counts compared
//! with what the manifest recorded in the dump's own snapshot; every RRD file
//! in an RRD archive is validated; file archives are read to the end.

use std::io::Read;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::crypto::{Identities, Opener};
use crate::error::chain;
use crate::progress::{Phase, Progress};

use crate::config::{JobConfig, PostgresConfig, SourceKind};
use crate::pg::conn::{self, quote_ident};
use crate::repo::manifest::{Artifact, ArtifactKind, Manifest};
use crate::repo::store::Repo;
use crate::restore::fetch::{self, FetchError};
use crate::restore::{self, RestoreRequest};
use crate::rrd::validate_rrd;
pub use report::{ArtifactCheck, Check, FailedAt, Failure, Verdict, VerifyReport};

pub mod report;

/// How to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Restore into scratch databases and read every archive, not only
    /// compare checksums.
    pub restore_test: bool,
    /// age identities, needed by a restore test of encrypted artifacts.
    pub identities: Option<Arc<Identities>>,
    /// Fired on SIGINT/SIGTERM (or daemon shutdown): stop after cleaning up.
    pub cancel: CancellationToken,
    pub progress: Arc<Progress>,
}

/// Verifies one backup: one verdict per artifact, in manifest order (those
/// not reached before a cancel are left out).
pub async fn verify_backup(
    repo: &Repo,
    job: &JobConfig,
    m: &Manifest,
    opts: &VerifyOptions,
) -> VerifyReport {
    let mut out = VerifyReport {
        backup: m.id.clone(),
        artifacts: Vec::new(),
    };
    for a in &m.artifacts {
        if opts.cancel.is_cancelled() {
            break;
        }
        let checked = if opts.restore_test {
            restore_check(repo, job, m, a, opts).await
        } else {
            opts.progress.start_phase(Phase::Checking, a.stored_bytes);
            fetch::verify(repo, &m.job, &m.id, a, &opts.progress, &opts.cancel)
                .await
                .map(|_| vec![Check::Checksum])
                .map_err(|e| Failure::new(FailedAt::Checksum, chain(&e).to_string()))
        };
        out.artifacts.push(ArtifactCheck {
            backup: m.id.clone(),
            key: a.key.clone(),
            verdict: match checked {
                Ok(checks) => Verdict::Ok { checks },
                Err(f) => Verdict::Failed(f),
            },
        });
    }
    out
}

/// The checks a restore test of `a` passed, or where it failed.
async fn restore_check(
    repo: &Repo,
    job: &JobConfig,
    m: &Manifest,
    a: &Artifact,
    opts: &VerifyOptions,
) -> Result<Vec<Check>, Failure> {
    restore::refuse_downgrade(job.encryption.is_some(), a, false)
        .map_err(|why| Failure::new(FailedAt::Downgrade, why))?;
    if a.kind == ArtifactKind::PgDump {
        // The restore stages and verifies the artifact itself.
        return restore_test_db(repo, job, m, a, opts).await;
    }
    if a.encryption.is_some() && opts.identities.is_none() {
        let e = crate::crypto::CryptoError::NoIdentity { key: a.key.clone() };
        return Err(Failure::new(FailedAt::Identity, e.to_string()));
    }
    let dir = tempfile::Builder::new()
        .prefix("ccbackup-verify-")
        .tempdir()
        .map_err(|e| {
            Failure::new(
                FailedAt::Scratch,
                format!("cannot create a scratch directory: {e}"),
            )
        })?;
    let staged_at = dir.path().join("artifact.zst");
    let staged = fetch::verified_local(
        repo,
        &m.job,
        &m.id,
        a,
        &staged_at,
        &opts.progress,
        &opts.cancel,
    )
    .await
    .map_err(|e: FetchError| Failure::new(FailedAt::Checksum, chain(&e).to_string()))?;
    opts.progress.start_phase(Phase::Testing, a.raw_bytes);
    let opener = Opener {
        path: staged,
        art: a.clone(),
        ids: opts.identities.clone(),
        progress: Some(opts.progress.clone()),
    };
    let a = a.clone();
    let stop = opts.cancel.clone();
    let checks = tokio::task::spawn_blocking(move || match a.kind {
        ArtifactKind::RrdTar => check_tree(&opener, true, &stop),
        ArtifactKind::FilesTar => check_tree(&opener, false, &stop),
        _ => {
            let fail = |e: String| Failure::new(FailedAt::Decompress, e);
            let d = opener.open().map_err(|e| fail(e.to_string()))?;
            let mut d = crate::interrupt::CancelRead::new(d, stop);
            std::io::copy(&mut d, &mut std::io::sink())
                .map(|_| vec![Check::Decompressed])
                .map_err(|e| fail(format!("{} does not decompress: {e}", a.key)))
        }
    })
    .await
    .map_err(|_| Failure::new(FailedAt::Worker, "verify worker stopped"))??;
    Ok([vec![Check::Checksum], checks].concat())
}

/// Largest `.rrd` entry `verify --restore-test` buffers to validate.
/// Concertim's files are 66-132 KiB; a bigger entry is reported rather than
/// letting the archive decide how much memory verify takes.
const MAX_RRD_VERIFY: u64 = 64 * 1024 * 1024;

/// Reads a tar archive to the end, streaming every entry; with `rrd`
/// validates every `.rrd` file (each buffered alone, up to
/// [`MAX_RRD_VERIFY`]).
fn check_tree(opener: &Opener, rrd: bool, stop: &CancellationToken) -> Result<Vec<Check>, Failure> {
    walk_tree(opener, rrd, stop).map_err(|e| Failure::new(FailedAt::Archive, e))
}

fn walk_tree(opener: &Opener, rrd: bool, stop: &CancellationToken) -> Result<Vec<Check>, String> {
    let a = &opener.art;
    let dec = crate::restore::tarcap::TarCap::new(opener.open().map_err(|e| e.to_string())?);
    let mut ar = tar::Archive::new(crate::interrupt::CancelRead::new(dec, stop.clone()));
    let mut files = 0u64;
    let mut rrds = 0u64;
    let mut buf = Vec::new();
    for entry in ar
        .entries()
        .map_err(|e| format!("archive unreadable: {e}"))?
    {
        let mut e = entry.map_err(|e| format!("archive unreadable: {e}"))?;
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        files += 1;
        let path = e.path().map(|p| p.into_owned()).unwrap_or_default();
        let shown = path.display().to_string().escape_debug().to_string();
        if rrd && path.extension().is_some_and(|x| x == "rrd") {
            if e.size() > MAX_RRD_VERIFY {
                return Err(format!(
                    "{shown}: {} bytes, larger than any rrd file verify accepts ({MAX_RRD_VERIFY})",
                    e.size()
                ));
            }
            buf.clear();
            e.read_to_end(&mut buf)
                .map_err(|err| format!("{shown}: unreadable: {err}"))?;
            validate_rrd(&buf).map_err(|err| format!("{shown}: {err}"))?;
            rrds += 1;
        } else {
            std::io::copy(&mut e, &mut std::io::sink())
                .map_err(|err| format!("{shown}: unreadable: {err}"))?;
        }
    }
    if let Some(t) = a.tree() {
        if t.files != files {
            return Err(format!(
                "archive holds {files} files but the manifest recorded {}",
                t.files
            ));
        }
    }
    let mut checks = vec![Check::ArchiveRead { files }];
    if rrd {
        checks.push(Check::RrdValid { files: rrds });
    }
    Ok(checks)
}

fn pg_source<'a>(job: &'a JobConfig, name: &str) -> Result<&'a PostgresConfig, String> {
    job.sources
        .iter()
        .find_map(|s| match &s.kind {
            SourceKind::Postgres(p) if s.name == name => Some(p),
            _ => None,
        })
        .ok_or_else(|| format!("no postgres source `{name}` in job `{}`", job.name))
}

async fn restore_test_db(
    repo: &Repo,
    job: &JobConfig,
    m: &Manifest,
    a: &Artifact,
    opts: &VerifyOptions,
) -> Result<Vec<Check>, Failure> {
    let config = |why: String| Failure::new(FailedAt::Configuration, why);
    let cfg = pg_source(job, &a.source).map_err(config)?;
    let db = a
        .postgres()
        .and_then(|p| p.database.clone())
        .ok_or_else(|| config("dump names no database".into()))?;
    let scratch = format!(
        "ccbackup_verify_{}",
        // Only a unique name, never a time anything is judged by; the
        // system clock keeps names apart even when a test pauses time.
        crate::repo::store::key_safe(&crate::repo::store::new_backup_id(chrono::Utc::now()))
            .to_lowercase()
            .replace('-', "_")
    );
    let req = RestoreRequest {
        source: Some(a.source.clone()),
        database: Some(db),
        target_db: Some(scratch.clone()),
        jobs: 1,
        no_owner: true,
        cancel: opts.cancel.clone(),
        identities: opts.identities.clone(),
        progress: Some(opts.progress.clone()),
        ..Default::default()
    };
    let restored = restore::run(repo, job, m, &req)
        .await
        .map_err(|e| Failure::new(FailedAt::Restore, chain(&e).to_string()));
    let compared = match restored {
        Ok(_) => compare_counts(cfg, &scratch, a)
            .await
            .map_err(|e| Failure::new(FailedAt::RowCounts, e))
            .map(|counted| {
                // The restore fetched the artifact and checked its sha256.
                let mut checks = vec![Check::Checksum, Check::RestoredIntoScratch];
                checks.extend(counted.map(|tables| Check::RowCounts { tables }));
                checks
            }),
        Err(e) => Err(e),
    };
    if let Ok(admin) = conn::connect(cfg, &cfg.maintenance_db).await {
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&scratch)
            ))
            .await;
    }
    compared
}

/// The tables compared, or none when the backup recorded no counts.
async fn compare_counts(
    cfg: &PostgresConfig,
    scratch: &str,
    a: &Artifact,
) -> Result<Option<usize>, String> {
    let Some(expected) = a.postgres().and_then(|p| p.tables.clone()) else {
        // Nothing recorded (row_counts off): the restore itself succeeding
        // is the check.
        return Ok(None);
    };
    let client = conn::connect(cfg, scratch)
        .await
        .map_err(|e| chain(&e).to_string())?;
    let found = conn::count_rows(&client, scratch)
        .await
        .map_err(|e| chain(&e).to_string())?;
    if found.len() != expected.len() {
        return Err(format!(
            "restored database has {} tables, the backup recorded {}",
            found.len(),
            expected.len()
        ));
    }
    for (f, e) in found.iter().zip(&expected) {
        if f != e {
            return Err(format!(
                "table {}.{}: restored {} rows, the backup recorded {}.{} with {} rows",
                f.schema, f.table, f.rows, e.schema, e.table, e.rows
            ));
        }
    }
    Ok(Some(expected.len()))
}
