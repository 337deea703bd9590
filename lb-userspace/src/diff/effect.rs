//! Where a VIP's new flows really go: the physical servers behind its Maglev table (or behind a
//! sample of real clients pushed through it) and each one's share.
//!
//! Every outage guard judges a VIP through this one model — `validate` and `plan`, `apply`, the
//! backend verbs, `audit`, `stats` and the daemon's alerts — rather than through the weights a
//! config writes: a weight says what was meant, the table says what the kernel will do.
//!
//! What counts as "the same server" (see [`same_server`]):
//! - any mode: the same address, however it is written (an IPv4-mapped IPv6 address
//!   `::ffff:a.b.c.d` is the IPv4 address `a.b.c.d`);
//! - `dsr`: also the same destination MAC, since the rewritten frame goes to whichever machine
//!   owns that MAC, whatever address the entry names;
//! - `ipip`: the tunnel endpoint is the entry's address; its MAC is the next hop's, which many
//!   servers share, so a shared MAC means nothing there.

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher as _, Hash, Hasher},
    net::IpAddr,
    sync::{Arc, Mutex},
};

use lb_common::{Backend, Vip, VipKey, address::to_kernel, service::VIP_FORWARD_IPIP};
use serde::Serialize;

use crate::{
    capacity::Capacity,
    config::Forwarding,
    live::Snapshot,
    maglev::{self, MaglevError},
    maps::Maps,
    rollout::{AppliedVip, Desired, DesiredVip, changed_tables, live_address},
    steering,
};

/// One backend entry of a VIP, as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub address: IpAddr,
    /// The frame's destination MAC: the server's own (`dsr`) or the next hop's (`ipip`); `None`
    /// where a config does not give one (it is refused for that, XLB012).
    pub mac: Option<[u8; 6]>,
}

impl Entry {
    /// A backend entry known by its address and destination MAC.
    pub fn new(address: IpAddr, mac: [u8; 6]) -> Entry {
        Entry {
            address,
            mac: Some(mac),
        }
    }
}

/// Why two entries are one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SameServer {
    /// The same address (possibly written two ways).
    Address,
    /// The same destination MAC on a `dsr` VIP.
    Mac,
}

/// Whether entries `a` and `b` of a VIP that forwards by `forwarding` reach the same machine.
pub fn same_server(a: &Entry, b: &Entry, forwarding: Forwarding) -> Option<SameServer> {
    if a.address.to_canonical() == b.address.to_canonical() {
        Some(SameServer::Address)
    } else if forwarding == Forwarding::Dsr && a.mac.is_some() && a.mac == b.mac {
        Some(SameServer::Mac)
    } else {
        None
    }
}

/// For each entry, the index of the first entry of its server (itself if it is the first):
/// "same server" is closed transitively (A shares B's MAC, B is C's address written otherwise).
pub fn servers(entries: &[Entry], forwarding: Forwarding) -> Vec<usize> {
    let mut server: Vec<usize> = (0..entries.len()).collect();
    for j in 0..entries.len() {
        for i in 0..j {
            if same_server(&entries[i], &entries[j], forwarding).is_some() {
                let (keep, merge) = (server[i].min(server[j]), server[i].max(server[j]));
                for s in &mut server {
                    if *s == merge {
                        *s = keep;
                    }
                }
            }
        }
    }
    server
}

/// One physical server's part of a VIP's new flows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Server {
    /// The address of its first entry.
    pub address: IpAddr,
    /// The VIP's entries that reach it, in order.
    pub entries: Vec<usize>,
    /// Slots of the table (or flows of a sample) that send to it.
    pub count: u64,
    /// `count` over the VIP's total; 0 when nothing was counted.
    pub share: f64,
}

/// Where a VIP's new flows go, by physical server.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Effect {
    /// How many backend entries the VIP names (in any state, with or without weight).
    pub named: usize,
    /// Every server the entries reach, in the order of their first entries.
    pub servers: Vec<Server>,
    /// Slots (or sampled flows) counted per entry.
    pub entry_counts: Vec<u64>,
    /// Slots (or sampled flows) that send somewhere.
    pub total: u64,
}

