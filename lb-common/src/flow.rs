//! The flow key, the flow hash and the flow table's layout, compiled into both the XDP
//! program and the control plane so userspace can reproduce every steering decision the kernel
//! makes.
//!
//! The flow table is a set-associative cache in a plain array map: the 5-tuple hash picks a
//! set of [`FLOW_WAYS`] slots, and a tag line tells which slot may hold the flow, so finding
//! it costs one array access, a few compares and two cache lines instead of a hash-map helper
//! call. Entries are replaced second-chance (a slot used since an insert last passed over it
//! survives), an approximation of least recently used; every slot carries a check over its
//! fields, so a slot torn by two CPUs writing it at once reads as stale, never as another
//! flow's backend. Flows that proved they are real ([`MARK_PROVEN`]) are kept apart from SYNs
//! that may be spoofed: under the default admission a SYN flood only churns unproven slots.

use crate::{
    Event,
    config::{CONFIG_FLOWS_AT_SYN, CONFIG_FLOWS_FIRST_ACK},
};

/// The 5-tuple of a packet, addresses and ports in network byte order. Aligned to 8 so the
/// kernel compares keys a word at a time.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

impl FlowKey {
    /// The key of an IPv4 packet (ports 0 until [`FlowKey::set_ports`]), built a word at a
    /// time: the kernel then reads it back a word at a time without stalling.
    #[inline(always)]
    pub fn v4(src: &[u8; 4], dst: &[u8; 4], proto: u8) -> FlowKey {
        let address = |a: &[u8; 4]| u64::from_ne_bytes([a[0], a[1], a[2], a[3], 0, 0, 0, 0]);
        FlowKey::from_words([address(src), 0, address(dst), 0, ports_word(0, 0, proto)])
    }

    /// The key of an IPv6 packet (ports 0 until [`FlowKey::set_ports`]).
    #[inline(always)]
    pub fn v6(src: &[u8; 16], dst: &[u8; 16], proto: u8) -> FlowKey {
        let half = |a: &[u8; 16], i: usize| {
            u64::from_ne_bytes([
                a[i],
                a[i + 1],
                a[i + 2],
                a[i + 3],
                a[i + 4],
                a[i + 5],
                a[i + 6],
                a[i + 7],
            ])
        };
        FlowKey::from_words([
            half(src, 0),
            half(src, 8),
            half(dst, 0),
            half(dst, 8),
            ports_word(0, 0, proto),
        ])
    }

    /// Sets both ports (network byte order, as on the wire) in one word write.
    #[inline(always)]
    pub fn set_ports(&mut self, sport: [u8; 2], dport: [u8; 2]) {
        let proto = self.proto;
        self.words_mut()[4] =
            ports_word(u16::from_ne_bytes(sport), u16::from_ne_bytes(dport), proto);
    }

    #[inline(always)]
    fn from_words(words: [u64; 5]) -> FlowKey {
        // SAFETY: FlowKey is 40 bytes of plain data, 8-aligned, and every bit pattern is valid.
        unsafe { core::mem::transmute::<[u64; 5], FlowKey>(words) }
    }

    /// The key as five words; two keys are equal exactly when their words are.
    #[inline(always)]
    pub fn words(&self) -> &[u64; 5] {
        // SAFETY: FlowKey is 40 bytes of plain data, 8-aligned, with explicit padding.
        unsafe { &*(self as *const FlowKey).cast::<[u64; 5]>() }
    }

    #[inline(always)]
    fn words_mut(&mut self) -> &mut [u64; 5] {
        // SAFETY: as in `words`, and every bit pattern is a valid FlowKey.
        unsafe { &mut *(self as *mut FlowKey).cast::<[u64; 5]>() }
    }

    /// Key equality in five word compares (the derived `==` compares byte arrays).
    #[inline(always)]
    pub fn same(&self, other: &FlowKey) -> bool {
        let (a, b) = (self.words(), other.words());
        a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4]
    }
}

