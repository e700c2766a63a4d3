//! The walk: a serde `Deserializer` over one node of the tree, with the
//! sequences' and mappings' access (items read at their index, mapping
//! entries checked for unknown and repeated keys).

use std::collections::HashMap;
use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor,
};

use super::ctx::{id, kind_tag, Ctx, DeError};
use super::placeholder::Placeholder;
use super::spanned::{SpannedDe, NEWTYPE};
use super::suggest::unknown_key;
use super::{Kind, Node, Pos};

/// A node being read: where it is, how it is named in messages.
#[derive(Clone)]
pub(super) struct NodeDe<'a, 't> {
    pub(super) node: &'a Node,
    pub(super) path: String,
    /// The key of the entry holding the node, if it is a mapping value.
    pub(super) key_at: Option<Pos>,
    /// Lines of the entries enclosing this one.
    pub(super) outer: Vec<u64>,
    pub(super) ctx: &'a Ctx<'t>,
}

impl<'a, 't> NodeDe<'a, 't> {
    pub(super) fn root(node: &'a Node, ctx: &'a Ctx<'t>) -> Self {
        NodeDe {
            node,
            path: String::new(),
            key_at: None,
            outer: Vec::new(),
            ctx,
        }
    }

    /// Where a problem with the value points: at the value on its key's
    /// line, otherwise at the key (a block value starts lines below it).
    pub(super) fn point(&self) -> Pos {
        match self.key_at {
            Some(k) if k.line != self.node.at.line => k,
            _ => self.node.at,
        }
    }

    /// This entry's lines with the enclosing ones.
    pub(super) fn lines(&self) -> Vec<u64> {
        let mut lines = self.outer.clone();
        if let Some(k) = self.key_at {
            lines.push(k.line);
        }
        if !self.path.is_empty() {
            lines.push(self.node.at.line);
        }
        lines
    }

    pub(super) fn child(
        &self,
        node: &'a Node,
        path: String,
        key_at: Option<Pos>,
    ) -> NodeDe<'a, 't> {
        NodeDe {
            node,
            path,
            key_at,
            outer: self.lines(),
            ctx: self.ctx,
        }
    }

    pub(super) fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn placeholder(&self) -> Placeholder {
        Placeholder { at: self.node.at }
    }

    /// Reports that the value is not what its key takes.
    pub(super) fn wrong(&self, expected: &str) -> Placeholder {
        let found = match &self.node.kind {
            Kind::Null => "nothing".to_owned(),
            Kind::Seq(_) => "a list".to_owned(),
            Kind::Map(_) => "a mapping".to_owned(),
            Kind::Str(s) => format!("{s:?}"),
            _ => format!("{:?}", self.scalar_text().unwrap_or_default()),
        };
        let mut lines = self.lines();
        lines.push(self.point().line);
        self.ctx.report(
            self.point(),
            &self.path,
            format!("expected {expected}, found {found}"),
            &lines,
        );
        self.placeholder()
    }

    /// A scalar as text: strings as they are, other scalars as written.
    fn scalar_text(&self) -> Option<String> {
        match &self.node.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Bool(b) => Some(self.spelled(b)),
            Kind::Int(n) => Some(self.spelled(n)),
            Kind::Float(x) => Some(self.spelled(x)),
            Kind::Null | Kind::Seq(_) | Kind::Map(_) => None,
        }
    }

    fn spelled(&self, value: &dyn fmt::Display) -> String {
        self.node
            .spelling(self.ctx.text)
            .map_or_else(|| value.to_string(), str::to_owned)
    }

    /// Records an error a visitor returned for this node (or a required
    /// key missing from it), and retires the node.
    pub(super) fn settle<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        let (key, message) = match r {
            Err(DeError::Message(m)) => (self.path.clone(), m),
            Err(DeError::Missing(k)) => (self.child_path(k), "required key is missing".to_owned()),
            Err(DeError::Unknown(_)) => (self.path.clone(), "unknown key".to_owned()),
            other => return other,
        };
        let mut lines = self.lines();
        lines.push(self.point().line);
        self.ctx.report(self.point(), &key, message, &lines);
        self.ctx.retired.borrow_mut().insert(id(self.node));
        Err(DeError::Reported)
    }

    fn int(&self) -> Option<i128> {
        match &self.node.kind {
            Kind::Int(n) => Some(*n),
            Kind::Str(s) => quoted(s),
            _ => None,
        }
    }
}

