//! The xlb XDP program: map statics and the entry point. Each stage (parse, flows, classify,
//! select, rewrite, count) lives in its own module.
#![no_std]
#![no_main]

mod classify;
mod counters;
mod flows;
mod parse;
mod rewrite;
mod select;
mod too_big;
mod trace;

use aya_ebpf::{
    btf_maps::{Array, HashMap, PerCpuArray, RingBuf},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use lb_common::{
    Backend, BackendCounter, Config, Counter, Event, FlowSet, Reason, Vip, VipCounter, VipKey,
    config::{CONFIG_DEBUG_LOG, CONFIG_TRACE},
    flow::{DEFAULT_FLOW_TABLE_SIZE, flow_sets},
    flow_hash,
    meta::{Meta, ShareBase, TableRecord},
    service::{
        AddrKey, DEFAULT_MAGLEV_CHUNKS, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_VIPS, MaglevChunk,
        VIP_FORWARD_IPIP, VipFilter,
    },
    trace::{TRACE_RING_BYTES, TraceEvent, TraceFilter},
};

const MAX_VIPS: usize = DEFAULT_MAX_VIPS as usize;
const MAX_BACKENDS: usize = DEFAULT_MAX_BACKENDS as usize;
/// Sets of the flow table in the object (the default size); the control plane sizes the map from
/// `global.flow_table_size` and sets [`XLB_FLOW_SETS`] to match.
const FLOW_SETS: usize = flow_sets(DEFAULT_FLOW_TABLE_SIZE) as usize;
/// BPF_F_MMAPABLE: the control plane writes Maglev tables straight into the map's memory. It
/// also page-aligns an array's values, where a plain array's start 312 bytes into the map's
/// header (56 past a cache line): the hot arrays take it so that a flow set's tag line and
/// each slot, a backend entry and the config are each one cache line, not two.
const MMAPABLE: usize = 1 << 10;

/// Sets in [`XLB_FLOWS`] (a power of two): read-only, so the verifier and JIT see a constant.
#[unsafe(no_mangle)]
static XLB_FLOW_SETS: u32 = FLOW_SETS as u32;

#[btf_map]
static XLB_REASONS: PerCpuArray<Counter, { Reason::SLOTS as usize }> = PerCpuArray::new();
#[btf_map]
static XLB_VIPS: HashMap<VipKey, Vip, MAX_VIPS> = HashMap::new();
#[btf_map]
static XLB_BACKENDS: Array<Backend, MAX_BACKENDS, MMAPABLE> = Array::new();
#[btf_map]
static XLB_MAGLEV: Array<MaglevChunk, { DEFAULT_MAGLEV_CHUNKS as usize }, MMAPABLE> = Array::new();
#[btf_map]
static XLB_FLOWS: Array<FlowSet, FLOW_SETS, MMAPABLE> = Array::new();
#[btf_map]
static XLB_BACKEND_STATS: PerCpuArray<BackendCounter, MAX_BACKENDS> = PerCpuArray::new();
#[btf_map]
static XLB_VIP_STATS: PerCpuArray<VipCounter, MAX_VIPS> = PerCpuArray::new();
#[btf_map]
static XLB_EVENTS: PerCpuArray<Counter, { Event::SLOTS as usize }> = PerCpuArray::new();
#[btf_map]
static XLB_CONFIG: Array<Config, 1, MMAPABLE> = Array::new();
#[btf_map]
static XLB_VIP_FILTER: Array<VipFilter, 1> = Array::new();
#[btf_map]
static XLB_VIP_ADDRS: HashMap<AddrKey, u32, MAX_VIPS> = HashMap::new();
/// Written and read only by the control plane; here so it lives and is pinned with the program.
#[btf_map]
static XLB_META: Array<Meta, 1> = Array::new();
/// Written and read only by the control plane, like `XLB_META`.
#[btf_map]
static XLB_SHARE_BASE: Array<ShareBase, MAX_BACKENDS> = Array::new();
/// Written and read only by the control plane, like `XLB_META`: two per VIP, one per table copy.
#[btf_map]
static XLB_TABLE_RECORDS: Array<TableRecord, { 2 * MAX_VIPS }> = Array::new();
/// `xlb trace`'s events and filter: written only while a trace runs (`CONFIG_TRACE`).
#[btf_map]
static XLB_TRACE: RingBuf<TraceEvent, { TRACE_RING_BYTES as usize }> = RingBuf::new();
#[btf_map]
static XLB_TRACE_FILTER: Array<TraceFilter, 1> = Array::new();

#[xdp]
pub fn xlb(ctx: XdpContext) -> u32 {
    let bytes = lb_ebpf::headers::frame_len(&ctx) as u64;
    // An array's only entry always exists: this lookup cannot fail.
    let Some(config) = XLB_CONFIG.get(0) else {
        return Reason::NoBackend.verdict() as u32;
    };
    let mut seen = trace::Seen::nothing();
    let reason = match steer(&ctx, bytes, config, &mut seen) {
        Ok(steered) => steered,
        Err(reason) => {
            counters::count(bytes, reason);
            reason
        }
    };
    if config.flags & CONFIG_TRACE != 0 {
        trace::packet(&ctx, reason, &seen);
    }
    reason.verdict() as u32
}

/// `Ok`: the packet was steered to a backend and counted under its VIP and backend; `Err`: any
/// other outcome, which the caller counts under its reason.
#[inline(always)]
fn steer(
    ctx: &XdpContext,
    bytes: u64,
    config: &Config,
    seen: &mut trace::Seen,
) -> Result<Reason, Reason> {
    let packet = parse::packet(ctx)?;
    let hash = flow_hash(&packet.flow, false);
    // A known flow needs no service lookup: its slot names the VIP and the backend.
    let known = if packet.syn {
        Err(Event::FlowMiss)
    } else {
        select::known_flow(&packet, hash)
    };
    let choice = match known {
        Ok(choice) => choice,
        Err(event) => {
            let Some(vip) = classify::vip(&packet) else {
                // An ICMP error to a VIP address about a flow to no VIP is ICMP we do not steer.
                return Err(if packet.icmp {
                    classify::unsteered(&classify::destination(&packet), Reason::OtherL4)
                } else {
                    Reason::NotVip
                });
            };
            seen.vip = vip.id;
            select::new_flow(&packet, &vip, hash, event, bytes, config.flags).inspect_err(|_| {
                counters::vip_other(bytes, vip.id);
            })?
        }
    };
    *seen = trace::Seen {
        vip: choice.vip,
        backend: choice.id,
        event: choice.event as u32,
    };
    let (rewritten, forwarded) = if choice.vip_flags & VIP_FORWARD_IPIP != 0 {
        (
            rewrite::ipip(ctx, &packet, hash, choice.backend, config),
            Reason::ForwardedIpip,
        )
    } else {
        (rewrite::dsr(ctx, choice.backend), Reason::ForwardedDsr)
    };
    if let Err(reason) = rewritten {
        counters::vip_other(bytes, choice.vip);
        if reason == Reason::EncapTooBig {
            let inner_mtu = rewrite::inner_mtu(choice.backend, config);
            return Err(too_big::answer(ctx, &packet, inner_mtu, bytes as usize));
        }
        return Err(reason);
    }
    let reason = if packet.icmp {
        Reason::IcmpSteered
    } else {
        forwarded
    };
    counters::steered(bytes, choice.vip, choice.id, reason, choice.event);
    if config.flags & CONFIG_DEBUG_LOG != 0 {
        debug!(
            ctx,
            "xlb: vip {} backend {} event {}", choice.vip, choice.id, choice.event as u32
        );
    }
    Ok(reason)
}

lb_ebpf::license_and_panic_handler!();
