//! The `xlb` command line: parses arguments, calls the library once per verb and prints its
//! typed result as text for people or as one JSON document for scripts.

mod apply;
mod args;
mod audit;
mod backend;
mod canary;
mod completions;
mod decap;
mod doctor;
mod down;
mod explain;
mod man;
mod plan;
mod run;
mod stats;
mod status;
mod top;
mod trace;
mod validate;

use std::{io::IsTerminal as _, process::ExitCode};

use anyhow::Context as _;
use clap::Parser as _;
use lb_userspace::exit;
use serde::Serialize;

use args::{Cli, Command, OutputFormat};

/// Parses the command line, runs its verb and reports a failure in the verb's output format.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if err.use_stderr() && args::json_requested(std::env::args()) => {
            return fail(
                OutputFormat::Json,
                &err.render().to_string(),
                exit::UNREADABLE,
            );
        }
        Err(err) => err.exit(),
    };
    let output = cli.command.output();
    // Structured logs on stderr; RUST_LOG=debug (or xlb=debug) for more.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match cli.command {
        // Only these two wait on sockets and timers: the other verbs start no runtime (its
        // threads were most of a one-change `xlb apply`'s own start).
        Command::Run(args) => async_verb(run::run(args)),
        Command::Validate(args) => validate::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Apply(args) => apply::run(args),
        Command::Status(args) => status::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Backend(args) => backend::run(args),
        Command::Canary(args) => canary::run(args),
        Command::Down(args) => down::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Decap(args) => decap::run(args),
        Command::Trace(args) => async_verb(trace::run(args)),
        Command::Doctor(args) => doctor::run(args),
        Command::Man(args) => man::run(&args),
        Command::Top(args) => top::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => fail(output, &format!("{err:#}"), exit::code_of(&err)),
    }
}

/// Runs `verb` to its end on a multi-threaded tokio runtime.
fn async_verb(verb: impl Future<Output = anyhow::Result<u8>>) -> anyhow::Result<u8> {
    tokio::runtime::Runtime::new()
        .context("starting the async runtime failed")?
        .block_on(verb)
}

/// Prints `report` in `format`; `text` renders it for people.
fn emit<T: Serialize>(
    format: OutputFormat,
    report: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Text => print!("{}", text(report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(report)?),
    }
    Ok(())
}

/// Whether logs are coloured: only for a person at a terminal who has not set NO_COLOR to
/// anything (https://no-color.org: an empty value does not count).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Reports a verb's failure: on stderr for people, or as one JSON document on stdout (the
/// error and the exit code) for scripts.
fn fail(output: OutputFormat, error: &str, code: u8) -> ExitCode {
    match output {
        OutputFormat::Text => eprintln!("xlb: error: {error}"),
        OutputFormat::Json => println!(
            "{:#}",
            serde_json::json!({ "error": error.trim_end(), "exit_code": code })
        ),
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::colour;

    /// Test that logs are coloured only at a terminal, and never with NO_COLOR set.
    #[test]
    fn colour_only_at_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
        assert!(!colour(false, Some("1".into())));
    }
}
