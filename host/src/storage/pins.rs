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
use wharf_spec::Digest;

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
        crate::sync::lock(&self.state)
    }

    /// Run `write`, which makes `digests` present or referenced, so that no
    /// collector deletes any of them while it runs or because of a mark
    /// that missed it.
    pub fn referencing<'a, T>(
        &self,
        digests: impl IntoIterator<Item = &'a Digest>,
        write: impl FnOnce() -> T,
    ) -> T {
        let _shared = crate::sync::read(&self.lock);
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
        let _exclusive = crate::sync::write(&self.lock);
        self.state().pinned = Some(HashSet::new());
    }

    /// End a collection; forget removals older than `remember`.
    pub fn end(&self, remember: Duration) {
        let _exclusive = crate::sync::write(&self.lock);
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
        let _exclusive = crate::sync::write(&self.lock);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use wharf_spec::Algorithm;

    fn removed(pins: &Pins, digest: &Digest) -> bool {
        pins.sweep(digest, || Ok::<(), ()>(())).unwrap()
    }

    #[test]
    fn a_blob_written_during_a_collection_is_not_swept() {
        let pins = Pins::default();
        let (written, untouched) = (
            Algorithm::Sha256.digest(b"a"),
            Algorithm::Sha256.digest(b"b"),
        );
        // Before a collection, writes pin nothing.
        pins.referencing([&written], || ());
        pins.begin();
        pins.referencing([&written], || ());
        assert!(
            !removed(&pins, &written),
            "pinned by a write since the collection began"
        );
        assert!(removed(&pins, &untouched));
        assert!(pins.swept(&untouched) && !pins.swept(&written));
        pins.end(Duration::from_secs(60));
        // The next collection starts with nothing pinned.
        pins.begin();
        assert!(removed(&pins, &written));
        pins.end(Duration::from_secs(60));
    }

    #[test]
    fn removals_are_remembered_for_the_grace_period_only() {
        let pins = Pins::default();
        let digest = Algorithm::Sha256.digest(b"a");
        pins.begin();
        assert!(removed(&pins, &digest));
        pins.end(Duration::from_secs(60));
        assert!(pins.swept(&digest));
        pins.begin();
        std::thread::sleep(Duration::from_millis(1100));
        pins.end(Duration::ZERO);
        assert!(!pins.swept(&digest), "forgotten after at least a second");
    }

    #[test]
    fn a_sweep_waits_for_a_write_in_progress() {
        let pins = Pins::default();
        let digest = Algorithm::Sha256.digest(b"a");
        let write_done = AtomicBool::new(false);
        let (inside, entered) = std::sync::mpsc::channel();
        pins.begin();
        std::thread::scope(|s| {
            s.spawn(|| {
                pins.referencing([&digest], || {
                    inside.send(()).unwrap();
                    std::thread::sleep(Duration::from_millis(200));
                    write_done.store(true, Ordering::SeqCst);
                })
            });
            entered.recv().unwrap();
            let swept = pins.sweep(&digest, || -> Result<(), ()> {
                unreachable!("the write pinned the digest before the sweep could run")
            });
            assert_eq!(swept, Ok(false));
            assert!(
                write_done.load(Ordering::SeqCst),
                "the sweep ran during the write"
            );
        });
        pins.end(Duration::from_secs(60));
    }
}
