//! The demo lab (README's first command, through `cargo xtask lab`): runs [`xlb_tests::demo`]
//! and prints what happened.

use std::process::ExitCode;

fn main() -> ExitCode {
    let result = xlb_tests::demo::xlb_binary().and_then(|xlb| xlb_tests::demo::run(&xlb, 1000));
    match result {
        Ok(report) => {
            println!("xlb output:\n{}", report.xlb_output);
            println!(
                "client sent {} UDP datagrams to 198.18.0.2:9000 through xlb; {} arrived",
                report.sent, report.received
            );
            println!(
                "xlb counted {} as not-a-VIP and passed them",
                report.counter("reason.not_vip")
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            xlb_tests::netns::exit_if_interrupted();
            eprintln!("xlb-lab: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
