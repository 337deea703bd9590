//! Per-CPU counting: each packet under its reason (which names its verdict: userspace sums
//! verdicts from reasons, one cache line less per packet), and steered packets under their VIP,
//! backend and flow-table event. Bytes are the frame as received.

use lb_common::{Event, Reason};
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

#[inline(always)]
pub fn vip(bytes: u64, id: u32) {
    add(XLB_VIP_STATS.get_ptr_mut(id), bytes);
}

#[inline(always)]
pub fn backend(bytes: u64, id: u32, new_flow: bool) {
    if let Some(slot) = XLB_BACKEND_STATS.get_ptr_mut(id) {
        // SAFETY: a per-CPU array slot belongs to this CPU for the whole program run.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += bytes;
            (*slot).new_flows += u64::from(new_flow);
        }
    }
}
