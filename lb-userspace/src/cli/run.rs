//! `xlb run`.

use lb_userspace::run;

use super::args::RunArgs;

pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    run::run(run::RunOptions {
        config: args.config,
        interface: args.interface,
        xdp_mode: args.xdp_mode.into(),
        duration: args.duration,
        stats_interval: args.stats_interval,
    })
    .await
}
