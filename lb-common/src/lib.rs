//! Map names, keys, values and constants shared by the xlb XDP program and its control plane.
//!
//! Every layout the kernel and userspace exchange is defined here once. Types are `#[repr(C)]`
//! with padding written out, carry no `Option` or `bool`, and have a compile-time size check.
#![no_std]

pub mod counters;

pub use counters::{Counter, Reason, Verdict};

/// Names of the maps in the XDP object, as userspace looks them up and pins them.
pub mod map_names {
    /// Per-CPU packets and bytes per XDP verdict, indexed by [`crate::Verdict`].
    pub const VERDICTS: &str = "XLB_VERDICTS";
    /// Per-CPU packets and bytes per reason, indexed by [`crate::Reason`].
    pub const REASONS: &str = "XLB_REASONS";
}

/// Name of the XDP entry point in the object.
pub const PROGRAM_NAME: &str = "xlb";
