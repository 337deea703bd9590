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
    /// Outer source address of IPv4 tunnel headers (network byte order).
    pub ipip_src_v4: [u8; 4],
    /// Outer source address of IPv6 tunnel headers (network byte order).
    pub ipip_src_v6: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<Config>() == 28);

impl Config {
    pub const DEFAULT_MTU: u32 = 1500;
}

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data, no padding (4 + 4 + 4 + 16 bytes).
unsafe impl aya::Pod for Config {}
