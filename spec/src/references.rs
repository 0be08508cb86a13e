//! The digests a manifest's JSON names, read without building a tree of
//! its values: what the host pins while a push is in flight and what the
//! garbage collector marks.

use crate::digest::Digest;

/// Every digest a manifest's JSON names: `config`, `layers`, `blobs`,
/// `manifests` (index children) and `subject`. Unparseable content names
/// nothing. Only those fields are kept, everything else is skipped as it is
/// read: a 4 MiB manifest costs its digests, not a tree of all its values.
pub fn references(content: &[u8]) -> References {
    let Ok(doc) = serde_json::from_slice::<Named>(content) else {
        return named_in_tree(content);
    };
    let digests = |fields: &[&Descriptors]| -> Vec<Digest> {
        fields
            .iter()
            .flat_map(|field| field.0.iter())
            .filter_map(|d| {
                d.digest
                    .as_ref()
                    .and_then(serde_json::Value::as_str)
                    .and_then(|s| Digest::parse(s).ok())
            })
            .collect()
    };
    References {
        blobs: digests(&[&doc.config, &doc.layers, &doc.blobs]),
        manifests: digests(&[&doc.manifests]),
        subject: digests(&[&doc.subject]).into_iter().next(),
    }
}

/// The same, for JSON the field-by-field reading refuses: a manifest with
/// a duplicate key (Wharf refuses such pushes, but a registry:2 data
/// directory may hold one) is read as a tree of values, where the last of
/// the duplicates counts, so that its blobs are still found.
fn named_in_tree(content: &[u8]) -> References {
    use serde_json::Value;
    let Ok(doc) = serde_json::from_slice::<Value>(content) else {
        return References::default();
    };
    let named = |field: &str| -> Vec<Digest> {
        let one = |d: &Value| {
            d.get("digest")
                .and_then(Value::as_str)
                .and_then(|s| Digest::parse(s).ok())
        };
        match doc.get(field) {
            Some(Value::Array(items)) => items.iter().filter_map(one).collect(),
            Some(d @ Value::Object(_)) => one(d).into_iter().collect(),
            _ => Vec::new(),
        }
    };
    References {
        blobs: ["config", "layers", "blobs"]
            .iter()
            .flat_map(|f| named(f))
            .collect(),
        manifests: named("manifests"),
        subject: named("subject").into_iter().next(),
    }
}

/// The digests a manifest names, by what they name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    /// `config`, `layers` and `blobs` (artifact manifests): blobs.
    pub blobs: Vec<Digest>,
    /// `manifests`: an index's children.
    pub manifests: Vec<Digest>,
    /// `subject`: the manifest this one refers to.
    pub subject: Option<Digest>,
}

impl References {
    /// Every digest named, in field order.
    pub fn all(&self) -> impl Iterator<Item = &Digest> {
        self.blobs
            .iter()
            .chain(&self.manifests)
            .chain(&self.subject)
    }
}

/// The fields of a manifest that name blobs; every other field is skipped
/// unread.
#[derive(serde::Deserialize)]
struct Named {
    #[serde(default)]
    config: Descriptors,
    #[serde(default)]
    layers: Descriptors,
    #[serde(default)]
    blobs: Descriptors,
    #[serde(default)]
    manifests: Descriptors,
    #[serde(default)]
    subject: Descriptors,
}

/// A descriptor's digest; its other fields are skipped unread.
#[derive(serde::Deserialize)]
struct Descriptor {
    #[serde(default)]
    digest: Option<serde_json::Value>,
}

/// One descriptor or a list of them, as a field may hold either; anything
/// else names nothing.
#[derive(Default)]
struct Descriptors(Vec<Descriptor>);

impl<'de> serde::Deserialize<'de> for Descriptors {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer};
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Descriptors;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a descriptor or a list of descriptors")
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Descriptors, M::Error> {
                let one = serde::Deserialize::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Descriptors(vec![one]))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Descriptors, S::Error> {
                // A list of anything: its objects are descriptors.
                let mut all = Vec::new();
                while let Some(item) = seq.next_element::<Descriptors>()? {
                    all.extend(item.0);
                }
                Ok(Descriptors(all))
            }
            fn visit_unit<E>(self) -> Result<Descriptors, E> {
                Ok(Descriptors::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Descriptors, E> {
                Ok(Descriptors::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Descriptors, E> {
                Ok(Descriptors::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Descriptors, E> {
                Ok(Descriptors::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Descriptors, E> {
                Ok(Descriptors::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Descriptors, E> {
                Ok(Descriptors::default())
            }
        }
        d.deserialize_any(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn references_names_every_descriptor_field_and_skips_the_rest() {
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "x", "digest": d('a'), "size": 1},
            "layers": [{"digest": d('b')}, "junk", 7, {"digest": 3}, {"digest": d('c')}],
            "manifests": [{"digest": d('e'), "platform": {"os": "linux"}}],
            "subject": {"digest": d('f')},
            "annotations": {"big": "x".repeat(1 << 20)},
        });
        let named = references(doc.to_string().as_bytes());
        let all: Vec<String> = named.all().map(ToString::to_string).collect();
        assert_eq!(all, [d('a'), d('b'), d('c'), d('e'), d('f')]);
        assert_eq!(named.manifests.len(), 1);
        assert_eq!(named.subject.map(|s| s.to_string()), Some(d('f')));
        assert_eq!(references(b"not json"), References::default());
        // A duplicate key: still read, the last one counting.
        let twice = format!(
            r#"{{"config":{{"digest":"{}"}},"layers":[],"layers":[{{"digest":"{}"}}]}}"#,
            d('a'),
            d('b')
        );
        let all: Vec<String> = references(twice.as_bytes())
            .all()
            .map(ToString::to_string)
            .collect();
        assert_eq!(all, [d('a'), d('b')]);
        assert_eq!(references(b"[1,2]"), References::default());
    }
}
