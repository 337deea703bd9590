//! Services (VIPs), backends and Maglev tables as the XDP program reads them.

/// `VipKey::family` and `Backend::family` values.
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// Key of the service map: one VIP is an address, a port and a protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipKey {
    /// Network byte order; an IPv4 address fills the first 4 bytes, the rest are zero.
    pub addr: [u8; 16],
    /// Network byte order; 0 means every port of this address and protocol.
    pub port: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<VipKey>() == 20);

/// An address of one family, as map keys hold it: a VIP address in [`crate::map_names::VIP_ADDRS`]
/// (whatever its ports and protocols), an outer tunnel address in
/// [`crate::map_names::DECAP_ADDRS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrKey {
    /// Network byte order; an IPv4 address fills the first 4 bytes, the rest are zero.
    pub addr: [u8; 16],
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    pub pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<AddrKey>() == 20);

impl AddrKey {
    #[inline(always)]
    pub const fn v4(addr: &[u8; 4]) -> AddrKey {
        AddrKey {
            addr: [
                addr[0], addr[1], addr[2], addr[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            family: FAMILY_IPV4,
            pad: [0; 3],
        }
    }

    #[inline(always)]
    pub const fn v6(addr: &[u8; 16]) -> AddrKey {
        AddrKey {
            addr: *addr,
            family: FAMILY_IPV6,
            pad: [0; 3],
        }
    }
}

impl VipKey {
    /// The key of this VIP's address in the VIP address map.
    pub const fn address(&self) -> AddrKey {
        AddrKey {
            addr: self.addr,
            family: self.family,
            pad: [0; 3],
        }
    }
}

/// A bitmap over destination addresses with a bit set for every VIP address (and, rarely,
/// others that share its bit). A packet whose bit is clear is not for a VIP and costs no
/// service lookup: most traffic of a host is not. A set bit proves nothing: every decision is
/// confirmed against a full key (flow, VIP or VIP address).
pub type VipFilter = [u64; 64];
/// Bits in [`VipFilter`].
pub const VIP_FILTER_BITS: u32 = 64 * 64;

/// The [`VipFilter`] bit of a VIP address in its 16-byte form ([`VipKey::addr`]) and family.
#[inline(always)]
pub fn vip_filter_bit(addr: &[u8; 16], family: u8) -> u32 {
    if family == FAMILY_IPV4 {
        vip_filter_bit_v4(&[addr[0], addr[1], addr[2], addr[3]])
    } else {
        vip_filter_bit_v6(addr)
    }
}

/// The [`VipFilter`] bit of an IPv4 address.
#[inline(always)]
pub fn vip_filter_bit_v4(addr: &[u8; 4]) -> u32 {
    filter_bit(u32::from_le_bytes(*addr))
}

/// The [`VipFilter`] bit of an IPv6 address, from its last 8 bytes only: where the addresses
/// of a host differ (the prefix rarely does), and half the bytes to read per packet.
#[inline(always)]
pub fn vip_filter_bit_v6(addr: &[u8; 16]) -> u32 {
    let word = |i: usize| u32::from_le_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    filter_bit(word(8) ^ word(12))
}

/// Fibonacci hashing: the top bits of the product depend on every input bit.
#[inline(always)]
const fn filter_bit(folded: u32) -> u32 {
    folded.wrapping_mul(0x9e37_79b1) >> (32 - 12)
}
const _: () = assert!(VIP_FILTER_BITS == 1 << 12);

/// `Vip::flags`: hash on the source address only (stickiness) instead of the 5-tuple.
pub const VIP_HASH_SOURCE_ONLY: u32 = 1 << 0;
/// `Vip::flags`: forward in an IP tunnel (`ipip`) instead of rewriting MACs (`dsr`). The outer
/// family is the backend's: IPv4 outer headers carry protocol 4 (IPv4 inside) or 41 (IPv6
/// inside), IPv6 outer headers next header 4 or 41 likewise.
pub const VIP_FORWARD_IPIP: u32 = 1 << 1;

/// Value of the service map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vip {
    /// Index of this VIP's counters in the per-VIP counter map.
    pub id: u32,
    /// `VIP_*` flags.
    pub flags: u32,
    /// Maglev table size M (prime).
    pub table_size: u32,
    /// Which of `tables` is live (0 or 1). The control plane fills the other one and then
    /// rewrites this entry, so a packet never sees a half-written table.
    pub active: u32,
    /// Start of each of the two table copies in the Maglev slot map.
    pub tables: [u32; 2],
    /// Canary apply: new flows whose table hash is below this take the other copy (the table
    /// being tried); 0, no canary. See [`crate::canary::table_copy`].
    pub canary: u32,
}
const _: () = assert!(core::mem::size_of::<Vip>() == 28);

/// `Backend::flags`: the backend takes traffic.
pub const BACKEND_ACTIVE: u8 = 1 << 0;
/// `Backend::flags`, kept by the control plane (the kernel ignores it): an operator drained the
/// backend; it stays out of the Maglev table (no new flows) but keeps its established flows.
pub const BACKEND_DRAINED: u8 = 1 << 1;
/// `Backend::flags`, kept by the control plane: an operator disabled the backend; it is out
/// of the table and inactive, so its established flows move too.
pub const BACKEND_DISABLED: u8 = 1 << 2;
/// `Backend::flags`, kept by the daemon: the backend failed its health checks; it is out of
/// the table and inactive until it passes them again.
pub const BACKEND_UNHEALTHY: u8 = 1 << 3;

/// Value of the backend map, indexed by backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Network byte order, as in [`VipKey::addr`].
    pub addr: [u8; 16],
    /// Destination MAC of the frame sent towards the backend: the backend's own for `dsr`, the
    /// next hop's towards `addr` for `ipip`.
    pub mac: [u8; 6],
    pub family: u8,
    /// `BACKEND_*` flags; a backend without [`BACKEND_ACTIVE`] gets no packets.
    pub flags: u8,
    /// The configured weight. The kernel ignores it; the control plane keeps it here so the
    /// live state alone is enough to rebuild a table (drain, enable) or audit one.
    pub weight: u32,
    /// Changes whenever the id is given to a different backend or its VIP changes how it
    /// forwards: a remembered flow whose [`crate::FlowSlot::cookie`] differs is re-hashed.
    pub cookie: u32,
}
const _: () = assert!(core::mem::size_of::<Backend>() == 32);

