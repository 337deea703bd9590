//! Settings of the XDP program that the control plane may change while it runs.

/// `Config::flags`: emit a debug log line (aya-log) for every steered packet. Off by default;
/// when off it costs one branch.
pub const CONFIG_DEBUG_LOG: u32 = 1 << 0;
/// `Config::flags`: the flow table's admission policy ([`crate::flow::admission`]). Neither bit
/// (the default, `protect`): a SYN only takes a slot no flow that sent more than a SYN holds.
/// `CONFIG_FLOWS_FIRST_ACK`: a SYN takes no slot at all; its first non-SYN packet does.
pub const CONFIG_FLOWS_FIRST_ACK: u32 = 1 << 1;
/// `CONFIG_FLOWS_AT_SYN`: every new flow takes a slot at its first packet, second chance over
/// the whole set (the policy before SYN-flood protection; not flood-resistant).
pub const CONFIG_FLOWS_AT_SYN: u32 = 1 << 2;
/// The bits of `Config::flags` that name the admission policy.
pub const CONFIG_FLOW_ADMISSION: u32 = CONFIG_FLOWS_FIRST_ACK | CONFIG_FLOWS_AT_SYN;
/// `Config::flags`: hand every packet that passes the trace filter to `xlb trace` (see
/// [`crate::trace`]). Off by default; when off it costs one branch.
pub const CONFIG_TRACE: u32 = 1 << 3;

/// The single entry of the config map. All zeros (the map's initial state) means: no debug
/// log, the `protect` flow admission, MTU 1500, unspecified tunnel sources.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `CONFIG_*` flags.
    pub flags: u32,
    /// Largest frame payload (IP packet, Ethernet header excluded) `ipip` may emit; larger
    /// results are dropped as `encap_too_big`. 0 means the default of 1500.
    pub mtu: u32,
    /// Outer source address of IPv4 tunnel headers (network byte order): with
    /// `ipip_src_v4_hosts`, the network of a prefix.
    pub ipip_src_v4: [u8; 4],
    /// Outer source address of IPv6 tunnel headers (network byte order), likewise.
    pub ipip_src_v6: [u8; 16],
    /// Host bits of the IPv4 source prefix (network byte order; all zero for one address):
    /// taken from the flow hash, so a backend's NIC spreads tunnels over its queues (RSS).
    pub ipip_src_v4_hosts: [u8; 4],
    /// Host bits of the IPv6 source prefix within its last 32 bits (a prefix shorter than /96
    /// varies only those).
    pub ipip_src_v6_hosts: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<Config>() == 36);

impl Config {
    pub const DEFAULT_MTU: u32 = 1500;

    /// The outer IPv4 source of a flow whose 5-tuple hash is `hash`: the same for every packet
    /// of the flow, spread over the configured prefix across flows.
    #[inline(always)]
    pub fn ipip_source_v4(&self, hash: u32) -> [u8; 4] {
        spread(self.ipip_src_v4, self.ipip_src_v4_hosts, hash)
    }

    /// The outer IPv6 source of a flow whose 5-tuple hash is `hash`, likewise.
    #[inline(always)]
    pub fn ipip_source_v6(&self, hash: u32) -> [u8; 16] {
        let mut source = self.ipip_src_v6;
        source[12..].copy_from_slice(&self.ipip_source_v6_low(hash));
        source
    }

    /// The last 4 bytes of [`Self::ipip_source_v6`], the only ones the hash may set.
    #[inline(always)]
    pub fn ipip_source_v6_low(&self, hash: u32) -> [u8; 4] {
        let [.., a, b, c, d] = self.ipip_src_v6;
        spread([a, b, c, d], self.ipip_src_v6_hosts, hash)
    }
}

/// `base` with the bits set in `hosts` taken from `hash`.
#[inline(always)]
fn spread(base: [u8; 4], hosts: [u8; 4], hash: u32) -> [u8; 4] {
    let hosts = u32::from_ne_bytes(hosts);
    ((u32::from_ne_bytes(base) & !hosts) | (hash & hosts)).to_ne_bytes()
}

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data, no padding (4 + 4 + 4 + 16 + 4 + 4 bytes).
unsafe impl aya::Pod for Config {}
