//! How the C allocator hands memory back to the kernel.
//!
//! glibc's defaults return freed memory at once: buffers above 128 KiB
//! (hyper's receive buffers, file batches) are mmapped and unmapped each
//! time, and a heap whose free top passes a few hundred KiB is trimmed.
//! Every byte of a large upload or download then lands in memory that was
//! just given back, and the page faults (and, in a virtual machine that
//! reports free pages to its host, the host's faults) cost as much as the
//! copy itself. A server that streams in bounded buffers can instead keep a
//! fixed amount of freed memory for reuse: its footprint stays the size of
//! its working set, reached once, not touched anew for every chunk.
//!
//! The static build (`x86_64-unknown-linux-musl`, the container image) does
//! not use musl's allocator, which takes a global lock and unmaps eagerly
//! (it halved manifest GETs per second and upload throughput here): it
//! uses mimalloc (`main.rs`), which keeps freed memory per thread.

/// Allocations below this come from the heap and are reused once freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 8 << 20;

/// Free memory a heap keeps at its top before giving it back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 64 << 20;

/// Tune the allocator for streaming. Call once, before serving.
pub fn tune_for_streaming() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // thread of ours allocates concurrently.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
