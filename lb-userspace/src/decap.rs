//! Configuring the backend-side decapsulation program: which outer destination addresses are
//! this host's, so that tunnelled packets sent to them are stripped and passed up.

use std::net::IpAddr;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{HashMap, MapData},
};
use lb_common::{decap::DecapKey, map_names};

/// The map key for `addr`: an IPv4 address fills the first 4 bytes.
pub fn key(addr: IpAddr) -> DecapKey {
    match addr {
        IpAddr::V4(v4) => DecapKey::v4(&v4.octets()),
        IpAddr::V6(v6) => DecapKey::v6(&v6.octets()),
    }
}

/// Makes the decapsulation program in `ebpf` strip tunnelled packets whose outer destination
/// is `addr`.
pub fn accept(ebpf: &mut Ebpf, addr: IpAddr) -> anyhow::Result<()> {
    let name = map_names::DECAP_ADDRS;
    let map = ebpf.map_mut(name).with_context(|| {
        format!("the object has no map named {name}: load the xlb-decap object (DECAP_OBJECT)")
    })?;
    let mut addrs: HashMap<&mut MapData, DecapKey, u32> = HashMap::try_from(map)
        .with_context(|| format!("map {name} is not a hash map of DecapKey to u32"))?;
    addrs.insert(&key(addr), &0, 0).with_context(|| {
        format!(
            "adding {addr} to map {name} failed; if the map is full, load a fresh object or \
             accept fewer addresses"
        )
    })
}
