//! Fused multi-head attention for CPU training, with dropout on the attention weights.
//!
//! Why our own kernel: on CPU, libtorch's fused attention (`scaled_dot_product_attention`'s
//! flash kernel) refuses dropout, so training (dropout 0.1 on the attention weights, as the
//! seed's `nn.MultiheadAttention`) falls back to the unfused path. That path writes the score
//! tensor, its softmax, a Bernoulli mask drawn element by element on one thread, and the
//! dropped weights, each [rows·heads, L, S] (385 MB apiece for the decoder's channel stage at
//! sequence_length 256), and reads them all again in the backward pass. The profile of a step
//! was dominated by exactly that traffic and by the serial `bernoulli_`.
//!
//! Here one (row, head) pair is handled at a time, and its whole score matrix (at most a few
//! hundred keys by a few hundred queries) stays in the core's cache: scores by one small
//! matrix product, then softmax, then dropout, then the product with the values. Only the
//! output and one log-sum-exp per query are kept; the backward pass recomputes the weights.
//! Dropout decisions come from a counter-based hash of (seed, pair, query, key), so the
//! backward pass regenerates the same mask without storing it, and the result does not depend
//! on how pairs are spread over threads. The seed of each call is drawn from libtorch's
//! default CPU generator, so `tch::manual_seed` governs it as it governs `Tensor::dropout`
//! (and exact resume, which re-seeds it, keeps working).
//!
//! The autograd wiring lives in `csrc/fused_attention.cpp` (tch cannot define autograd
//! functions); the arithmetic is here. Matrix products use `matrixmultiply` (a well-kept pure
//! Rust GEMM with AVX2/FMA kernels); pairs run in parallel on libtorch's own threads.

use tch::{Kind, Tensor};

/// Arguments of both kernels, shared with the C++ glue (`BfAttnArgs`), field for field.
/// q, out, dout, dq: [n, l, heads·dh]; k, v, dk, dv: [n, s, heads·dh]; last strides 1.
/// mask: additive, expanded to [n, heads, l, s] (strides may be 0), or null. lse: [n, heads, l].
#[repr(C)]
pub struct AttnArgs {
    n: i64,
    heads: i64,
    l: i64,
    s: i64,
    dh: i64,
    q: *const f32,
    q_s0: i64,
    q_s1: i64,
    k: *const f32,
    k_s0: i64,
    k_s1: i64,
    v: *const f32,
    v_s0: i64,
    v_s1: i64,
    mask: *const f32,
    m_s0: i64,
    m_s1: i64,
    m_s2: i64,
    m_s3: i64,
    causal: i32,
    scale: f32,
    dropout: f32,
    seed: u64,
    out: *mut f32,
    o_s0: i64,
    o_s1: i64,
    lse: *mut f32,
    dout: *const f32,
    do_s0: i64,
    do_s1: i64,
    dq: *mut f32,
    dq_s0: i64,
    dq_s1: i64,
    dk: *mut f32,
    dk_s0: i64,
    dk_s1: i64,
    dv: *mut f32,
    dv_s0: i64,
    dv_s1: i64,
    /// Added to the pair index where the dropout mask is keyed (see [`ExampleOffset`]).
    pair_offset: i64,
}

type Kernel = unsafe extern "C" fn(*const AttnArgs, i64, i64);

extern "C" {
    fn bf_fused_attention(
        out: *mut *mut torch_sys::C_tensor,
        q: *const torch_sys::C_tensor,
        k: *const torch_sys::C_tensor,
        v: *const torch_sys::C_tensor,
        mask: *const torch_sys::C_tensor,
        heads: i64,
        causal: i32,
        dropout: f64,
        seed: u64,
        pair_offset: i64,
        fwd: Kernel,
        bwd: Kernel,
        err: *mut libc::c_char,
        err_len: usize,
    ) -> i32;
}

/// Whether [`attention`] serves these inputs: float32 on the CPU.
pub fn supports(q: &Tensor) -> bool {
    supports_device(q) && q.kind() == Kind::Float
}

/// Whether the inputs are on the CPU in a float type that converts to float32 exactly
/// enough for training (float32, bfloat16 or float16 under autocast).
pub fn supports_device(q: &Tensor) -> bool {
    q.device() == tch::Device::Cpu && matches!(q.kind(), Kind::Float | Kind::BFloat16 | Kind::Half)
}

/// Multi-head attention of projected `q` [N, L, E] over `k`, `v` [N, S, E] with `heads`
/// heads: softmax(q·kᵀ/√(E/heads) + mask) (causal: query i sees keys 0..=i), dropout `p` on
/// the weights, times v; heads concatenated back to [N, L, E]. Differentiable in q, k, v.
/// A query whose keys are all masked gets zeros (as libtorch's current softmax does).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, heads: i64, causal: bool, p: f64) -> Tensor {
    let seed = if p > 0.0 { draw_seed() } else { 0 };
    let pair_offset = ExampleOffset::current().units_before(q.size()[0]) * heads;
    attention_seeded_at(q, k, v, mask, heads, causal, p, seed, pair_offset)
}

