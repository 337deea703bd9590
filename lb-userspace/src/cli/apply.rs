//! `xlb apply FILE`.

use lb_userspace::{apply, config::HostEnvironment};

use super::{
    args::{AcceptArgs, ApplyArgs},
    emit,
};

pub fn run(args: ApplyArgs) -> anyhow::Result<u8> {
    let options = apply::Options {
        canary: args.canary.canary.zip(args.canary.watch),
        ..accepted(args.accept)?
    };
    let report = apply::apply_file(&args.file, &HostEnvironment, &args.live.live(), &options)?;
    emit(args.live.output, &report, apply::render)?;
    Ok(report.code)
}

/// What `--allow-warnings`, `--override` and `--force` accept (`xlb plan` takes them too).
pub fn accepted(accept: AcceptArgs) -> anyhow::Result<apply::Options> {
    apply::Options::accepting(accept.allow_warnings, accept.overrides, accept.force)
}
