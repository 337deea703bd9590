//! The backend-side decapsulation program's map: which outer destinations are this host's.

/// Key of the decapsulation address map: an outer destination address this host accepts
/// tunnelled packets for.
pub type DecapKey = crate::service::AddrKey;
