//! The alarms' input each tick without reading every table: a VIP's expected shares come from
//! its live table, which rollout rewrites exactly when the VIP's entry or its backends' entries
//! change (an apply that leaves them as they are keeps the table), so each table is counted
//! once per change of those entries, not once a second. A table edited behind the daemon's
//! back (bpftool) is the scheduled audit's to find; its runs also drop what is kept here
//! ([`Shares::forget`]), so the alarms judge against the live table again from then on.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use anyhow::Context as _;
use lb_common::{
    Backend, BackendCounter, Event, Verdict, Vip, VipKey, map_names, service::VIP_FORWARD_IPIP,
};

use crate::{
    batch,
    capacity::Capacity,
    config::Forwarding,
    counters::Totals,
    diff::effect,
    flood,
    live::{BackendState, Snapshot},
    rollout::{describe_vip, live_address},
    skew::{self, BackendSample, VipSample},
    status, steering,
};

/// What one VIP's table was counted under, and what it gives each backend.
struct Counted {
    vip: Vip,
    /// The VIP's backends (id, entry), as [`status::live_backends`] lists them.
    backends: Vec<(u32, Backend)>,
    /// How alerts name the VIP.
    label: String,
    /// Per backend: its slots over the table size.
    expected: Vec<f64>,
    /// Per backend: the server it reaches.
    servers: Vec<IpAddr>,
}

/// Each live VIP's counted table, by VIP.
#[derive(Default)]
pub struct Shares {
    counted: HashMap<VipKey, Counted>,
    /// The VIP and backend entries last read, reused while the live generation stays (every
    /// change through xlb moves it): 100,000 backend entries are not copied out each second.
    snapshot: Option<Snapshot>,
    /// Each backend's new flows (by id), with the packets transmitted in all when they were
    /// read: every packet steered to a backend is one of those, so while that total stays,
    /// no backend counter moved and the whole per-CPU map is not read again.
    new_flows: Option<(u64, Vec<u64>)>,
}

/// The samples the skew and flood detectors take from one reading.
pub struct Reading {
    pub skew: Vec<VipSample>,
    pub flood: flood::Sample,
}

impl Shares {
    /// Reads the entries and counts every table again at the next reading.
    pub fn forget(&mut self) {
        self.counted.clear();
        self.snapshot = None;
    }

    /// The live VIP and backend entries: those read last if the live generation is still
    /// theirs. A change behind xlb's back without a new generation is seen after [`forget`].
    ///
    /// [`forget`]: Shares::forget
    pub fn snapshot(
        &mut self,
        maps: &mut (impl crate::maps::Maps + ?Sized),
    ) -> anyhow::Result<&Snapshot> {
        let snapshot = Snapshot::read_unless_kept(maps, self.snapshot.take())?;
        Ok(self.snapshot.insert(snapshot))
    }

    /// The counters of every live VIP with the shares of its live table (read only
    /// for VIPs whose entries changed since it was counted); `healthy` judges each backend of
    /// a VIP by its address and state.
    pub fn read(
        &mut self,
        maps: &mut (impl crate::maps::Maps + ?Sized),
        capacity: &Capacity,
        healthy: impl Fn(&VipKey, IpAddr, BackendState) -> bool,
    ) -> anyhow::Result<Reading> {
        self.snapshot(maps)?;
        let snapshot = self.snapshot.take().context("the snapshot just read")?;
        let reading = self.read_with(maps, &snapshot, capacity, healthy);
        self.snapshot = Some(snapshot);
        reading
    }

