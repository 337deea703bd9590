//! Backend selection: an established flow keeps the backend in the flow table while that
//! backend is active; anything else (a TCP SYN, a UDP flow not seen before, a flow whose
//! backend went away) is hashed into the VIP's live Maglev table and remembered.

use lb_common::{
    Backend, Event, FlowEntry, Reason, Vip, flow_hash,
    service::{BACKEND_ACTIVE, MAGLEV_CHUNK_SLOTS, VIP_HASH_SOURCE_ONLY},
};

use crate::{XLB_BACKENDS, XLB_FLOWS, XLB_MAGLEV, parse::Packet};

/// The chosen backend, its id, and how the flow table took part.
pub struct Choice {
    pub id: u32,
    pub backend: Backend,
    /// [`Event::FlowHit`], [`Event::FlowMiss`] or [`Event::FlowStale`].
    pub event: Event,
}

#[inline(always)]
fn active(id: u32) -> Option<Backend> {
    // SAFETY: the pointer from a map lookup is valid for this program run.
    let backend = unsafe { *XLB_BACKENDS.get_ptr(id)? };
    (backend.flags & BACKEND_ACTIVE != 0).then_some(backend)
}

#[inline(always)]
pub fn backend(packet: &Packet, vip: &Vip) -> Result<Choice, Reason> {
    let mut event = Event::FlowMiss;
    if !packet.syn
        && let Some(entry) = XLB_FLOWS.get_ptr(&packet.flow)
    {
        // SAFETY: the pointer from a map lookup is valid for this program run.
        let id = unsafe { (*entry).backend };
        if let Some(backend) = active(id) {
            let event = Event::FlowHit;
            return Ok(Choice { id, backend, event });
        }
        event = Event::FlowStale;
    }
    if vip.table_size == 0 || vip.active > 1 {
        return Err(Reason::NoBackend);
    }
    let hash = flow_hash(&packet.flow, vip.flags & VIP_HASH_SOURCE_ONLY != 0);
    let base = if vip.active == 0 {
        vip.tables[0]
    } else {
        vip.tables[1]
    };
    let slot = base.wrapping_add(hash % vip.table_size);
    let chunk = XLB_MAGLEV
        .get_ptr(slot / MAGLEV_CHUNK_SLOTS)
        .ok_or(Reason::NoBackend)?;
    // SAFETY: the pointer from a map lookup is valid for this program run; the lane index is
    // masked below the chunk length.
    let id = unsafe { (*chunk)[(slot % MAGLEV_CHUNK_SLOTS) as usize] };
    let backend = active(id).ok_or(Reason::NoBackend)?;
    // A full LRU evicts the oldest flow; a failed insert only costs a re-hash next time.
    let entry = FlowEntry {
        backend: id,
        pad: 0,
    };
    let _ = XLB_FLOWS.insert(&packet.flow, &entry, 0);
    Ok(Choice { id, backend, event })
}
