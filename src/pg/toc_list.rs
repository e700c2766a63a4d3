//! Reading the table of contents `pg_restore -l -v` prints: one line per
//! entry (`ID; TABLEOID OID DESC SCHEMA TAG OWNER`) and, with `-v`, a
//! `;\tdepends on: ID ID ...` line after each entry that has dependencies.
//!
//! The archive comes from the store, so the names in it are untrusted; this
//! parser only splits what `pg_restore` printed (it has already replaced
//! line breaks in names) and never lets a name decide more than the entry
//! it is in. Names are kept as `pg_restore` printed them: `SCHEMA TAG
//! OWNER` separated by single spaces, which is ambiguous when a name holds
//! a space, so matching compares whole prefixes ([`TocEntry::key`]) rather
//! than split fields.

/// The descriptions `pg_dump` writes that span several words, longest
/// first where one is a prefix of another, so a line's description is the
/// longest one it starts with.
const MULTI_WORD_DESCS: [&str; 32] = [
    "ACCESS METHOD",
    "CHECK CONSTRAINT",
    "DATABASE PROPERTIES",
    "DEFAULT ACL",
    "EVENT TRIGGER",
    "FK CONSTRAINT",
    "FOREIGN DATA WRAPPER",
    "FOREIGN SERVER",
    "FOREIGN TABLE",
    "INDEX ATTACH",
    "LARGE OBJECTS",
    "LARGE OBJECT",
    "MATERIALIZED VIEW DATA",
    "MATERIALIZED VIEW",
    "OPERATOR CLASS",
    "OPERATOR FAMILY",
    "PROCEDURAL LANGUAGE",
    "PUBLICATION TABLES IN SCHEMA",
    "PUBLICATION TABLE",
    "ROW SECURITY",
    "SECURITY LABEL",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "SHELL TYPE",
    "STATISTICS DATA",
    "SUBSCRIPTION TABLE",
    "TABLE ATTACH",
    "TABLE DATA",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "TEXT SEARCH PARSER",
    "TEXT SEARCH TEMPLATE",
];

/// One entry of an archive's table of contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocEntry {
    /// The dump ID: what a `pg_restore -L` list names.
    pub id: u32,
    /// `TABLE`, `TABLE DATA`, `FK CONSTRAINT`, ...
    pub desc: String,
    /// `SCHEMA TAG OWNER` as printed (`-` for no schema; the owner may be
    /// empty).
    pub names: String,
    /// Dump IDs this entry depends on, without repeats.
    pub deps: Vec<u32>,
}

impl TocEntry {
    /// `SCHEMA TAG ` (the names without the owner, with the trailing
    /// space): what [`entry_key`] builds for a schema and name, so matching
    /// a table needs no guess where a name with spaces ends.
    pub fn key(&self) -> &str {
        match self.names.rfind(' ') {
            Some(i) => &self.names[..=i],
            None => "",
        }
    }

    /// The entry as `pg_restore -l` shows it, for reports.
    pub fn label(&self) -> String {
        format!("{}; {} {}", self.id, self.desc, self.names.trim_end())
    }
}

/// The [`TocEntry::key`] of the entry for `name` in `schema` (`-` for an
/// object outside any schema, such as a schema itself).
pub fn entry_key(schema: &str, name: &str) -> String {
    format!("{schema} {name} ")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TocListError {
    #[error("line {line} of pg_restore's list is not a TOC entry: {text:?}")]
    Entry { line: usize, text: String },
    #[error("line {line} of pg_restore's list has a dependency that is not a dump ID: {text:?}")]
    Depends { line: usize, text: String },
    #[error("pg_restore's list names dump ID {0} twice")]
    Duplicate(u32),
}

/// Parses `pg_restore -l -v` output into its entries, in archive order.
pub fn parse(text: &str) -> Result<Vec<TocEntry>, TocListError> {
    let mut entries: Vec<TocEntry> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        if let Some(deps) = line.strip_prefix(";\tdepends on:") {
            let bad = || TocListError::Depends {
                line: line_no,
                text: line.to_owned(),
            };
            let last = entries.last_mut().ok_or_else(bad)?;
            for d in deps.split_whitespace() {
                let id: u32 = d.parse().map_err(|_| bad())?;
                if !last.deps.contains(&id) {
                    last.deps.push(id);
                }
            }
            continue;
        }
        if line.starts_with(';') || line.trim().is_empty() {
            continue;
        }
        let e = parse_entry(line).ok_or_else(|| TocListError::Entry {
            line: line_no,
            text: line.to_owned(),
        })?;
        if !seen.insert(e.id) {
            return Err(TocListError::Duplicate(e.id));
        }
        entries.push(e);
    }
    Ok(entries)
}

