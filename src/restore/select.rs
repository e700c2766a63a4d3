//! Restoring some tables or schemas of a dump: which entries of the
//! archive's table of contents to apply (pure: entries + request + what the
//! target already holds -> entries).
//!
//! What comes with a table (`--table SCHEMA.TABLE`):
//! - its definition and its data;
//! - the sequences it owns (`serial`/identity columns) with their current
//!   values (`SEQUENCE SET`) and ownership (`SEQUENCE OWNED BY`);
//! - everything attached to it alone or to it and other restored objects:
//!   column defaults, indexes, primary key, unique, check and exclusion
//!   constraints, foreign keys between restored tables, triggers whose
//!   function is restored too, rules, row-security policies, extended
//!   statistics, comments, security labels and grants (`ACL`);
//! - its schema, when the target has no schema of that name (with the
//!   schema's comment and grants); a schema the target has is used as is.
//!
//! What does not, each reported as left out with the reason:
//! - foreign keys to or from a table that is not restored (the restored
//!   table would reference rows that are not there, or block dropping);
//! - triggers whose function is not restored (restore its schema too);
//! - views, materialized views and other objects that depend on the table
//!   but are objects of their own (name them, or use `--schema`).
//!
//! `--schema S` restores every object whose schema is S (tables, views,
//! sequences, functions, types, ...) and, by the same rules, what is
//! attached to them. Objects a restored entry needs that are not restored
//! (a type or function from another schema, an extension) are reported as
//! needs: they must already exist in the target, or the restore fails and
//! is rolled back.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::pg::toc_list::{entry_key, TocEntry};

/// Entries that belong to other objects: applied when every object they
/// depend on is restored (or, for a schema, exists in the target) and at
/// least one of them is restored.
const ATTACHED: [&str; 20] = [
    "TABLE DATA",
    "SEQUENCE SET",
    "SEQUENCE OWNED BY",
    "DEFAULT",
    "INDEX",
    "INDEX ATTACH",
    "TABLE ATTACH",
    "CONSTRAINT",
    "CHECK CONSTRAINT",
    "FK CONSTRAINT",
    "TRIGGER",
    "RULE",
    "POLICY",
    "ROW SECURITY",
    "STATISTICS",
    "STATISTICS DATA",
    "MATERIALIZED VIEW DATA",
    "COMMENT",
    "SECURITY LABEL",
    "ACL",
];

/// Session settings `pg_restore` applies whatever the list says.
const SETUP: [&str; 3] = ["ENCODING", "STDSTRINGS", "SEARCHPATH"];

/// Entries that create a relation: the ones that would collide with a
/// relation of the same name in the target.
const RELATIONS: [&str; 5] = [
    "TABLE",
    "SEQUENCE",
    "VIEW",
    "MATERIALIZED VIEW",
    "FOREIGN TABLE",
];

/// What the operator asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableRequest {
    /// `(schema, table)` pairs from `--table`.
    pub tables: Vec<(String, String)>,
    /// `--schema` names.
    pub schemas: Vec<String>,
}

impl TableRequest {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.schemas.is_empty()
    }
}

/// What the target database already holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetFacts {
    pub schemas: HashSet<String>,
    /// `(schema, name)` of its tables, views, sequences and foreign tables.
    pub relations: HashSet<(String, String)>,
    /// `(schema, index, table)` of its indexes.
    pub indexes: HashSet<(String, String, String)>,
}

impl TargetFacts {
    /// A database ccbackup is about to create: `public` and nothing else.
    pub fn new_database() -> TargetFacts {
        TargetFacts {
            schemas: HashSet::from(["public".to_owned()]),
            relations: HashSet::new(),
            indexes: HashSet::new(),
        }
    }
}

/// An entry that touches the selection but is not applied, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftOut {
    pub entry: String,
    pub reason: String,
}

/// The entries to apply and what the operator should know about them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// Dump IDs in archive order: the `pg_restore -L` list.
    #[serde(skip)]
    pub ids: Vec<u32>,
    /// The same entries as `pg_restore -l` shows them.
    pub applied: Vec<String>,
    pub left_out: Vec<LeftOut>,
    /// Objects restored entries need that are not restored: they must
    /// exist in the target.
    pub needs: Vec<String>,
    /// Relations of the target a restored entry has the name of: applying
    /// needs `--clean`, which drops them first.
    pub replaces: Vec<String>,
    /// Indexes of the target that belong to a table this restore does not
    /// replace but have the name of a restored index: never applied, with
    /// or without `--clean`.
    #[serde(skip)]
    pub clashes: Vec<String>,
}

