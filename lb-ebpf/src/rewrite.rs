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
//!
//! The MAC addresses, and the headers a grown frame gets, are read and written as 16-bit words:
//! the header types are byte arrays, which the BPF backend copies a byte at a time. Every path
//! by which the kernel runs XDP (driver, veth, generic on an skb, test run) starts the frame at
//! an even address (its headroom is even), and every header here starts at an even offset, so
//! the words are aligned.

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
    let macs: *mut MacWords = ptr_at(ctx, 0)?;
    let backend: [u16; 3] = words(&backend.mac);
    // SAFETY: ptr_at checked both MAC addresses lie inside the frame, 2-byte aligned.
    unsafe {
        let ours = *macs;
        *macs = [
            backend[0], backend[1], backend[2], ours[0], ours[1], ours[2],
        ];
    }
    Ok(())
}

/// The Ethernet header up to the VLAN tag's EtherType, as 16-bit words: destination MAC (0-2),
/// source MAC (3-5), then 0x8100 and the TCI when tagged.
pub type L2Words = [u16; 8];
/// The two MAC addresses of [`L2Words`].
pub type MacWords = [u16; 6];

/// Grows the frame's head by `grow` bytes and writes the Ethernet header (and VLAN tag) again
/// in front: MAC addresses `macs` (given the old ones), EtherType `ether_type`. Every pointer
/// into the frame taken before is invalid afterwards.
#[inline(always)]
pub fn grow_head(
    ctx: &XdpContext,
    l2_len: usize,
    grow: usize,
    macs: impl FnOnce(&MacWords) -> MacWords,
    ether_type: u16,
) -> Result<(), Reason> {
    // SAFETY: ctx.ctx is the live xdp_md of this run; every pointer below is re-derived and
    // re-checked after the head moved.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) } != 0 {
        // No headroom left: cannot grow.
        return Err(Reason::EncapTooBig);
    }
    // Moving the head leaves the bytes in place: the old header is read `grow` bytes in,
    // after the call, so nothing of it is held (spilled to the stack) across the call.
    let old: *const L2Words = ptr_at(ctx, grow)?;
    // SAFETY: ptr_at checked the words lie inside the frame (a frame that reached here holds
    // at least an Ethernet and an IP header, more than these); the frame is 2-byte aligned.
    let old = unsafe { *old };
    let old_macs = [old[0], old[1], old[2], old[3], old[4], old[5]];
    let new = macs(&old_macs);
    let ether_type = u16::from_ne_bytes(ether_type.to_be_bytes());
    // The words after the EtherType are the new header's: the caller writes them next.
    if l2_len == EthHdr::LEN {
        let l2: *mut [u16; 7] = ptr_at(ctx, 0)?;
        let words = [new[0], new[1], new[2], new[3], new[4], new[5], ether_type];
        // SAFETY: ptr_at checked the words lie inside the (grown) frame, 2-byte aligned.
        unsafe { *l2 = words };
    } else {
        let l2: *mut [u16; 9] = ptr_at(ctx, 0)?;
        let words = [
            new[0], new[1], new[2], new[3], new[4], new[5], old[6], old[7], ether_type,
        ];
        // SAFETY: as above.
        unsafe { *l2 = words };
    }
    Ok(())
}

/// `bytes` (an address or other header field in network order) as the 16-bit words it has in a
/// frame.
#[inline(always)]
fn words<const N: usize, const W: usize>(bytes: &[u8; N]) -> [u16; W] {
    let mut words = [0u16; W];
    let mut i = 0;
    while i < W {
        words[i] = u16::from_ne_bytes([bytes[2 * i], bytes[2 * i + 1]]);
        i += 1;
    }
    words
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
    let next_hop: [u16; 3] = words(&backend.mac);
    grow_head(
        ctx,
        packet.l2_len,
        outer_len,
        |old| {
            [
                next_hop[0],
                next_hop[1],
                next_hop[2],
                old[0],
                old[1],
                old[2],
            ]
        },
        outer_type,
    )?;
    let outer_total = packet.ip_len + outer_len;
    if v4 {
        let ip: *mut [u16; 10] = ptr_at(ctx, packet.l2_len)?;
        let tos = if inner_v4 { packet.tos } else { 0 };
        let source: [u16; 2] = words(&config.ipip_source_v4(hash));
        let target: [u16; 2] = words(&[
            backend.addr[0],
            backend.addr[1],
            backend.addr[2],
            backend.addr[3],
        ]);
        let mut header = [
            u16::from_ne_bytes([0x45, tos]),
            u16::from_ne_bytes((outer_total as u16).to_be_bytes()),
            0,
            0,
            u16::from_ne_bytes([64, proto]),
            0,
            source[0],
            source[1],
            target[0],
            target[1],
        ];
        header[5] = checksum_words(&header);
        // SAFETY: ptr_at checked the header lies inside the frame, 2-byte aligned.
        unsafe { *ip = header };
    } else {
        let ip: *mut [u16; 20] = ptr_at(ctx, packet.l2_len)?;
        let source: [u16; 8] = words(&config.ipip_source_v6(hash));
        let target: [u16; 8] = words(&backend.addr);
        let mut header = [0u16; 20];
        header[0] = u16::from_ne_bytes([0x60, 0]);
        header[2] = u16::from_ne_bytes((packet.ip_len as u16).to_be_bytes());
        header[3] = u16::from_ne_bytes([proto, 64]);
        header[4..12].copy_from_slice(&source);
        header[12..].copy_from_slice(&target);
        // SAFETY: ptr_at checked the header lies inside the frame, 2-byte aligned.
        unsafe { *ip = header };
    }
    Ok(())
}

/// The checksum field of an IPv4 header (RFC 1071) held as the 16-bit words it has in a frame,
/// its checksum word zero. The one's complement sum does not depend on byte order (RFC 1071
/// section 2(B)): the words are added as they are and the result stored as it comes.
#[inline(always)]
fn checksum_words(header: &[u16; 10]) -> u16 {
    let mut sum = 0u32;
    for word in header {
        sum += u32::from(*word);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
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

const _: () = assert!(size_of::<L2Words>() == 12 + VLAN_TAG_LEN);