/// Where this process's examples sit in the global batch of a data-parallel step, so that
/// dropout masks are keyed by the *global* example: process r of w, holding examples
/// `offset..offset + local` of a global batch, draws the masks that one process holding the
/// whole batch would draw for those examples (2 processes × batch B then train as 1 × 2B).
///
/// Set for the span of a forward pass with [`ExampleOffset::scope`]; the default (offset 0)
/// is the one-process case. A tensor whose leading dimension is `k · local` rows (examples
/// first, as every layer here lays them out: [B·C, T, D], [B·T, C, D]) is keyed from row
/// `k · offset`, an activation of `m · local` elements from element `m · offset`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExampleOffset {
    /// Examples of the global batch before this process's share.
    pub offset: usize,
    /// Examples in this process's share (0: unknown, keys start at 0).
    pub local: usize,
}

thread_local! {
    static EXAMPLE_OFFSET: std::cell::Cell<ExampleOffset> = const { std::cell::Cell::new(ExampleOffset { offset: 0, local: 0 }) };
}

impl ExampleOffset {
    /// The offset in force on this thread.
    pub fn current() -> ExampleOffset {
        EXAMPLE_OFFSET.with(|c| c.get())
    }

    /// Runs `f` with this offset in force on this thread (restored afterwards).
    pub fn scope<R>(self, f: impl FnOnce() -> R) -> R {
        struct Restore(ExampleOffset);
        impl Drop for Restore {
            fn drop(&mut self) {
                EXAMPLE_OFFSET.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(EXAMPLE_OFFSET.with(|c| c.replace(self)));
        f()
    }

    /// The units (rows or elements) before this process's share, for a tensor of `units`
    /// units laid out example by example; 0 when no share is set or `units` is not a
    /// multiple of it (a tensor not laid out by example keeps the one-process keys).
    pub fn units_before(&self, units: i64) -> i64 {
        if self.offset == 0 || self.local == 0 || units % self.local as i64 != 0 {
            return 0;
        }
        units / self.local as i64 * self.offset as i64
    }
}

/// [`attention`] with the dropout seed given.
#[allow(clippy::too_many_arguments)]
#[cfg(test)]
fn attention_seeded(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, heads: i64, causal: bool, p: f64, seed: u64) -> Tensor {
    attention_seeded_at(q, k, v, mask, heads, causal, p, seed, 0)
}

/// [`attention`] with the dropout seed and the pair offset given.
#[allow(clippy::too_many_arguments)]
fn attention_seeded_at(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, heads: i64, causal: bool, p: f64, seed: u64, pair_offset: i64) -> Tensor {
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    let mask_ptr = mask.map_or(std::ptr::null(), |m| m.as_ptr());
    // SAFETY: the tensors are live for the call; the glue returns a new owned tensor or an
    // error message, never both.
    let rc = crate::glue::call(|err, len| unsafe {
        bf_fused_attention(
            &mut out,
            q.as_ptr(),
            k.as_ptr(),
            v.as_ptr(),
            mask_ptr,
            heads,
            causal as i32,
            p,
            seed,
            pair_offset,
            forward_kernel,
            backward_kernel,
            err,
            len,
        )
    });
    if let Err(msg) = rc {
        panic!("fused attention on {:?}/{:?}/{:?}: {msg}", q.size(), k.size(), v.size());
    }
    // SAFETY: `out` is a fresh at::Tensor* that we now own.
    unsafe { Tensor::from_ptr(out) }
}

thread_local! {
    /// Scratch of 2·L·S floats for the pair being computed, kept between calls so that the
    /// worker threads do not fault fresh pages in every call.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `per_pair(args, pair, scratch)` for pairs `lo..hi` on this thread (the C++ glue
/// spreads ranges over libtorch's threads).
fn for_pairs(a: &AttnArgs, lo: i64, hi: i64, per_pair: impl Fn(&AttnArgs, usize, &mut [f32])) {
    let len = 2 * (a.l * a.s) as usize;
    SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        if scratch.len() < len {
            scratch.resize(len, 0.0);
        }
        for pair in lo as usize..hi as usize {
            per_pair(a, pair, &mut scratch[..len]);
        }
    })
}

unsafe extern "C" fn forward_kernel(a: *const AttnArgs, lo: i64, hi: i64) {
    let a = &*a;
    if has_avx2_fma() {
        for_pairs(a, lo, hi, |a, pair, scratch| unsafe { forward_pair_avx2(a, pair, scratch) });
    } else {
        for_pairs(a, lo, hi, |a, pair, scratch| unsafe { forward_pair(a, pair, scratch) });
    }
}

unsafe extern "C" fn backward_kernel(a: *const AttnArgs, lo: i64, hi: i64) {
    let a = &*a;
    if has_avx2_fma() {
        for_pairs(a, lo, hi, |a, pair, scratch| unsafe { backward_pair_avx2(a, pair, scratch) });
    } else {
        for_pairs(a, lo, hi, |a, pair, scratch| unsafe { backward_pair(a, pair, scratch) });
    }
}

/// The row loops (exp, dropout hash, softmax) vectorize 8-wide when compiled for AVX2+FMA;
/// the same code compiled plainly serves other CPUs. Results agree up to the rounding of
/// fused multiply-adds.
fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn forward_pair_avx2(a: &AttnArgs, pair: usize, scratch: &mut [f32]) {
    forward_pair(a, pair, scratch)
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn backward_pair_avx2(a: &AttnArgs, pair: usize, scratch: &mut [f32]) {
    backward_pair(a, pair, scratch)
}

/// Pointers and strides of one (row, head) pair.
struct Pair {
    n: i64,
    h: i64,
    q: *const f32,
    k: *const f32,
    v: *const f32,
}

#[inline(always)]
fn pair_of(a: &AttnArgs, pair: usize) -> Pair {
    let (n, h) = (pair as i64 / a.heads, pair as i64 % a.heads);
    let col = h * a.dh;
    // SAFETY (of the offsets): n < a.n and col + dh <= E, inside the tensors.
    unsafe {
        Pair {
            n,
            h,
            q: a.q.offset((n * a.q_s0 + col) as isize),
            k: a.k.offset((n * a.k_s0 + col) as isize),
            v: a.v.offset((n * a.v_s0 + col) as isize),
        }
    }
}

/// A dropout seed from libtorch's default CPU generator, so that `tch::manual_seed` decides it.
fn draw_seed() -> u64 {
    Tensor::randint(i64::MAX, [1], (Kind::Int64, tch::Device::Cpu)).int64_value(&[0]) as u64
}

/// Dropout on activations, `x · mask / (1 − p)`, with the mask from the same counter hash as
/// the attention's (seeded from libtorch's default generator). libtorch's CPU dropout draws
/// its Bernoulli mask element by element on one thread (`bernoulli_`), which cost more than
/// the rest of the dropout. Differentiable through the product; the mask is a constant.
pub fn dropout(x: &Tensor, p: f64) -> Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    let seed = draw_seed();
    let mask = Tensor::empty(x.size(), (Kind::Float, tch::Device::Cpu));
    let numel = mask.numel();
    let offset = ExampleOffset::current().units_before(numel as i64) as u64;
    // SAFETY: `mask` is a fresh contiguous float tensor of `numel` elements.
    let factors = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr() as *mut f32, numel) };
    fill_dropout_factors(seed, p as f32, offset, factors);
    x * mask
}

