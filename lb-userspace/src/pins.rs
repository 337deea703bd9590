//! Where a running xlb pins its maps, program and XDP link on bpffs. The pins keep forwarding
//! alive without a process, and are how every other `xlb` command reaches the live state.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf,
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use lb_common::map_names;

use crate::{
    exit::NotLoaded,
    maps::{Maps, Pinned},
    trusted_dir,
};

/// Where pins must live: a bpffs mount, here where `cargo xtask setup` mounts one.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// The default pin directory (`global.pin_path`), beneath [`BPFFS_ROOT`].
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/xlb";
/// Where `xlb decap` pins by default: one directory per interface beneath it.
pub const DEFAULT_DECAP_PIN_PATH: &str = "/sys/fs/bpf/xlb-decap";
const PROGRAM: &str = "prog";
const LINK: &str = "link";

/// Where a verb finds the running xlb: an explicit pin directory, if one was given.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub pin_path: Option<PathBuf>,
}

impl Live {
    /// The pin directory: the one given, else `config_pin_path`, else the default.
    pub fn pin_path(&self, config_pin_path: Option<&Path>) -> PathBuf {
        self.pin_path
            .clone()
            .or_else(|| config_pin_path.map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_PATH))
    }
}

/// The live maps of the xlb pinned under `pin_path`.
pub fn open(pin_path: &Path) -> anyhow::Result<Pinned> {
    // Pins of an xlb from before table records lack their map: an audit then rebuilds every
    // table to check it.
    let names: Vec<&str> = map_names::XLB
        .into_iter()
        .filter(|&name| name != map_names::TABLE_RECORDS || pin_path.join(name).exists())
        .collect();
    Pinned::open(pin_path, &names)
}

/// Makes `pin_path` ready for a daemon's pins: created 0700 if missing, and refused (nothing
/// is loaded) if another user could change what it holds: see [`trusted_dir::check`]. The bpffs
/// root is world-writable, so anyone may create the directory before xlb does; a directory
/// they own would let them remove the link pin and detach XDP.
pub fn prepare_dir(pin_path: &Path) -> anyhow::Result<()> {
    trusted_dir::create(pin_path, 0o700)
        .and_then(|()| trusted_dir::check_entries(pin_path))
        .with_context(|| {
            format!(
                "the pin directory {} (global.pin_path) is not safe to pin into",
                pin_path.display()
            )
        })
}

/// Whether an xlb has pinned its state under `pin_path`.
pub fn exist(pin_path: &Path) -> bool {
    pin_path.join(map_names::META).exists()
}

/// Ok if the pins under `pin_path` can be reached; else a [`NotLoaded`] error saying why:
/// no privilege, nothing pinned there, or bpffs not visible from here.
pub fn visible(pin_path: &Path) -> Result<(), NotLoaded> {
    crate::privilege::require("reaching the running xlb")?;
    match std::fs::metadata(pin_path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(NotLoaded(format!(
            "{} is not a directory of pins: pass the --pin-path (or XLB_PIN_PATH) the running \
             xlb uses",
            pin_path.display()
        ))),
        Err(err) => Err(NotLoaded(format!(
            "nothing is loaded: {} cannot be opened ({err}); start xlb with `xlb run --config \
             FILE`, or pass the --pin-path (or set XLB_PIN_PATH) the running xlb uses{}",
            pin_path.display(),
            hidden_bpffs_hint(pin_path)
        ))),
    }
}

/// When the nearest existing ancestor of `pin_path` is not on bpffs (as inside `ip netns
/// exec`, which remounts /sys), how to reach the pins; else nothing.
fn hidden_bpffs_hint(pin_path: &Path) -> String {
    let Some(ancestor) = pin_path.ancestors().skip(1).find(|a| a.is_dir()) else {
        return String::new();
    };
    if on_bpffs(ancestor) {
        return String::new();
    }
    format!(
        ". {} is not on bpffs here, so pins are not visible from this mount namespace: \
         `ip netns exec` remounts /sys and hides them; enter only the network namespace \
         instead (`nsenter --net=/run/netns/NAME xlb ...`)",
        ancestor.display()
    )
}

