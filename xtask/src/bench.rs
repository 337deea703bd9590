//! `cargo xtask bench`: data-plane benchmarks through BPF_PROG_TEST_RUN and control-plane
//! timings, each figure beside a baseline measured in the same run. Writes
//! target/bench/dataplane.json and target/bench/controlplane.json.

use crate::{cmd, setup};

#[derive(clap::Args)]
pub struct Options {}

pub fn run(_options: &Options) -> anyhow::Result<()> {
    setup::run(&setup::Options {})?;
    cmd::run(&mut cmd::cargo(&[
        "build",
        "--release",
        "--bin",
        "xlb-bench",
        "--bin",
        "xlb-bench-control",
    ])?)?;
    let root = cmd::workspace_root();
    for (binary, report) in [
        ("xlb-bench", "dataplane.json"),
        ("xlb-bench-control", "controlplane.json"),
    ] {
        cmd::run(
            std::process::Command::new(root.join("target/release").join(binary))
                .arg(root.join("target/bench").join(report)),
        )?;
    }
    Ok(())
}
