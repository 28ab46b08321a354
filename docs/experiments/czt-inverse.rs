// Session 17 experiment (not built by the workspace): the FFT chain's inverse as a chirp-z transform of only the
// kept output samples on 2^18 points, beside realfft's f32 c2r (Bluestein at the prime 238,313) and an f64
// reference. Build: a scratch crate with rustfft = "=6.4.1", realfft = "=3.5.1". Results in docs/STATUS.md (issue 16).
use realfft::num_complex::Complex;
use realfft::RealFftPlanner;
use rustfft::FftPlanner;
use std::time::Instant;

const N: usize = 238_313; // MNE's inverse length for 1100 -> 250 Hz on 540,100 samples
const T0: usize = 57_781; // to_remove[0] (about)
const M: usize = 122_750; // kept outputs

fn main() {
    let k_bins = N / 2 + 1;
    // A realistic-ish band-limited real signal: random walk low-passed + sines, f64.
    let mut s = 1u64;
    let mut rnd = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5 };
    let mut x = vec![0.0f64; N];
    let mut acc = 0.0;
    for t in 0..N { acc = 0.999 * acc + rnd(); x[t] = acc + 3.0 * (t as f64 * 0.01).sin() + rnd() * 0.5; }
    let mut p64 = RealFftPlanner::<f64>::new();
    let r2c = p64.plan_fft_forward(N);
    let mut spec = r2c.make_output_vec();
    r2c.process(&mut x.clone(), &mut spec).unwrap();
    // Reference: f64 inverse.
    let c2r64 = p64.plan_fft_inverse(N);
    let mut sp = spec.clone();
    let mut y64 = c2r64.make_output_vec();
    c2r64.process(&mut sp, &mut y64).unwrap();
    let yref: Vec<f64> = y64[T0..T0 + M].iter().map(|v| v / N as f64).collect();
    let rms = (yref.iter().map(|v| v * v).sum::<f64>() / M as f64).sqrt();

    // (a) current: f32 c2r (Bluestein inside).
    let mut p32 = RealFftPlanner::<f32>::new();
    let c2r32 = p32.plan_fft_inverse(N);
    let mut insp: Vec<Complex<f32>> = spec.iter().map(|c| Complex::new(c.re as f32, c.im as f32)).collect();
    let mut out32 = c2r32.make_output_vec();
    let mut scr = c2r32.make_scratch_vec();
    let ya: Vec<f64> = { let mut i2 = insp.clone(); i2[0].im = 0.0; c2r32.process_with_scratch(&mut i2, &mut out32, &mut scr).unwrap(); out32[T0..T0 + M].iter().map(|&v| v as f64 / N as f64).collect() };

    // (b) chirp-z: y[T0+m] = Re( e^{i pi m^2/N} sum_k u_k e^{-i pi (m-k)^2 / N} ), u_k = c_k e^{2 pi i k T0/N} e^{i pi k^2/N}
    let l = (k_bins + M - 1).next_power_of_two();
    let mut fp = FftPlanner::<f32>::new();
    let fwd = fp.plan_fft_forward(l);
    let inv = fp.plan_fft_inverse(l);
    // phase of pi*j^2/N, exactly reduced: j^2 mod 2N in integers.
    let chirp = |j: i64| -> Complex<f64> { let r = ((j as i128 * j as i128) % (2 * N as i128)) as f64; let a = std::f64::consts::PI * r / N as f64; Complex::new(a.cos(), a.sin()) };
    // v_j for j = m - k in [-(K-1), M-1], stored circularly at index (j mod L).
    let mut v = vec![Complex::<f32>::new(0.0, 0.0); l];
    for j in -(k_bins as i64 - 1)..(M as i64) { let c = chirp(j).conj(); v[j.rem_euclid(l as i64) as usize] = Complex::new(c.re as f32, c.im as f32); }
    fwd.process(&mut v);
    let vhat = v;
    // per-k twiddle: e^{2 pi i k T0 / N} e^{i pi k^2 /N} = e^{i pi (k^2 + 2 k T0)/N}
    let pre: Vec<Complex<f64>> = (0..k_bins).map(|k| { let r = ((k as i128 * k as i128 + 2 * k as i128 * T0 as i128) % (2 * N as i128)) as f64; let a = std::f64::consts::PI * r / N as f64; Complex::new(a.cos(), a.sin()) }).collect();
    let post: Vec<Complex<f64>> = (0..M).map(|m| chirp(m as i64)).collect();
    let mut scratch = vec![Complex::<f32>::new(0.0, 0.0); fwd.get_inplace_scratch_len().max(inv.get_inplace_scratch_len())];
    let mut buf = vec![Complex::<f32>::new(0.0, 0.0); l];
    let mut czt = |spec: &[Complex<f64>], out: &mut [f64]| {
        for k in 0..k_bins { let c = if k == 0 { Complex::new(spec[0].re, 0.0) } else { spec[k] * 2.0 }; let u = c * pre[k]; buf[k] = Complex::new(u.re as f32, u.im as f32); }
        buf[k_bins..].fill(Complex::new(0.0, 0.0));
        fwd.process_with_scratch(&mut buf, &mut scratch);
        for (b, w) in buf.iter_mut().zip(&vhat) { *b = *b * *w; }
        inv.process_with_scratch(&mut buf, &mut scratch);
        let s = 1.0 / (l as f64 * N as f64);
        for m in 0..M { let z = Complex::new(buf[m].re as f64, buf[m].im as f64) * post[m]; out[m] = z.re * s; }
    };
    let mut yb = vec![0.0; M];
    czt(&spec, &mut yb);
    let err = |y: &[f64]| { let e: Vec<f64> = y.iter().zip(&yref).map(|(a, b)| a - b).collect(); ((e.iter().map(|v| v * v).sum::<f64>() / M as f64).sqrt() / rms, e.iter().fold(0.0f64, |m, v| m.max(v.abs())) / rms) };
    println!("L = {l}; rms {rms:.3e}; current f32 Bluestein: rms err {:.2e}, max {:.2e}; chirp-z f32: rms err {:.2e}, max {:.2e}", err(&ya).0, err(&ya).1, err(&yb).0, err(&yb).1);
    let d: Vec<f64> = ya.iter().zip(&yb).map(|(a, b)| (a - b).abs() / rms).collect();
    println!("current vs chirp-z: max {:.2e}", d.iter().fold(0.0f64, |m, v| m.max(*v)));
    // timing, interleaved
    for round in 0..3 {
        let t = Instant::now();
        for _ in 0..10 { insp.iter_mut().zip(&spec).for_each(|(o, c)| *o = Complex::new(c.re as f32, c.im as f32)); insp[0].im = 0.0; c2r32.process_with_scratch(&mut insp, &mut out32, &mut scr).unwrap(); }
        let ta = t.elapsed().as_secs_f64() / 10.0;
        let t = Instant::now();
        for _ in 0..10 { czt(&spec, &mut yb); }
        let tb = t.elapsed().as_secs_f64() / 10.0;
        let t = Instant::now();
        let mut xx = vec![0.0f64; 1 << 20];
        let rf = p64.plan_fft_forward(1 << 20);
        let mut so = rf.make_output_vec();
        for _ in 0..10 { xx.iter_mut().enumerate().for_each(|(i, v)| *v = (i as f64).sin()); rf.process(&mut xx, &mut so).unwrap(); }
        let tf = t.elapsed().as_secs_f64() / 10.0;
        println!("round {round}: inverse per channel: Bluestein c2r {:.2} ms, chirp-z {:.2} ms; forward f64 2^20 (+fill) {:.2} ms", ta * 1e3, tb * 1e3, tf * 1e3);
    }
}
