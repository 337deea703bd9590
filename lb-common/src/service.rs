//! Services (VIPs), backends and Maglev tables as the XDP program reads them, and the two
//! decisions the kernel makes with them (which entry a packet matches, which slot a new flow
//! takes), compiled into both the XDP program and userspace.

use crate::{FlowKey, canary::table_copy, flow_hash, maglev_slot};

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

impl Vip {
    /// Whether the entry has a table the kernel reads: a size, and a live copy index of 0 or 1.
    /// A new flow of a VIP without one is dropped as `no_backend`.
    #[inline(always)]
    pub const fn has_table(&self) -> bool {
        self.table_size != 0 && self.active <= 1
    }

    /// The live table copy as (first slot in the slot map, size): what every flow outside a
    /// canary's slice is hashed into. An `active` beyond 1 reads as copy 1, so a corrupt entry
    /// never indexes past `tables`.
    #[inline(always)]
    pub const fn live_table(&self) -> (u32, u32) {
        let base = if self.active == 0 {
            self.tables[0]
        } else {
            self.tables[1]
        };
        (base, self.table_size)
    }

    /// The Maglev slot a new flow of `key` (whose 5-tuple hash is `hash`) takes, in a VIP that
    /// [`Vip::has_table`].
    #[inline(always)]
    pub fn table_slot(&self, key: &FlowKey, hash: u32) -> TableSlot {
        let hash = if self.flags & VIP_HASH_SOURCE_ONLY != 0 {
            flow_hash(key, true)
        } else {
            hash
        };
        // One comparison: under a canary, the slice below the threshold takes the other copy.
        let base = if table_copy(hash, self.canary, self.active) == 0 {
            self.tables[0]
        } else {
            self.tables[1]
        };
        TableSlot {
            hash,
            slot: maglev_slot(hash, self.table_size),
            base,
        }
    }
}

/// Where a new flow's backend id lies in the Maglev slot map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSlot {
    /// The hash that indexes the table: the 5-tuple's, or the source address's
    /// ([`VIP_HASH_SOURCE_ONLY`]).
    pub hash: u32,
    /// The slot within the table copy, below [`Vip::table_size`].
    pub slot: u32,
    /// The first slot of the copy the flow takes (under a canary, by its hash).
    pub base: u32,
}

impl TableSlot {
    /// The slot's index in the whole slot map.
    #[inline(always)]
    pub const fn index(&self) -> u32 {
        self.base.wrapping_add(self.slot)
    }
}

/// The service entry of a packet to `key`: the exact (address, port, protocol) entry wins over
/// the address's all-ports entry (port 0). `get` looks a key up in the service map. Returns the
/// entry and whether the exact port matched.
#[inline(always)]
pub fn find_vip<T>(
    mut key: VipKey,
    mut get: impl FnMut(&VipKey) -> Option<T>,
) -> Option<(T, bool)> {
    if let Some(vip) = get(&key) {
        return Some((vip, true));
    }
    key.port = 0;
    get(&key).map(|vip| (vip, false))
}

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
/// A VIP's Maglev table size unless it sets `table_size`: the Maglev paper's production size,
/// a prime with room for 655 backends at 100 slots each.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;
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
pub const DEFAULT_MAGLEV_CHUNKS: u32 = (2 * 16 * DEFAULT_TABLE_SIZE).div_ceil(MAGLEV_CHUNK_SLOTS);

#[cfg(test)]
mod tests {
    use super::*;

    fn vip_key(port: u16) -> VipKey {
        VipKey {
            addr: AddrKey::v4(&[198, 18, 1, 10]).addr,
            port: port.to_be(),
            proto: 6,
            family: FAMILY_IPV4,
        }
    }

    /// Test that the exact (address, port, protocol) entry wins over the all-ports entry, that
    /// the all-ports entry catches every other port, and that without either nothing matches.
    #[test]
    fn exact_port_wins_over_the_all_ports_entry() {
        let entries = [(vip_key(80), "exact"), (vip_key(0), "all ports")];
        let get = |key: &VipKey| {
            entries
                .iter()
                .find(|(entry, _)| entry == key)
                .map(|&(_, name)| name)
        };
        assert_eq!(find_vip(vip_key(80), get), Some(("exact", true)));
        assert_eq!(find_vip(vip_key(443), get), Some(("all ports", false)));
        let only_exact = |key: &VipKey| (*key == vip_key(80)).then_some("exact");
        assert_eq!(find_vip(vip_key(443), only_exact), None);
        assert_eq!(
            find_vip(
                VipKey {
                    proto: 17,
                    ..vip_key(80)
                },
                get
            ),
            None,
            "another protocol"
        );
    }

    /// Test that a new flow's slot is the Maglev slot of its 5-tuple hash (or of its source
    /// address under source-only hashing) in the live copy, that a canary sends hashes below
    /// its threshold to the other copy, and that only a sized entry with copy 0 or 1 has a table.
    #[test]
    fn table_slot_follows_the_hash_the_live_copy_and_the_canary() {
        let mut key = FlowKey::v4(&[198, 18, 0, 1], &[198, 18, 1, 10], 6);
        key.set_ports(40000u16.to_be_bytes(), 80u16.to_be_bytes());
        let hash = flow_hash(&key, false);
        let vip = Vip {
            table_size: 13,
            active: 1,
            tables: [100, 200],
            ..Vip::default()
        };
        let live = vip.table_slot(&key, hash);
        assert_eq!(
            live,
            TableSlot {
                hash,
                slot: maglev_slot(hash, 13),
                base: 200
            }
        );
        assert_eq!(live.index(), 200 + maglev_slot(hash, 13));
        assert_eq!(vip.live_table(), (200, 13));
        assert_eq!(Vip { active: 0, ..vip }.live_table(), (100, 13));
        assert_eq!(Vip { active: 7, ..vip }.live_table(), (200, 13));
        let sticky = Vip {
            flags: VIP_HASH_SOURCE_ONLY,
            ..vip
        };
        assert_eq!(sticky.table_slot(&key, hash).hash, flow_hash(&key, true));
        let canary = |threshold| Vip {
            canary: threshold,
            ..vip
        };
        assert_eq!(
            canary(hash.saturating_add(1)).table_slot(&key, hash).base,
            100
        );
        assert_eq!(canary(hash).table_slot(&key, hash).base, 200);
        assert!(vip.has_table());
        assert!(
            !Vip {
                table_size: 0,
                ..vip
            }
            .has_table()
        );
        assert!(!Vip { active: 2, ..vip }.has_table());
    }
}

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
