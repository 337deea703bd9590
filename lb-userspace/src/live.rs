//! The state a loaded xlb holds in its maps, read back in one piece: what `apply` starts from
//! and restores on failure, and what `status`, `stats`, `audit`, `explain` and `plan` report.

use anyhow::Context as _;
use aya::maps::{HashMap, MapData};
use lb_common::{
    Backend, Config, Vip, VipKey, map_names,
    meta::Meta,
    service::{BACKEND_ACTIVE, BACKEND_DISABLED, BACKEND_DRAINED, BACKEND_UNHEALTHY, VipFilter},
};
use serde::Serialize;

use crate::{
    batch,
    maps::{Maps, array, with_mapped},
    steering,
};

/// Every VIP entry, every backend slot, the run-time config, the VIP filter and the meta entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Sorted by key.
    pub vips: Vec<(VipKey, Vip)>,
    /// Indexed by backend id; unused ids are all zeros.
    pub backends: Vec<Backend>,
    pub config: Config,
    pub filter: VipFilter,
    pub meta: Meta,
}

fn vip_map(maps: &mut (impl Maps + ?Sized)) -> anyhow::Result<HashMap<&mut MapData, VipKey, Vip>> {
    HashMap::try_from(maps.map_mut(map_names::VIPS)?).context("the VIP map has an unexpected type")
}

impl Snapshot {
    pub fn read(maps: &mut (impl Maps + ?Sized)) -> anyhow::Result<Snapshot> {
        // One pass over the VIP map and one copy of the (memory-mapped) backend map: a
        // per-entry walk costs a system call per VIP and backend.
        let mut vips =
            batch::hash_map::<VipKey, Vip>(maps, map_names::VIPS).context("reading the VIP map")?;
        vips.sort_by_key(|(key, _)| *key);
        let backends = with_mapped(maps, map_names::BACKENDS, .., |all: &mut [Backend]| {
            all.to_vec()
        })
        .context("reading the backend map")?;
        let config = settings(maps)?;
        let filter = array::<VipFilter>(maps, map_names::VIP_FILTER)?
            .get(&0, 0)
            .context("reading the VIP filter")?;
        let meta = array::<Meta>(maps, map_names::META)?
            .get(&0, 0)
            .context("reading the meta map")?;
        Ok(Snapshot {
            vips,
            backends,
            config,
            filter,
            meta,
        })
    }

    /// The live state: `kept` (read or written earlier) while the live generation is still
    /// its own, else read afresh. Every change through xlb moves the generation; an edit behind
    /// its back (bpftool) does not, and is seen once the caller stops keeping a snapshot.
    pub fn read_unless_kept(
        maps: &mut (impl Maps + ?Sized),
        kept: Option<Snapshot>,
    ) -> anyhow::Result<Snapshot> {
        match kept {
            Some(kept) if generation(maps)? == kept.meta.generation => Ok(kept),
            _ => Snapshot::read(maps),
        }
    }

    /// Writes this snapshot back: VIP entries (removing any added since), backends, config,
    /// filter and meta. Table copies are not touched: the restored VIP entries point at the
    /// copies that were live when the snapshot was taken, and nothing writes a live copy.
    pub fn restore(&self, maps: &mut (impl Maps + ?Sized)) -> anyhow::Result<()> {
        // Only the entries that differ: compared in place, a write per difference.
        let differ: Vec<u32> =
            with_mapped(maps, map_names::BACKENDS, .., |now: &mut [Backend]| {
                (0..)
                    .zip(&self.backends)
                    .filter(|&(id, backend)| now.get(id as usize) != Some(backend))
                    .map(|(id, _)| id)
                    .collect()
            })?;
        let mut backends = array::<Backend>(maps, map_names::BACKENDS)?;
        for id in differ {
            backends
                .set(id, &self.backends[id as usize], 0)
                .with_context(|| format!("restoring backend {id}"))?;
        }
        let mut vips = vip_map(maps)?;
        let present: Vec<VipKey> = vips.keys().collect::<Result<_, _>>()?;
        for key in present {
            if self.vips.binary_search_by_key(&key, |(k, _)| *k).is_err() {
                vips.remove(&key)
                    .context("removing a VIP added since the snapshot")?;
            }
        }
        for (key, vip) in &self.vips {
            vips.insert(key, vip, 0).context("restoring a VIP")?;
        }
        array::<Config>(maps, map_names::CONFIG)?.set(0, &self.config, 0)?;
        array::<VipFilter>(maps, map_names::VIP_FILTER)?.set(0, &self.filter, 0)?;
        crate::steering::set_vip_addrs(maps, self.vips.iter().map(|(key, _)| key))?;
        array::<Meta>(maps, map_names::META)?.set(0, &self.meta, 0)?;
        Ok(())
    }

