//! `bf-pipeline`: Brainformer's data pipeline from raw BIDS recordings to training shards.
//! This file is the table of subcommands and their dispatch: each command's flags, defaults
//! and help text are its `Args` struct in `cli/src/commands/<command>.rs`, beside its `run`.

use anyhow::Result;
use clap::{Parser, Subcommand};

use brainformer_cli::commands::{self, dag::DagArgs};
use bf_pipeline::dag::Stage;

/// Large buffers on transparent huge pages (cli/src/alloc.rs: fewer page faults).
#[global_allocator]
static ALLOC: brainformer_cli::alloc::HugePageAlloc = brainformer_cli::alloc::HugePageAlloc;

/// Raw EEG/MEG recordings → filtered, resampled, tokenized Parquet shards.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Print only warnings and errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

// The subcommands, in `--help` order. A variant's help is its `Args` struct's doc comment;
// the pipeline commands that share `DagArgs` carry theirs here (a `//` comment: a doc comment
// on the enum would become the program's about text).
#[derive(Subcommand, Debug)]
enum Command {
    Info(commands::info::InfoArgs),
    Maxwell(commands::maxwell::MaxwellArgs),
    FindBadsMaxwell(commands::find_bads_maxwell::FindBadsMaxwellArgs),
    FilterChpi(commands::filter_chpi::FilterChpiArgs),
    Convert(commands::convert::ConvertArgs),
    /// Build everything from the raw runs to tokenized Parquet shards (a make-like DAG).
    ///
    /// Stages: preprocess (read with channels.tsv types and bads; band-pass, notch, resample;
    /// bad channels found and EEG bads interpolated; cleaned FIF + JSON sidecar under
    /// derivatives/brainformer/) → segment (windows, dropping those touching BAD stretches) →
    /// split (held-out subjects) → fit-tokenizer (training split only) → tokenize → shards
    /// (derivatives/brainformer/shards/: data/{split}-NNNNN-of-NNNNN.parquet + README.md).
    /// A target is rebuilt only when its inputs' content, its parameters or its code changed;
    /// an interrupted run leaves whole files and the next run carries on. Parameters come
    /// from brainformer.toml (written by ingest); see `bf-pipeline config`.
    ///
    /// One process at a time writes derivatives/brainformer (a lock; the --shard tasks of a
    /// job array share it): another one waits, saying for whom, or refuses with --no-wait.
    /// SIGTERM, SIGINT or SIGUSR1 let the targets in progress finish, start no other, and exit
    /// with status 75; the same command then continues. A split left without subjects is
    /// refused (--allow-empty-split: a warning). Exit status 0: built; 1: error; 75: stopped.
    Tokenize(DagArgs),
    /// Run the pipeline up to the cleaned continuous data only (see `tokenize`).
    Preprocess(DagArgs),
    /// Run the pipeline up to the windows only (see `tokenize`).
    Segment(DagArgs),
    Plan(commands::dag::PlanArgs),
    /// Print the pipeline's DAG in Graphviz DOT (targets that would run are filled).
    Graph(DagArgs),
    /// Print the effective configuration: brainformer.toml with command-line overrides.
    Config(DagArgs),
    Slurm(commands::dag::SlurmCommandArgs),
    Clean(commands::dag::CleanArgs),
    Ingest(commands::ingest::IngestArgs),
    Download(commands::download::DownloadArgs),
    Upload(commands::upload::UploadArgs),
    BenchRead(commands::bench_read::BenchReadArgs),
    Filter(commands::filter::FilterArgs),
    PreprocessFile(commands::preprocess_file::PreprocessFileArgs),
    Resample(commands::resample::ResampleArgs),
    InterpolateBads(commands::bads::InterpolateBadsArgs),
    FindBads(commands::bads::FindBadsArgs),
    Epochs(commands::epochs::EpochsArgs),
    FilterDesign(commands::filter_design::FilterDesignArgs),
}

fn main() {
    brainformer_cli::alloc::keep_freed_memory_for_reuse();
    let cli = Cli::parse();
    brainformer_cli::init_logging(cli.quiet);
    // `download` has its own exit statuses (0 all arrived, 1 some failed, 2 nothing done).
    if let Command::Download(args) = &cli.command {
        std::process::exit(commands::download::run(args, cli.quiet));
    }
    brainformer_cli::exit_on_error(run(cli.command, cli.quiet));
}

fn run(command: Command, quiet: bool) -> Result<()> {
    use commands::*;
    match command {
        Command::Info(a) => info::run(&a),
        Command::Maxwell(a) => maxwell::run(&a),
        Command::FindBadsMaxwell(a) => find_bads_maxwell::run(&a),
        Command::FilterChpi(a) => filter_chpi::run(&a),
        Command::Convert(a) => convert::run(&a),
        Command::Tokenize(a) => dag::run(&a, Stage::Shards, quiet),
        Command::Preprocess(a) => dag::run(&a, Stage::Preprocess, quiet),
        Command::Segment(a) => dag::run(&a, Stage::Segment, quiet),
        Command::Plan(a) => dag::plan(&a.dag, a.json),
        Command::Graph(a) => dag::graph(&a),
        Command::Config(a) => dag::config(&a),
        Command::Slurm(a) => dag::slurm(&a.dag, &a.slurm),
        Command::Clean(a) => dag::clean(&a.dag, a.yes),
        Command::Ingest(a) => ingest::run(&a, quiet),
        Command::Download(_) => unreachable!("handled in main for its exit codes"),
        Command::Upload(a) => upload::run(&a, quiet),
        Command::BenchRead(a) => bench_read::run(&a),
        Command::Filter(a) => filter::run(&a),
        Command::PreprocessFile(a) => preprocess_file::run(&a, quiet),
        Command::Resample(a) => resample::run(&a),
        Command::InterpolateBads(a) => bads::run_interpolate(&a),
        Command::FindBads(a) => bads::run_find(&a),
        Command::Epochs(a) => epochs::run(&a),
        Command::FilterDesign(a) => filter_design::run(&a),
    }
}
