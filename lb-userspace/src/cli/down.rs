//! `xlb down`.

use lb_userspace::{down, exit};

use super::{args::LiveArgs, emit};

pub fn run(args: LiveArgs) -> anyhow::Result<u8> {
    let report = down::down(&args.live().pin_path(None))?;
    emit(args.output, &report, down::render)?;
    Ok(exit::OK)
}
