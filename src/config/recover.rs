//! Reporting every unknown key and wrongly typed value at once.
//!
//! serde stops at the first error. To find the others, the offending
//! `key: value` entry is blanked out of the text (same line numbers, so later
//! locations stay right) and the file is parsed again, up to a bound. Only
//! errors that masking can isolate are collected this way (unknown keys,
//! wrong types or values); anything else, or an error inside text that was
//! already blanked, ends the search, so masking never invents a problem.
//! When the masked text finally parses, its semantic validation runs too;
//! a semantic problem reported on a line that encloses a blanked entry (a
//! mapping the blanking may have emptied) is dropped, for the same reason.

use serde::de::DeserializeOwned;

use super::Problem;

/// How many parse errors one check reports at most.
const MAX_ROUNDS: usize = 25;

fn maskable(message: &str) -> bool {
    [
        "unknown field",
        "invalid type",
        "invalid value",
        "unknown variant",
        "expected ",
    ]
    .iter()
    .any(|p| message.starts_with(p))
        || scalar_kind(message).is_some()
}

/// For serde-saphyr's terse scalar errors (`invalid i64`), what was
/// expected, in words.
fn scalar_kind(message: &str) -> Option<&'static str> {
    let ty = message.strip_prefix("invalid ")?.trim();
    Some(match ty {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
        "f32" | "f64" => "a number",
        "bool" | "boolean" => "true or false",
        "char" => "a single character",
        _ => return None,
    })
}

/// What parsing found.
pub struct Parsed<T> {
    /// The document, parsed from the text with bad entries blanked.
    pub value: Option<T>,
    pub problems: Vec<Problem>,
    /// Lines (1-based) of the mappings enclosing blanked entries.
    pub enclosing: Vec<u64>,
}

/// Parses `text`, collecting maskable errors.
pub fn parse_collecting<T: DeserializeOwned>(
    text: &str,
    problem: impl Fn(&serde_saphyr::Error) -> Problem,
) -> Parsed<T> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut masked: Vec<(usize, usize)> = Vec::new();
    let mut problems: Vec<Problem> = Vec::new();
    let mut enclosing: Vec<u64> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let current = lines.join("\n");
        let err = match serde_saphyr::from_str::<T>(&current) {
            Ok(v) => {
                return Parsed {
                    value: Some(v),
                    problems,
                    enclosing,
                }
            }
            Err(e) => e,
        };
        let p = problem(&err);
        let first = problems.is_empty();
        let line = p.line as usize;
        let in_masked = masked.iter().any(|(a, b)| (*a..=*b).contains(&line));
        if !first && (in_masked || !maskable(&p.message)) {
            break;
        }
        let can_mask = maskable(&p.message) && line > 0 && !in_masked;
        let mut p = p;
        let is_key = p.message.starts_with("unknown field");
        let before = lines.clone();
        let masked_now = if can_mask {
            mask_entry(&mut lines, line, p.column as usize, is_key)
        } else {
            None
        };
        match masked_now {
            Some(m) => {
                // Name the key the problem is about by its full path.
                p.key = key_path(&before, m.first - 1, m.indent);
                p.message = explain(&p.message, &before, line, p.column as usize);
                // Point at a wrong value on its key's line; otherwise at the
                // key (a block value may start lines below its key).
                if is_key || m.first != line {
                    p.line = m.first as u64;
                    p.column = m.indent as u64 + 1;
                }
                enclosing.extend(ancestors(&lines, m.first - 1, m.indent));
                masked.push((m.first, m.last));
                problems.push(p);
            }
            None => {
                problems.push(p);
                break;
            }
        }
    }
    Parsed {
        value: None,
        problems,
        enclosing,
    }
}

/// The message in an operator's words: what a scalar should have been and
/// what was found, or, for an unknown key, the nearest known key.
fn explain(message: &str, lines: &[String], line: usize, column: usize) -> String {
    if let Some(kind) = scalar_kind(message) {
        return match scalar_at(lines, line, column) {
            Some(found) => format!("expected {kind}, found {found:?}"),
            None => format!("expected {kind}"),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let Some((unknown, _)) = rest.split_once('`') else {
            return message.to_owned();
        };
        let known = known_fields(message);
        if let Some(near) = nearest(unknown, &known) {
            return format!(
                "unknown key `{unknown}`, did you mean `{near}`? ({})",
                known_list(&known)
            );
        }
        return format!("unknown key `{unknown}` ({})", known_list(&known));
    }
    message.to_owned()
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "this mapping takes no keys".to_owned()
    } else {
        format!("known keys: {}", known.join(", "))
    }
}

