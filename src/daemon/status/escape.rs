//! HTML escaping for the status page and its charts: a leaf both
//! `html` and `svg` import, so neither imports the other for it.

/// `s` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe as
/// element content and inside a quoted attribute. Control characters
/// (terminal escape sequences in a crafted name) are shown as `\u{1b}`.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if c.is_control() || crate::text::is_invisible(c) => out.extend(c.escape_default()),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