impl Effect {
    /// The effect of sending each of `owners` (a table's slots, or a sample's flows, each the
    /// index of the entry it goes to, or `None` where nothing takes it) to `entries`.
    pub fn of(
        entries: &[Entry],
        forwarding: Forwarding,
        owners: impl IntoIterator<Item = Option<usize>>,
    ) -> Effect {
        let mut entry_counts = vec![0u64; entries.len()];
        for owner in owners.into_iter().flatten() {
            if let Some(count) = entry_counts.get_mut(owner) {
                *count += 1;
            }
        }
        Effect::of_counts(entries, forwarding, entry_counts)
    }

    /// The effect of `entry_counts[i]` slots or flows going to each of `entries`.
    pub fn of_counts(entries: &[Entry], forwarding: Forwarding, entry_counts: Vec<u64>) -> Effect {
        let total: u64 = entry_counts.iter().sum();
        let server_of = servers(entries, forwarding);
        let mut servers: Vec<Server> = Vec::new();
        // Position in `servers` of the server whose first entry is i.
        let mut position = vec![0; entries.len()];
        for (i, entry) in entries.iter().enumerate() {
            let first = server_of[i];
            if first == i {
                position[i] = servers.len();
                servers.push(Server {
                    address: entry.address,
                    entries: Vec::new(),
                    count: 0,
                    share: 0.0,
                });
            }
            let server = &mut servers[position[first]];
            server.entries.push(i);
            server.count += entry_counts[i];
        }
        for server in &mut servers {
            server.share = share(server.count, total);
        }
        Effect {
            named: entries.len(),
            servers,
            entry_counts,
            total,
        }
    }

    /// The server with the largest share (the first of equals), if anything was counted.
    pub fn busiest(&self) -> Option<&Server> {
        if self.total == 0 {
            return None;
        }
        self.servers
            .iter()
            .reduce(|best, s| if s.count > best.count { s } else { best })
    }

    /// The outage: one server takes every new flow although the VIP names more than one
    /// backend.
    pub fn all_on_one(&self) -> Option<&Server> {
        self.busiest()
            .filter(|server| self.named >= 2 && server.count == self.total)
    }

    /// A server that takes more than `max_share` of the new flows although the VIP names more
    /// than one backend.
    pub fn over(&self, max_share: f64) -> Option<&Server> {
        self.busiest()
            .filter(|server| self.named >= 2 && server.share > max_share)
    }

    /// Servers that take some new flows.
    pub fn serving(&self) -> usize {
        self.servers.iter().filter(|s| s.count > 0).count()
    }
}

/// How a live VIP forwards, from its flags.
pub fn forwarding(vip: &Vip) -> Forwarding {
    forwarding_of(vip.flags)
}

/// How a VIP with these `VIP_*` flags forwards.
fn forwarding_of(flags: u32) -> Forwarding {
    if flags & VIP_FORWARD_IPIP != 0 {
        Forwarding::Ipip
    } else {
        Forwarding::Dsr
    }
}

/// A live backend entry as the model sees it.
pub fn live_entry(backend: &Backend) -> Entry {
    Entry::new(live_address(backend), backend.mac)
}

/// The backend entries live VIP `vip` names (ids it owns that hold a backend, in id order).
pub fn live_entries(snapshot: &Snapshot, capacity: &Capacity, vip: &Vip) -> Vec<(u32, Backend)> {
    live_entries_of(snapshot, capacity, vip)
        .map(|(id, backend)| (id, *backend))
        .collect()
}

/// [`live_entries`], read in place.
pub fn live_entries_of<'a>(
    snapshot: &'a Snapshot,
    capacity: &Capacity,
    vip: &Vip,
) -> impl Iterator<Item = (u32, &'a Backend)> + 'a {
    capacity
        .backend_ids(vip.id)
        .filter_map(|id| Some((id, snapshot.backends.get(id as usize)?)))
        .filter(|(_, backend)| **backend != Backend::default())
}

/// The effect of a table of backend ids over `backends` (id and entry); a slot holding an id
/// not among them (no backend) sends nowhere.
pub fn of_ids(backends: &[(u32, Backend)], forwarding: Forwarding, table: &[u32]) -> Effect {
    let entries: Vec<Entry> = backends.iter().map(|(_, b)| live_entry(b)).collect();
    // One VIP's ids are a short run, so slots are counted per id in an array over their span:
    // a hash lookup per slot (65,537 of them) cost more than building the table.
    let low = backends.iter().map(|(id, _)| *id).min().unwrap_or(0);
    let high = backends.iter().map(|(id, _)| *id).max().unwrap_or(0);
    if high - low < DENSE_SPAN {
        // Slots per id over the span, then per entry (an id named twice counts for its last
        // entry, as a lookup by id would find it).
        let mut per_id = vec![0u64; (high - low + 1) as usize];
        for id in table {
            if let Some(count) = per_id.get_mut(id.wrapping_sub(low) as usize) {
                *count += 1;
            }
        }
        let mut entry_counts = vec![0; backends.len()];
        let mut last = vec![None; per_id.len()];
        for (i, (id, _)) in backends.iter().enumerate() {
            last[(id - low) as usize] = Some(i);
        }
        for (&count, entry) in per_id.iter().zip(&last) {
            if let Some(i) = entry {
                entry_counts[*i] = count;
            }
        }
        Effect::of_counts(&entries, forwarding, entry_counts)
    } else {
        let index: HashMap<u32, usize> = backends
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i))
            .collect();
        Effect::of(
            &entries,
            forwarding,
            table.iter().map(|id| index.get(id).copied()),
        )
    }
}

