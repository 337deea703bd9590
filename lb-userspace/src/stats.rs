//! `xlb stats`: packets, bytes and new flows per VIP and backend, each backend's observed share
//! of new flows beside the share its live table gives it, and a flag where the two disagree:
//! the check that would have caught "all traffic to one server".

use std::{collections::BTreeMap, net::IpAddr, path::Path, time::Duration};

use anyhow::{Context as _, ensure};
use lb_common::{
    Backend, BackendCounter, Counter, Vip, VipCounter, VipKey, map_names, meta::ShareBase,
};
use serde::Serialize;

use crate::{
    batch,
    capacity::Capacity,
    counters::Totals,
    diff::effect,
    live::BackendState,
    live::Snapshot,
    maps::Maps,
    pins,
    rollout::{self, describe_vip, live_address},
    status, steering,
};

/// Below this many new flows a VIP's shares are noise: no over/under flag.
pub const SKEW_MIN_FLOWS: u64 = 100;

/// The report of [`read`], each VIP named as its last apply named it.
pub fn read_named(
    pin_path: &Path,
    interval: Option<Duration>,
    skew_factor: f64,
) -> anyhow::Result<Stats> {
    let mut stats = read(pin_path, interval, skew_factor)?;
    let names = crate::names::read(pin_path);
    for vip in &mut stats.vips {
        vip.name = names.name_of(&vip.vip);
    }
    Ok(stats)
}

/// Every counter `stats` reports, at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Sorted by VIP key.
    pub vips: Vec<VipSample>,
    pub totals: Totals,
    /// The `alerts.max_share` the live state was applied with.
    pub max_share: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VipSample {
    pub key: VipKey,
    pub vip: Vip,
    pub counter: Counter,
    /// The VIP's backends (non-empty entries of its id range): id, entry, counters.
    pub backends: Vec<(u32, Backend, BackendCounter)>,
    /// The slots of the live table each of `backends` holds.
    pub slots: Vec<u64>,
    /// Each backend's new flows when the VIP's table last changed (as `backends`).
    pub bases: Vec<ShareBase>,
}

impl Sample {
    /// Reads every VIP, its live table, and the counters of it and its backends, summed over
    /// CPUs.
    pub fn read(maps: &mut (impl Maps + ?Sized)) -> anyhow::Result<Sample> {
        let snapshot = Snapshot::read(maps)?;
        let capacity = Capacity::read(maps)?;
        // Each map in one pass, every live table through one mapping: a read per VIP and
        // backend costs a system call each.
        let vip_stats =
            batch::per_cpu_sums(maps, map_names::VIP_STATS, |sum: &mut VipCounter, c| {
                *sum = sum.plus(*c);
            })
            .context("reading the VIP counters")?;
        let backend_stats =
            batch::per_cpu_sums(maps, map_names::BACKEND_STATS, |sum, c: &BackendCounter| {
                sum.packets += c.packets;
                sum.bytes += c.bytes;
                sum.new_flows += c.new_flows;
            })
            .context("reading the backend counters")?;
        let share_bases = batch::array::<ShareBase>(maps, map_names::SHARE_BASE)
            .context("reading the share bases")?;
        let live: Vec<(u32, u32)> = snapshot
            .vips
            .iter()
            .map(|(_, vip)| vip.live_table())
            .collect();
        let entries: Vec<Vec<(u32, Backend)>> = snapshot
            .vips
            .iter()
            .map(|(_, vip)| status::live_backends(&snapshot, &capacity, vip.id))
            .map(|backends| backends.map(|(id, b)| (id, *b)).collect())
            .collect();
        // Only each backend's slot count is kept: counted in place, no table copied out.
        let slots = steering::map_tables(maps, &live, |i, table| {
            let forwarding = effect::forwarding(&snapshot.vips[i].1);
            effect::of_ids(&entries[i], forwarding, table).entry_counts
        })
        .context("reading the live tables")?;
        let mut vips = Vec::new();
        for (((key, vip), entries), slots) in snapshot.vips.iter().zip(entries).zip(slots) {
            let counter = vip_stats
                .get(vip.id as usize)
                .map_or_else(Counter::default, VipCounter::total);
            let mut backends = Vec::new();
            let mut bases = Vec::new();
            for (id, backend) in entries {
                let counter = backend_stats.get(id as usize).copied().unwrap_or_default();
                backends.push((id, backend, counter));
                bases.push(share_bases.get(id as usize).copied().unwrap_or_default());
            }
            vips.push(VipSample {
                key: *key,
                vip: *vip,
                counter,
                backends,
                slots,
                bases,
            });
        }
        Ok(Sample {
            vips,
            totals: Totals::read(maps)?,
            max_share: rollout::max_share(&snapshot.meta),
        })
    }
}

