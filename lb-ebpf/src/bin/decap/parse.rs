//! Parsing a frame as far as decapsulation needs: Ethernet with at most one 802.1Q tag, then
//! the outer IPv4 (options honoured through IHL) or IPv6 header, with explicit bounds checks
//! the verifier accepts. A packet carrying IPv4 or IPv6 (protocol 4 or 41) parses into a
//! [`Tunnel`]; anything else stops with the reason it is counted under.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    Reason,
    decap::DecapKey,
    service::{FAMILY_IPV4, FAMILY_IPV6},
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
pub const VLAN_TAG_LEN: usize = 4;
/// IP protocol numbers of an encapsulated IPv4 (RFC 2003) and IPv6 (RFC 2473, 4213) packet.
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
/// IPv4 "more fragments" flag and fragment offset mask in the host-order `frags` field.
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;

/// A well-formed outer header announcing an IPv4 or IPv6 packet inside.
pub struct Tunnel {
    /// The outer destination, as the address map keys it.
    pub dst: DecapKey,
    /// Length of the Ethernet header, 802.1Q tag included: 14 or 18.
    pub l2_len: usize,
    /// Length of the outer IP header: 20 to 60 for IPv4, 40 for IPv6.
    pub outer_len: usize,
    /// Bytes the outer header says follow it (IPv4 total length minus the header, IPv6
    /// payload length); all of them are inside the frame.
    pub payload_len: usize,
    /// [`ETH_P_IP`] or [`ETH_P_IPV6`]: the family the outer protocol number announces.
    pub inner_ether_type: u16,
    /// An IPv4 fragment (MF set or offset non-zero).
    pub fragment: bool,
}

/// A bounds-checked pointer to a `T` at `offset` bytes into the frame. Every packet access
/// goes through one: the verifier accepts a read or write only through the pointer whose bound
/// it saw checked.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*mut T, Reason> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return Err(Reason::Truncated);
    }
    Ok((start + offset) as *mut T)
}

#[inline(always)]
pub fn tunnel(ctx: &XdpContext) -> Result<Tunnel, Reason> {
    let eth: *const EthHdr = ptr_at(ctx, 0).map_err(|_| Reason::NotIp)?;
    // SAFETY: ptr_at checked the header lies inside the frame.
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut l2_len = EthHdr::LEN;
    if ether_type == ETH_P_8021Q {
        // One 802.1Q tag: TCI, then the real EtherType. A second tag (QinQ) is not IP to us.
        let inner: *const [u8; 2] = ptr_at(ctx, EthHdr::LEN + 2)?;
        // SAFETY: ptr_at checked the two bytes lie inside the frame.
        ether_type = u16::from_be_bytes(unsafe { *inner });
        l2_len += VLAN_TAG_LEN;
    }
    match ether_type {
        ETH_P_IP => ipv4(ctx, l2_len),
        ETH_P_IPV6 => ipv6(ctx, l2_len),
        _ => Err(Reason::NotIp),
    }
}

/// The inner family an outer protocol number announces; any other packet is not for us.
#[inline(always)]
fn inner_ether_type(proto: u8) -> Result<u16, Reason> {
    match proto {
        IPPROTO_IPIP => Ok(ETH_P_IP),
        IPPROTO_IPV6 => Ok(ETH_P_IPV6),
        _ => Err(Reason::NotVip),
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, offset: usize) -> Result<Tunnel, Reason> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, offset)?;
    // SAFETY: ptr_at checked the fixed header lies inside the frame.
    let ip = unsafe { &*ip };
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if ip.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN || total_len < header_len {
        return Err(Reason::BadHeader);
    }
    // Also covers options: the header is part of the total length.
    if offset + total_len > ctx.data_end() - ctx.data() {
        return Err(Reason::Truncated);
    }
    let inner_ether_type = inner_ether_type(ip.proto)?;
    let mut dst = DecapKey {
        family: FAMILY_IPV4,
        ..DecapKey::default()
    };
    dst.addr[..4].copy_from_slice(&ip.dst_addr);
    Ok(Tunnel {
        dst,
        l2_len: offset,
        outer_len: header_len,
        payload_len: total_len - header_len,
        inner_ether_type,
        fragment: u16::from_be_bytes(ip.frags) & (IP_MF | IP_OFFSET) != 0,
    })
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, offset: usize) -> Result<Tunnel, Reason> {
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
    // Extension headers before the inner packet are not something xlb sends: not for us.
    let inner_ether_type = inner_ether_type(ip.next_hdr)?;
    Ok(Tunnel {
        dst: DecapKey {
            addr: ip.dst_addr,
            family: FAMILY_IPV6,
            pad: [0; 3],
        },
        l2_len: offset,
        outer_len: Ipv6Hdr::LEN,
        payload_len,
        inner_ether_type,
        fragment: false,
    })
}