/// The last word of a key: `sport`, `dport` (as stored in the fields), `proto`, zero padding.
#[inline(always)]
fn ports_word(sport: u16, dport: u16, proto: u8) -> u64 {
    let [s0, s1] = sport.to_ne_bytes();
    let [d0, d1] = dport.to_ne_bytes();
    u64::from_ne_bytes([s0, s1, d0, d1, proto, 0, 0, 0])
}

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data with explicit padding.
unsafe impl aya::Pod for FlowKey {}

/// Slots per set of the flow table.
pub const FLOW_WAYS: usize = 8;

/// One remembered flow: the backend an established flow sticks to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSlot {
    pub key: FlowKey,
    /// Backend id.
    pub backend: u32,
    /// The backend's [`crate::Backend::cookie`] when the flow was remembered: a backend id
    /// given to another backend (or another VIP mode) no longer matches, and the flow is
    /// re-hashed.
    pub cookie: u32,
    /// The VIP's id (its counters) and `VIP_*` flags (how to forward), so a known flow needs
    /// no service lookup.
    pub vip: u32,
    pub vip_flags: u32,
    /// [`flow_check`] over the fields above.
    pub check: u32,
    pub pad: u32,
}
const _: () = assert!(core::mem::size_of::<FlowSlot>() == 64);

impl FlowSlot {
    /// A filled slot; `hash` is the 5-tuple [`flow_hash`] of `key`.
    #[inline(always)]
    pub fn new(
        key: FlowKey,
        hash: u32,
        backend: u32,
        cookie: u32,
        vip: u32,
        vip_flags: u32,
    ) -> Self {
        FlowSlot {
            key,
            backend,
            cookie,
            vip,
            vip_flags,
            check: flow_check(hash, backend, cookie, vip, vip_flags),
            pad: 0,
        }
    }

    /// Whether the slot holds `key` and its fields are whole.
    #[inline(always)]
    pub fn holds(&self, key: &FlowKey, hash: u32) -> bool {
        self.key.same(key) && self.whole(hash)
    }

    /// Whether the fields match the check for a key of 5-tuple hash `hash`: false for a slot
    /// torn by concurrent writers.
    #[inline(always)]
    pub fn whole(&self, hash: u32) -> bool {
        self.check == flow_check(hash, self.backend, self.cookie, self.vip, self.vip_flags)
    }
}

/// A value of the flow-table map: a cache line of tags and marks, then the slots, so a lookup
/// reads the tag line and only the slot whose tag matches.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSet {
    /// Each slot's [`flow_tag`]; 0 marks an empty slot.
    pub tags: [u32; FLOW_WAYS],
    /// Each slot's [`MARK_USED`] and [`MARK_PROVEN`] bits.
    pub marks: [u8; FLOW_WAYS],
    pub pad: [u8; 24],
    pub slots: [FlowSlot; FLOW_WAYS],
}
const _: () = assert!(core::mem::size_of::<FlowSet>() == 64 + 64 * FLOW_WAYS);

/// A packet used the slot since an insert last passed over it (second chance).
pub const MARK_USED: u8 = 1 << 0;
/// The flow proved it is real: it sent a packet that found its slot, or a TCP segment that is
/// not a SYN. Spoofed SYNs never do, so under the `protect` and `first_ack` admissions no SYN
/// evicts such a flow.
pub const MARK_PROVEN: u8 = 1 << 1;
/// The marks a slot gets when a packet finds it: both bits, written only when they change, so
/// an established flow's packets leave the tag line clean.
pub const MARKS_HIT: u8 = MARK_USED | MARK_PROVEN;

/// Which slots of its set a flow that missed the table may take (`CONFIG_FLOWS_*` policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Its own old slot, an empty one, or second chance over the whole set: policy `syn`.
    Any,
    /// Its own, an empty or an unproven slot, else second chance over the proven ones: a flow
    /// that proved itself (a TCP segment other than a SYN, a UDP datagram).
    Proven,
    /// Its own, an empty or an unproven slot, else none: a SYN under `protect`.
    Unproven,
    /// Its own old slot only (so it never keeps an old backend), else none: a SYN under
    /// `first_ack`, and an ICMP error (spoofable, not part of the flow) under both policies.
    OwnSlot,
}