fn parse_entry(line: &str) -> Option<TocEntry> {
    let (id, rest) = line.split_once("; ")?;
    let id: u32 = id.parse().ok()?;
    // Catalog table OID and object OID: numbers we do not need.
    let mut parts = rest.splitn(3, ' ');
    parts.next()?.parse::<u32>().ok()?;
    parts.next()?.parse::<u32>().ok()?;
    let rest = parts.next()?;
    let desc = MULTI_WORD_DESCS
        .iter()
        .find(|d| {
            rest.strip_prefix(**d)
                .is_some_and(|after| after.starts_with(' '))
        })
        .map(|d| (*d).to_owned())
        .or_else(|| rest.split(' ').next().map(str::to_owned))?;
    let names = rest.get(desc.len() + 1..)?.to_owned();
    if desc.is_empty() || names.is_empty() {
        return None;
    }
    Some(TocEntry {
        id,
        desc,
        names,
        deps: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = ";\n; Archive created at 2026-12-07 19:06:12 UTC\n;     dbname: probe\n\
;\n; Selected TOC Entries:\n;\n\
3380; 0 0 ENCODING - ENCODING \n\
6; 2615 16397 SCHEMA - app postgres\n\
218; 1259 16410 TABLE app Gerät ☃ postgres\n;\tdepends on: 6\n\
217; 1259 16409 SEQUENCE app Gerät ☃_id_seq postgres\n;\tdepends on: 6 218\n\
3384; 0 0 SEQUENCE OWNED BY app Gerät ☃_id_seq postgres\n;\tdepends on: 217\n\
221; 1259 16441 VIEW public v postgres\n;\tdepends on: 220 220 220\n\
3375; 0 16410 TABLE DATA app Gerät ☃ postgres\n;\tdepends on: 218\n\
3226; 2606 16419 FK CONSTRAINT app Gerät ☃ Gerät ☃_rack_id_fkey postgres\n;\tdepends on: 218 216 3220\n";

    #[test]
    fn reads_entries_descriptions_names_and_dependencies() {
        let es = parse(LIST).unwrap();
        assert_eq!(es.len(), 8);
        assert_eq!(es[0].desc, "ENCODING");
        assert_eq!(es[0].names, "- ENCODING ");
        assert_eq!(es[0].key(), "- ENCODING ");
        assert_eq!(es[1].key(), entry_key("-", "app"));
        assert_eq!(es[2].desc, "TABLE");
        assert_eq!(es[2].key(), entry_key("app", "Gerät ☃"));
        assert_eq!(es[2].deps, [6]);
        assert_eq!(es[4].desc, "SEQUENCE OWNED BY");
        assert_eq!(es[5].deps, [220], "repeats are dropped");
        assert_eq!(es[6].desc, "TABLE DATA");
        assert_eq!(es[7].desc, "FK CONSTRAINT");
        assert_eq!(es[7].deps, [218, 216, 3220]);
        assert_eq!(
            es[7].label(),
            "3226; FK CONSTRAINT app Gerät ☃ Gerät ☃_rack_id_fkey postgres"
        );
    }

    #[test]
    fn refuses_what_pg_restore_does_not_print() {
        for bad in [
            "x; 0 0 TABLE a b c",
            "1; zero 0 TABLE a b c",
            "1;0 0 TABLE a b c",
            "1; 0 0 TABLE",
            "-3; 0 0 TABLE a b c",
        ] {
            assert!(
                matches!(parse(bad), Err(TocListError::Entry { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse(";\tdepends on: 1"),
            Err(TocListError::Depends { .. })
        ));
        assert!(matches!(
            parse("1; 0 0 TABLE a b c\n;\tdepends on: 2 x"),
            Err(TocListError::Depends { .. })
        ));
        assert_eq!(
            parse("1; 0 0 TABLE a b c\n1; 0 0 TABLE a d c"),
            Err(TocListError::Duplicate(1))
        );
    }
}
