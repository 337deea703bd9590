//! The lab (README's first command, through `cargo xtask lab`): runs [`xlb_tests::lab`], or
//! removes a kept one.
//!
//! `xlb-lab [--requests N] [--keep] [--report FILE]` runs it (`--keep` leaves it up);
//! `xlb-lab --down` removes a kept lab; `xlb-lab --drill NAME` runs a training drill of
//! [`xlb_tests::drills`] on a lab of its own (`--drill all`: every drill), exiting 1 if it
//! fails. The `xlb` binary is `$XLB_BIN`, else the one beside
//! this one. Exits 0 on success, 1 on failure, 2 on a bad argument, 130 after Ctrl-C (with
//! everything removed).

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, bail};
use xlb_tests::{demo, drills, lab, lab_site};

const USAGE: &str = "usage: xlb-lab [--requests N] [--keep] [--report FILE] | xlb-lab --down | \
     xlb-lab --drill one-backend|one-server|backend-dies|drain|bad-config|all";

struct Args {
    requests: u32,
    keep: bool,
    down: bool,
    report: Option<PathBuf>,
    drill: Option<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut parsed = Args {
        requests: lab::DEFAULT_REQUESTS,
        keep: false,
        down: false,
        report: None,
        drill: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keep" => parsed.keep = true,
            "--down" => parsed.down = true,
            "--requests" => {
                let value = args.next().context("--requests needs a number")?;
                parsed.requests = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=lab::MAX_REQUESTS).contains(n))
                    .with_context(|| {
                        format!("--requests {value}: give 1 to {}", lab::MAX_REQUESTS)
                    })?;
            }
            "--drill" => {
                let name = args.next().context("--drill needs a name")?;
                if name != "all" && !drills::NAMES.contains(&name.as_str()) {
                    bail!(
                        "--drill {name}: give one of {} or all",
                        drills::NAMES.join(", ")
                    );
                }
                parsed.drill = Some(name);
            }
            "--report" => {
                parsed.report = Some(args.next().context("--report needs a file")?.into())
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if parsed.keep && parsed.down {
        bail!("--keep and --down exclude each other");
    }
    if parsed.drill.is_some() && (parsed.keep || parsed.down || parsed.report.is_some()) {
        bail!("--drill goes alone (a drill's lab is always removed)");
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("xlb-lab: {err:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    lab_site::exit_code("xlb-lab", run(&args))
}

fn run(args: &Args) -> anyhow::Result<()> {
    if args.down {
        // `xlb down` for the pins if the binary is there; the pins go either way.
        let xlb = demo::xlb_binary().ok();
        if !lab_site::down(xlb.as_deref())? {
            println!(
                "lab: no kept lab to remove (no {}, no {}- namespaces or pins)",
                lab_site::state_path().display(),
                lab_site::KEPT_PREFIX
            );
        }
        return Ok(());
    }
    let xlb = demo::xlb_binary()?;
    if let Some(name) = &args.drill {
        if drills::run(&xlb, name)? {
            return Ok(());
        }
        // Each drill said why it failed.
        std::process::exit(1);
    }
    let report = lab::run(
        &xlb,
        &lab::Options {
            requests: args.requests,
            keep: args.keep,
        },
    )?;
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
