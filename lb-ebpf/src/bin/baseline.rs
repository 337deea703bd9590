//! Bare XDP programs: the baselines benchmarks measure beside xlb in the same run, and the
//! XDP_PASS program a veth peer needs so that native XDP_TX frames sent to it are delivered.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

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

lb_ebpf::license_and_panic_handler!();