/// Whether `path` is on a bpffs mount.
pub fn on_bpffs(path: &Path) -> bool {
    /// BPF_FS_MAGIC (linux/magic.h).
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain data, for which all-zero bytes are a valid value.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs writes only into the struct it is given; the path is NUL-terminated.
    (unsafe { libc::statfs(path.as_ptr(), &mut fs) }) == 0 && fs.f_type as i64 == BPF_FS_MAGIC
}

/// The path of the pinned program.
pub fn program_path(pin_path: &Path) -> PathBuf {
    pin_path.join(PROGRAM)
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
        .pin(program_path(pin_path))
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
    let path = program_path(pin_path);
    let _ = std::fs::remove_file(&path);
    xdp.pin(&path)
        .with_context(|| format!("pinning the program at {}", path.display()))?;
    Ok(())
}

/// The daemon's own hold on the XDP link and the spare it re-pins with. While it lives the
/// program stays attached even if someone removes the link pin; [`Keeper::restore`] puts back
/// any pin that went missing.
pub struct Keeper {
    pin_path: PathBuf,
    /// Keeps the link (and so the attachment) alive whatever happens to the pin.
    _held: FdLink,
    /// A second descriptor of the same link, consumed by a re-pin (which hands it back when
    /// it works). A failed re-pin loses it; `_held` still keeps the program attached.
    spare: Option<FdLink>,
}

impl Keeper {
    /// Opens two descriptors of the link pinned under `pin_path`.
    pub fn open(pin_path: &Path) -> anyhow::Result<Keeper> {
        let open = || {
            PinnedLink::from_pin(link_path(pin_path))
                .map(FdLink::from)
                .with_context(|| format!("opening the pinned link under {}", pin_path.display()))
        };
        Ok(Keeper {
            pin_path: pin_path.to_path_buf(),
            _held: open()?,
            spare: Some(open()?),
        })
    }

    /// Re-pins whatever of the maps `names` of `ebpf`, its program `program` and the link is
    /// no longer pinned; returns the paths it restored. The link goes last, as at start-up.
    pub fn restore(
        &mut self,
        ebpf: &mut Ebpf,
        program: &str,
        names: &[&str],
    ) -> anyhow::Result<Vec<PathBuf>> {
        let missing = |path: &Path| path.symlink_metadata().is_err();
        let mut restored = Vec::new();
        if missing(&self.pin_path) {
            prepare_dir(&self.pin_path)?;
        }
        for &name in names {
            let path = self.pin_path.join(name);
            if missing(&path) {
                Maps::map(ebpf, name)?
                    .pin(&path)
                    .with_context(|| format!("re-pinning map {name} at {}", path.display()))?;
                restored.push(path);
            }
        }
        let path = program_path(&self.pin_path);
        if missing(&path) {
            crate::object::xdp_program(ebpf, program)?
                .pin(&path)
                .with_context(|| format!("re-pinning the program at {}", path.display()))?;
            restored.push(path);
        }
        let path = link_path(&self.pin_path);
        if missing(&path) {
            let Some(spare) = self.spare.take() else {
                bail!(
                    "the XDP link pin {} is gone and cannot be restored (an earlier re-pin \
                     failed): the program stays attached only while this daemon runs; restart \
                     xlb to pin it again",
                    path.display()
                );
            };
            let pinned = spare
                .pin(&path)
                .with_context(|| format!("re-pinning the XDP link at {}", path.display()))?;
            self.spare = Some(FdLink::from(pinned));
            restored.push(path);
        }
        Ok(restored)
    }
}

/// Pins the maps `names` of `ebpf` under `pin_path` in place of whatever is pinned there by
/// those names (a capacity change: the old maps live on while a program uses them).
pub fn replace_maps(ebpf: &Ebpf, names: &[&str], pin_path: &Path) -> anyhow::Result<()> {
    for &name in names {
        let path = pin_path.join(name);
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(err).with_context(|| format!("removing the pin {}", path.display()));
            }
            _ => {}
        }
        Maps::map(ebpf, name)?
            .pin(&path)
            .with_context(|| format!("pinning map {name} at {}", path.display()))?;
    }
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
