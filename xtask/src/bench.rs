//! `cargo xtask bench`: data-plane benchmarks through BPF_PROG_TEST_RUN and control-plane
//! timings, each figure beside a baseline measured in the same run. Writes
//! target/bench/dataplane.json and target/bench/controlplane.json; the control plane at 1,000
//! VIPs x 100 backends (tests/src/bin/xlb-bench-daemon.rs) into target/bench/daemon.json.
//!
//! `cargo xtask bench --e2e` instead measures short HTTP requests with wrk on the lab's
//! namespaces (tests/src/bin/xlb-bench-e2e.rs): through xlb `dsr` and `ipip`, through HAProxy
//! as the equivalent layer-4 balancer and straight to one backend, keep-alive on and off.
//! Writes target/bench/e2e.json; the lab is removed afterwards, also on error and Ctrl-C.

use std::process::Command;

use crate::{cmd, setup};

#[derive(clap::Args)]
pub struct Options {
    /// Measure end to end instead: requests/s and p50/p99 latency of short HTTP requests
    /// (keep-alive on and off) with wrk through xlb dsr, xlb ipip, HAProxy (mode tcp) and
    /// straight to one backend, in the lab's namespaces; writes target/bench/e2e.json.
    #[arg(long)]
    e2e: bool,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    setup::run(&setup::Options {})?;
    if options.e2e {
        return run_e2e();
    }
    let release =
        cmd::build_release(&["xlb-bench", "xlb-bench-control", "xlb-bench-daemon", "xlb"])?;
    let reports = cmd::workspace_root().join("target/bench");
    for (binary, report) in [
        ("xlb-bench", "dataplane.json"),
        ("xlb-bench-control", "controlplane.json"),
        ("xlb-bench-daemon", "daemon.json"),
    ] {
        cmd::run(
            Command::new(release.join(binary))
                .arg(reports.join(report))
                // The daemon bench runs the release xlb it was built with.
                .env("XLB_BIN", release.join("xlb")),
        )?;
    }
    Ok(())
}

fn run_e2e() -> anyhow::Result<()> {
    let release = cmd::build_release(&["xlb", "xlb-bench-e2e"])?;
    cmd::run_to_cleanup(
        Command::new(release.join("xlb-bench-e2e"))
            .arg(cmd::workspace_root().join("target/bench/e2e.json"))
            .env("XLB_BIN", release.join("xlb")),
    )
}
