//! The binary's memory allocator: jemalloc, set up to give memory back.
//!
//! glibc's malloc keeps what a burst of large list pages allocated: measured here, a service
//! that reached 40 MiB under such a burst stayed there with no client left, and one that
//! reached 250 MiB without the page budget stayed at 250 MiB. jemalloc with a background
//! thread returns freed pages to the kernel by itself, within about a second of the burst
//! (`dirty_decay_ms`; `muzzy_decay_ms:0` returns them at once rather than through MADV_FREE,
//! which the kernel would reclaim only under pressure and RSS would still count). The numbers
//! are in docs/performance.md; the test is `hostile::a_burst_of_full_pages_…`.

use std::ffi::c_char;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol before `main` (its `malloc_conf` variable, with
/// the `_rjem_` prefix the crate builds it with).
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&'static c_char> = Some(
    // SAFETY: a C string literal is a valid, 'static, NUL-terminated array of c_char.
    unsafe { &*c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr() },
);
