//! Include patterns: shell-like globs over archive paths, matched with
//! `globset` (compiled to a finite automaton, so a hostile pattern cannot
//! make matching exponential).
//!
//! Our syntax (see [`super::ExtractOptions::include`]) predates globset and
//! differs from its defaults, so each pattern is translated rather than
//! handed over as is:
//! - `*`, `?` and classes stay within one component (`literal_separator`);
//! - `**` crosses `/` wherever it appears (`a**`, `**.rrd`). globset gives
//!   `**` that meaning only as a whole component and reads it as `*`
//!   elsewhere, so such a `**` becomes `{*,*/**/*}`; likewise `**/` not
//!   after a `/` (nothing, or anything ending in `/`) becomes `{,*/**/}`;
//! - `{`, `}` and `,` are literal characters (globset alternation is not
//!   part of our syntax) and `[[:alpha:]]` is no POSIX class;
//! - in a class, `]` first is literal, `-` first or last is literal, `!` or
//!   `^` first negates, `\` is literal; a reversed range (`[z-a]`) matches
//!   nothing where globset would refuse the pattern.
//!
//! Matching is on the path's bytes, as before: `?` and classes match one
//! byte (globset compiles byte-wise), so non-UTF-8 names work.

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use super::ExtractError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` not followed by `/`: anything, `/` included.
    AnyDepth,
    /// `**/`: nothing, or anything ending in `/`.
    AnyDirs,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// The compiled include patterns; an empty set selects everything.
#[derive(Debug, Clone)]
pub(super) struct Globs {
    set: GlobSet,
    empty: bool,
}

impl Globs {
    pub(super) fn new(patterns: &[String]) -> Result<Globs, ExtractError> {
        let mut set = GlobSetBuilder::new();
        for pattern in patterns {
            let bad = |why| ExtractError::BadPattern {
                pattern: pattern.clone(),
                why,
            };
            let translated = to_globset(&lex(pattern).map_err(bad)?);
            let glob = GlobBuilder::new(&translated)
                .literal_separator(true)
                .backslash_escape(true)
                .empty_alternates(true)
                .build()
                // The translation only produces valid globset syntax; this
                // is a guard, not an expected path.
                .map_err(|_| bad("it cannot be compiled"))?;
            set.add(glob);
        }
        let set = set.build().map_err(|_| ExtractError::BadPattern {
            pattern: patterns.join(" "),
            why: "the patterns cannot be compiled together",
        })?;
        Ok(Globs {
            set,
            empty: patterns.is_empty(),
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether some pattern matches `path` (bytes, relative, no trailing `/`).
    pub(super) fn matches(&self, path: &[u8]) -> bool {
        self.set.is_match_candidate(&Candidate::from_bytes(path))
    }
}

fn lex(pattern: &str) -> Result<Vec<Tok>, &'static str> {
    let p: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' if p.get(i + 1) == Some(&'*') => {
                if p.get(i + 2) == Some(&'/') {
                    toks.push(Tok::AnyDirs);
                    i += 3;
                } else {
                    toks.push(Tok::AnyDepth);
                    i += 2;
                }
            }
            '*' => {
                toks.push(Tok::Star);
                i += 1;
            }
            '?' => {
                toks.push(Tok::One);
                i += 1;
            }
            '\\' => {
                let c = *p.get(i + 1).ok_or("ends with a lone `\\`")?;
                toks.push(Tok::Lit(c));
                i += 2;
            }
            '[' => {
                let mut j = i + 1;
                let negated = matches!(p.get(j), Some('!') | Some('^'));
                if negated {
                    j += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let c = *p.get(j).ok_or("unclosed `[`")?;
                    if c == ']' && !first {
                        j += 1;
                        break;
                    }
                    first = false;
                    if p.get(j + 1) == Some(&'-') && p.get(j + 2).is_some_and(|&e| e != ']') {
                        ranges.push((c, p[j + 2]));
                        j += 3;
                    } else {
                        ranges.push((c, c));
                        j += 1;
                    }
                }
                toks.push(Tok::Class { negated, ranges });
                i = j;
            }
            c => {
                toks.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    Ok(toks)
}

/// The same pattern in globset syntax (see the module docs).
fn to_globset(toks: &[Tok]) -> String {
    let mut out = String::new();
    for (i, tok) in toks.iter().enumerate() {
        // globset's `**` crosses `/` only right after a `/` or at the start.
        let after_sep = i == 0 || toks[i - 1] == Tok::Lit('/');
        match tok {
            Tok::Lit('/') => out.push('/'),
            Tok::Lit(c) => {
                if "*?[]{},\\".contains(*c) {
                    out.push('\\');
                }
                out.push(*c);
            }
            Tok::One => out.push('?'),
            Tok::Star => out.push('*'),
            Tok::AnyDepth if after_sep && i + 1 == toks.len() => out.push_str("**"),
            Tok::AnyDepth => out.push_str("{*,*/**/*}"),
            // A glob that is only `**/` matches everything in globset.
            Tok::AnyDirs if after_sep && toks.len() > 1 => out.push_str("**/"),
            Tok::AnyDirs => out.push_str("{,*/**/}"),
            Tok::Class { negated, ranges } => push_class(&mut out, *negated, ranges),
        }
    }
    out
}

/// Characters with a meaning of their own somewhere in a globset class.
const CLASS_SPECIAL: [char; 5] = ['!', '-', '[', ']', '^'];

/// Writes a class so that globset reads exactly its set of characters: the
/// ranges are cut around the characters globset treats specially, which
/// are then written where they are literal.
fn push_class(out: &mut String, negated: bool, ranges: &[(char, char)]) {
    let mut plain: Vec<(char, char)> = Vec::new();
    let mut special: Vec<char> = Vec::new();
    for &(lo, hi) in ranges {
        if lo > hi {
            continue;
        }
        let mut start = Some(lo);
        for s in CLASS_SPECIAL {
            let Some(from) = start else { break };
            if s < from || s > hi {
                continue;
            }
            if !special.contains(&s) {
                special.push(s);
            }
            if s > from {
                plain.push((from, prev_char(s)));
            }
            start = next_char(s);
        }
        if let Some(from) = start.filter(|&f| f <= hi) {
            plain.push((from, hi));
        }
    }
    if plain.is_empty() && special.is_empty() {
        // Nothing in the class: it never matches, or (negated) matches any
        // one character but `/`. A class of just `/` is globset's way to
        // say "never" under `literal_separator`.
        out.push_str(if negated { "?" } else { "[/]" });
        return;
    }
    if !negated && plain.is_empty() && special.iter().all(|c| *c == '!' || *c == '^') {
        // `[!]`/`[^]` would read as negation; outside a class both are
        // plain characters.
        let alts: Vec<String> = special.iter().map(|c| c.to_string()).collect();
        out.push_str(&format!("{{{}}}", alts.join(",")));
        return;
    }
    let has = |c| special.contains(&c);
    out.push('[');
    if negated {
        out.push('!');
    }
    // Literal positions: `]` first, `[` not before `:`, `!`/`^` anywhere
    // but first (unless after the negation mark), `-` first or last.
    let mut empty = true;
    if has(']') {
        out.push(']');
        empty = false;
    }
    for (lo, hi) in plain {
        out.push(lo);
        if hi != lo {
            out.push('-');
            out.push(hi);
        }
        empty = false;
    }
    if has('[') {
        out.push('[');
        empty = false;
    }
    let dash_first = empty && !negated && has('-');
    if dash_first {
        out.push('-');
    }
    for c in ['!', '^'] {
        if has(c) {
            out.push(c);
        }
    }
    if has('-') && !dash_first {
        out.push('-');
    }
    out.push(']');
}

fn prev_char(c: char) -> char {
    char::from_u32(u32::from(c) - 1).unwrap_or(c)
}

fn next_char(c: char) -> Option<char> {
    char::from_u32(u32::from(c) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str, t: &str) -> bool {
        Globs::new(&[p.to_string()]).unwrap().matches(t.as_bytes())
    }

    #[test]
    fn glob_semantics() {
        assert!(g("*.rrd", "a.rrd"));
        assert!(!g("*.rrd", "d/a.rrd"));
        assert!(g("**/*.rrd", "d/a.rrd"));
        assert!(g("**/*.rrd", "a.rrd"));
        assert!(g("unspecified/**/x.rrd", "unspecified/x.rrd"));
        assert!(g("unspecified/**/x.rrd", "unspecified/a/b/x.rrd"));
        assert!(!g("unspecified/**/x.rrd", "unspecified/a/bx.rrd"));
        assert!(g("unspecified/device:*", "unspecified/device:1234"));
        assert!(!g("unspecified/device:*", "unspecified/__SummaryInfo__"));
        assert!(g("a?c", "abc"));
        assert!(!g("a?c", "a/c"));
        assert!(g("[a-c]x", "bx"));
        assert!(!g("[!a-c]x", "bx"));
        assert!(g("[!a-c]x", "dx"));
        assert!(g("\\*", "*"));
        assert!(!g("\\*", "a"));
        assert!(g("a**", "a/b/c"));
        assert!(g("*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!g("*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(Globs::new(&["[abc".to_string()]).is_err());
        assert!(Globs::new(&["abc\\".to_string()]).is_err());
    }

    /// Where globset's own reading differs, ours is kept.
    #[test]
    fn our_syntax_where_globset_reads_it_otherwise() {
        // `**` crosses `/` outside a whole component too.
        assert!(g("**.rrd", "a/b.rrd"));
        assert!(g("a/**b", "a/x/yb"));
        assert!(g("a**b", "ab"));
        assert!(!g("a**b", "a/b/c"));
        // `**/` after a non-`/`: nothing, or anything ending in `/`.
        assert!(g("a**/b", "ab"));
        assert!(g("a**/b", "ax/y/b"));
        assert!(!g("a**/b", "axb"));
        // Braces and commas are plain characters.
        assert!(g("{a,b}", "{a,b}"));
        assert!(!g("{a,b}", "a"));
        // No POSIX classes: `[[:a]` is the class `[`, `:`, `a`.
        assert!(g("[[:a]", ":"));
        assert!(!g("[[:alpha:]]", "x"));
        // A reversed range matches nothing instead of failing.
        assert!(!g("[z-a]", "m"));
        assert!(g("[!z-a]", "m"));
        assert!(!g("[!z-a]", "/"));
        // Class members globset treats specially.
        assert!(g("[]a]", "]"));
        assert!(g("[a-]", "-"));
        assert!(Globs::new(&["[!]".to_string()]).is_err());
        // Alone, globset's `**/` matches everything; ours needs a `/`.
        assert!(!g("**/", "a") && g("**/", "a/"));
        assert!(g("[x!^]", "!") && g("[x!^]", "^") && !g("[x!^]", "y"));
        assert!(g("[!!]", "a") && !g("[!!]", "!"));
        assert!(g("[ -~]", "[") && g("[ -~]", "-") && !g("[ -~]", "/"));
        assert!(g("[\\]", "\\"));
        // Byte-exact on non-UTF-8 names.
        let set = Globs::new(&["d/?x*".to_string()]).unwrap();
        assert!(set.matches(b"d/\xffx\xfe"));
        assert!(!set.matches(b"d/\xff/x"));
    }
}
