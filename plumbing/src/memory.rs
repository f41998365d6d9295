//! Handing freed memory back to the operating system after a large build.
//!
//! The binaries use mimalloc. Building a million-order model (a replay, a catch-up,
//! a snapshot load) grows hash tables by doubling and frees the old ones; mimalloc
//! keeps such freed memory for reuse and purges it only lazily, so right after
//! startup the process held tens of megabytes it no longer used (about 70 bytes per
//! resting order on the read side). Both sides call [`release_free`] when such a
//! build is done.

/// Asks the allocator to return the memory it holds free to the system. Cheap
/// when there is little to return; without mimalloc as the global allocator (unit
/// tests) it only tidies mimalloc's own, unused heap.
#[expect(
    unsafe_code,
    reason = "one call into mimalloc's C API, which takes no pointers"
)]
pub fn release_free() {
    // SAFETY: mi_collect takes no pointers; it only walks mimalloc's own heaps.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
