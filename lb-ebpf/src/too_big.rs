//! The answer to an `ipip` packet too big for the tunnel (what katran and the kernel's own
//! tunnels do): instead of the packet, the client gets an ICMP "fragmentation needed" (IPv4,
//! only when DF is set: otherwise a router may fragment, and xlb drops) or an ICMPv6 "packet
//! too big" carrying the MTU that leaves room for the outer header, sent back the way the
//! packet came with XDP_TX, so its path-MTU discovery shrinks the flow's packets.
//!
//! The answer is built in place: the head grows by the new IP and ICMP headers, the MAC
//! addresses swap (a VLAN tag stays), and the tail is cut so the quote is the packet's first
//! [`QUOTE_LEN`] bytes: its IP header (options included) and the start of TCP or UDP, what the
//! client's stack needs to find the connection (RFC 792, RFC 4443 section 3.2). IPv4: version
//! 4, IHL 5, TOS 0, id 0, no flags, TTL 64, protocol 1, from the VIP to the client; ICMP type 3
//! code 4, next-hop MTU in the low 16 bits. IPv6: traffic class and flow label 0, next header
//! 58, hop limit 64; ICMPv6 type 2 code 0 with the 32-bit MTU.

use aya_ebpf::{helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use lb_common::{Reason, service::FAMILY_IPV4};
use lb_ebpf::headers::{
    ETH_P_IP, ETH_P_IPV6, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_HEADER_LEN, ICMPV6_PKT_TOOBIG,
    IPPROTO_ICMP, IPPROTO_ICMPV6, ptr_at,
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    parse::Packet,
    rewrite::{self, fold, sum_words},
};

/// Bytes of the too-big packet quoted: the longest IPv4 header (60) and 8 bytes beyond it.
pub const QUOTE_LEN: usize = 68;

/// Answers `packet` (a frame of `received` bytes), larger than `inner_mtu`, with a too-big
/// error to its sender; or drops it
/// as `encap_too_big` when it may not be answered: an IPv4 packet without DF, an ICMP error
/// (never answered with another), or one that fits (the tunnel failed for another reason).
#[inline(always)]
pub fn answer(ctx: &XdpContext, packet: &Packet, inner_mtu: usize, received: usize) -> Reason {
    if packet.icmp || !packet.df || packet.ip_len <= inner_mtu || packet.ip_len < QUOTE_LEN {
        return Reason::EncapTooBig;
    }
    let built = if packet.family == FAMILY_IPV4 {
        v4(ctx, packet, inner_mtu, received)
    } else {
        v6(ctx, packet, inner_mtu, received)
    };
    match built {
        Ok(()) => Reason::TooBigAnswered,
        Err(reason) => reason,
    }
}

/// Grows the head by `grow` bytes with the MACs swapped, then cuts the frame after the quote.
/// The cut comes from the lengths known, not from the frame's end: the verifier refuses
/// arithmetic on the end pointer.
#[inline(always)]
fn reshape(
    ctx: &XdpContext,
    packet: &Packet,
    grow: usize,
    ether_type: u16,
    received: usize,
) -> Result<(), Reason> {
    rewrite::grow_head(ctx, packet.l2_len, grow, |dst, src| (src, dst), ether_type)?;
    // The frame is now `received + grow` bytes; keep `l2_len + grow + QUOTE_LEN` of them.
    let cut = received - (packet.l2_len + QUOTE_LEN);
    // SAFETY: ctx.ctx is the live xdp_md of this run; pointers are re-derived afterwards.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(cut as i32)) } != 0 {
        return Err(Reason::EncapTooBig);
    }
    Ok(())
}

/// The one's complement sum of the quote, which starts at `offset`.
#[inline(always)]
fn quote_sum(ctx: &XdpContext, offset: usize) -> Result<u32, Reason> {
    let quote: *const [u8; QUOTE_LEN] = ptr_at(ctx, offset)?;
    // SAFETY: ptr_at checked the quote lies inside the frame.
    Ok(sum_words(unsafe { &*quote }, 0))
}

#[inline(always)]
fn v4(ctx: &XdpContext, packet: &Packet, inner_mtu: usize, received: usize) -> Result<(), Reason> {
    let (client, vip) = (packet.flow.src, packet.flow.dst);
    let grow = Ipv4Hdr::LEN + ICMP_HEADER_LEN;
    reshape(ctx, packet, grow, ETH_P_IP, received)?;
    let l2 = packet.l2_len;
    let mut header = Ipv4Hdr {
        vihl: 0x45,
        tos: 0,
        tot_len: ((grow + QUOTE_LEN) as u16).to_be_bytes(),
        id: [0; 2],
        frags: [0; 2],
        ttl: 64,
        proto: IPPROTO_ICMP,
        check: [0; 2],
        src_addr: [vip[0], vip[1], vip[2], vip[3]],
        dst_addr: [client[0], client[1], client[2], client[3]],
    };
    header.check = rewrite::checksum(&header).to_be_bytes();
    let mtu = (inner_mtu as u16).to_be_bytes();
    let mut icmp = [
        ICMP_DEST_UNREACH,
        ICMP_FRAG_NEEDED,
        0,
        0,
        0,
        0,
        mtu[0],
        mtu[1],
    ];
    let sum = sum_words(&icmp, quote_sum(ctx, l2 + grow)?);
    icmp[2..4].copy_from_slice(&fold(sum).to_be_bytes());
    let ip: *mut Ipv4Hdr = ptr_at(ctx, l2)?;
    let icmp_at: *mut [u8; ICMP_HEADER_LEN] = ptr_at(ctx, l2 + Ipv4Hdr::LEN)?;
    // SAFETY: ptr_at checked both headers lie inside the frame.
    unsafe {
        *ip = header;
        *icmp_at = icmp;
    }
    Ok(())
}

#[inline(always)]
fn v6(ctx: &XdpContext, packet: &Packet, inner_mtu: usize, received: usize) -> Result<(), Reason> {
    let (client, vip) = (packet.flow.src, packet.flow.dst);
    let grow = Ipv6Hdr::LEN + ICMP_HEADER_LEN;
    reshape(ctx, packet, grow, ETH_P_IPV6, received)?;
    let l2 = packet.l2_len;
    let payload_len = (ICMP_HEADER_LEN + QUOTE_LEN) as u16;
    let header = Ipv6Hdr {
        vcf: [0x60, 0, 0, 0],
        payload_len: payload_len.to_be_bytes(),
        next_hdr: IPPROTO_ICMPV6,
        hop_limit: 64,
        src_addr: vip,
        dst_addr: client,
    };
    let mtu = (inner_mtu as u32).to_be_bytes();
    let mut icmp = [ICMPV6_PKT_TOOBIG, 0, 0, 0, mtu[0], mtu[1], mtu[2], mtu[3]];
    // The pseudo-header (RFC 8200 section 8.1): addresses, upper-layer length, next header.
    let pseudo =
        sum_words(&vip, sum_words(&client, 0)) + u32::from(payload_len) + u32::from(IPPROTO_ICMPV6);
    let sum = sum_words(&icmp, quote_sum(ctx, l2 + grow)? + pseudo);
    icmp[2..4].copy_from_slice(&fold(sum).to_be_bytes());
    let ip: *mut Ipv6Hdr = ptr_at(ctx, l2)?;
    let icmp_at: *mut [u8; ICMP_HEADER_LEN] = ptr_at(ctx, l2 + Ipv6Hdr::LEN)?;
    // SAFETY: ptr_at checked both headers lie inside the frame.
    unsafe {
        *ip = header;
        *icmp_at = icmp;
    }
    Ok(())
}
