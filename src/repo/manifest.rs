//! The manifest: the record that makes a backup exist.
//!
//! A manifest is written only after every artifact it names has been
//! uploaded and hashed, and with a create-only put, so its presence means the
//! backup is complete. Readers ignore fields they do not know (additive
//! changes keep `FORMAT`), and refuse a newer `format` outright.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::chain;
use crate::options::CompressionSettings;
use crate::repo::commit;
use crate::repo::signing::MAX_SIGNATURE_BYTES;
use crate::repo::store::{backup_id_time, manifest_path, signature_path, Repo, MANIFEST_NAME};
use crate::retry::{Class, Transient};

pub const FORMAT: u32 = 1;

/// Largest manifest ccbackup reads. Real ones are a few KiB (a list of
/// invalid RRD files is the only part that grows); anything near this is
/// not ours, and reading it whole would let the store choose our memory use.
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;
/// Largest estimated memory of one parsed manifest ([`weight`]): tens of
/// thousands of tables or invalid RRD files fit; a document of millions of
/// tiny strings does not.
pub const MAX_PARSED_BYTES: u64 = 8 * 1024 * 1024;

mod detail;
pub mod weight;

pub use detail::{ArtifactDetail, DetailError, DetailSlot};
/// Longest artifact key, and longest segment of one (object stores and
/// file systems refuse longer names anyway).
const MAX_KEY_BYTES: usize = 1024;
const MAX_SEGMENT_BYTES: usize = 255;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub job: String,
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub tool_version: String,
    pub host: String,
    pub artifacts: Vec<Artifact>,
    /// What the shrink guard ([`crate::backup::guard`]) found; absent when nothing.
    #[serde(default, skip_serializing_if = "GuardMark::is_empty")]
    pub guard: GuardMark,
}

/// The shrink guard's verdict on a backup. A suspicious backup is complete
/// and restorable, but it is never the baseline of the next comparison,
/// never counts as a job's last good backup, and is never followed by
/// retention.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GuardMark {
    /// Why the backup looks empty or shrunken, one reason per entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspicious: Vec<String>,
    /// Reasons an operator accepted for this run (`run-now --accept-shrink`):
    /// the backup counts as good, and the record shows why it was smaller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<String>,
}

impl GuardMark {
    pub fn is_empty(&self) -> bool {
        self.suspicious.is_empty() && self.accepted.is_empty()
    }

    pub fn is_suspicious(&self) -> bool {
        !self.suspicious.is_empty()
    }
}

impl Manifest {
    pub fn stored_bytes(&self) -> u64 {
        self.artifacts.iter().map(|a| a.stored_bytes).sum()
    }

    pub fn raw_bytes(&self) -> u64 {
        self.artifacts.iter().map(|a| a.raw_bytes).sum()
    }

    /// Source names in configuration order, each once.
    pub fn source_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in &self.artifacts {
            if !out.contains(&a.source) {
                out.push(a.source.clone());
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// `pg_dump --format=custom --compress=0`, then zstd.
    PgDump,
    /// `pg_dumpall --globals-only` (plain SQL), then zstd.
    PgGlobals,
    /// tar of an RRD tree, then zstd.
    RrdTar,
    /// tar of a plain directory, then zstd.
    FilesTar,
}

/// One stored object of a backup. Its JSON is format 1's, with the detail
/// in the slot of its kind ([`detail`] reads and writes it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "detail::Wire", into = "detail::Wire")]
pub struct Artifact {
    /// Key relative to the backup directory.
    pub key: String,
    pub source: String,
    pub kind: ArtifactKind,
    /// Uncompressed bytes produced by the source.
    pub raw_bytes: u64,
    /// Bytes stored in the object store.
    pub stored_bytes: u64,
    /// sha256 of the stored bytes, lowercase hex.
    pub sha256: String,
    pub compression: Compression,
    /// What the source recorded; it always fits `kind` (absent in records
    /// that never had one).
    pub detail: Option<ArtifactDetail>,
    /// Present when the stored bytes are the zstd stream encrypted to age
    /// recipients; `sha256` and `stored_bytes` are of the encrypted object.
    pub encryption: Option<EncryptionInfo>,
}

/// How an artifact is encrypted. Public information only: the format and
/// the recipients (public keys), so an operator can tell which identity a
/// backup needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EncryptionInfo {
    pub format: String,
    pub recipients: Vec<String>,
}

/// What an artifact's bytes were compressed with, as the manifest records
/// it. The settings the pipeline ran with are
/// [`crate::options::CompressionSettings`]; this record is only ever built
/// from them (the `From` below), so a manifest states what was used. Two
/// types, not one, because the record is a stored format (it may not gain
/// the worker count, which does not change the bytes) while the settings
/// may grow without touching the format.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Compression {
    pub algorithm: String,
    pub level: i32,
}

