//! The backend-side decapsulation program's map: which outer destinations are this host's.

/// Key of the decapsulation address map: an outer destination address this host accepts
/// tunnelled packets for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DecapKey {
    /// Network byte order; an IPv4 address fills the first 4 bytes, the rest are zero.
    pub addr: [u8; 16],
    /// [`crate::service::FAMILY_IPV4`] or [`crate::service::FAMILY_IPV6`].
    pub family: u8,
    pub pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<DecapKey>() == 20);

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data with explicit padding.
unsafe impl aya::Pod for DecapKey {}