/// Pure: parses `SCHEMA.TABLE` (`TABLE` alone means `public.TABLE`); a
/// part in double quotes may hold dots, and `""` inside it is one quote.
pub fn parse_table_arg(arg: &str) -> Result<(String, String), String> {
    let bad = |why: &str| format!("--table {arg:?}: {why} (expected SCHEMA.TABLE)");
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = arg.chars().peekable();
    let mut quoted_part = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if cur.is_empty() && !quoted_part => {
                quoted_part = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            cur.push('"');
                        }
                        Some('"') => break,
                        Some(c) => cur.push(c),
                        None => return Err(bad("unterminated quote")),
                    }
                }
                if !matches!(chars.peek(), None | Some('.')) {
                    return Err(bad("text after a closing quote"));
                }
            }
            '.' => {
                parts.push(std::mem::take(&mut cur));
                quoted_part = false;
            }
            c => cur.push(c),
        }
    }
    parts.push(cur);
    let (schema, table) = match parts.as_slice() {
        [t] => ("public".to_owned(), t.clone()),
        [s, t] => (s.clone(), t.clone()),
        _ => return Err(bad("too many dots; quote a name that holds one")),
    };
    if schema.is_empty() || table.is_empty() {
        return Err(bad("empty name"));
    }
    Ok((schema, table))
}

/// Pure: with existing relations of the same names, only `--clean`
/// replaces them. An index of another table that has a restored index's
/// name is refused even with `--clean`: index names are unique in a
/// schema, and `--clean` would drop the other table's index by that name.
pub fn refuse_replace(sel: &Selection, target: &str, clean: bool) -> Result<(), String> {
    if !sel.clashes.is_empty() {
        return Err(format!(
            "database `{target}` already has {}, which a restored index is named like; \
             --clean would drop it, and without --clean the restore fails: rename or drop it \
             first, or restore into a new database with --target-db",
            sel.clashes.join(", ")
        ));
    }
    if clean || sel.replaces.is_empty() {
        return Ok(());
    }
    Err(format!(
        "database `{target}` already has {}; use --clean to replace {}, or restore into a new \
         database with --target-db",
        sel.replaces.join(", "),
        if sel.replaces.len() == 1 {
            "it"
        } else {
            "them"
        }
    ))
}

/// Pure: the entries of `entries` that restore what `req` asks for into a
/// target holding `target` (see the module documentation for the rules).
pub fn select(
    entries: &[TocEntry],
    req: &TableRequest,
    target: &TargetFacts,
) -> Result<Selection, String> {
    let toc = Toc::new(entries, target);
    let primary = toc.with_schemas(toc.with_owned_sequences(toc.asked_for(req)?));
    let applied = toc.attach(&primary);
    Ok(toc.report(&primary, &applied))
}

/// An archive's entries, indexed, and the target they are restored into.
struct Toc<'a> {
    entries: &'a [TocEntry],
    by_id: HashMap<u32, &'a TocEntry>,
    target: &'a TargetFacts,
    /// The keys of the target's relations ([`entry_key`]).
    target_relations: HashSet<String>,
    /// The target's indexes by key ([`entry_key`]): `(schema, index, table)`.
    target_indexes: HashMap<String, &'a (String, String, String)>,
}