/// What `xlb stats` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Seconds between the two samples the rates come from; `None`: one sample, no rates.
    pub interval_seconds: Option<f64>,
    pub skew_factor: f64,
    /// New flows a VIP needs before its backends are flagged `over` or `under`.
    pub skew_min_new_flows: u64,
    /// Backends flagged with any skew, over all VIPs.
    pub skewed_backends: u32,
    pub vips: Vec<VipStats>,
    /// Packets and bytes per reason (every packet counts under exactly one), by name.
    pub reasons: BTreeMap<&'static str, Count>,
    /// Packets per flow-table event (`flow_hit`, `flow_miss`, `flow_stale`, `flow_remembered`,
    /// `flow_not_remembered`, `flow_evicted_proven`), by name.
    pub events: BTreeMap<&'static str, Count>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VipStats {
    /// `address:port/protocol`.
    pub vip: String,
    /// The VIP's name in the config last applied (see [`crate::names`]).
    pub name: Option<String>,
    pub id: u32,
    /// `dsr` or `ipip`.
    pub forwarding: &'static str,
    pub table_size: u32,
    pub packets: u64,
    pub bytes: u64,
    /// New flows of all its backends since the program was loaded.
    pub new_flows: u64,
    /// What the shares are judged over.
    pub window: Window,
    /// New flows of all its backends in the window: the base of their observed shares.
    pub window_new_flows: u64,
    /// One server takes more than `alerts.max_share` of the window's new flows although the VIP
    /// names more backends.
    pub dominant: Option<Dominant>,
    pub rates: Option<Rates>,
    pub backends: Vec<BackendStats>,
}

/// The flows a VIP's shares are judged over.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Window {
    /// Since the program was loaded: no table change was recorded.
    Lifetime,
    /// Since the VIP's table last changed (Unix seconds).
    SinceChange { since: u64 },
    /// Between the two samples of `--interval`.
    Interval { seconds: f64 },
}

/// A server taking more than the allowed share of a VIP's new flows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dominant {
    pub server: IpAddr,
    pub share: f64,
    pub max_share: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendStats {
    pub id: u32,
    pub address: IpAddr,
    /// Destination MAC of its frames (tells which entries are one server).
    #[serde(skip)]
    pub mac: [u8; 6],
    pub state: BackendState,
    pub weight: u32,
    pub packets: u64,
    pub bytes: u64,
    /// Flows the table chose this backend for (counted since the program was loaded).
    pub new_flows: u64,
    /// Of them, those in its VIP's window.
    pub window_new_flows: u64,
    /// This backend's part of the VIP's new flows in the window (0 to 1).
    pub observed_share: f64,
    /// Its slots in the VIP's live table / the table size (0 to 1).
    pub expected_share: f64,
    pub skew: Option<Skew>,
    pub rates: Option<Rates>,
}

/// How observed and expected shares disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Skew {
    /// Observed share above expected × skew factor.
    Over,
    /// Observed share below expected / skew factor.
    Under,
    /// New flows although the live table gives the backend no slot (drained, disabled,
    /// weight 0, or flows from before a table change).
    Unexpected,
}

impl Skew {
    pub fn name(self) -> &'static str {
        match self {
            Skew::Over => "over",
            Skew::Under => "under",
            Skew::Unexpected => "unexpected",
        }
    }
}

