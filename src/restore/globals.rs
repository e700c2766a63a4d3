//! Applying a stored `pg_dumpall --globals-only` artifact without psql.
//!
//! The store is untrusted (design §2.7): whoever can write to the bucket
//! can replace the globals text and fix up its checksum. So the text is
//! never given to a program that interprets meta-commands. It is split into
//! statements ([`split`]), every statement is checked against the kinds
//! pg_dumpall writes ([`classify`]), and only when all of them pass is
//! anything executed, one statement per call through the extended query
//! protocol, which itself refuses a second statement in one call.
//!
//! Roles and tablespaces that already exist on the target are not created
//! again (a notice, not a failure); with `keep_role_passwords` the
//! `ALTER ROLE` of an existing role loses its `PASSWORD` clause.
//! Every failed statement is reported, and any failure fails the restore.

mod apply;
pub mod report;
pub mod split;

pub use apply::{apply, describe, plan, Action, Existing, GlobalsError, Planned};
pub use report::{GlobalsNotice, GlobalsPlan, GlobalsReport, PasswordChange};

use split::{SplitError, Statement, TokKind};

/// What a statement does, as far as the restore needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A session setting; `client_encoding` is checked but not executed
    /// (the connection stays UTF-8).
    Set {
        name: String,
    },
    SetConfig,
    CreateRole,
    AlterRole,
    CommentOnRole,
    Grant,
    Revoke,
    CreateTablespace,
    AlterTablespace,
    CommentOnTablespace,
    SecurityLabel,
}

impl Kind {
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Set { .. } => "SET",
            Kind::SetConfig => "SELECT set_config",
            Kind::CreateRole => "CREATE ROLE",
            Kind::AlterRole => "ALTER ROLE",
            Kind::CommentOnRole => "COMMENT ON ROLE",
            Kind::Grant => "GRANT",
            Kind::Revoke => "REVOKE",
            Kind::CreateTablespace => "CREATE TABLESPACE",
            Kind::AlterTablespace => "ALTER TABLESPACE",
            Kind::CommentOnTablespace => "COMMENT ON TABLESPACE",
            Kind::SecurityLabel => "SECURITY LABEL",
        }
    }
}

/// A statement that passed the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub stmt: Statement,
    pub kind: Kind,
    /// The role, tablespace or setting the statement is about.
    pub object: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(
        "line {line}: `{kind}` is not a statement pg_dumpall --globals-only writes \
         (allowed: SET, CREATE/ALTER ROLE, GRANT, REVOKE, COMMENT ON ROLE/TABLESPACE, \
         CREATE/ALTER TABLESPACE, SECURITY LABEL ON ROLE/TABLESPACE)"
    )]
    Refused { line: usize, kind: String },
    #[error("line {line}: {message}")]
    Invalid { line: usize, message: String },
}

