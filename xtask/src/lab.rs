//! `cargo xtask lab`: builds xlb and the lab binary (`xlb-lab`, tests/src/lab.rs) and runs the
//! lab: namespaces with a client, the load balancer and three nginx backends, the real `xlb run
//! --config` daemon, bursts of HTTP requests through four VIPs, the distribution and `xlb
//! stats`. Everything it creates is removed on exit, on error and on Ctrl-C, unless `--keep`
//! leaves it up for `--down` to remove later. `--drill NAME` runs a training drill instead
//! (tests/src/drills.rs): a scripted failure on a lab of its own, ending in PASS or FAIL.
//! `--nodes N` runs the scale-out lab instead (`xlb-scale-lab`, tests/src/scale_out.rs): N xlb
//! nodes announcing the VIP over BGP (BIRD 2) to a router spreading flows with ECMP.

use std::process::{Command, ExitStatus};

use anyhow::{Context as _, bail};

use crate::{cmd, setup};

#[derive(clap::Args)]
pub struct Options {
    /// Leave the lab running (namespaces xlblab-*, nginx, the xlb daemon) and print commands
    /// to poke at it; `--down` removes it.
    #[arg(long, conflicts_with = "down")]
    keep: bool,
    /// Remove a lab left running by `--keep` (says so if there is none).
    #[arg(long)]
    down: bool,
    /// HTTP requests per VIP (1 to 2,000; default 300).
    #[arg(long, value_name = "N", conflicts_with = "down")]
    requests: Option<u32>,
    /// Run a training drill on a lab of its own instead of the bursts: one-backend (all traffic
    /// forced onto one server, the alert), one-server (two entries of one server; backend
    /// verbs refuse down-to-one), backend-dies, drain, bad-config, canary (a bad config rolled
    /// back from its slice, a good one promoted), or all. Exits
    /// non-zero if a drill fails.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with_all = ["keep", "down", "requests"],
        value_parser = ["one-backend", "one-server", "backend-dies", "drain", "bad-config", "canary", "all"]
    )]
    drill: Option<String>,
    /// Run the scale-out lab instead: N xlb nodes (1 to 8), each with BIRD announcing the VIP
    /// over BGP to a router (BIRD) that spreads connections over them with ECMP; prints which
    /// node and backend served the connections (`--requests`: how many, default 600).
    #[arg(long, value_name = "N", conflicts_with_all = ["keep", "down", "drill"])]
    nodes: Option<u32>,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    setup::run(&setup::Options {})?;
    if let Some(nodes) = options.nodes {
        cmd::run(&mut cmd::cargo(&[
            "build",
            "--release",
            "--bin",
            "xlb",
            "--bin",
            "xlb-scale-lab",
        ])?)?;
        let release = cmd::workspace_root().join("target/release");
        let mut lab = Command::new(release.join("xlb-scale-lab"));
        lab.env("XLB_BIN", release.join("xlb"))
            .args(["--nodes", &nodes.to_string()]);
        if let Some(requests) = options.requests {
            lab.args(["--requests", &requests.to_string()]);
        }
        let status = run_through_ctrl_c(&mut lab)?;
        return match status.code() {
            Some(0) => Ok(()),
            Some(130) => std::process::exit(130),
            _ => bail!("`{}` failed ({status})", describe(&lab)),
        };
    }
    cmd::run(&mut cmd::cargo(&[
        "build",
        "--release",
        "--bin",
        "xlb",
        "--bin",
        "xlb-lab",
    ])?)?;
    let release = cmd::workspace_root().join("target/release");
    let mut lab = Command::new(release.join("xlb-lab"));
    lab.env("XLB_BIN", release.join("xlb"));
    if options.keep {
        lab.arg("--keep");
    }
    if options.down {
        lab.arg("--down");
    }
    if let Some(requests) = options.requests {
        lab.args(["--requests", &requests.to_string()]);
    }
    if let Some(drill) = &options.drill {
        lab.args(["--drill", drill]);
    }
    let status = run_through_ctrl_c(&mut lab)?;
    match status.code() {
        Some(0) => Ok(()),
        // Ctrl-C: the lab has removed what it built and said so; exit as it did.
        Some(130) => std::process::exit(130),
        _ => bail!("`{}` failed ({status})", describe(&lab)),
    }
}

/// Runs `command` while Ctrl-C reaches only it (the whole foreground process group gets the
/// signal): xtask waits for the lab to remove what it built instead of returning the prompt
/// in the middle of it.
fn run_through_ctrl_c(command: &mut Command) -> anyhow::Result<ExitStatus> {
    extern "C" fn ignore(_signal: libc::c_int) {}
    println!("xtask: $ {}", describe(command));
    // A handler rather than SIG_IGN: exec resets handlers, so the lab still gets the default.
    // SAFETY: `ignore` is async-signal-safe (it does nothing).
    let previous = unsafe {
        libc::signal(
            libc::SIGINT,
            ignore as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t,
        )
    };
    let status = command
        .status()
        .with_context(|| format!("could not start `{}`", describe(command)));
    // SAFETY: restores the disposition saved above.
    unsafe { libc::signal(libc::SIGINT, previous) };
    status
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}
