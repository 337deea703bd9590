//! The kernel's flow table as userspace reads it (`explain`) and stages entries in it (tests of
//! remembered flows), by the set, slot and admission rules of lb_common::flow.

use anyhow::{Context as _, ensure};
use aya::maps::{Array, MapData};
use lb_common::{
    Event, FlowKey, FlowSet, FlowSlot,
    flow::{Admission, admission, first_marks, flow_set},
    flow_hash, map_names,
};

use crate::maps::Maps;

/// The slot the kernel would find for `key` ([`FlowSet::find`]), if any: none for a slot torn
/// by concurrent writers, which the kernel counts as stale and replaces.
pub fn lookup(maps: &(impl Maps + ?Sized), key: &FlowKey) -> anyhow::Result<Option<FlowSlot>> {
    let (_, hash, mut set) = read_set(maps, key)?;
    Ok(set.find(key, hash).ok().copied())
}

/// Whether the kernel would remember a TCP SYN of `key` now, under config `flags`: whether
/// [`FlowSet::remember`] under the SYN's admission takes a way of its set.
pub fn syn_remembered(
    maps: &(impl Maps + ?Sized),
    key: &FlowKey,
    flags: u32,
) -> anyhow::Result<bool> {
    let (_, hash, mut set) = read_set(maps, key)?;
    let syn = FlowSlot {
        key: *key,
        ..FlowSlot::default()
    };
    let outcome = set.remember(
        &syn,
        hash,
        admission(flags, true, false),
        first_marks(true, false),
    );
    Ok(outcome != Event::FlowNotRemembered)
}

/// Stores `slot` where the kernel would remember it for a flow that proved itself (a TCP
/// segment other than a SYN): [`FlowSet::remember`] under [`Admission::Proven`].
pub fn remember(maps: &mut (impl Maps + ?Sized), slot: &FlowSlot) -> anyhow::Result<()> {
    let (index, hash, mut set) = read_set(maps, &slot.key)?;
    let outcome = set.remember(slot, hash, Admission::Proven, first_marks(false, false));
    ensure!(
        outcome != Event::FlowNotRemembered,
        "a proven flow always finds a slot, yet set {index} took none"
    );
    let mut map = Array::<&mut MapData, FlowSet>::try_from(maps.map_mut(map_names::FLOWS)?)
        .context("the flow table map has an unexpected type")?;
    map.set(index, &set, 0).context("writing the flow table")
}

/// The index of the set of `key`, its 5-tuple hash and a copy of the set.
fn read_set(maps: &(impl Maps + ?Sized), key: &FlowKey) -> anyhow::Result<(u32, u32, FlowSet)> {
    let map = Array::<&MapData, FlowSet>::try_from(maps.map(map_names::FLOWS)?)
        .context("the flow table map has an unexpected type")?;
    let hash = flow_hash(key, false);
    let index = flow_set(hash, map.len());
    let set = map.get(&index, 0).context("reading the flow table")?;
    Ok((index, hash, set))
}