/// Per second, over the interval between two samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rates {
    pub packets_per_second: f64,
    pub bytes_per_second: f64,
    pub new_flows_per_second: f64,
}

/// The stats of the xlb pinned under `pin_path`; a [`crate::exit::NotLoaded`] error if none is.
pub fn read(
    pin_path: &Path,
    interval: Option<Duration>,
    skew_factor: f64,
) -> anyhow::Result<Stats> {
    let mut maps = pins::open(pin_path)?;
    collect(&mut maps, interval, skew_factor)
}

/// One sample (or two, `interval` apart, for rates) of the program behind `maps`.
pub fn collect(
    maps: &mut (impl Maps + ?Sized),
    interval: Option<Duration>,
    skew_factor: f64,
) -> anyhow::Result<Stats> {
    ensure!(
        skew_factor.is_finite() && skew_factor > 1.0,
        "--skew-factor {skew_factor} must be a number above 1: it is how many times its \
         expected share a backend may get (e.g. 1.5)"
    );
    let first = match interval {
        Some(interval) => {
            let sample = Sample::read(maps)?;
            let started = std::time::Instant::now();
            std::thread::sleep(interval);
            // The time between the reads, not the requested one: sleep may overshoot.
            Some((sample, started))
        }
        None => None,
    };
    let now = Sample::read(maps)?;
    let before = first
        .as_ref()
        .map(|(sample, started)| (sample, started.elapsed().as_secs_f64()));
    Ok(compare(&now, before, skew_factor))
}

/// The report of sample `now`, with rates against `before` (a sample and the seconds since it)
/// when given.
pub fn compare(now: &Sample, before: Option<(&Sample, f64)>, skew_factor: f64) -> Stats {
    let per_second = |delta: u64, seconds: f64| delta as f64 / seconds;
    let rates = |now: (u64, u64, u64), then: (u64, u64, u64), seconds: f64| Rates {
        packets_per_second: per_second(now.0.saturating_sub(then.0), seconds),
        bytes_per_second: per_second(now.1.saturating_sub(then.1), seconds),
        new_flows_per_second: per_second(now.2.saturating_sub(then.2), seconds),
    };
    let mut skewed_backends = 0;
    let mut vips = Vec::new();
    for sample in &now.vips {
        // The same VIP in the earlier sample (a VIP re-created in between has no rates).
        let earlier = before.and_then(|(then, seconds)| {
            then.vips
                .iter()
                .find(|v| v.key == sample.key && v.vip.id == sample.vip.id)
                .map(|v| (v, seconds))
        });
        let new_flows: u64 = sample.backends.iter().map(|(_, _, c)| c.new_flows).sum();
        let (window, windowed) = window(sample, earlier);
        let window_total: u64 = windowed.iter().sum();
        let mut backends = Vec::new();
        for (i, (id, backend, counter)) in sample.backends.iter().enumerate() {
            let expected_share = share(sample.slots[i], u64::from(sample.vip.table_size));
            let observed_share = share(windowed[i], window_total);
            let skew = skew(
                window_total,
                windowed[i],
                observed_share,
                expected_share,
                skew_factor,
            );
            skewed_backends += u32::from(skew.is_some());
            let rates = earlier.and_then(|(then, seconds)| {
                let (_, old, c) = then.backends.iter().find(|(i, _, _)| i == id)?;
                // A new backend that took over a retired one's id: its counters are not
                // comparable.
                (old.addr == backend.addr).then(|| {
                    rates(
                        (counter.packets, counter.bytes, counter.new_flows),
                        (c.packets, c.bytes, c.new_flows),
                        seconds,
                    )
                })
            });
            backends.push(BackendStats {
                id: *id,
                address: live_address(backend),
                mac: backend.mac,
                state: BackendState::of(backend),
                weight: backend.weight,
                packets: counter.packets,
                bytes: counter.bytes,
                new_flows: counter.new_flows,
                window_new_flows: windowed[i],
                observed_share,
                expected_share,
                skew,
                rates,
            });
        }
        let entries: Vec<(u32, Backend)> =
            sample.backends.iter().map(|(id, b, _)| (*id, *b)).collect();
        let spread = effect::Effect::of_counts(
            &entries
                .iter()
                .map(|(_, b)| effect::live_entry(b))
                .collect::<Vec<_>>(),
            effect::forwarding(&sample.vip),
            windowed.clone(),
        );
        let dominant = (window_total >= SKEW_MIN_FLOWS)
            .then(|| spread.over(now.max_share))
            .flatten()
            .map(|server| Dominant {
                server: server.address,
                share: server.share,
                max_share: now.max_share,
            });
        let vip_rates = earlier.map(|(then, seconds)| {
            let old_new_flows = then.backends.iter().map(|(_, _, c)| c.new_flows).sum();
            rates(
                (sample.counter.packets, sample.counter.bytes, new_flows),
                (then.counter.packets, then.counter.bytes, old_new_flows),
                seconds,
            )
        });
        vips.push(VipStats {
            vip: describe_vip(&sample.key),
            name: None,
            id: sample.vip.id,
            forwarding: status::forwarding_name(sample.vip.flags),
            table_size: sample.vip.table_size,
            packets: sample.counter.packets,
            bytes: sample.counter.bytes,
            new_flows,
            window,
            window_new_flows: window_total,
            dominant,
            rates: vip_rates,
            backends,
        });
    }
    let count = |c: &Counter| Count {
        packets: c.packets,
        bytes: c.bytes,
    };
    Stats {
        interval_seconds: before.map(|(_, seconds)| seconds),
        skew_factor,
        skew_min_new_flows: SKEW_MIN_FLOWS,
        skewed_backends,
        vips,
        reasons: now
            .totals
            .reasons
            .iter()
            .map(|(reason, c)| (reason.name(), count(c)))
            .collect(),
        events: now
            .totals
            .events
            .iter()
            .map(|(event, c)| (event.name(), count(c)))
            .collect(),
    }
}