impl From<CompressionSettings> for Compression {
    fn from(s: CompressionSettings) -> Self {
        Compression {
            algorithm: "zstd".to_owned(),
            level: s.level,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PostgresInfo {
    /// The database this artifact holds (absent for globals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    pub server_version: String,
    pub server_version_num: u32,
    pub pg_dump_version: String,
    /// Exact row counts per table, taken in the snapshot the dump used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<TableRows>>,
    /// Database-level properties `pg_dump` leaves to `CREATE DATABASE`
    /// (absent for globals and for backups taken before they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_properties: Option<DbProperties>,
}

/// What a restore needs to recreate the database itself as it was: how it
/// was created, who owns it, who may connect, its comment and settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DbProperties {
    pub owner: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// `libc`, `icu` or `builtin` (servers 15+; absent means libc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale_provider: Option<String>,
    /// The ICU or builtin locale, when that provider is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icu_rules: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The database ACL; `None` is the default ACL (PUBLIC may connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Vec<DbGrant>>,
    /// `ALTER DATABASE ... SET` and `ALTER ROLE ... IN DATABASE ... SET`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<DbSetting>,
}

/// One privilege of the database ACL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DbGrant {
    /// `None` is PUBLIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grantee: Option<String>,
    /// `CONNECT`, `TEMPORARY` or `CREATE`.
    pub privilege: String,
    #[serde(default)]
    pub grantable: bool,
}

/// One `name=value` setting of the database, for every role (`role`
/// `None`) or for one role in this database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DbSetting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableRows {
    pub schema: String,
    pub table: String,
    pub rows: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TreeInfo {
    pub root: String,
    pub files: u64,
    pub dirs: u64,
    #[serde(default)]
    pub symlinks: u64,
    /// RRD files stored although they failed validation (`on_invalid: include`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid: Vec<String>,
    /// How many invalid files were stored when their names are withheld:
    /// an encrypted backup's manifest reveals no names inside its trees.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub invalid_withheld: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest for backup {job}/{id} already exists; refusing to overwrite it")]
    AlreadyExists { job: String, id: String },
    #[error("cannot write manifest for backup {job}/{id}")]
    Write {
        job: String,
        id: String,
        source: object_store::Error,
    },
    #[error("cannot read manifest {key}")]
    Read {
        key: String,
        source: object_store::Error,
    },
    #[error("manifest {key} is not valid")]
    Parse {
        key: String,
        source: serde_json::Error,
    },
    #[error("manifest {key} has format {found}, newer than this ccbackup understands ({FORMAT}); upgrade ccbackup")]
    TooNew { key: String, found: u32 },
    #[error("manifest {key} is larger than {MAX_MANIFEST_BYTES} bytes; not reading it")]
    TooLarge { key: String },
    #[error("manifest {key} would take about {estimate} bytes of memory once parsed, more than {MAX_PARSED_BYTES}; not parsing it")]
    TooComplex { key: String, estimate: u64 },
    #[error("manifest {key} does not belong where it is stored: {why}")]
    Misplaced { key: String, why: String },
    #[error("manifest {key} is not trustworthy: {why}")]
    Untrusted { key: String, why: String },
    /// The put may have reached the store and reading the key back did
    /// not settle it: the manifest may still appear, so the artifacts
    /// must stay.
    #[error("the store did not confirm that the manifest of backup {job}/{id} was written, and it could not be read back; the backup's artifacts were left in place (if the manifest lands later the backup is complete; otherwise prune sweeps them after orphan_grace)")]
    Unconfirmed {
        job: String,
        id: String,
        source: Box<object_store::Error>,
    },
    #[error("cannot sign the manifest of backup {job}/{id}: {why}")]
    Sign {
        job: String,
        id: String,
        why: String,
    },
}

impl Transient for ManifestError {
    fn class(&self) -> Class {
        match self {
            ManifestError::Write { source, .. } | ManifestError::Read { source, .. } => {
                source.class()
            }
            // The next attempt writes a new backup ID; this one settles
            // on its own either way.
            ManifestError::Unconfirmed { .. } => Class::Transient,
            _ => Class::Permanent,
        }
    }
}

impl ManifestError {
    /// The manifest exists but cannot be trusted or understood, as opposed
    /// to the store failing to deliver it.
    pub fn is_damaged(&self) -> bool {
        !matches!(
            self,
            ManifestError::Read { .. }
                | ManifestError::Write { .. }
                | ManifestError::AlreadyExists { .. }
                | ManifestError::Unconfirmed { .. }
                | ManifestError::Sign { .. }
        )
    }

