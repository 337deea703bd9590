//! The two sides of a plan (the live state and the state the config would install) and how
//! [`crate::diff`] finds them to differ, shown: VIP settings, backends, each backend's share of
//! the table, and the share of new flows that would move.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::Path,
};

use anyhow::Context as _;
use lb_common::{
    Backend, Vip, VipKey,
    address::Mac,
    service::{BACKEND_DISABLED, BACKEND_DRAINED, BACKEND_UNHEALTHY, VIP_HASH_SOURCE_ONLY},
};

use super::{BackendPlan, Change, FieldChange, VipPlan, kernel, sample::Probe};
use crate::{
    capacity::Capacity,
    config::VipModel,
    diff::{Field, VipDiff},
    live::Snapshot,
    pins,
    rollout::{AppliedVip, DesiredVip, describe_vip, live_address},
    status::{forwarding_name, hash_name},
    steering,
};

/// What a running xlb holds, read once.
pub(super) struct Live {
    pub snapshot: Snapshot,
    pub capacity: Capacity,
    pub vips: BTreeMap<VipKey, Side>,
}

/// One VIP on one side of the plan: its entry, its backends and who owns each table slot.
pub(super) struct Side {
    pub key: VipKey,
    pub vip: Vip,
    pub backends: Vec<SideBackend>,
    /// Per slot, the index in `backends` of its owner; `None` for an empty slot.
    pub owners: Vec<Option<usize>>,
    /// Per backend, the slots it owns.
    pub slots: Vec<u32>,
}

pub(super) struct SideBackend {
    pub address: IpAddr,
    pub weight: u32,
    pub mac: [u8; 6],
    /// `BACKEND_*` operator flags (drained, disabled).
    pub flags: u8,
}

impl Side {
    /// Where this side's table sends new flows, by physical server.
    pub fn effect(&self) -> crate::diff::effect::Effect {
        let entries: Vec<crate::diff::effect::Entry> = self
            .backends
            .iter()
            .map(|b| crate::diff::effect::Entry::new(b.address, b.mac))
            .collect();
        crate::diff::effect::Effect::of(
            &entries,
            crate::diff::effect::forwarding(&self.vip),
            self.owners.iter().copied(),
        )
    }
}

/// The live state under `pin_path`, or `None` if no xlb has pinned one there.
pub(super) fn read_live(pin_path: &Path) -> anyhow::Result<Option<Live>> {
    if !pins::exist(pin_path) {
        return Ok(None);
    }
    let mut maps = pins::open(pin_path)?;
    let snapshot = Snapshot::read(&mut maps)?;
    let capacity = Capacity::read(&maps)?;
    let mut vips = BTreeMap::new();
    for (key, vip) in &snapshot.vips {
        let table = snapshot
            .active_table(&maps, vip)
            .with_context(|| format!("reading the live table of VIP {}", describe_vip(key)))?;
        let (ids, backends): (Vec<u32>, Vec<SideBackend>) = capacity
            .backend_ids(vip.id)
            .filter_map(|id| {
                let backend = snapshot.backends.get(id as usize)?;
                (*backend != Backend::default()).then(|| {
                    (
                        id,
                        SideBackend {
                            address: live_address(backend),
                            weight: backend.weight,
                            mac: backend.mac,
                            flags: backend.flags,
                        },
                    )
                })
            })
            .unzip();
        vips.insert(*key, Side::new(*key, *vip, &ids, backends, &table));
    }
    Ok(Some(Live {
        snapshot,
        capacity,
        vips,
    }))
}

impl Side {
    /// `ids[i]` is the backend id of `backends[i]`; `table` holds backend ids.
    fn new(key: VipKey, vip: Vip, ids: &[u32], backends: Vec<SideBackend>, table: &[u32]) -> Side {
        let index: HashMap<u32, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let owners: Vec<Option<usize>> = table.iter().map(|id| index.get(id).copied()).collect();
        let mut slots = vec![0; backends.len()];
        for owner in owners.iter().flatten() {
            slots[*owner] += 1;
        }
        Side {
            key,
            vip,
            backends,
            owners,
            slots,
        }
    }

