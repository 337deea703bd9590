//! Settings of the XDP program that the control plane may change while it runs.

/// `Config::flags`: emit a debug log line (aya-log) for every steered packet. Off by default;
/// when off it costs one branch.
pub const CONFIG_DEBUG_LOG: u32 = 1 << 0;

/// The single entry of the config map. All zeros (the map's initial state) means: no debug
/// log, MTU 1500, unspecified tunnel sources.
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