    fn read_with(
        &mut self,
        maps: &mut (impl crate::maps::Maps + ?Sized),
        snapshot: &Snapshot,
        capacity: &Capacity,
        healthy: impl Fn(&VipKey, IpAddr, BackendState) -> bool,
    ) -> anyhow::Result<Reading> {
        self.count_changed(maps, snapshot, capacity)?;
        let totals = Totals::read(maps)?;
        let evicted_proven = totals.event(Event::FlowEvictedProven).packets;
        self.read_new_flows(maps, totals.verdict(Verdict::Tx).packets)?;
        let new_flows: &[u64] = self.new_flows.as_ref().map_or(&[], |(_, flows)| flows);
        let mut reading = Reading {
            skew: Vec::with_capacity(snapshot.vips.len()),
            flood: flood::Sample {
                new_flows: BTreeMap::new(),
                evicted_proven,
            },
        };
        for (key, _) in &snapshot.vips {
            let counted = &self.counted[key];
            let backends: Vec<BackendSample> = counted
                .backends
                .iter()
                .zip(&counted.expected)
                .zip(&counted.servers)
                .map(|(((id, backend), &expected_share), &server)| {
                    let address = live_address(backend);
                    BackendSample {
                        backend: address,
                        new_flows_total: new_flows.get(*id as usize).copied().unwrap_or(0),
                        expected_share,
                        healthy: healthy(key, address, BackendState::of(backend)),
                        server,
                    }
                })
                .collect();
            reading.flood.new_flows.insert(
                counted.label.clone(),
                backends
                    .iter()
                    .map(|b| (b.backend, b.new_flows_total))
                    .collect(),
            );
            reading.skew.push(VipSample {
                vip: counted.label.clone(),
                backends,
            });
        }
        Ok(reading)
    }

    /// Each backend's new-flow counter, summed over CPUs, into `new_flows`; read again only when `transmitted`
    /// (the packets the program transmitted in all) moved since the last read.
    fn read_new_flows(
        &mut self,
        maps: &(impl crate::maps::Maps + ?Sized),
        transmitted: u64,
    ) -> anyhow::Result<()> {
        let kept = self.new_flows.take().filter(|(at, _)| *at == transmitted);
        let new_flows = match kept {
            Some(kept) => kept,
            None => {
                let sums = batch::per_cpu_sums(
                    maps,
                    map_names::BACKEND_STATS,
                    |sum, c: &BackendCounter| sum.new_flows += c.new_flows,
                )
                .context("reading the backend counters")?;
                (transmitted, sums.iter().map(|c| c.new_flows).collect())
            }
        };
        self.new_flows = Some(new_flows);
        Ok(())
    }

    /// Counts the live tables of the VIPs that are new or whose entries changed, and drops the
    /// VIPs no longer live.
    fn count_changed(
        &mut self,
        maps: &(impl crate::maps::Maps + ?Sized),
        snapshot: &Snapshot,
        capacity: &Capacity,
    ) -> anyhow::Result<()> {
        let live = |vip: &Vip| {
            status::live_backends(snapshot, capacity, vip.id).map(|(id, backend)| (id, *backend))
        };
        let changed: Vec<&(VipKey, Vip)> = snapshot
            .vips
            .iter()
            .filter(|(key, vip)| {
                self.counted.get(key).is_none_or(|counted| {
                    counted.vip != *vip || !counted.backends.iter().copied().eq(live(vip))
                })
            })
            .collect();
        let ranges: Vec<(u32, u32)> = changed.iter().map(|(_, vip)| vip.live_table()).collect();
        // Each backend's slots, in one pass over the table.
        let slots = steering::read_tables_with(maps, &ranges, |i, table| {
            let ids = capacity.backend_ids(changed[i].1.id);
            let mut slots = vec![0u64; ids.len()];
            for id in table {
                if ids.contains(id) {
                    slots[(id - ids.start) as usize] += 1;
                }
            }
            slots
        })
        .context("reading the live tables")?;
        for ((key, vip), slots) in changed.into_iter().zip(slots) {
            let backends: Vec<(u32, Backend)> = live(vip).collect();
            let ids = capacity.backend_ids(vip.id);
            let expected = backends
                .iter()
                .map(|(id, _)| {
                    let count = slots[(id - ids.start) as usize];
                    effect::share(count, u64::from(vip.table_size))
                })
                .collect();
            let forwarding = if vip.flags & VIP_FORWARD_IPIP != 0 {
                Forwarding::Ipip
            } else {
                Forwarding::Dsr
            };
            let servers = skew::servers(
                backends
                    .iter()
                    .map(|(_, backend)| (live_address(backend), backend.mac)),
                forwarding,
            );
            self.counted.insert(
                *key,
                Counted {
                    vip: *vip,
                    backends,
                    label: describe_vip(key),
                    expected,
                    servers,
                },
            );
        }
        self.counted
            .retain(|key, _| snapshot.vips.binary_search_by_key(key, |(k, _)| *k).is_ok());
        Ok(())
    }
}
