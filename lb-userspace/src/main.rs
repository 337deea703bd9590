//! The `xlb` command: parses arguments and dispatches to one module per verb.

use std::process::ExitCode;

use clap::Parser as _;
use lb_userspace::{args, exit, run, validate};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Run(run_args) => run::run(run_args).await.map(|()| exit::OK),
        args::Command::Validate(validate_args) => validate::run(validate_args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("xlb: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
