//! The global allocator of `bf-pipeline`: the system allocator for small allocations; every
//! allocation of [`HUGE_FROM`] or more a mapping of its own, advised to use transparent huge
//! pages (`madvise(MADV_HUGEPAGE)`) and kept for reuse when freed ([`BigBlocks`]).
//!
//! Why: a full-size ds000117 run touches ~1.8 GB of fresh memory on its way to the shards
//! (a block of raw channels, the cleaned output, the segment stage's read of it, …). At one
//! page fault per 4 KiB that was 454,000 faults, ~0.35 CPU-s of a ~10.5 CPU-s run (`perf
//! stat`); with 2 MiB pages 126,000. Linux's usual THP mode, `madvise`, gives huge pages only
//! where asked, and glibc asks only under `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, which a
//! process cannot set for itself. Allocations this large are mappings of their own (as glibc
//! would map them too: its mmap threshold tops out at 32 MiB), so the advice never splits the
//! heap. Off Linux this is the system allocator; neither the advice nor the reuse changes a
//! value, only how pages are faulted in.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are mappings of their own ([`BigBlocks`]).
pub const HUGE_FROM: usize = 32 << 20;

/// [`System`] for small allocations; large ones from [`BigBlocks`], advised to use transparent
/// huge pages.
pub struct HugePageAlloc;

/// Lets glibc keep freed memory for reuse (bf-pipeline's policy): blocks under
/// [`HUGE_FROM`] come from the heap (not a fresh mmap each), the heap is trimmed only past
/// 256 MiB free, and it grows 64 MiB at a time. Why: the Maxwell steps allocate and free
/// buffers of 1–30 MiB per chunk and per control-point batch (find_bad_channels_maxwell's
/// matrices, filter_chpi's fits); glibc's default (mmap above a threshold that floats up to
/// 32 MiB, trim above 2× it) mapped, zeroed and unmapped them again and again. On a full-size
/// run with cHPI and SSS (`perf`: `clear_page_erms`, `exc_page_fault` ahead of everything in
/// the kernel) system time went 10.3 → 4.6 s and wall 26.5 → 22.5 s; peak RSS 596 → 763 MiB
/// (freed blocks stay mapped). Larger blocks are [`BigBlocks`]'. Call once, first thing in
/// `main`.
pub fn keep_freed_memory_for_reuse() {
    set_glibc_heap(HUGE_FROM as i32, 256 << 20, 64 << 20);
}

/// Keeps every freed block in the process heap, however large (bf-train's and bf-eval's
/// policy: they run on the system allocator). A training step allocates and frees the same
/// few hundred-megabyte tensors (attention scores, MLP activations, logits) every step; glibc
/// served blocks above its mmap threshold with a fresh `mmap`, so every step paid page faults
/// and page zeroing on all of them: about a third of a CPU step at sequence_length 256
/// (measured with `perf`: `exc_page_fault`, `clear_page_erms`). The cost is a higher resident
/// peak (a step's working set stays mapped). Call once, before the first tensor.
pub fn keep_tensors_in_heap() {
    set_glibc_heap(i32::MAX, -1, 256 << 20);
}

