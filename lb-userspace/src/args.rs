//! The `xlb` command line. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// xlb: a layer-4 load balancer in XDP, steering packets in the NIC driver with Maglev hashing.
#[derive(Debug, Parser)]
#[command(name = "xlb", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the XDP program, attach it to an interface and print its counters until stopped
    /// (Ctrl-C, SIGTERM or --duration); detaches on exit.
    Run(RunArgs),
    /// Check a config file without touching the kernel: print every error and warning with its
    /// file, line, field and fix. Exits 0 if valid, 1 if not (errors, or warnings with
    /// --strict), 2 if the file cannot be read.
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to attach to, in the current network namespace (see `ip link`).
    #[arg(long, short)]
    pub interface: String,
    /// Where the XDP program runs: `native` in the driver (fastest), `generic` in the kernel
    /// stack (works on any interface), `auto` native with a fallback to generic.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Native)]
    pub xdp_mode: XdpModeArg,
    /// Stop after this many seconds instead of waiting for Ctrl-C or SIGTERM.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Print the counters every this many seconds while running (0: only at exit).
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub stats_interval: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    Native,
    Generic,
    Auto,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The config file (TOML; see examples/xlb.toml).
    pub file: PathBuf,
    /// Treat warnings as errors: exit 1 if there are any.
    #[arg(long)]
    pub strict: bool,
    /// `text`: one compiler-style message per finding, then a summary line. `json`: one
    /// document with `ok`, the counts and every finding's fields.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}