    /// The backup's artifacts must not be removed after this error: the
    /// manifest may exist (or still appear), or another writer owns the ID.
    pub fn keeps_artifacts(&self) -> bool {
        matches!(
            self,
            ManifestError::AlreadyExists { .. } | ManifestError::Unconfirmed { .. }
        )
    }

    /// Damaged in the sense that its signature is missing or wrong.
    pub fn is_untrusted(&self) -> bool {
        matches!(self, ManifestError::Untrusted { .. })
    }
}

/// Writes the manifest with a create-only put: a second writer of the same
/// backup ID loses instead of silently replacing the first.
pub async fn write(repo: &Repo, m: &Manifest) -> Result<(), ManifestError> {
    let body = serde_json::to_vec_pretty(m).map_err(|e| ManifestError::Write {
        job: m.job.clone(),
        id: m.id.clone(),
        source: object_store::Error::Generic {
            store: "manifest",
            source: Box::new(e),
        },
    })?;
    // The signature goes first, so a manifest never exists unsigned.
    if let Some(signer) = &repo.signer {
        let sig = signer
            .sign(&body, &format!("ccbackup manifest {}/{}", m.job, m.id))
            .map_err(|e| ManifestError::Sign {
                job: m.job.clone(),
                id: m.id.clone(),
                why: e.to_string(),
            })?;
        put_create(repo, &signature_path(&m.job, &m.id), sig.into_bytes(), m).await?;
    }
    let written = put_create(repo, &manifest_path(&m.job, &m.id), body, m).await;
    let gone = matches!(&written, Err(e) if !e.keeps_artifacts());
    if gone && repo.signer.is_some() {
        if let Err(e) = repo.store.delete(&signature_path(&m.job, &m.id)).await {
            tracing::warn!(job = %m.job, backup = %m.id, error = %chain(&e), "could not remove the signature of an unwritten manifest; the sweep removes it");
        }
    }
    written
}

async fn put_create(
    repo: &Repo,
    key: &object_store::path::Path,
    body: Vec<u8>,
    m: &Manifest,
) -> Result<(), ManifestError> {
    put_create_with(repo, key, body, m, &commit::READ_BACK_DELAYS).await
}

/// [`put_create`] with the pauses before each read-back of an unconfirmed
/// put (see [`commit`]).
async fn put_create_with(
    repo: &Repo,
    key: &object_store::path::Path,
    body: Vec<u8>,
    m: &Manifest,
    delays: &[std::time::Duration],
) -> Result<(), ManifestError> {
    let opts = PutOptions::from(PutMode::Create);
    let payload = PutPayload::from(body.clone());
    let source = match repo.store.put_opts(key, payload, opts).await {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let exists = matches!(
        source,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    );
    // "Already exists" may be our own earlier attempt that object_store
    // retried after a dropped connection: one read tells.
    let resolution = if exists {
        commit::resolve(repo, key, &body, &[std::time::Duration::ZERO]).await
    } else if commit::fate_of(&source) == commit::PutFate::Unknown {
        tracing::warn!(job = %m.job, backup = %m.id, key = %key, error = %chain(&source), "the store did not confirm the manifest write; reading it back");
        commit::resolve(repo, key, &body, delays).await
    } else {
        return Err(ManifestError::Write {
            job: m.job.clone(),
            id: m.id.clone(),
            source,
        });
    };
    let (job, id) = (m.job.clone(), m.id.clone());
    match resolution {
        commit::Resolution::Written => {
            tracing::info!(job = %m.job, backup = %m.id, key = %key, "the unconfirmed write was applied: read back exactly what was sent");
            Ok(())
        }
        commit::Resolution::Other => Err(ManifestError::AlreadyExists { job, id }),
        commit::Resolution::StillUnknown if exists => Err(ManifestError::AlreadyExists { job, id }),
        commit::Resolution::StillUnknown => Err(ManifestError::Unconfirmed {
            job,
            id,
            source: Box::new(source),
        }),
    }
}

/// Reads at most `cap` bytes of an object; `Ok(None)` when it is larger.
/// Every small object read from the (untrusted) store goes through it.
pub async fn read_capped(
    repo: &Repo,
    key: &object_store::path::Path,
    cap: usize,
) -> Result<Option<Vec<u8>>, object_store::Error> {
    Ok(read_capped_dated(repo, key, cap).await?.map(|(b, _)| b))
}

/// [`read_capped`], with the time the store recorded the object (its
/// `LastModified`): what a signing key's trust window is judged by.
pub async fn read_capped_dated(
    repo: &Repo,
    key: &object_store::path::Path,
    cap: usize,
) -> Result<Option<(Vec<u8>, DateTime<Utc>)>, object_store::Error> {
    let got = repo.store.get(key).await?;
    let written = got.meta.last_modified;
    let mut stream = got.into_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.try_next().await? {
        if bytes.len() + chunk.len() > cap {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some((bytes, written)))
}

/// Reads the manifest stored at `<job>/<id>/manifest.json` and checks that
/// it describes that backup (see [`check_location`]). The read stops at
/// [`MAX_MANIFEST_BYTES`].
pub async fn read(repo: &Repo, job: &str, id: &str) -> Result<Manifest, ManifestError> {
    read_weighed(repo, job, id).await.map(|(m, _, _)| m)
}

/// What vouches for a manifest that was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Signed by the configured key.
    Signed,
    /// No key is configured: nothing was checked.
    Unchecked,
    /// Not signed, but from before `signing.unsigned_before`: a backup
    /// written before the store moved to signing. Readable and prunable;
    /// the catalogue never lets one be newer than a signed backup.
    Legacy,
}

/// [`read`], with the manifest's estimated memory ([`weight`]) and what
/// vouches for it, for the catalogue, which keeps many manifests and must
/// bound the total.
pub async fn read_weighed(
    repo: &Repo,
    job: &str,
    id: &str,
) -> Result<(Manifest, u64, Trust), ManifestError> {
    let key = manifest_path(job, id);
    let read_err = |source| ManifestError::Read {
        key: key.to_string(),
        source,
    };
    let Some((bytes, written)) = read_capped_dated(repo, &key, MAX_MANIFEST_BYTES)
        .await
        .map_err(read_err)?
    else {
        return Err(ManifestError::TooLarge {
            key: key.to_string(),
        });
    };
    let mut trust = Trust::Unchecked;
    if let Some(v) = &repo.verifier {
        let untrusted = |why: String| ManifestError::Untrusted {
            key: key.to_string(),
            why,
        };
        let sig = match read_capped(repo, &signature_path(job, id), MAX_SIGNATURE_BYTES).await {
            Ok(Some(sig)) => Some(sig),
            Ok(None) => return Err(untrusted("its signature file is oversized".into())),
            Err(object_store::Error::NotFound { .. })
                if legacy_admits(repo.unsigned_before, id) =>
            {
                None
            }
            Err(object_store::Error::NotFound { .. }) => {
                return Err(untrusted(format!(
                    "it is not signed (no {}){}",
                    crate::repo::store::SIGNATURE_NAME,
                    match repo.unsigned_before {
                        Some(t) => format!(
                            " and is not from before signing.unsigned_before ({})",
                            t.to_rfc3339()
                        ),
                        None => String::new(),
                    }
                )))
            }
            Err(source) => {
                return Err(ManifestError::Read {
                    key: signature_path(job, id).to_string(),
                    source,
                })
            }
        };
        trust = match sig {
            Some(sig) => {
                let sig = String::from_utf8_lossy(&sig);
                v.verify(&bytes, &sig, written).map_err(untrusted)?;
                Trust::Signed
            }
            None => Trust::Legacy,
        };
    }
    let (m, weight) = parse_weighed(&bytes, key.as_ref())?;
    check_location(&m, job, id).map_err(|why| ManifestError::Misplaced {
        key: key.to_string(),
        why,
    })?;
    Ok((m, weight, trust))
}

/// Pure: whether an unsigned manifest in directory `id` is admitted as a
/// backup from before the store moved to signing. The time is the one in
/// the ID, which [`check_location`] then ties to the manifest's own.
pub fn legacy_admits(unsigned_before: Option<DateTime<Utc>>, id: &str) -> bool {
    match (unsigned_before, backup_id_time(id)) {
        (Some(cut), Some(t)) => t < cut,
        _ => false,
    }
}

/// Pure: whether a manifest found at `<job>/<id>/` may be trusted to
/// describe that backup. The store is untrusted: a manifest copied from
/// another backup, or one whose keys point elsewhere, must not steer
/// verify, restore or prune outside its own directory.
pub fn check_location(m: &Manifest, job: &str, id: &str) -> Result<(), String> {
    if m.job != job {
        return Err(format!("it names job {:?}", m.job));
    }
    if m.id != id {
        return Err(format!("it names backup {:?}", m.id));
    }
    let Some(id_time) = backup_id_time(id) else {
        return Err("its directory is not a backup ID".to_owned());
    };
    if m.started_at.timestamp() != id_time.timestamp() {
        return Err(format!(
            "its start time {} differs from the time in its ID",
            m.started_at.to_rfc3339()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for a in &m.artifacts {
        check_key(&a.key).map_err(|why| format!("artifact key {:?} {why}", a.key))?;
        if !seen.insert(a.key.as_str()) {
            return Err(format!("artifact key {:?} appears twice", a.key));
        }
        if a.sha256.len() != 64
            || !a
                .sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(format!("artifact {:?} has no valid sha256", a.key));
        }
    }
    Ok(())
}

/// Pure: an artifact key is a plain relative path of ordinary segments.
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("is empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err("is too long");
    }
    if key.starts_with('/') {
        return Err("is absolute");
    }
    if key.contains('\\') {
        return Err("contains a backslash");
    }
    if key.chars().any(|c| c.is_control()) {
        return Err("contains a control character");
    }
    for seg in key.split('/') {
        match seg {
            "" => return Err("has an empty segment"),
            "." | ".." => return Err("has a `.` or `..` segment"),
            s if s.len() > MAX_SEGMENT_BYTES => return Err("has a segment that is too long"),
            _ => {}
        }
    }
    if key == MANIFEST_NAME || key.ends_with(".minisig") && key.starts_with(MANIFEST_NAME) {
        return Err("names the manifest itself");
    }
    Ok(())
}

pub fn parse(bytes: &[u8], key: &str) -> Result<Manifest, ManifestError> {
    parse_weighed(bytes, key).map(|(m, _)| m)
}

/// [`parse`], refusing before it allocates a manifest estimated above
/// [`MAX_PARSED_BYTES`], and returning the estimate with it.
pub fn parse_weighed(bytes: &[u8], key: &str) -> Result<(Manifest, u64), ManifestError> {
    let estimate = weight::estimate(bytes).map_err(|source| ManifestError::Parse {
        key: key.to_owned(),
        source,
    })?;
    if estimate > MAX_PARSED_BYTES {
        return Err(ManifestError::TooComplex {
            key: key.to_owned(),
            estimate,
        });
    }
    parse_unweighed(bytes, key).map(|m| (m, estimate))
}

fn parse_unweighed(bytes: &[u8], key: &str) -> Result<Manifest, ManifestError> {
    #[derive(Deserialize)]
    struct Probe {
        format: u32,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
        key: key.to_owned(),
        source,
    })?;
    if probe.format > FORMAT {
        return Err(ManifestError::TooNew {
            key: key.to_owned(),
            found: probe.format,
        });
    }
    serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
        key: key.to_owned(),
        source,
    })
}