/// glibc's heap policy (`mallopt`): blocks of `mmap_threshold` bytes or more get a mapping of
/// their own, the heap is trimmed past `trim_threshold` bytes free (-1: never), and it grows
/// `top_pad` bytes at a time. No effect on other allocators or platforms.
fn set_glibc_heap(mmap_threshold: i32, trim_threshold: i32, top_pad: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy; it is called before other
    // threads exist and takes plain integers.
    unsafe {
        let ok = libc::mallopt(libc::M_MMAP_THRESHOLD, mmap_threshold) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, trim_threshold) == 1
            && libc::mallopt(libc::M_TOP_PAD, top_pad) == 1;
        if !ok {
            tracing::debug!("glibc refused the heap settings; its defaults stay");
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (mmap_threshold, trim_threshold, top_pad);
}

/// Large blocks freed and kept mapped for the next large allocation, at most this many bytes.
pub const KEEP_AT_MOST: usize = 512 << 20;

/// The big-block cache behind [`HugePageAlloc`].
static BIG: BigBlocks = BigBlocks::new(KEEP_AT_MOST);

// SAFETY: small allocations (and any aligned beyond a page) forward to `System`; large ones
// are whole anonymous mappings owned by `BIG`, handed out to one owner at a time.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if BigBlocks::takes(layout) {
            return BIG.alloc(layout, false);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if BigBlocks::takes(layout) {
            return BIG.alloc(layout, true);
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !(BigBlocks::takes(layout) && BIG.free(ptr)) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract (`layout` fits `ptr`, `new_size` valid for its align).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if BigBlocks::takes(layout) {
            if BigBlocks::takes(new_layout) {
                if let Some(p) = BIG.grow(ptr, new_size) {
                    return p;
                }
            } else if BIG.owns(ptr) {
                // Shrunk below the big-block size: copied into a small allocation.
                let p = unsafe { self.alloc(new_layout) };
                if !p.is_null() {
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, p, new_size);
                        self.dealloc(ptr, layout);
                    }
                }
                return p;
            }
        } else if BigBlocks::takes(new_layout) {
            // Grown past it: from here on a big block.
            let p = unsafe { self.alloc(new_layout) };
            if !p.is_null() {
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr, p, layout.size());
                    System.dealloc(ptr, layout);
                }
            }
            return p;
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations of [`HUGE_FROM`] bytes or more, as anonymous mappings of their own that are
/// kept, not unmapped, when freed (up to a byte budget), and handed to the next large
/// allocation: the best-fitting kept block, else the largest grown with `mremap` (its pages
/// stay), else a new mapping.
///
/// Why: glibc maps every allocation this large afresh and unmaps it on free, so each stage's
/// big arrays (a block of raw channels, the cleaned output, each later stage's read of the
/// cleaned file, Parquet buffers) were first-touched memory again. On the VMs we measure on
/// the kernel's zeroing of fresh pages (`clear_page_erms`, where the host's lazy backing of
/// guest memory lands too) was 9 % of a full-size tokenize run's CPU (`perf record`);
/// memory already touched is rewritten at 10–25 GB/s (`bench/first_touch.py`). The cost: up to
/// [`KEEP_AT_MOST`] bytes stay mapped between a free and the next large allocation.
pub struct BigBlocks {
    state: std::sync::Mutex<BigState>,
    keep_at_most: usize,
}

/// Mappings as (address, mapped length); fixed arrays, because an allocator must not allocate.
struct BigState {
    live: [(usize, usize); 64],
    n_live: usize,
    kept: [(usize, usize); 16],
    n_kept: usize,
}

const PAGE: usize = 4096;

impl BigBlocks {
    pub const fn new(keep_at_most: usize) -> BigBlocks {
        BigBlocks { state: std::sync::Mutex::new(BigState { live: [(0, 0); 64], n_live: 0, kept: [(0, 0); 16], n_kept: 0 }), keep_at_most }
    }

