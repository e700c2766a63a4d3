//! SQL that restores a database as a whole: `CREATE DATABASE` with the
//! original's encoding and locale, then its owner, ACL, comment and
//! settings; and the filter that lets a `pg_restore` 17+ archive restore as
//! SQL onto a server older than 17.
//!
//! Everything here comes from a manifest or an archive, i.e. from the
//! untrusted store: names are always quoted identifiers, values always
//! literals, and keywords (privileges, locale providers) are only ever
//! chosen from fixed lists, never copied.

use std::io::{self, BufRead, Read, Write};

use crate::repo::manifest::{DbGrant, DbProperties, DbSetting};

/// SQL identifier quoting (`"a""b"`).
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A string literal that means the same whatever `standard_conforming_strings`
/// says: an `E''` literal with `\` and `'` escaped.
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str("E'");
    for c in s.chars() {
        if c == '\\' || c == '\'' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the backup's database properties are not usable: {0}")]
pub struct BadProperty(pub String);

/// `CREATE DATABASE` for `target` as the original was created. Without
/// recorded properties (older backups) the server's defaults are used.
pub fn create_database(target: &str, props: Option<&DbProperties>) -> Result<String, BadProperty> {
    let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", ident(target));
    let Some(p) = props else {
        return Ok(sql);
    };
    sql.push_str(&format!(
        " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
        literal(&p.encoding),
        literal(&p.collate),
        literal(&p.ctype)
    ));
    match p.locale_provider.as_deref() {
        None => {}
        Some("libc") => sql.push_str(" LOCALE_PROVIDER libc"),
        Some("icu") => {
            sql.push_str(" LOCALE_PROVIDER icu");
            if let Some(l) = &p.locale {
                sql.push_str(&format!(" ICU_LOCALE {}", literal(l)));
            }
            if let Some(r) = &p.icu_rules {
                sql.push_str(&format!(" ICU_RULES {}", literal(r)));
            }
        }
        Some("builtin") => {
            sql.push_str(" LOCALE_PROVIDER builtin");
            if let Some(l) = &p.locale {
                sql.push_str(&format!(" BUILTIN_LOCALE {}", literal(l)));
            }
        }
        Some(other) => {
            return Err(BadProperty(format!(
                "unknown locale provider {}",
                other.escape_debug()
            )))
        }
    }
    Ok(sql)
}

const PRIVILEGES: [&str; 3] = ["CONNECT", "TEMPORARY", "CREATE"];

/// Settings whose value is a list of quoted elements (the server's
/// GUC_LIST_QUOTE ones): `ALTER ... SET` takes them as one literal per
/// element, as `pg_dump` writes them.
const LIST_SETTINGS: [&str; 6] = [
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// A setting name as the server stores it: dotted identifiers only.
fn setting_name(name: &str) -> Result<String, BadProperty> {
    let ok = !name.is_empty()
        && name.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        });
    if ok {
        Ok(name.split('.').map(ident).collect::<Vec<_>>().join("."))
    } else {
        Err(BadProperty(format!(
            "setting name {} is not a valid name",
            name.escape_debug()
        )))
    }
}

/// Splits a stored list value (`"$user", public, "a,b"`) into its elements.
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur).trim().to_owned());
                any = false;
            }
            c if c.is_whitespace() && !quoted && !any && cur.is_empty() => {}
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any || !out.is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

fn setting_value(s: &DbSetting) -> String {
    if LIST_SETTINGS.contains(&s.name.to_ascii_lowercase().as_str()) {
        let items = split_list(&s.value);
        if items.is_empty() {
            return literal("");
        }
        items
            .iter()
            .map(|i| literal(i))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        literal(&s.value)
    }
}

/// The roles the properties name (owner unless `no_owner`, grantees, roles
/// with settings): each must exist on the target.
pub fn roles_named(p: &DbProperties, no_owner: bool) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    if !no_owner {
        roles.push(p.owner.clone());
    }
    for g in p.acl.iter().flatten() {
        roles.extend(g.grantee.clone());
    }
    for s in &p.settings {
        roles.extend(s.role.clone());
    }
    roles.sort();
    roles.dedup();
    roles
}

/// Statements that give `target` the original's owner (unless
/// `no_owner`), ACL, comment and settings, in the order `pg_restore
/// --create` applies them. Grants and role settings naming a role in
/// `skip_roles` are left out (the caller reports them).
pub fn property_statements(
    target: &str,
    p: &DbProperties,
    no_owner: bool,
    skip_roles: &[String],
) -> Result<Vec<String>, BadProperty> {
    let db = ident(target);
    let mut out = Vec::new();
    if !no_owner {
        out.push(format!("ALTER DATABASE {db} OWNER TO {}", ident(&p.owner)));
    }
    out.push(match &p.comment {
        Some(c) => format!("COMMENT ON DATABASE {db} IS {}", literal(c)),
        None => format!("COMMENT ON DATABASE {db} IS NULL"),
    });
    for s in &p.settings {
        let name = setting_name(&s.name)?;
        let value = setting_value(s);
        match &s.role {
            None => out.push(format!("ALTER DATABASE {db} SET {name} TO {value}")),
            Some(r) if skip_roles.contains(r) => {}
            Some(r) => out.push(format!(
                "ALTER ROLE {} IN DATABASE {db} SET {name} TO {value}",
                ident(r)
            )),
        }
    }
    if let Some(acl) = &p.acl {
        out.extend(acl_statements(&db, acl, skip_roles)?);
    }
    Ok(out)
}

