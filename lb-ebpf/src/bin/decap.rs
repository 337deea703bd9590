//! The backend-side decapsulation program (`xlb_decap`): strips the outer IPv4 or IPv6 header
//! that xlb's `ipip` mode puts around a client packet, on hosts whose kernel has no ipip or
//! ip6tnl devices. Map statics and the entry point live here; parsing, stripping and counting
//! each have their own module under `decap/`.
#![no_std]
#![no_main]

// A crate root resolves `mod x;` beside itself (src/bin/x.rs), which would mix these modules
// with other binaries' files: keep them in this program's own directory.
#[path = "decap/counters.rs"]
mod counters;
#[path = "decap/parse.rs"]
mod parse;
#[path = "decap/strip.rs"]
mod strip;

use aya_ebpf::{
    btf_maps::{HashMap, PerCpuArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use lb_common::{Counter, Event, Reason, VipCounter, decap::DecapKey};

/// Outer addresses one host answers for: its own addresses, a handful at most.
const MAX_DECAP_ADDRS: usize = 64;

#[btf_map]
static XLB_REASONS: PerCpuArray<Counter, { Reason::SLOTS as usize }> = PerCpuArray::new();
/// Never written: declared so `lb_userspace::counters::Totals::read` works on this object.
#[btf_map]
static XLB_EVENTS: PerCpuArray<Counter, { Event::SLOTS as usize }> = PerCpuArray::new();
/// Never written, like `XLB_EVENTS`.
#[btf_map]
static XLB_VIP_STATS: PerCpuArray<VipCounter, 1> = PerCpuArray::new();
/// This host's outer addresses; the value is unused (0).
#[btf_map]
static XLB_DECAP_ADDRS: HashMap<DecapKey, u32, MAX_DECAP_ADDRS> = HashMap::new();

#[xdp]
pub fn xlb_decap(ctx: XdpContext) -> u32 {
    // Counted as received: stripping shortens the frame.
    let received = lb_ebpf::headers::frame_len(&ctx) as u64;
    let reason = decap(&ctx);
    counters::count(reason, received);
    reason.verdict() as u32
}

#[inline(always)]
fn decap(ctx: &XdpContext) -> Reason {
    let tunnel = match parse::tunnel(ctx) {
        Ok(tunnel) => tunnel,
        Err(reason) => return reason,
    };
    if XLB_DECAP_ADDRS.get_ptr(&tunnel.dst).is_none() {
        return Reason::NotVip;
    }
    // Only the first fragment holds the inner header; the stack reassembles the rest.
    if tunnel.fragment {
        return Reason::Fragment;
    }
    match strip::outer(ctx, &tunnel) {
        Ok(()) => Reason::Decapsulated,
        Err(reason) => reason,
    }
}

lb_ebpf::license_and_panic_handler!();
