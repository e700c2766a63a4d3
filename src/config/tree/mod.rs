//! The configuration file parsed once into a tree that keeps the position
//! of every key and value; `read` then builds the typed raw structs from it
//! in a second pass that collects every problem (see `read.rs`).
//!
//! Parsing goes through serde-saphyr like every other YAML ccbackup reads,
//! so syntax errors, aliases and its resource budget behave the same.
//! Duplicate keys are passed through to the tree (not refused by the
//! parser) so the second pass can report every one of them with its line.

mod ctx;
mod node;
mod placeholder;
mod read;
mod spanned;
mod suggest;

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::options::DuplicateKeyPolicy;
use serde_saphyr::Spanned;

pub use read::read;

/// A 1-based line and column, as serde-saphyr reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    fn of(l: &serde_saphyr::Location) -> Pos {
        Pos {
            line: l.line(),
            column: l.column(),
        }
    }
}

/// One YAML node and where it starts. No `Debug`: the tree holds option
/// values and webhook URLs, which may be credentials.
pub struct Node {
    pub at: Pos,
    /// Byte range of the node in the text, when the parser knows it: a
    /// plain scalar read as a string keeps its spelling (`01`, `yes`,
    /// `2024_01`) instead of the number or boolean YAML makes of it.
    pub bytes: Option<(usize, usize)>,
    pub kind: Kind,
}

pub enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A mapping entry: the key as written and where it starts, and its value.
pub struct Entry {
    pub key: String,
    pub key_at: Pos,
    pub value: Node,
}

/// A YAML syntax error (or a breach of the parser's budget): where and what.
#[derive(Debug)]
pub struct SyntaxError {
    pub at: Pos,
    pub message: String,
}

/// Parses `text` into a tree. An empty document is a null node.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
    };
    serde_saphyr::from_str_with_options::<Option<Node>>(text, options)
        .map(|n| {
            n.unwrap_or(Node {
                at: Pos { line: 1, column: 1 },
                bytes: None,
                kind: Kind::Null,
            })
        })
        .map_err(|e| SyntaxError {
            at: e
                .location()
                .map(|l| Pos::of(&l))
                .unwrap_or(Pos { line: 0, column: 0 }),
            message: crate::retention::policy::plain_message(&e),
        })
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Kind>::deserialize(d)?;
        let span = s.referenced.span();
        let bytes = span
            .byte_offset()
            .zip(span.byte_len())
            .and_then(|(o, l)| Some((usize::try_from(o).ok()?, usize::try_from(l).ok()?)));
        Ok(Node {
            at: Pos::of(&s.referenced),
            bytes,
            kind: s.value,
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        // Beyond i128 no setting makes sense; keep the digits as text.
        Ok(i128::try_from(v).map_or_else(|_| Kind::Str(v.to_string()), Kind::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Node>()?;
            entries.push(Entry {
                key: key.value,
                key_at: Pos::of(&key.referenced),
                value,
            });
        }
        Ok(Kind::Map(entries))
    }
}

impl Node {
    /// How the scalar was written, for a scalar YAML typed as a number,
    /// boolean or null; `None` for strings and collections.
    pub fn spelling<'t>(&self, text: &'t str) -> Option<&'t str> {
        match self.kind {
            Kind::Null | Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) => {
                let (from, len) = self.bytes?;
                text.get(from..from.checked_add(len)?)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
