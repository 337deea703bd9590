//! The xlb XDP program: map statics and the entry point. Each stage lives in its own module.
#![no_std]
#![no_main]

mod counters;
mod parse;

use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map, macros::xdp, programs::XdpContext};
use lb_common::{Counter, Reason, Verdict};

#[btf_map]
static XLB_VERDICTS: PerCpuArray<Counter, { Verdict::SLOTS as usize }> = PerCpuArray::new();

#[btf_map]
static XLB_REASONS: PerCpuArray<Counter, { Reason::SLOTS as usize }> = PerCpuArray::new();

#[xdp]
pub fn xlb(ctx: XdpContext) -> u32 {
    let reason = match parse::packet(&ctx) {
        // No services are configured yet: every well-formed packet goes to the stack.
        Ok(()) => Reason::NotVip,
        Err(reason) => reason,
    };
    let verdict = reason.verdict();
    counters::count(&ctx, reason, verdict);
    verdict as u32
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