    /// The side a (scratch) apply of `want` installed: backends in config order.
    pub fn applied(done: &AppliedVip, want: &DesiredVip) -> Side {
        let backends = want
            .backends
            .iter()
            .map(|b| SideBackend {
                address: b.address,
                weight: b.weight,
                mac: b.mac,
                flags: b.operator.unwrap_or(0),
            })
            .collect();
        Side::new(done.key, done.vip, &done.backend_ids, backends, &done.table)
    }

    #[cfg(test)]
    pub fn for_test(vip: Vip, backends: Vec<SideBackend>, owners: Vec<Option<usize>>) -> Side {
        let mut slots = vec![0; backends.len()];
        for owner in owners.iter().flatten() {
            slots[*owner] += 1;
        }
        Side {
            key: VipKey::default(),
            vip,
            backends,
            owners,
            slots,
        }
    }

    /// The expected share of new flows of backend `i`.
    pub fn share(&self, i: usize) -> f64 {
        f64::from(self.slots[i]) / f64::from(self.vip.table_size.max(1))
    }

    /// The address owning `slot`.
    fn owner(&self, slot: usize) -> Option<IpAddr> {
        self.owners
            .get(slot)
            .copied()
            .flatten()
            .map(|i| self.backends[i].address)
    }
}

fn state(flags: u8) -> Option<&'static str> {
    if flags & BACKEND_DISABLED != 0 {
        Some("disabled")
    } else if flags & BACKEND_DRAINED != 0 {
        Some("drained")
    } else {
        None
    }
}

/// A backend's whole state (operator and health), for a change of it.
fn full_state(flags: u8) -> &'static str {
    match state(flags) {
        Some(operator) => operator,
        None if flags & BACKEND_UNHEALTHY != 0 => "unhealthy",
        None => "active",
    }
}

fn change<T: Copy, S: ToString>(
    field: &'static str,
    values: Option<Field<T>>,
    show: impl Fn(T) -> S,
) -> Option<FieldChange> {
    let values = values?;
    let (before, after) = (
        show(values.live).to_string(),
        show(values.desired).to_string(),
    );
    (before != after).then_some(FieldChange {
        field,
        before,
        after,
    })
}

