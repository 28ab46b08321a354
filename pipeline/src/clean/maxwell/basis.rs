//! The SSS multipole bases: real vector spherical harmonic fields of the internal
//! (r^-(l+2), sources inside the sphere) and external (r^(l-1), sources outside) expansions,
//! integrated over each coil's points — MNE's `_sss_basis` / `_trans_sss_basis`.
//!
//! Columns: internal moments first (degree l = 1..=int_order, order m = -l..=l, index
//! l² + l + m − 1), then the external ones the same way. Scaling: μ0/(4π)·√((2l+1)/(4π)
//! (l−m)!/(l+m)!) folded into a running `mult` (MNE's `2e-7·√((2l+1)π)` then divided by
//! √((l−m+1)(l+m)) per order), times √2 for m ≠ 0 (real harmonics kept orthonormal; MaxFilter's
//! "even-odd" columns are these times √2, a per-column scale that cancels in the projection
//! but matters to `regularize='in'`). Negative-m columns are MaxFilter's sine terms built
//! directly (no Condon–Shortley sign), as MNE's fast `_sss_basis` does.
//!
//! The arithmetic follows MNE's expression order term by term, so the two agree to a few
//! ulps, not just to the accuracy of the physics.

use super::coils::Coils;
use super::geometry::Transform;
use nalgebra::DMatrix;

/// Number of moments of an expansion of order `n`: n² + 2n.
pub fn n_moments(order: usize) -> usize {
    order * order + 2 * order
}

/// Column of (degree, order) within one expansion.
pub fn deg_ord_idx(degree: usize, order: i64) -> usize {
    (degree as i64 * degree as i64 + degree as i64 + order - 1) as usize
}

/// Degree and order of each column of an expansion of order `n` (MNE's `_get_degrees_orders`).
pub fn degrees_orders(n: usize) -> (Vec<usize>, Vec<i64>) {
    let mut d = vec![0; n_moments(n)];
    let mut o = vec![0; n_moments(n)];
    for degree in 1..=n {
        for order in -(degree as i64)..=(degree as i64) {
            let i = deg_ord_idx(degree, order);
            d[i] = degree;
            o[i] = order;
        }
    }
    (d, o)
}

/// Associated Legendre functions P_l^m(x) for l = 0..=n, m = 0..=l+1 (the m = l+1 entry is
/// 0), by MNE's `_tabular_legendre` recursions (Condon–Shortley phase included).
fn legendre(x: f64, n: usize, out: &mut Vec<Vec<f64>>) {
    out.clear();
    for degree in 0..=n {
        out.push(vec![0.0; degree + 2]);
    }
    out[0][0] = 1.0;
    let mut pnn = 1.0;
    let mut fact = 1.0;
    let sx2 = ((1.0 - x) * (1.0 + x)).sqrt();
    for degree in 0..=n {
        out[degree][degree] = pnn;
        pnn *= -fact * sx2;
        fact += 2.0;
        if degree < n {
            out[degree + 1][degree] = x * (2 * degree + 1) as f64 * out[degree][degree];
        }
        if degree >= 2 {
            for order in 0..degree - 1 {
                out[degree][order] = (x * (2 * degree - 1) as f64 * out[degree - 1][order]
                    - (degree + order - 1) as f64 * out[degree - 2][order])
                    / (degree - order) as f64;
            }
        }
    }
}