use effect::share;

/// What `sample`'s shares are judged over, and each backend's new flows in it: the interval
/// since `earlier` when given, else since the VIP's table last changed (if recorded), else
/// everything counted. A counter below its base was reset (the program reloaded): all of it is
/// new.
fn window(sample: &VipSample, earlier: Option<(&VipSample, f64)>) -> (Window, Vec<u64>) {
    let since =
        |now: u64, base: Option<u64>| base.map_or(now, |b| now.checked_sub(b).unwrap_or(now));
    if let Some((then, seconds)) = earlier {
        let flows = sample
            .backends
            .iter()
            .map(|(id, backend, counter)| {
                let old = then
                    .backends
                    .iter()
                    .find(|(i, b, _)| i == id && b.addr == backend.addr)
                    .map(|(_, _, c)| c.new_flows);
                since(counter.new_flows, old)
            })
            .collect();
        return (Window::Interval { seconds }, flows);
    }
    let changed = sample.bases.iter().map(|b| b.since).max().unwrap_or(0);
    if changed == 0 {
        let flows = sample
            .backends
            .iter()
            .map(|(_, _, c)| c.new_flows)
            .collect();
        return (Window::Lifetime, flows);
    }
    let flows = sample
        .backends
        .iter()
        .zip(&sample.bases)
        .map(|((_, _, counter), base)| {
            since(
                counter.new_flows,
                (base.since == changed).then_some(base.new_flows),
            )
        })
        .collect();
    (Window::SinceChange { since: changed }, flows)
}

/// Whether a backend's `observed` share of its VIP's `vip_new_flows` new flows (`new_flows` of
/// them its own) is out of line with its `expected` share by more than `factor`.
pub fn skew(
    vip_new_flows: u64,
    new_flows: u64,
    observed: f64,
    expected: f64,
    factor: f64,
) -> Option<Skew> {
    if new_flows > 0 && expected == 0.0 {
        Some(Skew::Unexpected)
    } else if vip_new_flows < SKEW_MIN_FLOWS {
        None
    } else if observed > expected * factor {
        Some(Skew::Over)
    } else if observed < expected / factor {
        Some(Skew::Under)
    } else {
        None
    }
}

