//! How many VIPs, backends per VIP and table slots per VIP a loaded program holds. The maps are
//! sized from this at load time; the control plane reads it back from the maps, so every
//! command agrees with the program that is running.

use anyhow::{Context as _, bail};
use aya::maps::Map;
use lb_common::{map_names, service::MAGLEV_CHUNK_SLOTS};

use crate::maps::Maps;

/// VIP `i` owns backend ids `i * backends_per_vip ..` and the two table copies starting at
/// slots `2 * i * table_slots` and `(2 * i + 1) * table_slots`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

impl Capacity {
    /// Map sizes to load the program with (see [`crate::object::load_sized`]).
    pub fn map_sizes(&self) -> Vec<(&'static str, u32)> {
        let slots = 2 * u64::from(self.vips) * u64::from(self.table_slots);
        let chunks = slots.div_ceil(u64::from(MAGLEV_CHUNK_SLOTS));
        let backends = self.vips * self.backends_per_vip;
        vec![
            (map_names::VIPS, self.vips),
            (map_names::VIP_STATS, self.vips),
            (map_names::BACKENDS, backends),
            (map_names::BACKEND_STATS, backends),
            (map_names::SHARE_BASE, backends),
            (map_names::MAGLEV, u32::try_from(chunks).unwrap_or(u32::MAX)),
        ]
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