/// The admission of a packet that missed the flow table under config `flags`: `syn` a TCP SYN
/// without ACK, `icmp` an ICMP error about the flow.
#[inline(always)]
pub const fn admission(flags: u32, syn: bool, icmp: bool) -> Admission {
    if flags & CONFIG_FLOWS_AT_SYN != 0 {
        Admission::Any
    } else if icmp || (syn && flags & CONFIG_FLOWS_FIRST_ACK != 0) {
        Admission::OwnSlot
    } else if syn {
        Admission::Unproven
    } else {
        Admission::Proven
    }
}

/// The marks of a slot a packet that missed the table fills: proven for anything but a SYN or
/// an ICMP error, whatever the policy (so evictions of proven flows are counted under `syn`
/// too).
#[inline(always)]
pub const fn first_marks(syn: bool, icmp: bool) -> u8 {
    if syn || icmp { 0 } else { MARK_PROVEN }
}

/// The way an insert takes and whether a proven flow held it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Victim {
    pub way: usize,
    pub evicts_proven: bool,
}

impl FlowSet {
    /// The slot of `key` (5-tuple hash `hash`), marked used and proven as a packet that finds
    /// it marks it; else [`Event::FlowMiss`], or [`Event::FlowStale`] for a slot with the key
    /// whose check fails (torn by concurrent writers). The marks are written only when they
    /// change, so an established flow's packets leave the tag line clean.
    #[inline(always)]
    pub fn find(&mut self, key: &FlowKey, hash: u32) -> Result<&FlowSlot, Event> {
        let tag = flow_tag(hash);
        for way in 0..FLOW_WAYS {
            if self.tags[way] != tag || !self.slots[way].key.same(key) {
                continue;
            }
            if !self.slots[way].whole(hash) {
                return Err(Event::FlowStale);
            }
            if self.marks[way] != MARKS_HIT {
                self.marks[way] = MARKS_HIT;
            }
            return Ok(&self.slots[way]);
        }
        Err(Event::FlowMiss)
    }

    /// Remembers `slot` (for the flow whose 5-tuple hash is `hash`) with `marks`: over the
    /// flow's old slot if it has one, else where [`FlowSet::victim`] lets `admission` go.
    /// Returns what happened: [`Event::FlowRemembered`], [`Event::FlowEvictedProven`]
    /// (remembered over a proven flow) or [`Event::FlowNotRemembered`].
    #[inline(always)]
    pub fn remember(
        &mut self,
        slot: &FlowSlot,
        hash: u32,
        admission: Admission,
        marks: u8,
    ) -> Event {
        let tag = flow_tag(hash);
        if let Some(way) = self.own_way(&slot.key, hash) {
            self.put(way, slot, tag, marks);
            return Event::FlowRemembered;
        }
        let Some(victim) = self.victim(hash, admission) else {
            return Event::FlowNotRemembered;
        };
        self.put(victim.way, slot, tag, marks);
        if victim.evicts_proven {
            Event::FlowEvictedProven
        } else {
            Event::FlowRemembered
        }
    }

    /// The way of `key` (5-tuple hash `hash`), if the set holds it.
    #[inline(always)]
    pub fn own_way(&self, key: &FlowKey, hash: u32) -> Option<usize> {
        let tag = flow_tag(hash);
        (0..FLOW_WAYS).find(|&way| self.tags[way] == tag && self.slots[way].key.same(key))
    }

