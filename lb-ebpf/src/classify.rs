//! Service lookup: is this packet addressed to a VIP? The address filter (checked by the parser
//! as soon as the destination is known) answers "no" for most packets; then an exact (address,
//! port, protocol) entry wins over the VIP's all-ports entry (port 0).

use lb_common::{Vip, VipKey};

use crate::{XLB_VIP_FILTER, XLB_VIPS, parse::Packet};

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

#[inline(always)]
pub fn vip(packet: &Packet) -> Option<Vip> {
    let mut key = VipKey {
        addr: packet.flow.dst,
        port: packet.flow.dport,
        proto: packet.flow.proto,
        family: packet.family,
    };
    if let Some(vip) = XLB_VIPS.get_ptr(&key) {
        // SAFETY: the pointer from a map lookup is valid for this program run.
        return Some(unsafe { *vip });
    }
    key.port = 0;
    // SAFETY: as above.
    XLB_VIPS.get_ptr(&key).map(|vip| unsafe { *vip })
}
