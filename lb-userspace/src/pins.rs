//! Where a running xlb pins its maps, program and XDP link on bpffs. The pins keep forwarding
//! alive without a process, and are how every other `xlb` command reaches the live state.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use lb_common::map_names;

use crate::maps::Pinned;

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

/// Pins the program `program` of `ebpf` and the XDP `link` (the maps were pinned when the
/// object was loaded, see [`crate::object::load_pinned`]). The link goes last.
pub fn pin_program_and_link(
    ebpf: &mut Ebpf,
    program: &str,
    link: FdLink,
    pin_path: &Path,
) -> anyhow::Result<()> {
    crate::object::xdp_program(ebpf, program)?
        .pin(pin_path.join(PROGRAM))
        .with_context(|| format!("pinning the program under {}", pin_path.display()))?;
    link.pin(link_path(pin_path))
        .with_context(|| format!("pinning the XDP link under {}", pin_path.display()))?;
    Ok(())
}

/// Replaces the program behind the pinned XDP link with `program` of `ebpf`, atomically (one
/// bpf_link update: no packet sees no program), and re-pins the program.
pub fn upgrade(ebpf: &mut Ebpf, program: &str, pin_path: &Path) -> anyhow::Result<()> {
    let pinned = PinnedLink::from_pin(link_path(pin_path))
        .with_context(|| format!("opening the pinned link under {}", pin_path.display()))?;
    let link =
        XdpLink::try_from(FdLink::from(pinned)).context("the pinned link is not an XDP link")?;
    let xdp = crate::object::xdp_program(ebpf, program)?;
    xdp.attach_to_link(link)
        .context("replacing the program behind the pinned link")?;
    let path = pin_path.join(PROGRAM);
    let _ = std::fs::remove_file(&path);
    xdp.pin(&path)
        .with_context(|| format!("pinning the program at {}", path.display()))?;
    Ok(())
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
