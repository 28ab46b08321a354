//! `bf-pipeline bench-read FILE`: times a full read into memory (f32, all channels) and
//! random windows, printing JSON for `make bench` (bench/bench_read.py puts it beside MNE).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;

/// Time a full read into memory and random windows of FILE (JSON; used by `make bench`).
#[derive(clap::Args, Debug)]
pub struct BenchReadArgs {
    pub file: PathBuf,
    /// How many random windows to time.
    #[arg(long, default_value_t = 20)]
    pub windows: usize,
    /// Window length in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub window_seconds: f64,
    /// Seed for the window positions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: &BenchReadArgs) -> Result<()> {
    let BenchReadArgs { file, windows, window_seconds, seed } = args;
    let (file, windows, window_seconds, seed) = (file.as_path(), *windows, *window_seconds, *seed);
    let t0 = Instant::now();
    let reader = bf_pipeline::formats::open(file)?;
    let open_s = t0.elapsed().as_secs_f64();
    let info = reader.info();
    let picks = reader.all_picks();

    let t1 = Instant::now();
    let data = reader.read_f32(&picks, 0, info.n_samples)?;
    let full_s = t1.elapsed().as_secs_f64();
    // Keep the data alive until here so the measured peak memory includes it.
    let checksum: f64 = data.row(0).iter().take(1000).map(|&v| v as f64).sum();
    drop(data);

    let len = ((window_seconds * info.sfreq).round() as usize).min(info.n_samples);
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut times = Vec::with_capacity(windows);
    for _ in 0..windows {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let start = (state >> 33) as usize % (info.n_samples - len + 1);
        let t = Instant::now();
        let w = reader.read_f32(&picks, start, start + len)?;
        times.push(t.elapsed().as_secs_f64());
        std::hint::black_box(&w);
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    let max = times.last().copied().unwrap_or(0.0);
    println!(
        "{}",
        json!({
            "file": file, "n_channels": picks.len(), "n_samples": info.n_samples,
            "open_s": open_s, "full_read_s": full_s, "threads": rayon::current_num_threads(),
            "window_seconds": window_seconds, "windows": windows,
            "window_median_s": median, "window_max_s": max, "checksum": checksum,
        })
    );
    Ok(())
}