/// The dropout factors of elements `offset..offset + out.len()` of a tensor: one hash key per
/// 2^32 elements, so that indices stay 32-bit.
fn fill_dropout_factors(seed: u64, p: f32, offset: u64, out: &mut [f32]) {
    let mut done = 0usize;
    while done < out.len() {
        let global = offset + done as u64;
        let (block, start) = ((global >> 32) as usize, global as u32);
        let len = (out.len() - done).min((1u64 << 32) as usize - start as usize);
        let d = DropMask::new(seed, p, block);
        let chunk = &mut out[done..done + len];
        if has_avx2_fma() {
            // SAFETY: the features were detected.
            unsafe { fill_factors_avx2(&d, start, chunk) }
        } else {
            fill_factors(&d, start, chunk)
        }
        done += len;
    }
}

/// Training dropout on any tensor: [`dropout`] on CPU float32, libtorch's elsewhere.
pub fn dropout_any(x: &Tensor, p: f64) -> Tensor {
    if supports(x) {
        dropout(x, p)
    } else {
        x.dropout(p, true)
    }
}

#[inline(always)]
fn fill_factors(d: &DropMask, start: u32, out: &mut [f32]) {
    for (i, f) in out.iter_mut().enumerate() {
        *f = d.factor(start.wrapping_add(i as u32));
    }
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn fill_factors_avx2(d: &DropMask, start: u32, out: &mut [f32]) {
    fill_factors(d, start, out)
}

/// BLAS `sgemm_` (Fortran interface, column-major, 32-bit integers).
type BlasSgemm = unsafe extern "C" fn(
    transa: *const libc::c_char,
    transb: *const libc::c_char,
    m: *const i32,
    n: *const i32,
    k: *const i32,
    alpha: *const f32,
    a: *const f32,
    lda: *const i32,
    b: *const f32,
    ldb: *const i32,
    beta: *const f32,
    c: *mut f32,
    ldc: *const i32,
) -> ();

/// The BLAS that libtorch carries (MKL in the x86 wheels), found at run time so that a
/// libtorch without an exported `sgemm_` still works (through `matrixmultiply`). For these
/// shapes (one inner dimension of 16) MKL's small-matrix kernels beat a packing GEMM.
fn blas_sgemm() -> Option<BlasSgemm> {
    static BLAS: std::sync::OnceLock<Option<BlasSgemm>> = std::sync::OnceLock::new();
    *BLAS.get_or_init(|| {
        if std::env::var_os("BF_NO_BLAS").is_some() { return None; }
        // SAFETY: dlsym on the global namespace with a valid C string; the symbol, when
        // present, has the standard Fortran BLAS signature.
        unsafe {
            let sym = libc::dlsym(libc::RTLD_DEFAULT, c"sgemm_".as_ptr());
            (!sym.is_null()).then(|| std::mem::transmute::<*mut libc::c_void, BlasSgemm>(sym))
        }
    })
}

/// C [m, n] = alpha · A [m, k] · B [k, n] + beta · C, on row-major strided matrices (each of
/// A and B has one unit stride; C's column stride is 1). Same argument order as
/// `matrixmultiply::sgemm`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    debug_assert_eq!(csc, 1);
    let Some(sgemm) = blas_sgemm() else {
        return matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
    };
    // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ. A row-major operand (unit column
    // stride) read as column-major is already transposed ('N'); one with a unit row stride
    // needs 'T'. The leading dimension is the non-unit stride.
    let (tb, ldb) = if csb == 1 { (b'N', rsb) } else { (b'T', csb) };
    let (ta, lda) = if csa == 1 { (b'N', rsa) } else { (b'T', csa) };
    let (m, n, k) = (m as i32, n as i32, k as i32);
    let (lda, ldb, ldc) = ((lda as i32).max(1), (ldb as i32).max(1), (rsc as i32).max(1));
    sgemm(
        &(tb as libc::c_char), &(ta as libc::c_char), &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc,
    );
}

