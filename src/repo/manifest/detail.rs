//! What a source recorded about one artifact ([`ArtifactDetail`]), and the
//! artifact's format-1 JSON, which keeps that record in one of two slots
//! (`postgres`, `tree`) beside the artifact's `kind`.
//!
//! In memory an artifact has one detail or none; on the wire it keeps
//! exactly the fields and order format 1 always had, so old manifests read
//! and new ones are read by old releases. A manifest that fills both slots,
//! or a slot its kind does not have, is refused: such a record was not
//! written by ccbackup, and restore must not guess which half to believe.

use serde::{Deserialize, Serialize};

use super::{Artifact, ArtifactKind, Compression, EncryptionInfo, PostgresInfo, TreeInfo};

/// The record of one artifact that only its source kind understands.
// A backup has a handful of artifacts; boxing the larger variant would
// save a few hundred bytes each and cost every reader an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ArtifactDetail {
    /// Server and dump versions, row counts, database properties
    /// (`pg_dump` and `pg_globals` artifacts).
    Postgres(PostgresInfo),
    /// The root and what the tar holds (`rrd_tar` and `files_tar`).
    Tree(TreeInfo),
}

/// Which detail an artifact kind records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetailSlot {
    Postgres,
    Tree,
}

impl DetailSlot {
    /// The slot's field name in format 1.
    pub fn field(self) -> &'static str {
        match self {
            DetailSlot::Postgres => "postgres",
            DetailSlot::Tree => "tree",
        }
    }
}

impl ArtifactKind {
    /// Its name in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            ArtifactKind::PgDump => "pg_dump",
            ArtifactKind::PgGlobals => "pg_globals",
            ArtifactKind::RrdTar => "rrd_tar",
            ArtifactKind::FilesTar => "files_tar",
        }
    }

    /// The one detail slot this kind may fill.
    pub fn detail_slot(self) -> DetailSlot {
        match self {
            ArtifactKind::PgDump | ArtifactKind::PgGlobals => DetailSlot::Postgres,
            ArtifactKind::RrdTar | ArtifactKind::FilesTar => DetailSlot::Tree,
        }
    }
}

impl ArtifactDetail {
    pub fn slot(&self) -> DetailSlot {
        match self {
            ArtifactDetail::Postgres(_) => DetailSlot::Postgres,
            ArtifactDetail::Tree(_) => DetailSlot::Tree,
        }
    }
}

/// A detail that cannot belong to its artifact.
#[derive(Debug, thiserror::Error)]
pub enum DetailError {
    #[error("artifact {key:?} records both `postgres` and `tree`; an artifact has one kind")]
    BothSlots { key: String },
    #[error("artifact {key:?} of kind `{kind}` records `{slot}`, which that kind never has")]
    WrongSlot {
        key: String,
        kind: &'static str,
        slot: &'static str,
    },
}

/// An artifact as format 1 writes it: field names and order are the
/// format, so they must not change.
#[derive(Serialize, Deserialize)]
pub(super) struct Wire {
    key: String,
    source: String,
    kind: ArtifactKind,
    raw_bytes: u64,
    stored_bytes: u64,
    sha256: String,
    compression: Compression,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    postgres: Option<PostgresInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tree: Option<TreeInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption: Option<EncryptionInfo>,
}

/// The detail a format-1 artifact records, checked against its kind.
fn detail_of(
    key: &str,
    kind: ArtifactKind,
    postgres: Option<PostgresInfo>,
    tree: Option<TreeInfo>,
) -> Result<Option<ArtifactDetail>, DetailError> {
    let detail = match (postgres, tree) {
        (Some(_), Some(_)) => {
            return Err(DetailError::BothSlots {
                key: key.to_owned(),
            })
        }
        (Some(p), None) => Some(ArtifactDetail::Postgres(p)),
        (None, Some(t)) => Some(ArtifactDetail::Tree(t)),
        (None, None) => None,
    };
    match &detail {
        Some(d) if d.slot() != kind.detail_slot() => Err(DetailError::WrongSlot {
            key: key.to_owned(),
            kind: kind.name(),
            slot: d.slot().field(),
        }),
        _ => Ok(detail),
    }
}

impl TryFrom<Wire> for Artifact {
    type Error = DetailError;

    fn try_from(w: Wire) -> Result<Artifact, DetailError> {
        let detail = detail_of(&w.key, w.kind, w.postgres, w.tree)?;
        Ok(Artifact {
            key: w.key,
            source: w.source,
            kind: w.kind,
            raw_bytes: w.raw_bytes,
            stored_bytes: w.stored_bytes,
            sha256: w.sha256,
            compression: w.compression,
            detail,
            encryption: w.encryption,
        })
    }
}

impl From<Artifact> for Wire {
    fn from(a: Artifact) -> Wire {
        let (postgres, tree) = match a.detail {
            Some(ArtifactDetail::Postgres(p)) => (Some(p), None),
            Some(ArtifactDetail::Tree(t)) => (None, Some(t)),
            None => (None, None),
        };
        Wire {
            key: a.key,
            source: a.source,
            kind: a.kind,
            raw_bytes: a.raw_bytes,
            stored_bytes: a.stored_bytes,
            sha256: a.sha256,
            compression: a.compression,
            postgres,
            tree,
            encryption: a.encryption,
        }
    }
}

