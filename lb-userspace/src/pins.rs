//! Where a running xlb pins its maps, program and XDP link on bpffs. The pins keep forwarding
//! alive without a process, and are how every other `xlb` command reaches the live state.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::links::{FdLink, PinnedLink},
};
use lb_common::map_names;

use crate::maps::{self, Pinned};

/// The default pin directory (`global.pin_path`).
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/xlb";
const PROGRAM: &str = "prog";
const LINK: &str = "link";

/// The live maps of the xlb pinned under `pin_path`.
pub fn open(pin_path: &Path) -> anyhow::Result<Pinned> {
    Pinned::open(pin_path, &map_names::XLB)
}

/// Whether an xlb has pinned its state under `pin_path`.
pub fn exist(pin_path: &Path) -> bool {
    pin_path.join(map_names::META).exists()
}

/// The path of the pinned XDP link.
pub fn link_path(pin_path: &Path) -> PathBuf {
    pin_path.join(LINK)
}

/// Pins every map and the program `program` of `ebpf`, and the XDP `link`.
pub fn pin(
    ebpf: &mut Ebpf,
    program: &str,
    link: FdLink,
    pin_path: &Path,
) -> anyhow::Result<PinnedLink> {
    maps::pin(ebpf, pin_path, &map_names::XLB)?;
    crate::object::xdp_program(ebpf, program)?
        .pin(pin_path.join(PROGRAM))
        .with_context(|| format!("pinning the program under {}", pin_path.display()))?;
    link.pin(link_path(pin_path))
        .with_context(|| format!("pinning the XDP link under {}", pin_path.display()))
}

/// Removes every pin under `pin_path` and the directory. Removing the link pin detaches the
/// program once no process holds the link either.
pub fn remove(pin_path: &Path) -> anyhow::Result<()> {
    if !pin_path.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(pin_path)
        .with_context(|| format!("reading pin directory {}", pin_path.display()))?
    {
        let path = entry?.path();
        std::fs::remove_file(&path).with_context(|| format!("removing pin {}", path.display()))?;
    }
    std::fs::remove_dir(pin_path)
        .with_context(|| format!("removing pin directory {}", pin_path.display()))
}
