//! Per-CPU counting for the decapsulation program: each packet once under its reason (which
//! names its verdict), with the length it was received with.

use lb_common::Reason;
use lb_ebpf::count::add;

use crate::XLB_REASONS;

#[inline(always)]
pub fn count(reason: Reason, bytes: u64) {
    add(XLB_REASONS.get_ptr_mut(reason as u32), bytes);
}
