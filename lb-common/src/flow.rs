//! The flow key and the flow hash, compiled into both the XDP program and the control plane
//! so userspace can reproduce every steering decision the kernel makes.

/// The 5-tuple of a packet, addresses and ports in network byte order.
#[repr(C)]
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

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data with explicit padding.
unsafe impl aya::Pod for FlowKey {}

/// Value of the flow table: the backend an established flow sticks to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEntry {
    pub backend: u32,
    pub pad: u32,
}
const _: () = assert!(core::mem::size_of::<FlowEntry>() == 8);

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data with explicit padding.
unsafe impl aya::Pod for FlowEntry {}

const SEED: u32 = 0x9e37_79b9;

/// murmur3's 32-bit block mix: cheap, and every input bit reaches every output bit.
#[inline(always)]
const fn mix(h: u32, word: u32) -> u32 {
    let k = word
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
const fn finish(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
fn mix_addr(mut h: u32, addr: &[u8; 16]) -> u32 {
    h = mix(h, u32::from_le_bytes([addr[0], addr[1], addr[2], addr[3]]));
    h = mix(h, u32::from_le_bytes([addr[4], addr[5], addr[6], addr[7]]));
    h = mix(
        h,
        u32::from_le_bytes([addr[8], addr[9], addr[10], addr[11]]),
    );
    mix(
        h,
        u32::from_le_bytes([addr[12], addr[13], addr[14], addr[15]]),
    )
}

/// The hash that picks a flow's Maglev slot (`hash % table_size`). With `source_only`, only
/// the source address counts, so every connection of one client lands on one backend.
#[inline(always)]
pub fn flow_hash(key: &FlowKey, source_only: bool) -> u32 {
    let mut h = mix_addr(SEED, &key.src);
    if !source_only {
        h = mix_addr(h, &key.dst);
        h = mix(h, u32::from(key.sport) << 16 | u32::from(key.dport));
        h = mix(h, u32::from(key.proto));
    }
    finish(h)
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

    /// Test that the flow hash is a fixed function: known inputs give known outputs on every
    /// host, so kernel and userspace (and every node) agree.
    #[test]
    fn flow_hash_is_stable() {
        let a = flow_hash(&key(40000), false);
        assert_eq!(a, flow_hash(&key(40000), false));
        assert_ne!(a, flow_hash(&key(40001), false));
        assert_eq!(flow_hash(&key(1), true), flow_hash(&key(2), true));
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