/// Replaces the default ACL with the recorded one: revoke what the default
/// gives (PUBLIC's CONNECT and TEMPORARY, the owner's all), then grant each
/// recorded privilege.
fn acl_statements(
    db: &str,
    acl: &[DbGrant],
    skip_roles: &[String],
) -> Result<Vec<String>, BadProperty> {
    let mut out = vec![
        format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
        format!("REVOKE ALL ON DATABASE {db} FROM CURRENT_USER"),
    ];
    for g in acl {
        let privilege = PRIVILEGES
            .iter()
            .find(|p| p.eq_ignore_ascii_case(&g.privilege))
            .ok_or_else(|| {
                BadProperty(format!(
                    "unknown database privilege {}",
                    g.privilege.escape_debug()
                ))
            })?;
        let grantee = match &g.grantee {
            None => "PUBLIC".to_owned(),
            Some(r) if skip_roles.contains(r) => continue,
            Some(r) => ident(r),
        };
        out.push(format!(
            "GRANT {privilege} ON DATABASE {db} TO {grantee}{}",
            if g.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        ));
    }
    Ok(out)
}

/// Longest line the header filter looks at; a longer one ends the header
/// (no statement it drops is anywhere near that long).
const MAX_HEADER_LINE: u64 = 64 * 1024;

/// The one statement `pg_restore` 17+ writes that servers before 17 reject.
const TRANSACTION_TIMEOUT: &str = "SET transaction_timeout = 0;";

/// What the filter saw, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterReport {
    pub dropped_transaction_timeout: bool,
    pub bytes: u64,
}

fn header_line(line: &str) -> bool {
    line.is_empty()
        || line.starts_with("--")
        || (line.starts_with("SET ") && line.ends_with(';'))
        || (line.starts_with("SELECT pg_catalog.set_config(") && line.ends_with(';'))
}

/// Copies `pg_restore -f -` output to psql, checking it is safe to.
///
/// psql runs meta-commands (`\!` runs a shell, `\o` and `\copy` touch local
/// files), and the SQL comes from the untrusted store. `pg_restore
/// --restrict-key KEY` starts its output with `\restrict KEY`, after which
/// psql refuses every meta-command but `\unrestrict KEY`; KEY is random per
/// restore, so an archive cannot contain it. This filter passes nothing but
/// comments and blank lines until that exact line, and fails otherwise.
///
/// In the header after it (comments and `SET`s, before the first object)
/// it drops `SET transaction_timeout = 0;`; everything after the header is
/// copied byte for byte, so data rows that happen to look like it are kept.
pub fn filter_restore_sql(
    input: &mut dyn Read,
    out: &mut dyn Write,
    key: &str,
) -> io::Result<FilterReport> {
    let mut r = io::BufReader::with_capacity(256 * 1024, input);
    let mut report = FilterReport::default();
    let restrict = format!("\\restrict {key}");
    let mut restricted = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut r)
            .take(MAX_HEADER_LINE)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::Error::other(if restricted {
                "pg_restore output ended inside its header"
            } else {
                "pg_restore output has no \\restrict line"
            }));
        }
        let complete = line.ends_with(b"\n");
        let text = std::str::from_utf8(&line)
            .ok()
            .map(|t| t.trim_end_matches('\n'));
        if !restricted {
            match text {
                Some(t) if complete && t == restrict => restricted = true,
                Some(t) if complete && (t.is_empty() || t.starts_with("--")) => {}
                _ => {
                    return Err(io::Error::other(
                        "pg_restore output does not start with the \\restrict line ccbackup asked for; \
                         nothing was passed to psql",
                    ))
                }
            }
        } else {
            match text {
                Some(TRANSACTION_TIMEOUT) if complete && !report.dropped_transaction_timeout => {
                    report.dropped_transaction_timeout = true;
                    continue;
                }
                Some(t) if complete && header_line(t) => {}
                _ => {
                    out.write_all(&line)?;
                    report.bytes += line.len() as u64;
                    break;
                }
            }
        }
        out.write_all(&line)?;
        report.bytes += line.len() as u64;
    }
    report.bytes += io::copy(&mut r, out)?;
    Ok(report)
}

