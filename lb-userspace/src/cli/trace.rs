//! `xlb trace`: each packet is printed as it comes (text), or all at the end (JSON).

use lb_userspace::{
    exit,
    trace::{self, Stopped},
};

use super::args::{OutputFormat, TraceArgs};

pub async fn run(args: TraceArgs) -> anyhow::Result<u8> {
    let output = args.live.output;
    let pin_path = args.live.live().pin_path(None);
    let options = trace::Options {
        vip: args.vip,
        backend: args.backend,
        reason: args.reason,
        client: args.client,
        count: args.count,
        duration: args.duration,
        write: args.write,
    };
    let report = trace::trace(&pin_path, &options, |traced| {
        if output == OutputFormat::Text {
            println!("{}", trace::line(traced));
        }
    })
    .await?;
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => {
            let stopped = match report.stopped {
                Stopped::Count => "--count reached",
                Stopped::Duration => "--duration over",
                Stopped::Signal => "interrupted",
            };
            let written = report
                .pcap
                .as_ref()
                .map(|path| format!(", written to {}", path.display()))
                .unwrap_or_default();
            eprintln!(
                "xlb trace: {} packets ({stopped}){written}",
                report.packets.len()
            );
        }
    }
    Ok(exit::OK)
}
