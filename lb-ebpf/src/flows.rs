//! The flow table (layout, admission and replacement rules in lb_common::flow): finding a known
//! flow and remembering a new one.

use lb_common::{
    Event, FlowKey, FlowSet, FlowSlot,
    flow::{Admission, FLOW_WAYS, MARKS_HIT, flow_set, flow_tag},
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

/// The slot of `key` (whose 5-tuple hash is `hash`), marked used and proven; else
/// [`Event::FlowMiss`], or [`Event::FlowStale`] for a slot with the key whose check fails (torn
/// by concurrent writers).
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
        if set.marks[way] != MARKS_HIT {
            set.marks[way] = MARKS_HIT;
        }
        return Ok(&set.slots[way]);
    }
    Err(Event::FlowMiss)
}

/// Remembers `slot` (for the flow whose 5-tuple hash is `hash`) with `marks`: over the flow's
/// old slot if it has one, else where `admission` lets it go. Returns what happened:
/// [`Event::FlowRemembered`], [`Event::FlowEvictedProven`] (remembered over a proven flow) or
/// [`Event::FlowNotRemembered`].
#[inline(always)]
pub fn remember(slot: &FlowSlot, hash: u32, admission: Admission, marks: u8) -> Event {
    let Some(set) = set(hash) else {
        return Event::FlowNotRemembered;
    };
    let tag = flow_tag(hash);
    if let Some(way) = set.own_way(&slot.key, hash) {
        set.put(way, slot, tag, marks);
        return Event::FlowRemembered;
    }
    let Some(victim) = set.victim(hash, admission) else {
        return Event::FlowNotRemembered;
    };
    set.put(victim.way, slot, tag, marks);
    if victim.evicts_proven {
        Event::FlowEvictedProven
    } else {
        Event::FlowRemembered
    }
}
