//! Forwarding rewrites.
//!
//! `dsr`: the backend's MAC becomes the destination and ours (the frame's old destination) the
//! source; the IP packet is untouched, so the backend answers the client directly from the VIP.
//!
//! `ipip`: an outer IPv4 or IPv6 header (the backend's family) goes in front of the IP packet,
//! addressed from the configured tunnel source (within a prefix: by the flow hash) to the
//! backend, and the frame goes to the next
//! hop's MAC. Outer IPv4: IHL 5, TOS copied from an inner IPv4 packet, id 0, no flags, TTL 64,
//! protocol 4 (IPv4 inside) or 41 (IPv6 inside). Outer IPv6: traffic class and flow label 0,
//! hop limit 64, next header 4 or 41. A VLAN tag stays in front of the outer header.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{Backend, Config, Reason, service::FAMILY_IPV4};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use lb_ebpf::headers::{ETH_P_IP, ETH_P_IPV6, IPPROTO_IPIP, IPPROTO_IPV6, VLAN_TAG_LEN, ptr_at};

use crate::parse::Packet;

#[inline(always)]
pub fn dsr(ctx: &XdpContext, backend: &Backend) -> Result<(), Reason> {
    let macs: *mut [[u8; 6]; 2] = ptr_at(ctx, 0)?;
    // SAFETY: ptr_at checked both MAC addresses lie inside the frame.
    unsafe {
        (*macs)[1] = (*macs)[0];
        (*macs)[0] = backend.mac;
    }
    Ok(())
}

/// The first bytes of the frame up to the VLAN tag's EtherType: what a rewrite that grows the
/// head (`ipip`, a too-big answer) keeps.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct L2Prefix {
    pub macs: [[u8; 6]; 2],
    /// 0x8100 and the TCI when tagged; unused otherwise.
    pub tag: [u8; 4],
}

/// Grows the frame's head by `grow` bytes and writes the Ethernet header (and VLAN tag) again
/// in front: MAC addresses `macs`, EtherType `ether_type`. Every pointer into the frame taken
/// before is invalid afterwards.
#[inline(always)]
pub fn grow_head(
    ctx: &XdpContext,
    l2_len: usize,
    grow: usize,
    macs: impl FnOnce(&L2Prefix) -> [[u8; 6]; 2],
    ether_type: u16,
) -> Result<(), Reason> {
    let old: *const L2Prefix = ptr_at(ctx, 0)?;
    // SAFETY: ptr_at checked the prefix lies inside the frame (a frame that reached here holds
    // at least an Ethernet and an IP header, more than the prefix).
    let old = unsafe { *old };
    // SAFETY: ctx.ctx is the live xdp_md of this run; every pointer below is re-derived and
    // re-checked after the head moved.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) } != 0 {
        // No headroom left: cannot grow.
        return Err(Reason::EncapTooBig);
    }
    let l2: *mut L2Prefix = ptr_at(ctx, 0)?;
    // SAFETY: ptr_at checked the prefix lies inside the (grown) frame.
    unsafe {
        (*l2).macs = macs(&old);
        if l2_len != EthHdr::LEN {
            (*l2).tag = old.tag;
        }
    }
    let type_at: *mut [u8; 2] = ptr_at(ctx, l2_len - 2)?;
    // SAFETY: ptr_at checked the two bytes lie inside the frame.
    unsafe { *type_at = ether_type.to_be_bytes() };
    Ok(())
}

/// The largest inner IP packet `ipip` may send to `backend`: the MTU less the outer header.
#[inline(always)]
pub fn inner_mtu(backend: &Backend, config: &Config) -> usize {
    let mtu = if config.mtu == 0 {
        Config::DEFAULT_MTU
    } else {
        config.mtu
    } as usize;
    mtu.saturating_sub(outer_len(backend))
}

#[inline(always)]
fn outer_len(backend: &Backend) -> usize {
    if backend.family == FAMILY_IPV4 {
        Ipv4Hdr::LEN
    } else {
        Ipv6Hdr::LEN
    }
}

#[inline(always)]
pub fn ipip(
    ctx: &XdpContext,
    packet: &Packet,
    hash: u32,
    backend: &Backend,
    config: &Config,
) -> Result<(), Reason> {
    let v4 = backend.family == FAMILY_IPV4;
    let outer_len = outer_len(backend);
    if packet.ip_len > inner_mtu(backend, config) {
        return Err(Reason::EncapTooBig);
    }
    let inner_v4 = packet.family == FAMILY_IPV4;
    let proto = if inner_v4 { IPPROTO_IPIP } else { IPPROTO_IPV6 };
    let outer_type: u16 = if v4 { ETH_P_IP } else { ETH_P_IPV6 };
    grow_head(
        ctx,
        packet.l2_len,
        outer_len,
        |old| [backend.mac, old.macs[0]],
        outer_type,
    )?;
    let outer_total = packet.ip_len + outer_len;
    if v4 {
        let ip: *mut Ipv4Hdr = ptr_at(ctx, packet.l2_len)?;
        let mut header = Ipv4Hdr {
            vihl: 0x45,
            tos: if inner_v4 { packet.tos } else { 0 },
            tot_len: (outer_total as u16).to_be_bytes(),
            id: [0; 2],
            frags: [0; 2],
            ttl: 64,
            proto,
            check: [0; 2],
            src_addr: config.ipip_source_v4(hash),
            dst_addr: [
                backend.addr[0],
                backend.addr[1],
                backend.addr[2],
                backend.addr[3],
            ],
        };
        header.check = checksum(&header).to_be_bytes();
        // SAFETY: ptr_at checked the header lies inside the frame.
        unsafe { *ip = header };
    } else {
        let ip: *mut Ipv6Hdr = ptr_at(ctx, packet.l2_len)?;
        let header = Ipv6Hdr {
            vcf: [0x60, 0, 0, 0],
            payload_len: (packet.ip_len as u16).to_be_bytes(),
            next_hdr: proto,
            hop_limit: 64,
            src_addr: config.ipip_source_v6(hash),
            dst_addr: backend.addr,
        };
        // SAFETY: ptr_at checked the header lies inside the frame.
        unsafe { *ip = header };
    }
    Ok(())
}

/// The IPv4 header checksum (RFC 1071) of a header whose checksum field is zero.
#[inline(always)]
pub fn checksum(header: &Ipv4Hdr) -> u16 {
    // SAFETY: Ipv4Hdr is 20 bytes of plain data.
    let bytes = unsafe { &*(header as *const Ipv4Hdr).cast::<[u8; Ipv4Hdr::LEN]>() };
    fold(sum_words(bytes, 0))
}

/// Adds the big-endian 16-bit words of `bytes` (an even number of them) to `sum`.
#[inline(always)]
pub fn sum_words<const N: usize>(bytes: &[u8; N], mut sum: u32) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    sum
}

/// The one's complement of the folded one's complement sum: the checksum to store (RFC 1071).
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

const _: () = assert!(size_of::<L2Prefix>() == 12 + VLAN_TAG_LEN);