    /// The VIP entry for `key`, if it exists.
    pub fn vip(&self, key: &VipKey) -> Option<&Vip> {
        self.vips
            .binary_search_by_key(key, |(k, _)| *k)
            .ok()
            .map(|i| &self.vips[i].1)
    }

    /// The live (active) table of `vip`.
    pub fn active_table(&self, maps: &(impl Maps + ?Sized), vip: &Vip) -> anyhow::Result<Vec<u32>> {
        let base = if vip.active == 0 {
            vip.tables[0]
        } else {
            vip.tables[1]
        };
        steering::read_table(maps, base, vip.table_size)
    }
}

/// The generation in the meta map: every apply, and every other change through xlb, moves it.
pub fn generation(maps: &mut (impl Maps + ?Sized)) -> anyhow::Result<u64> {
    let meta = array::<Meta>(maps, map_names::META)?
        .get(&0, 0)
        .context("reading the meta map")?;
    Ok(meta.generation)
}

/// The run-time settings in the config map.
pub fn settings(maps: &mut (impl Maps + ?Sized)) -> anyhow::Result<Config> {
    array::<Config>(maps, map_names::CONFIG)?
        .get(&0, 0)
        .context("reading the config map")
}

/// What a backend entry's flags mean, for people and for the alarms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// In the table (by its weight) and taking its flows.
    Active,
    /// Out of the table, keeps its established flows (`xlb backend drain`).
    Drained,
    /// Out of the table and inactive (`xlb backend disable`, or a drain that timed out).
    Disabled,
    /// Out of the table and inactive: it failed its health checks.
    Unhealthy,
    /// Inactive without any of the reasons above: something else wrote the entry.
    Inactive,
    /// The id holds no backend.
    Unused,
}

impl BackendState {
    pub fn of(backend: &Backend) -> BackendState {
        let flags = backend.flags;
        if *backend == Backend::default() {
            BackendState::Unused
        } else if flags & BACKEND_DISABLED != 0 {
            BackendState::Disabled
        } else if flags & BACKEND_UNHEALTHY != 0 {
            BackendState::Unhealthy
        } else if flags & BACKEND_ACTIVE == 0 {
            BackendState::Inactive
        } else if flags & BACKEND_DRAINED != 0 {
            BackendState::Drained
        } else {
            BackendState::Active
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendState::Active => "active",
            BackendState::Drained => "drained",
            BackendState::Disabled => "disabled",
            BackendState::Unhealthy => "unhealthy",
            BackendState::Inactive => "inactive",
            BackendState::Unused => "unused",
        }
    }
}

#[cfg(test)]
mod tests {
    use lb_common::service::FAMILY_IPV4;

    use super::*;

    /// Test that a backend's flags read as the states they encode: an operator's disable wins
    /// over health, health over a drain.
    #[test]
    fn backend_states_follow_the_flags() {
        let with = |flags| Backend {
            flags,
            family: FAMILY_IPV4,
            ..Backend::default()
        };
        let state = |flags| BackendState::of(&with(flags));
        assert_eq!(state(BACKEND_ACTIVE), BackendState::Active);
        assert_eq!(
            state(BACKEND_ACTIVE | BACKEND_DRAINED),
            BackendState::Drained
        );
        assert_eq!(
            state(BACKEND_DRAINED | BACKEND_DISABLED),
            BackendState::Disabled
        );
        assert_eq!(
            state(BACKEND_UNHEALTHY | BACKEND_DISABLED),
            BackendState::Disabled
        );
        assert_eq!(
            state(BACKEND_UNHEALTHY | BACKEND_DRAINED),
            BackendState::Unhealthy
        );
        assert_eq!(state(0), BackendState::Inactive);
        assert_eq!(BackendState::of(&Backend::default()), BackendState::Unused);
    }
}
