//! Shared pieces of the Brainformer binaries: logging set-up and the subcommands of
//! `bf-pipeline` (one module per command under [`commands`]).

pub mod commands;
pub mod evaluate;
pub mod picks;

/// Logs to stderr with `tracing`; `RUST_LOG` overrides the level.
pub fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Ends the process with the error's whole chain on one line (`file: what is wrong`) and
/// exit code 1, instead of a debug dump with a backtrace.
pub fn exit_on_error(result: anyhow::Result<()>) {
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
