//! Builds the XDP object (lb-ebpf) for bpfel-unknown-none with the pinned toolchain, so a plain
//! `cargo build` produces a complete `xlb`. `cargo xtask setup` installs what this needs.
use anyhow::{Context as _, anyhow};

/// The toolchain from rust-toolchain.toml: aya-build would otherwise use a floating nightly.
fn pinned_toolchain(workspace_root: &std::path::Path) -> anyhow::Result<String> {
    let path = workspace_root.join("rust-toolchain.toml");
    println!("cargo::rerun-if-changed={}", path.display());
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|line| {
            let value = line
                .trim()
                .strip_prefix("channel")?
                .trim()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .ok_or_else(|| anyhow!("{} has no `channel = \"...\"` line", path.display()))
}

fn main() -> anyhow::Result<()> {
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
    let toolchain = pinned_toolchain(metadata.workspace_root.as_std_path())?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(&toolchain))
}
