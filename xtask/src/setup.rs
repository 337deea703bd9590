//! `cargo xtask setup`: idempotent bootstrap of a Debian 12 machine for building and testing
//! xlb. Each step says whether it found its piece in place or installed it, and a failure
//! names the missing piece.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{cmd, toolchain};

/// bpf-linker release built against the pinned toolchain's own libLLVM.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages the tests, the lab and the benchmarks use.
const DEBIAN_PACKAGES: &[&str] = &[
    "bpftool",
    "iproute2",
    "ethtool",
    "tcpdump",
    "iputils-ping",
    "curl",
    "util-linux",
    "nginx-light",
    "wrk",
    "haproxy",
    // BIRD 2: the BGP speaker of the scale-out lab and tests (`cargo xtask lab --nodes N`).
    "bird2",
    // A terminal for the test of `xlb top` (tests/tests/top.rs reads its screen).
    "tmux",
];
const BPFFS: &str = "/sys/fs/bpf";

#[derive(clap::Args)]
pub struct Options {}

pub fn run(_options: &Options) -> anyhow::Result<()> {
    let toolchain = toolchain::pinned(&cmd::workspace_root())?;
    ensure_toolchain(&toolchain)?;
    ensure_bpf_linker(&toolchain)?;
    ensure_debian_packages()?;
    ensure_promtool()?;
    ensure_bpffs()?;
    println!("setup: done");
    Ok(())
}

fn rustup_run(toolchain: &str, program: &str) -> Command {
    let mut command = Command::new("rustup");
    command.args(["run", toolchain, program]);
    command
}

fn sysroot(toolchain: &str) -> anyhow::Result<PathBuf> {
    let out = cmd::output(rustup_run(toolchain, "rustc").args(["--print", "sysroot"]))
        .with_context(|| format!("toolchain {toolchain} does not run `rustc --print sysroot`"))?;
    Ok(PathBuf::from(out.trim()))
}

fn ensure_toolchain(toolchain: &str) -> anyhow::Result<()> {
    if cmd::output(Command::new("rustup").arg("--version")).is_none() {
        bail!("rustup is missing: xlb pins its toolchain with rustup; install rustup first");
    }
    let installed = cmd::output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        toolchain,
    ]))
    .unwrap_or_default();
    let has = |component: &str| installed.lines().any(|line| line.starts_with(component));
    if has("rustc") && has("rust-src") && has("clippy") && has("rustfmt") {
        println!("setup: toolchain {toolchain} with rust-src, clippy, rustfmt: present, skipped");
        return Ok(());
    }
    println!("setup: toolchain {toolchain}: installing (with rust-src, clippy, rustfmt)");
    cmd::run(Command::new("rustup").args([
        "toolchain",
        "install",
        toolchain,
        "--profile",
        "minimal",
        "--component",
        "rust-src,clippy,rustfmt",
    ]))
}

