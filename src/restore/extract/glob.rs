//! Include patterns: shell-like globs over archive paths, matched without
//! backtracking so a hostile pattern cannot make matching exponential.

use super::ExtractError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(u8),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**`
    AnyDepth,
    /// `**/`: nothing, or anything ending in `/`.
    AnyDirs,
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

/// A compiled include pattern, matched against path bytes.
#[derive(Debug, Clone)]
pub(super) struct Glob {
    toks: Vec<Tok>,
}

impl Glob {
    pub(super) fn new(pattern: &str) -> Result<Glob, ExtractError> {
        let bad = |why| ExtractError::BadPattern {
            pattern: pattern.to_string(),
            why,
        };
        let p = pattern.as_bytes();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < p.len() {
            match p[i] {
                b'*' if p.get(i + 1) == Some(&b'*') => {
                    if p.get(i + 2) == Some(&b'/') {
                        toks.push(Tok::AnyDirs);
                        i += 3;
                    } else {
                        toks.push(Tok::AnyDepth);
                        i += 2;
                    }
                }
                b'*' => {
                    toks.push(Tok::Star);
                    i += 1;
                }
                b'?' => {
                    toks.push(Tok::One);
                    i += 1;
                }
                b'\\' => {
                    let c = *p.get(i + 1).ok_or_else(|| bad("ends with a lone `\\`"))?;
                    toks.push(Tok::Lit(c));
                    i += 2;
                }
                b'[' => {
                    let mut j = i + 1;
                    let negated = matches!(p.get(j), Some(b'!') | Some(b'^'));
                    if negated {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let c = *p.get(j).ok_or_else(|| bad("unclosed `[`"))?;
                        if c == b']' && !first {
                            j += 1;
                            break;
                        }
                        first = false;
                        if p.get(j + 1) == Some(&b'-') && p.get(j + 2).is_some_and(|&e| e != b']') {
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
        Ok(Glob { toks })
    }

    /// Dynamic programming over (token, text position), one row at a time:
    /// linear memory, no exponential backtracking on many stars.
    pub(super) fn matches(&self, text: &[u8]) -> bool {
        let n = text.len();
        // next[t]: tokens after the current one match text[t..].
        let mut next = vec![false; n + 1];
        next[n] = true;
        let mut cur = vec![false; n + 1];
        for tok in self.toks.iter().rev() {
            // For `**/`: whether some `/` at or after t is followed by a match.
            let mut slash_then_rest = false;
            for t in (0..=n).rev() {
                let c = text.get(t).copied();
                cur[t] = match tok {
                    Tok::Lit(l) => c == Some(*l) && next[t + 1],
                    Tok::One => c.is_some_and(|c| c != b'/') && next[t + 1],
                    Tok::Class { negated, ranges } => {
                        c.is_some_and(|c| {
                            c != b'/'
                                && ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                        }) && next[t + 1]
                    }
                    Tok::Star => next[t] || (c.is_some_and(|c| c != b'/') && cur[t + 1]),
                    Tok::AnyDepth => next[t] || (c.is_some() && cur[t + 1]),
                    Tok::AnyDirs => {
                        if c == Some(b'/') && next[t + 1] {
                            slash_then_rest = true;
                        }
                        next[t] || slash_then_rest
                    }
                };
            }
            std::mem::swap(&mut cur, &mut next);
        }
        next[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str, t: &str) -> bool {
        Glob::new(p).unwrap().matches(t.as_bytes())
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
        assert!(Glob::new("[abc").is_err());
        assert!(Glob::new("abc\\").is_err());
    }
}
