//! A streaming SQL splitter for `pg_dumpall --globals-only` output.
//!
//! It knows exactly as much SQL lexing as it takes to find statement ends:
//! standard and `E''` strings, quoted identifiers, dollar quotes, line and
//! nested block comments. Comments are dropped (replaced by whitespace), so
//! what is classified and executed is exactly what the server will see.
//!
//! psql meta-commands are the reason this exists: a backslash outside any
//! string is refused, except the `\restrict` / `\unrestrict` marker lines
//! pg_dump and pg_dumpall (17.6+, 16.10+, 15.14+) write, which are skipped.

use std::io::BufRead;

/// Longest accepted statement (and line), in bytes.
pub const MAX_STATEMENT: usize = 1024 * 1024;
/// Largest accepted globals text, decompressed, in bytes.
pub const MAX_TOTAL: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokKind {
    Word,
    QuotedIdent,
    String,
    Number,
    Param,
    Punct,
}

/// A token of a statement, as a byte range of the statement's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: TokKind,
    pub start: usize,
    pub end: usize,
}

/// One SQL statement without comments or its terminating `;`, and the line
/// its first token is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub line: usize,
    pub text: String,
    pub tokens: Vec<Token>,
}

impl Statement {
    pub fn token_text(&self, i: usize) -> Option<&str> {
        self.tokens.get(i).map(|t| &self.text[t.start..t.end])
    }

    /// The token at `i` upper-cased, if it is a bare word (a keyword or an
    /// unquoted identifier).
    pub fn word(&self, i: usize) -> Option<String> {
        match self.tokens.get(i) {
            Some(t) if t.kind == TokKind::Word => Some(self.text[t.start..t.end].to_uppercase()),
            _ => None,
        }
    }

    pub fn is_word(&self, i: usize, w: &str) -> bool {
        self.word(i).is_some_and(|x| x == w)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error(
        "line {line}: psql meta-command `{command}` (only `\\restrict` and `\\unrestrict` marker lines are accepted)"
    )]
    MetaCommand { line: usize, command: String },
    #[error("line {line} is not valid UTF-8")]
    NotUtf8 { line: usize },
    #[error("line {line} contains a NUL byte")]
    Nul { line: usize },
    #[error("the statement starting on line {line} is longer than {max} bytes")]
    TooLong { line: usize, max: usize },
    #[error("the text is larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("the {what} starting on line {line} is never closed")]
    Unterminated { line: usize, what: &'static str },
    #[error("reading line {line} failed")]
    Read { line: usize, source: std::io::Error },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Normal,
    /// In a string literal; `escapes` for `E''` strings.
    Single {
        escapes: bool,
    },
    Double,
    Dollar {
        tag: Vec<char>,
    },
    Block {
        depth: u32,
    },
}

#[derive(Debug, Default)]
struct Building {
    line: usize,
    text: String,
    tokens: Vec<Token>,
    /// Kind and start of a token still being read (strings, identifiers).
    open: Option<(TokKind, usize)>,
}

/// Feed it lines (with their `\n`), then call [`Splitter::finish`].
#[derive(Debug)]
pub struct Splitter {
    state: State,
    line: usize,
    /// Where the open string or comment started, for error messages.
    open_line: usize,
    cur: Option<Building>,
    out: Vec<Statement>,
    max_statement: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

/// `\restrict KEY` / `\unrestrict KEY`: the key is alphanumeric.
fn is_restrict_marker(rest: &str) -> bool {
    let mut parts = rest.split_whitespace();
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some("\\restrict" | "\\unrestrict"), Some(key), None)
            if key.chars().all(|c| c.is_ascii_alphanumeric())
    )
}

/// The tag of a dollar quote opening at `chars[i]` (`$tag$` or `$$`).
fn dollar_tag(chars: &[char], i: usize) -> Option<Vec<char>> {
    let mut j = i + 1;
    while j < chars.len() && chars[j] != '$' {
        let c = chars[j];
        let ok = if j == i + 1 {
            is_ident_start(c)
        } else {
            is_ident_start(c) || c.is_ascii_digit()
        };
        if !ok {
            return None;
        }
        j += 1;
    }
    (j < chars.len()).then(|| chars[i + 1..j].to_vec())
}

fn closes_dollar(chars: &[char], i: usize, tag: &[char]) -> bool {
    let n = tag.len();
    chars.len() >= i + n + 2
        && chars[i] == '$'
        && chars[i + 1..i + 1 + n] == *tag
        && chars[i + 1 + n] == '$'
}

impl Default for Splitter {
    fn default() -> Self {
        Splitter::new(MAX_STATEMENT)
    }
}

