//! The flow table (layout and replacement rules in lb_common::flow): finding a known flow and
//! remembering a new one.

use lb_common::{
    Event, FlowKey, FlowSet, FlowSlot,
    flow::{FLOW_WAYS, first_way, flow_set, flow_tag},
};

use crate::XLB_FLOWS;

#[inline(always)]
fn set(hash: u32) -> Option<&'static mut FlowSet> {
    // SAFETY: a read-only global, fixed at load time to the map's number of sets.
    let sets = unsafe { core::ptr::read_volatile(&crate::XLB_FLOW_SETS) };
    let set = XLB_FLOWS.get_ptr_mut(flow_set(hash, sets))?;
    // SAFETY: the pointer from a map lookup is valid for this program run; concurrent writers
    // are detected by each slot's check, not excluded.
    Some(unsafe { &mut *set })
}

/// The slot of `key` (whose 5-tuple hash is `hash`), marked used; else [`Event::FlowMiss`], or
/// [`Event::FlowStale`] for a slot with the key whose check fails (torn by concurrent writers).
#[inline(always)]
pub fn find(key: &FlowKey, hash: u32) -> Result<&'static FlowSlot, Event> {
    let set = set(hash).ok_or(Event::FlowMiss)?;
    let tag = flow_tag(hash);
    for way in 0..FLOW_WAYS {
        if set.tags[way] != tag || !set.slots[way].key.same(key) {
            continue;
        }
        if !set.slots[way].whole(hash) {
            return Err(Event::FlowStale);
        }
        if set.used[way] == 0 {
            set.used[way] = 1;
        }
        return Ok(&set.slots[way]);
    }
    Err(Event::FlowMiss)
}

/// Remembers `slot` (for the flow whose 5-tuple hash is `hash`): over the flow's old slot if it
/// has one, else in an empty slot or the first not used since an insert last passed over it.
#[inline(always)]
pub fn remember(slot: &FlowSlot, hash: u32) {
    let Some(set) = set(hash) else {
        return;
    };
    let tag = flow_tag(hash);
    for way in 0..FLOW_WAYS {
        if set.tags[way] == tag && set.slots[way].key.same(&slot.key) {
            set.slots[way] = *slot;
            return;
        }
    }
    let first = first_way(hash);
    let mut victim = first;
    for step in 0..FLOW_WAYS {
        let way = (first + step) % FLOW_WAYS;
        if set.tags[way] == 0 || set.used[way] == 0 {
            victim = way;
            break;
        }
        set.used[way] = 0;
    }
    // Every slot was in use: the first has just lost its mark and goes. The slot is written
    // before its tag, so a reader that sees the new tag finds a slot to check.
    set.slots[victim] = *slot;
    set.tags[victim] = tag;
    set.used[victim] = 0;
}
