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
        let masked_now = if can_mask {
            let is_key = p.message.starts_with("unknown field");
            mask_entry(&mut lines, line, p.column as usize, is_key)
        } else {
            None
        };
        match masked_now {
            Some(m) => {
                // Name the YAML key the problem is about, and point at it
                // (a block value may start lines below its key).
                p.key = m.key;
                p.line = m.first as u64;
                p.column = m.indent as u64 + 1;
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
    pub key: String,
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
    let key: String = lines[key_line][key_col..]
        .split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
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
        key,
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
        assert_eq!(m.key, "host");
        assert_eq!(lines.join("\n"), "p:\n  \n\n  port: 2");
    }

    #[test]
    fn masks_inside_flow_mappings_from_the_key() {
        let t = "r: {path: /x, bogus: 1}\n";
        assert_eq!(masked(t, 1, 15, true), "r: {path: /x, ");
    }
}