impl Splitter {
    pub fn new(max_statement: usize) -> Splitter {
        Splitter {
            state: State::Normal,
            line: 0,
            open_line: 0,
            cur: None,
            out: Vec::new(),
            max_statement,
        }
    }

    /// The number of the next line to be fed.
    pub fn next_line(&self) -> usize {
        self.line + 1
    }

    fn building(&mut self) -> &mut Building {
        let line = self.line;
        self.cur.get_or_insert_with(|| Building {
            line,
            ..Default::default()
        })
    }

    fn push(&mut self, c: char) {
        if let Some(b) = self.cur.as_mut() {
            b.text.push(c);
        }
    }

    fn push_all(&mut self, cs: &[char]) {
        if let Some(b) = self.cur.as_mut() {
            b.text.extend(cs);
        }
    }

    fn open_token(&mut self, kind: TokKind) {
        let line = self.line;
        let b = self.building();
        b.open = Some((kind, b.text.len()));
        self.open_line = line;
    }

    fn close_token(&mut self) {
        if let Some(b) = self.cur.as_mut() {
            if let Some((kind, start)) = b.open.take() {
                b.tokens.push(Token {
                    kind,
                    start,
                    end: b.text.len(),
                });
            }
        }
    }

    fn whole_token(&mut self, kind: TokKind, cs: &[char]) {
        let b = self.building();
        let start = b.text.len();
        b.text.extend(cs);
        b.tokens.push(Token {
            kind,
            start,
            end: b.text.len(),
        });
    }

    fn end_statement(&mut self) {
        if let Some(b) = self.cur.take() {
            self.out.push(Statement {
                line: b.line,
                text: b.text.trim_end().to_owned(),
                tokens: b.tokens,
            });
        }
    }

    /// An `E` word right before a quote makes the string an escape string.
    fn take_escape_prefix(&mut self) -> Option<usize> {
        let b = self.cur.as_mut()?;
        let t = *b.tokens.last()?;
        let adjacent = t.end == b.text.len();
        if adjacent && t.kind == TokKind::Word && b.text[t.start..t.end].eq_ignore_ascii_case("e") {
            b.tokens.pop();
            Some(t.start)
        } else {
            None
        }
    }

