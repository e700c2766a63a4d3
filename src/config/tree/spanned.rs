//! Handing positions to `serde_saphyr::Spanned` from the tree.
//!
//! The raw structs (and retention's policy keys) wrap values in
//! serde-saphyr's `Spanned`, which asks its deserializer for a newtype named
//! `__yaml_spanned` and then reads a map of a marker key, `value`,
//! `referenced` and `defined`. This is serde-saphyr's own protocol (not a
//! documented API), so the tree speaks it here and nowhere else; the tests
//! of `read` check positions end to end and fail if a new serde-saphyr
//! version changes it.

use serde::de::value::{MapDeserializer, StrDeserializer, UnitDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::forward_to_deserialize_any;

use super::ctx::DeError;
use super::Pos;

/// The newtype name `Spanned<T>` asks for.
pub const NEWTYPE: &str = "__yaml_spanned";
/// The first key of the map that tells `Spanned<T>` positions follow.
const MARKER: &str = "__serde_saphyr_private_spanned";

/// A value (read by `D`) with its position, as `Spanned<T>` wants it.
pub struct SpannedDe<D> {
    value: D,
    at: Pos,
}

impl<D> SpannedDe<D> {
    pub fn new(value: D, at: Pos) -> Self {
        SpannedDe { value, at }
    }
}

impl<'de, D: Deserializer<'de, Error = DeError>> Deserializer<'de> for SpannedDe<D> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(SpannedMap {
            step: 0,
            value: Some(self.value),
            at: self.at,
        })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct SpannedMap<D> {
    step: usize,
    value: Option<D>,
    at: Pos,
}

const KEYS: [&str; 4] = [MARKER, "value", "referenced", "defined"];

impl<'de, D: Deserializer<'de, Error = DeError>> MapAccess<'de> for SpannedMap<D> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match KEYS.get(self.step) {
            Some(k) => seed.deserialize(StrDeserializer::new(k)).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let step = self.step;
        self.step += 1;
        match step {
            0 => seed.deserialize(UnitDeserializer::new()),
            1 => match self.value.take() {
                Some(d) => seed.deserialize(d),
                None => Err(de::Error::custom("a spanned value was read twice")),
            },
            _ => seed.deserialize(MapDeserializer::new(
                [("line", self.at.line), ("column", self.at.column)].into_iter(),
            )),
        }
    }
}
