//! The flood alarm: watches each VIP's new flows per second against the rate it learned as
//! normal (`flood`, a SYN flood looks like a sudden multiple of it), and the flow table's
//! evictions of flows that had proved themselves (`evictions`: their connections break at the
//! next backend change). Alerts are [`skew::Alert`]s, so the daemon reports them alike.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use lb_common::Event;

use crate::{
    config::Alerts,
    skew::{Alert, AlertKind, Counters, alert},
    stats::Stats,
};

/// The learned normal rate follows the observed one over this many windows (while no flood
/// alert fires for the VIP): slow enough that a flood is never learned as normal within the
/// minutes it is alerted on, fast enough to follow daily traffic.
const LEARNING_WINDOWS: u32 = 30;

/// What the detector alerts on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Rates and evictions are judged over this much time.
    pub window: Duration,
    /// `flood`: new flows per second above the VIP's normal rate × this.
    pub factor: f64,
    /// `flood`: never below this many new flows per second.
    pub min_rate: u64,
    /// `evictions`: more proven flows evicted in the window than this.
    pub max_evicted_proven: u64,
}

/// The `[alerts]` settings of the flood detector.
impl From<&Alerts> for Settings {
    fn from(alerts: &Alerts) -> Self {
        Settings {
            window: alerts.window,
            factor: alerts.flood_factor,
            min_rate: alerts.flood_min_rate,
            max_evicted_proven: alerts.max_evicted_proven,
        }
    }
}

/// The counters the detector reads from one stats report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Each backend's new-flow counter, by VIP (as alerts name it), with its address: a
    /// backend leaving the VIP is not read as a counter reset.
    pub new_flows: Counters,
    /// The flow table's `flow_evicted_proven` counter.
    pub evicted_proven: u64,
}

impl Sample {
    pub fn from_stats(stats: &Stats) -> Sample {
        let vips = stats.vips.iter().map(|vip| {
            let backends = vip.backends.iter().map(|b| (b.address, b.new_flows));
            (vip.vip.as_str(), backends)
        });
        Sample {
            new_flows: Counters::of(vips, None),
            evicted_proven: stats
                .events
                .get(Event::FlowEvictedProven.name())
                .map_or(0, |count| count.packets),
        }
    }
}

/// Watches samples and reports `flood` and `evictions` alerts as they start and stop.
#[derive(Clone, Debug)]
pub struct Detector {
    settings: Settings,
    /// Oldest first; none older than the window before the newest.
    samples: VecDeque<(Instant, Sample)>,
    /// Each VIP's normal new flows per second, once a whole window was seen.
    normal: BTreeMap<Arc<str>, f64>,
    /// When the normal rates were last updated.
    learned_at: Option<Instant>,
    firing: BTreeMap<(AlertKind, String), Alert>,
}

/// Growth of a counter from `old` to `new`; a counter below its old value was reset (the program
/// was reloaded), so all of it is new.
fn growth(old: u64, new: u64) -> u64 {
    new.checked_sub(old).unwrap_or(new)
}

impl Detector {
    pub fn new(settings: Settings) -> Detector {
        Detector {
            settings,
            samples: VecDeque::new(),
            normal: BTreeMap::new(),
            learned_at: None,
            firing: BTreeMap::new(),
        }
    }

