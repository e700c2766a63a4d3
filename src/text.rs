//! Showing text that came from outside (a store, an archive, a dump):
//! what every printer of such text must not pass through as it is.

/// Characters that are not controls but reorder, hide or break text
/// (bidirectional overrides and isolates, invisible marks, line and
/// paragraph separators): a name holding U+202E can show `exe.txt` as
/// `txt.exe`.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}