impl<'a> Toc<'a> {
    fn new(entries: &'a [TocEntry], target: &'a TargetFacts) -> Toc<'a> {
        Toc {
            entries,
            by_id: entries.iter().map(|e| (e.id, e)).collect(),
            target,
            target_relations: target
                .relations
                .iter()
                .map(|(s, n)| entry_key(s, n))
                .collect(),
            target_indexes: target
                .indexes
                .iter()
                .map(|i| (entry_key(&i.0, &i.1), i))
                .collect(),
        }
    }

    fn is_attached(e: &TocEntry) -> bool {
        ATTACHED.contains(&e.desc.as_str())
    }

    fn is_schema(e: &TocEntry) -> bool {
        e.desc == "SCHEMA"
    }

    /// The name a schema entry (`- NAME OWNER`) creates.
    fn schema_name(e: &TocEntry) -> Option<&str> {
        if !Self::is_schema(e) {
            return None;
        }
        e.key().strip_prefix("- ").and_then(|k| k.strip_suffix(' '))
    }

    fn target_has_schema(&self, e: &TocEntry) -> bool {
        Self::schema_name(e).is_some_and(|s| self.target.schemas.contains(s))
    }

    /// Whether `e` is an object of schema `s`. Its names start with `s `,
    /// but so do the names of the objects of a schema called `s x` (which
    /// anyone allowed to create a schema can add). `pg_dump` records an
    /// object's schema among its dependencies whenever the archive holds
    /// that schema, so an entry that depends on a schema entry belongs to
    /// that schema; one that depends on none (the schema is not in the
    /// archive, like `public` usually) goes by its names.
    fn in_schema(&self, e: &TocEntry, s: &str) -> bool {
        if !e
            .names
            .strip_prefix(s)
            .is_some_and(|rest| rest.starts_with(' '))
        {
            return false;
        }
        let mut schemas = e
            .deps
            .iter()
            .filter_map(|d| self.by_id.get(d))
            .filter_map(|d| Self::schema_name(d))
            .peekable();
        schemas.peek().is_none() || schemas.any(|n| n == s)
    }

    /// Whether dependency `d` is in place: applied, or a schema the target
    /// has.
    fn satisfied(&self, d: u32, applied: &HashSet<u32>) -> bool {
        applied.contains(&d)
            || self
                .by_id
                .get(&d)
                .is_some_and(|e| self.target_has_schema(e))
    }

    /// The tables named, and everything but attached entries in the
    /// schemas named.
    fn asked_for(&self, req: &TableRequest) -> Result<HashSet<u32>, String> {
        let mut primary = HashSet::new();
        for (s, t) in &req.tables {
            let key = entry_key(s, t);
            let before = primary.len();
            primary.extend(
                self.entries
                    .iter()
                    .filter(|e| e.desc == "TABLE" && e.key() == key && self.in_schema(e, s))
                    .map(|e| e.id),
            );
            if primary.len() == before {
                return Err(self.no_table(s, t));
            }
        }
        for s in &req.schemas {
            let schema_key = entry_key("-", s);
            let found: Vec<u32> = self
                .entries
                .iter()
                .filter(|e| !Self::is_attached(e) && !SETUP.contains(&e.desc.as_str()))
                .filter(|e| self.in_schema(e, s) || (Self::is_schema(e) && e.key() == schema_key))
                .map(|e| e.id)
                .collect();
            if found.is_empty() {
                return Err(format!("the backup has nothing in schema `{s}`"));
            }
            primary.extend(found);
        }
        Ok(primary)
    }

    fn no_table(&self, s: &str, t: &str) -> String {
        let prefix = format!("{s} ");
        let have: Vec<&str> = self
            .entries
            .iter()
            .filter(|e| e.desc == "TABLE")
            .filter_map(|e| e.key().strip_prefix(&prefix).map(str::trim_end))
            .take(20)
            .collect();
        format!(
            "the backup has no table `{s}`.`{t}` (tables in schema `{s}`: {})",
            if have.is_empty() {
                "none".to_owned()
            } else {
                have.join(", ")
            }
        )
    }

    /// Sequences a chosen table owns depend on it (pg_dump records the
    /// ownership that way).
    fn with_owned_sequences(&self, mut primary: HashSet<u32>) -> HashSet<u32> {
        let owned: Vec<u32> = self
            .entries
            .iter()
            .filter(|e| e.desc == "SEQUENCE" && e.deps.iter().any(|d| primary.contains(d)))
            .map(|e| e.id)
            .collect();
        primary.extend(owned);
        primary
    }

    /// A schema the objects live in is created only when the target lacks
    /// it; a schema the target has is used as it is.
    fn with_schemas(&self, mut primary: HashSet<u32>) -> HashSet<u32> {
        primary.retain(|id| {
            self.by_id
                .get(id)
                .is_none_or(|e| !self.target_has_schema(e))
        });
        let schemas: Vec<u32> = primary
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .flat_map(|e| e.deps.iter())
            .filter_map(|d| self.by_id.get(d))
            .filter(|d| Self::is_schema(d) && !self.target_has_schema(d))
            .map(|d| d.id)
            .collect();
        primary.extend(schemas);
        primary
    }

    /// `primary`, the attached entries whose dependencies are all in place
    /// (at least one of them restored), and the session settings. Each
    /// attached entry's unmet dependencies are counted down as they are
    /// applied: linear in the dependencies however the archive arranges
    /// them (cycles and long chains included).
    fn attach(&self, primary: &HashSet<u32>) -> HashSet<u32> {
        let mut applied = primary.clone();
        let mut unmet: HashMap<u32, usize> = HashMap::new();
        let mut touched: HashSet<u32> = HashSet::new();
        let mut dependents: HashMap<u32, Vec<u32>> = HashMap::new();
        for e in self
            .entries
            .iter()
            .filter(|e| Self::is_attached(e) && !applied.contains(&e.id))
        {
            let mut n = 0;
            for &d in &e.deps {
                if applied.contains(&d) {
                    touched.insert(e.id);
                } else if !self.satisfied(d, &applied) {
                    n += 1;
                    dependents.entry(d).or_default().push(e.id);
                }
            }
            unmet.insert(e.id, n);
        }
        let mut queue: Vec<u32> = unmet
            .iter()
            .filter(|(id, n)| **n == 0 && touched.contains(id))
            .map(|(id, _)| *id)
            .collect();
        while let Some(id) = queue.pop() {
            if !applied.insert(id) {
                continue;
            }
            for f in dependents.get(&id).into_iter().flatten() {
                if let Some(n) = unmet.get_mut(f) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        queue.push(*f);
                    }
                }
            }
        }
        applied.extend(
            self.entries
                .iter()
                .filter(|e| SETUP.contains(&e.desc.as_str()))
                .map(|e| e.id),
        );
        applied
    }

    fn describe(&self, d: u32) -> String {
        match self.by_id.get(&d) {
            Some(e) => format!("{} {}", e.desc, e.names.trim_end()),
            None => format!("dump ID {d}, which the archive does not list"),
        }
    }

    /// The selection in archive order, with what was left out, what must
    /// exist already and what `--clean` would replace.
    fn report(&self, primary: &HashSet<u32>, applied: &HashSet<u32>) -> Selection {
        let mut sel = Selection::default();
        let mut needs = HashSet::new();
        let restored_tables: HashSet<&str> = self
            .entries
            .iter()
            .filter(|e| e.desc == "TABLE" && applied.contains(&e.id))
            .map(TocEntry::key)
            .collect();
        for e in self.entries {
            if applied.contains(&e.id) {
                // An index is named in its schema, not its table.
                if let Some((s, i, t)) = self
                    .target_indexes
                    .get(e.key())
                    .filter(|_| e.desc == "INDEX")
                    .copied()
                {
                    if !restored_tables.contains(entry_key(s, t).as_str()) {
                        sel.clashes.push(format!("index {s}.{i} of table {s}.{t}"));
                    }
                }
                sel.ids.push(e.id);
                sel.applied.push(e.label());
                let unmet = e.deps.iter().filter(|d| !self.satisfied(**d, applied));
                for &d in unmet.filter(|_| primary.contains(&e.id)) {
                    if needs.insert(d) {
                        sel.needs.push(format!(
                            "{} (needed by {}): not restored, so it must exist in the target",
                            self.describe(d),
                            e.label()
                        ));
                    }
                }
                if RELATIONS.contains(&e.desc.as_str()) && self.target_relations.contains(e.key()) {
                    sel.replaces
                        .push(format!("{} {}", e.desc, e.key().trim_end()));
                }
                continue;
            }
            // Everything in a schema depends on it: only objects that
            // touch a restored object other than a schema are worth a line.
            let touches = e.deps.iter().any(|d| {
                applied.contains(d) && self.by_id.get(d).is_some_and(|d| !Self::is_schema(d))
            });
            if !touches {
                continue;
            }
            let reason = if Self::is_attached(e) {
                let missing: Vec<String> = e
                    .deps
                    .iter()
                    .filter(|d| !self.satisfied(**d, applied))
                    .map(|d| self.describe(*d))
                    .collect();
                format!("needs {}, which is not restored", missing.join(", "))
            } else {
                "an object of its own that depends on restored ones: name it with --table \
                 or restore its schema with --schema"
                    .to_owned()
            };
            sel.left_out.push(LeftOut {
                entry: e.label(),
                reason,
            });
        }
        sel
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::toc_list::parse;

    /// The shape of a real `pg_restore -l -v` (PostgreSQL 15): schema
    /// `app` with a trigger function, `app.racks` (serial, unique
    /// constraint), `app."Gerät ☃"` (bigserial, index, FK to racks),
    /// `public.notes` (FK to Gerät, comment, grant, trigger) and a view.
    const LIST: &str = "\
3380; 0 0 ENCODING - ENCODING \n\
3381; 0 0 STDSTRINGS - STDSTRINGS \n\
3382; 0 0 SEARCHPATH - SEARCHPATH \n\
3383; 1262 16396 DATABASE - probe postgres\n\
6; 2615 16397 SCHEMA - app postgres\n\
3392; 0 0 COMMENT - SCHEMA app postgres\n;\tdepends on: 6\n\
222; 1255 16439 FUNCTION app trg() postgres\n;\tdepends on: 6\n\
218; 1259 16410 TABLE app Gerät ☃ postgres\n;\tdepends on: 6\n\
217; 1259 16409 SEQUENCE app Gerät ☃_id_seq postgres\n;\tdepends on: 6 218\n\
3384; 0 0 SEQUENCE OWNED BY app Gerät ☃_id_seq postgres\n;\tdepends on: 217\n\
216; 1259 16399 TABLE app racks postgres\n;\tdepends on: 6\n\
215; 1259 16398 SEQUENCE app racks_id_seq postgres\n;\tdepends on: 216 6\n\
3385; 0 0 SEQUENCE OWNED BY app racks_id_seq postgres\n;\tdepends on: 215\n\
220; 1259 16426 TABLE public notes postgres\n\
3386; 0 0 COMMENT public TABLE notes postgres\n;\tdepends on: 220\n\
3387; 0 0 ACL public TABLE notes postgres\n;\tdepends on: 220\n\
219; 1259 16425 SEQUENCE public notes_id_seq postgres\n;\tdepends on: 220\n\
3388; 0 0 SEQUENCE OWNED BY public notes_id_seq postgres\n;\tdepends on: 219\n\
221; 1259 16441 VIEW public v postgres\n;\tdepends on: 220 220 220\n\
3214; 2604 16413 DEFAULT app Gerät ☃ id postgres\n;\tdepends on: 218 217 218\n\
3213; 2604 16402 DEFAULT app racks id postgres\n;\tdepends on: 216 215 216\n\
3215; 2604 16429 DEFAULT public notes id postgres\n;\tdepends on: 219 220 220\n\
3375; 0 16410 TABLE DATA app Gerät ☃ postgres\n;\tdepends on: 218\n\
3373; 0 16399 TABLE DATA app racks postgres\n;\tdepends on: 216\n\
3377; 0 16426 TABLE DATA public notes postgres\n;\tdepends on: 220\n\
3389; 0 0 SEQUENCE SET app Gerät ☃_id_seq postgres\n;\tdepends on: 217\n\
3390; 0 0 SEQUENCE SET app racks_id_seq postgres\n;\tdepends on: 215\n\
3391; 0 0 SEQUENCE SET public notes_id_seq postgres\n;\tdepends on: 219\n\
3223; 2606 16418 CONSTRAINT app Gerät ☃ Gerät ☃_pkey postgres\n;\tdepends on: 218\n\
3218; 2606 16408 CONSTRAINT app racks racks_name_key postgres\n;\tdepends on: 216\n\
3220; 2606 16406 CONSTRAINT app racks racks_pkey postgres\n;\tdepends on: 216\n\
3225; 2606 16433 CONSTRAINT public notes notes_pkey postgres\n;\tdepends on: 220\n\
3221; 1259 16424 INDEX app Gerät ☃_label_idx postgres\n;\tdepends on: 218\n\
3228; 2620 16440 TRIGGER public notes t postgres\n;\tdepends on: 220 222\n\
3226; 2606 16419 FK CONSTRAINT app Gerät ☃ Gerät ☃_rack_id_fkey postgres\n;\tdepends on: 218 216 3220\n\
3227; 2606 16434 FK CONSTRAINT public notes notes_dev_fkey postgres\n;\tdepends on: 218 220 3223\n";

    fn entries() -> Vec<TocEntry> {
        parse(LIST).unwrap()
    }

    fn tables(names: &[(&str, &str)]) -> TableRequest {
        TableRequest {
            tables: names
                .iter()
                .map(|(s, t)| ((*s).to_owned(), (*t).to_owned()))
                .collect(),
            schemas: Vec::new(),
        }
    }

    fn ids(sel: &Selection) -> Vec<u32> {
        sel.ids.clone()
    }

    #[test]
    fn one_table_brings_its_data_sequence_indexes_and_constraints_but_not_foreign_keys() {
        let sel = select(
            &entries(),
            &tables(&[("app", "Gerät ☃")]),
            &TargetFacts::new_database(),
        )
        .unwrap();
        assert_eq!(
            ids(&sel),
            [3380, 3381, 3382, 6, 3392, 218, 217, 3384, 3214, 3375, 3389, 3223, 3221]
        );
        let left: Vec<&str> = sel.left_out.iter().map(|l| l.entry.as_str()).collect();
        assert_eq!(
            left,
            [
                "3226; FK CONSTRAINT app Gerät ☃ Gerät ☃_rack_id_fkey postgres",
                "3227; FK CONSTRAINT public notes notes_dev_fkey postgres"
            ]
        );
        assert!(
            sel.left_out[0].reason.contains("TABLE app racks postgres"),
            "{:?}",
            sel.left_out
        );
        assert!(sel.needs.is_empty() && sel.replaces.is_empty(), "{sel:?}");
    }

    #[test]
    fn a_foreign_key_between_two_restored_tables_comes_along() {
        let sel = select(
            &entries(),
            &tables(&[("app", "Gerät ☃"), ("app", "racks")]),
            &TargetFacts::new_database(),
        )
        .unwrap();
        let got = ids(&sel);
        for id in [3226, 3220, 3218, 215, 3390, 3213] {
            assert!(got.contains(&id), "{id} missing from {got:?}");
        }
        assert!(!got.contains(&3227));
    }

    #[test]
    fn grants_and_comments_come_along_a_trigger_only_with_its_function() {
        let sel = select(
            &entries(),
            &tables(&[("public", "notes")]),
            &TargetFacts::new_database(),
        )
        .unwrap();
        let got = ids(&sel);
        for id in [220, 3386, 3387, 219, 3388, 3215, 3377, 3391, 3225] {
            assert!(got.contains(&id), "{id} missing from {got:?}");
        }
        // public exists in a new database: no schema entry is needed.
        assert!(!got.contains(&6) && !got.contains(&3228) && !got.contains(&221));
        let trigger = sel
            .left_out
            .iter()
            .find(|l| l.entry.starts_with("3228;"))
            .unwrap();
        assert!(trigger.reason.contains("FUNCTION app trg()"), "{trigger:?}");
        let view = sel
            .left_out
            .iter()
            .find(|l| l.entry.starts_with("221;"))
            .unwrap();
        assert!(view.reason.contains("--schema"), "{view:?}");
    }

    /// Review attack: schema `app x` lists like objects of `app` whose
    /// names hold a space; the schema dependency tells them apart.
    #[test]
    fn a_schema_named_like_another_plus_a_space_stays_out() {
        let list = "\
6; 2615 1 SCHEMA - app postgres\n\
7; 2615 2 SCHEMA - app x postgres\n\
10; 1259 3 TABLE app x y postgres\n;\tdepends on: 6\n\
11; 1259 4 TABLE app x y postgres\n;\tdepends on: 7\n\
12; 1255 5 FUNCTION app x escalate() postgres\n;\tdepends on: 7\n\
13; 0 3 TABLE DATA app x y postgres\n;\tdepends on: 10\n\
14; 0 4 TABLE DATA app x y postgres\n;\tdepends on: 11\n";
        let es = parse(list).unwrap();
        let new = TargetFacts::new_database();
        let schema = TableRequest {
            tables: Vec::new(),
            schemas: vec!["app".into()],
        };
        assert_eq!(ids(&select(&es, &schema, &new).unwrap()), [6, 10, 13]);
        let one = select(&es, &tables(&[("app", "x y")]), &new).unwrap();
        assert_eq!(ids(&one), [6, 10, 13]);
        let other = select(&es, &tables(&[("app x", "y")]), &new).unwrap();
        assert_eq!(ids(&other), [7, 11, 14]);
    }

    #[test]
    fn a_schema_brings_everything_in_it() {
        let req = TableRequest {
            tables: Vec::new(),
            schemas: vec!["app".into()],
        };
        let sel = select(&entries(), &req, &TargetFacts::new_database()).unwrap();
        let got = ids(&sel);
        for id in [6, 3392, 222, 218, 217, 216, 215, 3226, 3221, 3373, 3375] {
            assert!(got.contains(&id), "{id} missing from {got:?}");
        }
        assert!(!got.contains(&220) && !got.contains(&3227) && !got.contains(&3383));
    }

    #[test]
    fn an_existing_schema_is_used_and_existing_tables_are_reported() {
        let target = TargetFacts {
            schemas: HashSet::from(["public".to_owned(), "app".to_owned()]),
            relations: HashSet::from([("app".to_owned(), "racks".to_owned())]),
            indexes: HashSet::new(),
        };
        let sel = select(&entries(), &tables(&[("app", "racks")]), &target).unwrap();
        let got = ids(&sel);
        assert!(!got.contains(&6) && !got.contains(&3392), "{got:?}");
        assert!(got.contains(&216) && got.contains(&3220));
        assert_eq!(sel.replaces, ["TABLE app racks"]);
        let err = refuse_replace(&sel, "copy", false).unwrap_err();
        assert!(
            err.contains("--clean") && err.contains("app racks"),
            "{err}"
        );
        assert!(refuse_replace(&sel, "copy", true).is_ok());
    }

    /// Review attack: `--clean` drops a restored index's name in the
    /// schema, whichever table holds it in the target.
    #[test]
    fn an_index_name_held_by_another_table_is_refused_even_with_clean() {
        let idx = |t: &str| {
            (
                "app".to_owned(),
                "Gerät ☃_label_idx".to_owned(),
                t.to_owned(),
            )
        };
        let mut target = TargetFacts {
            schemas: HashSet::from(["public".to_owned(), "app".to_owned()]),
            relations: HashSet::from([("app".to_owned(), "old".to_owned())]),
            indexes: HashSet::from([idx("old")]),
        };
        let sel = select(&entries(), &tables(&[("app", "Gerät ☃")]), &target).unwrap();
        let err = refuse_replace(&sel, "copy", true).unwrap_err();
        assert!(
            err.contains("index app.Gerät ☃_label_idx of table app.old"),
            "{err}"
        );
        // The table's own index goes with the table --clean replaces.
        target.relations = HashSet::from([("app".to_owned(), "Gerät ☃".to_owned())]);
        target.indexes = HashSet::from([idx("Gerät ☃")]);
        let sel = select(&entries(), &tables(&[("app", "Gerät ☃")]), &target).unwrap();
        assert!(sel.clashes.is_empty(), "{sel:?}");
        assert!(refuse_replace(&sel, "copy", true).is_ok());
    }

    #[test]
    fn unknown_tables_and_schemas_are_named() {
        let err = select(
            &entries(),
            &tables(&[("app", "nope")]),
            &TargetFacts::new_database(),
        )
        .unwrap_err();
        assert!(
            err.contains("`app`.`nope`") && err.contains("racks"),
            "{err}"
        );
        let req = TableRequest {
            tables: Vec::new(),
            schemas: vec!["zzz".into()],
        };
        assert!(select(&entries(), &req, &TargetFacts::new_database()).is_err());
        // A view is not a table.
        assert!(select(
            &entries(),
            &tables(&[("public", "v")]),
            &TargetFacts::new_database()
        )
        .is_err());
    }

    #[test]
    fn needs_name_what_must_already_exist() {
        let mut es = entries();
        es.push(TocEntry {
            id: 9000,
            desc: "TABLE".into(),
            names: "app typed postgres".into(),
            deps: vec![6, 9001, 42424],
        });
        es.push(TocEntry {
            id: 9001,
            desc: "TYPE".into(),
            names: "other mood postgres".into(),
            deps: vec![],
        });
        let sel = select(
            &es,
            &tables(&[("app", "typed")]),
            &TargetFacts::new_database(),
        )
        .unwrap();
        assert_eq!(sel.needs.len(), 2, "{:?}", sel.needs);
        assert!(sel.needs[0].contains("TYPE other mood"), "{:?}", sel.needs);
        assert!(sel.needs[1].contains("does not list"), "{:?}", sel.needs);
    }

    #[test]
    fn crafted_dependency_cycles_and_chains_end() {
        // Attached entries depending on each other in a ring, and a long
        // chain: the selection finishes and applies only what is anchored.
        let mut es = vec![TocEntry {
            id: 1,
            desc: "TABLE".into(),
            names: "s t o".into(),
            deps: vec![],
        }];
        for i in 2..5000u32 {
            es.push(TocEntry {
                id: i,
                desc: "COMMENT".into(),
                names: format!("s c{i} o"),
                deps: vec![i - 1],
            });
        }
        es.push(TocEntry {
            id: 6000,
            desc: "ACL".into(),
            names: "s r1 o".into(),
            deps: vec![6001],
        });
        es.push(TocEntry {
            id: 6001,
            desc: "ACL".into(),
            names: "s r2 o".into(),
            deps: vec![6000],
        });
        let sel = select(&es, &tables(&[("s", "t")]), &TargetFacts::new_database()).unwrap();
        assert_eq!(sel.ids.len(), 4999);
        assert!(!sel.ids.contains(&6000));
    }

    mod crafted {
        use super::*;
        use proptest::prelude::*;

        const DESCS: [&str; 9] = [
            "TABLE",
            "SCHEMA",
            "SEQUENCE",
            "VIEW",
            "TABLE DATA",
            "FK CONSTRAINT",
            "INDEX",
            "COMMENT",
            "SEQUENCE SET",
        ];
        const NAMES: [&str; 5] = [
            "app racks o",
            "app t o",
            "- app o",
            "app racks x o",
            "public v o",
        ];

        fn listing() -> impl Strategy<Value = Vec<TocEntry>> {
            proptest::collection::vec(
                (
                    1u32..60,
                    0..DESCS.len(),
                    0..NAMES.len(),
                    proptest::collection::vec(0u32..70, 0..5),
                ),
                0..80,
            )
            .prop_map(|raw| {
                let mut seen = HashSet::new();
                raw.into_iter()
                    .filter(|(id, ..)| seen.insert(*id))
                    .map(|(id, d, n, deps)| TocEntry {
                        id,
                        desc: DESCS[d].to_owned(),
                        names: NAMES[n].to_owned(),
                        deps,
                    })
                    .collect()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Whatever a crafted archive lists: no panic, only listed
            /// entries, no table but the one asked for, and no attached
            /// entry whose dependencies are not all in place.
            #[test]
            fn a_crafted_listing_never_selects_more_than_asked(es in listing()) {
                let target = TargetFacts::new_database();
                let Ok(sel) = select(&es, &tables(&[("app", "racks")]), &target) else {
                    return Ok(());
                };
                let by_id: HashMap<u32, &TocEntry> = es.iter().map(|e| (e.id, e)).collect();
                let applied: HashSet<u32> = sel.ids.iter().copied().collect();
                for id in &sel.ids {
                    let e = by_id.get(id).copied();
                    prop_assert!(e.is_some());
                    let e = e.unwrap();
                    if e.desc == "TABLE" {
                        prop_assert_eq!(e.key(), "app racks ");
                    }
                    if ATTACHED.contains(&e.desc.as_str()) {
                        prop_assert!(e.deps.iter().all(|d| applied.contains(d)), "{:?}", e);
                    }
                }
            }

            #[test]
            fn any_text_parses_or_is_refused(text in ".{0,400}") {
                let _ = crate::pg::toc_list::parse(&text);
            }
        }
    }

    #[test]
    fn table_arguments() {
        let ok = |a: &str, s: &str, t: &str| {
            assert_eq!(parse_table_arg(a), Ok((s.to_owned(), t.to_owned())), "{a}")
        };
        ok("app.racks", "app", "racks");
        ok("racks", "public", "racks");
        ok("app.Gerät ☃", "app", "Gerät ☃");
        ok("\"my.schema\".\"t\"\"q\"", "my.schema", "t\"q");
        ok("\"Odd Schema\".x", "Odd Schema", "x");
        for bad in ["", "a.", ".b", "a.b.c", "\"a", "\"a\"x.b"] {
            assert!(parse_table_arg(bad).is_err(), "{bad}");
        }
    }
}