/// `stats` for people: per VIP a summary line and a table of its backends, then the reason
/// and event counters that are not zero, then the verdict on skew.
pub fn render(stats: &Stats) -> String {
    let with_rates = stats.interval_seconds.is_some();
    let rate = |rates: Option<Rates>, pick: fn(&Rates) -> f64| {
        rates.map_or_else(|| "-".to_owned(), |r| format!("{:.1}", pick(&r)))
    };
    let percent = |share: f64| effect::percent(share, 1);
    let mut out = String::new();
    if let Some(seconds) = stats.interval_seconds {
        out += &format!("rates over {seconds:.2} s\n\n");
    }
    for vip in &stats.vips {
        out += &format!(
            "{}  {}  {} packets  {} bytes  {} new flows",
            crate::names::label(&vip.vip, vip.name.as_deref()),
            vip.forwarding,
            vip.packets,
            vip.bytes,
            vip.new_flows
        );
        if let Some(r) = vip.rates {
            out += &format!(
                "  ({:.1} packets/s, {:.1} bytes/s, {:.1} new flows/s)",
                r.packets_per_second, r.bytes_per_second, r.new_flows_per_second
            );
        }
        out += &match vip.window {
            Window::Lifetime => String::new(),
            Window::SinceChange { since } => format!(
                "\n  shares over the {} new flows since the table changed at {}",
                vip.window_new_flows,
                status::rfc3339(since)
            ),
            Window::Interval { seconds } => format!(
                "\n  shares over the {} new flows of the last {seconds:.1} s",
                vip.window_new_flows
            ),
        };
        if vip.window_new_flows < stats.skew_min_new_flows {
            out += &format!(
                "  (fewer than {} new flows: shares not judged)",
                stats.skew_min_new_flows
            );
        }
        out.push('\n');
        if let Some(dominant) = &vip.dominant {
            out += &format!(
                "  !! one server, {}, takes {} of these new flows (at most {} allowed by \
                 alerts.max_share) although the VIP names {} backends\n",
                dominant.server,
                percent(dominant.share),
                percent(dominant.max_share),
                vip.backends.len()
            );
        }
        if vip.backends.is_empty() {
            out += "  no backends\n\n";
            continue;
        }
        let mut columns = vec![
            ("backend", false),
            ("state", false),
            ("weight", true),
            ("packets", true),
            ("bytes", true),
            ("new flows", true),
            ("in window", true),
            ("observed", true),
            ("expected", true),
        ];
        if with_rates {
            columns.extend([("packets/s", true), ("bytes/s", true), ("flows/s", true)]);
        }
        columns.push(("skew", false));
        let rows: Vec<Vec<String>> = vip
            .backends
            .iter()
            .map(|b| {
                let mut row = vec![
                    b.address.to_string(),
                    b.state.name().to_owned(),
                    b.weight.to_string(),
                    b.packets.to_string(),
                    b.bytes.to_string(),
                    b.new_flows.to_string(),
                    b.window_new_flows.to_string(),
                    percent(b.observed_share),
                    percent(b.expected_share),
                ];
                if with_rates {
                    row.extend([
                        rate(b.rates, |r| r.packets_per_second),
                        rate(b.rates, |r| r.bytes_per_second),
                        rate(b.rates, |r| r.new_flows_per_second),
                    ]);
                }
                row.push(b.skew.map_or("", Skew::name).to_owned());
                row
            })
            .collect();
        for line in status::table(&columns, &rows).lines() {
            out += &format!("  {line}\n");
        }
        out.push('\n');
    }
    if stats.vips.is_empty() {
        out += "no VIPs (apply a config with `xlb apply FILE`)\n\n";
    }
    let nonzero = |counts: &BTreeMap<&'static str, Count>, bytes: bool| {
        let parts: Vec<String> = counts
            .iter()
            .filter(|(_, c)| c.packets > 0)
            .map(|(name, c)| {
                if bytes {
                    format!("{name} {} ({} bytes)", c.packets, c.bytes)
                } else {
                    format!("{name} {}", c.packets)
                }
            })
            .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    };
    out += &format!("reasons: {}\n", nonzero(&stats.reasons, true));
    out += &format!("events:  {}\n", nonzero(&stats.events, false));
    out += &if stats.skewed_backends == 0 {
        format!(
            "no skew (factor {}, judged from {} new flows per VIP)\n",
            stats.skew_factor, stats.skew_min_new_flows
        )
    } else {
        format!(
            "{} backend(s) skewed: observed share of new flows off the expected share by more \
             than x{} (see the skew column)\n",
            stats.skewed_backends, stats.skew_factor
        )
    };
    out
}