/// Test fixtures other modules' unit tests share.
#[cfg(test)]
pub(crate) mod fixture {
    use super::{GuardMark, Manifest, FORMAT};
    use chrono::{DateTime, Utc};

    /// A manifest of job `j` with no artifacts, started and finished at `at`.
    pub(crate) fn manifest_at(id: &str, at: DateTime<Utc>) -> Manifest {
        Manifest {
            format: FORMAT,
            job: "j".into(),
            id: id.into(),
            started_at: at,
            finished_at: at,
            tool_version: "0".into(),
            host: "h".into(),
            artifacts: Vec::new(),
            guard: GuardMark::default(),
        }
    }

    /// The same, at the time its backup ID names.
    pub(crate) fn manifest(id: &str) -> Manifest {
        let at = crate::repo::store::backup_id_time(id).expect("a backup ID");
        manifest_at(id, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manifest records what the pipeline ran with: zstd at the
    /// configured level; the worker count changes no byte, so it is not
    /// recorded.
    #[test]
    fn the_record_is_built_from_the_settings() {
        let settings = CompressionSettings {
            level: 7,
            workers: 4,
        };
        let single = CompressionSettings {
            workers: 0,
            ..settings
        };
        let want = Compression {
            algorithm: "zstd".to_owned(),
            level: 7,
        };
        assert_eq!(Compression::from(settings), want);
        assert_eq!(Compression::from(single), want);
    }

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            job: "j".into(),
            id: "20260101T000000Z-abcdef".into(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            tool_version: "0".into(),
            host: "h".into(),
            artifacts: vec![Artifact {
                key: "db/01-x.dump.zst".into(),
                source: "db".into(),
                kind: ArtifactKind::PgDump,
                raw_bytes: 10,
                stored_bytes: 5,
                sha256: "00".into(),
                compression: Compression {
                    algorithm: "zstd".into(),
                    level: 3,
                },
                detail: None,
                encryption: None,
            }],
            guard: GuardMark::default(),
        }
    }

    #[test]
    fn round_trips_and_tolerates_unknown_fields() {
        let m = sample();
        let mut v = serde_json::to_value(&m).unwrap();
        v["future_field"] = serde_json::json!(1);
        let back = parse(&serde_json::to_vec(&v).unwrap(), "k").unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn the_guard_mark_is_left_out_when_empty_and_read_back_when_set() {
        let mut m = sample();
        let v = serde_json::to_value(&m).unwrap();
        assert!(v.get("guard").is_none(), "{v}");
        m.guard.suspicious = vec!["source `etc`: files dropped from 3 to 0".into()];
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(parse(&bytes, "k").unwrap(), m);
    }

    #[test]
    fn refuses_newer_format() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["format"] = serde_json::json!(FORMAT + 1);
        let err = parse(&serde_json::to_vec(&v).unwrap(), "k").unwrap_err();
        assert!(matches!(err, ManifestError::TooNew { .. }), "{err}");
    }

    fn placed() -> Manifest {
        let mut m = sample();
        m.started_at = backup_id_time(&m.id).unwrap();
        m.artifacts[0].sha256 = "ab".repeat(32);
        m
    }

    #[test]
    fn a_manifest_in_its_own_directory_passes() {
        let m = placed();
        check_location(&m, "j", &m.id.clone()).unwrap();
    }

    #[test]
    fn regression_issue9_manifest_must_match_where_it_was_found() {
        let m = placed();
        let other = "20260101T000000Z-000001";
        assert!(check_location(&m, "j", other)
            .unwrap_err()
            .contains("names backup"));
        assert!(check_location(&m, "k", &m.id.clone())
            .unwrap_err()
            .contains("names job"));
        let mut late = placed();
        late.started_at += chrono::Duration::days(1);
        assert!(check_location(&late, "j", &m.id.clone())
            .unwrap_err()
            .contains("start time"));
        let mut dup = placed();
        dup.artifacts.push(dup.artifacts[0].clone());
        assert!(check_location(&dup, "j", &m.id.clone())
            .unwrap_err()
            .contains("twice"));
        let mut nosum = placed();
        nosum.artifacts[0].sha256 = "../x".into();
        assert!(check_location(&nosum, "j", &m.id.clone()).is_err());
    }

    #[test]
    fn regression_issue9_keys_stay_under_the_backup_directory() {
        for bad in [
            "../../../../etc/shadow",
            "/etc/shadow",
            "db/../../x",
            "db//x",
            "db/./x",
            "",
            "a\\b",
            "a\nb",
            "manifest.json",
            "manifest.json.minisig",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_key(&"a".repeat(300)).is_err());
        assert!(check_key(&format!("{}/x", "a/".repeat(600))).is_err());
        for good in [
            "db/01-ct-vis.dump.zst",
            "rrd.rrd.tar.zst",
            "etc.tar.zst",
            "db/globals.sql.zst",
        ] {
            check_key(good).unwrap();
        }
    }

    /// The first release's manifests must stay readable: a format change
    /// that breaks this fixture needs a migration, not a silent edit.
    #[test]
    fn golden_format_1_manifest_still_reads() {
        let text = include_str!("../../tests/fixtures/manifest-format1.json");
        let m = parse(text.as_bytes(), "fixture").unwrap();
        check_location(&m, "concertim", "20261125T020000Z-1a2b3c").unwrap();
        assert_eq!(m.artifacts.len(), 4);
        assert_eq!(m.stored_bytes(), 1003 + 262144 + 31337 + 812);
        assert_eq!(m.source_names(), ["db", "rrd", "etc"]);
        let dump = &m.artifacts[1];
        assert_eq!(dump.kind, ArtifactKind::PgDump);
        let pg = dump.postgres().unwrap();
        assert_eq!(pg.database.as_deref(), Some("ct-vis"));
        assert_eq!(pg.tables.as_ref().unwrap()[0].rows, 12);
        assert!(dump.encryption.is_none());
        let tree = m.artifacts[3].tree().unwrap();
        assert_eq!((tree.files, tree.symlinks), (1, 0));
    }
}
