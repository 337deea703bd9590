//! Header parsing: Ethernet with at most one 802.1Q tag, IPv4 (with options), IPv6, TCP, UDP,
//! and the original packet quoted in an ICMP "fragmentation needed" / ICMPv6 "packet too big",
//! with the explicit bounds checks the verifier needs. A packet either parses into a
//! [`Packet`] or stops with a reason.

use crate::classify;
use aya_ebpf::programs::XdpContext;
use lb_common::{
    FlowKey, Reason,
    service::{AddrKey, FAMILY_IPV4, FAMILY_IPV6, vip_filter_bit_v4, vip_filter_bit_v6},
};
use lb_ebpf::headers::{
    self, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_HEADER_LEN, ICMPV6_PKT_TOOBIG,
    IPPROTO_FRAGMENT, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, ptr_at,
};
use network_types::{
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

/// TCP flags byte (offset 13 of the header): SYN and ACK.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// What the later stages need of a well-formed TCP or UDP packet, or of an ICMP error about
/// one.
pub struct Packet {
    /// The flow as the client sent it (for an ICMP error: the quoted packet, reversed).
    pub flow: FlowKey,
    pub family: u8,
    /// A TCP SYN without ACK: the first packet of a connection, always steered by the table.
    pub syn: bool,
    /// An ICMP error about `flow`, to go to the backend that owns the flow.
    pub icmp: bool,
    /// Length of the Ethernet header, VLAN tag included (14 or 18).
    pub l2_len: usize,
    /// Length of the IP packet from its header (IPv4 total length, IPv6 40 + payload length).
    pub ip_len: usize,
    /// IPv4 type of service (0 for IPv6), copied into an outer IPv4 tunnel header.
    pub tos: u8,
    /// IPv4 "don't fragment" set, or IPv6 (never fragmented on the way): a packet too big for
    /// the tunnel gets a too-big answer rather than a silent drop.
    pub df: bool,
}

#[inline(always)]
pub fn packet(ctx: &XdpContext) -> Result<Packet, Reason> {
    headers::ip(ctx, ipv4, ipv6)
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, l2_len: usize) -> Result<Packet, Reason> {
    let v4 = headers::ipv4(ctx, l2_len)?;
    if v4.fragment() {
        return Err(Reason::Fragment);
    }
    let (ip, header_len, total_len) = (v4.header, v4.header_len, v4.total_len);
    // Most packets are for the host, not a VIP: stop before the transport header for them.
    let dst = headers::address(&ip.dst_addr);
    if !classify::may_be_vip(vip_filter_bit_v4(&dst)) {
        return Err(Reason::NotVip);
    }
    let packet = Packet {
        flow: FlowKey::v4(&headers::address(&ip.src_addr), &dst, ip.proto),
        family: FAMILY_IPV4,
        syn: false,
        icmp: false,
        l2_len,
        ip_len: total_len,
        tos: ip.tos,
        df: v4.dont_fragment(),
    };
    let l4 = l2_len + header_len;
    let parsed = if ip.proto == IPPROTO_ICMP {
        // An ICMP message we cannot read as an error about a flow is the host's business.
        icmpv4(ctx, packet, l4, &ip.dst_addr).map_err(|_| Reason::OtherL4)
    } else {
        transport(ctx, packet, l4)
    };
    parsed.map_err(|reason| classify::unsteered(&AddrKey::v4(&ip.dst_addr), reason))
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, l2_len: usize) -> Result<Packet, Reason> {
    let (ip, ip_len) = headers::ipv6(ctx, l2_len)?;
    if ip.next_hdr == IPPROTO_FRAGMENT {
        return Err(Reason::Fragment);
    }
    let dst = headers::address(&ip.dst_addr);
    if !classify::may_be_vip(vip_filter_bit_v6(&dst)) {
        return Err(Reason::NotVip);
    }
    let packet = Packet {
        flow: FlowKey::v6(&headers::address(&ip.src_addr), &dst, ip.next_hdr),
        family: FAMILY_IPV6,
        syn: false,
        icmp: false,
        l2_len,
        ip_len,
        tos: 0,
        df: true,
    };
    let l4 = l2_len + Ipv6Hdr::LEN;
    let parsed = if ip.next_hdr == IPPROTO_ICMPV6 {
        // As for ICMPv4: neighbour discovery and the rest belong to the host.
        icmpv6(ctx, packet, l4, &ip.dst_addr).map_err(|_| Reason::OtherL4)
    } else {
        transport(ctx, packet, l4)
    };
    parsed.map_err(|reason| classify::unsteered(&AddrKey::v6(&ip.dst_addr), reason))
}

/// The TCP or UDP header at `offset`, which must lie inside the IP packet (not merely the
/// frame: bytes past the IP length, such as an Ethernet trailer, are no part of it).
///
/// TCP: the header with its options inside the IP packet (else `truncated`), data offset at
/// least 5 (else `bad_header`). UDP: the header inside the IP packet (else `truncated`), its
/// length at least 8 and at most the IP payload (else `bad_header`: the receiving stack drops
/// such a datagram too). A UDP length shorter than the IP payload is forwarded unchanged: RFC
/// 768 allows it and the receiving stack trims the datagram to it.
#[inline(always)]
fn transport(ctx: &XdpContext, mut packet: Packet, offset: usize) -> Result<Packet, Reason> {
    let ip_end = packet.l2_len + packet.ip_len;
    match packet.flow.proto {
        IPPROTO_TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, offset)?;
            if offset + TcpHdr::LEN > ip_end {
                return Err(Reason::Truncated);
            }
            // SAFETY: ptr_at checked the header lies inside the frame.
            let (header, bytes) = unsafe { (&*tcp, &*tcp.cast::<[u8; TcpHdr::LEN]>()) };
            // Data offset and flags, read through the checked pointer so the verifier sees
            // the bound.
            let data_offset = usize::from(bytes[12] >> 4) * 4;
            if data_offset < TcpHdr::LEN {
                return Err(Reason::BadHeader);
            }
            if offset + data_offset > ip_end {
                return Err(Reason::Truncated);
            }
            packet.flow.set_ports(header.source, header.dest);
            packet.syn = bytes[13] & (TCP_SYN | TCP_ACK) == TCP_SYN;
        }
        IPPROTO_UDP => {
            let udp: *const UdpHdr = ptr_at(ctx, offset)?;
            if offset + UdpHdr::LEN > ip_end {
                return Err(Reason::Truncated);
            }
            // SAFETY: ptr_at checked the header lies inside the frame.
            let udp = unsafe { &*udp };
            let udp_len = usize::from(u16::from_be_bytes(udp.len));
            if udp_len < UdpHdr::LEN || offset + udp_len > ip_end {
                return Err(Reason::BadHeader);
            }
            packet.flow.set_ports(udp.src, udp.dst);
        }
        _ => return Err(Reason::OtherL4),
    }
    Ok(packet)
}

