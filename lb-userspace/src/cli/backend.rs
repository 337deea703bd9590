//! `xlb backend drain|disable|enable VIP BACKEND`.

use lb_userspace::{backend, exit};

use super::{args::BackendArgs, emit};

pub fn run(args: BackendArgs) -> anyhow::Result<u8> {
    let (action, target) = args.verb.parts();
    let report = backend::change_live(
        &target.live.live().pin_path(None),
        &target.vip,
        target.backend,
        action,
        target.force,
    )?;
    emit(target.live.output, &report, backend::render)?;
    Ok(exit::OK)
}
