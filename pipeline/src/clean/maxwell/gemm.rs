//! Dense products on the row-major (channel × time) buffers that readers fill, through
//! `matrixmultiply` (the GEMM behind nalgebra and ndarray) with explicit strides, so no
//! buffer is copied or transposed. nalgebra's own `tr_mul`/`mul_to` on views of these
//! buffers take a dot-product path several times slower on 300 × 10⁴ operands.

use nalgebra::DMatrix;

/// `x · xᵀ` of a row-major `rows × cols` buffer (row `i` at `x[i·stride..]`, `cols` used).
/// Symmetric: the rows are cut into blocks and only the blocks on and below the diagonal are
/// multiplied (10 of 16 with four blocks), the rest mirrored.
pub fn gram_rows(x: &[f64], rows: usize, cols: usize, stride: usize) -> DMatrix<f64> {
    assert!(rows == 0 || x.len() >= (rows - 1) * stride + cols);
    let mut g = DMatrix::<f64>::zeros(rows, rows);
    if rows == 0 || cols == 0 {
        return g;
    }
    let nb = 4.min(rows);
    let edges: Vec<usize> = (0..=nb).map(|i| i * rows / nb).collect();
    for bi in 0..nb {
        for bj in 0..=bi {
            let (r0, r1, c0, c1) = (edges[bi], edges[bi + 1], edges[bj], edges[bj + 1]);
            // SAFETY: the pointers and strides describe rows r0..r1 and c0..c1 of `x` (checked
            // above) and the block (r0..r1, c0..c1) of `g` (column-major: row stride 1, column
            // stride rows); matrixmultiply reads and writes only within them.
            unsafe {
                matrixmultiply::dgemm(
                    r1 - r0, cols, c1 - c0, 1.0,
                    x.as_ptr().add(r0 * stride), stride as isize, 1,
                    x.as_ptr().add(c0 * stride), 1, stride as isize,
                    0.0, g.as_mut_ptr().add(r0 + c0 * rows), 1, rows as isize,
                );
            }
        }
    }
    for j in 0..rows {
        for i in 0..j {
            g[(i, j)] = g[(j, i)];
        }
    }
    g
}

/// `out = a · x[:, ..cols]`: `a` is m × k (nalgebra, column-major), `x` a row-major buffer of
/// k rows (`stride` apart), `out` a row-major m × cols buffer.
pub fn mul_rows(a: &DMatrix<f64>, x: &[f64], cols: usize, stride: usize, out: &mut [f64]) {
    let (m, k) = a.shape();
    assert!(k == 0 || x.len() >= (k - 1) * stride + cols);
    assert!(out.len() >= m * cols);
    if m == 0 || cols == 0 {
        return;
    }
    if k == 0 {
        out[..m * cols].fill(0.0);
        return;
    }
    // SAFETY: as above; `a` is column-major m × k (row stride 1, column stride m), `out`
    // holds m rows of `cols` (checked above).
    unsafe {
        matrixmultiply::dgemm(
            m, k, cols, 1.0,
            a.as_ptr(), 1, m as isize,
            x.as_ptr(), stride as isize, 1,
            0.0, out.as_mut_ptr(), cols as isize, 1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_equal_nalgebra() {
        let (k, n, stride) = (7, 7, 9);
        let x: Vec<f64> = (0..k * stride).map(|i| ((i * 37 % 11) as f64) - 5.0).collect();
        let xm = DMatrix::from_fn(k, n, |i, j| x[i * stride + j]);
        let g = gram_rows(&x, k, n, stride);
        assert!((&g - &xm * xm.transpose()).abs().max() < 1e-12);
        let a = DMatrix::from_fn(3, k, |i, j| (i as f64) - 0.5 * j as f64);
        let mut out = vec![0.0; 3 * n];
        mul_rows(&a, &x, n, stride, &mut out);
        let want = &a * &xm;
        for i in 0..3 {
            for j in 0..n {
                assert!((out[i * n + j] - want[(i, j)]).abs() < 1e-12);
            }
        }
    }
}