/// Text from the store shown in a message: control characters (terminal
/// escapes, line breaks) are replaced, and long text is cut.
pub fn printable(s: &str, max_chars: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// The SQL identifier a token spells: unquoted names fold to lower case.
fn ident(stmt: &Statement, i: usize) -> Option<String> {
    let t = stmt.tokens.get(i)?;
    let s = &stmt.text[t.start..t.end];
    match t.kind {
        TokKind::Word => Some(s.to_ascii_lowercase()),
        TokKind::QuotedIdent if s.len() >= 2 => Some(s[1..s.len() - 1].replace("\"\"", "\"")),
        _ => None,
    }
}

/// The value of a string literal or bare word token (quotes removed).
fn literal(stmt: &Statement, i: usize) -> Option<String> {
    let t = stmt.tokens.get(i)?;
    let s = &stmt.text[t.start..t.end];
    match t.kind {
        TokKind::String if s.starts_with('\'') && s.len() >= 2 => {
            Some(s[1..s.len() - 1].replace("''", "'"))
        }
        TokKind::Word | TokKind::Number => Some(s.to_owned()),
        _ => None,
    }
}

/// How a refused statement is named: its first keyword, and the second for
/// the commands that take an object type.
fn kind_name(stmt: &Statement) -> String {
    let first = stmt
        .word(0)
        .unwrap_or_else(|| stmt.token_text(0).unwrap_or("").to_owned());
    let two = ["CREATE", "ALTER", "DROP", "COMMENT", "SECURITY", "IMPORT"];
    match stmt.word(1) {
        Some(second) if two.contains(&first.as_str()) => format!("{first} {second}"),
        _ => first,
    }
}

fn invalid(stmt: &Statement, message: String) -> CheckError {
    CheckError::Invalid {
        line: stmt.line,
        message,
    }
}

fn named(stmt: Statement, kind: Kind, name_at: usize) -> Result<Checked, CheckError> {
    let object = ident(&stmt, name_at).ok_or_else(|| {
        invalid(
            &stmt,
            format!("cannot read the object name of `{}`", kind.label()),
        )
    })?;
    Ok(Checked {
        stmt,
        kind,
        object: Some(object),
    })
}

/// The session settings pg_dumpall writes at the top of its output.
fn check_set(stmt: Statement) -> Result<Checked, CheckError> {
    let name = ident(&stmt, 1).unwrap_or_default();
    let sep_ok = stmt.token_text(2) == Some("=") || stmt.is_word(2, "TO");
    if !sep_ok || stmt.tokens.len() != 4 {
        return Err(invalid(
            &stmt,
            "SET must have the form `SET name = value`".into(),
        ));
    }
    let value = literal(&stmt, 3).unwrap_or_default().to_ascii_lowercase();
    let problem = match name.as_str() {
        "default_transaction_read_only" => None,
        // The splitter reads '' strings the standard way; so must the server.
        "standard_conforming_strings" if matches!(value.as_str(), "on" | "true") => None,
        "standard_conforming_strings" => {
            Some("only `standard_conforming_strings = on` is supported")
        }
        "client_encoding"
            if matches!(value.as_str(), "utf8" | "utf-8" | "unicode" | "sql_ascii") =>
        {
            None
        }
        "client_encoding" => Some("only UTF8 globals can be applied"),
        _ => {
            return Err(CheckError::Refused {
                line: stmt.line,
                kind: format!("SET {}", printable(&name, 64)),
            })
        }
    };
    if let Some(p) = problem {
        return Err(invalid(
            &stmt,
            format!("`SET {name} = {}`: {p}", printable(&value, 32)),
        ));
    }
    Ok(Checked {
        stmt,
        kind: Kind::Set { name: name.clone() },
        object: Some(name),
    })
}

/// Only `SELECT pg_catalog.set_config('search_path', '...', false)`, the
/// form pg_dump writes.
fn check_set_config(stmt: Statement) -> Result<Checked, CheckError> {
    let shape: Vec<&str> = (0..stmt.tokens.len())
        .map(|i| stmt.token_text(i).unwrap_or(""))
        .collect();
    let ok = shape.len() == 11
        && stmt.is_word(1, "PG_CATALOG")
        && shape[2] == "."
        && stmt.is_word(3, "SET_CONFIG")
        && shape[4] == "("
        && stmt.tokens[5].kind == TokKind::String
        && literal(&stmt, 5).as_deref() == Some("search_path")
        && shape[6] == ","
        && stmt.tokens[7].kind == TokKind::String
        && shape[8] == ","
        && stmt.is_word(9, "FALSE")
        && shape[10] == ")";
    if ok {
        Ok(Checked {
            stmt,
            kind: Kind::SetConfig,
            object: Some("search_path".into()),
        })
    } else {
        Err(CheckError::Refused {
            line: stmt.line,
            kind: "SELECT".into(),
        })
    }
}

/// GRANT/REVOKE of role memberships, or of privileges on tablespaces and
/// configuration parameters; never on tables, functions, databases, ...
fn check_grant(stmt: Statement, kind: Kind) -> Result<Checked, CheckError> {
    let on = (0..stmt.tokens.len()).find(|&i| stmt.is_word(i, "ON"));
    let object = match on {
        None => ident(&stmt, 1),
        Some(i) => {
            let target = stmt.word(i + 1).unwrap_or_default();
            if target != "TABLESPACE" && target != "PARAMETER" {
                return Err(CheckError::Refused {
                    line: stmt.line,
                    kind: format!("{} ON {}", kind.label(), printable(&target, 32)),
                });
            }
            ident(&stmt, i + 2)
        }
    };
    Ok(Checked { stmt, kind, object })
}

/// Checks one statement against the allow-list.
pub fn classify(stmt: Statement) -> Result<Checked, CheckError> {
    let w = |i: usize| stmt.word(i).unwrap_or_default();
    let (w0, w1, w2) = (w(0), w(1), w(2));
    match (w0.as_str(), w1.as_str(), w2.as_str()) {
        ("SET", _, _) => check_set(stmt),
        ("SELECT", _, _) => check_set_config(stmt),
        ("CREATE", "ROLE", _) => named(stmt, Kind::CreateRole, 2),
        ("ALTER", "ROLE", _) => named(stmt, Kind::AlterRole, 2),
        ("COMMENT", "ON", "ROLE") => named(stmt, Kind::CommentOnRole, 3),
        ("CREATE", "TABLESPACE", _) => named(stmt, Kind::CreateTablespace, 2),
        ("ALTER", "TABLESPACE", _) => named(stmt, Kind::AlterTablespace, 2),
        ("COMMENT", "ON", "TABLESPACE") => named(stmt, Kind::CommentOnTablespace, 3),
        ("GRANT", _, _) => check_grant(stmt, Kind::Grant),
        ("REVOKE", _, _) => check_grant(stmt, Kind::Revoke),
        ("SECURITY", "LABEL", _) => check_security_label(stmt),
        _ => Err(CheckError::Refused {
            line: stmt.line,
            kind: printable(&kind_name(&stmt), 64),
        }),
    }
}

/// `SECURITY LABEL [FOR provider] ON ROLE|TABLESPACE name IS ...`.
fn check_security_label(stmt: Statement) -> Result<Checked, CheckError> {
    let on = if stmt.is_word(2, "FOR") { 4 } else { 2 };
    let target = stmt.word(on + 1).unwrap_or_default();
    if !stmt.is_word(on, "ON") || (target != "ROLE" && target != "TABLESPACE") {
        return Err(CheckError::Refused {
            line: stmt.line,
            kind: format!("SECURITY LABEL ON {}", printable(&target, 32)),
        });
    }
    named(stmt, Kind::SecurityLabel, on + 2)
}

/// Splits and checks a whole globals text; the first problem stops it.
pub fn check_all<R: std::io::BufRead>(r: R) -> Result<Vec<Checked>, CheckError> {
    split::split_reader(r, split::MAX_STATEMENT, split::MAX_TOTAL)?
        .into_iter()
        .map(classify)
        .collect()
}

/// Byte ranges of `[ENCRYPTED|UNENCRYPTED] PASSWORD 'value'|NULL` clauses
/// in the option list of a CREATE/ALTER ROLE statement.
pub(crate) fn password_clauses(stmt: &Statement) -> Vec<(usize, usize)> {
    // `ALTER ROLE x SET ...` and friends have no option list.
    let option_form = !(stmt.is_word(3, "SET")
        || stmt.is_word(3, "RESET")
        || stmt.is_word(3, "IN")
        || stmt.is_word(3, "RENAME"));
    if !option_form {
        return Vec::new();
    }
    let mut out = Vec::new();
    for i in 3..stmt.tokens.len() {
        let value = stmt.tokens.get(i + 1);
        let is_value =
            value.is_some_and(|t| t.kind == TokKind::String) || stmt.is_word(i + 1, "NULL");
        if stmt.is_word(i, "PASSWORD") && is_value {
            let prefixed = stmt.is_word(i - 1, "ENCRYPTED") || stmt.is_word(i - 1, "UNENCRYPTED");
            let first = if prefixed { i - 1 } else { i };
            out.push((stmt.tokens[first].start, stmt.tokens[i + 1].end));
        }
    }
    out
}

/// Pure rewrite: the statement without its password clause, or `None` when
/// it has none.
pub fn without_password(stmt: &Statement) -> Option<String> {
    let clauses = password_clauses(stmt);
    if clauses.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(stmt.text.len());
    let mut at = 0;
    for (start, end) in clauses {
        out.push_str(stmt.text[at..start].trim_end());
        at = end;
    }
    out.push_str(&stmt.text[at..]);
    Some(out)
}

/// The statement as it may be shown: password values replaced, control
/// characters neutralised, cut to a readable length.
pub fn redacted(stmt: &Statement) -> String {
    let mut out = String::with_capacity(stmt.text.len());
    let mut at = 0;
    for (i, t) in stmt.tokens.iter().enumerate() {
        let after_password = i > 0 && stmt.is_word(i - 1, "PASSWORD");
        if after_password && t.kind == TokKind::String {
            out.push_str(&stmt.text[at..t.start]);
            out.push_str("'***'");
            at = t.end;
        }
    }
    out.push_str(&stmt.text[at..]);
    printable(&out, 200)
}

#[cfg(test)]
mod tests {
    use super::split::{split_reader, split_str, SplitError};
    use super::*;

    /// Real `pg_dumpall --globals-only` output of PostgreSQL 15.20 (hashes
    /// shortened), with a role comment, settings, memberships, parameter
    /// privileges and a tablespace.
    const PG15: &str = r#"--
-- PostgreSQL database cluster dump
--

\restrict yHIXAiHP7KUkTCABpd2ueiXieX138P47MXZGJTb1m0xWTTC4cv5jPE3hpu6YQHG

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE "app ☃";
ALTER ROLE "app ☃" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 5 PASSWORD 'SCRAM-SHA-256$4096:pefD8rlxd9thh+HWyGW7jw==$I82W0MMw:Y3Ewrth7' VALID UNTIL '2030-01-01 00:00:00+00';
CREATE ROLE grp;
ALTER ROLE grp WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
COMMENT ON ROLE grp IS 'a ; comment with ''quote''';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;

--
-- User Config "www-data"
--

ALTER ROLE "www-data" SET search_path TO 'app', 'public';

--
-- Role memberships
--

GRANT grp TO "app ☃" GRANTED BY postgres;
GRANT pg_read_all_data TO grp GRANTED BY postgres;

--
-- Role privileges on configuration parameters
--

GRANT ALTER SYSTEM ON PARAMETER log_min_messages TO grp;
GRANT SET ON PARAMETER work_mem TO grp;

--
-- Tablespaces
--

CREATE TABLESPACE ts1 OWNER grp LOCATION '/tmp/globals-probe/ts15';
ALTER TABLESPACE ts1 SET (random_page_cost=2);
GRANT ALL ON TABLESPACE ts1 TO "www-data";
COMMENT ON TABLESPACE ts1 IS 'ts';

\unrestrict yHIXAiHP7KUkTCABpd2ueiXieX138P47MXZGJTb1m0xWTTC4cv5jPE3hpu6YQHG

--
-- PostgreSQL database cluster dump complete
--

"#;

    /// What pg_dumpall 18.6 writes differently: membership options.
    const PG18_MEMBERSHIPS: &str =
        "\\restrict SzQqSJ22YeJKcz0PSHgXXWcYLKfsPxSLbVtrILP89taodWhMbysGzMKnatq8yA5\n\
        GRANT grp TO \"app ☃\" WITH INHERIT TRUE GRANTED BY postgres;\n\
        GRANT grp TO \"www-data\" WITH ADMIN OPTION, INHERIT TRUE GRANTED BY postgres;\n\
        \\unrestrict SzQqSJ22YeJKcz0PSHgXXWcYLKfsPxSLbVtrILP89taodWhMbysGzMKnatq8yA5\n";

    fn check(s: &str) -> Result<Vec<Checked>, CheckError> {
        check_all(s.as_bytes())
    }

    fn texts(s: &str) -> Vec<String> {
        split_str(s).unwrap().into_iter().map(|s| s.text).collect()
    }

    fn refused(s: &str) -> (usize, String) {
        match check(s) {
            Err(CheckError::Refused { line, kind }) => (line, kind),
            other => panic!("expected a refusal for {s:?}, got {other:?}"),
        }
    }

    fn meta(s: &str) -> (usize, String) {
        match split_str(s) {
            Err(SplitError::MetaCommand { line, command }) => (line, command),
            other => panic!("expected a meta-command error for {s:?}, got {other:?}"),
        }
    }

    #[test]
    fn real_pg15_output_passes_with_line_numbers_and_names() {
        let c = check(PG15).unwrap();
        let got: Vec<(usize, &str, Option<&str>)> = c
            .iter()
            .map(|c| (c.stmt.line, c.kind.label(), c.object.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (7, "SET", Some("default_transaction_read_only")),
                (9, "SET", Some("client_encoding")),
                (10, "SET", Some("standard_conforming_strings")),
                (16, "CREATE ROLE", Some("app ☃")),
                (17, "ALTER ROLE", Some("app ☃")),
                (18, "CREATE ROLE", Some("grp")),
                (19, "ALTER ROLE", Some("grp")),
                (20, "COMMENT ON ROLE", Some("grp")),
                (21, "CREATE ROLE", Some("postgres")),
                (22, "ALTER ROLE", Some("postgres")),
                (28, "ALTER ROLE", Some("www-data")),
                (34, "GRANT", Some("grp")),
                (35, "GRANT", Some("pg_read_all_data")),
                (41, "GRANT", Some("log_min_messages")),
                (42, "GRANT", Some("work_mem")),
                (48, "CREATE TABLESPACE", Some("ts1")),
                (49, "ALTER TABLESPACE", Some("ts1")),
                (50, "GRANT", Some("ts1")),
                (51, "COMMENT ON TABLESPACE", Some("ts1")),
            ]
        );
        assert_eq!(
            c[7].stmt.text,
            "COMMENT ON ROLE grp IS 'a ; comment with ''quote'''"
        );
        assert_eq!(check(PG18_MEMBERSHIPS).unwrap().len(), 2);
    }

    #[test]
    fn semicolons_and_backslashes_inside_strings_do_not_split() {
        assert_eq!(
            texts("COMMENT ON ROLE a IS 'x; \\! id';\nCOMMENT ON ROLE b IS 'it''s;';"),
            vec![
                "COMMENT ON ROLE a IS 'x; \\! id'",
                "COMMENT ON ROLE b IS 'it''s;'"
            ]
        );
        // An escape string: \' does not end it.
        assert_eq!(
            texts("COMMENT ON ROLE a IS E'it\\'s; \\\\! x';"),
            vec!["COMMENT ON ROLE a IS E'it\\'s; \\\\! x'"]
        );
        // A standard string: the backslash is an ordinary character, so the
        // string ends and what follows is a meta-command.
        assert_eq!(
            meta("COMMENT ON ROLE a IS '\\'; \\! id\n"),
            (1, "\\!".to_owned())
        );
        // Multi-line strings keep counting lines.
        let s = split_str("COMMENT ON ROLE a IS 'one;\n\\! two';\nCREATE ROLE b;").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].line, 3);
    }

    #[test]
    fn dollar_quotes_and_identifiers() {
        assert_eq!(
            texts("COMMENT ON ROLE a IS $$ ; \\! $$;\nCOMMENT ON ROLE b IS $t$ $$ ; $t$;"),
            vec![
                "COMMENT ON ROLE a IS $$ ; \\! $$",
                "COMMENT ON ROLE b IS $t$ $$ ; $t$"
            ]
        );
        let c = check("CREATE ROLE \"we;ird\\!\"\"x\";").unwrap();
        assert_eq!(c[0].object.as_deref(), Some("we;ird\\!\"x"));
        // Unquoted names fold to lower case; `$` inside a name is not a quote.
        let c = check("CREATE ROLE Ab$c;").unwrap();
        assert_eq!(c[0].object.as_deref(), Some("ab$c"));
        assert_eq!(split_str("SELECT $1; SELECT 2").unwrap().len(), 2);
    }

    #[test]
    fn comments_are_dropped_and_hide_nothing() {
        let s = split_str(
            "-- a; \\! id\n/* one /* nested ; \\! */ still ; */ CREATE ROLE a; -- x\nCREATE /* c */ ROLE b;",
        )
        .unwrap();
        let t: Vec<&str> = s.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(t, vec!["CREATE ROLE a", "CREATE   ROLE b"]);
        assert_eq!((s[0].line, s[1].line), (2, 3));
        assert!(matches!(
            split_str("CREATE ROLE a; /* never closed\n;"),
            Err(SplitError::Unterminated {
                line: 1,
                what: "block comment"
            })
        ));
        assert!(matches!(
            split_str("\n\nCOMMENT ON ROLE a IS 'open;\n"),
            Err(SplitError::Unterminated {
                line: 3,
                what: "string literal"
            })
        ));
    }

    #[test]
    fn restrict_markers_are_skipped_and_every_other_meta_command_refused() {
        assert_eq!(
            texts("\\restrict abc123\nCREATE ROLE a;\n  \\unrestrict abc123\n"),
            vec!["CREATE ROLE a"]
        );
        for (input, command) in [
            ("CREATE ROLE a;\n\\! id > /tmp/x\n", "\\!"),
            ("CREATE ROLE a;\n\\o /tmp/out\n", "\\o"),
            ("CREATE ROLE a;\n\\i /etc/passwd\n", "\\i"),
            ("CREATE ROLE a;\n\\copy t from program 'id'\n", "\\copy"),
            ("CREATE ROLE a;\n\\connect other\n", "\\connect"),
            ("CREATE ROLE a;\n\\set x 1\n", "\\set"),
            ("CREATE ROLE a;\nSELECT 'id' \\gexec\n", "\\gexec"),
            // A marker must stand alone, between statements.
            ("CREATE ROLE a\n\\restrict abc\n;", "\\restrict"),
            ("CREATE ROLE a;\n\\restrict abc; \\! id\n", "\\restrict"),
            ("CREATE ROLE a;\n\\restrictx abc\n", "\\restrictx"),
        ] {
            assert_eq!(meta(input), (2, command.to_owned()), "{input:?}");
        }
    }

    #[test]
    fn statements_pg_dumpall_never_writes_are_refused_by_kind_and_line() {
        assert_eq!(
            refused("CREATE ROLE a;\n\nCOPY (SELECT 1) TO PROGRAM 'touch /tmp/x';\n"),
            (3, "COPY".to_owned())
        );
        for (sql, kind) in [
            ("DO $$ BEGIN PERFORM 1; END $$", "DO"),
            (
                "create function f() returns int language sql as 'select 1'",
                "CREATE FUNCTION",
            ),
            ("SELECT 1", "SELECT"),
            (
                "SELECT pg_catalog.set_config('search_path', '', false), pg_sleep(1)",
                "SELECT",
            ),
            ("CREATE EXTENSION adminpack", "CREATE EXTENSION"),
            ("ALTER SYSTEM SET archive_command = 'id'", "ALTER SYSTEM"),
            ("LOAD 'x'", "LOAD"),
            ("DROP ROLE postgres", "DROP ROLE"),
            ("CREATE USER u", "CREATE USER"),
            ("GRANT ALL ON TABLE t TO public", "GRANT ON TABLE"),
            ("REVOKE ALL ON DATABASE d FROM public", "REVOKE ON DATABASE"),
            ("SET search_path = evil", "SET search_path"),
            ("SET role = postgres", "SET role"),
            (
                "SECURITY LABEL ON TABLE t IS 'x'",
                "SECURITY LABEL ON TABLE",
            ),
            ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH"),
        ] {
            assert_eq!(refused(&format!("{sql};")), (1, kind.to_owned()), "{sql}");
        }
    }

    #[test]
    fn allowed_forms() {
        for sql in [
            "SELECT pg_catalog.set_config('search_path', '', false)",
            "REVOKE ALL ON TABLESPACE ts FROM PUBLIC",
            "GRANT SET ON PARAMETER work_mem TO grp",
            "SECURITY LABEL FOR selinux ON ROLE a IS 'x'",
            "SECURITY LABEL ON TABLESPACE t IS 'x'",
            "set Client_Encoding TO 'utf8'",
        ] {
            check(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        for sql in [
            "SET client_encoding = 'LATIN1'",
            "SET standard_conforming_strings = off",
            "SET default_transaction_read_only = off, on",
        ] {
            assert!(
                matches!(check(sql), Err(CheckError::Invalid { line: 1, .. })),
                "{sql}"
            );
        }
    }

    fn one(sql: &str) -> Checked {
        check(sql).unwrap().remove(0)
    }

    #[test]
    fn password_clause_rewrite() {
        let s = one("ALTER ROLE \"app ☃\" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:x' VALID UNTIL 'infinity'").stmt;
        assert_eq!(
            without_password(&s).unwrap(),
            "ALTER ROLE \"app ☃\" WITH LOGIN VALID UNTIL 'infinity'"
        );
        let s = one("ALTER ROLE a WITH ENCRYPTED PASSWORD 'md5abc'").stmt;
        assert_eq!(without_password(&s).unwrap(), "ALTER ROLE a WITH");
        let s = one("ALTER ROLE a PASSWORD NULL LOGIN").stmt;
        assert_eq!(without_password(&s).unwrap(), "ALTER ROLE a LOGIN");
        for sql in [
            "ALTER ROLE a WITH LOGIN",
            "ALTER ROLE a SET password_encryption = 'md5'",
            "ALTER ROLE a SET myapp.password TO 'x'",
        ] {
            assert_eq!(without_password(&one(sql).stmt), None, "{sql}");
        }
    }

    #[test]
    fn redaction_hides_password_values() {
        let s = one("ALTER ROLE a WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:secret' VALID UNTIL 'x'")
            .stmt;
        let r = redacted(&s);
        assert_eq!(r, "ALTER ROLE a WITH LOGIN PASSWORD '***' VALID UNTIL 'x'");
        let s = one("COMMENT ON ROLE a IS 'line\nbreak\u{1b}[31m'").stmt;
        assert!(!redacted(&s).chars().any(char::is_control));
    }

    #[test]
    fn plan_keeps_existing_roles_and_optionally_their_passwords() {
        let sql = "SET client_encoding = 'UTF8';\n\
            CREATE ROLE old;\nALTER ROLE old WITH LOGIN PASSWORD 'h1';\n\
            CREATE ROLE new;\nALTER ROLE new WITH LOGIN PASSWORD 'h2';\n\
            ALTER ROLE old SET search_path TO 'app';\n\
            CREATE TABLESPACE ts LOCATION '/x';\nCREATE TABLESPACE ts2 LOCATION '/y';\n";
        let existing = Existing {
            roles: ["old".to_owned()].into(),
            tablespaces: ["ts".to_owned()].into(),
            ..Default::default()
        };
        let actions = |keep| -> Vec<(Action, PasswordChange)> {
            plan(check(sql).unwrap(), &existing, keep)
                .into_iter()
                .map(|p| (p.action, p.password))
                .collect()
        };
        let exec = |s: &str| Action::Execute(s.to_owned());
        assert_eq!(
            actions(true),
            vec![
                (Action::Skip, PasswordChange::None),
                (Action::KeepExisting, PasswordChange::None),
                (exec("ALTER ROLE old WITH LOGIN"), PasswordChange::Kept),
                (exec("CREATE ROLE new"), PasswordChange::None),
                (
                    exec("ALTER ROLE new WITH LOGIN PASSWORD 'h2'"),
                    PasswordChange::None
                ),
                (
                    exec("ALTER ROLE old SET search_path TO 'app'"),
                    PasswordChange::None
                ),
                (Action::KeepExisting, PasswordChange::None),
                (
                    exec("CREATE TABLESPACE ts2 LOCATION '/y'"),
                    PasswordChange::None
                ),
            ]
        );
        let without_keep = actions(false);
        assert_eq!(
            without_keep[2],
            (
                exec("ALTER ROLE old WITH LOGIN PASSWORD 'h1'"),
                PasswordChange::Replaced
            )
        );
        let d = describe(&plan(check(sql).unwrap(), &existing, false))
            .lines()
            .join("\n");
        assert!(d.contains("would create roles: `new`"), "{d}");
        assert!(
            d.contains("existing roles (not created again): `old`"),
            "{d}"
        );
        assert!(
            d.contains("`old` would get the backup's attributes; its password would be REPLACED"),
            "{d}"
        );
        assert_eq!(d.matches("existing role `old`").count(), 1, "{d}");
        assert!(d.contains("would create tablespaces: `ts2`"), "{d}");
        assert!(
            d.contains("existing tablespaces (not created again): `ts`"),
            "{d}"
        );
        assert!(!d.contains("h1") && !d.contains("h2"), "{d}");
        assert!(
            d.contains("new roles that would get the backup's password: `new`"),
            "{d}"
        );
    }

    #[test]
    fn regression_issue22_session_roles_are_the_restoring_role() {
        let sql = "ALTER ROLE CURRENT_USER WITH PASSWORD 'a';\n\
            ALTER ROLE session_user PASSWORD 'b';\nALTER ROLE Current_Role PASSWORD 'c';\n\
            ALTER ROLE \"current_user\" PASSWORD 'd';\n";
        let existing = Existing {
            roles: ["admin".to_owned(), "login".to_owned()].into(),
            current_user: "admin".into(),
            session_user: "login".into(),
            ..Default::default()
        };
        let planned = plan(check(sql).unwrap(), &existing, true);
        let seen: Vec<(Option<&str>, PasswordChange)> = planned
            .iter()
            .map(|p| (p.checked.object.as_deref(), p.password))
            .collect();
        assert_eq!(
            seen,
            vec![
                (Some("admin"), PasswordChange::Kept),
                (Some("login"), PasswordChange::Kept),
                (Some("admin"), PasswordChange::Kept),
                // Quoted, it is a role of that name (new here).
                (Some("current_user"), PasswordChange::None),
            ]
        );
        let d = describe(&plan(check(sql).unwrap(), &existing, false))
            .lines()
            .join("\n");
        assert!(d.contains("existing role `admin` would get the backup's attributes; its password would be REPLACED"), "{d}");
        assert!(d.contains("existing role `login`"), "{d}");
        assert!(
            d.contains("new roles that would get the backup's password: `current_user`"),
            "{d}"
        );
    }

    #[test]
    fn size_limits_and_encoding() {
        let long = format!("COMMENT ON ROLE a IS '{}';\n", "x".repeat(100));
        assert!(matches!(
            split_reader(long.as_bytes(), 50, 1 << 20),
            Err(SplitError::TooLong { line: 1, max: 50 })
        ));
        let multi = format!(
            "COMMENT ON ROLE a IS '\n{}\n{}';\n",
            "x".repeat(30),
            "y".repeat(30)
        );
        assert!(matches!(
            split_reader(multi.as_bytes(), 50, 1 << 20),
            Err(SplitError::TooLong { line: 1, .. })
        ));
        let many = "CREATE ROLE a;\n".repeat(100);
        assert!(matches!(
            split_reader(many.as_bytes(), 50, 1000),
            Err(SplitError::TooLarge { max: 1000 })
        ));
        assert!(matches!(
            split_reader(&b"CREATE ROLE a;\nCREATE ROLE \xff;\n"[..], 50, 1000),
            Err(SplitError::NotUtf8 { line: 2 })
        ));
        assert!(matches!(
            split_str("CREATE ROLE a;\nCREATE ROLE b\0;\n"),
            Err(SplitError::Nul { line: 2 })
        ));
    }
}
