//! The flow table (layout and replacement rules in lb_common::flow): finding a known flow and
//! remembering a new one.

use lb_common::{
    FlowKey, FlowSet, FlowSlot,
    flow::{FLOW_WAYS, first_way, flow_set},
};

use crate::XLB_FLOWS;

/// What the flow table knows of a flow.
pub enum Known {
    /// A whole slot for the flow, in the map.
    Slot(&'static FlowSlot),
    /// A slot with the flow's key whose check fails: torn by concurrent writers.
    Torn,
    Unknown,
}

#[inline(always)]
fn set(hash: u32) -> Option<*mut FlowSet> {
    // SAFETY: a read-only global, fixed at load time to the map's number of sets.
    let sets = unsafe { core::ptr::read_volatile(&crate::XLB_FLOW_SETS) };
    XLB_FLOWS.get_ptr_mut(flow_set(hash, sets))
}

/// The slot of `key` (whose 5-tuple hash is `hash`), marked used.
#[inline(always)]
pub fn find(key: &FlowKey, hash: u32) -> Known {
    let Some(set) = set(hash) else {
        return Known::Unknown;
    };
    for way in 0..FLOW_WAYS {
        // SAFETY: the pointer from a map lookup is valid for this program run; `way` is below
        // the number of slots.
        let slot: &'static mut FlowSlot = unsafe { &mut (*set).slots[way] };
        if slot.key.same(key) {
            if !slot.holds(key, hash) {
                return Known::Torn;
            }
            if slot.used == 0 {
                slot.used = 1;
            }
            return Known::Slot(slot);
        }
    }
    Known::Unknown
}

/// Remembers `slot` (for the flow whose 5-tuple hash is `hash`): over the flow's old slot if it
/// has one, else in an empty slot or the first not used since the last insert passed over it.
#[inline(always)]
pub fn remember(slot: &FlowSlot, hash: u32) {
    let Some(set) = set(hash) else {
        return;
    };
    // SAFETY (both loops): the pointer from a map lookup is valid for this program run; way
    // indexes are reduced below the number of slots.
    for way in 0..FLOW_WAYS {
        let old = unsafe { &mut (*set).slots[way] };
        if old.key.same(&slot.key) {
            *old = *slot;
            return;
        }
    }
    let first = first_way(hash);
    for step in 0..FLOW_WAYS {
        let old = unsafe { &mut (*set).slots[(first + step) % FLOW_WAYS] };
        if old.check == 0 || old.used == 0 {
            *old = *slot;
            return;
        }
        old.used = 0;
    }
    // Every slot was in use: the first has just lost its mark and goes.
    unsafe { (*set).slots[first % FLOW_WAYS] = *slot };
}