    /// The way a new flow (not in the set) takes under `admission`, or `None`. Unless `Any`,
    /// the first empty way from [`first_way`] goes first, then the first unproven one; then
    /// second chance:
    /// the first way not used since an insert last passed over it, clearing the use marks it
    /// passes; if every way was used, the first (which has just lost its mark).
    #[inline(always)]
    pub fn victim(&mut self, hash: u32, admission: Admission) -> Option<Victim> {
        let first = first_way(hash);
        if admission == Admission::OwnSlot {
            return None;
        }
        if admission != Admission::Any {
            let mut unproven = None;
            for step in 0..FLOW_WAYS {
                let way = (first + step) % FLOW_WAYS;
                if self.tags[way] == 0 {
                    unproven = Some(way);
                    break;
                }
                if unproven.is_none() && self.marks[way] & MARK_PROVEN == 0 {
                    unproven = Some(way);
                }
            }
            if let Some(way) = unproven {
                return Some(Victim {
                    way,
                    evicts_proven: false,
                });
            }
            if admission == Admission::Unproven {
                return None;
            }
        }
        let mut victim = first;
        for step in 0..FLOW_WAYS {
            let way = (first + step) % FLOW_WAYS;
            if self.tags[way] == 0 || self.marks[way] & MARK_USED == 0 {
                victim = way;
                break;
            }
            self.marks[way] &= !MARK_USED;
        }
        Some(Victim {
            way: victim,
            evicts_proven: self.tags[victim] != 0 && self.marks[victim] & MARK_PROVEN != 0,
        })
    }

    /// Fills `way` with `slot` (tag `tag`) and `marks`. The slot is written before its tag, so
    /// a reader that sees the new tag finds a slot to check.
    #[inline(always)]
    pub fn put(&mut self, way: usize, slot: &FlowSlot, tag: u32, marks: u8) {
        self.slots[way] = *slot;
        self.tags[way] = tag;
        self.marks[way] = marks;
    }
}

/// The tag of a flow in its set's tag line: its 5-tuple hash, never 0.
#[inline(always)]
pub const fn flow_tag(hash: u32) -> u32 {
    hash | 1
}

/// The set of a flow in a table of `sets` sets (a power of two).
#[inline(always)]
pub const fn flow_set(hash: u32, sets: u32) -> u32 {
    hash & (sets - 1)
}

/// Flows the flow table holds unless `global.flow_table_size` says otherwise.
pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 65_536;
/// Largest `global.flow_table_size`: 2^24 flows (1.1 GiB at 72 bytes per flow).
pub const MAX_FLOW_TABLE_SIZE: u32 = 1 << 24;

/// Sets for a flow table of at least `flows` flows (a power of two).
pub const fn flow_sets(flows: u32) -> u32 {
    let sets = flows.div_ceil(FLOW_WAYS as u32);
    if sets <= 1 {
        1
    } else {
        sets.next_power_of_two()
    }
}

/// The first way an insert looks at: differs between flows of a set, so evictions spread.
#[inline(always)]
pub const fn first_way(hash: u32) -> usize {
    (hash >> 29) as usize % FLOW_WAYS
}

/// The check of a slot. Each field goes through its own odd multiplier (independent multiplies, cheap per packet), so a slot whose fields come from
/// two writers almost surely fails it.
#[inline(always)]
pub const fn flow_check(hash: u32, backend: u32, cookie: u32, vip: u32, vip_flags: u32) -> u32 {
    let h = (hash as u64).wrapping_mul(CHECK[0])
        ^ (backend as u64).wrapping_mul(CHECK[1])
        ^ (cookie as u64).wrapping_mul(CHECK[2])
        ^ ((vip as u64) << 32 | vip_flags as u64).wrapping_mul(CHECK[3]);
    (h >> 32) as u32
}

const CHECK: [u64; 4] = [
    0x71e2_73a8_7984_a8ab,
    0x9fb9_3534_081c_5253,
    0xf93f_e42e_abd2_d9f3,
    0xdb14_9e47_14be_09ab,
];

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)] plain data without implicit padding (sizes asserted above).
    unsafe impl aya::Pod for super::FlowSlot {}
    // SAFETY: #[repr(C)] plain data without implicit padding (sizes asserted above).
    unsafe impl aya::Pod for super::FlowSet {}
}

