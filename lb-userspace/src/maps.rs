//! Access to the XDP program's maps, wherever they are: in an object this process loaded, or
//! pinned on bpffs by a running `xlb` (the live state every other command reads and changes).

use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, Map, MapData},
};

use crate::exit::NotLoaded;

/// A set of the program's maps by name.
pub trait Maps {
    fn map(&self, name: &str) -> anyhow::Result<&Map>;
    fn map_mut(&mut self, name: &str) -> anyhow::Result<&mut Map>;
}

impl Maps for Ebpf {
    fn map(&self, name: &str) -> anyhow::Result<&Map> {
        Ebpf::map(self, name).with_context(|| format!("the XDP object has no map named {name}"))
    }

    fn map_mut(&mut self, name: &str) -> anyhow::Result<&mut Map> {
        Ebpf::map_mut(self, name).with_context(|| format!("the XDP object has no map named {name}"))
    }
}

/// The maps a running `xlb` pinned in a directory on bpffs.
pub struct Pinned {
    maps: BTreeMap<String, Map>,
}

impl Pinned {
    /// Opens the pinned maps `names` under `dir`.
    pub fn open(dir: &Path, names: &[&str]) -> anyhow::Result<Pinned> {
        crate::pins::visible(dir)?;
        let mut maps = BTreeMap::new();
        for &name in names {
            let path = dir.join(name);
            let data = MapData::from_pin(&path).map_err(|err| {
                NotLoaded(format!(
                    "cannot open pinned map {} ({err}): xlb needs root (or CAP_BPF and \
                     CAP_NET_ADMIN), and the pins must come from this version of xlb",
                    path.display()
                ))
            })?;
            let map = Map::from_map_data(data)
                .with_context(|| format!("pinned map {} has an unknown type", path.display()))?;
            maps.insert(name.to_owned(), map);
        }
        Ok(Pinned { maps })
    }
}

impl Maps for Pinned {
    fn map(&self, name: &str) -> anyhow::Result<&Map> {
        self.maps
            .get(name)
            .with_context(|| format!("map {name} was not opened"))
    }

    fn map_mut(&mut self, name: &str) -> anyhow::Result<&mut Map> {
        self.maps
            .get_mut(name)
            .with_context(|| format!("map {name} was not opened"))
    }
}

/// The array map `name`, typed.
pub fn array<'a, V: aya::Pod>(
    maps: &'a mut (impl Maps + ?Sized),
    name: &str,
) -> anyhow::Result<Array<&'a mut MapData, V>> {
    Array::try_from(maps.map_mut(name)?)
        .with_context(|| format!("map {name} is not an array of the expected type"))
}

/// Pins every map `names` of `ebpf` under `dir` (created if missing).
pub fn pin(ebpf: &Ebpf, dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "creating pin directory {}: is bpffs mounted?",
            dir.display()
        )
    })?;
    for &name in names {
        let path = dir.join(name);
        Maps::map(ebpf, name)?
            .pin(&path)
            .with_context(|| format!("pinning map {name} at {}", path.display()))?;
    }
    Ok(())
}