/// C [m, dh] = alpha · op(A) · B for a wide A (the weights or their gradient, row-major with
/// row length `lda`) and a narrow B [k, dh] (row stride `ldb`): op(A) = A [m, k], or Aᵀ with
/// A stored [k, m] when `transposed`. C has row stride `ldc` and is overwritten.
///
/// A general GEMM copies (packs) all of A before multiplying; here A is the big operand
/// (L·S floats) and B only dh wide, so for the usual head sizes a direct loop that streams A
/// once and keeps 4 rows of C in registers is faster. Other head sizes use [`gemm`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn times_narrow(
    transposed: bool,
    m: usize,
    k: usize,
    dh: usize,
    alpha: f32,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: i64,
    c: *mut f32,
    ldc: i64,
) {
    let (ldb, ldc) = (ldb as usize, ldc as usize);
    let (so, st) = if transposed { (1, lda) } else { (lda, 1) };
    match dh {
        8 => narrow::<8>(m, k, alpha, a, so, st, b, ldb, c, ldc),
        16 => narrow::<16>(m, k, alpha, a, so, st, b, ldb, c, ldc),
        32 => narrow::<32>(m, k, alpha, a, so, st, b, ldb, c, ldc),
        _ => gemm(m, k, dh, alpha, a, so as isize, st as isize, b, ldb as isize, 1, 0.0, c, ldc as isize, 1),
    }
}

/// C [m, D] = alpha · Σ_t A(o, t) · B[t] over t < k, where A(o, t) = a[o·so + t·st]: with
/// (so, st) = (lda, 1) that is A·B, with (1, lda) it is Aᵀ·B. Four rows of C at a time.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn narrow<const D: usize>(
    m: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    so: usize,
    st: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    let mut o = 0;
    while o + 4 <= m {
        let acc = block::<D, 4>(k, |t| b.add(t * ldb), |t, r| *a.add((o + r) * so + t * st));
        store_rows(&acc, alpha, c.add(o * ldc), ldc);
        o += 4;
    }
    while o < m {
        let acc = block::<D, 1>(k, |t| b.add(t * ldb), |t, _| *a.add(o * so + t * st));
        store_rows(&acc, alpha, c.add(o * ldc), ldc);
        o += 1;
    }
}

/// R accumulator rows of D floats (R·D/8 vector registers): Σ_t coef(t, r) · B_t over t < k.
#[inline(always)]
unsafe fn block<const D: usize, const R: usize>(
    k: usize,
    b_row: impl Fn(usize) -> *const f32,
    coef: impl Fn(usize, usize) -> f32,
) -> [[f32; D]; R] {
    let mut acc = [[0f32; D]; R];
    for t in 0..k {
        let bt = *(b_row(t) as *const [f32; D]);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let x = coef(t, r);
            for (acc_rd, b_d) in acc_r.iter_mut().zip(bt) {
                *acc_rd = x.mul_add(b_d, *acc_rd);
            }
        }
    }
    acc
}