/// A quoted scalar in a number or boolean setting: serde-saphyr reads
/// `"5432"` as 5432 and `"true"` as true, and so does the tree. Only text
/// that looks like a single scalar is handed to it.
fn quoted<T: DeserializeOwned>(s: &str) -> Option<T> {
    let simple = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " +-._".contains(c));
    if simple {
        serde_saphyr::from_str(s).ok()
    } else {
        None
    }
}

/// Reads `seed` from `de`, or from a placeholder if the node is retired.
pub(super) fn read_seed<'de, S: DeserializeSeed<'de>>(
    de: NodeDe,
    seed: S,
) -> Result<S::Value, DeError> {
    if de.ctx.retired.borrow().contains(&id(de.node)) {
        seed.deserialize(de.placeholder())
    } else {
        seed.deserialize(de)
    }
}

macro_rules! int {
    ($method:ident, $ty:ty, $visit:ident, $wide:ty, $expected:expr) => {
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            match self.int().and_then(|n| <$ty>::try_from(n).ok()) {
                Some(n) => {
                    let r = v.$visit(<$wide>::from(n));
                    self.settle(r)
                }
                None => self.wrong($expected).$method(v),
            }
        }
    };
}

const INTEGER: &str = "an integer";
const WHOLE: &str = "a whole number (0 or more)";

