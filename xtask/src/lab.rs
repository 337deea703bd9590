//! `cargo xtask lab`: builds xlb and the lab binary (`xlb-lab`, tests/src/lab.rs) and runs the
//! lab: namespaces with a client, the load balancer and three nginx backends, the real `xlb run
//! --config` daemon, bursts of HTTP requests through four VIPs, the distribution and `xlb
//! stats`. Everything it creates is removed on exit, on error and on Ctrl-C, unless `--keep`
//! leaves it up for `--down` to remove later. `--drill NAME` runs a training drill instead
//! (tests/src/drills.rs): a scripted failure on a lab of its own, ending in PASS or FAIL.
//! `--nodes N` runs the scale-out lab instead (`xlb-scale-lab`, tests/src/scale_out.rs): N xlb
//! nodes announcing the VIP over BGP (BIRD 2) to a router spreading flows with ECMP.

use std::process::Command;

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
        let release = cmd::build_release(&["xlb", "xlb-scale-lab"])?;
        let mut lab = Command::new(release.join("xlb-scale-lab"));
        lab.env("XLB_BIN", release.join("xlb"))
            .args(["--nodes", &nodes.to_string()]);
        if let Some(requests) = options.requests {
            lab.args(["--requests", &requests.to_string()]);
        }
        return cmd::run_to_cleanup(&mut lab);
    }
    let release = cmd::build_release(&["xlb", "xlb-lab"])?;
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
    cmd::run_to_cleanup(&mut lab)
}
