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
use aya_log_ebpf::debug;
use lb_common::{
    Backend, BackendCounter, Config, Counter, Event, FlowEntry, FlowKey, Reason, Verdict, Vip,
    VipKey,
    config::CONFIG_DEBUG_LOG,
    meta::Meta,
    service::{
        DEFAULT_MAGLEV_CHUNKS, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_VIPS, MaglevChunk,
        VIP_FORWARD_IPIP, VipFilter,
    },
};

const MAX_VIPS: usize = DEFAULT_MAX_VIPS as usize;
const MAX_BACKENDS: usize = DEFAULT_MAX_BACKENDS as usize;
/// Flows remembered; the least recently used is evicted when full.
const MAX_FLOWS: usize = 65_536;
/// BPF_F_MMAPABLE: the control plane writes Maglev tables straight into the map's memory.
const MMAPABLE: usize = 1 << 10;
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
static XLB_MAGLEV: Array<MaglevChunk, { DEFAULT_MAGLEV_CHUNKS as usize }, MMAPABLE> = Array::new();
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
#[btf_map]
static XLB_VIP_FILTER: Array<VipFilter, 1> = Array::new();
/// Written and read only by the control plane; here so it lives and is pinned with the program.
#[btf_map]
static XLB_META: Array<Meta, 1> = Array::new();

#[xdp]
pub fn xlb(ctx: XdpContext) -> u32 {
    let bytes = lb_ebpf::headers::frame_len(&ctx) as u64;
    let reason = steer(&ctx, bytes);
    let verdict = reason.verdict();
    counters::count(bytes, reason, verdict);
    verdict as u32
}

#[inline(always)]
fn steer(ctx: &XdpContext, bytes: u64) -> Reason {
    let packet = match parse::packet(ctx) {
        Ok(packet) => packet,
        Err(reason) => return reason,
    };
    let Some(vip) = classify::vip(&packet) else {
        return Reason::NotVip;
    };
    counters::vip(bytes, vip.id);
    let choice = match select::backend(&packet, &vip) {
        Ok(choice) => choice,
        Err(reason) => return reason,
    };
    let config = match XLB_CONFIG.get_ptr(0) {
        // SAFETY: the pointer from a map lookup is valid for this program run.
        Some(config) => unsafe { *config },
        None => return Reason::NoBackend,
    };
    let (rewritten, forwarded) = if vip.flags & VIP_FORWARD_IPIP != 0 {
        (
            rewrite::ipip(ctx, &packet, &choice.backend, &config),
            Reason::ForwardedIpip,
        )
    } else {
        (rewrite::dsr(ctx, &choice.backend), Reason::ForwardedDsr)
    };
    if let Err(reason) = rewritten {
        return reason;
    }
    counters::event(bytes, choice.event);
    counters::backend(bytes, choice.id, choice.event != Event::FlowHit);
    if config.flags & CONFIG_DEBUG_LOG != 0 {
        debug!(
            ctx,
            "xlb: vip {} backend {} event {}", vip.id, choice.id, choice.event as u32
        );
    }
    if packet.icmp {
        Reason::IcmpSteered
    } else {
        forwarded
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
