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
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// The error's chain joined by `: `, each text once. Our library errors already name their
/// file and carry their cause's text (`path: os error`), and contexts added at the binaries
/// often name the same file, so anyhow's `{:#}` printed most messages twice
/// (`X: msg: X: msg`). A cause whose text is already on the line is left out; a cause that
/// contains the whole line so far replaces it.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() && text.contains(&line) {
            line = text;
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
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
