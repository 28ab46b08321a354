//! `bf-eval`: held-out metrics of a checkpoint beside baselines, and `--forward`, which runs a
//! checkpoint on given inputs so anyone can compare it with PyTorch.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;

/// Evaluate a Brainformer checkpoint on held-out shards, beside baselines.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Checkpoint directory written by bf-train (config.json + model.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Run the checkpoint on the tensors `eeg` and `meg` of this safetensors file (token ids
    /// [B, T, C] or float values [B, L, C]) and write outputs, loss and gradients to --out.
    #[arg(long, value_name = "INPUTS.safetensors")]
    forward: Option<PathBuf>,
    /// With --forward: also decode this many steps greedily (cached decoding).
    #[arg(long)]
    generate: Option<i64>,
    /// Output: a folder for the evaluation, or a .safetensors file with --forward.
    #[arg(long)]
    out: PathBuf,
    /// Where to compute: cpu, cuda, or auto (CUDA when a GPU is visible).
    #[arg(long, default_value = "auto")]
    device: String,
}

fn main() {
    brainformer_cli::exit_on_error(run(Args::parse()));
}

fn run(args: Args) -> Result<()> {
    let device = bf_model::device::parse_device(&args.device).map_err(anyhow::Error::msg)?;
    let (vs, model) = bf_model::load_checkpoint(&args.checkpoint, device)
        .with_context(|| format!("loading the checkpoint {}", args.checkpoint.display()))?;
    if let Some(inputs) = &args.forward {
        bf_model::probe::forward_file(&vs, &model, inputs, &args.out, args.generate)?;
        return Ok(());
    }
    bail!("evaluation on shards is not built yet in this version; --forward runs a checkpoint on given inputs")
}
