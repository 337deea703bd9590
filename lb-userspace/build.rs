//! Builds the XDP object (lb-ebpf) for bpfel-unknown-none with the pinned toolchain, so a plain
//! `cargo build` produces a complete `xlb`. `cargo xtask setup` installs what this needs.
use anyhow::{Context as _, anyhow};

// One reading of rust-toolchain.toml for xtask and this script.
#[path = "../xtask/src/toolchain.rs"]
mod toolchain;

/// Sets `XLB_COMMIT` (for `xlb_build_info`) to the commit being built, or `unknown` outside a
/// git checkout (e.g. a source tarball), and rebuilds when HEAD moves.
fn record_commit() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|text| text.trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=XLB_COMMIT={commit}");
    // HEAD names the branch; the branch's ref file (or packed-refs) moves on each commit.
    let reference = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"]
        .into_iter()
        .chain(reference.as_deref())
    {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", name]) {
            println!("cargo::rerun-if-changed={path}");
        }
    }
}

fn main() -> anyhow::Result<()> {
    record_commit();
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == "lb-ebpf")
        .ok_or_else(|| anyhow!("the lb-ebpf package is missing from the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", ebpf.manifest_path))?;
    // The pinned toolchain: aya-build would otherwise use a floating nightly.
    let workspace_root = metadata.workspace_root.as_std_path();
    println!(
        "cargo::rerun-if-changed={}",
        workspace_root.join("rust-toolchain.toml").display()
    );
    let toolchain = toolchain::pinned(workspace_root)?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(&toolchain))
}
