//! Map names, keys, values and constants shared by the xlb XDP program and its control plane.
//!
//! Every layout the kernel and userspace exchange is defined here once. Types are `#[repr(C)]`
//! with padding written out, carry no `Option` or `bool`, and have a compile-time size check.
#![no_std]

pub mod address;
pub mod canary;
pub mod config;
pub mod counters;
pub mod decap;
pub mod flow;
pub mod meta;
pub mod proto;
pub mod service;
pub mod trace;

pub use config::Config;
pub use counters::{Counter, Event, Reason, Verdict, VipCounter};
pub use flow::{FlowKey, FlowSet, FlowSlot, flow_hash, maglev_slot};
pub use service::{Backend, BackendCounter, Vip, VipKey};

/// Names of the maps in the XDP object, as userspace looks them up and pins them.
pub mod map_names {
    /// Per-CPU packets and bytes per reason, indexed by [`crate::Reason`]. A reason names its
    /// verdict ([`crate::Reason::verdict`]): verdict counts are sums of reasons. Steered
    /// packets' reasons are in [`VIP_STATS`].
    pub const REASONS: &str = "XLB_REASONS";
    /// Services: [`crate::VipKey`] to [`crate::Vip`].
    pub const VIPS: &str = "XLB_VIPS";
    /// Backends by id: [`crate::Backend`].
    pub const BACKENDS: &str = "XLB_BACKENDS";
    /// Maglev slots: backend ids, 16 per entry ([`crate::service::MaglevChunk`]), two table
    /// copies per VIP starting at the slots in [`crate::Vip::tables`].
    pub const MAGLEV: &str = "XLB_MAGLEV";
    /// Established flows: [`crate::FlowSet`]s indexed by [`crate::flow::flow_set`].
    pub const FLOWS: &str = "XLB_FLOWS";
    /// Per-CPU [`crate::BackendCounter`] by backend id.
    pub const BACKEND_STATS: &str = "XLB_BACKEND_STATS";
    /// Per-CPU [`crate::VipCounter`] by VIP id: every packet to the VIP, and the reason and
    /// `flow_hit` event of those steered (not in [`REASONS`] and [`EVENTS`]).
    pub const VIP_STATS: &str = "XLB_VIP_STATS";
    /// Per-CPU packets and bytes per [`crate::Event`] (not exclusive, unlike reasons); the
    /// `flow_hit` of steered packets is in [`VIP_STATS`].
    pub const EVENTS: &str = "XLB_EVENTS";
    /// One [`crate::service::VipFilter`] at index 0.
    pub const VIP_FILTER: &str = "XLB_VIP_FILTER";
    /// Every VIP's address, whatever its ports and protocols: [`crate::service::AddrKey`] to an
    /// unused 0. Tells a VIP address's packets that xlb does not steer (`other_l4`, malformed)
    /// from other hosts' (`not_vip`).
    pub const VIP_ADDRS: &str = "XLB_VIP_ADDRS";
    /// One [`crate::Config`] at index 0.
    pub const CONFIG: &str = "XLB_CONFIG";
    /// Decapsulation program: the host's own outer addresses, [`crate::decap::DecapKey`].
    pub const DECAP_ADDRS: &str = "XLB_DECAP_ADDRS";

    /// One [`crate::meta::ShareBase`] per backend id.
    pub const SHARE_BASE: &str = "XLB_SHARE_BASE";
    /// One [`crate::meta::TableRecord`] per table copy (`2 * VIP id + copy`).
    pub const TABLE_RECORDS: &str = "XLB_TABLE_RECORDS";

    /// Every map of the `xlb` program, as pinned under the pin directory.
    pub const XLB: [&str; 16] = [
        REASONS,
        VIPS,
        BACKENDS,
        MAGLEV,
        FLOWS,
        BACKEND_STATS,
        VIP_STATS,
        EVENTS,
        CONFIG,
        VIP_FILTER,
        META,
        VIP_ADDRS,
        SHARE_BASE,
        TABLE_RECORDS,
        TRACE,
        TRACE_FILTER,
    ];
    /// One [`crate::meta::Meta`] at index 0: what the control plane last applied.
    pub const META: &str = "XLB_META";
    /// Ring buffer of [`crate::trace::TraceEvent`]s while `xlb trace` runs.
    pub const TRACE: &str = "XLB_TRACE";
    /// One [`crate::trace::TraceFilter`] at index 0.
    pub const TRACE_FILTER: &str = "XLB_TRACE_FILTER";
    /// Every map of the `xlb_decap` program, as `xlb decap attach` pins them.
    pub const DECAP: [&str; 4] = [REASONS, EVENTS, VIP_STATS, DECAP_ADDRS];
}

/// The XDP program's read-only global holding the number of sets of [`map_names::FLOWS`],
/// set at load time to the map's size.
pub const FLOW_SETS_GLOBAL: &str = "XLB_FLOW_SETS";

/// Name of the XDP entry point in the object.
pub const PROGRAM_NAME: &str = "xlb";
/// Name of the backend-side decapsulation program in the `xlb-decap` object.
pub const DECAP_PROGRAM_NAME: &str = "xlb_decap";
