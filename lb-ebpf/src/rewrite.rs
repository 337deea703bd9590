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
//! The headers are read and written 8 and 4 bytes at a time ([`lb_ebpf::wide`]): the header
//! types are byte arrays, which the BPF backend copies a byte at a time, and even 16-bit words
//! made a grown IPv4 frame 17 stores. Every path by which the kernel runs XDP (driver, veth,
//! generic on an skb, test run) starts the frame at an even address (its headroom is even), and
//! every 2-byte field here starts at an even offset, so those are aligned.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use core::mem::offset_of;

use lb_common::{Backend, Config, Reason, service::FAMILY_IPV4};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use lb_ebpf::{
    headers::{ETH_P_IP, ETH_P_IPV6, IPPROTO_IPIP, IPPROTO_IPV6, bytes_at, ptr_at},
    wide::{load_u64, store_u32, store_u64},
};

use crate::parse::Packet;

/// A MAC address as the low 48 bits of a number, its first byte lowest: as
/// [`lb_ebpf::wide::load_u64`] reads it from a frame.
pub type Mac = u64;
const MAC_BITS: u64 = (1 << 48) - 1;

/// `backend`'s MAC as a [`Mac`], in a 4-byte and a 2-byte load (the BPF backend reads a byte
/// array a byte at a time).
#[inline(always)]
fn mac(backend: &Backend) -> Mac {
    let field = (&raw const backend.mac).cast::<u8>();
    // SAFETY: the 6-byte field is 4-aligned (asserted below): a u32 and then a u16.
    let (low, high) = unsafe {
        (
            field.cast::<u32>().read(),
            field.add(4).cast::<u16>().read(),
        )
    };
    u64::from(low) | u64::from(high) << 32
}
const _: () = assert!(align_of::<Backend>() >= 4 && offset_of!(Backend, mac) % 4 == 0);

/// Writes the destination and source MAC at the start of the frame (12 bytes, checked).
///
/// # Safety
/// `frame` is the frame's start, with 12 bytes checked inside it.
#[inline(always)]
unsafe fn write_macs(frame: *mut u8, dst: Mac, src: Mac) {
    // SAFETY: the caller's; bytes 0..8 and 8..12.
    unsafe {
        store_u64(frame, dst | src << 48);
        store_u32(frame.add(8), (src >> 16) as u32);
    }
}

#[inline(always)]
pub fn dsr(ctx: &XdpContext, backend: &Backend) -> Result<(), Reason> {
    let frame: *mut [u8; 12] = ptr_at(ctx, 0)?;
    let frame = frame.cast::<u8>();
    // SAFETY: ptr_at checked both MAC addresses lie inside the frame.
    unsafe {
        let ours = load_u64(frame) & MAC_BITS;
        write_macs(frame, mac(backend), ours);
    }
    Ok(())
}

/// Grows the frame's head by `grow` bytes and writes the Ethernet header (and VLAN tag) again
/// in front: MAC addresses `macs(destination, source)` of the old ones, EtherType `ether_type`.
/// The new `grow` bytes of header go `l2_len` bytes in: the caller checks and writes all of
/// them (the first 2 hold garbage until then). Every pointer into the frame taken before is
/// invalid afterwards.
#[inline(always)]
pub fn grow_head(
    ctx: &XdpContext,
    l2_len: usize,
    grow: usize,
    macs: impl FnOnce(Mac, Mac) -> (Mac, Mac),
    ether_type: u16,
) -> Result<(), Reason> {
    // SAFETY: ctx.ctx is the live xdp_md of this run; every pointer below is re-derived and
    // re-checked after the head moved.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) } != 0 {
        // No headroom left: cannot grow.
        return Err(Reason::EncapTooBig);
    }
    // One check covers the old header's first 16 bytes, `grow` (more than 2) bytes in, and so
    // the new Ethernet header and tag before them: a frame that reached here held at least an
    // Ethernet and an IP header. Stretched over the caller's new header as well, it saved
    // `ipip` a check but moved LLVM's register allocation of the whole inlined program: the
    // `dsr` paths ran 2-5 ns slower (README, "Data-plane cost").
    let frame = bytes_at(ctx, 0, grow + 16)?;
    // SAFETY: bytes_at checked all the bytes below lie inside the frame; the EtherType's offset
    // is even.
    unsafe {
        // Moving the head leaves the bytes in place: the old header is read `grow` bytes in,
        // after the call, so nothing of it is held (spilled to the stack) across the call. Its
        // first 16 bytes: the MAC addresses, then a VLAN tag or the EtherType and 2 bytes more.
        let old = frame.add(grow);
        let (low, high) = (load_u64(old), load_u64(old.add(8)));
        let (dst, src) = macs(low & MAC_BITS, low >> 48 | (high & 0xffff_ffff) << 16);
        write_macs(frame, dst, src);
        // Bytes 12-15 again: a VLAN tag, or (no tag) what the EtherType and the caller's header
        // overwrite next. Unconditional: one store, no branch.
        store_u32(frame.add(12), (high >> 32) as u32);
        *frame.add(l2_len - 2).cast::<u16>() = ether_type.to_be();
    }
    Ok(())
}

