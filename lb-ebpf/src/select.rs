//! Backend selection: a known flow keeps the backend the flow table remembers while that
//! backend is active and still the one it was; anything else (a TCP SYN, a UDP flow not seen
//! before, a flow whose backend went away) is hashed into the VIP's live Maglev table and
//! remembered as the configured admission allows.

use lb_common::{
    Backend, Event, FlowSlot, Reason, Vip,
    flow::{admission, first_marks},
    service::{BACKEND_ACTIVE, MAGLEV_CHUNK_SLOTS},
};

use crate::{XLB_BACKENDS, XLB_MAGLEV, counters, flows, parse::Packet};

/// The chosen backend, its id, its VIP, and how the flow table took part.
pub struct Choice {
    pub id: u32,
    /// The backend's entry, in the map.
    pub backend: &'static Backend,
    pub vip: u32,
    pub vip_flags: u32,
    /// [`Event::FlowHit`], [`Event::FlowMiss`] or [`Event::FlowStale`].
    pub event: Event,
}

#[inline(always)]
fn active(id: u32) -> Option<&'static Backend> {
    let backend = XLB_BACKENDS.get(id)?;
    (backend.flags & BACKEND_ACTIVE != 0).then_some(backend)
}

/// The flow table's choice for a packet that is not a SYN, or the event that sends it to
/// [`new_flow`]: [`Event::FlowMiss`] or [`Event::FlowStale`].
#[inline(always)]
pub fn known_flow(packet: &Packet, hash: u32) -> Result<Choice, Event> {
    let slot = flows::find(&packet.flow, hash)?;
    match active(slot.backend) {
        Some(backend) if backend.cookie == slot.cookie => Ok(Choice {
            id: slot.backend,
            backend,
            vip: slot.vip,
            vip_flags: slot.vip_flags,
            event: Event::FlowHit,
        }),
        _ => Err(Event::FlowStale),
    }
}

/// The VIP's live Maglev table's choice, remembered in the flow table as the admission of
/// config `flags` allows (counted as an event of the packet's `bytes`); `hash` is the 5-tuple
/// hash.
#[inline(always)]
pub fn new_flow(
    packet: &Packet,
    vip: &Vip,
    hash: u32,
    event: Event,
    bytes: u64,
    flags: u32,
) -> Result<Choice, Reason> {
    if !vip.has_table() {
        return Err(Reason::NoBackend);
    }
    let slot = vip.table_slot(&packet.flow, hash).index();
    let chunk = XLB_MAGLEV
        .get_ptr(slot / MAGLEV_CHUNK_SLOTS)
        .ok_or(Reason::NoBackend)?;
    // SAFETY: the pointer from a map lookup is valid for this program run; the lane index is
    // masked below the chunk length.
    let id = unsafe { (*chunk)[(slot % MAGLEV_CHUNK_SLOTS) as usize] };
    let backend = active(id).ok_or(Reason::NoBackend)?;
    let remembered = FlowSlot::new(packet.flow, hash, id, backend.cookie, vip.id, vip.flags);
    let outcome = flows::remember(
        &remembered,
        hash,
        admission(flags, packet.syn, packet.icmp),
        first_marks(packet.syn, packet.icmp),
    );
    if outcome == Event::FlowEvictedProven {
        counters::event(bytes, Event::FlowRemembered);
    }
    counters::event(bytes, outcome);
    Ok(Choice {
        id,
        backend,
        vip: vip.id,
        vip_flags: vip.flags,
        event,
    })
}
