//! Per-CPU counting for the decapsulation program: each packet once under its verdict and once
//! under its reason, with the length it was received with.

use aya_ebpf::programs::XdpContext;
use lb_common::{Counter, Reason, Verdict};

use crate::{XLB_REASONS, XLB_VERDICTS};

#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}

#[inline(always)]
pub fn count(reason: Reason, verdict: Verdict, bytes: u64) {
    add(XLB_VERDICTS.get_ptr_mut(verdict as u32), bytes);
    add(XLB_REASONS.get_ptr_mut(reason as u32), bytes);
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
