//! Writing services, backends and Maglev tables into the XDP program's maps, and reproducing
//! in userspace the choice the kernel makes for a flow.

use std::collections::BTreeSet;

use crate::maps::{Maps, array};
use anyhow::{Context as _, bail};
use aya::maps::{HashMap, MapData};
use lb_common::{
    Backend, Config, FlowKey, Vip, VipKey, flow_hash, map_names,
    service::{AddrKey, MAGLEV_CHUNK_SLOTS, MaglevChunk, VipFilter, vip_filter_bit},
};

/// Stores backend `id`.
pub fn set_backend(
    ebpf: &mut (impl Maps + ?Sized),
    id: u32,
    backend: &Backend,
) -> anyhow::Result<()> {
    array(ebpf, map_names::BACKENDS)?
        .set(id, backend, 0)
        .with_context(|| format!("writing backend {id}"))
}

/// Writes a Maglev table (backend ids) into the slot map starting at `base`.
///
/// The slot map is memory-mapped (BPF_F_MMAPABLE; its 16-slot values make it a plain u32
/// array in memory), so a 65,537-slot table is one copy rather
/// than 65,537 system calls. Write only a copy no live VIP points at: packets read the map
/// while it is written.
pub fn write_table(
    ebpf: &mut (impl Maps + ?Sized),
    base: u32,
    table: &[u32],
) -> anyhow::Result<()> {
    write_tables(ebpf, &[(base, table)])
}

/// Writes several tables, each at its starting slot, with one mapping of the slot map.
pub fn write_tables(
    ebpf: &mut (impl Maps + ?Sized),
    tables: &[(u32, &[u32])],
) -> anyhow::Result<()> {
    write_tables_halfway(ebpf, tables, &mut || Ok(()))
}

/// [`write_tables`], calling `halfway` when half of each table is written and stopping at its
/// error: a fault point for tests of what a failure part-way through a table leaves behind.
pub fn write_tables_halfway(
    ebpf: &mut (impl Maps + ?Sized),
    tables: &[(u32, &[u32])],
    halfway: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let spans: Vec<(u32, u32)> = tables
        .iter()
        .map(|&(base, table)| (base, table.len() as u32))
        .collect();
    with_slots(ebpf, &spans, |slots, origin| {
        for &(base, table) in tables {
            let start = base as usize - origin;
            let range = start..start + table.len();
            let Some(dst) = slots.get_mut(range) else {
                bail!(
                    "a table of {} slots at slot {base} does not fit in {}: load the program \
                     with a larger capacity",
                    table.len(),
                    map_names::MAGLEV,
                );
            };
            let half = table.len() / 2;
            dst[..half].copy_from_slice(&table[..half]);
            halfway()?;
            dst[half..].copy_from_slice(&table[half..]);
        }
        Ok(())
    })?
}

/// Reads `len` slots starting at `base` (a table copy) from the slot map.
pub fn read_table(ebpf: &(impl Maps + ?Sized), base: u32, len: u32) -> anyhow::Result<Vec<u32>> {
    let mut tables = read_tables(ebpf, &[(base, len)])?;
    Ok(tables.remove(0))
}

/// Reads each (`base`, `len`) table copy from the slot map through one mapping of the pages
/// they span: the kernel maps every page of a mapping at mmap, so one mapping per table, or
/// of the whole map for one table, would cost pages nobody reads.
pub fn read_tables(
    ebpf: &(impl Maps + ?Sized),
    ranges: &[(u32, u32)],
) -> anyhow::Result<Vec<Vec<u32>>> {
    read_tables_with(ebpf, ranges, |_, table| table.to_vec())
}

/// [`read_tables`] for callers that only look at the tables (compare, count): `f` gets each
/// table's position in `ranges` and its slots in place, which saves copying them out.
pub fn read_tables_with<R>(
    ebpf: &(impl Maps + ?Sized),
    ranges: &[(u32, u32)],
    mut f: impl FnMut(usize, &[u32]) -> R,
) -> anyhow::Result<Vec<R>> {
    with_slots(ebpf, ranges, |slots, origin| {
        ranges
            .iter()
            .enumerate()
            .map(|(i, &(base, len))| {
                let start = base as usize - origin;
                let table = slots.get(start..start + len as usize).with_context(|| {
                    format!("slots {base}..+{len} lie outside {}", map_names::MAGLEV)
                })?;
                Ok(f(i, table))
            })
            .collect()
    })?
}

