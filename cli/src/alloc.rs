//! The global allocator of `bf-pipeline`: the system allocator, with every allocation of
//! [`HUGE_FROM`] or more advised to use transparent huge pages (`madvise(MADV_HUGEPAGE)`).
//!
//! Why: a full-size ds000117 run touches ~1.8 GB of fresh memory on its way to the shards
//! (a block of raw channels, the cleaned output, the segment stage's read of it, …). At one
//! page fault per 4 KiB that was 454,000 faults, ~0.35 CPU-s of a ~10.5 CPU-s run (`perf
//! stat`); with 2 MiB pages 126,000. Linux's usual THP mode, `madvise`, gives huge pages only
//! where asked, and glibc asks only under `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, which a
//! process cannot set for itself. Allocations this large are always mmapped by glibc (its
//! mmap threshold tops out at 32 MiB), so the advice covers whole mappings of their own and
//! never splits the heap. Where THP is off (`never`), or off Linux, this is the system
//! allocator; the advice changes no value, only how pages are faulted in.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are advised.
pub const HUGE_FROM: usize = 32 << 20;

/// [`System`], with large allocations advised to use transparent huge pages.
pub struct HugePageAlloc;

impl HugePageAlloc {
    /// Advises the 2 MiB-aligned inside of `[ptr, ptr + size)` (huge pages map whole
    /// aligned 2 MiB frames only); errors are ignored: the advice is an optimisation.
    #[cfg(target_os = "linux")]
    fn advise(ptr: *mut u8, size: usize) {
        const HUGE: usize = 2 << 20;
        if ptr.is_null() || size < HUGE_FROM {
            return;
        }
        let start = (ptr as usize).next_multiple_of(HUGE);
        let end = (ptr as usize + size) / HUGE * HUGE;
        if end > start {
            // SAFETY: the range lies inside an allocation this process just made and owns;
            // MADV_HUGEPAGE changes no contents and no mapping, only the page size used on
            // the next faults.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn advise(_ptr: *mut u8, _size: usize) {}
}

/// Lets glibc keep freed memory for reuse: blocks under [`HUGE_FROM`] come from the heap
/// (not a fresh mmap each), the heap is trimmed only past 256 MiB free, and it grows 64 MiB
/// at a time. Why: the Maxwell steps allocate and free buffers of 1–30 MiB per chunk and per
/// control-point batch (find_bad_channels_maxwell's matrices, filter_chpi's fits); glibc's
/// default (mmap above a threshold that floats up to 32 MiB, trim above 2× it) mapped, zeroed
/// and unmapped them again and again. On a full-size run with cHPI and SSS (`perf`:
/// `clear_page_erms`, `exc_page_fault` ahead of everything in the kernel) system time went
/// 10.3 → 4.6 s and wall 26.5 → 22.5 s; peak RSS 596 → 763 MiB (freed blocks stay mapped).
/// Call once, first thing in `main`. No effect on other allocators or platforms.
pub fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy; it is called before other
    // threads exist and takes plain integers.
    unsafe {
        let ok = libc::mallopt(libc::M_MMAP_THRESHOLD, HUGE_FROM as i32) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20) == 1
            && libc::mallopt(libc::M_TOP_PAD, 64 << 20) == 1;
        if !ok {
            tracing::debug!("glibc refused the heap settings; its defaults stay");
        }
    }
}

// SAFETY: every method forwards to `System` and returns its pointer unchanged; `advise` only
// calls madvise on the allocation's own pages.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        Self::advise(p, layout.size());
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        Self::advise(p, layout.size());
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        Self::advise(p, new_size);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large and small allocations, zeroed or not, grown and shrunk, keep their contents.
    #[test]
    fn allocates_reallocates_and_keeps_contents() {
        let a = HugePageAlloc;
        for size in [16usize, HUGE_FROM - 1, HUGE_FROM, HUGE_FROM + 12345] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            unsafe {
                let z = a.alloc_zeroed(layout);
                assert!(!z.is_null());
                assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                let p = a.alloc(layout);
                assert!(!p.is_null() && p as usize % 64 == 0);
                for i in (0..size).step_by(4093) {
                    *p.add(i) = (i % 251) as u8;
                }
                let grown = a.realloc(p, layout, size * 2 + 1);
                for i in (0..size).step_by(4093) {
                    assert_eq!(*grown.add(i), (i % 251) as u8);
                }
                a.dealloc(grown, Layout::from_size_align(size * 2 + 1, 64).unwrap());
                a.dealloc(z, layout);
            }
        }
    }
}
