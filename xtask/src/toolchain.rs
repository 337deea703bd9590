//! The toolchain pinned in rust-toolchain.toml. lb-userspace's build script includes this file
//! by path (a build script cannot depend on xtask), so both read the pin the same way.

use std::path::Path;

use anyhow::Context as _;

/// The `channel` of `<workspace_root>/rust-toolchain.toml`.
pub fn pinned(workspace_root: &Path) -> anyhow::Result<String> {
    let path = workspace_root.join("rust-toolchain.toml");
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
        .with_context(|| format!("{} has no `channel = \"...\"` line", path.display()))
}
