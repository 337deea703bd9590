//! What rollout records beside each table it writes: a digest of what the table was built from
//! and a digest of its slots, so `audit` rebuilds only the tables whose record does not vouch
//! for them (see [`Records::vouches`]).

use std::net::IpAddr;

use anyhow::Context as _;
use lb_common::{Vip, map_names, meta::TableRecord};
use xxhash_rust::xxh3::Xxh3;

use crate::maps::Maps;

/// Changes whenever the Maglev builder's output for the same inputs does: records written by a
/// builder of another version then vouch for nothing, and those tables are rebuilt to check.
const BUILDER_VERSION: u64 = 1;

/// The digest of what decides a table: its size and its eligible (id, weight, address)
/// backends, as rollout builds it. The builder orders backends by address itself, so the
/// order they come in does not count (an audit of the live maps lists them by id).
pub fn inputs(eligible: &[(u32, u32, IpAddr)], size: u32) -> u64 {
    let mut sorted = eligible.to_vec();
    sorted.sort_unstable();
    let mut hasher = Xxh3::new();
    hasher.update(&BUILDER_VERSION.to_le_bytes());
    hasher.update(&size.to_le_bytes());
    for (id, weight, address) in sorted {
        hasher.update(&id.to_le_bytes());
        hasher.update(&weight.to_le_bytes());
        match address {
            IpAddr::V4(v4) => hasher.update(&v4.octets()),
            IpAddr::V6(v6) => hasher.update(&v6.octets()),
        }
    }
    // 0 is "no record".
    hasher.digest().max(1)
}

/// The digest of a table's slots.
pub fn slots(table: &[u32]) -> u64 {
    // SAFETY: a u32 slice is readable as its bytes (no padding, u8 has no alignment).
    let bytes =
        unsafe { std::slice::from_raw_parts(table.as_ptr().cast::<u8>(), size_of_val(table)) };
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The index of the record of `vip`'s table copy `vip.active`.
fn index(vip: &Vip) -> u32 {
    2 * vip.id + vip.active.min(1)
}

/// The records of the program behind some maps, by table copy.
pub struct Records(Vec<TableRecord>);

impl Records {
    /// Every record; none when the program has no record map (pins of an older xlb).
    pub fn read(maps: &(impl Maps + ?Sized)) -> anyhow::Result<Records> {
        if maps.map(map_names::TABLE_RECORDS).is_err() {
            return Ok(Records(Vec::new()));
        }
        Ok(Records(crate::batch::array(
            maps,
            map_names::TABLE_RECORDS,
        )?))
    }

    /// Whether `vip`'s live `table` is the one built from `inputs` (an [`inputs`] digest): the
    /// record of its live copy was written with that table from those inputs. A table edited
    /// behind xlb's back no longer matches its record.
    pub fn vouches(&self, vip: &Vip, inputs: u64, table: &[u32]) -> bool {
        self.0
            .get(index(vip) as usize)
            .is_some_and(|record| record.inputs == inputs && record.slots == slots(table))
    }
}

/// Records each of `written`: a VIP entry whose table copy `active` was just written, the
/// [`inputs`] digest the table was built from, and the table. Nothing when the program has no
/// record map.
pub fn write<'a>(
    maps: &mut (impl Maps + ?Sized),
    written: impl IntoIterator<Item = (&'a Vip, u64, &'a [u32])>,
) -> anyhow::Result<()> {
    if maps.map(map_names::TABLE_RECORDS).is_err() {
        return Ok(());
    }
    let mut records = crate::maps::array::<TableRecord>(maps, map_names::TABLE_RECORDS)?;
    for (vip, inputs, table) in written {
        let record = TableRecord {
            inputs,
            slots: slots(table),
        };
        records
            .set(index(vip), &record, 0)
            .with_context(|| format!("recording the table of VIP id {}", vip.id))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(id: u32, active: u32) -> Vip {
        Vip {
            id,
            active,
            table_size: 7,
            ..Vip::default()
        }
    }

    /// Test that the inputs digest changes with the size and each backend's id, weight and
    /// address, and not with the order the backends come in.
    #[test]
    fn inputs_name_what_decides_the_table() {
        let a: IpAddr = "198.18.0.1".parse().expect("address");
        let b: IpAddr = "2001:db8::1".parse().expect("address");
        let base = inputs(&[(0, 1, a), (1, 2, b)], 7);
        assert_eq!(base, inputs(&[(1, 2, b), (0, 1, a)], 7));
        for other in [
            inputs(&[(0, 1, a), (1, 2, b)], 11),
            inputs(&[(0, 1, a), (2, 2, b)], 7),
            inputs(&[(0, 1, a), (1, 3, b)], 7),
            inputs(
                &[(0, 1, a), (1, 2, "2001:db8::2".parse().expect("address"))],
                7,
            ),
            inputs(&[(0, 1, a)], 7),
        ] {
            assert_ne!(base, other);
        }
        assert_ne!(inputs(&[], 7), 0);
    }

    /// Test that a record vouches for the table of its VIP's live copy as written from the
    /// same inputs, and not for an edited table, other inputs, the other copy or no record.
    #[test]
    fn records_vouch_only_for_the_table_written() {
        let table = [0, 1, 0, 1, 0, 1, 1];
        let live = vip(1, 1);
        let mut records = Records(vec![TableRecord::default(); 4]);
        assert!(!records.vouches(&live, 5, &table));
        records.0[3] = TableRecord {
            inputs: 5,
            slots: slots(&table),
        };
        assert!(records.vouches(&live, 5, &table));
        assert!(!records.vouches(&live, 6, &table));
        let mut edited = table;
        edited[2] = 1;
        assert!(!records.vouches(&live, 5, &edited));
        assert!(!records.vouches(&vip(1, 0), 5, &table));
        assert!(!Records(Vec::new()).vouches(&live, 5, &table));
    }
}
