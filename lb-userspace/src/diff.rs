//! Desired state against live state, compared once: which VIPs are added, removed or changed,
//! within a VIP which settings and backends differ, and which run-time settings
//! ([`settings`]). `plan` prints it, `audit` reports it as drift, and `rollout` executes it:
//! an apply writes what it lists and nothing else. The rules for what an apply derives from it
//! (a backend's flags and cookie) are here too, and so is the model of where a table sends new
//! flows ([`effect`]), which the outage guards judge a change by.

pub mod effect;
mod settings;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::IpAddr,
};

use lb_common::{
    Backend, VipKey,
    service::{BACKEND_ACTIVE, BACKEND_DISABLED, BACKEND_DRAINED, BACKEND_UNHEALTHY},
};
use serde::Serialize;

pub use settings::{Setting, SettingDiff, settings};

use crate::rollout::{Desired, DesiredBackend, DesiredVip, describe_vip};

/// How one VIP or backend differs between the live state and the desired one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
    Unchanged,
}

impl Change {
    /// `+`, `-`, `~` or a space, in front of a line of the text report.
    pub fn marker(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Changed => '~',
            Change::Unchanged => ' ',
        }
    }
}

/// A value that differs: live, and as desired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Field<T> {
    pub live: T,
    pub desired: T,
}

fn field<T: PartialEq>(live: T, desired: T) -> Option<Field<T>> {
    (live != desired).then_some(Field { live, desired })
}

