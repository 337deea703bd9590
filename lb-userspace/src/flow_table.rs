//! The kernel's flow table as userspace reads it (`explain`) and stages entries in it (tests of
//! remembered flows), by the set, slot and admission rules of lb_common::flow.

use anyhow::Context as _;
use aya::maps::{Array, MapData};
use lb_common::{
    FlowKey, FlowSet, FlowSlot,
    flow::{Admission, MARK_PROVEN, admission, flow_set, flow_tag},
    flow_hash, map_names,
};

use crate::maps::Maps;

/// The whole slot the kernel would find for `key`, if any.
pub fn lookup(maps: &(impl Maps + ?Sized), key: &FlowKey) -> anyhow::Result<Option<FlowSlot>> {
    let map = Array::<&MapData, FlowSet>::try_from(maps.map(map_names::FLOWS)?)
        .context("the flow table map has an unexpected type")?;
    let hash = flow_hash(key, false);
    let set = map
        .get(&flow_set(hash, map.len()), 0)
        .context("reading the flow table")?;
    let tag = flow_tag(hash);
    Ok(set
        .tags
        .iter()
        .zip(set.slots)
        .find(|(slot_tag, slot)| **slot_tag == tag && slot.holds(key, hash))
        .map(|(_, slot)| slot))
}

/// Whether the kernel would remember a TCP SYN of `key` now, under config `flags`: it has its
/// own slot, or [`FlowSet::victim`] finds one under the SYN's admission.
pub fn syn_remembered(
    maps: &(impl Maps + ?Sized),
    key: &FlowKey,
    flags: u32,
) -> anyhow::Result<bool> {
    let map = Array::<&MapData, FlowSet>::try_from(maps.map(map_names::FLOWS)?)
        .context("the flow table map has an unexpected type")?;
    let hash = flow_hash(key, false);
    let mut set = map
        .get(&flow_set(hash, map.len()), 0)
        .context("reading the flow table")?;
    Ok(set.own_way(key, hash).is_some()
        || set.victim(hash, admission(flags, true, false)).is_some())
}

/// Stores `slot` where the kernel would remember it for a flow that proved itself (a TCP
/// segment other than a SYN): over the key's old slot, else where
/// [`FlowSet::victim`] puts it under [`Admission::Proven`].
pub fn remember(maps: &mut (impl Maps + ?Sized), slot: &FlowSlot) -> anyhow::Result<()> {
    let mut map = Array::<&mut MapData, FlowSet>::try_from(maps.map_mut(map_names::FLOWS)?)
        .context("the flow table map has an unexpected type")?;
    let hash = flow_hash(&slot.key, false);
    let index = flow_set(hash, map.len());
    let mut set = map.get(&index, 0).context("reading the flow table")?;
    let way = match set.own_way(&slot.key, hash) {
        Some(way) => way,
        None => {
            set.victim(hash, Admission::Proven)
                .context("a proven flow always finds a slot")?
                .way
        }
    };
    set.put(way, slot, flow_tag(hash), MARK_PROVEN);
    map.set(index, &set, 0).context("writing the flow table")
}