/// The widest span of ids [`of_ids`] indexes densely (a VIP owns far fewer).
const DENSE_SPAN: u32 = 1 << 16;

/// Where live VIP `vip` sends its new flows now: its active table over the backends it names.
pub fn live(
    maps: &(impl Maps + ?Sized),
    snapshot: &Snapshot,
    capacity: &Capacity,
    vip: &Vip,
) -> anyhow::Result<(Vec<(u32, Backend)>, Effect)> {
    let backends = live_entries(snapshot, capacity, vip);
    let table = snapshot.active_table(maps, vip)?;
    let effect = of_ids(&backends, forwarding(vip), &table);
    Ok((backends, effect))
}

/// What a change to `desired` would leave too concentrated: for each VIP the change touches
/// (or only `vip`), the tables the change builds over the live state (so drains, disables and
/// health count), and a server above `max_share` of the new flows of a VIP that names several
/// backends, unless the VIP is no better off today. A VIP the change leaves as it is is not
/// judged: its table stays (the audit and the `dominant` alert watch it). Each entry is the VIP
/// and that server's part of it.
pub fn concentrated(
    maps: &(impl Maps + ?Sized),
    snapshot: &Snapshot,
    capacity: &Capacity,
    desired: &Desired,
    max_share: f64,
    vip: Option<&VipKey>,
) -> anyhow::Result<Vec<(VipKey, Server)>> {
    let planned = changed_tables(snapshot, capacity, desired)?;
    concentrated_in(maps, snapshot, capacity, desired, &planned, max_share, vip)
}

/// [`concentrated`] for tables already planned (`planned`, in the order of `desired.vips`),
/// as [`crate::rollout::apply_guarded`] hands them over before writing them.
pub fn concentrated_in(
    maps: &(impl Maps + ?Sized),
    snapshot: &Snapshot,
    capacity: &Capacity,
    desired: &Desired,
    planned: &[AppliedVip],
    max_share: f64,
    vip: Option<&VipKey>,
) -> anyhow::Result<Vec<(VipKey, Server)>> {
    let judged: Vec<(&DesiredVip, &AppliedVip)> = desired
        .vips
        .iter()
        .zip(planned)
        // A VIP the change leaves as it is keeps its table: not judged.
        .filter(|(want, planned)| planned.rebuilt && vip.is_none_or(|only| *only == want.key))
        .collect();
    // The live effects of the VIPs that exist, counted on their live tables in place through
    // one mapping of the slot map (a mapping costs all of the map's pages).
    let live_vips: Vec<&Vip> = judged
        .iter()
        .filter_map(|(want, _)| snapshot.vip(&want.key))
        .collect();
    let ranges: Vec<(u32, u32)> = live_vips.iter().map(|vip| vip.live_table()).collect();
    let mut live_effects = steering::read_tables_with(maps, &ranges, |i, table| {
        let vip = live_vips[i];
        of_ids(
            &live_entries(snapshot, capacity, vip),
            forwarding(vip),
            table,
        )
    })?
    .into_iter();
    let mut found = Vec::new();
    for (want, planned) in judged {
        let backends: Vec<(u32, Backend)> = planned
            .backend_ids
            .iter()
            .zip(&want.backends)
            .map(|(id, b)| {
                let (addr, family) = to_kernel(b.address);
                (
                    *id,
                    Backend {
                        addr,
                        family,
                        mac: b.mac,
                        ..Backend::default()
                    },
                )
            })
            .collect();
        let after = of_ids(&backends, forwarding_of(want.flags), &planned.table);
        let before = snapshot.vip(&want.key).and_then(|_| live_effects.next());
        if let Some(server) = worse_concentration(&after, before.as_ref(), max_share) {
            found.push((want.key, server.clone()));
        }
    }
    Ok(found)
}

