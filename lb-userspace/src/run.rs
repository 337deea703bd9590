//! `xlb run`: load, attach, report counters until stopped, detach.

use std::time::Duration;

use lb_common::PROGRAM_NAME;
use tokio::signal::unix::{SignalKind, signal};

use crate::{args::RunArgs, attach, counters::Totals, object};

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut ebpf = object::load(object::XDP_OBJECT, PROGRAM_NAME)?;
    let program = object::xdp_program(&mut ebpf, PROGRAM_NAME)?;
    let mode = attach::attach(program, &args.interface, args.xdp_mode)?;
    println!("xlb: attached to {} ({mode:?} XDP)", args.interface);

    let mut terminate = signal(SignalKind::terminate())?;
    let deadline = async {
        match args.duration {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let period = Duration::from_secs(args.stats_interval.max(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = ticker.tick(), if args.stats_interval > 0 => {
                print!("{}", Totals::read(&ebpf)?.render());
            }
        }
    }
    print!("{}", Totals::read(&ebpf)?.render());
    // Dropping the object detaches the program and frees its maps.
    drop(ebpf);
    println!("xlb: detached from {}", args.interface);
    Ok(())
}
