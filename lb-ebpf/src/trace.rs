//! `xlb trace`: hands a traced packet (as the program leaves it) with its reason, VIP, backend
//! and flow event to userspace through a ring buffer. Called only while tracing is on.

use aya_ebpf::{EbpfContext as _, helpers::bpf_ktime_get_ns, programs::XdpContext};
use lb_common::{
    Reason,
    trace::{
        TRACE_MATCH_BACKEND, TRACE_MATCH_REASON, TRACE_MATCH_VIP, TRACE_NONE, TRACE_SNAP,
        TraceEvent,
    },
};

use crate::{XLB_TRACE, XLB_TRACE_FILTER};

/// What steering learnt about a packet beyond its reason: its VIP, backend and flow event.
pub struct Seen {
    pub vip: u32,
    pub backend: u32,
    pub event: u32,
}

impl Seen {
    #[inline(always)]
    pub const fn nothing() -> Seen {
        Seen {
            vip: TRACE_NONE,
            backend: TRACE_NONE,
            event: TRACE_NONE,
        }
    }
}

/// Traces the packet in `ctx` if it passes the filter. A full ring loses the event: tracing
/// never holds a packet back.
#[inline(always)]
pub fn packet(ctx: &XdpContext, reason: Reason, seen: &Seen) {
    let Some(filter) = XLB_TRACE_FILTER.get(0) else {
        return;
    };
    let excluded = |flag: u32, want: u32, got: u32| filter.flags & flag != 0 && want != got;
    if excluded(TRACE_MATCH_VIP, filter.vip, seen.vip)
        || excluded(TRACE_MATCH_BACKEND, filter.backend, seen.backend)
        || excluded(TRACE_MATCH_REASON, filter.reason, reason as u32)
    {
        return;
    }
    let Some(mut entry) = XLB_TRACE.reserve(0) else {
        return;
    };
    let frame_len = lb_ebpf::headers::frame_len(ctx) as u32;
    // The verifier needs the copy's length proven within 1..=TRACE_SNAP: a comparison is
    // compiled into one on the frame's pointers, which proves nothing, so mask it (an empty
    // frame asks for TRACE_SNAP bytes, which the helper refuses).
    let captured = (frame_len.min(TRACE_SNAP as u32).wrapping_sub(1) & (TRACE_SNAP as u32 - 1)) + 1;
    let event: *mut TraceEvent = entry.as_mut_ptr();
    // SAFETY: `event` is this program's exclusive reservation of a whole TraceEvent; the copy
    // writes at most TRACE_SNAP bytes into its `data`, and reads `captured` bytes of the frame,
    // which has at least that many.
    let copied = unsafe {
        (*event).time_ns = bpf_ktime_get_ns();
        (*event).frame_len = frame_len;
        (*event).reason = reason as u32;
        (*event).vip = seen.vip;
        (*event).backend = seen.backend;
        (*event).event = seen.event;
        aya_ebpf::helpers::generated::bpf_xdp_load_bytes(
            ctx.as_ptr().cast(),
            0,
            (*event).data.as_mut_ptr().cast(),
            captured,
        )
    };
    // SAFETY: as above.
    unsafe { (*event).captured = if copied == 0 { captured } else { 0 } };
    entry.submit(0);
}
