//! `bf-train`: trains the Crossformer on Brainformer shards (the trainer lands with the
//! trainer issue). Today it proves that libtorch is installed and linked: `--self-check`.

use anyhow::{bail, Result};
use clap::Parser;

/// Train the EEG→MEG Crossformer on Brainformer Parquet shards.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Check that libtorch loads: run one 2×2 matmul on --device and print the result as JSON.
    #[arg(long)]
    self_check: bool,
    /// Where to compute: cpu, cuda, or auto (CUDA when a GPU is visible).
    #[arg(long, default_value = "auto")]
    device: String,
}

fn main() {
    brainformer_cli::exit_on_error(run(Args::parse()));
}

fn run(args: Args) -> Result<()> {
    let device = bf_model::device::parse_device(&args.device).map_err(anyhow::Error::msg)?;
    if args.self_check {
        let product = bf_model::device::matmul_self_check(device);
        println!(
            "{}",
            serde_json::json!({
                "device": format!("{device:?}"),
                "cuda_available": tch::Cuda::is_available(),
                "matmul": product,
            })
        );
        return Ok(());
    }
    bail!("training is not built yet in this version; `bf-train --self-check` checks libtorch")
}
