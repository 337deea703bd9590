//! Bare XDP programs: the baselines benchmarks measure beside xlb in the same run, and the
//! XDP_PASS program a veth peer needs so that native XDP_TX frames sent to it are delivered.
//! `bare_adjust_head` is the floor of `ipip`'s cost over `dsr`: the one helper call that grows
//! the frame, which no rewrite can avoid.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_adjust_head, macros::xdp, programs::XdpContext,
};

#[xdp]
pub fn bare_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bare_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn bare_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// Grows the frame's head by an outer IPv4 header's 20 bytes, as `ipip` does, and sends it.
#[xdp]
pub fn bare_adjust_head(ctx: XdpContext) -> u32 {
    // SAFETY: ctx.ctx is the live xdp_md of this run.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -20) } != 0 {
        return xdp_action::XDP_DROP;
    }
    xdp_action::XDP_TX
}

lb_ebpf::license_and_panic_handler!();
