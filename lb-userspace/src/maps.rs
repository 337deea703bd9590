//! Access to the XDP program's maps, wherever they are: in an object this process loaded, or
//! pinned on bpffs by a running `xlb` (the live state every other command reads and changes).

use std::{
    collections::BTreeMap,
    ops::{Bound, RangeBounds},
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
};

use anyhow::{Context as _, bail, ensure};
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

/// Runs `f` on the entries of `range` that array map `name` (created BPF_F_MMAPABLE) holds, in
/// place through one shared, writable mapping of the pages they lie in: reading or writing
/// thousands of entries is one copy rather than a system call (or, batched, a kernel copy) per
/// entry.
/// The kernel lays such a map out as a plain array of its values, so `V` must be the value
/// type, a multiple of 8 bytes as the kernel rounds each entry. Nothing is mapped for an empty
/// range.
pub fn with_mapped<V: aya::Pod, R>(
    maps: &(impl Maps + ?Sized),
    name: &str,
    range: impl RangeBounds<usize>,
    f: impl FnOnce(&mut [V]) -> R,
) -> anyhow::Result<R> {
    let Map::Array(data) = maps.map(name)? else {
        bail!("map {name} is not an array");
    };
    let info = data
        .info()
        .with_context(|| format!("reading the size of {name}"))?;
    ensure!(
        info.value_size() as usize == size_of::<V>() && size_of::<V>().is_multiple_of(8),
        "map {name} holds {}-byte values where {} were expected: the pins come from another \
         version of xlb",
        info.value_size(),
        size_of::<V>()
    );
    let entries = info.max_entries() as usize;
    let start = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&i) => i + 1,
        Bound::Excluded(&i) => i,
        Bound::Unbounded => entries,
    }
    .min(entries);
    ensure!(
        start <= entries,
        "entry {start} lies outside {name} ({entries} entries)"
    );
    if start >= end {
        return Ok(f(&mut []));
    }
    // SAFETY: mapping a BPF_F_MMAPABLE array map's fd shared and writable is how the kernel
    // exposes its memory; the range lies within the map (capped above), and the kernel is the
    // only other party writing it.
    let mut memory = unsafe {
        memmap2::MmapOptions::new()
            .offset((start * size_of::<V>()) as u64)
            .len((end - start) * size_of::<V>())
            .map_mut(data.fd().as_fd().as_raw_fd())
    }
    .with_context(|| format!("memory-mapping {name} failed (is it BPF_F_MMAPABLE?)"))?;
    // SAFETY: the mapping holds `end - start` values of V from an offset that is a multiple of
    // size_of::<V>() (itself a multiple of 8) in a page-aligned mapping, so the pointer is
    // aligned for V (Pod values need no more than 8); any bytes are a valid V; it stays mapped
    // while `memory` lives.
    let values =
        unsafe { std::slice::from_raw_parts_mut(memory.as_mut_ptr().cast::<V>(), end - start) };
    Ok(f(values))
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