/// The server of `after` above `max_share` of a VIP that names several backends, unless the VIP
/// is better off with it than `before` (the live effect; `None` for a new VIP): one rule for
/// apply, plan and the backend verbs.
pub fn worse_concentration<'a>(
    after: &'a Effect,
    before: Option<&Effect>,
    max_share: f64,
) -> Option<&'a Server> {
    let server = after.over(max_share)?;
    let before = before.and_then(Effect::busiest).map(|b| b.share);
    before
        .is_none_or(|share| share <= server.share)
        .then_some(server)
}

/// The slots of each of `backends` (address, weight) in the Maglev table of `size` slots an
/// apply builds, counted from the builder's table (a table of owners would cost 1 MiB more per
/// 65,537 slots); all 0 when no backend weighs more than 0. Backends of weight 0 get no slot;
/// others may get none too when the table is too small for their weight (Maglev apportions
/// slots by weight).
pub fn slot_counts(backends: &[(IpAddr, u32)], size: u32) -> Result<Vec<u64>, MaglevError> {
    let mut counts = vec![0; backends.len()];
    if let Some(built) = weighted_table(backends, size)? {
        for &member in &built.table {
            counts[built.members[member as usize]] += 1;
        }
    }
    Ok(counts)
}

/// The slot counts ([`slot_counts`]) of tables already counted, by their exact inputs (size,
/// and each entry's address and weight in the entries' order; compared whole, so a count found
/// here is the one a build would give): a check that meets the same inputs again (the daemon's
/// next reload, a live table its record vouches for) builds only the tables not found here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownCounts(HashMap<TableInputs, Vec<u64>, foldhash::fast::RandomState>);

/// What decides a table's slot counts: its size, and each entry's address and weight; shared,
/// and hashed once (the daemon's check keeps each VIP's inputs and files 1,000 of them again
/// at every reload).
#[derive(Clone, Debug)]
pub struct TableInputs {
    hash: u64,
    inputs: Arc<(u32, Vec<(IpAddr, u32)>)>,
}

impl TableInputs {
    pub fn new(backends: Vec<(IpAddr, u32)>, size: u32) -> TableInputs {
        let inputs = (size, backends);
        TableInputs {
            hash: foldhash::quality::FixedState::default().hash_one(&inputs),
            inputs: Arc::new(inputs),
        }
    }

    pub fn size(&self) -> u32 {
        self.inputs.0
    }

    /// Each entry's address and weight.
    pub fn backends(&self) -> &[(IpAddr, u32)] {
        &self.inputs.1
    }
}

impl PartialEq for TableInputs {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && (Arc::ptr_eq(&self.inputs, &other.inputs) || self.inputs == other.inputs)
    }
}

impl Eq for TableInputs {}

impl Hash for TableInputs {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl KnownCounts {
    /// Records that the table of `size` slots over `backends` gives each one `counts` slots.
    pub fn insert(&mut self, backends: Vec<(IpAddr, u32)>, size: u32, counts: Vec<u64>) {
        self.insert_inputs(TableInputs::new(backends, size), counts);
    }

    /// Records that the table of `inputs` gives each entry `counts` slots.
    pub fn insert_inputs(&mut self, inputs: TableInputs, counts: Vec<u64>) {
        self.0.insert(inputs, counts);
    }

    /// [`slot_counts`] of the table of `inputs`: found here, or built.
    pub fn slot_counts(&self, inputs: &TableInputs) -> Result<Vec<u64>, MaglevError> {
        match self.0.get(inputs) {
            Some(counts) => Ok(counts.clone()),
            None => slot_counts(inputs.backends(), inputs.size()),
        }
    }

    /// Room for `tables` tables.
    pub fn with_capacity(tables: usize) -> KnownCounts {
        KnownCounts(HashMap::with_capacity_and_hasher(
            tables,
            Default::default(),
        ))
    }