/// The field names of serde's "unknown field `x`, expected one of a, b" (or
/// "expected `a` or `b`", "expected `a`"), without quoting.
fn known_fields(message: &str) -> Vec<String> {
    let Some((_, expected)) = message.split_once(", expected ") else {
        return Vec::new();
    };
    let list = expected.strip_prefix("one of ").unwrap_or(expected);
    list.split(", ")
        .flat_map(|part| part.split(" or "))
        .map(|f| f.trim().trim_matches('`').to_owned())
        .filter(|f| !f.is_empty() && !f.contains(' '))
        .collect()
}

/// The known key closest to `unknown` by edit distance (a swap of two
/// neighbours counts once), if close enough to be a typo: at most one edit
/// per three characters, and never a tie.
fn nearest<'a>(unknown: &str, known: &'a [String]) -> Option<&'a str> {
    let limit = (unknown.chars().count() / 3).max(1);
    let mut scored: Vec<(usize, &str)> = known
        .iter()
        .map(|k| (edit_distance(&unknown.to_ascii_lowercase(), k), k.as_str()))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    match scored.as_slice() {
        [(d, k), rest @ ..] if rest.first().is_none_or(|(d2, _)| d2 > d) => Some(k),
        _ => None,
    }
}

/// Optimal string alignment distance: insertions, deletions,
/// substitutions and transpositions of adjacent characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The scalar written at `line`:`column` (1-based, characters), without
/// quotes or a trailing comment; `None` if nothing is there.
fn scalar_at(lines: &[String], line: usize, column: usize) -> Option<String> {
    let text = lines.get(line.checked_sub(1)?)?;
    let rest: String = text.chars().skip(column.saturating_sub(1)).collect();
    let rest = rest.trim_start();
    let value = match rest.chars().next()? {
        q @ ('"' | '\'') => rest[1..].split(q).next().unwrap_or_default(),
        _ => {
            let end = rest
                .find(" #")
                .into_iter()
                .chain(rest.find([',', '}', ']']))
                .min()
                .unwrap_or(rest.len());
            rest[..end].trim_end()
        }
    };
    (!value.is_empty()).then(|| value.to_owned())
}

fn significant(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The column of the last `-` if `prefix` is only indentation and sequence
/// dashes (the key after it is the first of a sequence item).
fn item_dash(prefix: &str) -> Option<usize> {
    let rest = prefix.trim_start_matches(' ');
    if rest.is_empty() || !rest.trim_start_matches(['-', ' ']).is_empty() {
        return None;
    }
    prefix.rfind('-')
}

/// Where the key of a line's first entry starts: after indentation and any
/// sequence dashes.
fn first_key_col(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '-']).len()
}

/// The dotted path of the key at `idx`:`col` (0-based line, byte column),
/// with sequence indices: `jobs[0].sources[1].postgres.port`. Read from
/// the text's indentation (and flow mappings on one line), as the YAML
/// parser would nest it.
pub fn key_path(lines: &[String], idx: usize, col: usize) -> String {
    // Segments from the innermost out.
    let mut segments: Vec<String> = Vec::new();
    let (mut i, mut c) = (idx, col);
    while let Some(text) = lines.get(i) {
        let c_byte = c.min(text.len());
        let name = text[c_byte..]
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches(['"', '\''])
            .to_owned();
        segments.push(name);
        let before = &text[..c_byte];
        // Inside a flow mapping: its key is on the same line before the `{`.
        if let Some(brace) = before.rfind('{') {
            let head = before[..brace].trim_end();
            if let Some(head) = head.strip_suffix(':') {
                let start = head.rfind(['{', ',']).map(|b| b + 1).unwrap_or(0);
                let seg = &head[start..];
                c = start + (seg.len() - seg.trim_start_matches([' ', '-']).len());
                continue;
            }
            break;
        }
        // A sequence item: its first key follows the dash, on this line or
        // on the nearest less indented line above.
        let dash = match item_dash(before) {
            Some(d) => Some((i, d)),
            None => {
                let Some(k) = (0..i)
                    .rev()
                    .find(|&k| significant(&lines[k]) && indent(&lines[k]) < c)
                else {
                    break;
                };
                match first_key_col(&lines[k]) == c {
                    true => item_dash(&lines[k][..c]).map(|d| (k, d)),
                    false => {
                        // The parent key.
                        i = k;
                        c = first_key_col(&lines[k]);
                        continue;
                    }
                }
            }
        };
        let Some((k, d)) = dash else { break };
        // Earlier items at the same dash column, up to the sequence's key.
        let mut index = 0;
        let mut parent = None;
        for m in (0..k).rev() {
            let l = &lines[m];
            if !significant(l) {
                continue;
            }
            let ind = indent(l);
            let is_item = l[ind..].starts_with('-');
            if ind < d || (ind == d && !is_item) {
                parent = Some(m);
                break;
            }
            if ind == d && is_item {
                index += 1;
            }
        }
        let Some(m) = parent else {
            segments.push(format!("[{index}]"));
            break;
        };
        segments.push(format!("[{index}]"));
        i = m;
        c = first_key_col(&lines[m]);
    }
    let mut out = String::new();
    for seg in segments.iter().rev() {
        if !out.is_empty() && !seg.starts_with('[') {
            out.push('.');
        }
        out.push_str(seg);
    }
    out
}

