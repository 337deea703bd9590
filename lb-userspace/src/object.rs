//! The compiled XDP objects, embedded in every binary that links this library, and loading them.

use std::path::Path;

use anyhow::Context as _;
use aya::{Ebpf, EbpfLoader, maps::MapInfo, programs::Xdp};
use aya_obj::generated::{BPF_F_RDONLY, BPF_F_WRONLY};
use lb_common::{FLOW_SETS_GLOBAL, map_names};

/// The ELF bytes of the xlb XDP program built by build.rs, aligned for the ELF parser.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xlb"));

/// Bare XDP_DROP, XDP_PASS and XDP_TX programs (`bare_drop`, `bare_pass`, `bare_tx`):
/// benchmark baselines, and `bare_pass` for veth peers that must receive native XDP_TX frames.
pub static BASELINE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xlb-baseline"));

/// The backend-side decapsulation program (`xlb_decap`, [`lb_common::DECAP_PROGRAM_NAME`]):
/// strips the outer header `ipip` mode adds, for packets to the addresses in its
/// `XLB_DECAP_ADDRS` map (see [`crate::decap::accept`]).
pub static DECAP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xlb-decap"));

/// Loads an object's maps and the XDP program `name` into the kernel, unattached.
pub fn load(object: &[u8], name: &str) -> anyhow::Result<Ebpf> {
    load_sized(object, name, &[])
}

/// A loader with `capacities` applied. Resizing the flow table ([`map_names::FLOWS`], in
/// sets) also tells the program its number of sets.
fn sized_loader<'a>(capacities: &'a [(&'a str, u32)]) -> EbpfLoader<'a> {
    let mut loader = EbpfLoader::new();
    for (map, entries) in capacities {
        loader.map_max_entries(map, *entries);
        if *map == map_names::FLOWS {
            loader.override_global(FLOW_SETS_GLOBAL, entries, true);
        }
    }
    loader
}

/// `capacities`, with each map of `names` already pinned under `pin_path` at its pinned size:
/// an adopted map keeps its size (the kernel cannot resize a map).
fn adopted_sizes<'a>(
    capacities: &[(&'a str, u32)],
    names: &[&'a str],
    pin_path: &Path,
) -> anyhow::Result<Vec<(&'a str, u32)>> {
    let mut sizes = capacities.to_vec();
    for &name in names {
        let path = pin_path.join(name);
        if !path.exists() {
            continue;
        }
        let entries = MapInfo::from_pin(&path)
            .with_context(|| format!("reading the size of the pinned {}", path.display()))?
            .max_entries();
        match sizes.iter_mut().find(|(map, _)| *map == name) {
            Some(size) => size.1 = entries,
            None => sizes.push((name, entries)),
        }
    }
    Ok(sizes)
}

/// Like [`load`], with the capacity (max entries) of some maps changed from the object's.
pub fn load_sized(object: &[u8], name: &str, capacities: &[(&str, u32)]) -> anyhow::Result<Ebpf> {
    crate::privilege::require("loading the XDP program")?;
    let mut ebpf = sized_loader(capacities).load(object).context(
        "loading the XDP object into the kernel failed: xlb needs root (or CAP_BPF and \
         CAP_NET_ADMIN) and a kernel with BPF enabled",
    )?;
    xdp_program(&mut ebpf, name)?
        .load()
        .with_context(|| format!("the kernel verifier rejected XDP program `{name}`"))?;
    Ok(ebpf)
}

/// A pinned map that `object` defines otherwise, e.g. one an older xlb created without a flag
/// the program now asks for: the kernel cannot change a map's type, key or value size or
/// flags, so it cannot be adopted, only replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redefined {
    /// The map's name (one of [`map_names::XLB`]).
    pub map: &'static str,
    /// The first property that differs: `map_type`, `key_size`, `value_size` or `map_flags`.
    pub property: &'static str,
    /// Its value in the pinned map.
    pub pinned: u32,
    /// Its value in the object.
    pub wanted: u32,
}

/// The maps of `names` pinned under `pin_path` whose definition differs from `object`'s, by
/// the properties aya checks before it reuses a pin. Size is not one of them: an adopted map
/// keeps its size (see [`load_pinned`]).
pub fn redefined_maps(
    object: &[u8],
    names: &[&'static str],
    pin_path: &Path,
) -> anyhow::Result<Vec<Redefined>> {
    let parsed = aya_obj::Object::parse(object).context("parsing the embedded XDP object")?;
    // Access modes describe a descriptor, not the map: aya masks them too.
    let access = BPF_F_RDONLY | BPF_F_WRONLY;
    let mut redefined = Vec::new();
    for &map in names {
        let path = pin_path.join(map);
        if !path.exists() {
            continue;
        }
        let wanted = parsed
            .maps
            .get(map)
            .with_context(|| format!("the XDP object has no map `{map}`"))?;
        let pinned = MapInfo::from_pin(&path)
            .with_context(|| format!("reading the definition of the pinned {}", path.display()))?;
        let pinned_type = pinned.map_type().map_or(u32::MAX, |kind| kind as u32);
        let differs = [
            ("map_type", pinned_type, wanted.map_type()),
            ("key_size", pinned.key_size(), wanted.key_size()),
            ("value_size", pinned.value_size(), wanted.value_size()),
            (
                "map_flags",
                pinned.map_flags() & !access,
                wanted.map_flags() & !access,
            ),
        ]
        .into_iter()
        .find(|(_, pinned, wanted)| pinned != wanted);
        if let Some((property, pinned, wanted)) = differs {
            redefined.push(Redefined {
                map,
                property,
                pinned,
                wanted,
            });
        }
    }
    Ok(redefined)
}

/// Like [`load_sized`], with every map of `names` pinned by name under `pin_path`: a map
/// already pinned there is reused as it is (its entries, and its size, survive), a missing one
/// is created and pinned. This is how a restarted xlb adopts the live state.
pub fn load_pinned(
    object: &[u8],
    name: &str,
    capacities: &[(&str, u32)],
    names: &[&'static str],
    pin_path: &Path,
) -> anyhow::Result<Ebpf> {
    crate::privilege::require("loading the XDP program")?;
    std::fs::create_dir_all(pin_path)
        .with_context(|| format!("creating {}: is bpffs mounted?", pin_path.display()))?;
    let capacities = adopted_sizes(capacities, names, pin_path)?;
    let mut loader = sized_loader(&capacities);
    for &map in names {
        loader.map_pin_path(map, pin_path.join(map));
    }
    let mut ebpf = loader.load(object).with_context(|| {
        format!(
            "loading the XDP object with the maps pinned under {} failed: are they from an \
             incompatible version of xlb? (`xlb down` removes them)",
            pin_path.display()
        )
    })?;
    xdp_program(&mut ebpf, name)?
        .load()
        .with_context(|| format!("the kernel verifier rejected XDP program `{name}`"))?;
    Ok(ebpf)
}

/// The XDP program `name` of a loaded object.
pub fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .with_context(|| format!("the XDP object has no program named `{name}`"))?
        .try_into()
        .with_context(|| format!("program `{name}` is not an XDP program"))
}