    /// True for the allocations this cache serves (large, aligned to a page at most).
    pub fn takes(layout: Layout) -> bool {
        cfg!(target_os = "linux") && layout.size() >= HUGE_FROM && layout.align() <= PAGE
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BigState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A block for `layout` (one [`BigBlocks::takes`]), zeroed when asked, or null.
    pub fn alloc(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let size = layout.size();
        let want = size.next_multiple_of(PAGE);
        let mut st = self.state();
        if st.n_live == st.live.len() {
            drop(st);
            // Too many live blocks to track: the system allocator's (freed through it too,
            // since `free` will not find it).
            // SAFETY: a non-zero size (at least HUGE_FROM).
            return unsafe { if zeroed { System.alloc_zeroed(layout) } else { System.alloc(layout) } };
        }
        let kept = &st.kept[..st.n_kept];
        let best = (0..kept.len()).filter(|&i| kept[i].1 >= want).min_by_key(|&i| kept[i].1);
        let largest = (0..kept.len()).max_by_key(|&i| kept[i].1);
        let (ptr, len, dirty) = match (best, largest) {
            (Some(i), _) => {
                let (p, l) = st.take_kept(i);
                (p, l, l.min(size))
            }
            (None, Some(i)) => {
                let (p, l) = st.take_kept(i);
                match remap(p, l, want) {
                    Some(q) => (q, want, l.min(size)),
                    None => {
                        unmap(p, l);
                        (map(want), want, 0)
                    }
                }
            }
            (None, None) => (map(want), want, 0),
        };
        if ptr == 0 {
            return std::ptr::null_mut();
        }
        let n = st.n_live;
        st.live[n] = (ptr, len);
        st.n_live += 1;
        drop(st);
        if zeroed && dirty > 0 {
            // SAFETY: `ptr..ptr + dirty` lies in the mapping just taken.
            unsafe { std::ptr::write_bytes(ptr as *mut u8, 0, dirty) };
        }
        ptr as *mut u8
    }

    /// Whether `ptr` is a live block of this cache.
    pub fn owns(&self, ptr: *mut u8) -> bool {
        let st = self.state();
        st.live[..st.n_live].iter().any(|&(p, _)| p == ptr as usize)
    }

    /// Takes back `ptr` (kept or unmapped); false when it is not a live block of this cache.
    pub fn free(&self, ptr: *mut u8) -> bool {
        let mut st = self.state();
        let Some(i) = st.live[..st.n_live].iter().position(|&(p, _)| p == ptr as usize) else { return false };
        let block = st.live[i];
        st.n_live -= 1;
        st.live[i] = st.live[st.n_live];
        let kept_bytes: usize = st.kept[..st.n_kept].iter().map(|k| k.1).sum();
        if kept_bytes + block.1 <= self.keep_at_most && st.n_kept < st.kept.len() {
            let n = st.n_kept;
            st.kept[n] = block;
            st.n_kept += 1;
        } else {
            drop(st);
            unmap(block.0, block.1);
        }
        true
    }

    /// Resizes live block `ptr` to at least `new_size` bytes, contents kept (in place when it
    /// fits, else by `mremap`); `None` when `ptr` is not a live block of this cache, and
    /// `Some(null)` when `mremap` fails (`realloc`'s failure: `ptr` stays live and unchanged).
    pub fn grow(&self, ptr: *mut u8, new_size: usize) -> Option<*mut u8> {
        let mut st = self.state();
        let i = st.live[..st.n_live].iter().position(|&(p, _)| p == ptr as usize)?;
        let (p, len) = st.live[i];
        let want = new_size.next_multiple_of(PAGE);
        if want <= len {
            return Some(ptr);
        }
        match remap(p, len, want) {
            Some(q) => {
                st.live[i] = (q, want);
                Some(q as *mut u8)
            }
            None => Some(std::ptr::null_mut()),
        }
    }
}

impl BigState {
    fn take_kept(&mut self, i: usize) -> (usize, usize) {
        let block = self.kept[i];
        self.n_kept -= 1;
        self.kept[i] = self.kept[self.n_kept];
        block
    }
}

/// A fresh anonymous mapping of `len` bytes, advised to use transparent huge pages, or 0.
/// The advice covers the whole mapping: advising part of it would split it in several
/// kernel areas, and `mremap` resizes only a mapping that is one area.
fn map(len: usize) -> usize {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a new private anonymous mapping; no existing memory is touched.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        if p == libc::MAP_FAILED {
            return 0;
        }
        // SAFETY: the whole of the mapping just made; the advice changes no contents. Its
        // failure (THP unsupported) is ignored: it is an optimisation. `mremap` keeps it.
        unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
        p as usize
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = len;
        0
    }
}

/// Mapping `(p, len)` resized to `new_len` bytes, moved if need be (contents kept), or `None`.
fn remap(p: usize, len: usize, new_len: usize) -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `(p, len)` is a whole mapping this cache owns and no one else uses now.
        let q = unsafe { libc::mremap(p as *mut libc::c_void, len, new_len, libc::MREMAP_MAYMOVE) };
        (q != libc::MAP_FAILED).then_some(q as usize)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (p, len, new_len);
        None
    }
}