/// Random odd multipliers of the flow hash: one for the constant term and one per 32-bit word
/// of the key (source, destination, ports, protocol).
const MULTIPLIERS: [u64; 11] = [
    0x71e2_73a8_7984_a8ab,
    0x9fb9_3534_081c_5253,
    0xf93f_e42e_abd2_d9f3,
    0xdb14_9e47_14be_09ab,
    0x5323_451b_4a95_902b,
    0x3994_693e_a3ae_6e69,
    0xa061_ae14_a1db_f721,
    0x1aa6_15a9_4b6a_5551,
    0x5856_c32a_687b_253b,
    0x8b3a_1535_3f13_7b71,
    0x20dd_5386_c9cf_0801,
];

/// The sum of an address's 32-bit words (read little-endian from its two key words) times
/// their multipliers; an IPv4 address (the last 12 bytes zero) costs one product, not four.
#[inline(always)]
fn sum_addr(first: u64, second: u64, multipliers: &[u64]) -> u64 {
    let (first, second) = (u64::from_le(first), u64::from_le(second));
    let product = (first & 0xffff_ffff).wrapping_mul(multipliers[0]);
    if first >> 32 | second == 0 {
        return product;
    }
    product
        .wrapping_add((first >> 32).wrapping_mul(multipliers[1]))
        .wrapping_add((second & 0xffff_ffff).wrapping_mul(multipliers[2]))
        .wrapping_add((second >> 32).wrapping_mul(multipliers[3]))
}

/// The hash that picks a flow's Maglev slot ([`maglev_slot`]) and its flow-table set. With
/// `source_only`, only the source address counts, so every connection of one client lands on
/// one backend.
///
/// Multilinear hashing (Lemire and Kaser): a constant plus each 32-bit word of the key (read
/// little-endian from its bytes, so every host agrees) times its own random 64-bit multiplier,
/// modulo 2^64; the high 32 bits are the hash. The products are independent, so the CPU
/// computes them side by side: a few ns per packet, where a word-by-word mixing chain costs
/// tens.
#[inline(always)]
pub fn flow_hash(key: &FlowKey, source_only: bool) -> u32 {
    let w = key.words();
    let mut h = MULTIPLIERS[0].wrapping_add(sum_addr(w[0], w[1], &MULTIPLIERS[1..5]));
    if !source_only {
        let last = u64::from_le(w[4]);
        h = h
            .wrapping_add(sum_addr(w[2], w[3], &MULTIPLIERS[5..9]))
            .wrapping_add((last & 0xffff_ffff).wrapping_mul(MULTIPLIERS[9]))
            .wrapping_add((last >> 32).wrapping_mul(MULTIPLIERS[10]));
    }
    (h >> 32) as u32
}

