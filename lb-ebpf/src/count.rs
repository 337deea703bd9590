//! Per-CPU counter updates.

use lb_common::Counter;

/// Adds one packet of `bytes` to a per-CPU counter slot, if the lookup found one.
#[inline(always)]
pub fn add(slot: Option<*mut Counter>, bytes: u64) {
    if let Some(slot) = slot {
        // SAFETY: a per-CPU array slot belongs to this CPU for the whole program run.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += bytes;
        }
    }
}
