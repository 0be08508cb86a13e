//! What keeps online garbage collection and pushes apart.
//!
//! Every write that makes a blob present or referenced (an upload
//! finishing, a blob linked into a repository, a manifest put) runs under
//! the shared side of one lock, and the collector deletes each blob under
//! the exclusive side. While a collection runs, those writes also *pin*
//! the digests they touch, and the collector never deletes a pinned blob.
//! So a write either finished before the collection began (its manifest is
//! on disk for the mark to find) or pinned what it references before the
//! collector could delete it, or found the blob already gone:
//! [`Pins::referencing`] lets the caller check that under the same lock,
//! and [`Pins::swept`] says whether a collector removed it.
//!
//! A blob uploaded (or linked) but not referenced by any manifest yet is
//! protected by its modification time instead: those writes set it to the
//! present, and the collector leaves blobs younger than its grace period.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use wharf_guest::Digest;

#[derive(Default)]
pub struct Pins {
    lock: RwLock<()>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Digests written or referenced since the running collection began;
    /// `None` while none runs.
    pinned: Option<HashSet<Digest>>,
    /// Blobs a collector removed, and when: a manifest naming one of them
    /// is refused rather than stored without its blob.
    swept: HashMap<Digest, Instant>,
}

impl Pins {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `write`, which makes `digests` present or referenced, so that no
    /// collector deletes any of them while it runs or because of a mark
    /// that missed it.
    pub fn referencing<'a, T>(
        &self,
        digests: impl IntoIterator<Item = &'a Digest>,
        write: impl FnOnce() -> T,
    ) -> T {
        let _shared = self.lock.read().unwrap_or_else(|e| e.into_inner());
        if let Some(pinned) = &mut self.state().pinned {
            pinned.extend(digests.into_iter().cloned());
        }
        write()
    }

    /// Whether a collector removed `digest` (within the last grace period
    /// it ran with). Call it inside [`Pins::referencing`].
    pub fn swept(&self, digest: &Digest) -> bool {
        self.state().swept.contains_key(digest)
    }

    /// Start a collection: from now on, writes pin what they touch.
    pub fn begin(&self) {
        let _exclusive = self.lock.write().unwrap_or_else(|e| e.into_inner());
        self.state().pinned = Some(HashSet::new());
    }

    /// End a collection; forget removals older than `remember`.
    pub fn end(&self, remember: Duration) {
        let _exclusive = self.lock.write().unwrap_or_else(|e| e.into_inner());
        let mut state = self.state();
        state.pinned = None;
        state
            .swept
            .retain(|_, at| at.elapsed() <= remember.max(Duration::from_secs(1)));
    }

    /// Remove the blob `digest` with `remove`, unless a write pinned it
    /// since the collection began. Returns whether it was removed.
    pub fn sweep<E>(
        &self,
        digest: &Digest,
        remove: impl FnOnce() -> Result<(), E>,
    ) -> Result<bool, E> {
        let _exclusive = self.lock.write().unwrap_or_else(|e| e.into_inner());
        if self
            .state()
            .pinned
            .as_ref()
            .is_some_and(|p| p.contains(digest))
        {
            return Ok(false);
        }
        remove()?;
        self.state().swept.insert(digest.clone(), Instant::now());
        Ok(true)
    }
}

/// Every digest a manifest's JSON names: `config`, `layers`, `blobs`,
/// `manifests` (index children) and `subject`. Unparseable content names
/// nothing. Only those fields are kept, everything else is skipped as it is
/// read: a 4 MiB manifest costs its digests, not a tree of all its values.
pub fn references(content: &[u8]) -> Vec<Digest> {
    let Ok(doc) = serde_json::from_slice::<Named>(content) else {
        return Vec::new();
    };
    let one = |d: &Descriptor| {
        d.digest
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .and_then(|s| Digest::parse(s).ok())
    };
    [
        doc.config,
        doc.layers,
        doc.blobs,
        doc.manifests,
        doc.subject,
    ]
    .iter()
    .flat_map(|field| field.0.iter())
    .filter_map(one)
    .collect()
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
        let named: Vec<String> = references(doc.to_string().as_bytes())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(named, [d('a'), d('b'), d('c'), d('e'), d('f')]);
        assert!(references(b"not json").is_empty());
        assert!(references(b"[1,2]").is_empty());
    }
}
