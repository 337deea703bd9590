//! The `xlb` command: parses arguments and dispatches to one module per verb.

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use lb_userspace::{
    apply, args, audit, backend, canary, completions, decap_cli, doctor, down, exit, explain,
    manpages, plan, run, stats, status, top, trace, validate,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if err.use_stderr() && args::json_requested(std::env::args()) => {
            return fail(
                args::OutputFormat::Json,
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
        args::Command::Run(args) => run::run(args).await,
        args::Command::Validate(args) => validate::run(args),
        args::Command::Plan(args) => plan::run(args),
        args::Command::Apply(args) => apply::run(args),
        args::Command::Status(args) => status::run(args),
        args::Command::Stats(args) => stats::run(args),
        args::Command::Explain(args) => explain::run(args),
        args::Command::Audit(args) => audit::run(args),
        args::Command::Backend(args) => backend::run(args),
        args::Command::Canary(args) => canary::verb::run(args),
        args::Command::Down(args) => down::run(args),
        args::Command::Completions(args) => completions::run(args),
        args::Command::Decap(args) => decap_cli::run(args),
        args::Command::Trace(args) => trace::run(args).await,
        args::Command::Doctor(args) => doctor::run(args),
        args::Command::Man(args) => manpages::run(&args),
        args::Command::Top(args) => top::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => fail(output, &format!("{err:#}"), exit::code_of(&err)),
    }
}

/// Whether logs are coloured: only for a person at a terminal who has not set NO_COLOR to
/// anything (https://no-color.org: an empty value does not count).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Reports a verb's failure: on stderr for people, or as one JSON document on stdout (the
/// error and the exit code) for scripts.
fn fail(output: args::OutputFormat, error: &str, code: u8) -> ExitCode {
    match output {
        args::OutputFormat::Text => eprintln!("xlb: error: {error}"),
        args::OutputFormat::Json => println!(
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
