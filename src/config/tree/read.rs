//! The second pass: the typed raw structs built from the tree, with every
//! problem collected on the way (the walk itself is in `node.rs`).
//!
//! The structs' own serde derives say which keys exist and what type each
//! value has; this deserializer walks the tree for them and, instead of
//! stopping at the first problem, records it with its position and key
//! path and goes on:
//!
//! - an unknown key (the struct's field list says which are known) or a
//!   repeated key is reported and skipped;
//! - a value of the wrong type is reported and replaced by a placeholder
//!   (`placeholder.rs`);
//! - a value the derive itself refuses (a required key missing, a
//!   hand-written visitor rejecting its input) aborts the walk; it is
//!   reported and the walk starts again over the same tree, knowing
//!   better: the struct's required key, or the kind of node that visitor
//!   refuses, is remembered for every later node of that type and answered
//!   with a placeholder (any other refusal retires just that node). A walk
//!   that learnt nothing ends the reading, so the number of walks follows
//!   the kinds of problem, not how often they repeat, and the text is
//!   never parsed again.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;

use super::ctx::Ctx;
use super::node::NodeDe;
use super::Node;
use crate::config::Problem;

/// What reading found.
pub struct Read<T> {
    /// The document, with placeholders where values could not be read;
    /// `None` when even that was impossible.
    pub value: Option<T>,
    /// Structural problems in document order.
    pub problems: Vec<Problem>,
    /// Lines of every problem above and of the entries enclosing it. A
    /// validation problem on one of them may be about a placeholder or a
    /// skipped key rather than what the operator wrote, so it is left out.
    pub suspect_lines: BTreeSet<u64>,
}

/// Builds `T` from the tree; `text` is the source, for the spelling of
/// plain scalars read as strings.
pub fn read<T: DeserializeOwned>(root: &Node, text: &str) -> Read<T> {
    let ctx = Ctx::new(text);
    let value = loop {
        let before = ctx.progress();
        match T::deserialize(NodeDe::root(root, &ctx)) {
            Ok(v) => break Some(v),
            Err(_) if ctx.progress() > before => continue,
            Err(_) => break None,
        }
    };
    let mut problems = ctx.problems.into_inner();
    problems.sort_by_key(|p| (p.line, p.column));
    Read {
        value,
        problems,
        suspect_lines: ctx.suspect.into_inner(),
    }
}