    /// How many tables are known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A Maglev table as the builder returns it, over the backends that weigh more than 0.
pub struct WeightedTable {
    /// Each slot's owner, an index into `members`.
    pub table: Vec<u32>,
    /// The positions in the caller's list of the backends that weigh more than 0.
    pub members: Vec<usize>,
}

/// [`table`] as the builder returns it; `None` when no backend weighs more than 0. Saves an
/// apply a copy of every table. A table built lately is taken again: an apply's check builds
/// the table of the VIP it changes to judge it, and its plan then writes that same table.
pub fn weighted_table(
    backends: &[(IpAddr, u32)],
    size: u32,
) -> Result<Option<Arc<WeightedTable>>, MaglevError> {
    /// The tables built last, newest last, by their inputs.
    static RECENT: Mutex<VecDeque<(TableInputs, Arc<WeightedTable>)>> = Mutex::new(VecDeque::new());
    /// Slots the tables kept may hold in all (4 MiB): enough for an apply's check and plan of
    /// a few changed VIPs of 65,537 slots; a table larger than that is not kept.
    const RECENT_SLOTS: usize = 1 << 20;
    let weighted: Vec<usize> = (0..backends.len()).filter(|&i| backends[i].1 > 0).collect();
    if weighted.is_empty() {
        return Ok(None);
    }
    let inputs = TableInputs::new(backends.to_vec(), size);
    let recent = |recent: &VecDeque<(TableInputs, Arc<WeightedTable>)>| {
        (recent.iter())
            .find(|(built, _)| *built == inputs)
            .map(|(_, table)| Arc::clone(table))
    };
    if let Some(table) = RECENT.lock().ok().and_then(|held| recent(&held)) {
        return Ok(Some(table));
    }
    let keys: Vec<[u8; 16]> = weighted
        .iter()
        .map(|&i| to_kernel(backends[i].0).0)
        .collect();
    let members: Vec<maglev::Backend> = keys
        .iter()
        .zip(&weighted)
        .map(|(key, &i)| maglev::Backend {
            key,
            weight: backends[i].1,
        })
        .collect();
    let table = Arc::new(WeightedTable {
        table: maglev::build(&members, size)?,
        members: weighted,
    });
    if let Ok(mut held) = RECENT.lock()
        && table.table.len() <= RECENT_SLOTS
    {
        held.push_back((inputs, Arc::clone(&table)));
        while held.iter().map(|(_, kept)| kept.table.len()).sum::<usize>() > RECENT_SLOTS {
            held.pop_front();
        }
    }
    Ok(Some(table))
}

/// `part` of `whole` (0 when `whole` is 0).
pub fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// A share as a percentage with at least `decimals` decimals, and more where fewer would round
/// a share that is not whole to 100% or a share that is not nothing to 0%: 0.998 is never
/// "100%", which would hide the one flow in 500 that still goes elsewhere.
pub fn percent(share: f64, decimals: usize) -> String {
    if share >= 1.0 || share <= 0.0 || share.is_nan() {
        return format!("{:.*}%", decimals, share.clamp(0.0, 1.0) * 100.0);
    }
    let mut places = decimals;
    loop {
        let text = format!("{:.*}", places, share * 100.0);
        let shown: f64 = text.parse().unwrap_or(0.0);
        if (shown < 100.0 && shown > 0.0) || places >= 6 {
            return format!("{text}%");
        }
        places += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(address: &str, mac: u8) -> Entry {
        Entry {
            address: address.parse().unwrap(),
            mac: Some([2, 0, 0, 0, 0, mac]),
        }
    }

    /// Test that a table built lately is taken again for the same inputs (the same table, not
    /// built twice) and that other inputs (a weight, the size, the order) build their own,
    /// each the builder's table.
    #[test]
    fn a_table_built_lately_is_taken_again_for_the_same_inputs() {
        let address = |last: u8| IpAddr::from([198, 18, 7, last]);
        let backends = vec![(address(1), 1), (address(2), 2), (address(3), 0)];
        let first = weighted_table(&backends, 101).unwrap().unwrap();
        let again = weighted_table(&backends, 101).unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let built = |backends: &[(IpAddr, u32)], size| {
            let keys: Vec<[u8; 16]> = (backends.iter().filter(|b| b.1 > 0))
                .map(|b| to_kernel(b.0).0)
                .collect();
            let members: Vec<maglev::Backend> =
                (keys.iter().zip(backends.iter().filter(|b| b.1 > 0)))
                    .map(|(key, b)| maglev::Backend { key, weight: b.1 })
                    .collect();
            maglev::build(&members, size).unwrap()
        };
        assert_eq!(first.table, built(&backends, 101));
        assert_eq!(first.members, [0, 1]);
        let heavier = vec![(address(1), 2), (address(2), 2), (address(3), 0)];
        let reordered = vec![(address(2), 2), (address(1), 1), (address(3), 0)];
        for (other, size) in [(&heavier, 101), (&backends, 103), (&reordered, 101)] {
            let table = weighted_table(other, size).unwrap().unwrap();
            assert!(!Arc::ptr_eq(&first, &table));
            assert_eq!(table.table, built(other, size), "{other:?} in {size}");
        }
    }

    /// Test that an IPv4 address and its IPv4-mapped IPv6 form are one server in every mode,
    /// a shared MAC is one server only for dsr, and sameness is transitive.
    #[test]
    fn same_server_follows_the_forwarding_mode() {
        let v4 = entry("198.18.0.10", 1);
        let mapped = entry("::ffff:198.18.0.10", 2);
        let other_same_mac = entry("198.18.0.11", 1);
        for mode in [Forwarding::Dsr, Forwarding::Ipip] {
            assert_eq!(same_server(&v4, &mapped, mode), Some(SameServer::Address));
        }
        assert_eq!(
            same_server(&v4, &other_same_mac, Forwarding::Dsr),
            Some(SameServer::Mac)
        );
        assert_eq!(same_server(&v4, &other_same_mac, Forwarding::Ipip), None);
        // 11 shares 10's MAC, 12 is 11 written as IPv4-mapped: all three are one server.
        let chain = [v4, other_same_mac, entry("::ffff:198.18.0.11", 9)];
        assert_eq!(servers(&chain, Forwarding::Dsr), vec![0, 0, 0]);
        assert_eq!(servers(&chain, Forwarding::Ipip), vec![0, 1, 1]);
    }

    /// Test that shares are counted per server: two entries of one machine add up, and the
    /// outage is one server with everything while the VIP names two entries.
    #[test]
    fn effect_counts_per_server() {
        let entries = [entry("198.18.0.10", 1), entry("198.18.0.11", 1)];
        let owners = [Some(0), Some(1), Some(1), None];
        let dsr = Effect::of(&entries, Forwarding::Dsr, owners);
        assert_eq!(dsr.servers.len(), 1);
        assert_eq!(dsr.total, 3);
        assert_eq!(
            dsr.all_on_one().map(|s| s.address),
            Some(entries[0].address)
        );
        let ipip = Effect::of(&entries, Forwarding::Ipip, owners);
        assert_eq!(ipip.servers.len(), 2);
        assert!(ipip.all_on_one().is_none());
        assert_eq!(ipip.busiest().map(|s| s.count), Some(2));
        assert!(ipip.over(0.6).is_some() && ipip.over(0.7).is_none());
        // One entry alone is not an outage: the config says one server.
        let single = Effect::of(&entries[..1], Forwarding::Dsr, [Some(0)]);
        assert!(single.all_on_one().is_none());
    }

    /// Test that a small table can leave a weighted backend without a slot, as the apply would
    /// build it, and that weight 0 never gets one.
    #[test]
    fn slot_counts_quantise_weights() {
        let a: IpAddr = "198.18.0.10".parse().unwrap();
        let b: IpAddr = "198.18.0.11".parse().unwrap();
        let c: IpAddr = "198.18.0.12".parse().unwrap();
        assert_eq!(
            slot_counts(&[(a, 1000), (b, 1), (c, 0)], 7).unwrap(),
            [7, 0, 0]
        );
        let even = slot_counts(&[(a, 1), (b, 1), (c, 0)], 101).unwrap();
        assert!(even[0] > 0 && even[1] > 0 && even[2] == 0, "{even:?}");
        assert_eq!(even.iter().sum::<u64>(), 101);
        assert_eq!(slot_counts(&[(a, 0)], 7).unwrap(), [0]);
    }

    /// Test that percentages never round a share that is not whole to 100% or one that is not
    /// nothing to 0%.
    #[test]
    fn percent_never_rounds_to_whole_or_nothing() {
        assert_eq!(percent(0.998, 0), "99.8%");
        assert_eq!(percent(0.9996, 1), "99.96%");
        assert_eq!(percent(0.0004, 1), "0.04%");
        assert_eq!(percent(1.0, 1), "100.0%");
        assert_eq!(percent(0.0, 0), "0%");
        assert_eq!(percent(0.25, 1), "25.0%");
        assert_eq!(percent(0.97, 0), "97%");
    }
}
