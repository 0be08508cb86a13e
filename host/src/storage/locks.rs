//! Locks that make the manifest and tag writes and the deletes of one
//! repository exclusive, within this process.

use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

/// How many locks repository writes are spread over.
const LOCK_STRIPES: usize = 64;

/// Striped by a per-process hash of the repository's name: a fixed set,
/// nothing to create or prune; two repositories that share a stripe only
/// wait for each other's tag writes. The locks are this process's: on the
/// filesystem one Wharf serves a data directory at a time; hosts sharing a
/// bucket do not lock each other (nor do registry:2's).
pub struct RepositoryLocks {
    hasher: std::collections::hash_map::RandomState,
    stripes: [Mutex<()>; LOCK_STRIPES],
}

impl Default for RepositoryLocks {
    fn default() -> RepositoryLocks {
        RepositoryLocks {
            hasher: Default::default(),
            stripes: std::array::from_fn(|_| Mutex::new(())),
        }
    }
}

impl RepositoryLocks {
    pub fn lock(&self, repository: &str) -> MutexGuard<'_, ()> {
        let stripe = self.hasher.hash_one(repository) as usize % LOCK_STRIPES;
        crate::sync::lock(&self.stripes[stripe])
    }
}
