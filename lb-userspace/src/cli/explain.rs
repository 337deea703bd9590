//! `xlb explain SOURCE DESTINATION [PROTOCOL]`.

use lb_userspace::{exit, explain};

use super::{args::ExplainArgs, emit};

pub fn run(args: ExplainArgs) -> anyhow::Result<u8> {
    let explanation = explain::explain_live(
        &args.live.live().pin_path(None),
        args.source,
        &args.destination,
        args.protocol.map(Into::into),
    )?;
    emit(args.live.output, &explanation, explain::text)?;
    Ok(exit::OK)
}
