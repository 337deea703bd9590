//! Service lookup: is this packet addressed to a VIP? An exact (address, port, protocol) entry
//! wins over the VIP's all-ports entry (port 0).

use lb_common::{Vip, VipKey};

use crate::{XLB_VIPS, parse::Packet};

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
