//! `xlb trace`: what the XDP program hands userspace for each packet it traces, and which
//! packets it traces. Tracing is off unless [`crate::config::CONFIG_TRACE`] is set.

/// Bytes of each traced frame copied into its event (a snap length): enough for Ethernet, an
/// outer and an inner IPv6 header and TCP with options. A power of two: the program proves its
/// copy's length to the verifier with a mask.
pub const TRACE_SNAP: usize = 256;
/// Bytes of the trace ring buffer: about 3,500 events before the reader must catch up.
pub const TRACE_RING_BYTES: u32 = 1 << 20;
/// [`TraceEvent::vip`] and [`TraceEvent::backend`] of a packet that reached no VIP or backend.
pub const TRACE_NONE: u32 = u32::MAX;

/// [`TraceFilter::flags`]: trace only packets of VIP [`TraceFilter::vip`].
pub const TRACE_MATCH_VIP: u32 = 1 << 0;
/// Only packets steered to backend [`TraceFilter::backend`].
pub const TRACE_MATCH_BACKEND: u32 = 1 << 1;
/// Only packets counted under reason [`TraceFilter::reason`].
pub const TRACE_MATCH_REASON: u32 = 1 << 2;

/// The single entry of the trace filter map: which packets to trace while tracing is on. The
/// client address is matched in userspace (the kernel knows it only while parsing).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// `TRACE_MATCH_*` flags; 0 traces every packet.
    pub flags: u32,
    /// A VIP id ([`crate::Vip::id`]).
    pub vip: u32,
    /// A backend id (index of the backend map).
    pub backend: u32,
    /// A [`crate::Reason`] as u32.
    pub reason: u32,
}
const _: () = assert!(core::mem::size_of::<TraceFilter>() == 16);

/// One traced packet, as the program left it (rewritten, encapsulated or untouched).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) when traced.
    pub time_ns: u64,
    /// The frame's length as it leaves the program.
    pub frame_len: u32,
    /// Bytes of the frame in [`TraceEvent::data`] (at most [`TRACE_SNAP`]).
    pub captured: u32,
    /// The [`crate::Reason`] it was counted under (which names its verdict).
    pub reason: u32,
    /// The VIP id, or [`TRACE_NONE`].
    pub vip: u32,
    /// The backend id, or [`TRACE_NONE`].
    pub backend: u32,
    /// The flow-table [`crate::Event`] of a steered packet, or [`TRACE_NONE`].
    pub event: u32,
    pub data: [u8; TRACE_SNAP],
}
const _: () = assert!(core::mem::size_of::<TraceEvent>() == 32 + TRACE_SNAP);

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data, no padding (4 u32).
unsafe impl aya::Pod for TraceFilter {}
#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data, no padding (u64, 6 u32, bytes; 8-byte multiple).
unsafe impl aya::Pod for TraceEvent {}