/// Per-backend counters (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendCounter {
    pub packets: u64,
    pub bytes: u64,
    /// Flows this backend was chosen for by the Maglev table (flow-table misses).
    pub new_flows: u64,
}
const _: () = assert!(core::mem::size_of::<BackendCounter>() == 24);

/// Largest Maglev table a VIP may have.
pub const MAX_TABLE_SIZE: u32 = 1 << 24;
/// Default capacities; the control plane may size the maps differently at load time.
pub const DEFAULT_MAX_VIPS: u32 = 1024;
pub const DEFAULT_MAX_BACKENDS: u32 = 4096;
/// Maglev slots per entry of the slot map. The kernel pads every array value to 8 bytes, so a
/// map of single u32 slots would waste half its memory and not be a plain u32 array when
/// memory-mapped; 16 slots (one cache line) per value is both.
pub const MAGLEV_CHUNK_SLOTS: u32 = 16;
/// A value of the slot map: slot `s` is lane `s % 16` of entry `s / 16`.
pub type MaglevChunk = [u32; MAGLEV_CHUNK_SLOTS as usize];
/// Entries of the slot map by default: two copies of a 65,537-slot table for 16 VIPs.
pub const DEFAULT_MAGLEV_CHUNKS: u32 = (2 * 16 * 65_537u32).div_ceil(MAGLEV_CHUNK_SLOTS);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)] plain data with explicit padding and no invalid bit patterns.
    unsafe impl aya::Pod for super::VipKey {}
    // SAFETY: #[repr(C)] plain data with explicit padding and no invalid bit patterns.
    unsafe impl aya::Pod for super::AddrKey {}
    // SAFETY: #[repr(C)] plain data with explicit padding and no invalid bit patterns.
    unsafe impl aya::Pod for super::Vip {}
    // SAFETY: #[repr(C)] plain data with explicit padding and no invalid bit patterns.
    unsafe impl aya::Pod for super::Backend {}
    // SAFETY: #[repr(C)] plain data with explicit padding and no invalid bit patterns.
    unsafe impl aya::Pod for super::BackendCounter {}
}