/// The slot of a `hash` in a Maglev table of `size` slots: the high bits of `hash * size`
/// (a multiply, where `%` costs a division on every packet), even over the slots.
#[inline(always)]
pub const fn maglev_slot(hash: u32, size: u32) -> u32 {
    ((hash as u64 * size as u64) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sport: u16) -> FlowKey {
        FlowKey {
            src: [198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst: [198, 18, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sport,
            dport: 80,
            proto: 6,
            pad: [0; 3],
        }
    }

    /// Test that the flow hash, the Maglev slot it picks and the flow-table set, way and slot
    /// check are pinned to known answers (computed by an independent reimplementation of the
    /// multilinear hash): nodes running different builds must steer a flow alike, so any change
    /// here must be deliberate.
    #[test]
    fn flow_hash_and_slots_match_known_answers() {
        let v4 = |src: [u8; 4], sport: u16, dport: u16, proto: u8| {
            let mut key = FlowKey::v4(&src, &[198, 18, 1, 10], proto);
            key.set_ports(sport.to_be_bytes(), dport.to_be_bytes());
            key
        };
        let mut v6 = FlowKey::v6(
            &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            &[
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaa,
            ],
            6,
        );
        v6.set_ports(40000u16.to_be_bytes(), 443u16.to_be_bytes());
        // (key, 5-tuple hash, source-only hash, slot of 13, slot of 65,537, source-only slot
        // of 65,537)
        let known = [
            (
                v4([198, 18, 0, 1], 40000, 80, 6),
                0xce52_e8b1,
                0x34e7_5ecb,
                10,
                52_819,
                13_543,
            ),
            (
                v4([198, 18, 0, 2], 53000, 53, 17),
                0xd625_2199,
                0x68ef_7b1d,
                10,
                54_821,
                26_863,
            ),
            (v6, 0xc158_3065, 0x5701_a85d, 9, 49_496, 22_273),
        ];
        for (key, hash, source, small, large, sticky) in known {
            assert_eq!(flow_hash(&key, false), hash, "5-tuple hash of {key:?}");
            assert_eq!(flow_hash(&key, true), source, "source-only hash of {key:?}");
            assert_eq!(maglev_slot(hash, 13), small, "slot of {hash:#x} in 13");
            assert_eq!(
                maglev_slot(hash, 65_537),
                large,
                "slot of {hash:#x} in 65,537"
            );
            assert_eq!(
                maglev_slot(source, 65_537),
                sticky,
                "slot of {source:#x} in 65,537"
            );
        }
        assert_eq!(
            flow_hash(&key(1), true),
            flow_hash(&key(2), true),
            "source-only ignores ports"
        );
        let hash = 0xce52_e8b1;
        assert_eq!(flow_set(hash, flow_sets(65_536)), 2_225);
        assert_eq!(first_way(hash), 6);
        assert_eq!(flow_check(hash, 2, 0x1234, 1, 3), 0x11ae_7eb4);
    }

    /// Test that the kernel's word-at-a-time key builders give exactly the key userspace builds
    /// field by field (the two sides must agree byte for byte).
    #[test]
    fn keys_built_by_words_match_keys_built_by_fields() {
        let mut v4 = FlowKey::v4(&[198, 18, 0, 1], &[198, 18, 1, 10], 6);
        v4.set_ports(40000u16.to_be_bytes(), 80u16.to_be_bytes());
        let fields = FlowKey {
            sport: 40000u16.to_be(),
            dport: 80u16.to_be(),
            ..key(0)
        };
        assert_eq!(v4, fields);
        let (src, dst) = ([0x20; 16], [0x30; 16]);
        let mut v6 = FlowKey::v6(&src, &dst, 17);
        v6.set_ports([1, 2], [3, 4]);
        let fields = FlowKey {
            src,
            dst,
            sport: u16::from_ne_bytes([1, 2]),
            dport: u16::from_ne_bytes([3, 4]),
            proto: 17,
            pad: [0; 3],
        };
        assert_eq!(v6, fields);
        assert!(v6.same(&fields) && !v6.same(&v4));
    }

    /// Test that table sizes round up to whole sets, a power of two of them.
    #[test]
    fn flow_sets_round_up_to_a_power_of_two() {
        let ways = FLOW_WAYS as u32;
        assert_eq!(flow_sets(1), 1);
        assert_eq!(flow_sets(ways), 1);
        assert_eq!(flow_sets(ways + 1), 2);
        assert_eq!(flow_sets(65_536), 65_536 / ways);
        assert_eq!(flow_sets(100_000), 131_072 / ways);
        assert_eq!(flow_sets(16_777_216), 16_777_216 / ways);
    }

    /// Test that the Maglev slot of any hash is inside the table and the slots are hit evenly.
    #[test]
    fn maglev_slot_stays_in_the_table_and_spreads() {
        let size = 13;
        let mut hits = [0u32; 13];
        for port in 0..65_000u16 {
            let slot = maglev_slot(flow_hash(&key(port), false), size);
            hits[slot as usize] += 1;
        }
        assert_eq!(maglev_slot(u32::MAX, size), size - 1);
        assert_eq!(maglev_slot(0, size), 0);
        for count in hits {
            assert!(
                (4_750..5_250).contains(&count),
                "slot hit {count} of 5,000 times"
            );
        }
    }

    /// Test that a slot's check changes with every field, so a slot mixing two writers' fields
    /// fails it, and that no flow's tag is the empty mark.
    #[test]
    fn slot_check_covers_every_field() {
        let base = flow_check(1, 2, 3, 4, 5);
        assert_ne!(flow_tag(0), 0);
        for other in [
            flow_check(9, 2, 3, 4, 5),
            flow_check(1, 9, 3, 4, 5),
            flow_check(1, 2, 9, 4, 5),
            flow_check(1, 2, 3, 9, 5),
            flow_check(1, 2, 3, 4, 9),
        ] {
            assert_ne!(other, base);
        }
        let k = key(1);
        let hash = flow_hash(&k, false);
        let mut slot = FlowSlot::new(k, hash, 2, 3, 4, 5);
        assert!(slot.holds(&k, hash));
        assert!(!slot.holds(&key(2), hash));
        slot.backend = 7;
        assert!(!slot.holds(&k, hash), "a torn slot");
    }

    /// A set whose ways hold flows from source ports 1000.., each with its `marks`.
    fn full_set(marks: [u8; FLOW_WAYS]) -> (FlowSet, [u32; FLOW_WAYS]) {
        let mut set = FlowSet::default();
        let mut hashes = [0; FLOW_WAYS];
        for way in 0..FLOW_WAYS {
            let k = key(1000 + way as u16);
            hashes[way] = flow_hash(&k, false);
            set.put(
                way,
                &FlowSlot::new(k, hashes[way], 1, 0, 0, 0),
                flow_tag(hashes[way]),
                marks[way],
            );
        }
        (set, hashes)
    }

    /// Test that each policy's admission of each kind of packet is the documented one: `syn`
    /// admits anything anywhere, a SYN is held to unproven slots under `protect` and to its own
    /// slot under `first_ack`, an ICMP error to its own slot, and every other packet proves
    /// its flow.
    #[test]
    fn admission_by_policy_and_packet() {
        use Admission::*;
        let (protect, first_ack, syn) = (0, CONFIG_FLOWS_FIRST_ACK, CONFIG_FLOWS_AT_SYN);
        // (flags, syn, icmp) -> admission
        let cases = [
            ((protect, true, false), Unproven),
            ((protect, false, false), Proven),
            ((protect, false, true), OwnSlot),
            ((first_ack, true, false), OwnSlot),
            ((first_ack, false, false), Proven),
            ((syn, true, false), Any),
            ((syn, false, true), Any),
            ((syn | first_ack, true, false), Any),
        ];
        for ((flags, is_syn, icmp), want) in cases {
            assert_eq!(
                admission(flags, is_syn, icmp),
                want,
                "{flags} {is_syn} {icmp}"
            );
        }
        assert_eq!(first_marks(true, false), 0);
        assert_eq!(first_marks(false, true), 0);
        assert_eq!(first_marks(false, false), MARK_PROVEN);
    }

    /// Test that an insert prefers an empty way, then an unproven one, and under `Unproven`
    /// never takes a proven flow's way, while `Proven` and `Any` evict one by second chance
    /// (and say so).
    #[test]
    fn victims_spare_proven_flows_from_unproven_inserts() {
        let newcomer = flow_hash(&key(9), false);
        let first = first_way(newcomer);
        let mut marks = [MARK_PROVEN; FLOW_WAYS];
        let unproven = (first + 3) % FLOW_WAYS;
        marks[unproven] = 0;
        let (mut set, _) = full_set(marks);
        let free = Victim {
            way: unproven,
            evicts_proven: false,
        };
        assert_eq!(set.victim(newcomer, Admission::Unproven), Some(free));
        assert_eq!(set.victim(newcomer, Admission::Proven), Some(free));
        let empty = (first + 5) % FLOW_WAYS;
        set.tags[empty] = 0;
        assert_eq!(
            set.victim(newcomer, Admission::Unproven).map(|v| v.way),
            Some(empty),
            "an empty way before an unproven one"
        );
        assert_eq!(set.victim(newcomer, Admission::OwnSlot), None);

        let (mut proven, _) = full_set([MARKS_HIT; FLOW_WAYS]);
        assert_eq!(proven.victim(newcomer, Admission::Unproven), None);
        assert_eq!(
            proven.marks, [MARKS_HIT; FLOW_WAYS],
            "a refusal changes no mark"
        );
        let victim = proven.victim(newcomer, Admission::Proven).expect("a way");
        assert_eq!(
            victim,
            Victim {
                way: first,
                evicts_proven: true
            },
            "every way was used: the first lost its mark and goes"
        );
        assert!(proven.marks.iter().all(|m| m & MARK_USED == 0));
        // Second chance: the next insert passes over nothing used and takes the first way.
        let (mut any, _) = full_set([0; FLOW_WAYS]);
        any.marks[first] = MARK_USED;
        assert_eq!(
            any.victim(newcomer, Admission::Any),
            Some(Victim {
                way: (first + 1) % FLOW_WAYS,
                evicts_proven: false
            })
        );
    }

    /// Test that a packet finds its flow's slot and marks it used and proven, that a slot torn
    /// by concurrent writers reads as stale (not as another flow), and a key the set lacks as
    /// a miss.
    #[test]
    fn find_marks_the_slot_and_tells_stale_from_missing() {
        let (mut set, hashes) = full_set([0; FLOW_WAYS]);
        assert_eq!(
            set.find(&key(1003), hashes[3]).map(|slot| slot.key),
            Ok(key(1003))
        );
        assert_eq!(set.marks[3], MARKS_HIT);
        assert_eq!(set.marks[2], 0, "only the found slot is marked");
        set.slots[5].cookie ^= 1;
        assert_eq!(set.find(&key(1005), hashes[5]), Err(Event::FlowStale));
        assert_eq!(set.marks[5], 0, "a stale slot is not marked");
        let missing = key(2000);
        assert_eq!(
            set.find(&missing, flow_hash(&missing, false)),
            Err(Event::FlowMiss)
        );
    }

    /// Test that remembering a flow overwrites its own slot (also a torn one) before taking
    /// another, says when it evicted a proven flow, and refuses when the admission finds no way.
    #[test]
    fn remember_reuses_the_flows_slot_and_reports_evictions() {
        let (mut set, hashes) = full_set([MARKS_HIT; FLOW_WAYS]);
        set.slots[4].cookie ^= 1;
        let renewed = FlowSlot::new(key(1004), hashes[4], 7, 0, 0, 0);
        assert_eq!(
            set.remember(&renewed, hashes[4], Admission::OwnSlot, MARK_PROVEN),
            Event::FlowRemembered
        );
        assert_eq!(set.slots[4], renewed);
        assert_eq!(set.marks[4], MARK_PROVEN);

        let newcomer = key(9);
        let hash = flow_hash(&newcomer, false);
        let slot = FlowSlot::new(newcomer, hash, 1, 0, 0, 0);
        let before = set;
        assert_eq!(
            set.remember(&slot, hash, Admission::Unproven, 0),
            Event::FlowNotRemembered
        );
        assert_eq!(set, before, "a refused insert changes nothing");
        assert_eq!(
            set.remember(&slot, hash, Admission::Proven, MARK_PROVEN),
            Event::FlowEvictedProven
        );
        assert!(set.find(&newcomer, hash).is_ok());

        let (mut unproven, _) = full_set([0; FLOW_WAYS]);
        assert_eq!(
            unproven.remember(&slot, hash, Admission::Unproven, 0),
            Event::FlowRemembered
        );
        assert_eq!(unproven.own_way(&newcomer, hash), Some(first_way(hash)));
    }

    /// Test that a flow's own way is found by key, and not for a key the set lacks.
    #[test]
    fn own_way_finds_the_flows_slot() {
        let (set, hashes) = full_set([0; FLOW_WAYS]);
        assert_eq!(set.own_way(&key(1003), hashes[3]), Some(3));
        assert_eq!(set.own_way(&key(2000), flow_hash(&key(2000), false)), None);
    }

    /// Test that consecutive source ports spread evenly over a small table.
    #[test]
    fn flow_hash_spreads_ports_evenly() {
        let mut buckets = [0u32; 7];
        for port in 0..70_000u32 {
            buckets[(flow_hash(&key(port as u16), false) % 7) as usize] += 1;
        }
        for count in buckets {
            assert!(
                (9_500..10_500).contains(&count),
                "bucket {count} of 10,000 expected"
            );
        }
    }
}
