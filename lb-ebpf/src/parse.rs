//! Header parsing: Ethernet with at most one 802.1Q tag, IPv4 (with options), IPv6, TCP and UDP, with the explicit bounds
//! checks the verifier needs. A packet either parses into a [`Packet`] or stops with a reason.

use aya_ebpf::programs::XdpContext;
use lb_common::{FlowKey, Reason, service::FAMILY_IPV4, service::FAMILY_IPV6};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const VLAN_TAG_LEN: usize = 4;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_FRAGMENT: u8 = 44;
/// IPv4 "more fragments" flag and fragment offset mask in the host-order `frags` field.
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;
/// TCP flags byte (offset 13 of the header): SYN and ACK.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// What the later stages need of a well-formed TCP or UDP packet.
pub struct Packet {
    pub flow: FlowKey,
    pub family: u8,
    /// A TCP SYN without ACK: the first packet of a connection, always steered by the table.
    pub syn: bool,
}

/// A bounds-checked pointer to a `T` at `offset` bytes into the frame.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, Reason> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return Err(Reason::Truncated);
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
pub fn packet(ctx: &XdpContext) -> Result<Packet, Reason> {
    let eth: *const EthHdr = ptr_at(ctx, 0).map_err(|_| Reason::NotIp)?;
    // SAFETY: ptr_at checked the header lies inside the frame.
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut l3 = EthHdr::LEN;
    if ether_type == ETH_P_8021Q {
        // One 802.1Q tag: TCI, then the real EtherType. A second tag (QinQ) is not IP to us.
        let inner: *const [u8; 2] = ptr_at(ctx, EthHdr::LEN + 2)?;
        // SAFETY: ptr_at checked the two bytes lie inside the frame.
        ether_type = u16::from_be_bytes(unsafe { *inner });
        l3 += VLAN_TAG_LEN;
    }
    match ether_type {
        ETH_P_IP => ipv4(ctx, l3),
        ETH_P_IPV6 => ipv6(ctx, l3),
        _ => Err(Reason::NotIp),
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, offset: usize) -> Result<Packet, Reason> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, offset)?;
    // SAFETY: ptr_at checked the fixed header lies inside the frame.
    let ip = unsafe { &*ip };
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if ip.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN || total_len < header_len {
        return Err(Reason::BadHeader);
    }
    if offset + total_len > ctx.data_end() - ctx.data() {
        return Err(Reason::Truncated);
    }
    if u16::from_be_bytes(ip.frags) & (IP_MF | IP_OFFSET) != 0 {
        return Err(Reason::Fragment);
    }
    let mut flow = FlowKey {
        proto: ip.proto,
        ..FlowKey::default()
    };
    flow.src[..4].copy_from_slice(&ip.src_addr);
    flow.dst[..4].copy_from_slice(&ip.dst_addr);
    transport(ctx, flow, FAMILY_IPV4, offset + header_len)
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, offset: usize) -> Result<Packet, Reason> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, offset)?;
    // SAFETY: ptr_at checked the fixed header lies inside the frame.
    let ip = unsafe { &*ip };
    if ip.vcf[0] >> 4 != 6 {
        return Err(Reason::BadHeader);
    }
    let payload_len = usize::from(u16::from_be_bytes(ip.payload_len));
    if offset + Ipv6Hdr::LEN + payload_len > ctx.data_end() - ctx.data() {
        return Err(Reason::Truncated);
    }
    if ip.next_hdr == IPPROTO_FRAGMENT {
        return Err(Reason::Fragment);
    }
    let flow = FlowKey {
        src: ip.src_addr,
        dst: ip.dst_addr,
        proto: ip.next_hdr,
        ..FlowKey::default()
    };
    transport(ctx, flow, FAMILY_IPV6, offset + Ipv6Hdr::LEN)
}

#[inline(always)]
fn transport(
    ctx: &XdpContext,
    mut flow: FlowKey,
    family: u8,
    offset: usize,
) -> Result<Packet, Reason> {
    let mut syn = false;
    match flow.proto {
        IPPROTO_TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, offset)?;
            // SAFETY: ptr_at checked the header lies inside the frame.
            let (header, bytes) = unsafe { (&*tcp, &*tcp.cast::<[u8; TcpHdr::LEN]>()) };
            flow.sport = u16::from_ne_bytes(header.source);
            flow.dport = u16::from_ne_bytes(header.dest);
            // The flags byte, read through the checked pointer so the verifier sees the bound.
            syn = bytes[13] & (TCP_SYN | TCP_ACK) == TCP_SYN;
        }
        IPPROTO_UDP => {
            let udp: *const UdpHdr = ptr_at(ctx, offset)?;
            // SAFETY: ptr_at checked the header lies inside the frame.
            let udp = unsafe { &*udp };
            flow.sport = u16::from_ne_bytes(udp.src);
            flow.dport = u16::from_ne_bytes(udp.dst);
        }
        _ => return Err(Reason::OtherL4),
    }
    Ok(Packet { flow, family, syn })
}