    /// Adds the sample taken at `now` and returns the alerts that started or stopped with it.
    pub fn observe(&mut self, now: Instant, sample: Sample) -> Vec<Alert> {
        self.samples.push_back((now, sample));
        while let Some((taken, _)) = self.samples.front()
            && now.saturating_duration_since(*taken) > self.settings.window
        {
            self.samples.pop_front();
        }
        let (Some((oldest_at, oldest)), Some((_, newest))) =
            (self.samples.front(), self.samples.back())
        else {
            return Vec::new();
        };
        let span = now.saturating_duration_since(*oldest_at);
        // Rates over less than half a window are too jumpy to judge.
        if span < self.settings.window / 2 {
            return Vec::new();
        }
        let seconds = span.as_secs_f64();
        let last = format!("{:.0}s", seconds);
        let learn = match self.learned_at {
            Some(at) => (now.saturating_duration_since(at).as_secs_f64()
                / (self.settings.window.as_secs_f64() * f64::from(LEARNING_WINDOWS)))
            .min(1.0),
            None => 1.0,
        };
        let mut current = BTreeMap::new();
        let mut normal = BTreeMap::new();
        for (vip, backends) in newest.new_flows.vips() {
            let Some(old) = oldest.new_flows.get(vip) else {
                continue;
            };
            let grown: u64 = if oldest.new_flows.unmoved(&newest.new_flows, vip) {
                0
            } else {
                // A backend added within the window counts from its first sample, as in skew.
                backends
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &(backend, total))| {
                        let at = old.get(i).filter(|(address, _)| *address == backend);
                        let (_, old) = at.or_else(|| old.iter().find(|(a, _)| *a == backend))?;
                        Some(growth(*old, total))
                    })
                    .sum()
            };
            let rate = grown as f64 / seconds;
            let Some(&usual) = self.normal.get(vip) else {
                normal.insert(Arc::clone(vip), rate);
                continue;
            };
            let limit = (usual * self.settings.factor).max(self.settings.min_rate as f64);
            if rate > limit {
                let message = format!(
                    "vip {vip}: {rate:.0} new flows/s in the last {last}, {:.0}x its normal \
                     {usual:.0}/s (a SYN flood?): with flow_admission \"protect\" or \
                     \"first_ack\" established flows keep their slots; see flow_not_remembered \
                     and flow_evicted_proven in xlb stats",
                    rate / usual.max(1.0)
                );
                current.insert(
                    (AlertKind::Flood, vip.to_string()),
                    alert(AlertKind::Flood, vip, None, message),
                );
                normal.insert(Arc::clone(vip), usual);
            } else {
                normal.insert(Arc::clone(vip), usual + (rate - usual) * learn);
            }
        }
        let evicted = growth(oldest.evicted_proven, newest.evicted_proven);
        if evicted > self.settings.max_evicted_proven {
            let message = format!(
                "the flow table evicted {evicted} flows that had sent more than a SYN in the last \
                 {last} (at most {} wanted): they lose their backend at the next backend change; \
                 raise global.flow_table_size if the table is too small for the established \
                 flows, or look for a flood of non-SYN packets",
                self.settings.max_evicted_proven
            );
            current.insert(
                (AlertKind::Evictions, String::new()),
                alert(AlertKind::Evictions, "", None, message),
            );
        }
        self.normal = normal;
        self.learned_at = Some(now);

        let mut changes: Vec<Alert> = current
            .iter()
            .filter(|(key, _)| !self.firing.contains_key(*key))
            .map(|(_, alert)| alert.clone())
            .collect();
        for ((kind, vip), alert) in &self.firing {
            if current.contains_key(&(*kind, vip.clone())) {
                continue;
            }
            let message = match kind {
                AlertKind::Flood => match self.normal.get(vip.as_str()) {
                    Some(usual) => format!(
                        "vip {vip}: new flows back under {}x the normal {usual:.0}/s over the \
                         last {last}",
                        self.settings.factor
                    ),
                    None => format!("vip {vip} is no longer in the live config: flood cleared"),
                },
                _ => format!(
                    "the flow table evicted at most {} flows that had sent more than a SYN in \
                     the last {last}",
                    self.settings.max_evicted_proven
                ),
            };
            changes.push(Alert {
                message,
                firing: false,
                ..alert.clone()
            });
        }
        changes.sort_by(|a, b| (&a.vip, a.kind).cmp(&(&b.vip, b.kind)));
        self.firing = current;
        changes
    }

    /// The alerts firing after the latest sample.
    pub fn firing(&self) -> Vec<Alert> {
        self.firing.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: &str = "198.18.1.10:80/tcp";

    /// The shipped `[alerts]` defaults, which the rates below are chosen around: a 10 s window,
    /// 10x the normal rate, at least 1,000 new flows a second, no proven flow evicted.
    fn settings() -> Settings {
        Settings::from(&Alerts::default())
    }

    /// One VIP with one backend that counted `new_flows`.
    fn sample(new_flows: u64, evicted_proven: u64) -> Sample {
        let backend: std::net::IpAddr = [198, 18, 0, 10].into();
        Sample {
            new_flows: Counters::of([(VIP, [(backend, new_flows)])], None),
            evicted_proven,
        }
    }

    /// Feeds one sample a second at `rate` new flows per second for `seconds`, from `total`;
    /// returns every change and the new total.
    fn feed(
        detector: &mut Detector,
        start: Instant,
        from_second: u64,
        seconds: u64,
        rate: u64,
        total: &mut u64,
    ) -> Vec<(AlertKind, bool)> {
        let mut changes = Vec::new();
        for s in from_second..from_second + seconds {
            *total += rate;
            let now = start + Duration::from_secs(s);
            changes.extend(
                detector
                    .observe(now, sample(*total, 0))
                    .into_iter()
                    .map(|a| (a.kind, a.firing)),
            );
        }
        changes
    }

    /// Test that a VIP's new-flow rate jumping far above the rate it learned as normal fires
    /// `flood`, and that the alert clears when the rate falls back.
    #[test]
    fn new_flow_rate_far_above_normal_fires_flood_and_clears() {
        let mut detector = Detector::new(settings());
        let start = Instant::now();
        let mut total = 0;
        let quiet = feed(&mut detector, start, 0, 60, 2_000, &mut total);
        assert!(quiet.is_empty(), "steady traffic raised {quiet:?}");
        let flood = feed(&mut detector, start, 60, 10, 100_000, &mut total);
        assert_eq!(flood, vec![(AlertKind::Flood, true)]);
        assert_eq!(detector.firing()[0].vip, VIP);
        assert!(detector.firing()[0].message.contains("x its normal 20"));
        let after = feed(&mut detector, start, 70, 30, 2_000, &mut total);
        assert_eq!(after, vec![(AlertKind::Flood, false)]);
    }

    /// Test that a rise within the factor, or any rate below `min_rate`, is no flood, and that
    /// nothing is judged before half a window was seen.
    #[test]
    fn ordinary_rises_and_small_rates_raise_nothing() {
        let mut detector = Detector::new(settings());
        let start = Instant::now();
        let mut total = 0;
        let mut changes = feed(&mut detector, start, 0, 30, 10, &mut total);
        // 50x the normal 10/s, but below min_rate.
        changes.extend(feed(&mut detector, start, 30, 20, 500, &mut total));
        // Back to a normal that drifts to 500/s, then 5x it.
        changes.extend(feed(&mut detector, start, 50, 600, 500, &mut total));
        changes.extend(feed(&mut detector, start, 650, 20, 2_500, &mut total));
        assert!(changes.is_empty(), "{changes:?}");
    }

    /// Test that counters shared between samples while they stand still (as the daemon passes
    /// them) read as no new flows, and that a flood after a still minute fires.
    #[test]
    fn still_counters_shared_between_samples_read_as_no_new_flows() {
        let mut detector = Detector::new(settings());
        let start = Instant::now();
        let mut total = 0;
        feed(&mut detector, start, 0, 30, 2_000, &mut total);
        let backend: std::net::IpAddr = [198, 18, 0, 10].into();
        let mut previous = sample(total, 0).new_flows;
        let mut changes = Vec::new();
        for (second, rate) in (30..90)
            .map(|s| (s, 0))
            .chain((90..95).map(|s| (s, 100_000)))
        {
            total += rate;
            let new_flows = Counters::of([(VIP, [(backend, total)])], Some(&previous));
            let sample = Sample {
                new_flows: new_flows.clone(),
                evicted_proven: 0,
            };
            let now = start + Duration::from_secs(second);
            changes.extend(
                detector
                    .observe(now, sample)
                    .into_iter()
                    .map(|a| (a.kind, a.firing)),
            );
            previous = new_flows;
        }
        assert_eq!(changes, vec![(AlertKind::Flood, true)]);
    }

    /// Test that any growth of the proven-flow evictions above `max_evicted_proven` in the
    /// window fires `evictions` (about the whole table: no VIP), and that it clears once the
    /// window holds no more evictions.
    #[test]
    fn evictions_of_proven_flows_fire_and_clear() {
        let mut detector = Detector::new(settings());
        let start = Instant::now();
        let mut changes = Vec::new();
        for (second, evicted) in [(0, 0), (5, 0), (6, 3), (7, 3), (12, 3), (17, 3)] {
            let now = start + Duration::from_secs(second);
            changes.extend(detector.observe(now, sample(0, evicted)));
        }
        let kinds: Vec<(AlertKind, bool, String)> = changes
            .into_iter()
            .map(|a| (a.kind, a.firing, a.vip))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (AlertKind::Evictions, true, String::new()),
                (AlertKind::Evictions, false, String::new())
            ]
        );
    }
}
