//! The `xlb` command line. Doc comments here are the `--help` text.

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
