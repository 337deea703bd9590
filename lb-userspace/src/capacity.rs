//! How many VIPs, backends per VIP and table slots per VIP a loaded program holds. The maps are
//! sized from this at load time; the control plane reads it back from the maps, so every
//! command agrees with the program that is running.

use std::path::Path;

use anyhow::{Context as _, bail};
use aya::maps::{Map, MapInfo};
use lb_common::{
    Backend, BackendCounter, Counter, Vip, VipKey, map_names,
    meta::{ShareBase, TableRecord},
    service::{AddrKey, MAGLEV_CHUNK_SLOTS},
};
use serde::Serialize;

use crate::maps::Maps;

/// VIP `i` owns backend ids `i * backends_per_vip ..` and the two table copies starting at
/// slots `2 * i * table_slots` and `(2 * i + 1) * table_slots`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capacity {
    pub vips: u32,
    pub backends_per_vip: u32,
    /// The largest table size a VIP may use.
    pub table_slots: u32,
}

impl Default for Capacity {
    /// 64 VIPs of up to 256 backends and 65,537-slot tables: about 34 MB of tables.
    fn default() -> Self {
        Capacity {
            vips: 64,
            backends_per_vip: 256,
            table_slots: 65_537,
        }
    }
}

/// The maps whose size the capacity sets: a capacity change replaces them (see
/// [`crate::run`]); every other map (flow table, per-reason and per-event counters, config,
/// meta) is kept.
pub const SIZED_MAPS: [&str; 8] = [
    map_names::VIPS,
    map_names::VIP_STATS,
    map_names::VIP_ADDRS,
    map_names::BACKENDS,
    map_names::BACKEND_STATS,
    map_names::SHARE_BASE,
    map_names::TABLE_RECORDS,
    map_names::MAGLEV,
];

/// The kernel memory a capacity takes, by what holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Two copies of a `table_slots` table per VIP.
    pub tables: u64,
    /// Backend entries, share bases, VIP entries, addresses and table records.
    pub entries: u64,
    /// Per-CPU VIP and backend counters, for `cpus` CPUs.
    pub counters: u64,
    pub cpus: u32,
}

impl Memory {
    pub fn total(&self) -> u64 {
        self.tables + self.entries + self.counters
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of kernel memory ({} of Maglev tables, {} of entries, {} of counters over {} \
             CPUs)",
            mebibytes(self.total()),
            mebibytes(self.tables),
            mebibytes(self.entries),
            mebibytes(self.counters),
            self.cpus
        )
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

impl std::fmt::Display for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} VIPs x {} backends, tables of up to {} slots",
            self.vips, self.backends_per_vip, self.table_slots
        )
    }
}

impl Capacity {
    /// Map sizes to load the program with (see [`crate::object::load_sized`]).
    pub fn map_sizes(&self) -> Vec<(&'static str, u32)> {
        let backends = self.vips * self.backends_per_vip;
        vec![
            (map_names::VIPS, self.vips),
            (map_names::VIP_STATS, self.vips),
            (map_names::VIP_ADDRS, self.vips),
            (map_names::BACKENDS, backends),
            (map_names::BACKEND_STATS, backends),
            (map_names::SHARE_BASE, backends),
            (map_names::TABLE_RECORDS, 2 * self.vips),
            (map_names::MAGLEV, self.maglev_chunks()),
        ]
    }

    fn maglev_chunks(&self) -> u32 {
        let slots = 2 * u64::from(self.vips) * u64::from(self.table_slots);
        let chunks = slots.div_ceil(u64::from(MAGLEV_CHUNK_SLOTS));
        u32::try_from(chunks).unwrap_or(u32::MAX)
    }

    /// What the maps of this capacity take on a host with `cpus` CPUs (values as the kernel
    /// stores them; hash-map overhead not counted).
    pub fn memory(&self, cpus: u32) -> Memory {
        let size = |bytes: usize| bytes as u64;
        let vips = u64::from(self.vips);
        let backends = vips * u64::from(self.backends_per_vip);
        let chunk = u64::from(MAGLEV_CHUNK_SLOTS) * 4;
        Memory {
            tables: u64::from(self.maglev_chunks()) * chunk,
            entries: backends * size(size_of::<Backend>() + size_of::<ShareBase>())
                + vips
                    * size(
                        size_of::<VipKey>()
                            + size_of::<Vip>()
                            + size_of::<AddrKey>()
                            + 4
                            + 2 * size_of::<TableRecord>(),
                    ),
            counters: u64::from(cpus)
                * (backends * size(size_of::<BackendCounter>())
                    + vips * size(size_of::<Counter>())),
            cpus,
        }
    }

    /// [`Capacity::memory`] on this host.
    pub fn memory_here(&self) -> Memory {
        let cpus = aya::util::nr_cpus().map_or(1, std::num::NonZeroU32::get);
        self.memory(cpus)
    }

