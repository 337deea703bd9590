//! `xlb plan FILE`.

use lb_userspace::{
    config::HostEnvironment,
    plan::{self, Sample},
};

use super::{apply::accepted, args::PlanArgs, emit};

pub fn run(args: PlanArgs) -> anyhow::Result<u8> {
    let sample = Sample {
        flows: args.flows,
        seed: args.seed,
    };
    let options = plan::Options::reading(
        sample,
        args.clients.as_deref(),
        args.pcap.as_deref(),
        accepted(args.accept)?,
        args.canary,
    )?;
    let report = plan::plan_with(&args.file, &HostEnvironment, &args.live.live(), &options)?;
    emit(args.live.output, &report, plan::render_text)?;
    Ok(report.code)
}