/// `f` of each (`base`, `len`) table copy (and its position in `ranges`), read in place
/// through one mapping (nothing is copied) on as many threads as the host has CPUs: what
/// `status`, `stats` and `audit` need of 1,000 tables.
pub fn map_tables<R: Send>(
    ebpf: &(impl Maps + ?Sized),
    ranges: &[(u32, u32)],
    f: impl Fn(usize, &[u32]) -> R + Sync,
) -> anyhow::Result<Vec<R>> {
    with_slots(ebpf, ranges, |slots, origin| {
        let slots: &[u32] = slots;
        let tables: Vec<(usize, &[u32])> = (0..)
            .zip(ranges)
            .map(|(i, &(base, len))| {
                let start = base as usize - origin;
                let table = slots.get(start..start + len as usize).with_context(|| {
                    format!("slots {base}..+{len} lie outside {}", map_names::MAGLEV)
                })?;
                Ok((i, table))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(crate::parallel::map(&tables, |&(i, t)| f(i, t)))
    })?
}

/// Runs `f` on the slot map's memory around `spans` (base, len), every slot as one u32: `f`
/// gets the slots of the chunks from the one holding the first slot of `spans` to the one
/// holding their last, and the index of the first slot it gets (`origin`). Nothing is mapped
/// for no spans.
fn with_slots<R>(
    maps: &(impl Maps + ?Sized),
    spans: &[(u32, u32)],
    f: impl FnOnce(&mut [u32], usize) -> R,
) -> anyhow::Result<R> {
    let chunk = MAGLEV_CHUNK_SLOTS as usize;
    let Some(low) = spans.iter().map(|&(base, _)| base as usize / chunk).min() else {
        return Ok(f(&mut [], 0));
    };
    let high = spans
        .iter()
        .map(|&(base, len)| (base as usize + len as usize).div_ceil(chunk))
        .max()
        .unwrap_or(low)
        .max(low + 1);
    crate::maps::with_mapped(
        maps,
        map_names::MAGLEV,
        low..high,
        |chunks: &mut [MaglevChunk]| f(chunks.as_flattened_mut(), low * chunk),
    )
}

/// Creates or replaces the VIP `key`. Replacing is atomic for packets: this is how a table
/// flip (a new `Vip::active`) takes effect. The address's filter bit is set first, so no packet
/// for a new VIP is turned away by the filter.
pub fn set_vip(ebpf: &mut (impl Maps + ?Sized), key: &VipKey, vip: &Vip) -> anyhow::Result<()> {
    let mut filters = array::<VipFilter>(ebpf, map_names::VIP_FILTER)?;
    let mut filter = filters
        .get(&0, 0)
        .context("reading the VIP address filter")?;
    let bit = vip_filter_bit(&key.addr, key.family);
    filter[(bit / 64) as usize] |= 1 << (bit % 64);
    filters
        .set(0, &filter, 0)
        .context("writing the VIP address filter")?;
    vip_addrs(ebpf)?
        .insert(&key.address(), &0, 0)
        .context("writing the VIP address")?;
    let map = ebpf.map_mut(map_names::VIPS)?;
    let mut vips: HashMap<&mut MapData, VipKey, Vip> =
        HashMap::try_from(map).context("the VIP map has an unexpected type")?;
    vips.insert(key, vip, 0).context("writing the VIP")
}

fn vip_addrs(
    maps: &mut (impl Maps + ?Sized),
) -> anyhow::Result<HashMap<&mut MapData, AddrKey, u32>> {
    HashMap::try_from(maps.map_mut(map_names::VIP_ADDRS)?)
        .context("the VIP address map has an unexpected type")
}

/// Makes the VIP address map hold the addresses of `keys` and no others: adds the missing
/// ones first, then removes the rest.
pub fn set_vip_addrs<'a>(
    maps: &mut (impl Maps + ?Sized),
    keys: impl IntoIterator<Item = &'a VipKey>,
) -> anyhow::Result<()> {
    let wanted: BTreeSet<AddrKey> = keys.into_iter().map(VipKey::address).collect();
    let present: BTreeSet<AddrKey> =
        crate::batch::hash_map::<AddrKey, u32>(maps, map_names::VIP_ADDRS)
            .context("reading the VIP address map")?
            .into_iter()
            .map(|(addr, _)| addr)
            .collect();
    let mut addrs = vip_addrs(maps)?;
    for addr in wanted.difference(&present) {
        addrs.insert(addr, &0, 0).context("writing a VIP address")?;
    }
    for addr in present.difference(&wanted) {
        addrs.remove(addr).context("removing a VIP address")?;
    }
    Ok(())
}

/// The start of the table copy a new `flow` of `vip` takes, as the kernel picks it
/// ([`Vip::table_slot`]; under a canary, by [`lb_common::canary::table_copy`]).
pub fn copy_base(vip: &Vip, flow: &FlowKey) -> u32 {
    vip.table_slot(flow, flow_hash(flow, false)).base
}

/// The slot of `vip`'s live table the kernel uses for a new `flow` ([`Vip::table_slot`]).
pub fn slot(vip: &Vip, flow: &FlowKey) -> u32 {
    vip.table_slot(flow, flow_hash(flow, false)).slot
}

/// Replaces the program's run-time settings (tunnel sources, MTU, debug logging).
pub fn set_config(ebpf: &mut (impl Maps + ?Sized), config: &Config) -> anyhow::Result<()> {
    array(ebpf, map_names::CONFIG)?
        .set(0, config, 0)
        .context("writing the config map")
}
