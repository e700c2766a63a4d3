//! Listing PostgreSQL artifacts: a dump's table of contents (read by the
//! backup's own archive parser, so no `pg_restore` of a fitting version is
//! needed) with the row counts the manifest recorded, and the roles and
//! tablespaces of the globals (through restore's statement allow-list).

use std::collections::HashMap;
use std::io::{BufReader, Read};

use super::{Item, LsError};
use crate::backup::source::pgcount::RowCounter;
use crate::repo::manifest::Artifact;
use crate::restore::globals::{check_all, Kind};

/// Role attributes `pg_dumpall` writes that are worth showing; passwords
/// never are.
const ATTRIBUTES: [&str; 7] = [
    "SUPERUSER",
    "CREATEDB",
    "CREATEROLE",
    "LOGIN",
    "REPLICATION",
    "BYPASSRLS",
    "NOINHERIT",
];

/// A table's (schema, name) as the archive stores them.
type TableKey = (Vec<u8>, Vec<u8>);

/// TOC entries not listed: table data (the rows are what the counts are
/// about), and the session settings and database entry that `pg_restore
/// -l` leaves out too, so the two list the same entries.
const HIDDEN: [&[u8]; 5] = [
    b"TABLE DATA",
    b"ENCODING",
    b"STDSTRINGS",
    b"SEARCHPATH",
    b"DATABASE",
];

/// The manifest's row counts of one dump, by (schema, table) bytes.
#[derive(Debug, Default)]
pub(super) struct TableRows {
    database: String,
    rows: Option<HashMap<TableKey, i64>>,
}

impl TableRows {
    pub(super) fn of(a: &Artifact) -> TableRows {
        let pg = a.postgres();
        TableRows {
            database: pg.and_then(|p| p.database.clone()).unwrap_or_default(),
            rows: pg.and_then(|p| p.tables.as_ref()).map(|t| {
                t.iter()
                    .map(|t| {
                        let key = (t.schema.as_bytes().to_vec(), t.table.as_bytes().to_vec());
                        (key, t.rows)
                    })
                    .collect()
            }),
        }
    }
}

/// Reads the archive `r` until its TOC has been listed; the data blocks
/// after it are not parsed (the download still hashes them).
pub(super) fn list_toc(
    mut r: impl Read,
    art: &Artifact,
    rows: &TableRows,
    mut emit: impl FnMut(Item) -> bool,
) -> Result<(), LsError> {
    let toc_err = |why: String| LsError::Toc {
        key: art.key.clone(),
        why,
    };
    let mut counter = RowCounter::listing();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).map_err(|cause| LsError::Read {
            key: art.key.clone(),
            cause,
        })?;
        if n == 0 {
            return Err(toc_err(
                "the archive ended inside its table of contents".into(),
            ));
        }
        counter.feed(&buf[..n]);
        for e in counter.take_toc() {
            if HIDDEN.contains(&e.desc.as_slice()) {
                continue;
            }
            let item = if e.desc == b"TABLE" {
                let schema = e.namespace.unwrap_or_default();
                let name = e.tag.unwrap_or_default();
                Item::Table {
                    database: rows.database.clone(),
                    rows: rows
                        .rows
                        .as_ref()
                        .and_then(|m| m.get(&(schema.clone(), name.clone())).copied()),
                    schema,
                    name,
                    owner: e.owner,
                }
            } else {
                Item::Toc {
                    database: rows.database.clone(),
                    dump_id: e.dump_id,
                    desc: e.desc,
                    schema: e.namespace,
                    name: e.tag,
                    owner: e.owner,
                }
            };
            if !emit(item) {
                return Ok(());
            }
        }
        if let Some(e) = counter.problem() {
            return Err(toc_err(e.to_string()));
        }
        if counter.toc_read() {
            return Ok(());
        }
    }
}

/// Checks every statement of the globals `r` against restore's allow-list
/// (the same size caps), then lists their roles and tablespaces.
pub(super) fn list_globals(
    r: impl Read,
    art: &Artifact,
    mut emit: impl FnMut(Item) -> bool,
) -> Result<(), LsError> {
    let checked = check_all(BufReader::new(r)).map_err(|e| LsError::Globals {
        key: art.key.clone(),
        why: crate::error::chain(&e).to_string(),
    })?;
    let mut roles: Vec<(String, Vec<&'static str>)> = Vec::new();
    let mut tablespaces = Vec::new();
    for c in &checked {
        let Some(object) = &c.object else { continue };
        match c.kind {
            Kind::CreateRole if !roles.iter().any(|(n, _)| n == object) => {
                roles.push((object.clone(), Vec::new()));
            }
            Kind::AlterRole => {
                let found: Vec<&'static str> = ATTRIBUTES
                    .iter()
                    .copied()
                    .filter(|a| (3..c.stmt.tokens.len()).any(|i| c.stmt.is_word(i, a)))
                    .collect();
                match roles.iter_mut().find(|(n, _)| n == object) {
                    Some((_, attrs)) => attrs.extend(found),
                    None => roles.push((object.clone(), found)),
                }
            }
            Kind::CreateTablespace => tablespaces.push(object.clone()),
            _ => {}
        }
    }
    for (name, mut attributes) in roles {
        attributes.dedup();
        if !emit(Item::Role { name, attributes }) {
            return Ok(());
        }
    }
    for name in tablespaces {
        if !emit(Item::Tablespace { name }) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globals_art() -> Artifact {
        super::super::tree::tests::empty_artifact(
            "db/globals.sql.zst",
            "db",
            crate::repo::manifest::ArtifactKind::PgGlobals,
        )
    }

    #[test]
    fn roles_with_their_attributes_and_never_a_password() {
        let sql = "SET default_transaction_read_only = off;\n\
            CREATE ROLE \"www-data\";\n\
            ALTER ROLE \"www-data\" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$secret';\n\
            CREATE ROLE postgres;\n\
            ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;\n";
        let mut got = Vec::new();
        list_globals(sql.as_bytes(), &globals_art(), |i| {
            got.push(i);
            true
        })
        .unwrap();
        assert_eq!(
            got,
            vec![
                Item::Role {
                    name: "www-data".into(),
                    attributes: vec!["LOGIN"],
                },
                Item::Role {
                    name: "postgres".into(),
                    attributes: vec![
                        "SUPERUSER",
                        "CREATEDB",
                        "CREATEROLE",
                        "LOGIN",
                        "REPLICATION",
                        "BYPASSRLS"
                    ],
                },
            ]
        );
        assert!(!format!("{got:?}").contains("secret"));
    }

    proptest::proptest! {
        /// Random bytes, or a real archive header followed by them, end
        /// the TOC listing with an answer, never a panic or a hang.
        #[test]
        fn random_archives_end_in_an_answer(
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            header in proptest::prelude::any::<bool>()
        ) {
            let mut data = if header { b"PGDMP\x01\x0e\x00\x04\x08\x01".to_vec() } else { Vec::new() };
            data.extend_from_slice(&tail);
            let a = Artifact { kind: crate::repo::manifest::ArtifactKind::PgDump, ..globals_art() };
            let _ = list_toc(&data[..], &a, &TableRows::default(), |_| true);
        }
    }

    #[test]
    fn statements_restore_refuses_refuse_the_listing() {
        let sql = "CREATE ROLE a;\n\\! rm -rf /\n";
        let err = list_globals(sql.as_bytes(), &globals_art(), |_| true).unwrap_err();
        assert!(matches!(err, LsError::Globals { .. }), "{err}");
    }
}
