//! The alarms' input each tick without reading every table: a VIP's expected shares come from
//! its live table, which rollout rewrites exactly when the VIP's entry or its backends' entries
//! change (an apply that leaves them as they are keeps the table), so each table is counted
//! once per change of those entries, not once a second. A table edited behind the daemon's
//! back (bpftool) is the scheduled audit's to find; its runs also drop what is kept here
//! ([`Shares::forget`]), so the alarms judge against the live table again from then on.

use std::{collections::HashMap, net::IpAddr};

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

impl Counted {
    /// The VIP's sample with its counters at 0 and every backend healthy, until read.
    fn sample(&self) -> VipSample {
        let backends = self.backends.iter().zip(&self.expected).zip(&self.servers);
        VipSample {
            vip: self.label.clone(),
            backends: backends
                .map(|(((_, backend), &expected_share), &server)| BackendSample {
                    backend: live_address(backend),
                    new_flows_total: 0,
                    expected_share,
                    healthy: true,
                    server,
                })
                .collect(),
        }
    }
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
    /// The skew detector's input, a sample per live VIP in the snapshot's order, updated in
    /// place: its counters when they were read again, its health when that moved.
    samples: Vec<VipSample>,
    /// The health epoch (see [`Shares::read`]) the samples' health was judged in.
    judged_in: Option<u64>,
    /// The snapshot was read since the samples were made from it.
    unsampled: bool,
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
        let kept = self.snapshot.take();
        let kept_generation = kept.as_ref().map(|kept| kept.meta.generation);
        let snapshot = Snapshot::read_unless_kept(maps, kept)?;
        // Read afresh: the samples are made again from it.
        self.unsampled |= kept_generation != Some(snapshot.meta.generation);
        Ok(self.snapshot.insert(snapshot))
    }

    /// Brings the samples of every live VIP ([`Shares::samples`]) up to date, with the shares
    /// of its live table (counted again only for VIPs whose entries changed), and returns the
    /// flow table's `flow_evicted_proven` counter. `healthy` judges each backend of a VIP by its
    /// address and state; it is asked again only when the entries were read again or
    /// `health_epoch` moved (the caller moves it whenever its answers may have changed).
    pub fn read(
        &mut self,
        maps: &mut (impl crate::maps::Maps + ?Sized),
        capacity: &Capacity,
        health_epoch: u64,
        healthy: impl Fn(&VipKey, IpAddr, BackendState) -> bool,
    ) -> anyhow::Result<u64> {
        self.snapshot(maps)?;
        let snapshot = self.snapshot.take().context("the snapshot just read")?;
        let read = self.read_with(maps, &snapshot, capacity, health_epoch, healthy);
        self.snapshot = Some(snapshot);
        read
    }

    /// The samples as last read.
    pub fn samples(&self) -> &[VipSample] {
        &self.samples
    }

    fn read_with(
        &mut self,
        maps: &mut (impl crate::maps::Maps + ?Sized),
        snapshot: &Snapshot,
        capacity: &Capacity,
        health_epoch: u64,
        healthy: impl Fn(&VipKey, IpAddr, BackendState) -> bool,
    ) -> anyhow::Result<u64> {
        let reread = std::mem::take(&mut self.unsampled);
        if reread {
            self.count_changed(maps, snapshot, capacity)
                .inspect_err(|_| self.unsampled = true)?;
            self.samples = snapshot
                .vips
                .iter()
                .map(|(key, _)| self.counted[key].sample())
                .collect();
            self.judged_in = None;
        }
        let totals = Totals::read(maps)?;
        let moved = self.read_new_flows(maps, totals.verdict(Verdict::Tx).packets)?;
        let new_flows: &[u64] = self.new_flows.as_ref().map_or(&[], |(_, flows)| flows);
        let judge = self.judged_in != Some(health_epoch);
        if reread || moved || judge {
            for ((key, _), sample) in snapshot.vips.iter().zip(&mut self.samples) {
                let counted = &self.counted[key];
                for ((id, backend), b) in counted.backends.iter().zip(&mut sample.backends) {
                    b.new_flows_total = new_flows.get(*id as usize).copied().unwrap_or(0);
                    if judge {
                        b.healthy = healthy(key, b.backend, BackendState::of(backend));
                    }
                }
            }
        }
        self.judged_in = Some(health_epoch);
        Ok(totals.event(Event::FlowEvictedProven).packets)
    }

    /// Each backend's new-flow counter, summed over CPUs, into `new_flows`; read again only
    /// when `transmitted` (the packets the program transmitted in all) moved since the last
    /// read. Whether it was read again.
    fn read_new_flows(
        &mut self,
        maps: &(impl crate::maps::Maps + ?Sized),
        transmitted: u64,
    ) -> anyhow::Result<bool> {
        if let Some((at, _)) = &self.new_flows
            && *at == transmitted
        {
            return Ok(false);
        }
        let sums =
            batch::per_cpu_sums(maps, map_names::BACKEND_STATS, |sum, c: &BackendCounter| {
                sum.new_flows += c.new_flows
            })
            .context("reading the backend counters")?;
        self.new_flows = Some((transmitted, sums.iter().map(|c| c.new_flows).collect()));
        Ok(true)
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