/// The quoted packet's ports: the first four bytes of its TCP or UDP header.
#[inline(always)]
fn quoted_ports(ctx: &XdpContext, packet: &mut Packet, offset: usize) -> Result<(), Reason> {
    if packet.flow.proto != IPPROTO_TCP && packet.flow.proto != IPPROTO_UDP {
        return Err(Reason::OtherL4);
    }
    let ports: *const [u8; 4] = ptr_at(ctx, offset)?;
    if offset + 4 > packet.l2_len + packet.ip_len {
        return Err(Reason::Truncated);
    }
    // SAFETY: ptr_at checked the four bytes lie inside the frame.
    let ports = unsafe { &*ports };
    // The quoted packet went from the VIP to the client: reverse it into the client's flow.
    packet
        .flow
        .set_ports([ports[2], ports[3]], [ports[0], ports[1]]);
    packet.icmp = true;
    Ok(())
}

#[inline(always)]
fn icmpv4(
    ctx: &XdpContext,
    mut packet: Packet,
    offset: usize,
    dst: &[u8; 4],
) -> Result<Packet, Reason> {
    let icmp: *const [u8; ICMP_HEADER_LEN] = ptr_at(ctx, offset)?;
    // SAFETY: ptr_at checked the header lies inside the frame.
    let icmp = unsafe { &*icmp };
    if icmp[0] != ICMP_DEST_UNREACH || icmp[1] != ICMP_FRAG_NEEDED {
        return Err(Reason::OtherL4);
    }
    let quoted: *const Ipv4Hdr = ptr_at(ctx, offset + ICMP_HEADER_LEN)?;
    // SAFETY: ptr_at checked the quoted header lies inside the frame.
    let quoted = unsafe { &*quoted };
    let header_len = usize::from(quoted.vihl & 0x0f) * 4;
    if quoted.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN {
        return Err(Reason::BadHeader);
    }
    // Only an error about a packet this address sent can be about one of its flows.
    if quoted.src_addr != *dst {
        return Err(Reason::OtherL4);
    }
    packet.flow = FlowKey::v4(&quoted.dst_addr, &quoted.src_addr, quoted.proto);
    quoted_ports(ctx, &mut packet, offset + ICMP_HEADER_LEN + header_len)?;
    Ok(packet)
}

#[inline(always)]
fn icmpv6(
    ctx: &XdpContext,
    mut packet: Packet,
    offset: usize,
    dst: &[u8; 16],
) -> Result<Packet, Reason> {
    let icmp: *const [u8; ICMP_HEADER_LEN] = ptr_at(ctx, offset)?;
    // SAFETY: ptr_at checked the header lies inside the frame.
    if unsafe { (*icmp)[0] } != ICMPV6_PKT_TOOBIG {
        return Err(Reason::OtherL4);
    }
    let quoted: *const Ipv6Hdr = ptr_at(ctx, offset + ICMP_HEADER_LEN)?;
    // SAFETY: ptr_at checked the quoted header lies inside the frame.
    let quoted = unsafe { &*quoted };
    if quoted.vcf[0] >> 4 != 6 {
        return Err(Reason::BadHeader);
    }
    // As for ICMPv4.
    if quoted.src_addr != *dst {
        return Err(Reason::OtherL4);
    }
    packet.flow = FlowKey::v6(&quoted.dst_addr, &quoted.src_addr, quoted.next_hdr);
    quoted_ports(ctx, &mut packet, offset + ICMP_HEADER_LEN + Ipv6Hdr::LEN)?;
    Ok(packet)
}
