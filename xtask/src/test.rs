//! `cargo xtask test`: the whole suite, as CI runs it. Formatting and clippy (host crates, and
//! lb-ebpf for its own target), then every unit and kernel-backed test, then a count of the
//! privileged tests that really ran.

use anyhow::bail;

use crate::{cmd, setup};

#[derive(clap::Args)]
pub struct Options {
    /// Extra arguments for `cargo test` (e.g. a test name filter).
    #[arg(trailing_var_arg = true)]
    pub cargo_test_args: Vec<String>,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    setup::run(&setup::Options {})?;
    cmd::run(&mut cmd::cargo(&["fmt", "--all", "--", "--check"])?)?;
    cmd::run(&mut cmd::cargo(&[
        "clippy",
        "--workspace",
        "--exclude",
        "lb-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?)?;
    cmd::run(&mut cmd::cargo(&[
        "clippy",
        "--package",
        "lb-ebpf",
        "--bins",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ])?)?;
    // The namespace tests run the real `xlb` binary.
    cmd::run(&mut cmd::cargo(&[
        "build",
        "--package",
        "lb-userspace",
        "--bin",
        "xlb",
    ])?)?;

    let target = cmd::workspace_root().join("target");
    let log = target.join("privileged-tests.log");
    let _ = std::fs::remove_file(&log);
    let mut test = cmd::cargo(&[
        "test",
        "--workspace",
        "--exclude",
        "lb-ebpf",
        "--no-fail-fast",
    ])?;
    test.args(&options.cargo_test_args)
        .env("XLB_PRIVILEGED_LOG", &log)
        .env("XLB_BIN", target.join("debug/xlb"));
    let result = cmd::run_counting_tests(&mut test);

    let records = std::fs::read_to_string(&log).unwrap_or_default();
    let ran = records.lines().filter(|l| l.starts_with("ran ")).count();
    let skipped = records
        .lines()
        .filter(|l| l.starts_with("skipped "))
        .count();
    println!("xtask: privileged (kernel-backed) tests: {ran} ran, {skipped} skipped");
    let (passed, failed) = result?;
    println!("tests: {passed} passed, {failed} failed");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let filtered = !options.cargo_test_args.is_empty();
    if ci && (skipped > 0 || (ran == 0 && !filtered)) {
        bail!("under CI every privileged test must run: {ran} ran, {skipped} skipped");
    }
    Ok(())
}