fn unmap(p: usize, len: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: `(p, len)` is a whole mapping this cache owns and no one uses any more.
    unsafe {
        libc::munmap(p as *mut libc::c_void, len);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, len);
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
                // Shrunk to a small allocation and back.
                let check = |q: *mut u8| {
                    assert_eq!(*q, 0);
                    if size > 4093 {
                        assert_eq!(*q.add(4093), (4093 % 251) as u8);
                    }
                };
                let small = a.realloc(grown, Layout::from_size_align(size * 2 + 1, 64).unwrap(), 4096);
                check(small);
                let again = a.realloc(small, Layout::from_size_align(4096, 64).unwrap(), HUGE_FROM + 1);
                check(again);
                a.dealloc(again, Layout::from_size_align(HUGE_FROM + 1, 64).unwrap());
                a.dealloc(z, layout);
            }
        }
    }

    fn fill(p: *mut u8, n: usize, v: u8) {
        unsafe { std::ptr::write_bytes(p, v, n) }
    }

    fn all(p: *mut u8, n: usize, v: u8) -> bool {
        unsafe { std::slice::from_raw_parts(p, n).iter().all(|&b| b == v) }
    }

    /// A freed block is kept and handed to the next allocation that fits (same address, zeroed
    /// when asked); a larger one grows a kept block instead of mapping anew; blocks past the
    /// budget are unmapped; pointers that are not its own are left to the system allocator.
    #[test]
    fn big_blocks_are_kept_reused_and_bounded() {
        const H: usize = HUGE_FROM;
        let big = BigBlocks::new(3 * H);
        let l = |n: usize| Layout::from_size_align(n, 64).unwrap();
        let a = big.alloc(l(H + 5), false);
        fill(a, H + 5, 7);
        assert!(big.owns(a) && big.free(a) && !big.owns(a));
        let b = big.alloc(l(H), true);
        assert_eq!(a, b, "the kept block is reused");
        assert!(all(b, H, 0), "a reused block is zeroed when asked");
        fill(b, H, 9);
        assert!(big.free(b));
        let c = big.alloc(l(2 * H), true);
        assert!(all(c, 2 * H, 0), "a grown block is zeroed when asked, old part and new");
        assert_eq!(big.state().n_kept, 0, "the kept block was grown, not left aside");
        fill(c, 2 * H, 3);
        let d = big.grow(c, 3 * H).unwrap();
        assert!(all(d, 2 * H, 3), "growing keeps the contents");
        assert_eq!(big.grow(d, H).unwrap(), d, "a size that fits stays in place");
        assert!(!big.free(0x1000 as *mut u8) && big.grow(0x1000 as *mut u8, 2 * H).is_none());
        // Budget: 3H kept at most.
        let e = big.alloc(l(2 * H), false);
        assert!(big.free(d) && big.free(e));
        let st = big.state();
        assert_eq!((st.n_live, st.n_kept), (0, 1));
        assert_eq!(st.kept[0].1, 3 * H);
    }

    /// Threads allocating, growing and freeing big blocks at once each see their own bytes.
    #[test]
    fn big_blocks_from_many_threads_stay_apart() {
        let big = BigBlocks::new(4 * HUGE_FROM);
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let big = &big;
                s.spawn(move || {
                    for k in 0..12usize {
                        let n = HUGE_FROM + (k * 997 + t as usize * 4099) % HUGE_FROM;
                        let p = big.alloc(Layout::from_size_align(n, 8).unwrap(), k % 2 == 0);
                        if k % 2 == 0 {
                            assert!(all(p, n, 0));
                        }
                        fill(p, n, t + 1);
                        let q = big.grow(p, n + HUGE_FROM / 2).unwrap();
                        assert!(!q.is_null(), "thread {t}, round {k}: grow failed");
                        assert!(all(q, n, t + 1), "thread {t}, round {k}");
                        assert!(big.free(q));
                    }
                });
            }
        });
        let st = big.state();
        assert_eq!(st.n_live, 0);
        assert!(st.kept[..st.n_kept].iter().map(|k| k.1).sum::<usize>() <= 4 * HUGE_FROM);
    }
}
