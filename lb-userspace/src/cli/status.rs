//! `xlb status`.

use lb_userspace::{exit, status};

use super::{args::LiveArgs, emit};

pub fn run(args: LiveArgs) -> anyhow::Result<u8> {
    let status = status::read_named(&args.live().pin_path(None))?;
    emit(args.output, &status, status::render)?;
    Ok(exit::OK)
}
