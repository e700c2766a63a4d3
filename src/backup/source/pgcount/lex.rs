//! The archive's lexer: integers and strings of the custom format, gathered
//! from however the bytes arrive.

use super::*;

/// What the lexer is gathering.
#[derive(Debug, Clone, Copy)]
pub(super) enum Need {
    /// `n` raw bytes (header fields).
    Bytes(usize),
    /// One archive integer.
    Int,
    /// A string's length, then its body.
    StrLen {
        keep: bool,
    },
    StrBody {
        left: u64,
    },
    StrSkip {
        left: u64,
    },
    /// A data chunk of a table block (rows are counted) or of a large
    /// object block (skipped).
    Copy {
        left: u64,
    },
    Skip {
        left: u64,
    },
}

/// A string from the TOC, as far as we kept it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum Text {
    #[default]
    Null,
    Kept(Vec<u8>),
    /// Longer than [`MAX_KEPT`], or not wanted.
    Dropped,
}

impl Text {
    pub(super) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Text::Kept(b) => Some(b),
            _ => None,
        }
    }
}

/// A completed token handed to the grammar.
pub(super) enum Token {
    Bytes(Vec<u8>),
    Int(i64),
    Str(Text),
    /// The end of a chunk or skipped run.
    Done,
}

impl RowCounter {
    /// Takes what the current `Need` wants from `data`; returns how many
    /// bytes it used.
    pub(super) fn lex(&mut self, data: &[u8]) -> usize {
        match self.need {
            Need::Bytes(n) => self.gather(data, n),
            Need::Int => {
                let n = 1 + self.int_size;
                // Every chunk of table data starts with one: decode it in
                // place when it is whole in `data` (the usual case).
                if self.buf.is_empty() && data.len() >= n {
                    match decode_int(&data[..n]) {
                        Some(v) => self.token(Token::Int(v)),
                        None => self.fail("integer out of range"),
                    }
                    return n;
                }
                let used = self.gather_raw(data, n);
                if self.buf.len() == n {
                    let v = self.take_int();
                    if let Some(v) = v {
                        self.token(Token::Int(v));
                    }
                }
                used
            }
            Need::StrLen { keep } => {
                let n = 1 + self.int_size;
                let used = self.gather_raw(data, n);
                if self.buf.len() == n {
                    match self.take_int() {
                        None => {}
                        Some(l) if l < 0 => self.token(Token::Str(Text::Null)),
                        Some(0) => self.token(Token::Str(Text::Kept(Vec::new()))),
                        Some(l) => {
                            let left = l as u64;
                            self.need = if keep && left <= MAX_KEPT as u64 {
                                Need::StrBody { left }
                            } else {
                                Need::StrSkip { left }
                            };
                        }
                    }
                }
                used
            }
            Need::StrBody { left } => {
                let n = (left as usize).min(data.len());
                self.buf.extend_from_slice(&data[..n]);
                if n as u64 == left {
                    let s = std::mem::take(&mut self.buf);
                    self.token(Token::Str(Text::Kept(s)));
                } else {
                    self.need = Need::StrBody {
                        left: left - n as u64,
                    };
                }
                n
            }
            Need::StrSkip { left } => {
                let n = skip_len(left, data.len());
                if n as u64 == left {
                    self.token(Token::Str(Text::Dropped));
                } else {
                    self.need = Need::StrSkip {
                        left: left - n as u64,
                    };
                }
                n
            }
            Need::Copy { left } => {
                let n = skip_len(left, data.len());
                self.count_rows(&data[..n]);
                if n as u64 == left {
                    self.token(Token::Done);
                } else {
                    self.need = Need::Copy {
                        left: left - n as u64,
                    };
                }
                n
            }
            Need::Skip { left } => {
                let n = skip_len(left, data.len());
                if n as u64 == left {
                    self.token(Token::Done);
                } else {
                    self.need = Need::Skip {
                        left: left - n as u64,
                    };
                }
                n
            }
        }
    }

    pub(super) fn gather_raw(&mut self, data: &[u8], n: usize) -> usize {
        let k = (n - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..k]);
        k
    }

    pub(super) fn gather(&mut self, data: &[u8], n: usize) -> usize {
        let used = self.gather_raw(data, n);
        if self.buf.len() == n {
            let b = std::mem::take(&mut self.buf);
            self.token(Token::Bytes(b));
        }
        used
    }

    /// Decodes the integer in `buf` (sign byte, then little-endian bytes).
    pub(super) fn take_int(&mut self) -> Option<i64> {
        // Decoded in place and cleared, not taken: one integer precedes
        // every chunk, and chunks are often single rows.
        let v = decode_int(&self.buf);
        self.buf.clear();
        if v.is_none() {
            self.fail("integer out of range");
        }
        v
    }
}

/// A sign byte, then little-endian bytes; `None` past `i64`.
fn decode_int(b: &[u8]) -> Option<i64> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().skip(1).enumerate() {
        v |= u64::from(byte) << (8 * i);
    }
    let v = i64::try_from(v).ok()?;
    Some(if b.first().copied().unwrap_or(0) != 0 {
        -v
    } else {
        v
    })
}

pub(super) fn skip_len(left: u64, avail: usize) -> usize {
    usize::try_from(left).map_or(avail, |l| l.min(avail))
}
