//! The flow table (layout, admission and replacement rules in lb_common::flow): finding a known
//! flow and remembering a new one.

use lb_common::{
    Event, FlowKey, FlowSet, FlowSlot,
    flow::{Admission, flow_set},
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

/// The slot of `key` (whose 5-tuple hash is `hash`) by [`FlowSet::find`], marked used and
/// proven; else [`Event::FlowMiss`] or [`Event::FlowStale`].
#[inline(always)]
pub fn find(key: &FlowKey, hash: u32) -> Result<&'static FlowSlot, Event> {
    set(hash).ok_or(Event::FlowMiss)?.find(key, hash)
}

/// Remembers `slot` by [`FlowSet::remember`] in the set of `hash`; [`Event::FlowNotRemembered`]
/// if the map has no such set.
#[inline(always)]
pub fn remember(slot: &FlowSlot, hash: u32, admission: Admission, marks: u8) -> Event {
    set(hash).map_or(Event::FlowNotRemembered, |set| {
        set.remember(slot, hash, admission, marks)
    })
}
