//! Per-CPU counting for the decapsulation program: each packet once under its verdict and once
//! under its reason, with the length it was received with.

use lb_common::{Reason, Verdict};
use lb_ebpf::count::add;

use crate::{XLB_REASONS, XLB_VERDICTS};

#[inline(always)]
pub fn count(reason: Reason, verdict: Verdict, bytes: u64) {
    add(XLB_VERDICTS.get_ptr_mut(verdict as u32), bytes);
    add(XLB_REASONS.get_ptr_mut(reason as u32), bytes);
}
