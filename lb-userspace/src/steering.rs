//! Writing services, backends and Maglev tables into the XDP program's maps, and reproducing
//! in userspace the choice the kernel makes for a flow.

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
};
use lb_common::{
    Backend, FlowKey, Vip, VipKey, flow_hash, map_names, service::VIP_HASH_SOURCE_ONLY,
};

fn array<'a, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &str,
) -> anyhow::Result<Array<&'a mut MapData, V>> {
    let map = ebpf
        .map_mut(name)
        .with_context(|| format!("the XDP object has no map named {name}"))?;
    Array::try_from(map).with_context(|| format!("map {name} is not an array of the expected type"))
}

/// Stores backend `id`.
pub fn set_backend(ebpf: &mut Ebpf, id: u32, backend: &Backend) -> anyhow::Result<()> {
    array(ebpf, map_names::BACKENDS)?
        .set(id, backend, 0)
        .with_context(|| format!("writing backend {id}"))
}

/// Writes a Maglev table (backend ids) into the slot map starting at `base`.
pub fn write_table(ebpf: &mut Ebpf, base: u32, table: &[u32]) -> anyhow::Result<()> {
    let mut slots = array::<u32>(ebpf, map_names::MAGLEV)?;
    for (offset, id) in (base..).zip(table) {
        slots
            .set(offset, id, 0)
            .with_context(|| format!("writing Maglev slot {offset}"))?;
    }
    Ok(())
}

/// Creates or replaces the VIP `key`. Replacing is atomic for packets: this is how a table
/// flip (a new `Vip::active`) takes effect.
pub fn set_vip(ebpf: &mut Ebpf, key: &VipKey, vip: &Vip) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut(map_names::VIPS)
        .with_context(|| format!("the XDP object has no map named {}", map_names::VIPS))?;
    let mut vips: HashMap<&mut MapData, VipKey, Vip> =
        HashMap::try_from(map).context("the VIP map has an unexpected type")?;
    vips.insert(key, vip, 0).context("writing the VIP")
}

/// The slot of `vip`'s live table the kernel uses for a new `flow`.
pub fn slot(vip: &Vip, flow: &FlowKey) -> u32 {
    flow_hash(flow, vip.flags & VIP_HASH_SOURCE_ONLY != 0) % vip.table_size
}
