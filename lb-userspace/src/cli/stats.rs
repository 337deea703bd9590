//! `xlb stats`.

use std::time::Duration;

use anyhow::Context as _;
use lb_userspace::{exit, stats};

use super::{args::StatsArgs, emit};

pub fn run(args: StatsArgs) -> anyhow::Result<u8> {
    let interval = match args.interval {
        None => None,
        Some(seconds) => Some(
            Duration::try_from_secs_f64(seconds)
                .ok()
                .filter(|d| !d.is_zero())
                .with_context(|| {
                    format!(
                        "--interval {seconds} is not a positive number of seconds: pass e.g. \
                         --interval 1 (or leave it out for totals only)"
                    )
                })?,
        ),
    };
    let stats = stats::read_named(&args.live.live().pin_path(None), interval, args.skew_factor)?;
    emit(args.live.output, &stats, stats::render)?;
    Ok(exit::OK)
}
