//! Forwarding rewrites. `dsr`: the backend's (or next hop's) MAC becomes the destination and
//! ours (the frame's old destination) the source; the IP packet is untouched, so the backend
//! answers the client directly from the VIP.

use aya_ebpf::programs::XdpContext;
use lb_common::Backend;

#[inline(always)]
pub fn dsr(ctx: &XdpContext, backend: &Backend) -> bool {
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        return false;
    }
    let macs = start as *mut [u8; 6];
    // SAFETY: the 12 bytes of the two MAC addresses are inside the frame (checked above).
    unsafe {
        *macs.add(1) = *macs;
        *macs = backend.mac;
    }
    true
}