/// The bases (n_coils × (n_in + n_out)) for coils already in the frame of `origin`, without
/// magnetometer scaling (MNE's `_sss_basis`).
pub fn sss_basis(origin: &[f64; 3], int_order: usize, ext_order: usize, coils: &Coils) -> DMatrix<f64> {
    let n_in = n_moments(int_order);
    let n_out = n_moments(ext_order);
    let max_order = int_order.max(ext_order);
    let mut s = DMatrix::<f64>::zeros(coils.n_coils, n_in + n_out);
    let mut l = Vec::new();
    let sqrt2 = 2f64.sqrt();
    for (p, rm) in coils.rmags.iter().enumerate() {
        let bin = coils.bins[p];
        let cm = coils.cosmags[p];
        let r = [rm[0] - origin[0], rm[1] - origin[1], rm[2] - origin[2]];
        let r_n = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
        legendre(r[2] / r_n, max_order, &mut l);
        let phi = r[1].atan2(r[0]);
        let mut r_xy = (r[0] * r[0] + r[1] * r[1]).sqrt();
        let cos_pol = r[2] / r_n;
        let sin_pol = (1.0 - cos_pol * cos_pol).sqrt();
        // On the z axis the azimuth is undefined: MNE zeroes the azimuthal terms there.
        let z_only = r_xy <= 1e-16;
        let sin_pol_nz = if z_only { 1.0 } else { sin_pol };
        if z_only {
            r_xy = 1.0;
        }
        let cos_az = if z_only { 1.0 } else { r[0] / r_xy };
        let sin_az = if z_only { 0.0 } else { r[1] / r_xy };
        // Field components (radial, azimuthal, polar) → Cartesian → along the weighted normal.
        let integ = |b_r: f64, b_az: f64, b_pol: f64| -> f64 {
            let x = sin_pol * cos_az * b_r + cos_pol * cos_az * b_pol - sin_az * b_az;
            let y = sin_pol * sin_az * b_r + cos_pol * sin_az * b_pol + cos_az * b_az;
            let z = cos_pol * b_r - sin_pol * b_pol;
            x * cm[0] + y * cm[1] + z * cm[2]
        };
        let mut r_nn2 = r_n; // becomes r^(l+2)
        let mut r_nn1 = 1.0 / (r_n * r_n); // becomes r^(l-1)
        for degree in 0..=max_order {
            if degree <= ext_order {
                r_nn1 *= r_n;
            }
            if degree <= int_order {
                r_nn2 *= r_n;
            }
            let d = degree as f64;
            let ld = &l[degree];
            let mut mult = 2e-7 * ((2 * degree + 1) as f64 * std::f64::consts::PI).sqrt();
            if degree > 0 {
                let idx = deg_ord_idx(degree, 0);
                if degree <= int_order {
                    let b_r = mult * (d + 1.0) * ld[0] / r_nn2;
                    let b_pol = -mult * ld[1] / r_nn2;
                    s[(bin, idx)] += integ(b_r, 0.0, b_pol);
                }
                if degree <= ext_order {
                    let b_r = -mult * d * ld[0] * r_nn1;
                    let b_pol = -mult * ld[1] * r_nn1;
                    s[(bin, n_in + idx)] += integ(b_r, 0.0, b_pol);
                }
            }
            for order in 1..=degree {
                let m = order as f64;
                let ord_phi = m * phi;
                let (sin_order, cos_order) = (ord_phi.sin(), ord_phi.cos());
                mult /= (((degree - order + 1) * (degree + order)) as f64).sqrt();
                let factor = mult * sqrt2;
                let dpol = ld[order + 1] - ((degree + order) * (degree - order + 1)) as f64 * ld[order - 1];
                // Real part (cosine, order +m).
                let idx = deg_ord_idx(degree, order as i64);
                let r_fact = factor * ld[order] * cos_order;
                let az_fact = factor * m * sin_order * ld[order];
                let pol_fact = -factor * dpol * cos_order;
                if degree <= int_order {
                    let b_r = (d + 1.0) * r_fact / r_nn2;
                    let b_az = if z_only { 0.0 } else { az_fact / (sin_pol_nz * r_nn2) };
                    let b_pol = pol_fact / (2.0 * r_nn2);
                    s[(bin, idx)] += integ(b_r, b_az, b_pol);
                }
                if degree <= ext_order {
                    let b_r = -d * r_fact * r_nn1;
                    let b_az = if z_only { 0.0 } else { az_fact * r_nn1 / sin_pol_nz };
                    let b_pol = pol_fact * r_nn1 / 2.0;
                    s[(bin, n_in + idx)] += integ(b_r, b_az, b_pol);
                }
                // Imaginary part (sine, order −m).
                let idx = deg_ord_idx(degree, -(order as i64));
                let r_fact = factor * ld[order] * sin_order;
                let az_fact = factor * m * cos_order * ld[order];
                let pol_fact = factor * dpol * sin_order;
                if degree <= int_order {
                    let b_r = -(d + 1.0) * r_fact / r_nn2;
                    let b_az = if z_only { 0.0 } else { az_fact / (sin_pol_nz * r_nn2) };
                    let b_pol = pol_fact / (2.0 * r_nn2);
                    s[(bin, idx)] += integ(b_r, b_az, b_pol);
                }
                if degree <= ext_order {
                    let b_r = d * r_fact * r_nn1;
                    let b_az = if z_only { 0.0 } else { az_fact * r_nn1 / sin_pol_nz };
                    let b_pol = pol_fact * r_nn1 / 2.0;
                    s[(bin, n_in + idx)] += integ(b_r, b_az, b_pol);
                }
            }
        }
    }
    s
}

/// MNE's `_trans_sss_basis`: coils (device frame) moved by `trans` when given, the bases at
/// `origin` in that frame, rows multiplied by `coil_scale` (magnetometers × `mag_scale`).
pub fn trans_sss_basis(
    origin: &[f64; 3],
    int_order: usize,
    ext_order: usize,
    coils: &Coils,
    trans: Option<&Transform>,
    coil_scale: &[f64],
) -> DMatrix<f64> {
    let moved;
    let c = match trans {
        Some(t) => {
            moved = coils.transformed(&t.rot, &t.trans);
            &moved
        }
        None => coils,
    };
    let mut s = sss_basis(origin, int_order, ext_order, c);
    for (i, &cs) in coil_scale.iter().enumerate() {
        s.row_mut(i).scale_mut(cs);
    }
    s
}
