//! `cargo xtask lab`: builds xlb and runs the demo lab (network namespaces, real traffic,
//! xlb's counters). Everything it creates is removed on exit, on error and on Ctrl-C.

use crate::{cmd, setup};

#[derive(clap::Args)]
pub struct Options {}

pub fn run(_options: &Options) -> anyhow::Result<()> {
    setup::run(&setup::Options {})?;
    cmd::run(&mut cmd::cargo(&[
        "build",
        "--release",
        "--bin",
        "xlb",
        "--bin",
        "xlb-lab",
    ])?)?;
    let release = cmd::workspace_root().join("target/release");
    cmd::run(
        std::process::Command::new(release.join("xlb-lab")).env("XLB_BIN", release.join("xlb")),
    )
}
