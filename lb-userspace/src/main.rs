//! The `xlb` command: parses arguments and dispatches to one module per verb.

use std::process::ExitCode;

use clap::Parser as _;
use lb_userspace::{
    apply, args, audit, backend, completions, down, exit, explain, plan, run, stats, status,
    validate,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = args::Cli::parse();
    // Structured logs on stderr; RUST_LOG=debug (or xlb=debug) for more.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
        args::Command::Down(args) => down::run(args),
        args::Command::Completions(args) => completions::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("xlb: error: {err:#}");
            ExitCode::from(exit::code_of(&err))
        }
    }
}