impl Artifact {
    /// The PostgreSQL record, when this artifact has one.
    pub fn postgres(&self) -> Option<&PostgresInfo> {
        match &self.detail {
            Some(ArtifactDetail::Postgres(p)) => Some(p),
            _ => None,
        }
    }

    /// The tree record, when this artifact has one.
    pub fn tree(&self) -> Option<&TreeInfo> {
        match &self.detail {
            Some(ArtifactDetail::Tree(t)) => Some(t),
            _ => None,
        }
    }

    pub fn tree_mut(&mut self) -> Option<&mut TreeInfo> {
        match &mut self.detail {
            Some(ArtifactDetail::Tree(t)) => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, ManifestError};
    use super::*;
    use crate::error::chain;

    const FIXTURE: &str = include_str!("../../../tests/fixtures/manifest-format1.json");

    fn fixture() -> serde_json::Value {
        serde_json::from_str(FIXTURE).unwrap()
    }

    /// The fixture with `edit` applied to its artifact `i`, parsed.
    fn parse_edited(
        i: usize,
        edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> Result<super::super::Manifest, ManifestError> {
        let mut v = fixture();
        edit(v["artifacts"][i].as_object_mut().unwrap());
        parse(&serde_json::to_vec(&v).unwrap(), "m")
    }

    fn refusal(r: Result<super::super::Manifest, ManifestError>) -> String {
        chain(&r.unwrap_err()).to_string()
    }

    #[test]
    fn details_land_in_their_kinds_slot_and_are_written_back_unchanged() {
        let m = parse(FIXTURE.as_bytes(), "m").unwrap();
        let slots: Vec<_> = m
            .artifacts
            .iter()
            .map(|a| a.detail.as_ref().map(ArtifactDetail::slot))
            .collect();
        use DetailSlot::{Postgres, Tree};
        assert_eq!(
            slots,
            [Some(Postgres), Some(Postgres), Some(Tree), Some(Tree)]
        );
        // Written back, the artifacts are the fixture's (format 1 always
        // writes `symlinks`, which the first release did not).
        let mut want = fixture()["artifacts"].clone();
        want[3]["tree"]["symlinks"] = 0.into();
        assert_eq!(serde_json::to_value(&m.artifacts).unwrap(), want);
        // ... with format 1's field order.
        let dump = serde_json::to_string(&m.artifacts[1]).unwrap();
        let at = |f: &str| dump.find(&format!("\"{f}\":")).unwrap();
        let order = [
            "key",
            "source",
            "kind",
            "raw_bytes",
            "stored_bytes",
            "sha256",
            "compression",
            "postgres",
        ];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{dump}");
        assert!(
            !dump.contains("\"tree\"") && !dump.contains("detail"),
            "{dump}"
        );
    }

    #[test]
    fn an_artifact_without_detail_still_reads() {
        let m = parse_edited(1, |a| {
            a.remove("postgres");
        })
        .unwrap();
        assert_eq!(m.artifacts[1].detail, None);
        assert!(m.artifacts[1].postgres().is_none());
    }

    #[test]
    fn hostile_both_slots_are_refused() {
        let tree = fixture()["artifacts"][2]["tree"].clone();
        let e = refusal(parse_edited(1, |a| {
            a.insert("tree".into(), tree);
        }));
        assert!(
            e.contains("db/01-ct-vis.dump.zst") && e.contains("both `postgres` and `tree`"),
            "{e}"
        );
    }

    #[test]
    fn hostile_a_kind_with_another_kinds_slot_is_refused() {
        let tree = fixture()["artifacts"][2]["tree"].clone();
        let e = refusal(parse_edited(1, |a| {
            a.remove("postgres");
            a.insert("tree".into(), tree);
        }));
        assert!(
            e.contains("kind `pg_dump` records `tree`, which that kind never has"),
            "{e}"
        );
        let pg = fixture()["artifacts"][0]["postgres"].clone();
        let e = refusal(parse_edited(3, |a| {
            a.remove("tree");
            a.insert("postgres".into(), pg);
        }));
        assert!(
            e.contains("\"etc.tar.zst\" of kind `files_tar` records `postgres`"),
            "{e}"
        );
    }

    #[test]
    fn kinds_know_their_slot_and_their_name() {
        for (kind, name, slot) in [
            (ArtifactKind::PgDump, "pg_dump", DetailSlot::Postgres),
            (ArtifactKind::PgGlobals, "pg_globals", DetailSlot::Postgres),
            (ArtifactKind::RrdTar, "rrd_tar", DetailSlot::Tree),
            (ArtifactKind::FilesTar, "files_tar", DetailSlot::Tree),
        ] {
            assert_eq!(kind.name(), name);
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert_eq!(kind.detail_slot(), slot);
        }
    }
}
