//! `xlb doctor`.

use lb_userspace::doctor;

use super::{args::DoctorArgs, emit};

pub fn run(args: DoctorArgs) -> anyhow::Result<u8> {
    let report = doctor::check(&doctor::Options {
        config: args.config,
        interface: args.interface,
        pin_path: args.pin_path,
        backend: args.backend,
        vips: args.vips,
        ipip: args.ipip,
        sample: args.sample,
    })?;
    emit(args.output, &report, doctor::render)?;
    Ok(report.code())
}
