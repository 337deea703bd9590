//! The `xlb` command: parses arguments and dispatches to one module per verb.

use std::process::ExitCode;

use clap::Parser as _;
use lb_userspace::{args, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Run(run_args) => run::run(run_args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xlb: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
