//! Locks that a panic does not break.
//!
//! A standard lock is poisoned when a thread panics while holding it, and
//! every later `lock().unwrap()` panics too: one request's bug would break
//! every later upload, login or download of the process. Every lock in the
//! host guards state that each holder leaves whole (an insert, a removal,
//! an assignment, a counter), so a panicking holder cannot leave it half
//! changed, and the host takes its locks through these functions, which
//! ignore the poison.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `mutex`, locked, whether or not a holder panicked.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `lock`, read-locked, whether or not a writer panicked.
pub fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `lock`, write-locked, whether or not a holder panicked.
pub fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_whose_holder_panicked_still_locks() {
        let mutex = Mutex::new(1);
        let rw = RwLock::new(1);
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _held = (lock(&mutex), write(&rw));
                    panic!("a holder panics");
                })
                .join();
        });
        assert!(mutex.is_poisoned() && rw.is_poisoned());
        *lock(&mutex) += 1;
        *write(&rw) += 1;
        assert_eq!((*lock(&mutex), *read(&rw)), (2, 2));
    }
}
