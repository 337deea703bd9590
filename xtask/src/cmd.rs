//! Running commands visibly: every step prints what it runs, and a failure names the command.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// `$CARGO_HOME`, defaulting to ~/.cargo as rustup does.
pub fn cargo_home() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(home));
    }
    let home = std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// A `cargo` command in the workspace root, with `$CARGO_HOME/bin` (bpf-linker) on PATH.
pub fn cargo(args: &[&str]) -> anyhow::Result<Command> {
    let bin = cargo_home()?.join("bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin];
    dirs.extend(std::env::split_paths(&path));
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .args(args)
        .current_dir(workspace_root())
        .env("PATH", std::env::join_paths(dirs)?);
    Ok(command)
}

/// `cargo build --release` of the named binaries; returns target/release, where they are.
pub fn build_release(binaries: &[&str]) -> anyhow::Result<PathBuf> {
    let mut args = vec!["build", "--release"];
    for binary in binaries {
        args.extend(["--bin", binary]);
    }
    run(&mut cargo(&args)?)?;
    Ok(workspace_root().join("target/release"))
}

/// Prints the command, runs it with inherited output, and fails if it fails.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    println!("xtask: $ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("could not start `{}`", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

/// Like [`run`] for a lab or benchmark that removes what it built on Ctrl-C. Ctrl-C reaches
/// the whole foreground process group: xtask waits meanwhile instead of returning the prompt
/// in the middle of the clean-up, then exits 130 as the command did.
pub fn run_to_cleanup(command: &mut Command) -> anyhow::Result<()> {
    extern "C" fn ignore(_signal: libc::c_int) {}
    println!("xtask: $ {}", describe(command));
    // A handler rather than SIG_IGN: exec resets handlers, so the command still gets the
    // default.
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
    let status = status?;
    match status.code() {
        Some(0) => Ok(()),
        // Ctrl-C: the command has removed what it built and said so; exit as it did.
        Some(130) => std::process::exit(130),
        _ => bail!("`{}` failed ({status})", describe(command)),
    }
}

/// Like [`run`] for `cargo test`: passes its output through and returns the passed and failed
/// counts summed over every `test result:` line.
pub fn run_counting_tests(command: &mut Command) -> anyhow::Result<(u64, u64)> {
    println!("xtask: $ {}", describe(command));
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", describe(command)))?;
    let (mut passed, mut failed) = (0, 0);
    let stdout = child.stdout.take().context("no stdout pipe")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(summary) = line.strip_prefix("test result: ") {
            passed += count_before(summary, " passed");
            failed += count_before(summary, " failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "`{}` failed ({status}): {failed} tests failed",
            describe(command)
        );
    }
    Ok((passed, failed))
}

/// The number just before `label` in a summary like `ok. 4 passed; 0 failed; ...`.
fn count_before(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .strip_suffix(label)?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Runs the command quietly and returns its stdout, or None if it could not run or failed.
pub fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}
