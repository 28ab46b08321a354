//! Shared pieces of the Brainformer binaries: logging set-up and the subcommands of
//! `bf-pipeline` (one module per command under [`commands`]).

pub mod alloc;
pub mod commands;

/// Logs to stderr with `tracing`; `RUST_LOG` overrides the level.
pub fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Ends the process with the error's whole chain on one line (`file: what is wrong`) and
/// exit code 1, instead of a debug dump with a backtrace; a [`Resumable`] stop prints its
/// message and exits with [`EXIT_RESUMABLE`].
pub fn exit_on_error(result: anyhow::Result<()>) {
    if let Err(e) = result {
        if let Some(r) = e.downcast_ref::<Resumable>() {
            eprintln!("{r}");
            std::process::exit(EXIT_RESUMABLE);
        }
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// Ends the process quietly, as `cat` or `grep` do, when its standard output is a pipe whose
/// reader has gone (`bf-eval … | head -1`), instead of a panic on the next `println!` ("failed
/// printing to stdout: Broken pipe"). Rust starts programs with SIGPIPE ignored; this restores
/// the default action. Only for binaries that write to no socket (a write to a closed socket
/// would then end the process too): bf-eval, not bf-pipeline (downloads, uploads).
pub fn end_quietly_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default is async-signal-safe and done
    // before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Exit status of a command stopped by a signal at a safe point, whose rerun continues
/// (EX_TEMPFAIL of sysexits.h, "try again later"; bf-train uses it too).
pub const EXIT_RESUMABLE: i32 = 75;

/// A command stopped by a signal at a safe point: the message says what is kept and how to
/// continue.
#[derive(Debug)]
pub struct Resumable(pub String);

impl std::fmt::Display for Resumable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Resumable {}

/// SIGTERM, SIGINT and SIGUSR1 for commands that stop between units of work (the pipeline's
/// targets): the first records itself, a second one of SIGTERM/SIGINT ends the process at once
/// with status 128 + 2 (safe where every output is written atomically: the next run sweeps the
/// temporaries). SLURM sends SIGTERM (or `--signal`) before a time limit or a preemption.
#[derive(Clone)]
pub struct StopSignals {
    signal: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl StopSignals {
    pub fn install() -> anyhow::Result<StopSignals> {
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        use std::sync::Arc;
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
        let signal = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(AtomicBool::new(false));
        for sig in [SIGTERM, SIGINT, SIGUSR1] {
            // Handlers run in the order they were registered: the shutdown sees `armed` as the
            // previous signal left it.
            if sig != SIGUSR1 {
                signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&armed))
                    .map_err(|e| anyhow::anyhow!("installing a handler for signal {sig}: {e}"))?;
            }
            signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)
                .map_err(|e| anyhow::anyhow!("installing a handler for signal {sig}: {e}"))?;
            signal_hook::flag::register(sig, Arc::clone(&armed)).map_err(|e| anyhow::anyhow!("installing a handler for signal {sig}: {e}"))?;
        }
        Ok(StopSignals { signal })
    }

    /// The name of the signal received, if any.
    pub fn received(&self) -> Option<&'static str> {
        match self.signal.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            sig => Some(signal_hook::low_level::signal_name(sig as i32).unwrap_or("a signal")),
        }
    }
}

/// The error's chain joined by `: `, each text once ([`bf_pipeline::error::one_line`], which
/// says why).
pub fn one_line(e: &anyhow::Error) -> String {
    bf_pipeline::error::one_line(e.as_ref())
}

/// `s` as one word for a POSIX shell: as it is when it holds only characters no shell
/// interprets, else in single quotes (a `'` inside becomes `'\''`).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::{one_line, shell_quote};

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("--out=runs/a-1"), "--out=runs/a-1");
        assert_eq!(shell_quote("my runs/ü"), "'my runs/ü'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
    use anyhow::Context;

    #[test]
    fn each_part_of_an_error_chain_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let lib = bf_pipeline::Error::io(std::path::Path::new("/d/x.fif"), io);
        // The library error names the file and repeats its source's text.
        let e = anyhow::Error::from(lib);
        assert_eq!(one_line(&e), "/d/x.fif: No such file or directory (os error 2)");
        // A context naming the same file adds nothing; one saying more is kept.
        let again = Err::<(), _>(e).context("/d/x.fif: No such file or directory (os error 2)").unwrap_err();
        assert_eq!(one_line(&again), "/d/x.fif: No such file or directory (os error 2)");
        let more = Err::<(), _>(again).context("ingest").unwrap_err();
        assert_eq!(one_line(&more), "ingest: /d/x.fif: No such file or directory (os error 2)");
    }
}
