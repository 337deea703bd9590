//! `xlb canary promote|abort`.

use lb_userspace::{canary::verb, exit};

use super::{args::CanaryVerbArgs, emit};

pub fn run(args: CanaryVerbArgs) -> anyhow::Result<u8> {
    let finished = verb::end(&args.live.live().pin_path(None), args.action.into())?;
    emit(args.live.output, &finished, verb::render)?;
    Ok(exit::OK)
}