/// bpf-linker must link bitcode of the pinned rustc's LLVM major, so it is built against that
/// toolchain's own libLLVM. A stamp records which toolchain it was built for; a new pin
/// rebuilds it.
fn ensure_bpf_linker(toolchain: &str) -> anyhow::Result<()> {
    let cargo_home = cmd::cargo_home()?;
    let prefix = cargo_home.join("xlb-llvm").join(toolchain);
    let stamp_path = prefix.join("bpf-linker.stamp");
    let binary = cargo_home.join("bin").join("bpf-linker");
    let stamp = format!("bpf-linker {BPF_LINKER_VERSION} for {toolchain}\n");
    let stamped = std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp);
    if stamped && cmd::output(Command::new(&binary).arg("--version")).is_some() {
        println!("setup: bpf-linker {BPF_LINKER_VERSION} for {toolchain}: present, skipped");
        return Ok(());
    }
    let verbose = cmd::output(rustup_run(toolchain, "rustc").arg("-vV")).unwrap_or_default();
    let llvm_major = verbose
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .and_then(|version| version.split('.').next())
        .with_context(|| format!("`rustc -vV` of {toolchain} names no LLVM version"))?
        .to_owned();
    let libllvm = find_libllvm(&sysroot(toolchain)?.join("lib"))?;
    let soname = libllvm
        .file_name()
        .context("libLLVM path has no file name")?;
    // bpf-linker finds libLLVM through LLVM_PREFIX/lib, and its RUNPATH points there at run
    // time: link both the generic name and the exact soname to the toolchain's library.
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for name in [Path::new("libLLVM.so"), Path::new(soname)] {
        let link = lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("linking {} to {}", link.display(), libllvm.display()))?;
    }
    println!(
        "setup: bpf-linker {BPF_LINKER_VERSION}: building against {} (LLVM {llvm_major})",
        libllvm.display()
    );
    cmd::run(
        rustup_run(toolchain, "cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--force",
                "--no-default-features",
            ])
            .args(["--version", BPF_LINKER_VERSION])
            .args(["--features", &format!("llvm-{llvm_major}")])
            .env("LLVM_PREFIX", &prefix)
            .current_dir(std::env::temp_dir()),
    )
    .context("building bpf-linker failed: it needs the toolchain's libLLVM and gcc")?;
    std::fs::write(&stamp_path, stamp)
        .with_context(|| format!("writing {}", stamp_path.display()))?;
    Ok(())
}

/// The toolchain's real libLLVM (`libLLVM.so.<ver>-rust-<ver>`; the `.so` beside it is a
/// linker script).
fn find_libllvm(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("libLLVM.so."))
        })
        .with_context(|| {
            format!(
                "no libLLVM.so.* in {}: is the toolchain complete?",
                dir.display()
            )
        })
}

fn ensure_debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| {
            let status =
                cmd::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]));
            status.is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        println!(
            "setup: Debian packages {}: present, skipped",
            DEBIAN_PACKAGES.join(" ")
        );
        return Ok(());
    }
    require_root(&format!("installing Debian packages {}", missing.join(" ")))?;
    println!("setup: Debian packages {}: installing", missing.join(" "));
    // A fresh machine's package lists can be stale (404 on security updates): refresh first.
    cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Where `ensure_promtool` puts promtool (on PATH).
const PROMTOOL: &str = "/usr/local/bin/promtool";

/// promtool checks and unit-tests the Prometheus rules in packaging/. Debian ships it in the
/// `prometheus` package, which would also install and start a Prometheus server and 90 MB of
/// web assets: only promtool is extracted from the package.
fn ensure_promtool() -> anyhow::Result<()> {
    if let Some(version) = cmd::output(Command::new("promtool").arg("--version")) {
        let first = version.lines().next().unwrap_or_default();
        println!("setup: promtool ({first}): present, skipped");
        return Ok(());
    }
    require_root("installing promtool")?;
    println!("setup: promtool: extracting it from Debian's prometheus package into {PROMTOOL}");
    let dir = std::env::temp_dir().join(format!("xlb-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let extracted = (|| {
        cmd::run(
            Command::new("apt-get")
                .args(["download", "-q", "prometheus"])
                .current_dir(&dir),
        )
        .context("apt-get download prometheus failed: run `apt-get update` and try again")?;
        let deb = std::fs::read_dir(&dir)?
            .flatten()
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
            .context("apt-get download left no .deb")?;
        let root = dir.join("root");
        cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        cmd::run(
            Command::new("install")
                .args(["-m", "0755"])
                .arg(root.join("usr/bin/promtool"))
                .arg(PROMTOOL),
        )
    })();
    let _ = std::fs::remove_dir_all(&dir);
    extracted
}

fn ensure_bpffs() -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&BPFFS) && fields.get(2) == Some(&"bpf")
    });
    if mounted {
        println!("setup: bpffs at {BPFFS}: mounted, skipped");
        return Ok(());
    }
    require_root(&format!("mounting bpffs at {BPFFS}"))?;
    println!("setup: bpffs at {BPFFS}: mounting");
    cmd::run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))
}

fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root: run `cargo xtask setup` as root");
    }
    Ok(())
}
