//! How much memory a manifest will take once parsed, estimated from its
//! JSON without building anything.
//!
//! Parsing turns every short JSON string into a `String` (24 bytes plus an
//! allocation), so 8 MiB of `"aaa",` becomes over 60 MiB of heap: the byte
//! cap on a manifest does not bound its memory. The estimate walks the
//! document with a visitor that allocates nothing and charges each value
//! what its Rust form costs at least.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Size of a `String` or `Vec` header.
const HEADER: u64 = 24;
/// malloc's smallest chunk, charged for every heap allocation.
const ALLOC: u64 = 32;

/// Estimated heap and inline bytes of one JSON value.
pub struct Weight(pub u64);

fn string(len: usize) -> u64 {
    let len = len as u64;
    if len == 0 {
        HEADER
    } else {
        HEADER + ALLOC.max(len.div_ceil(16) * 16 + 8)
    }
}

struct WeightVisitor;

impl<'de> Visitor<'de> for WeightVisitor {
    type Value = Weight;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Weight, E> {
        Ok(Weight(8))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Weight, E> {
        Ok(Weight(8))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Weight, E> {
        Ok(Weight(8))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Weight, E> {
        Ok(Weight(8))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Weight, E> {
        Ok(Weight(string(s.len())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Weight, E> {
        Ok(Weight(8))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Weight, A::Error> {
        let mut total = HEADER + ALLOC;
        while let Some(Weight(w)) = seq.next_element()? {
            total = total.saturating_add(w);
        }
        Ok(Weight(total))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Weight, A::Error> {
        // Keys name struct fields (known ones cost nothing, unknown ones
        // are skipped), so only the values are charged.
        let mut total = 0u64;
        while let Some((de::IgnoredAny, Weight(w))) = map.next_entry()? {
            total = total.saturating_add(w);
        }
        Ok(Weight(total))
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Weight, D::Error> {
        d.deserialize_any(WeightVisitor)
    }
}

/// The estimate for a whole document, or the parse error.
pub fn estimate(bytes: &[u8]) -> Result<u64, serde_json::Error> {
    serde_json::from_slice::<Weight>(bytes).map(|w| w.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_strings_weigh_far_more_than_their_bytes() {
        let n = 100_000;
        let text = format!("{{\"invalid\": [{}\"a\"]}}", "\"aaa\",".repeat(n));
        let w = estimate(text.as_bytes()).unwrap();
        assert!(w > 8 * text.len() as u64, "{w} for {} bytes", text.len());
    }

    #[test]
    fn a_real_manifest_weighs_little() {
        let text = include_str!("../../../tests/fixtures/manifest-format1.json");
        let w = estimate(text.as_bytes()).unwrap();
        assert!(w < 64 * 1024, "{w}");
        assert!(estimate(b"{").is_err());
    }
}