impl<'de> Deserializer<'de> for NodeDe<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        // Learnt per visitor type, so a problem repeated in a thousand
        // entries costs one more walk, not a thousand.
        let visitor = std::any::type_name::<V>();
        let expected = (&v as &dyn de::Expected).to_string();
        let refusal = (visitor, kind_tag(&self.node.kind));
        if self.ctx.refused.borrow().contains(&refusal) {
            return self.wrong(&expected).deserialize_any(v);
        }
        let r = match &self.node.kind {
            Kind::Null => v.visit_unit(),
            Kind::Bool(b) => v.visit_bool(*b),
            Kind::Int(n) => match i64::try_from(*n) {
                Ok(n) => v.visit_i64(n),
                Err(_) => v.visit_i128(*n),
            },
            Kind::Float(x) => v.visit_f64(*x),
            Kind::Str(s) => v.visit_str(s),
            Kind::Seq(_) => v.visit_seq(Items::new(&self)),
            Kind::Map(_) => {
                let fields = self.ctx.fields.borrow().get(visitor).copied();
                v.visit_map(self.mapping(fields).read_by(visitor))
            }
        };
        if let Err(DeError::Message(_)) = r {
            // Reported in the words the next walk will use.
            self.ctx.refused.borrow_mut().insert(refusal);
            self.wrong(&expected);
            self.ctx.retired.borrow_mut().insert(id(self.node));
            return Err(DeError::Reported);
        }
        self.settle(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let b = match &self.node.kind {
            Kind::Bool(b) => Some(*b),
            Kind::Str(s) => quoted(s),
            _ => None,
        };
        match b {
            Some(b) => {
                let r = v.visit_bool(b);
                self.settle(r)
            }
            _ => self.wrong("true or false").deserialize_bool(v),
        }
    }

    int!(deserialize_i8, i8, visit_i64, i64, INTEGER);
    int!(deserialize_i16, i16, visit_i64, i64, INTEGER);
    int!(deserialize_i32, i32, visit_i64, i64, INTEGER);
    int!(deserialize_i64, i64, visit_i64, i64, INTEGER);
    int!(deserialize_i128, i128, visit_i128, i128, INTEGER);
    int!(deserialize_u8, u8, visit_u64, u64, WHOLE);
    int!(deserialize_u16, u16, visit_u64, u64, WHOLE);
    int!(deserialize_u32, u32, visit_u64, u64, WHOLE);
    int!(deserialize_u64, u64, visit_u64, u64, WHOLE);
    int!(deserialize_u128, u128, visit_u128, u128, WHOLE);

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let x = match &self.node.kind {
            Kind::Float(x) => *x,
            // Integers beyond f64's exact range round, as YAML readers do.
            Kind::Int(n) => *n as f64,
            Kind::Str(s) => match quoted::<f64>(s) {
                Some(x) => x,
                None => return self.wrong("a number").deserialize_f64(v),
            },
            _ => return self.wrong("a number").deserialize_f64(v),
        };
        let r = v.visit_f64(x);
        self.settle(r)
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let text = self.scalar_text().unwrap_or_default();
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => {
                let r = v.visit_char(c);
                self.settle(r)
            }
            _ => self.wrong("a single character").deserialize_char(v),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar_text() {
            Some(s) => {
                let r = v.visit_str(&s);
                self.settle(r)
            }
            None => self.wrong("a string").deserialize_str(v),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Null => v.visit_unit(),
            _ => self.wrong("nothing").deserialize_unit(v),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        if name == NEWTYPE {
            let at = self.node.at;
            v.visit_newtype_struct(SpannedDe::new(self, at))
        } else {
            v.visit_newtype_struct(self)
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if !matches!(self.node.kind, Kind::Seq(_)) {
            return self.wrong("a list").deserialize_seq(v);
        }
        let r = v.visit_seq(Items::new(&self));
        self.settle(r)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_mapping(None, v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_struct_mapping(name, fields, v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Str(s) => v.visit_enum(StrDeserializer::<DeError>::new(s)),
            _ => Err(DeError::Message("expected a name".to_owned())),
        };
        self.settle(r)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

impl<'a, 't> NodeDe<'a, 't> {
    pub(super) fn mapping(&self, fields: Option<&'static [&'static str]>) -> Entries<'a, 't> {
        let entries = match &self.node.kind {
            Kind::Map(e) => e.as_slice(),
            _ => &[],
        };
        Entries {
            de: self.clone(),
            entries: entries.iter(),
            seen: HashMap::new(),
            fields,
            pending: None,
            missing: Vec::new(),
            visitor: None,
        }
    }

    pub(super) fn items(&self) -> std::slice::Iter<'a, Node> {
        match &self.node.kind {
            Kind::Seq(items) => items.iter(),
            _ => [].iter(),
        }
    }

    pub(super) fn deserialize_struct_mapping<'de, V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let Kind::Map(entries) = &self.node.kind else {
            return self.deserialize_mapping(Some(fields), v);
        };
        let mut access = self.mapping(Some(fields));
        if let Some(required) = self.ctx.required.borrow().get(name) {
            for k in required {
                if !entries.iter().any(|e| e.key == *k) {
                    self.report_missing(k);
                    access.missing.push(k);
                }
            }
        }
        match v.visit_map(access) {
            Err(DeError::Missing(k)) => {
                self.ctx
                    .required
                    .borrow_mut()
                    .entry(name)
                    .or_default()
                    .push(k);
                self.report_missing(k);
                self.ctx.retired.borrow_mut().insert(id(self.node));
                Err(DeError::Reported)
            }
            r => self.settle(r),
        }
    }

    fn report_missing(&self, key: &str) {
        let mut lines = self.lines();
        lines.push(self.point().line);
        self.ctx.report(
            self.point(),
            &self.child_path(key),
            "required key is missing".to_owned(),
            &lines,
        );
    }

    pub(super) fn deserialize_mapping<'de, V: Visitor<'de>>(
        self,
        fields: Option<&'static [&'static str]>,
        v: V,
    ) -> Result<V::Value, DeError> {
        if !matches!(self.node.kind, Kind::Map(_)) {
            let expected = if fields.is_some() {
                "a mapping of keys"
            } else {
                "a mapping"
            };
            let p = self.wrong(expected);
            return match fields {
                Some(f) => p.deserialize_struct("", f, v),
                None => p.deserialize_map(v),
            };
        }
        let r = v.visit_map(self.mapping(fields));
        self.settle(r)
    }
}

