//! Keeping a long-running process's memory flat (glibc malloc).
//!
//! A run moves data through buffers of a few MiB (compression, upload
//! parts) on tokio's blocking threads. glibc gives each thread that
//! allocates concurrently an arena of its own (up to 8 per core) and
//! raises its mmap threshold each time a large block is freed, so after a
//! few runs those buffers come from arenas that keep their pages: the
//! daemon settled at 80-95 MiB idle with a `file://` store, whose I/O runs
//! on many blocking threads. Two arenas, a fixed mmap threshold (large
//! buffers are mapped and unmapped, never kept) and a trim after every run
//! keep it at the size of one run's buffers at most, and much less idle.
//! Other allocators (musl) get nothing from this and need nothing.

/// Bounds glibc's arenas and fixes its mmap threshold. Call once, early,
/// before threads exist.
pub fn bound_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: libc::c_int = 256 * 1024;
        // SAFETY: mallopt only sets allocator parameters; any value is
        // accepted or refused with a return code, never undefined.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
        }
    }
}

/// Returns freed memory of every arena to the system (after a run).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
