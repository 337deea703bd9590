//! Reading the per-CPU verdict, reason and event counters, summed over CPUs. Steered packets'
//! reasons and `flow_hit` events are counted in the per-VIP map ([`VipCounter`]) and added here
//! over every VIP id, so readers see one total per reason and event.

use anyhow::Context as _;
use aya::maps::{MapData, PerCpuArray};

use crate::{batch, maps::Maps};
use lb_common::{Counter, Event, Reason, Verdict, VipCounter, map_names};

/// Counters summed over every CPU, one entry per verdict, reason and event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub verdicts: Vec<(Verdict, Counter)>,
    pub reasons: Vec<(Reason, Counter)>,
    pub events: Vec<(Event, Counter)>,
}

impl Totals {
    pub fn read(ebpf: &(impl Maps + ?Sized)) -> anyhow::Result<Totals> {
        let vips = sum_vips(ebpf)?;
        let reasons: Vec<(Reason, Counter)> =
            sum_slots(ebpf, map_names::REASONS, &Reason::ALL, |r| *r as u32)?
                .into_iter()
                .map(|(reason, counter)| (reason, counter.plus(vips.reason(reason))))
                .collect();
        // Every packet counts under one reason, and a reason has one verdict.
        let verdicts = Verdict::ALL
            .iter()
            .map(|&verdict| {
                let counted = reasons.iter().filter(|(r, _)| r.verdict() == verdict);
                let sum = counted.fold(Counter::default(), |sum, (_, c)| sum.plus(*c));
                (verdict, sum)
            })
            .collect();
        let events = sum_slots(ebpf, map_names::EVENTS, &Event::ALL, |e| *e as u32)?
            .into_iter()
            .map(|(event, counter)| (event, counter.plus(vips.event(event))))
            .collect();
        Ok(Totals {
            verdicts,
            reasons,
            events,
        })
    }

    pub fn verdict(&self, verdict: Verdict) -> Counter {
        lookup(&self.verdicts, &verdict)
    }

    pub fn reason(&self, reason: Reason) -> Counter {
        lookup(&self.reasons, &reason)
    }

    pub fn event(&self, event: Event) -> Counter {
        lookup(&self.events, &event)
    }

    /// A human-readable table of the non-zero counters.
    pub fn render(&self) -> String {
        let mut out = format!("{:<24} {:>12} {:>14}\n", "counter", "packets", "bytes");
        let verdicts = self
            .verdicts
            .iter()
            .map(|(v, c)| (format!("verdict.{}", v.name()), c));
        let reasons = self
            .reasons
            .iter()
            .map(|(r, c)| (format!("reason.{}", r.name()), c));
        for (name, counter) in verdicts.chain(reasons) {
            if counter.packets > 0 {
                out += &format!("{name:<24} {:>12} {:>14}\n", counter.packets, counter.bytes);
            }
        }
        out
    }
}

fn lookup<K: PartialEq>(entries: &[(K, Counter)], key: &K) -> Counter {
    entries
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, c)| *c)
        .unwrap_or_default()
}

fn sum_slots<K: Copy>(
    ebpf: &(impl Maps + ?Sized),
    name: &str,
    keys: &[K],
    index: impl Fn(&K) -> u32,
) -> anyhow::Result<Vec<(K, Counter)>> {
    let map = ebpf.map(name)?;
    let array: PerCpuArray<&MapData, Counter> =
        PerCpuArray::try_from(map).with_context(|| format!("map {name} is not a per-CPU array"))?;
    keys.iter()
        .map(|key| {
            let per_cpu = array
                .get(&index(key), 0)
                .with_context(|| format!("reading slot {} of map {name}", index(key)))?;
            let total = per_cpu
                .iter()
                .fold(Counter::default(), |sum, c| sum.plus(*c));
            Ok((*key, total))
        })
        .collect()
}

/// Every VIP id's counters, summed over ids and CPUs (ids of removed VIPs included: their
/// packets stay counted under their reasons). Read in batches: the daemon's alarms read them
/// each second, a lookup per id would be a system call per VIP.
fn sum_vips(ebpf: &(impl Maps + ?Sized)) -> anyhow::Result<VipCounter> {
    let per_id = batch::per_cpu_sums(ebpf, map_names::VIP_STATS, |sum: &mut VipCounter, c| {
        *sum = sum.plus(*c)
    })
    .with_context(|| format!("reading map {}", map_names::VIP_STATS))?;
    Ok(per_id
        .into_iter()
        .fold(VipCounter::default(), |sum, c| sum.plus(c)))
}