    pub fn feed_line(&mut self, line: &str) -> Result<(), SplitError> {
        self.line += 1;
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            i = match self.state.clone() {
                State::Normal => match self.normal(&chars, i)? {
                    Some(next) => next,
                    None => break,
                },
                State::Single { escapes } => self.in_string(&chars, i, escapes),
                State::Double => self.in_ident(&chars, i),
                State::Dollar { tag } => self.in_dollar(&chars, i, &tag),
                State::Block { depth } => self.in_block(&chars, i, depth),
            };
        }
        if let Some(b) = &self.cur {
            if b.text.len() > self.max_statement {
                return Err(SplitError::TooLong {
                    line: b.line,
                    max: self.max_statement,
                });
            }
        }
        Ok(())
    }

    /// One step outside any string or comment; `None` when the rest of the
    /// line is consumed.
    fn normal(&mut self, chars: &[char], i: usize) -> Result<Option<usize>, SplitError> {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        Ok(Some(match c {
            _ if c.is_whitespace() => {
                self.push(c);
                i + 1
            }
            '-' if next == Some('-') => {
                self.push('\n');
                return Ok(None);
            }
            '/' if next == Some('*') => {
                self.push(' ');
                self.open_line = self.line;
                self.state = State::Block { depth: 1 };
                i + 2
            }
            '\\' => {
                let line: String = chars.iter().collect();
                let at_line_start = chars[..i].iter().all(|c| c.is_whitespace());
                if self.cur.is_none() && at_line_start && is_restrict_marker(&line) {
                    return Ok(None);
                }
                let command: String = chars[i..]
                    .iter()
                    .take_while(|c| !c.is_whitespace())
                    .take(40)
                    .collect();
                return Err(SplitError::MetaCommand {
                    line: self.line,
                    command,
                });
            }
            ';' => {
                self.end_statement();
                i + 1
            }
            '\'' => {
                let prefix = self.take_escape_prefix();
                self.open_token(TokKind::String);
                if let (Some(start), Some(b)) = (prefix, self.cur.as_mut()) {
                    b.open = Some((TokKind::String, start));
                }
                self.push(c);
                self.state = State::Single {
                    escapes: prefix.is_some(),
                };
                i + 1
            }
            '"' => {
                self.open_token(TokKind::QuotedIdent);
                self.push(c);
                self.state = State::Double;
                i + 1
            }
            '$' if next.is_some_and(|n| n.is_ascii_digit()) => {
                let n = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                self.whole_token(TokKind::Param, &chars[i..i + 1 + n]);
                i + 1 + n
            }
            '$' => match dollar_tag(chars, i) {
                Some(tag) => {
                    self.open_token(TokKind::String);
                    let n = tag.len() + 2;
                    self.push_all(&chars[i..i + n]);
                    self.state = State::Dollar { tag };
                    i + n
                }
                None => {
                    self.whole_token(TokKind::Punct, &chars[i..i + 1]);
                    i + 1
                }
            },
            _ if is_ident_start(c) => {
                let n = chars[i..].iter().take_while(|c| is_ident_char(**c)).count();
                self.whole_token(TokKind::Word, &chars[i..i + n]);
                i + n
            }
            _ if c.is_ascii_digit() => {
                let n = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '.' || **c == '_')
                    .count();
                self.whole_token(TokKind::Number, &chars[i..i + n]);
                i + n
            }
            _ => {
                self.whole_token(TokKind::Punct, &chars[i..i + 1]);
                i + 1
            }
        }))
    }

    fn in_string(&mut self, chars: &[char], i: usize, escapes: bool) -> usize {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if escapes && c == '\\' {
            let n = if next.is_some() { 2 } else { 1 };
            self.push_all(&chars[i..i + n]);
            return i + n;
        }
        if c == '\'' {
            return self.closing_quote(chars, i);
        }
        self.push(c);
        i + 1
    }

    fn in_ident(&mut self, chars: &[char], i: usize) -> usize {
        let c = chars[i];
        if c == '"' {
            return self.closing_quote(chars, i);
        }
        self.push(c);
        i + 1
    }

    /// `chars[i]` is the quote that opened the current string or
    /// identifier: doubled, it stands for itself and the token goes on;
    /// alone, it ends the token.
    fn closing_quote(&mut self, chars: &[char], i: usize) -> usize {
        let c = chars[i];
        if chars.get(i + 1) == Some(&c) {
            self.push_all(&chars[i..i + 2]);
            return i + 2;
        }
        self.push(c);
        self.close_token();
        self.state = State::Normal;
        i + 1
    }

    fn in_dollar(&mut self, chars: &[char], i: usize, tag: &[char]) -> usize {
        if closes_dollar(chars, i, tag) {
            let n = tag.len() + 2;
            self.push_all(&chars[i..i + n]);
            self.close_token();
            self.state = State::Normal;
            return i + n;
        }
        self.push(chars[i]);
        i + 1
    }

    fn in_block(&mut self, chars: &[char], i: usize, depth: u32) -> usize {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => {
                self.state = State::Block { depth: depth + 1 };
                i + 2
            }
            ('*', Some('/')) => {
                self.state = if depth <= 1 {
                    State::Normal
                } else {
                    State::Block { depth: depth - 1 }
                };
                i + 2
            }
            _ => i + 1,
        }
    }

    /// Ends the input: an open string or comment is an error; a last
    /// statement without `;` counts (psql would send it too).
    pub fn finish(mut self) -> Result<Vec<Statement>, SplitError> {
        let what = match self.state {
            State::Normal => None,
            State::Single { .. } => Some("string literal"),
            State::Double => Some("quoted identifier"),
            State::Dollar { .. } => Some("dollar-quoted string"),
            State::Block { .. } => Some("block comment"),
        };
        if let Some(what) = what {
            return Err(SplitError::Unterminated {
                line: self.open_line,
                what,
            });
        }
        self.end_statement();
        Ok(self.out)
    }
}

/// Splits everything `r` yields, line by line, within the size limits.
pub fn split_reader<R: BufRead>(
    mut r: R,
    max_statement: usize,
    max_total: u64,
) -> Result<Vec<Statement>, SplitError> {
    let mut s = Splitter::new(max_statement);
    let mut buf = Vec::new();
    let mut total: u64 = 0;
    // One byte more than a statement may hold tells a too-long line apart.
    let line_cap = u64::try_from(max_statement).unwrap_or(u64::MAX) + 2;
    loop {
        buf.clear();
        let line = s.next_line();
        let n = std::io::Read::take(&mut r, line_cap)
            .read_until(b'\n', &mut buf)
            .map_err(|source| SplitError::Read { line, source })?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > max_total {
            return Err(SplitError::TooLarge { max: max_total });
        }
        if n as u64 == line_cap && buf.last() != Some(&b'\n') {
            return Err(SplitError::TooLong {
                line,
                max: max_statement,
            });
        }
        if buf.contains(&0) {
            return Err(SplitError::Nul { line });
        }
        let text = std::str::from_utf8(&buf).map_err(|_| SplitError::NotUtf8 { line })?;
        s.feed_line(text)?;
    }
    s.finish()
}

/// Splits a whole string (tests and small inputs).
pub fn split_str(s: &str) -> Result<Vec<Statement>, SplitError> {
    split_reader(s.as_bytes(), MAX_STATEMENT, MAX_TOTAL)
}
