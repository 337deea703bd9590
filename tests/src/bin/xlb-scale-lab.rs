//! The scale-out lab (`cargo xtask lab --nodes N`): runs [`xlb_tests::scale_out::run_lab`].
//!
//! `xlb-scale-lab [--nodes N] [--requests N]`: N xlb nodes (1 to 8, default 3) behind a BIRD
//! router doing ECMP, and N new connections (1 to 5,000, default 600). The `xlb` binary is
//! `$XLB_BIN`, else the one beside this one. Exits 0 on success, 1 on failure, 2 on a bad
//! argument, 130 after Ctrl-C (with everything removed).

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use xlb_tests::{lab_site, scale_out};

const USAGE: &str = "usage: xlb-scale-lab [--nodes N] [--requests N]";

fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<(usize, usize)> {
    let (mut nodes, mut requests) = (3, 600);
    while let Some(arg) = args.next() {
        let mut number = |name: &str, range: std::ops::RangeInclusive<usize>| {
            let value = args
                .next()
                .with_context(|| format!("{name} needs a number"))?;
            value
                .parse()
                .ok()
                .filter(|n| range.contains(n))
                .with_context(|| format!("{name} {value}: give {range:?}"))
        };
        match arg.as_str() {
            "--nodes" => nodes = number("--nodes", 1..=8)?,
            "--requests" => requests = number("--requests", 1..=5_000)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok((nodes, requests))
}

fn main() -> ExitCode {
    let (nodes, requests) = match parse(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("xlb-scale-lab: {err:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    lab_site::exit_code("xlb-scale-lab", scale_out::run_lab(nodes, requests))
}