/// A random key for `--restrict-key`: letters and digits only, as
/// `pg_restore` requires.
pub fn restrict_key() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..48)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> DbProperties {
        DbProperties {
            owner: "own\"er".into(),
            encoding: "SQL_ASCII".into(),
            collate: "C".into(),
            ctype: "C".into(),
            locale_provider: Some("libc".into()),
            comment: Some("it's \\ here".into()),
            acl: Some(vec![
                DbGrant {
                    grantee: None,
                    privilege: "TEMPORARY".into(),
                    grantable: false,
                },
                DbGrant {
                    grantee: Some("reader".into()),
                    privilege: "CONNECT".into(),
                    grantable: true,
                },
            ]),
            settings: vec![
                DbSetting {
                    role: None,
                    name: "work_mem".into(),
                    value: "7MB".into(),
                },
                DbSetting {
                    role: None,
                    name: "search_path".into(),
                    value: "\"$user\", public, \"a,\"\"b\"".into(),
                },
                DbSetting {
                    role: Some("reader".into()),
                    name: "statement_timeout".into(),
                    value: "5s".into(),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("a'b\\c"), "E'a''b\\\\c'");
    }

    #[test]
    fn create_database_uses_the_original_locale() {
        assert_eq!(
            create_database("new db", Some(&props())).unwrap(),
            "CREATE DATABASE \"new db\" TEMPLATE template0 ENCODING E'SQL_ASCII' LC_COLLATE E'C' LC_CTYPE E'C' LOCALE_PROVIDER libc"
        );
        assert_eq!(
            create_database("x", None).unwrap(),
            "CREATE DATABASE \"x\" TEMPLATE template0"
        );
        let mut p = props();
        p.locale_provider = Some("libc; DROP".into());
        assert!(create_database("x", Some(&p)).is_err());
    }

    #[test]
    fn list_values_split_like_the_server_stores_them() {
        assert_eq!(
            split_list("\"$user\", public, \"a,\"\"b\""),
            ["$user", "public", "a,\"b"]
        );
        assert_eq!(split_list(""), Vec::<String>::new());
    }

    #[test]
    fn property_statements_quote_everything() {
        let sql = property_statements("t x", &props(), false, &[]).unwrap();
        assert_eq!(
            sql,
            [
                "ALTER DATABASE \"t x\" OWNER TO \"own\"\"er\"",
                "COMMENT ON DATABASE \"t x\" IS E'it''s \\\\ here'",
                "ALTER DATABASE \"t x\" SET \"work_mem\" TO E'7MB'",
                "ALTER DATABASE \"t x\" SET \"search_path\" TO E'$user', E'public', E'a,\"b'",
                "ALTER ROLE \"reader\" IN DATABASE \"t x\" SET \"statement_timeout\" TO E'5s'",
                "REVOKE ALL ON DATABASE \"t x\" FROM PUBLIC",
                "REVOKE ALL ON DATABASE \"t x\" FROM CURRENT_USER",
                "GRANT TEMPORARY ON DATABASE \"t x\" TO PUBLIC",
                "GRANT CONNECT ON DATABASE \"t x\" TO \"reader\" WITH GRANT OPTION",
            ]
        );
        let skipped = property_statements("t", &props(), true, &["reader".into()]).unwrap();
        assert!(!skipped
            .iter()
            .any(|s| s.contains("reader") || s.contains("OWNER")));
        let mut bad = props();
        bad.settings[0].name = "work_mem TO 1; DROP".into();
        assert!(property_statements("t", &bad, false, &[]).is_err());
        let mut bad = props();
        bad.acl.as_mut().unwrap()[0].privilege = "ALL; DROP".into();
        assert!(property_statements("t", &bad, false, &[]).is_err());
    }

    fn filtered(input: &str, key: &str) -> io::Result<(String, FilterReport)> {
        let mut out = Vec::new();
        let r = filter_restore_sql(&mut input.as_bytes(), &mut out, key)?;
        Ok((String::from_utf8(out).unwrap(), r))
    }

    #[test]
    fn filter_drops_transaction_timeout_from_the_header_only() {
        let input = "--\n-- dump\n--\n\n\\restrict K1\n\nSET statement_timeout = 0;\nSET transaction_timeout = 0;\nSET lock_timeout = 0;\n\nCREATE TABLE t (x text);\nCOPY t FROM stdin;\nSET transaction_timeout = 0;\n\\.\n\\unrestrict K1\n";
        let (out, r) = filtered(input, "K1").unwrap();
        assert!(r.dropped_transaction_timeout);
        assert_eq!(out, input.replacen("SET transaction_timeout = 0;\n", "", 1));
        assert!(out.contains("COPY t FROM stdin;\nSET transaction_timeout = 0;\n"));
    }

    #[test]
    fn filter_refuses_output_without_the_restrict_line() {
        for input in [
            "--\n\\! touch /tmp/x\n\\restrict K1\n",
            "--\n\\restrict OTHER\nSELECT 1;\n",
            "SELECT 1;\n\\restrict K1\n",
            "",
        ] {
            let mut out = Vec::new();
            let err = filter_restore_sql(&mut input.as_bytes(), &mut out, "K1");
            assert!(err.is_err(), "{input:?}");
            assert!(
                !String::from_utf8_lossy(&out).contains('\\'),
                "meta-command passed: {input:?}"
            );
        }
    }

    #[test]
    fn restrict_keys_are_alphanumeric_and_differ() {
        let a = restrict_key();
        assert!(a.len() >= 32 && a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, restrict_key());
    }
}
