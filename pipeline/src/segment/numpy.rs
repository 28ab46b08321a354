//! NumPy's and Python's arithmetic where MNE's results depend on it bit for bit (rounding,
//! `arange` with a float step, pairwise summation).

/// Python's `round` on floats (and NumPy's `np.round`): half to even.
pub(super) fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// `np.arange(start, stop, step).astype(int)` for integer `start`, `stop` and a float `step`,
/// as NumPy computes it (see the module doc).
pub(super) fn np_arange_trunc(start: i64, stop: i64, step: f64) -> Vec<i64> {
    let len = ((stop - start) as f64 / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let v0 = start as f64;
    let v1 = v0 + step;
    let delta = v1 - v0;
    (0..len)
        .map(|i| {
            let v = match i {
                0 => v0,
                1 => v1,
                _ => v0 + i as f64 * delta,
            };
            v as i64
        })
        .collect()
}

/// NumPy's pairwise summation (`np.add.reduce` on a contiguous float64 axis).
pub(super) fn np_pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        np_pairwise_sum(&a[..n2]) + np_pairwise_sum(&a[n2..])
    }
}

/// `np.mean` of a contiguous float64 slice.
pub(super) fn np_mean(a: &[f64]) -> f64 {
    np_pairwise_sum(a) / a.len() as f64
}

// ---------------------------------------------------------------------------------------------
// Annotations
