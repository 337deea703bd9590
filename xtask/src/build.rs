//! `cargo xtask build`: a release build of the workspace, the XDP object included.

use crate::{cmd, setup};

#[derive(clap::Args)]
pub struct Options {}

pub fn run(_options: &Options) -> anyhow::Result<()> {
    setup::run(&setup::Options {})?;
    cmd::run(&mut cmd::cargo(&["build", "--release", "--workspace"])?)
}