#[inline(always)]
unsafe fn store_rows<const D: usize, const R: usize>(acc: &[[f32; D]; R], alpha: f32, c: *mut f32, ldc: usize) {
    for (r, acc_r) in acc.iter().enumerate() {
        let out = &mut *(c.add(r * ldc) as *mut [f32; D]);
        for (o, x) in out.iter_mut().zip(acc_r) {
            *o = alpha * x;
        }
    }
}

/// scores [L, S] = scale · Q_h · K_hᵀ, then the mask: additive, and −∞ above the diagonal
/// when causal. Returns nothing; `scores` is row-major with row length S.
#[inline(always)]
unsafe fn masked_scores(a: &AttnArgs, p: &Pair, scores: &mut [f32]) {
    let (l, s, dh) = (a.l as usize, a.s as usize, a.dh as usize);
    gemm(
        l, dh, s, a.scale, p.q, a.q_s1 as isize, 1, p.k, 1, a.k_s1 as isize, 0.0,
        scores.as_mut_ptr(), s as isize, 1,
    );
    if !a.mask.is_null() {
        let base = a.mask.offset((p.n * a.m_s0 + p.h * a.m_s1) as isize);
        for i in 0..l {
            let row = &mut scores[i * s..(i + 1) * s];
            let m = base.offset((i as i64 * a.m_s2) as isize);
            if a.m_s3 == 1 {
                let m = std::slice::from_raw_parts(m, s);
                for (x, y) in row.iter_mut().zip(m) {
                    *x += *y;
                }
            } else {
                for (j, x) in row.iter_mut().enumerate() {
                    *x += *m.offset((j as i64 * a.m_s3) as isize);
                }
            }
        }
    }
    if a.causal != 0 {
        for i in 0..l {
            for x in &mut scores[i * s + (i + 1).min(s)..(i + 1) * s] {
                *x = f32::NEG_INFINITY;
            }
        }
    }
}

/// Dropout mask of one pair as a hash of (seed, pair, index): two rounds of murmur3's
/// 32-bit finalizer, keyed per pair by SplitMix64. Independent of threads and call order.
struct DropMask {
    k1: u32,
    k2: u32,
    threshold: u32,
    keep_scale: f32,
}

