//! Service lookup: is this packet addressed to a VIP? The address filter (checked by the parser
//! as soon as the destination is known) answers "no" for most packets; then an exact (address,
//! port, protocol) entry wins over the VIP's all-ports entry (port 0). The filter only rules
//! addresses out: a packet xlb does not steer counts under its own reason only when its
//! destination is a VIP address in full ([`unsteered`]).

use lb_common::{
    Reason, Vip, VipKey,
    service::{AddrKey, find_vip},
};

use crate::{XLB_VIP_ADDRS, XLB_VIP_FILTER, XLB_VIPS, parse::Packet};

/// Whether an address whose filter bit is `bit` may be a VIP address; false means certainly
/// not. Checked on the header itself, before the flow key is built.
#[inline(always)]
pub fn may_be_vip(bit: u32) -> bool {
    match XLB_VIP_FILTER.get_ptr(0) {
        // SAFETY: the pointer from a map lookup is valid for this program run; the word index
        // is below 64 (a 12-bit value shifted right by 6).
        Some(filter) => unsafe { (*filter)[(bit >> 6) as usize & 63] & (1 << (bit & 63)) != 0 },
        None => true,
    }
}

/// The VIP entry of `packet` by [`find_vip`].
#[inline(always)]
pub fn vip(packet: &Packet) -> Option<Vip> {
    let key = VipKey {
        addr: packet.flow.dst,
        port: packet.flow.dport,
        proto: packet.flow.proto,
        family: packet.family,
    };
    // SAFETY: the pointer from a map lookup is valid for this program run.
    find_vip(key, |key| XLB_VIPS.get_ptr(key).map(|vip| unsafe { *vip })).map(|(vip, _)| vip)
}

/// `reason` for a packet xlb does not steer (other transport, malformed transport header) when
/// its destination `addr` is a VIP address; `not_vip` when it is not, whatever the packet
/// holds: the filter let it through on a bit it shares with a VIP address.
#[inline(always)]
pub fn unsteered(addr: &AddrKey, reason: Reason) -> Reason {
    if XLB_VIP_ADDRS.get_ptr(addr).is_some() {
        reason
    } else {
        Reason::NotVip
    }
}

/// The destination of `packet` as the VIP address map keys it.
#[inline(always)]
pub fn destination(packet: &Packet) -> AddrKey {
    AddrKey {
        addr: packet.flow.dst,
        family: packet.family,
        pad: [0; 3],
    }
}
