//! Removing the outer header: check the inner header is there and of the announced family,
//! then move the head of the frame past the outer header with `bpf_xdp_adjust_head` and write
//! the saved Ethernet header (tag included) in front of the inner packet, its EtherType now
//! the inner family's. The Ethernet addresses stay the tunnel frame's: the frame was delivered
//! to this host, and the stack above sees it as received here.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::Reason;
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use lb_ebpf::headers::{ETH_P_IP, VLAN_TAG_LEN, ptr_at};

use crate::parse::Tunnel;

/// The destination and source MAC addresses.
const MACS_LEN: usize = 12;

#[inline(always)]
pub fn outer(ctx: &XdpContext, tunnel: &Tunnel) -> Result<(), Reason> {
    inner_header(ctx, tunnel)?;

    let macs: *const [u8; MACS_LEN] = ptr_at(ctx, 0)?;
    // SAFETY: ptr_at checked the bytes lie inside the frame.
    let macs = unsafe { *macs };
    let tagged = tunnel.l2_len > EthHdr::LEN;
    let mut tag = [0u8; VLAN_TAG_LEN];
    if tagged {
        let saved: *const [u8; VLAN_TAG_LEN] = ptr_at(ctx, MACS_LEN)?;
        // SAFETY: as above.
        tag = unsafe { *saved };
    }

    // A positive delta drops that many bytes from the front. It fails only if fewer than an
    // Ethernet header's worth would remain, which the inner header check rules out.
    // SAFETY: ctx.ctx is the xdp_md the kernel handed this program run.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, tunnel.outer_len as i32) } != 0 {
        return Err(Reason::Truncated);
    }

    // Every packet pointer died with the adjustment: these are derived from the new start. The
    // checks cannot fail (the inner header follows), but the verifier needs them, and a frame
    // half rewritten must not be passed on.
    let new_macs: *mut [u8; MACS_LEN] = ptr_at(ctx, 0)?;
    // SAFETY: ptr_at checked the bytes lie inside the frame.
    unsafe { *new_macs = macs };
    let mut ether_type_at = MACS_LEN;
    if tagged {
        let new_tag: *mut [u8; VLAN_TAG_LEN] = ptr_at(ctx, MACS_LEN)?;
        // SAFETY: as above.
        unsafe { *new_tag = tag };
        ether_type_at += VLAN_TAG_LEN;
    }
    let ether_type: *mut [u8; 2] = ptr_at(ctx, ether_type_at)?;
    // SAFETY: as above.
    unsafe { *ether_type = tunnel.inner_ether_type.to_be_bytes() };
    Ok(())
}

/// The inner packet must start with a whole fixed header of the family the outer protocol
/// number announces, inside the outer header's length: an outer header announcing fewer bytes
/// is inconsistent (bad header). The frame holds every announced byte (parse checked it).
#[inline(always)]
fn inner_header(ctx: &XdpContext, tunnel: &Tunnel) -> Result<(), Reason> {
    let offset = tunnel.l2_len + tunnel.outer_len;
    let ipv4 = tunnel.inner_ether_type == ETH_P_IP;
    let len = if ipv4 { Ipv4Hdr::LEN } else { Ipv6Hdr::LEN };
    if tunnel.payload_len < len {
        return Err(Reason::BadHeader);
    }
    let (version, first) = if ipv4 {
        let header: *const [u8; Ipv4Hdr::LEN] = ptr_at(ctx, offset)?;
        // SAFETY: ptr_at checked the whole fixed header lies inside the frame.
        (4, unsafe { (*header)[0] })
    } else {
        let header: *const [u8; Ipv6Hdr::LEN] = ptr_at(ctx, offset)?;
        // SAFETY: as above.
        (6, unsafe { (*header)[0] })
    };
    if first >> 4 != version {
        return Err(Reason::BadHeader);
    }
    Ok(())
}