#[cfg(test)]
mod tests {
    use lb_common::{
        Event, Reason,
        service::{BACKEND_ACTIVE, BACKEND_DRAINED, FAMILY_IPV4},
    };

    use super::*;

    fn backend(last: u8, flags: u8, weight: u32) -> Backend {
        Backend {
            addr: [198, 18, 0, last, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            mac: [2, 0, 0, 0, 3, last],
            family: FAMILY_IPV4,
            flags,
            weight,
            cookie: 0,
        }
    }

    fn counter(new_flows: u64) -> BackendCounter {
        BackendCounter {
            packets: new_flows * 2,
            bytes: new_flows * 120,
            new_flows,
        }
    }

    /// A VIP with a 10-slot table: backend 0 holds 5 slots, 1 holds 5, 2 (drained) none.
    fn sample(flows: [u64; 3]) -> Sample {
        Sample {
            vips: vec![VipSample {
                key: VipKey {
                    addr: [198, 18, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    port: 80u16.to_be(),
                    proto: 6,
                    family: FAMILY_IPV4,
                },
                vip: Vip {
                    id: 0,
                    flags: 0,
                    table_size: 10,
                    active: 0,
                    tables: [0, 10],
                    canary: 0,
                },
                counter: Counter {
                    packets: flows.iter().sum::<u64>() * 2,
                    bytes: flows.iter().sum::<u64>() * 120,
                },
                backends: vec![
                    (0, backend(10, BACKEND_ACTIVE, 1), counter(flows[0])),
                    (1, backend(11, BACKEND_ACTIVE, 1), counter(flows[1])),
                    (
                        2,
                        backend(12, BACKEND_ACTIVE | BACKEND_DRAINED, 1),
                        counter(flows[2]),
                    ),
                ],
                slots: vec![5, 5, 0],
                bases: vec![ShareBase::default(); 3],
            }],
            totals: Totals {
                reasons: vec![(
                    Reason::ForwardedDsr,
                    Counter {
                        packets: 7,
                        bytes: 420,
                    },
                )],
                events: vec![(Event::FlowMiss, Counter::default())],
                ..Totals::default()
            },
            max_share: 0.9,
        }
    }

    /// Test that shares are judged since the VIP's table last changed: flows counted before
    /// the change do not make the backend that now takes everything look "under", and one
    /// server taking it all is flagged dominant.
    #[test]
    fn shares_are_judged_since_the_table_changed() {
        // 500 flows each before the change; since then all 200 new ones went to backend 0.
        let mut changed = sample([700, 500, 500]);
        // Backend 0 holds every slot.
        changed.vips[0].slots = vec![10, 0, 0];
        changed.vips[0].bases = vec![
            ShareBase {
                new_flows: 500,
                since: 1_700_000_000,
            };
            3
        ];
        let stats = compare(&changed, None, 1.5);
        let vip = &stats.vips[0];
        assert_eq!(
            vip.window,
            Window::SinceChange {
                since: 1_700_000_000
            }
        );
        assert_eq!(vip.window_new_flows, 200);
        let skews: Vec<_> = vip.backends.iter().map(|b| b.skew).collect();
        assert_eq!(skews, [None, None, None], "{vip:?}");
        assert_eq!(vip.backends[0].observed_share, 1.0);
        let dominant = vip.dominant.as_ref().expect("one server takes everything");
        assert_eq!(dominant.server, IpAddr::from([198, 18, 0, 10]));
        // Over lifetime counters the same VIP reads backward: 41% "under", others "unexpected".
        changed.vips[0].bases = vec![ShareBase::default(); 3];
        let lifetime = compare(&changed, None, 1.5);
        assert_eq!(lifetime.vips[0].backends[0].skew, Some(Skew::Under));
    }

    /// Test that shares come from counters and the table, and that an even split is not
    /// flagged while a lopsided one is flagged on both sides.
    #[test]
    fn shares_and_skew_flags() {
        let even = compare(&sample([60, 40, 0]), None, 1.5);
        let backends = &even.vips[0].backends;
        assert_eq!(even.vips[0].new_flows, 100);
        assert_eq!(backends[0].expected_share, 0.5);
        assert_eq!(backends[2].expected_share, 0.0);
        assert_eq!(backends[0].observed_share, 0.6);
        assert_eq!(backends[2].state, BackendState::Drained);
        assert_eq!(even.skewed_backends, 0);

        let lopsided = compare(&sample([90, 10, 0]), None, 1.5);
        let skews: Vec<_> = lopsided.vips[0].backends.iter().map(|b| b.skew).collect();
        assert_eq!(skews, [Some(Skew::Over), Some(Skew::Under), None]);
        assert_eq!(lopsided.skewed_backends, 2);
    }

    /// Test that fewer than SKEW_MIN_FLOWS new flows are not judged, but new flows to a
    /// backend without slots always are.
    #[test]
    fn few_flows_are_not_judged_but_unexpected_ones_are() {
        let few = compare(&sample([9, 0, 0]), None, 1.5);
        assert_eq!(few.skewed_backends, 0);
        let unexpected = compare(&sample([5, 5, 1]), None, 1.5);
        assert_eq!(unexpected.vips[0].backends[2].skew, Some(Skew::Unexpected));
    }

    /// Test that rates are the counters' differences over the interval, and zero without
    /// traffic.
    #[test]
    fn rates_are_differences_over_the_interval() {
        let before = sample([10, 10, 0]);
        let stats = compare(&sample([30, 10, 0]), Some((&before, 2.0)), 1.5);
        let vip = &stats.vips[0];
        let rates = vip.rates.expect("VIP rates");
        assert_eq!(rates.new_flows_per_second, 10.0);
        assert_eq!(rates.packets_per_second, 20.0);
        assert_eq!(rates.bytes_per_second, 1200.0);
        assert_eq!(vip.backends[0].rates.unwrap().new_flows_per_second, 10.0);
        assert_eq!(vip.backends[1].rates.unwrap().packets_per_second, 0.0);
        assert_eq!(stats.interval_seconds, Some(2.0));
    }

    /// Test the text view: a backend table under each VIP with its skew, non-zero reasons,
    /// and the closing verdict.
    #[test]
    fn render_shows_backends_reasons_and_verdict() {
        let text = render(&compare(&sample([90, 10, 0]), None, 1.5));
        assert!(
            text.starts_with("198.18.1.10:80/tcp  dsr  200 packets"),
            "{text}"
        );
        assert!(text.contains("  backend "), "{text}");
        let over = text
            .lines()
            .find(|l| l.contains("198.18.0.10"))
            .expect("backend row");
        assert!(over.contains("90.0%") && over.contains("50.0%"), "{text}");
        assert!(over.ends_with("over"), "{text}");
        assert!(
            text.contains("reasons: forwarded_dsr 7 (420 bytes)\n"),
            "{text}"
        );
        assert!(text.contains("events:  none\n"), "{text}");
        assert!(text.contains("2 backend(s) skewed"), "{text}");
    }
}
