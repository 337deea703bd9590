//! Ethernet and IP header checks with the explicit bounds checks the verifier needs. Every
//! packet access goes through [`ptr_at`]: the verifier accepts a read or write only through the
//! pointer whose bound it saw checked.

use crate::wide::{load_u32, load_u64};
use aya_ebpf::programs::XdpContext;
use lb_common::Reason;
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const VLAN_TAG_LEN: usize = 4;
/// IP protocol numbers, under the kernel's names (defined once, in lb-common).
pub use lb_common::proto::{
    FRAGMENT as IPPROTO_FRAGMENT, ICMP as IPPROTO_ICMP, ICMPV6 as IPPROTO_ICMPV6,
    IPIP as IPPROTO_IPIP, IPV6 as IPPROTO_IPV6, TCP as IPPROTO_TCP, UDP as IPPROTO_UDP,
};
/// ICMP "destination unreachable, fragmentation needed" and ICMPv6 "packet too big".
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_FRAG_NEEDED: u8 = 4;
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
/// ICMP and ICMPv6 headers: type, code, checksum and 4 bytes (an error's MTU).
pub const ICMP_HEADER_LEN: usize = 8;
/// IPv4 "don't fragment" and "more fragments" flags and fragment offset mask in the
/// host-order `frags` field.
const IP_DF: u16 = 0x4000;
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;

/// A 2-byte header field as a number, read in one 16-bit load: the header types hold byte
/// arrays, which the BPF backend reads a byte per load. Every field read so lies at an even
/// offset of a frame that starts at an even address (see `rewrite`), so the load is aligned.
#[inline(always)]
pub fn be16(field: &[u8; 2]) -> u16 {
    // SAFETY: two bytes of a header in the frame, 2-byte aligned (above).
    u16::from_be(unsafe { *field.as_ptr().cast::<u16>() })
}

/// An IPv4 or IPv6 address field of the frame (4 or 16 bytes, inside it) read a word at a time
/// ([`crate::wide`]: 4 or 8 bytes per load), where the byte array would be read a byte per load.
#[inline(always)]
pub fn address<const N: usize>(field: &[u8; N]) -> [u8; N] {
    let field = field.as_ptr();
    let mut bytes = [0u8; N];
    let mut i = 0;
    while i + 8 <= N {
        // SAFETY: 8 bytes inside the field, which lies inside the frame.
        bytes[i..i + 8].copy_from_slice(&unsafe { load_u64(field.add(i)) }.to_ne_bytes());
        i += 8;
    }
    if i + 4 <= N {
        // SAFETY: 4 bytes inside the field, likewise.
        bytes[i..i + 4].copy_from_slice(&unsafe { load_u32(field.add(i)) }.to_ne_bytes());
    }
    bytes
}

/// A bounds-checked pointer to a `T` at `offset` bytes into the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*mut T, Reason> {
    Ok(bytes_at(ctx, offset, size_of::<T>())?.cast())
}

/// A pointer `offset` bytes into the frame with `len` bytes after it checked inside the frame.
/// The verifier needs `offset` and `len` to be constants on each path it walks.
#[inline(always)]
pub fn bytes_at(ctx: &XdpContext, offset: usize, len: usize) -> Result<*mut u8, Reason> {
    let start = ctx.data();
    if start + offset + len > ctx.data_end() {
        return Err(Reason::Truncated);
    }
    Ok((start + offset) as *mut u8)
}

/// The length of the frame.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// The EtherType after at most one 802.1Q tag, and the length of the Ethernet header with the
/// tag (14 or 18). A second tag (QinQ) leaves 0x8100, which is not IP to us.
#[inline(always)]
pub fn ethernet(ctx: &XdpContext) -> Result<(u16, usize), Reason> {
    let eth: *const EthHdr = ptr_at(ctx, 0).map_err(|_| Reason::NotIp)?;
    // SAFETY: ptr_at checked the header lies inside the frame.
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    if ether_type != ETH_P_8021Q {
        return Ok((ether_type, EthHdr::LEN));
    }
    let inner: *const [u8; 2] = ptr_at(ctx, EthHdr::LEN + 2)?;
    // SAFETY: ptr_at checked the two bytes lie inside the frame.
    Ok((
        u16::from_be_bytes(unsafe { *inner }),
        EthHdr::LEN + VLAN_TAG_LEN,
    ))
}

/// The Ethernet header, then `v4` or `v6` by its EtherType, given the offset of the IP header;
/// any other EtherType stops as `not_ip`. Generic rather than function pointers: BPF has no
/// indirect calls.
#[inline(always)]
pub fn ip<T>(
    ctx: &XdpContext,
    v4: impl FnOnce(&XdpContext, usize) -> Result<T, Reason>,
    v6: impl FnOnce(&XdpContext, usize) -> Result<T, Reason>,
) -> Result<T, Reason> {
    let (ether_type, l2_len) = ethernet(ctx)?;
    match ether_type {
        ETH_P_IP => v4(ctx, l2_len),
        ETH_P_IPV6 => v6(ctx, l2_len),
        _ => Err(Reason::NotIp),
    }
}

/// A consistent IPv4 header at `offset` whose whole packet lies inside the frame.
pub struct V4<'a> {
    pub header: &'a Ipv4Hdr,
    /// IHL in bytes: 20 to 60.
    pub header_len: usize,
    pub total_len: usize,
}

impl V4<'_> {
    /// MF set or a non-zero offset: only the first fragment carries ports.
    #[inline(always)]
    pub fn fragment(&self) -> bool {
        be16(&self.header.frags) & (IP_MF | IP_OFFSET) != 0
    }

    /// DF set: the sender asks for a "fragmentation needed" error rather than fragments.
    #[inline(always)]
    pub fn dont_fragment(&self) -> bool {
        be16(&self.header.frags) & IP_DF != 0
    }
}

#[inline(always)]
pub fn ipv4(ctx: &XdpContext, offset: usize) -> Result<V4<'_>, Reason> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, offset)?;
    // SAFETY: ptr_at checked the fixed header lies inside the frame, which outlives `ctx`'s
    // borrow for this program run.
    let header = unsafe { &*ip };
    let header_len = usize::from(header.vihl & 0x0f) * 4;
    let total_len = usize::from(be16(&header.tot_len));
    if header.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN || total_len < header_len {
        return Err(Reason::BadHeader);
    }
    // Covers options too: the header is part of the total length.
    if offset + total_len > frame_len(ctx) {
        return Err(Reason::Truncated);
    }
    Ok(V4 {
        header,
        header_len,
        total_len,
    })
}

/// An IPv6 fixed header at `offset` whose whole packet lies inside the frame, and the
/// packet's length (40 + payload length).
#[inline(always)]
pub fn ipv6(ctx: &XdpContext, offset: usize) -> Result<(&Ipv6Hdr, usize), Reason> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, offset)?;
    // SAFETY: as in `ipv4`.
    let header = unsafe { &*ip };
    if header.vcf[0] >> 4 != 6 {
        return Err(Reason::BadHeader);
    }
    let ip_len = Ipv6Hdr::LEN + usize::from(be16(&header.payload_len));
    if offset + ip_len > frame_len(ctx) {
        return Err(Reason::Truncated);
    }
    Ok((header, ip_len))
}
