//! Per-CPU counting. A packet steered to a backend is counted in two values: its VIP's
//! (reason and `flow_hit` event, [`lb_common::VipCounter`]) and its backend's; every other
//! packet under its reason (which names its verdict: userspace sums verdicts from reasons).
//! Fewer values per packet, fewer cache lines dirtied. Bytes are the frame as received.

use lb_common::{Counter, Event, Reason};
use lb_ebpf::count::add;

use crate::{XLB_BACKEND_STATS, XLB_EVENTS, XLB_REASONS, XLB_VIP_STATS};

#[inline(always)]
pub fn count(bytes: u64, reason: Reason) {
    add(XLB_REASONS.get_ptr_mut(reason as u32), bytes);
}

#[inline(always)]
pub fn event(bytes: u64, event: Event) {
    add(XLB_EVENTS.get_ptr_mut(event as u32), bytes);
}

/// A packet of VIP `id` that was not steered (counted under its reason too).
#[inline(always)]
pub fn vip_other(bytes: u64, id: u32) {
    if let Some(vip) = XLB_VIP_STATS.get_ptr_mut(id) {
        // SAFETY: a per-CPU array slot belongs to this CPU for the whole program run.
        add(Some(unsafe { &raw mut (*vip).other }), bytes);
    }
}

/// A packet of VIP `id` steered to backend `backend` with `reason` (forwarded_dsr,
/// forwarded_ipip or icmp_steered), found in the flow table or not (`event`).
#[inline(always)]
pub fn steered(bytes: u64, id: u32, backend: u32, reason: Reason, event: Event) {
    if let Some(vip) = XLB_VIP_STATS.get_ptr_mut(id) {
        // SAFETY: a per-CPU array slot belongs to this CPU for the whole program run.
        let (counter, hit): (*mut Counter, *mut Counter) = unsafe {
            let counter = match reason {
                Reason::ForwardedIpip => &raw mut (*vip).ipip,
                Reason::IcmpSteered => &raw mut (*vip).icmp,
                _ => &raw mut (*vip).dsr,
            };
            (counter, &raw mut (*vip).hit)
        };
        add(Some(counter), bytes);
        if event == Event::FlowHit {
            add(Some(hit), bytes);
        }
    }
    if event != Event::FlowHit {
        self::event(bytes, event);
    }
    if let Some(slot) = XLB_BACKEND_STATS.get_ptr_mut(backend) {
        // SAFETY: a per-CPU array slot belongs to this CPU for the whole program run.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += bytes;
            (*slot).new_flows += u64::from(event != Event::FlowHit);
        }
    }
}