/// Every VIP of both sides (the desired ones in their order, then those only live), and the
/// run-time settings that differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub vips: Vec<VipDiff>,
    pub settings: Vec<SettingDiff>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VipDiff {
    #[serde(skip)]
    pub key: VipKey,
    pub vip: String,
    pub change: Change,
    /// Its index in the desired VIPs, and in the live ones.
    #[serde(skip)]
    pub desired: Option<usize>,
    #[serde(skip)]
    pub live: Option<usize>,
    /// `VIP_*` flags, when both sides hold the VIP and they differ.
    pub flags: Option<Field<u32>>,
    pub table_size: Option<Field<u32>>,
    /// The desired backends in their order, then those only live.
    pub backends: Vec<BackendDiff>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendDiff {
    pub address: IpAddr,
    pub change: Change,
    /// Its index in the desired VIP's backends, and in the live one's.
    #[serde(skip)]
    pub desired: Option<usize>,
    #[serde(skip)]
    pub live: Option<usize>,
    pub weight: Option<Field<u32>>,
    pub mac: Option<Field<[u8; 6]>>,
    /// `BACKEND_*` state flags ([`backend_flags`]), as an apply would write them.
    pub state: Option<Field<u8>>,
}

/// What differs between `desired` and `live` (the live state read as a desired one,
/// [`Desired::observed`], or [`Desired::from_live`] where the backends' state is not compared).
pub fn diff(desired: &Desired, live: &Desired) -> Changes {
    let live_by_key: HashMap<VipKey, usize> =
        (0..).zip(&live.vips).map(|(j, vip)| (vip.key, j)).collect();
    let mut vips: Vec<VipDiff> = (0..)
        .zip(&desired.vips)
        .map(|(i, want)| {
            let j = live_by_key.get(&want.key).copied();
            vip(Some((i, want)), j.map(|j| (j, &live.vips[j])))
        })
        .collect();
    let wanted: HashSet<VipKey> = desired.vips.iter().map(|vip| vip.key).collect();
    vips.extend(
        (0..)
            .zip(&live.vips)
            .filter(|(_, have)| !wanted.contains(&have.key))
            .map(|have| vip(None, Some(have))),
    );
    Changes {
        vips,
        settings: settings(&live.config, &desired.config),
    }
}

/// How one VIP differs; at least one side holds it (with its index among that side's VIPs).
/// Backends match by address.
fn vip(desired: Option<(usize, &DesiredVip)>, live: Option<(usize, &DesiredVip)>) -> VipDiff {
    let (desired_index, desired) = (desired.map(|(i, _)| i), desired.map(|(_, vip)| vip));
    let (live_index, live) = (live.map(|(j, _)| j), live.map(|(_, vip)| vip));
    let key = desired.or(live).expect("a VIP on at least one side").key;
    let no_backends = Vec::new();
    let wanted = desired.map_or(&no_backends, |vip| &vip.backends);
    let had = live.map_or(&no_backends, |vip| &vip.backends);
    let pairs = live_matches(wanted, had);
    let mut matched = vec![false; had.len()];
    let mut backends = Vec::with_capacity(wanted.len());
    for ((i, want), j) in wanted.iter().enumerate().zip(pairs) {
        if let Some(j) = j {
            matched[j] = true;
        }
        let (weight, mac, state) = match j {
            Some(j) => backend_fields(want, &had[j]),
            None => (None, None, None),
        };
        let change = match j {
            None => Change::Added,
            Some(_) if weight.is_none() && mac.is_none() && state.is_none() => Change::Unchanged,
            Some(_) => Change::Changed,
        };
        backends.push(BackendDiff {
            address: want.address,
            change,
            desired: Some(i),
            live: j,
            weight,
            mac,
            state,
        });
    }
    let removed = (0..had.len()).filter(|&j| !matched[j]);
    backends.extend(removed.map(|j| BackendDiff {
        address: had[j].address,
        change: Change::Removed,
        desired: None,
        live: Some(j),
        weight: None,
        mac: None,
        state: None,
    }));
    let (flags, table_size) = match (desired, live) {
        (Some(want), Some(have)) => (
            field(have.flags, want.flags),
            field(have.table_size, want.table_size),
        ),
        _ => (None, None),
    };
    let change = match (desired, live) {
        (_, None) => Change::Added,
        (None, _) => Change::Removed,
        _ if flags.is_none()
            && table_size.is_none()
            && backends.iter().all(|b| b.change == Change::Unchanged) =>
        {
            Change::Unchanged
        }
        _ => Change::Changed,
    };
    VipDiff {
        key,
        vip: describe_vip(&key),
        change,
        desired: desired_index,
        live: live_index,
        flags,
        table_size,
        backends,
    }
}

/// The weight, MAC and state ([`backend_flags`]) of a desired backend that differ from those
/// of the live one it matches.
#[expect(clippy::type_complexity, reason = "the three fields of a BackendDiff")]
fn backend_fields(
    want: &DesiredBackend,
    have: &DesiredBackend,
) -> (
    Option<Field<u32>>,
    Option<Field<[u8; 6]>>,
    Option<Field<u8>>,
) {
    // A live side that does not know a backend's state reads as in service.
    let live_state = backend_flags(have, BACKEND_ACTIVE);
    (
        field(have.weight, want.weight),
        field(have.mac, want.mac),
        field(live_state, backend_flags(want, live_state)),
    )
}

/// Whether live backend `have` is as `want` asks: the same address, and no field differs (what
/// [`diff`] calls unchanged).
pub fn backend_unchanged(want: &DesiredBackend, have: &DesiredBackend) -> bool {
    want.address == have.address && backend_fields(want, have) == (None, None, None)
}

/// The live backend each desired one matches, by address (each live one matched once, in live
/// order). The same addresses in the same order, as an apply over its own last write finds
/// them, pair by position; otherwise one lookup each (an apply diffs every VIP, up to thousands
/// of backends each).
fn live_matches(wanted: &[DesiredBackend], had: &[DesiredBackend]) -> Vec<Option<usize>> {
    let same_order = wanted.len() == had.len()
        && wanted
            .iter()
            .zip(had)
            .all(|(want, have)| want.address == have.address);
    if same_order {
        return (0..wanted.len()).map(Some).collect();
    }
    let mut unmatched: HashMap<IpAddr, VecDeque<usize>> = HashMap::new();
    for (j, have) in had.iter().enumerate() {
        unmatched.entry(have.address).or_default().push_back(j);
    }
    wanted
        .iter()
        .map(|want| {
            unmatched
                .get_mut(&want.address)
                .and_then(VecDeque::pop_front)
        })
        .collect()
}

/// The flags an apply writes for `want` over a live entry holding `live`: operator and health
/// state survive an apply unless they are the change, and a backend out of service is not
/// active.
pub fn backend_flags(want: &DesiredBackend, live: u8) -> u8 {
    let operator = want.operator.unwrap_or(live) & (BACKEND_DRAINED | BACKEND_DISABLED);
    let unhealthy = match want.unhealthy {
        Some(true) => BACKEND_UNHEALTHY,
        Some(false) => 0,
        None => live & BACKEND_UNHEALTHY,
    };
    let out = operator & BACKEND_DISABLED != 0 || unhealthy != 0;
    operator | unhealthy | if out { 0 } else { BACKEND_ACTIVE }
}

/// Whether a backend with `flags` ([`backend_flags`]) and `weight` gets slots in its table.
pub fn in_table(flags: u8, weight: u32) -> bool {
    flags & (BACKEND_DRAINED | BACKEND_DISABLED | BACKEND_UNHEALTHY) == 0 && weight > 0
}

/// The cookie of a backend entry: the live one's (`bound`) while it stays bound to a VIP that
/// forwards as before (`rebind` false); otherwise `fresh`, this apply's, so flows remembered
/// under the old binding are re-hashed rather than misdelivered.
pub fn cookie(bound: Option<&Backend>, rebind: bool, fresh: u32) -> u32 {
    match bound {
        Some(backend) if !rebind => backend.cookie,
        _ => fresh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(last: u8, weight: u32) -> DesiredBackend {
        DesiredBackend::keeping_state(
            IpAddr::from([198, 18, 0, last]),
            weight,
            [2, 0, 0, 0, 0, last],
        )
    }

    fn vip(port: u16, backends: Vec<DesiredBackend>) -> DesiredVip {
        DesiredVip {
            key: VipKey {
                port,
                ..VipKey::default()
            },
            flags: 0,
            table_size: 13,
            backends,
        }
    }

    fn state(vips: Vec<DesiredVip>) -> Desired {
        Desired {
            vips,
            config: lb_common::Config::default(),
            config_hash: 0,
            max_share: 0.5,
        }
    }

    #[test]
    fn vips_and_backends_are_matched_and_compared() {
        let live = state(vec![
            vip(80, vec![backend(1, 1), backend(2, 1)]),
            vip(81, vec![backend(1, 1)]),
            vip(82, vec![backend(1, 1)]),
        ]);
        let desired = state(vec![
            vip(80, vec![backend(1, 1), backend(3, 1), backend(2, 5)]),
            vip(82, vec![backend(1, 1)]),
            vip(83, vec![]),
        ]);
        let changes = super::diff(&desired, &live);
        let kinds: Vec<(u16, Change)> = changes
            .vips
            .iter()
            .map(|v| (v.key.port, v.change))
            .collect();
        assert_eq!(
            kinds,
            [
                (80, Change::Changed),
                (82, Change::Unchanged),
                (83, Change::Added),
                (81, Change::Removed)
            ]
        );
        let backends: Vec<(Change, Option<usize>, Option<usize>)> = changes.vips[0]
            .backends
            .iter()
            .map(|b| (b.change, b.desired, b.live))
            .collect();
        assert_eq!(
            backends,
            [
                (Change::Unchanged, Some(0), Some(0)),
                (Change::Added, Some(1), None),
                (Change::Changed, Some(2), Some(1)),
            ]
        );
        assert_eq!(
            changes.vips[0].backends[2].weight,
            Some(Field {
                live: 1,
                desired: 5
            })
        );
        assert_eq!(changes.vips[3].backends[0].change, Change::Removed);
    }

    #[test]
    fn a_backend_state_change_is_a_change() {
        // Test that draining a backend (its state, not its weight or MAC) changes it and its
        // VIP, and that a desired backend keeping the live state changes nothing.
        let unhealthy = DesiredBackend {
            operator: Some(0),
            unhealthy: Some(true),
            ..backend(1, 1)
        };
        let live = state(vec![vip(80, vec![unhealthy])]);
        let keep = state(vec![vip(80, vec![backend(1, 1)])]);
        assert_eq!(super::diff(&keep, &live).vips[0].change, Change::Unchanged);
        let drained = DesiredBackend {
            operator: Some(BACKEND_DRAINED),
            ..backend(1, 1)
        };
        let changes = super::diff(&state(vec![vip(80, vec![drained])]), &live);
        assert_eq!(changes.vips[0].change, Change::Changed);
        assert_eq!(
            changes.vips[0].backends[0].state,
            Some(Field {
                live: BACKEND_UNHEALTHY,
                desired: BACKEND_DRAINED | BACKEND_UNHEALTHY
            })
        );
    }

    #[test]
    fn flags_keep_live_state_unless_they_are_the_change() {
        let drained_unhealthy = BACKEND_DRAINED | BACKEND_UNHEALTHY;
        let kept = backend_flags(&backend(1, 1), drained_unhealthy);
        assert_eq!(kept, drained_unhealthy);
        assert!(!in_table(kept, 1));
        let healed = DesiredBackend {
            operator: Some(0),
            unhealthy: Some(false),
            ..backend(1, 1)
        };
        assert_eq!(backend_flags(&healed, drained_unhealthy), BACKEND_ACTIVE);
        assert!(in_table(BACKEND_ACTIVE, 1));
        assert!(!in_table(BACKEND_ACTIVE, 0));
    }
}
