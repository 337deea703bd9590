//! What the control plane records in the kernel about the configuration it applied, so any
//! later `xlb` command (or a restarted daemon) can tell what is live.

/// The single entry of the meta map. Written last by an apply, after every table flip.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Increases by one with every change the control plane makes to the live state (an apply,
    /// a backend drain, disable or enable); 0: nothing applied yet.
    pub generation: u64,
    /// When the generation was applied, seconds since the Unix epoch.
    pub applied_at: u64,
    /// FNV-1a hash of the applied configuration file's bytes.
    pub config_hash: u64,
    /// Interface index the program is attached to (0: not attached by `xlb run`).
    pub ifindex: u32,
    /// [`ATTACH_NATIVE`] or [`ATTACH_GENERIC`] (0: not attached).
    pub attach_mode: u32,
    /// The interface's name, NUL-padded: an index means nothing outside the network namespace
    /// `xlb run` attached in.
    pub interface: [u8; 16],
    /// The applied config's `alerts.max_share` in millionths (0: never recorded, read as the
    /// default): the share of a VIP's new flows one server may take, which the backend verbs
    /// and the live audit judge against without the config file.
    pub max_share_ppm: u32,
    /// When the running canary apply's watch ends, seconds since the Unix epoch (fits a u32
    /// until 2106); 0: no canary. Recorded so `xlb status` and a restarted daemon see it.
    pub canary_ends: u32,
}
const _: () = assert!(core::mem::size_of::<Meta>() == 56);

/// `Meta::attach_mode` values.
pub const ATTACH_NATIVE: u32 = 1;
pub const ATTACH_GENERIC: u32 = 2;

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data (three u64, two u32, 16 bytes, two u32), no padding.
unsafe impl aya::Pod for Meta {}

/// Per backend id: its new-flow count (summed over CPUs) when its VIP's table last changed, and
/// when. `xlb stats` judges shares over the flows counted since then, never over lifetime
/// counters from before the change. Written only by the control plane.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShareBase {
    pub new_flows: u64,
    /// Seconds since the Unix epoch; 0: never recorded.
    pub since: u64,
}
const _: () = assert!(core::mem::size_of::<ShareBase>() == 16);

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data (two u64), no padding.
unsafe impl aya::Pod for ShareBase {}

/// Per table copy (index `2 * VIP id + copy`): what the control plane last wrote there, so an
/// audit rebuilds only the tables this does not vouch for. Written and read only by the
/// control plane; all zero: nothing recorded (rebuild to check).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableRecord {
    /// Digest of what decided the table: its size, and each backend in it (id, weight,
    /// address) in order.
    pub inputs: u64,
    /// Digest of the slots as written.
    pub slots: u64,
}
const _: () = assert!(core::mem::size_of::<TableRecord>() == 16);

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data (two u64), no padding.
unsafe impl aya::Pod for TableRecord {}