    /// The capacity of the maps pinned under `pin_path`, if a program is pinned there.
    pub fn pinned(pin_path: &Path) -> anyhow::Result<Option<Capacity>> {
        if !pin_path.join(map_names::VIPS).exists() {
            return Ok(None);
        }
        let entries = |name: &str| -> anyhow::Result<u32> {
            let path = pin_path.join(name);
            Ok(MapInfo::from_pin(&path)
                .with_context(|| format!("reading the size of the pinned {}", path.display()))?
                .max_entries())
        };
        Self::from_entries(&entries).map(Some)
    }

    /// Every way `needed` (the least capacity a config asks for, see
    /// [`crate::rollout::Desired::needed`]) exceeds this one, each naming the `[capacity]`
    /// field to raise; empty when it fits.
    pub fn shortfalls(&self, needed: &Capacity) -> Vec<String> {
        let mut short = Vec::new();
        let fields = [
            ("vips", "VIPs", needed.vips, self.vips),
            (
                "backends_per_vip",
                "backends in one VIP",
                needed.backends_per_vip,
                self.backends_per_vip,
            ),
            (
                "table_slots",
                "slots in one VIP's table",
                needed.table_slots,
                self.table_slots,
            ),
        ];
        for (field, what, need, have) in fields {
            if need > have {
                short.push(format!(
                    "{need} {what} do not fit: the running program holds {have}; set \
                     capacity.{field} = {need} or more and restart xlb (`xlb run --config \
                     FILE`) to load the program with it"
                ));
            }
        }
        short
    }

    /// The capacity the loaded maps have.
    pub fn read(maps: &(impl Maps + ?Sized)) -> anyhow::Result<Capacity> {
        let entries = |name: &str| -> anyhow::Result<u32> {
            let data = match maps.map(name)? {
                Map::HashMap(data) | Map::Array(data) | Map::PerCpuArray(data) => data,
                _ => bail!("map {name} has an unexpected type"),
            };
            Ok(data
                .info()
                .with_context(|| format!("reading the size of {name}"))?
                .max_entries())
        };
        Self::from_entries(&entries)
    }

    /// The capacity of maps whose sizes `entries` gives.
    fn from_entries(entries: &dyn Fn(&str) -> anyhow::Result<u32>) -> anyhow::Result<Capacity> {
        let vips = entries(map_names::VIPS)?.max(1);
        let backends_per_vip = entries(map_names::BACKENDS)? / vips;
        let slots = u64::from(entries(map_names::MAGLEV)?) * u64::from(MAGLEV_CHUNK_SLOTS);
        let table_slots = u32::try_from(slots / (2 * u64::from(vips))).unwrap_or(u32::MAX);
        Ok(Capacity {
            vips,
            backends_per_vip,
            table_slots,
        })
    }

    /// First slot of VIP `id`'s table copy `copy` (0 or 1).
    pub fn table_base(&self, id: u32, copy: u32) -> u32 {
        (2 * id + copy) * self.table_slots
    }

    /// The backend ids VIP `id` owns.
    pub fn backend_ids(&self, id: u32) -> std::ops::Range<u32> {
        id * self.backends_per_vip..(id + 1) * self.backends_per_vip
    }
}

impl Capacity {
    /// The least capacity `vips` fit in: their number, the most backends one has and the
    /// largest table one asks for.
    pub fn needed(vips: &[crate::rollout::DesiredVip]) -> Capacity {
        Capacity {
            vips: u32::try_from(vips.len()).unwrap_or(u32::MAX),
            backends_per_vip: vips
                .iter()
                .map(|vip| u32::try_from(vip.backends.len()).unwrap_or(u32::MAX))
                .max()
                .unwrap_or(0),
            table_slots: vips.iter().map(|vip| vip.table_size).max().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that the memory estimate counts two table copies per VIP, in whole map entries,
    /// and per-CPU counters once per CPU.
    #[test]
    fn memory_counts_both_table_copies_and_every_cpu() {
        let capacity = Capacity {
            vips: 1000,
            backends_per_vip: 100,
            table_slots: 65_537,
        };
        let one = capacity.memory(1);
        assert_eq!(one.tables, (2 * 1000 * 65_537u64).div_ceil(16) * 64);
        assert_eq!(
            one.counters,
            100_000 * 24 + 1000 * size_of::<Counter>() as u64
        );
        let four = capacity.memory(4);
        assert_eq!(four.counters, 4 * one.counters);
        assert_eq!(four.tables, one.tables);
        assert!(
            one.to_string().starts_with("507.0 MiB of kernel memory"),
            "{one}"
        );
    }

    /// Test that a shortfall names the field to raise and the value it needs, and that a
    /// capacity that fits has none.
    #[test]
    fn shortfalls_name_the_field_and_the_value() {
        let live = Capacity::default();
        let needed = Capacity {
            vips: 65,
            backends_per_vip: 10,
            table_slots: 4099,
        };
        let short = live.shortfalls(&needed);
        assert_eq!(short.len(), 1, "{short:?}");
        assert!(short[0].contains("capacity.vips = 65"), "{}", short[0]);
        assert!(short[0].contains("holds 64"), "{}", short[0]);
        assert!(live.shortfalls(&Capacity::default()).is_empty());
    }
}
