//! How names from a backup are shown. They are whatever bytes the archive
//! or manifest holds: `:`, spaces and unicode are ordinary, but invalid
//! UTF-8, terminal escape sequences, line breaks and bidirectional
//! overrides must neither corrupt a terminal nor make one name look like
//! another.
//!
//! Text (one entry per line): printable characters, spaces included, are
//! shown as they are; a backslash is doubled; `\n`, `\r` and `\t` are
//! written so; every other control character, and the invisible characters
//! that reorder or break text (U+061C, U+200E/F, U+2028/9, U+202A..E,
//! U+2066..9, U+FEFF), as `\u{hex}`; each byte that is not part of valid
//! UTF-8 as `\xHH`. So the escaping is reversible: distinct names never
//! print alike, and one line is one name.
//!
//! JSON: a name that is valid UTF-8 is the JSON string of exactly that
//! name, with the characters above (and DEL and the C1 controls, which JSON
//! itself allows raw) written as `\uXXXX` escapes, so a JSON parser gets
//! the exact name back and a terminal shows none of it raw. A name that is
//! not UTF-8 is given as its text form above plus a `..._hex` field with
//! its exact bytes.

use std::fmt::Write as _;
use std::io;

use crate::text::is_invisible;

fn push_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() || is_invisible(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// The text form of a name of any bytes.
///
/// ```
/// use ccbackup::inspect::escape::text;
/// assert_eq!(text(b"device:1/cpu load.rrd"), "device:1/cpu load.rrd");
/// assert_eq!(text(b"a\x1b[2J\xffb\\"), "a\\u{1b}[2J\\xffb\\\\");
/// ```
pub fn text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// [`text`] for a name known to be UTF-8 (from the manifest).
pub fn text_str(s: &str) -> String {
    text(s.as_bytes())
}

/// A name for JSON: the exact string when it is UTF-8, else the text form
/// and the bytes in hex.
pub fn json_name(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), None),
        Err(_) => (text(bytes), Some(hex::encode(bytes))),
    }
}

/// serde_json's compact output with DEL, the C1 controls and the invisible
/// characters of [`text`] escaped as well (JSON requires only C0).
#[derive(Debug, Default, Clone, Copy)]
pub struct SafeJson;

impl serde_json::ser::Formatter for SafeJson {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_control() || is_invisible(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// `value` as one line of JSON written with [`SafeJson`].
pub fn to_json(value: &impl serde::Serialize) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, SafeJson);
    value.serialize(&mut ser)?;
    // The formatter writes only UTF-8 (the input's, or ASCII escapes).
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_reversible_and_safe() {
        assert_eq!(
            text("rrds/Überlast ü.rrd".as_bytes()),
            "rrds/Überlast ü.rrd"
        );
        assert_eq!(text(b"a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(text("x\u{202e}gpj.exe".as_bytes()), "x\\u{202e}gpj.exe");
        assert_eq!(text("\u{9b}31m".as_bytes()), "\\u{9b}31m");
        // A literal `\xff` and the byte 0xff print differently.
        assert_ne!(text(b"\\xff"), text(b"\xff"));
        assert_eq!(text(b"\x7f"), "\\u{7f}");
        let shown = text(b"\x1b]0;owned\x07<b>x</b>");
        assert!(!shown.chars().any(char::is_control), "{shown}");
    }

    #[test]
    fn json_is_exact_and_keeps_controls_escaped() {
        let (s, hex) = json_name("a\u{1b}[31m\u{9b}\u{7f}\u{202e}<i>".as_bytes());
        assert_eq!(hex, None);
        let line = to_json(&serde_json::json!({ "path": s })).unwrap();
        assert!(!line.chars().any(char::is_control), "{line}");
        assert!(!line.contains('\u{202e}'));
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["path"], "a\u{1b}[31m\u{9b}\u{7f}\u{202e}<i>");
        let (s, hex) = json_name(b"bad\xff");
        assert_eq!((s.as_str(), hex.as_deref()), ("bad\\xff", Some("626164ff")));
    }
}