/// The plan of one VIP, which `diff` (the change an apply executes) finds in the config
/// (`model`, `after`, and the kernel's `outcome` unless the sample is empty), live (`before`),
/// or both. `probes` are the sample flows (for a moved share that cannot be counted by
/// slots); `warnings` the config warnings about it (backend index, rule id).
pub(super) fn vip_plan(
    model: Option<&VipModel>,
    before: Option<&Side>,
    after: Option<&Side>,
    diff: &VipDiff,
    outcome: Option<kernel::Outcome>,
    probes: &[Probe],
    warnings: &[(Option<usize>, &'static str)],
) -> VipPlan {
    let reference = after.or(before).expect("a VIP on at least one side");
    let changes: Vec<FieldChange> = [
        change("forwarding", diff.flags, forwarding_name),
        change("hash", diff.flags, hash_name),
        change("table_size", diff.table_size, |size| size),
    ]
    .into_iter()
    .flatten()
    .collect();

    let mut backends = Vec::new();
    for backend in &diff.backends {
        let (side, index) = match (after, backend.desired, before, backend.live) {
            (Some(a), Some(i), _, _) => (a, i),
            (_, _, Some(b), Some(j)) => (b, j),
            _ => continue,
        };
        let entry = &side.backends[index];
        let field_changes = [
            change("weight", backend.weight, |weight| weight),
            change("mac", backend.mac, Mac),
            change("state", backend.state, full_state),
        ]
        .into_iter()
        .flatten()
        .collect();
        let share_before = match (before, backend.live) {
            (Some(b), Some(j)) => b.share(j),
            _ => 0.0,
        };
        let in_after = backend.desired.filter(|_| after.is_some());
        backends.push(BackendPlan {
            address: backend.address,
            change: backend.change,
            changes: field_changes,
            weight: entry.weight,
            mac: Mac(entry.mac).to_string(),
            state: state(entry.flags),
            share_before,
            share_after: in_after.map_or(0.0, |i| after.map_or(0.0, |a| a.share(i))),
            kernel_flows: outcome
                .as_ref()
                .map(|o| in_after.map_or(0, |i| o.counts[i])),
            kernel_share: outcome.as_ref().map(|o| {
                in_after.map_or(0.0, |i| {
                    f64::from(o.counts[i]) / f64::from(o.check.flows.max(1))
                })
            }),
            warnings: in_after.map_or_else(Vec::new, |i| {
                warnings
                    .iter()
                    .filter(|(backend, _)| *backend == Some(i))
                    .map(|(_, rule)| *rule)
                    .collect()
            }),
        });
    }

    let mut notes = Vec::new();
    let (moved_share, moved_estimated) = match (before, after) {
        (Some(b), Some(a)) if diff.change == Change::Unchanged => {
            // An apply leaves this VIP, its table included, as it is: no new flow moves.
            if let (Some(share), _) = moved(b, a, probes)
                && share > 0.0
            {
                notes.push(format!(
                    "the live table sends {} of new flows elsewhere than the one this config \
                     builds (changed outside xlb?): an apply leaves it, as the VIP's entries \
                     are what the config wants; `xlb audit` reports it",
                    crate::diff::effect::percent(share, 1)
                ));
            }
            (Some(0.0), false)
        }
        (Some(b), Some(a)) => moved(b, a, probes),
        (Some(_), None) => {
            notes.push(
                "removed: every flow of this VIP, established ones too, stops being balanced \
                 (its packets go to the host's stack)"
                    .to_owned(),
            );
            (Some(1.0), false)
        }
        _ => (None, false),
    };
    if changes
        .iter()
        .any(|c| c.field == "table_size" || c.field == "hash")
    {
        notes.push(
            "a new table size or hash mode gives every flow a new slot: most new flows move to \
             another backend, whatever the backends"
                .to_owned(),
        );
    }
    VipPlan {
        name: model.map(|m| m.name.clone()),
        vip: describe_vip(&reference.key),
        change: diff.change,
        changes,
        forwarding: forwarding_name(reference.vip.flags),
        hash: hash_name(reference.vip.flags),
        table_size: reference.vip.table_size,
        moved_share,
        moved_estimated,
        warnings: warnings
            .iter()
            .filter(|(backend, _)| backend.is_none())
            .map(|(_, rule)| *rule)
            .collect(),
        notes,
        backends,
        kernel: outcome.map(|o| o.check),
        servers: Vec::new(),
    }
}

/// The share of new flows whose backend changes, and whether it is an estimate. With the same
/// table size and hash mode a flow keeps its slot, so counting slots whose owner changes is
/// exact; otherwise each sample flow is looked up on both sides.
fn moved(before: &Side, after: &Side, probes: &[Probe]) -> (Option<f64>, bool) {
    let same_slots = before.vip.table_size == after.vip.table_size
        && before.vip.flags & VIP_HASH_SOURCE_ONLY == after.vip.flags & VIP_HASH_SOURCE_ONLY;
    if same_slots {
        let size = before.owners.len();
        let moved = (0..size)
            .filter(|&slot| before.owner(slot) != after.owner(slot))
            .count();
        return (Some(moved as f64 / size.max(1) as f64), false);
    }
    if probes.is_empty() {
        return (None, true);
    }
    let moved = probes
        .iter()
        .filter(|probe| {
            let old = steering::slot(&before.vip, &probe.key) as usize;
            let new = steering::slot(&after.vip, &probe.key) as usize;
            before.owner(old) != after.owner(new)
        })
        .count();
    (Some(moved as f64 / probes.len() as f64), true)
}
