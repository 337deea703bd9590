//! VIP names. The config names every VIP; the kernel knows only its address, port and
//! protocol. Whoever makes a config live records its names for the pin path (under /run/xlb:
//! bpffs holds only BPF objects), so every verb accepts a VIP by name and shows the name beside
//! the address.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::{config::Model, owner, rollout::describe_vip, trusted_dir};

/// VIP names and the VIPs (`ADDRESS:PORT/PROTOCOL`) they name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub vips: BTreeMap<String, String>,
}

impl Names {
    /// The names of `model`'s VIPs.
    pub fn of(model: &Model) -> Names {
        Names {
            vips: model
                .vips
                .iter()
                .map(|vip| (vip.name.clone(), describe_vip(&vip.key())))
                .collect(),
        }
    }

    /// The name of the VIP `spec` (`ADDRESS:PORT/PROTOCOL`), if it has one.
    pub fn name_of(&self, spec: &str) -> Option<String> {
        self.vips
            .iter()
            .find(|(_, vip)| *vip == spec)
            .map(|(name, _)| name.clone())
    }

    /// `text` as `ADDRESS:PORT/PROTOCOL`: the VIP it names, or itself.
    pub fn resolve(&self, text: &str) -> String {
        self.vips
            .get(text)
            .cloned()
            .unwrap_or_else(|| text.to_owned())
    }
}

/// How a VIP is shown to people: its name beside its address, when it has one.
pub fn label(vip: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{name} ({vip})"),
        None => vip.to_owned(),
    }
}

/// Where the names of the xlb pinned at `pin_path` are recorded.
pub fn path(pin_path: &Path) -> PathBuf {
    owner::run_file(pin_path, "names", "json")
}

/// Records the names of `model` for `pin_path` (atomically: readers see old or new).
pub fn record(pin_path: &Path, model: &Model) -> anyhow::Result<()> {
    let path = path(pin_path);
    let record = || {
        let dir = path.parent().unwrap_or(Path::new(owner::RUN_DIR));
        std::fs::create_dir_all(dir)?;
        // Readable by every user, as a plain write left it.
        trusted_dir::replace(&path, &serde_json::to_vec(&Names::of(model))?, 0o644)
    };
    record().with_context(|| format!("recording the VIP names in {}", path.display()))
}

/// The names recorded for `pin_path`; none when nothing was recorded.
pub fn read(pin_path: &Path) -> Names {
    std::fs::read(path(pin_path))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Forgets the names of `pin_path` (`xlb down`).
pub fn forget(pin_path: &Path) {
    let _ = std::fs::remove_file(path(pin_path));
}
