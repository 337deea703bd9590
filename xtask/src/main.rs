//! `cargo xtask`: the one entry point for setting up a machine, building, testing,
//! benchmarking and running the lab. Each task is one module with `Options` and `run`.

mod bench;
mod build;
mod cmd;
mod lab;
mod man;
mod package;
mod setup;
mod test;
mod toolchain;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tasks for developing xlb. Each one runs `setup` first, so a fresh machine needs nothing else.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing xlb needs (toolchain, bpf-linker, Debian packages,
    /// bpffs); idempotent, says what it did and what it skipped.
    Setup(setup::Options),
    /// Build every crate in release mode, the XDP object included.
    Build(build::Options),
    /// Run the whole test suite: formatting, clippy (host and eBPF), unit and kernel-backed tests.
    Test(test::Options),
    /// Run the benchmarks: data plane and control plane (target/bench/dataplane.json,
    /// controlplane.json), or with --e2e HTTP through xlb, HAProxy and direct (e2e.json).
    Bench(bench::Options),
    /// Run the lab: real nginx backends behind the xlb daemon in network namespaces, HTTP
    /// through dsr and ipip VIPs (IPv4 and IPv6), the distribution next to the weights.
    Lab(lab::Options),
    /// Write xlb's man pages (xlb.1 and one per verb) into target/man.
    Man(man::Options),
    /// Build the Debian package target/debian/xlb_VERSION_ARCH.deb: the release xlb
    /// (stripped), the systemd unit, completions, man pages, an example config, the
    /// Prometheus rules and the Grafana dashboard.
    Package(package::Options),
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup(options) => setup::run(&options),
        Task::Build(options) => build::run(&options),
        Task::Test(options) => test::run(&options),
        Task::Bench(options) => bench::run(&options),
        Task::Lab(options) => lab::run(&options),
        Task::Man(options) => man::run(&options),
        Task::Package(options) => package::run(&options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
