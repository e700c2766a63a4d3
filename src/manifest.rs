//! The manifest: the record that makes a backup exist.
//!
//! A manifest is written only after every artifact it names has been
//! uploaded and hashed, and with a create-only put, so its presence means the
//! backup is complete. Readers ignore fields they do not know (additive
//! changes keep `FORMAT`), and refuse a newer `format` outright.

use chrono::{DateTime, Utc};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::store::{manifest_path, Repo};

pub const FORMAT: u32 = 1;

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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Compression {
    pub algorithm: String,
    pub level: i32,
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
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest for backup {job}/{id} already exists; refusing to overwrite it")]
    AlreadyExists { job: String, id: String },
    #[error("cannot write manifest for backup {job}/{id}: {source}")]
    Write {
        job: String,
        id: String,
        source: object_store::Error,
    },
    #[error("cannot read manifest {key}: {source}")]
    Read {
        key: String,
        source: object_store::Error,
    },
    #[error("manifest {key} is not valid: {source}")]
    Parse {
        key: String,
        source: serde_json::Error,
    },
    #[error("manifest {key} has format {found}, newer than this ccbackup understands ({FORMAT}); upgrade ccbackup")]
    TooNew { key: String, found: u32 },
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
    let opts = PutOptions::from(PutMode::Create);
    match repo
        .store
        .put_opts(&manifest_path(&m.job, &m.id), PutPayload::from(body), opts)
        .await
    {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Err(ManifestError::AlreadyExists {
            job: m.job.clone(),
            id: m.id.clone(),
        }),
        Err(source) => Err(ManifestError::Write {
            job: m.job.clone(),
            id: m.id.clone(),
            source,
        }),
    }
}

pub async fn read(repo: &Repo, job: &str, id: &str) -> Result<Manifest, ManifestError> {
    let key = manifest_path(job, id);
    let bytes = async { repo.store.get(&key).await?.bytes().await }
        .await
        .map_err(|source| ManifestError::Read {
            key: key.to_string(),
            source,
        })?;
    parse(&bytes, key.as_ref())
}

pub fn parse(bytes: &[u8], key: &str) -> Result<Manifest, ManifestError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
                postgres: None,
                tree: None,
            }],
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
    fn refuses_newer_format() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["format"] = serde_json::json!(FORMAT + 1);
        let err = parse(&serde_json::to_vec(&v).unwrap(), "k").unwrap_err();
        assert!(matches!(err, ManifestError::TooNew { .. }), "{err}");
    }
}
