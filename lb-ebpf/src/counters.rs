//! Per-CPU counting: each packet under its verdict and its reason, and steered packets under
//! their VIP and backend.

use aya_ebpf::programs::XdpContext;
use lb_common::{Counter, Event, Reason, Verdict};

use crate::{XLB_BACKEND_STATS, XLB_EVENTS, XLB_REASONS, XLB_VERDICTS, XLB_VIP_STATS};

#[inline(always)]
fn frame_len(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}

#[inline(always)]
pub fn count(ctx: &XdpContext, reason: Reason, verdict: Verdict) {
    let bytes = frame_len(ctx);
    add(XLB_VERDICTS.get_ptr_mut(verdict as u32), bytes);
    add(XLB_REASONS.get_ptr_mut(reason as u32), bytes);
}

#[inline(always)]
pub fn event(ctx: &XdpContext, event: Event) {
    add(XLB_EVENTS.get_ptr_mut(event as u32), frame_len(ctx));
}

#[inline(always)]
pub fn vip(ctx: &XdpContext, id: u32) {
    add(XLB_VIP_STATS.get_ptr_mut(id), frame_len(ctx));
}

#[inline(always)]
pub fn backend(ctx: &XdpContext, id: u32, new_flow: bool) {
    if let Some(slot) = XLB_BACKEND_STATS.get_ptr_mut(id) {
        // SAFETY: a per-CPU array slot belongs to this CPU for the whole program run.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += frame_len(ctx);
            (*slot).new_flows += u64::from(new_flow);
        }
    }
}

#[inline(always)]
fn add(slot: Option<*mut Counter>, bytes: u64) {
    if let Some(slot) = slot {
        // SAFETY: a per-CPU array slot belongs to this CPU for the whole program run.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += bytes;
        }
    }
}
