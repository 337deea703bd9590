//! Parsing a frame as far as decapsulation needs: Ethernet with at most one 802.1Q tag, then
//! the outer IPv4 (options honoured through IHL) or IPv6 header, with explicit bounds checks
//! the verifier accepts. A packet carrying IPv4 or IPv6 (protocol 4 or 41) parses into a
//! [`Tunnel`]; anything else stops with the reason it is counted under.

use aya_ebpf::programs::XdpContext;
use lb_common::{Reason, decap::DecapKey};
use lb_ebpf::headers::{self, ETH_P_IP, ETH_P_IPV6, IPPROTO_FRAGMENT, IPPROTO_IPIP, IPPROTO_IPV6};
use network_types::ip::Ipv6Hdr;

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
    /// [`ETH_P_IP`] or [`ETH_P_IPV6`]: the family the outer protocol number announces (0 for
    /// an IPv6 fragment, never stripped).
    pub inner_ether_type: u16,
    /// An IPv4 fragment (MF set or offset non-zero) or an IPv6 packet with a fragment header.
    pub fragment: bool,
}

#[inline(always)]
pub fn tunnel(ctx: &XdpContext) -> Result<Tunnel, Reason> {
    headers::ip(ctx, ipv4, ipv6)
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
    let v4 = headers::ipv4(ctx, offset)?;
    let (ip, header_len, total_len) = (v4.header, v4.header_len, v4.total_len);
    let inner_ether_type = inner_ether_type(ip.proto)?;
    Ok(Tunnel {
        dst: DecapKey::v4(&ip.dst_addr),
        l2_len: offset,
        outer_len: header_len,
        payload_len: total_len - header_len,
        inner_ether_type,
        fragment: v4.fragment(),
    })
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, offset: usize) -> Result<Tunnel, Reason> {
    let (ip, ip_len) = headers::ipv6(ctx, offset)?;
    let payload_len = ip_len - Ipv6Hdr::LEN;
    // A fragment header goes to the stack like an IPv4 fragment (the inner header may be in
    // another fragment); other extension headers are not something xlb sends: not for us.
    let fragment = ip.next_hdr == IPPROTO_FRAGMENT;
    let inner_ether_type = if fragment {
        0
    } else {
        inner_ether_type(ip.next_hdr)?
    };
    Ok(Tunnel {
        dst: DecapKey::v6(&ip.dst_addr),
        l2_len: offset,
        outer_len: Ipv6Hdr::LEN,
        payload_len,
        inner_ether_type,
        fragment,
    })
}
