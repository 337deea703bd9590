//! `cargo xtask bench`: data-plane benchmarks through BPF_PROG_TEST_RUN and control-plane
//! timings, each figure beside a baseline measured in the same run. Writes
//! target/bench/dataplane.json and target/bench/controlplane.json; the control plane at 1,000
//! VIPs x 100 backends (tests/src/bin/xlb-bench-daemon.rs) into target/bench/daemon.json.
//!
//! `cargo xtask bench --e2e` instead measures short HTTP requests with wrk on the lab's
//! namespaces (tests/src/bin/xlb-bench-e2e.rs): through xlb `dsr` and `ipip`, through HAProxy
//! as the equivalent layer-4 balancer and straight to one backend, keep-alive on and off.
//! Writes target/bench/e2e.json; the lab is removed afterwards, also on error and Ctrl-C.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{cmd, setup};

#[derive(clap::Args)]
pub struct Options {
    /// Measure end to end instead: requests/s and p50/p99 latency of short HTTP requests
    /// (keep-alive on and off) with wrk through xlb dsr, xlb ipip, HAProxy (mode tcp) and
    /// straight to one backend, in the lab's namespaces; writes target/bench/e2e.json.
    #[arg(long)]
    e2e: bool,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    setup::run(&setup::Options {})?;
    if options.e2e {
        return run_e2e();
    }
    cmd::run(&mut cmd::cargo(&[
        "build",
        "--release",
        "--bin",
        "xlb-bench",
        "--bin",
        "xlb-bench-control",
        "--bin",
        "xlb-bench-daemon",
        "--bin",
        "xlb",
    ])?)?;
    let root = cmd::workspace_root();
    for (binary, report) in [
        ("xlb-bench", "dataplane.json"),
        ("xlb-bench-control", "controlplane.json"),
        ("xlb-bench-daemon", "daemon.json"),
    ] {
        cmd::run(
            std::process::Command::new(root.join("target/release").join(binary))
                .arg(root.join("target/bench").join(report))
                // The daemon bench runs the release xlb it was built with.
                .env("XLB_BIN", root.join("target/release/xlb")),
        )?;
    }
    Ok(())
}

fn run_e2e() -> anyhow::Result<()> {
    cmd::run(&mut cmd::cargo(&[
        "build",
        "--release",
        "--bin",
        "xlb",
        "--bin",
        "xlb-bench-e2e",
    ])?)?;
    let root = cmd::workspace_root();
    let release = root.join("target/release");
    let mut bench = Command::new(release.join("xlb-bench-e2e"));
    bench
        .arg(root.join("target/bench/e2e.json"))
        .env("XLB_BIN", release.join("xlb"));
    println!("xtask: $ {}", describe(&bench));
    // Ctrl-C reaches the whole foreground process group: xtask waits while the benchmark
    // removes its lab instead of returning the prompt in the middle of it.
    extern "C" fn ignore(_signal: libc::c_int) {}
    // SAFETY: `ignore` is async-signal-safe (it does nothing); exec resets it in the child.
    let previous = unsafe {
        libc::signal(
            libc::SIGINT,
            ignore as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t,
        )
    };
    let status = bench
        .status()
        .with_context(|| format!("could not start `{}`", describe(&bench)));
    // SAFETY: restores the disposition saved above.
    unsafe { libc::signal(libc::SIGINT, previous) };
    let status = status?;
    match status.code() {
        Some(0) => Ok(()),
        Some(130) => std::process::exit(130),
        _ => bail!("`{}` failed ({status})", describe(&bench)),
    }
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}
