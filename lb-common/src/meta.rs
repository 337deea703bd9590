//! What the control plane records in the kernel about the configuration it applied, so any
//! later `xlb` command (or a restarted daemon) can tell what is live.

/// The single entry of the meta map. Written last by an apply, after every table flip.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Increases by one with every successful apply; 0: nothing applied yet.
    pub generation: u64,
    /// When the generation was applied, seconds since the Unix epoch.
    pub applied_at: u64,
    /// FNV-1a hash of the applied configuration file's bytes.
    pub config_hash: u64,
}
const _: () = assert!(core::mem::size_of::<Meta>() == 24);

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data, three u64 fields, no padding.
unsafe impl aya::Pod for Meta {}
