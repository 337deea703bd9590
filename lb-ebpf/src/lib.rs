//! What the XDP programs of this crate (`xlb`, `xlb-decap`) share: bounds-checked packet
//! access, the Ethernet and IP header checks, and per-CPU counting. lb-userspace also builds
//! this library as a build-dependency so cargo rebuilds the programs when it changes.
#![no_std]

pub mod count;
pub mod headers;
