//! `bf-eval`: held-out metrics of a checkpoint beside baselines (lands with the trainer issue).

use anyhow::{bail, Result};
use clap::Parser;

/// Evaluate a Brainformer checkpoint on held-out shards, beside baselines.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Checkpoint directory written by bf-train (config.json + model.safetensors).
    #[arg(long)]
    checkpoint: Option<std::path::PathBuf>,
}

fn main() {
    brainformer_cli::exit_on_error(run(Args::parse()));
}

fn run(_args: Args) -> Result<()> {
    bail!("evaluation is not built yet in this version")
}
