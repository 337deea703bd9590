//! The xlb XDP program: map statics and the entry point. Each stage (parse, classify, select,
//! rewrite, count) lives in its own module.
#![no_std]
#![no_main]

mod classify;
mod counters;
mod parse;
mod rewrite;
mod select;

use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use lb_common::{
    Backend, BackendCounter, Config, Counter, Event, FlowEntry, FlowKey, Reason, Verdict, Vip,
    VipKey,
    service::{DEFAULT_MAGLEV_SLOTS, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_VIPS},
};

const MAX_VIPS: usize = DEFAULT_MAX_VIPS as usize;
const MAX_BACKENDS: usize = DEFAULT_MAX_BACKENDS as usize;
/// Flows remembered; the least recently used is evicted when full.
const MAX_FLOWS: usize = 65_536;
/// BPF_F_NO_COMMON_LRU: one LRU list per CPU, so inserting a new flow takes no global lock.
const NO_COMMON_LRU: usize = 1 << 1;

#[btf_map]
static XLB_VERDICTS: PerCpuArray<Counter, { Verdict::SLOTS as usize }> = PerCpuArray::new();
#[btf_map]
static XLB_REASONS: PerCpuArray<Counter, { Reason::SLOTS as usize }> = PerCpuArray::new();
#[btf_map]
static XLB_VIPS: HashMap<VipKey, Vip, MAX_VIPS> = HashMap::new();
#[btf_map]
static XLB_BACKENDS: Array<Backend, MAX_BACKENDS> = Array::new();
#[btf_map]
static XLB_MAGLEV: Array<u32, { DEFAULT_MAGLEV_SLOTS as usize }> = Array::new();
#[btf_map]
static XLB_FLOWS: LruHashMap<FlowKey, FlowEntry, MAX_FLOWS, NO_COMMON_LRU> = LruHashMap::new();
#[btf_map]
static XLB_BACKEND_STATS: PerCpuArray<BackendCounter, MAX_BACKENDS> = PerCpuArray::new();
#[btf_map]
static XLB_VIP_STATS: PerCpuArray<Counter, MAX_VIPS> = PerCpuArray::new();
#[btf_map]
static XLB_EVENTS: PerCpuArray<Counter, { Event::SLOTS as usize }> = PerCpuArray::new();
#[btf_map]
static XLB_CONFIG: Array<Config, 1> = Array::new();

#[xdp]
pub fn xlb(ctx: XdpContext) -> u32 {
    let reason = steer(&ctx);
    let verdict = reason.verdict();
    counters::count(&ctx, reason, verdict);
    verdict as u32
}

#[inline(always)]
fn steer(ctx: &XdpContext) -> Reason {
    let packet = match parse::packet(ctx) {
        Ok(packet) => packet,
        Err(reason) => return reason,
    };
    let Some(vip) = classify::vip(&packet) else {
        return Reason::NotVip;
    };
    counters::vip(ctx, vip.id);
    let choice = match select::backend(&packet, &vip) {
        Ok(choice) => choice,
        Err(reason) => return reason,
    };
    if !rewrite::dsr(ctx, &choice.backend) {
        return Reason::Truncated;
    }
    counters::event(ctx, choice.event);
    counters::backend(ctx, choice.id, choice.event != Event::FlowHit);
    Reason::ForwardedDsr
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
