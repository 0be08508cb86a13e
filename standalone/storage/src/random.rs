//! Random bytes for names no other instance picks: upload ids and staging
//! files. In the component they come from `wasi:random`; natively (the unit
//! tests) from the standard library's randomly keyed hasher.

#[cfg(target_arch = "wasm32")]
pub fn bytes16() -> [u8; 16] {
    let bytes = crate::bindings::wasi::random::random::get_random_bytes(16);
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b;
    }
    out
}

#[cfg(not(target_arch = "wasm32"))]
pub fn bytes16() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = [0u8; 16];
    for half in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}