/// The items of a sequence, each read at its index.
pub(super) struct Items<'a, 'b, 't> {
    items: std::slice::Iter<'a, Node>,
    de: &'b NodeDe<'a, 't>,
    index: usize,
}

impl<'a, 'b, 't> Items<'a, 'b, 't> {
    pub(super) fn new(de: &'b NodeDe<'a, 't>) -> Self {
        Items {
            items: de.items(),
            de,
            index: 0,
        }
    }
}

impl<'de> SeqAccess<'de> for Items<'_, '_, '_> {
    type Error = DeError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.de.path, self.index);
        self.index += 1;
        read_seed(self.de.child(node, path, None), seed).map(Some)
    }
}

/// The entries of a mapping. Repeated keys, and keys a struct does not
/// take, are reported and skipped.
pub(super) struct Entries<'a, 't> {
    de: NodeDe<'a, 't>,
    entries: std::slice::Iter<'a, super::Entry>,
    /// Keys read so far and the line of each.
    seen: HashMap<&'a str, u64>,
    fields: Option<&'static [&'static str]>,
    pending: Option<&'a super::Entry>,
    /// Required keys the mapping lacks (already reported): read as
    /// placeholders after the entries.
    missing: Vec<&'static str>,
    /// The hand-written visitor reading the mapping, if any.
    visitor: Option<&'static str>,
}

impl<'a, 't> Entries<'a, 't> {
    /// Marks the mapping as read by a hand-written visitor.
    pub(super) fn read_by(mut self, visitor: &'static str) -> Self {
        self.visitor = Some(visitor);
        self
    }
}

impl<'de> MapAccess<'de> for Entries<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        for e in self.entries.by_ref() {
            let path = self.de.child_path(&e.key);
            let mut lines = self.de.lines();
            lines.push(e.key_at.line);
            if let Some(first) = self.seen.get(e.key.as_str()) {
                let message = format!("`{}` is already set on line {first}", e.key);
                self.de.ctx.report(e.key_at, &path, message, &lines);
                continue;
            }
            if let Some(fields) = self.fields {
                if !fields.contains(&e.key.as_str()) {
                    self.de
                        .ctx
                        .report(e.key_at, &path, unknown_key(&e.key, fields), &lines);
                    continue;
                }
            }
            self.seen.insert(&e.key, e.key_at.line);
            self.pending = Some(e);
            return match seed.deserialize(StrDeserializer::<DeError>::new(&e.key)) {
                Ok(k) => Ok(Some(k)),
                // A hand-read mapping refusing a key: learn its keys, so
                // the next walk reports this one and reads the others.
                Err(DeError::Unknown(known)) => {
                    if let Some(visitor) = self.visitor {
                        self.de.ctx.fields.borrow_mut().insert(visitor, known);
                    }
                    Err(DeError::Reported)
                }
                Err(e) => Err(e),
            };
        }
        match self.missing.pop() {
            Some(k) => seed
                .deserialize(StrDeserializer::<DeError>::new(k))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some(e) = self.pending.take() else {
            // A required key the mapping lacks.
            return seed.deserialize(self.de.placeholder());
        };
        let path = self.de.child_path(&e.key);
        read_seed(self.de.child(&e.value, path, Some(e.key_at)), seed)
    }
}