/// The configured MTU (0: the default).
#[inline(always)]
fn mtu(config: &Config) -> usize {
    let mtu = if config.mtu == 0 {
        Config::DEFAULT_MTU
    } else {
        config.mtu
    };
    mtu as usize
}

/// The largest inner IP packet `ipip` may send to `backend`: the MTU less the outer header.
#[inline(always)]
pub fn inner_mtu(backend: &Backend, config: &Config) -> usize {
    mtu(config).saturating_sub(outer_len(backend))
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
    // `ip_len > inner_mtu`, without the saturation's branch (neither side overflows).
    if packet.ip_len + outer_len > mtu(config) {
        return Err(Reason::EncapTooBig);
    }
    let proto = u64::from(if packet.family == FAMILY_IPV4 {
        IPPROTO_IPIP
    } else {
        IPPROTO_IPV6
    });
    let outer_type: u16 = if v4 { ETH_P_IP } else { ETH_P_IPV6 };
    grow_head(
        ctx,
        packet.l2_len,
        outer_len,
        // Read after the head moved: nothing of the entry is held across the call.
        |ours, _| (mac(backend), ours),
        outer_type,
    )?;
    if v4 {
        let ip: *mut [u8; Ipv4Hdr::LEN] = ptr_at(ctx, packet.l2_len)?;
        let ip = ip.cast::<u8>();
        // The TOS is an IPv4 packet's (0 for IPv6: see `Packet`).
        let tos = u64::from(packet.tos);
        let total = u64::from(((packet.ip_len + outer_len) as u16).to_be());
        // Bytes 0-7: version and IHL, TOS, total length, id 0, no flags; 8-11: TTL, protocol,
        // checksum; then the addresses.
        let first = 0x45 | tos << 8 | total << 16;
        let ttl_proto = 64 | proto << 8;
        let source = u32::from_ne_bytes(config.ipip_source_v4(hash));
        let [a, b, c, d, ..] = backend.addr;
        let target = u32::from_ne_bytes([a, b, c, d]);
        let check = ipv4_checksum(first + ttl_proto + u64::from(source) + u64::from(target));
        // SAFETY: ptr_at checked the header lies inside the frame.
        unsafe {
            store_u64(ip, first);
            store_u64(
                ip.add(8),
                ttl_proto | u64::from(check) << 16 | u64::from(source) << 32,
            );
            store_u32(ip.add(16), target);
        }
    } else {
        let ip: *mut [u8; Ipv6Hdr::LEN] = ptr_at(ctx, packet.l2_len)?;
        let ip = ip.cast::<u8>();
        let payload = u64::from((packet.ip_len as u16).to_be());
        // Version 6, traffic class and flow label 0, payload length, next header, hop limit 64.
        let first = 0x60 | payload << 32 | proto << 48 | 64 << 56;
        // SAFETY: both fields are 4-aligned (asserted at `quads`).
        let ([s0, s1, s2, _], [t0, t1, t2, t3]) = unsafe {
            (
                quads(&raw const config.ipip_src_v6),
                quads(&raw const backend.addr),
            )
        };
        // The hash sets only the source's last 4 bytes.
        let s3 = u32::from_ne_bytes(config.ipip_source_v6_low(hash));
        let pair = |low: u32, high: u32| u64::from(low) | u64::from(high) << 32;
        // SAFETY: ptr_at checked the header lies inside the frame.
        unsafe {
            store_u64(ip, first);
            store_u64(ip.add(8), pair(s0, s1));
            store_u64(ip.add(16), pair(s2, s3));
            store_u64(ip.add(24), pair(t0, t1));
            store_u64(ip.add(32), pair(t2, t3));
        }
    }
    Ok(())
}

/// A 16-byte address field of a map value in 4-byte groups, one load each (the BPF backend
/// reads a byte array a byte at a time), each group as [`lb_ebpf::wide`] reads it from a frame.
///
/// # Safety
/// `addr` is 4-aligned: a field at a multiple of 4 in a type aligned to 4 (asserted below for
/// each field read so).
#[inline(always)]
unsafe fn quads(addr: *const [u8; 16]) -> [u32; 4] {
    // SAFETY: the caller's.
    unsafe { addr.cast::<[u32; 4]>().read() }
}
const _: () = assert!(align_of::<Backend>() >= 4 && offset_of!(Backend, addr) % 4 == 0);
const _: () = assert!(align_of::<Config>() >= 4 && offset_of!(Config, ipip_src_v6) % 4 == 0);

/// The checksum of an IPv4 header (RFC 1071) from `sum`, the sum of its 16-bit words (its
/// checksum word zero) in any grouping into wider numbers as the CPU loads them: 2^16 is 1 in
/// one's complement arithmetic, and the sum does not depend on byte order (section 2(B)), so
/// the folded result is stored as it comes.
#[inline(always)]
fn ipv4_checksum(mut sum: u64) -> u16 {
    // A sum of four 32-bit numbers is below 2^34: three folds bring it below 2^16.
    sum = (sum & 0xffff) + (sum >> 16);
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