/// Lines of the mappings enclosing an entry at `idx` indented `indent`:
/// walking up, each nearest line indented less than the last.
fn ancestors(lines: &[String], idx: usize, indent_of_entry: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut limit = indent_of_entry;
    for i in (0..idx).rev() {
        let l = &lines[i];
        if l.trim().is_empty() {
            continue;
        }
        let ind = indent(l);
        if ind < limit {
            out.push(i as u64 + 1);
            limit = ind;
            if ind == 0 {
                break;
            }
        }
    }
    out
}

/// A blanked entry.
pub struct Masked {
    /// First and last blanked lines, 1-based.
    pub first: usize,
    pub last: usize,
    /// The key's column (0-based byte offset) on its line.
    pub indent: usize,
}

/// Whether `s` begins with a plain mapping key (`name:` then a space or the
/// end of the line).
fn starts_with_key(s: &str) -> bool {
    let key_len = s
        .find(|c: char| c.is_whitespace() || ":{}[],#".contains(c))
        .unwrap_or(s.len());
    key_len > 0 && {
        let after = &s[key_len..];
        after == ":" || after.starts_with(": ")
    }
}

fn indent(s: &str) -> usize {
    s.len() - s.trim_start_matches(' ').len()
}

/// Blanks the `key: value` entry that holds the node at `line`:`column`
/// (1-based; the column counts characters; `node_is_key` when the node is
/// the key itself, as for an unknown field): the key's line from the key on,
/// and the following lines indented deeper than the key. Returns the range
/// blanked entry, or `None` when no key can be found.
pub fn mask_entry(
    lines: &mut [String],
    line: usize,
    column: usize,
    node_is_key: bool,
) -> Option<Masked> {
    let idx = line.checked_sub(1)?;
    let text = lines.get(idx)?;
    // Byte offset of the (1-based, character) column.
    let col_byte = text
        .char_indices()
        .nth(column.saturating_sub(1))
        .map(|(b, _)| b)
        .unwrap_or(text.len());
    let before = &text[..col_byte];
    let rest = &text[col_byte..];
    let (key_line, key_col) = if node_is_key && starts_with_key(rest) {
        // An unknown field: the node is the key itself.
        (idx, col_byte)
    } else if let Some(colon) = before.rfind(": ") {
        // A value on its key's line: the key starts after the indentation
        // (or a sequence dash, or `{`/`,` in flow style).
        let start = before[..colon]
            .rfind(['{', ','])
            .map(|i| i + 1)
            .unwrap_or(0);
        let seg = &before[start..colon];
        let lead = seg.len() - seg.trim_start_matches([' ', '-']).len();
        (idx, start + lead)
    } else if before.trim_start_matches([' ', '-']).is_empty() {
        // A block value starting its line: its key sits on an earlier, less
        // indented line.
        let here = indent(text);
        let k = (0..idx)
            .rev()
            .find(|&i| !lines[i].trim().is_empty() && indent(&lines[i]) < here)?;
        (k, indent(&lines[k]))
    } else {
        return None;
    };
    let key_indent = key_col;
    let mut end = key_line;
    for (i, l) in lines.iter().enumerate().skip(key_line + 1) {
        if l.trim().is_empty() || indent(l) > key_indent {
            end = i;
        } else {
            break;
        }
    }
    for (i, l) in lines.iter_mut().enumerate().take(end + 1).skip(key_line) {
        let from = if i == key_line {
            key_col.min(l.len())
        } else {
            0
        };
        let keep: String = l[..from].to_owned();
        *l = keep;
    }
    Some(Masked {
        first: key_line + 1,
        last: end + 1,
        indent: key_col,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(text: &str, line: usize, col: usize, is_key: bool) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        mask_entry(&mut lines, line, col, is_key).unwrap();
        lines.join("\n")
    }

    #[test]
    fn masks_an_unknown_key_and_its_block() {
        let t = "a:\n  bogus:\n    x: 1\n    y: 2\n  ok: 3\n";
        assert_eq!(masked(t, 2, 3, true), "a:\n  \n\n\n  ok: 3");
    }

    #[test]
    fn masks_a_wrong_value_with_its_key() {
        let t = "a:\n  port: [1, 2]\n  ok: 3\n";
        assert_eq!(masked(t, 2, 9, false), "a:\n  \n  ok: 3");
        let t = "a:\n  port:\n    - 1\n    - 2\n  ok: 3\n";
        assert_eq!(masked(t, 3, 5, false), "a:\n  \n\n\n  ok: 3");
    }

    #[test]
    fn masks_the_first_key_of_a_sequence_item_only_from_the_key() {
        let t = "s:\n  - prot: 1\n    name: x\n";
        assert_eq!(masked(t, 2, 5, true), "s:\n  - \n    name: x");
    }

    #[test]
    fn a_mapping_where_a_scalar_belongs_masks_its_key() {
        let mut lines: Vec<String> = "p:\n  host:\n    nested: 1\n  port: 2"
            .lines()
            .map(str::to_owned)
            .collect();
        let m = mask_entry(&mut lines, 3, 5, false).unwrap();
        assert_eq!((m.first, m.indent), (2, 2));
        assert_eq!(lines.join("\n"), "p:\n  \n\n  port: 2");
    }

    fn path(text: &str, line: usize, col: usize) -> String {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        key_path(&lines, line - 1, col)
    }

    #[test]
    fn key_paths_follow_mappings_sequences_and_flow_style() {
        let t = "store:\n  url: x\njobs:\n  - name: a\n    sources:\n      - name: db\n        postgres:\n\n          # comment\n          port: 1\n      - name: b\n        files: {path: /x, exclued: 1}\n  - name: c\n";
        assert_eq!(path(t, 2, 2), "store.url");
        assert_eq!(path(t, 4, 4), "jobs[0].name");
        assert_eq!(path(t, 10, 10), "jobs[0].sources[0].postgres.port");
        assert_eq!(path(t, 11, 8), "jobs[0].sources[1].name");
        assert_eq!(path(t, 12, 26), "jobs[0].sources[1].files.exclued");
        assert_eq!(path(t, 13, 4), "jobs[1].name");
        // Items at the key's own indentation.
        assert_eq!(
            path("jobs:\n- name: a\n- name: b\n  tz: x\n", 4, 2),
            "jobs[1].tz"
        );
    }

    #[test]
    fn unknown_keys_get_the_nearest_known_key() {
        let known: Vec<String> = ["host", "port", "user", "exclude"]
            .map(String::from)
            .to_vec();
        assert_eq!(nearest("prot", &known), Some("port"));
        assert_eq!(nearest("exclued", &known), Some("exclude"));
        assert_eq!(nearest("bogus", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            known_fields("unknown field `x`, expected one of url, options, part_size"),
            ["url", "options", "part_size"]
        );
        assert_eq!(
            known_fields("unknown field `x`, expected `a` or `b`"),
            ["a", "b"]
        );
    }

    #[test]
    fn scalar_errors_say_what_was_expected_and_found() {
        let lines = vec![
            "  port: fivefour # no".to_owned(),
            "  x: {a: 'q r', b: 2}".to_owned(),
        ];
        assert_eq!(
            explain("invalid i64", &lines, 1, 9),
            "expected an integer, found \"fivefour\""
        );
        assert_eq!(scalar_at(&lines, 2, 9).as_deref(), Some("q r"));
        assert_eq!(scalar_at(&lines, 2, 19).as_deref(), Some("2"));
    }

    #[test]
    fn masks_inside_flow_mappings_from_the_key() {
        let t = "r: {path: /x, bogus: 1}\n";
        assert_eq!(masked(t, 1, 15, true), "r: {path: /x, ");
    }
}