impl DropMask {
    fn new(seed: u64, dropout: f32, pair: usize) -> DropMask {
        let key = splitmix64(seed ^ (pair as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let threshold = ((dropout as f64) * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
        DropMask { k1: key as u32, k2: (key >> 32) as u32, threshold, keep_scale: 1.0 / (1.0 - dropout) }
    }

    /// 1/(1−p) where element `idx` is kept, 0 where dropped.
    #[inline(always)]
    fn factor(&self, idx: u32) -> f32 {
        let x = fmix32(fmix32(idx ^ self.k1) ^ self.k2);
        if x >= self.threshold {
            self.keep_scale
        } else {
            0.0
        }
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

/// e^x for x ≤ 0, 0 below −87 (and for −∞): Cephes' single-precision polynomial after the
/// reduction x = k·ln2 + r, about 1 ulp. Written branch-free so the row loops vectorize
/// (libm's `expf` would not).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.max(-87.0);
    let k = (xc * std::f32::consts::LOG2_E + 0.5).floor();
    let r = xc - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 5.000_000_1e-1);
    let y = (p * r).mul_add(r, r) + 1.0;
    // 2^k without a float→int conversion (Rust's saturating `as` does not vectorize): k + 127
    // is an integer in [1, 127], so adding 2^23 leaves it in the low mantissa bits, and
    // shifting those into the exponent field builds the power of two.
    let scale = f32::from_bits((k + (127.0 + 8_388_608.0)).to_bits() << 23);
    if x < -87.0 {
        0.0
    } else {
        y * scale
    }
}

/// Maximum of a row, in eight lanes so that it vectorizes (a plain fold is sequential).
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    lanes.iter().chain(rest).fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// Sum of a row in eight lanes (vectorizes; the order is fixed, so results are reproducible).
#[inline(always)]
fn row_sum(row: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m += x;
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

#[inline(always)]
unsafe fn forward_pair(a: &AttnArgs, pair: usize, scratch: &mut [f32]) {
    let p = pair_of(a, pair);
    let (l, s, dh) = (a.l as usize, a.s as usize, a.dh as usize);
    let weights = &mut scratch[..l * s];
    masked_scores(a, &p, weights);
    let drop = (a.dropout > 0.0).then(|| DropMask::new(a.seed, a.dropout, pair + a.pair_offset as usize));
    let lse = std::slice::from_raw_parts_mut(a.lse.offset((pair * l) as isize), l);
    for i in 0..l {
        let row = &mut weights[i * s..(i + 1) * s];
        let max = row_max(row);
        if max == f32::NEG_INFINITY {
            row.fill(0.0);
            lse[i] = f32::INFINITY;
            continue;
        }
        row.iter_mut().for_each(|x| *x = exp_nonpositive(*x - max));
        let sum = row_sum(row);
        lse[i] = max + sum.ln();
        let inv = 1.0 / sum;
        match &drop {
            None => row.iter_mut().for_each(|x| *x *= inv),
            Some(d) => {
                let base = (i * s) as u32;
                for (j, x) in row.iter_mut().enumerate() {
                    *x *= inv * d.factor(base.wrapping_add(j as u32));
                }
            }
        }
    }
    // out_h [L, dh] = weights [L, S] · V_h [S, dh]
    let out = a.out.offset((p.n * a.o_s0 + p.h * a.dh) as isize);
    times_narrow(false, l, s, dh, 1.0, weights.as_ptr(), s, p.v, a.v_s1, out, a.o_s1);
}

#[inline(always)]
unsafe fn backward_pair(a: &AttnArgs, pair: usize, scratch: &mut [f32]) {
    let p = pair_of(a, pair);
    let (l, s, dh) = (a.l as usize, a.s as usize, a.dh as usize);
    let (weights, dscores) = scratch.split_at_mut(l * s);
    let dscores = &mut dscores[..l * s];
    masked_scores(a, &p, weights);
    let col = p.h * a.dh;
    let dout = a.dout.offset((p.n * a.do_s0 + col) as isize);
    let out = a.out.offset((p.n * a.o_s0 + col) as isize);
    // d(dropped weights) [L, S] = dO_h [L, dh] · V_hᵀ
    gemm(l, dh, s, 1.0, dout, a.do_s1 as isize, 1, p.v, 1, a.v_s1 as isize, 0.0, dscores.as_mut_ptr(), s as isize, 1);
    let drop = (a.dropout > 0.0).then(|| DropMask::new(a.seed, a.dropout, pair + a.pair_offset as usize));
    let lse = std::slice::from_raw_parts(a.lse.offset((pair * l) as isize), l);
    for i in 0..l {
        // D_i = Σ_j P_ij · dP_ij = dO_i · O_i (the softmax backward's row term)
        let (dout_i, out_i) = (dout.offset((i as i64 * a.do_s1) as isize), out.offset((i as i64 * a.o_s1) as isize));
        let d_i: f32 = (0..dh).map(|c| *dout_i.add(c) * *out_i.add(c)).sum();
        let (w, ds) = (&mut weights[i * s..(i + 1) * s], &mut dscores[i * s..(i + 1) * s]);
        let lse_i = lse[i];
        match &drop {
            None => {
                for (x, g) in w.iter_mut().zip(ds.iter_mut()) {
                    let prob = exp_nonpositive(*x - lse_i);
                    *x = prob;
                    *g = prob * (*g - d_i);
                }
            }
            Some(d) => {
                let base = (i * s) as u32;
                for (j, (x, g)) in w.iter_mut().zip(ds.iter_mut()).enumerate() {
                    let prob = exp_nonpositive(*x - lse_i);
                    let f = d.factor(base.wrapping_add(j as u32));
                    *x = prob * f;
                    *g = prob * (*g * f - d_i);
                }
            }
        }
    }
    let scale = a.scale;
    // dV_h [S, dh] = dropped weightsᵀ · dO_h
    let dv = a.dv.offset((p.n * a.dv_s0 + col) as isize);
    times_narrow(true, s, l, dh, 1.0, weights.as_ptr(), s, dout, a.do_s1, dv, a.dv_s1);
    // dQ_h [L, dh] = scale · dS · K_h
    let dq = a.dq.offset((p.n * a.dq_s0 + col) as isize);
    times_narrow(false, l, s, dh, scale, dscores.as_ptr(), s, p.k, a.k_s1, dq, a.dq_s1);
    // dK_h [S, dh] = scale · dSᵀ · Q_h
    let dk = a.dk.offset((p.n * a.dk_s0 + col) as isize);
    times_narrow(true, s, l, dh, scale, dscores.as_ptr(), s, p.q, a.q_s1, dk, a.dk_s1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_to_two_ulp_and_is_zero_far_below() {
        for i in 0..20_000 {
            let x = -(i as f32) * 0.0043;
            let (ours, libm) = (exp_nonpositive(x), x.exp());
            assert!((ours - libm).abs() <= 2.5e-7 * libm.max(1e-30), "exp({x}): {ours} vs {libm}");
        }
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
    }

    #[test]
    fn dropout_hash_drops_the_asked_share() {
        let d = DropMask::new(42, 0.1, 3);
        let dropped = (0..1_000_000u32).filter(|&i| d.factor(i) == 0.0).count();
        // Binomial(1e6, 0.1): sd 300, so ±1500 is 5 sd.
        assert!((dropped as i64 - 100_000).abs() < 1_500, "{dropped}");
    }

    /// The unfused formula on [N, L, E] inputs, with the kernel's own dropout factors.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, heads: i64, causal: bool, p: f64, seed: u64) -> Tensor {
        let (n, l, e) = q.size3().unwrap();
        let s = k.size()[1];
        let dh = e / heads;
        let split = |x: &Tensor, len: i64| x.view([n, len, heads, dh]).transpose(1, 2);
        let scores = split(q, l).matmul(&split(k, s).transpose(-2, -1)) / (dh as f64).sqrt();
        let mut scores = match mask {
            Some(m) => scores + m,
            None => scores,
        };
        if causal {
            scores = scores + crate::layers::causal_additive(l, tch::Device::Cpu);
        }
        let mut weights = scores.softmax(-1, Kind::Float);
        if p > 0.0 {
            let mut f = vec![0f32; (n * heads * l * s) as usize];
            for pair in 0..(n * heads) as usize {
                let d = DropMask::new(seed, p as f32, pair);
                for idx in 0..(l * s) as usize {
                    f[pair * (l * s) as usize + idx] = d.factor(idx as u32);
                }
            }
            weights = weights * Tensor::from_slice(&f).view([n, heads, l, s]);
        }
        weights.matmul(&split(v, s)).transpose(1, 2).reshape([n, l, e])
    }

    /// Output and the gradients of Σ out·g with respect to q, k and v.
    fn run(f: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor, q: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor) -> Vec<Tensor> {
        let (q, k, v) = (q.copy().set_requires_grad(true), k.copy().set_requires_grad(true), v.copy().set_requires_grad(true));
        let out = f(&q, &k, &v);
        (&out * g).sum(Kind::Float).backward();
        vec![out.detach(), q.grad(), k.grad(), v.grad()]
    }

    fn assert_close(ours: &[Tensor], reference: &[Tensor], what: &str) {
        for (name, (a, b)) in ["out", "dq", "dk", "dv"].iter().zip(ours.iter().zip(reference)) {
            let scale = f64::try_from(b.abs().max()).unwrap().max(1e-6);
            let diff = f64::try_from((a - b).abs().max()).unwrap();
            // float32 sums of a few dozen terms, in a different order than libtorch's: 1e-5
            // of the largest magnitude is ~100 ulp of headroom and far below any real error.
            assert!(diff <= 1e-5 * scale, "{what}: {name} differs by {diff} (scale {scale})");
        }
    }

    #[test]
    fn matches_the_unfused_formula_with_masks_causality_and_dropout() {
        // Head sizes 4 (the GEMM path), 8, 16 and 32 (the direct loops); 7 queries and 9 keys
        // exercise the loops' remainder rows.
        for e in [8, 16, 32, 64] {
            check_against_reference(e, 2);
        }
    }

    fn check_against_reference(e: i64, heads: i64) {
        tch::manual_seed(7);
        let (n, l, s) = (3, 7, 9);
        let q = Tensor::randn([n, l, e], (Kind::Float, tch::Device::Cpu));
        let k = Tensor::randn([n, s, e], (Kind::Float, tch::Device::Cpu));
        let v = Tensor::randn([n, s, e], (Kind::Float, tch::Device::Cpu));
        let g = Tensor::randn([n, l, e], (Kind::Float, tch::Device::Cpu));
        // Key padding: the last two keys of row 1 are masked, as `key_padding_mask` builds it.
        let ids = Tensor::from_slice(&[1i64; 27]).view([n, s]);
        let _ = ids.get(1).narrow(0, s - 2, 2).fill_(0);
        let pad = crate::layers::key_padding_mask(&ids, 0).unwrap();
        for (mask, p) in [(None, 0.0), (Some(&pad), 0.0), (None, 0.3), (Some(&pad), 0.3)] {
            let ours = run(|q, k, v| attention_seeded(q, k, v, mask, heads, false, p, 99), &q, &k, &v, &g);
            let reference = run(|q, k, v| reference(q, k, v, mask, heads, false, p, 99), &q, &k, &v, &g);
            assert_close(&ours, &reference, &format!("head size {}, mask {}, dropout {p}", e / heads, mask.is_some()));
        }
        // Causal self-attention (queries and keys of the same length), with dropout.
        let k7 = k.narrow(1, 0, l);
        let v7 = v.narrow(1, 0, l);
        let ours = run(|q, k, v| attention_seeded(q, k, v, None, heads, true, 0.2, 5), &q, &k7, &v7, &g);
        let reference = run(|q, k, v| reference(q, k, v, None, heads, true, 0.2, 5), &q, &k7, &v7, &g);
        assert_close(&ours, &reference, &format!("head size {}, causal, dropout 0.2", e / heads));
    }

    #[test]
    fn non_contiguous_inputs_and_fully_masked_queries() {
        tch::manual_seed(3);
        // q, k, v as chunks of one fused projection, the way self-attention produces them.
        let qkv = Tensor::randn([2, 5, 12], (Kind::Float, tch::Device::Cpu));
        let parts = qkv.chunk(3, -1);
        let g = Tensor::randn([2, 5, 4], (Kind::Float, tch::Device::Cpu));
        let ours = run(|q, k, v| attention_seeded(q, k, v, None, 2, false, 0.0, 0), &parts[0], &parts[1], &parts[2], &g);
        let reference = run(|q, k, v| reference(q, k, v, None, 2, false, 0.0, 0), &parts[0], &parts[1], &parts[2], &g);
        assert_close(&ours, &reference, "chunked inputs");
        // Every key of batch row 0 masked: that row's output is zeros, not NaN.
        let mask = Tensor::zeros([2, 1, 1, 5], (Kind::Float, tch::Device::Cpu));
        let _ = mask.get(0).fill_(f64::NEG_INFINITY);
        let out = attention_seeded(&parts[0], &parts[1], &parts[2], Some(&mask), 2, false, 0.0, 0);
        assert_eq!(f64::try_from(out.get(0).abs().sum(Kind::Float)).unwrap(), 0.0);
        assert!(bool::try_from(out.get(1).isfinite().all()).unwrap());
    }

    /// Two processes holding halves of a batch, each with its offset in force, draw the masks
    /// one process draws for the whole batch: attention weights (forward and gradients) and
    /// activation dropout.
    #[test]
    fn halves_of_a_batch_with_their_offsets_draw_the_whole_batchs_masks() {
        tch::manual_seed(11);
        let (b, rows_per_example, l, e, heads) = (4usize, 3i64, 5, 8, 2);
        let n = b as i64 * rows_per_example;
        let q = Tensor::randn([n, l, e], (Kind::Float, tch::Device::Cpu));
        let k = Tensor::randn([n, l, e], (Kind::Float, tch::Device::Cpu));
        let v = Tensor::randn([n, l, e], (Kind::Float, tch::Device::Cpu));
        let g = Tensor::randn([n, l, e], (Kind::Float, tch::Device::Cpu));
        let with_seed = |q: &Tensor, k: &Tensor, v: &Tensor| {
            tch::manual_seed(5);
            attention(q, k, v, None, heads, false, 0.3)
        };
        let whole = run(with_seed, &q, &k, &v, &g);
        let half = n / 2;
        let parts: Vec<Vec<Tensor>> = (0..2)
            .map(|r| {
                let cut = |t: &Tensor| t.narrow(0, r * half, half);
                ExampleOffset { offset: r as usize * b / 2, local: b / 2 }.scope(|| run(with_seed, &cut(&q), &cut(&k), &cut(&v), &cut(&g)))
            })
            .collect();
        for (i, name) in ["out", "dq", "dk", "dv"].iter().enumerate() {
            let joined = Tensor::cat(&[&parts[0][i], &parts[1][i]], 0);
            assert!(joined.equal(&whole[i]), "{name}: the halves differ from the whole batch");
        }
        // Without the offset the second half would reuse the first half's masks.
        let unkeyed = run(with_seed, &q.narrow(0, half, half), &k.narrow(0, half, half), &v.narrow(0, half, half), &g.narrow(0, half, half));
        assert!(!unkeyed[0].equal(&whole[0].narrow(0, half, half)));

        let x = Tensor::ones([b as i64, 7, 6], (Kind::Float, tch::Device::Cpu));
        tch::manual_seed(9);
        let all = dropout(&x, 0.5);
        let halves: Vec<Tensor> = (0..2)
            .map(|r| {
                tch::manual_seed(9);
                ExampleOffset { offset: r * b / 2, local: b / 2 }.scope(|| dropout(&x.narrow(0, (r * b / 2) as i64, (b / 2) as i64), 0.5))
            })
            .collect();
        assert!(Tensor::cat(&halves, 0).equal(&all));
    }

    #[test]
    fn activation_dropout_scales_the_kept_and_zeroes_the_rest() {
        let x = Tensor::ones([1000, 100], (Kind::Float, tch::Device::Cpu));
        let y = dropout(&x, 0.25);
        let kept = f64::try_from(y.ne(0.0).to_kind(Kind::Float).mean(Kind::Float)).unwrap();
        // 1e5 Bernoulli(0.75) draws: sd 0.0014, so ±0.007 is 5 sd.
        assert!((kept - 0.75).abs() < 0.007, "{kept}");
        let values = y.masked_select(&y.ne(0.0));
        assert!(bool::try_from((values - 1.0 / 0.75).abs().max().le(1e-6)).unwrap());
    }
}
