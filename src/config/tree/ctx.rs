//! What one read of the tree remembers: the problems found, and what
//! earlier walks learnt (see `read.rs`).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use serde::de;

use super::{Kind, Node, Pos};
use crate::config::Problem;

/// Why reading a value stopped.
#[derive(Debug)]
pub enum DeError {
    /// Already recorded as a problem.
    Reported,
    Message(String),
    Missing(&'static str),
    /// A key a hand-read mapping does not take; the keys it does take.
    Unknown(&'static [&'static str]),
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            DeError::Reported => f.write_str("reported"),
            DeError::Message(m) => f.write_str(m),
            DeError::Missing(k) => write!(f, "required key `{k}` is missing"),
            DeError::Unknown(_) => f.write_str("unknown key"),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::Message(msg.to_string())
    }
    fn missing_field(field: &'static str) -> Self {
        DeError::Missing(field)
    }
    fn unknown_field(_: &str, expected: &'static [&'static str]) -> Self {
        DeError::Unknown(expected)
    }
}

pub(super) struct Ctx<'t> {
    pub(super) text: &'t str,
    pub(super) problems: RefCell<Vec<Problem>>,
    /// Nodes read as placeholders from the next walk on (by address: the
    /// tree does not move while it is read).
    pub(super) retired: RefCell<HashSet<usize>>,
    /// Keys of mappings read by hand-written visitors (by visitor type),
    /// learnt when one refused a key: from the next walk on, other keys
    /// are reported and skipped in every mapping that visitor reads.
    pub(super) fields: RefCell<HashMap<&'static str, &'static [&'static str]>>,
    /// Required keys of each struct, learnt when one was missing: from the
    /// next walk on, every mapping of that struct without them is reported
    /// and given placeholders.
    pub(super) required: RefCell<HashMap<&'static str, Vec<&'static str>>>,
    /// Kinds of node (see `kind_tag`) each hand-written visitor refused:
    /// from the next walk on, reported and read as placeholders.
    pub(super) refused: RefCell<HashSet<(&'static str, u8)>>,
    pub(super) suspect: RefCell<BTreeSet<u64>>,
}

impl<'t> Ctx<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        Ctx {
            text,
            problems: RefCell::default(),
            retired: RefCell::default(),
            fields: RefCell::default(),
            required: RefCell::default(),
            refused: RefCell::default(),
            suspect: RefCell::default(),
        }
    }

    /// How much the walks have learnt: a walk that failed without
    /// learning anything would fail again.
    pub(super) fn progress(&self) -> usize {
        self.retired.borrow().len()
            + self.fields.borrow().len()
            + self.required.borrow().values().map(Vec::len).sum::<usize>()
            + self.refused.borrow().len()
    }

    pub(super) fn report(&self, at: Pos, key: &str, message: String, lines: &[u64]) {
        let p = Problem {
            line: at.line,
            column: at.column,
            key: if key.is_empty() {
                "yaml".to_owned()
            } else {
                key.to_owned()
            },
            message: plain(&message),
        };
        let mut problems = self.problems.borrow_mut();
        // A restarted walk meets the problems before its restart again.
        if !problems.contains(&p) {
            problems.push(p);
        }
        self.suspect.borrow_mut().extend(lines.iter().copied());
    }
}

/// Control characters from the file, neutralised for the terminal.
fn plain(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The kind of a node, for remembering which kinds a visitor refuses.
pub(super) fn kind_tag(kind: &Kind) -> u8 {
    match kind {
        Kind::Null => 0,
        Kind::Bool(_) => 1,
        Kind::Int(_) => 2,
        Kind::Float(_) => 3,
        Kind::Str(_) => 4,
        Kind::Seq(_) => 5,
        Kind::Map(_) => 6,
    }
}

pub(super) fn id(node: &Node) -> usize {
    node as *const Node as usize
}
