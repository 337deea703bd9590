//! The skew alarm: watches each backend's new-flow counter over a sliding window and raises an
//! alert when one backend gets far more new flows than its table share (`skew`), takes most of a
//! VIP's new flows while others could serve (`dominant`), or a VIP is left with too few healthy
//! backends (`few_healthy`). xlb exists because a balancer once sent everything to one server
//! and nobody noticed; this is the part that notices.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::ensure;
use serde::Serialize;

use crate::{
    config::{Alerts, Forwarding},
    diff::effect::{self, Entry},
    stats::{self, BackendStats, Stats, VipStats},
};

/// What the detector alerts on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// New-flow shares are judged over this much time (the counters' growth between the oldest
    /// sample still inside the window and the newest).
    pub window: Duration,
    /// `skew`: a backend's observed share of new flows is above its expected share × this.
    pub factor: f64,
    /// `dominant`: one server takes more than this share (0 to 1) of a VIP's new flows while the
    /// VIP names other backends, whatever keeps them out (weight 0, no slot, drained, disabled,
    /// down): one server taking everything is the outage xlb was born from. Set it above the
    /// largest expected share with some margin: with two equal backends, 0.5 is crossed by
    /// chance half the time.
    pub max_share: f64,
    /// `few_healthy`: a VIP has fewer healthy backends than this.
    pub min_healthy: u32,
    /// Below this many new flows of a VIP in the window its shares are noise: `skew` and
    /// `dominant` stay quiet (and clear).
    pub min_new_flows: u64,
}

impl Default for Settings {
    /// A minute's window; `xlb stats`'s factor and flow minimum; nearly everything to one
    /// backend; a VIP that one more failure would take down.
    fn default() -> Self {
        Settings {
            window: Duration::from_secs(60),
            factor: 1.5,
            max_share: 0.9,
            min_healthy: 2,
            min_new_flows: stats::SKEW_MIN_FLOWS,
        }
    }
}

/// The `[alerts]` settings of the skew detector.
impl From<&Alerts> for Settings {
    fn from(alerts: &Alerts) -> Self {
        Settings {
            window: alerts.window,
            factor: alerts.skew_factor,
            max_share: alerts.max_share,
            min_healthy: alerts.min_healthy,
            min_new_flows: alerts.min_new_flows,
        }
    }
}

impl Settings {
    /// Whether the settings make sense; the error names the field and a value that works.
    pub fn check(&self) -> anyhow::Result<()> {
        ensure!(
            !self.window.is_zero(),
            "skew window is 0: shares need time to be judged over; use e.g. 60 s"
        );
        ensure!(
            self.factor.is_finite() && self.factor > 1.0,
            "skew factor {} must be a number above 1: it is how many times its expected share \
             a backend may get before `skew` fires (e.g. 1.5)",
            self.factor
        );
        ensure!(
            self.max_share > 0.0 && self.max_share <= 1.0,
            "skew max_share {} must be above 0 and at most 1: it is the share of a VIP's new \
             flows one backend may take while others are healthy (e.g. 0.9)",
            self.max_share
        );
        Ok(())
    }
}

/// One VIP's backends at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct VipSample {
    /// How alerts name the VIP (`describe_vip`, e.g. `198.18.1.10:80/tcp`).
    pub vip: String,
    pub backends: Vec<BackendSample>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackendSample {
    pub backend: IpAddr,
    /// The backend's new-flow counter (it only grows while the program stays loaded).
    pub new_flows_total: u64,
    /// Its part of the VIP's live table (0 to 1).
    pub expected_share: f64,
    /// As the daemon judges it (health check up; whether drained backends count is its call).
    pub healthy: bool,
    /// The physical server it reaches (the first address of its server, see
    /// [`crate::diff::effect::servers`]): entries of one server are judged together.
    pub server: IpAddr,
}

/// The detector's input from a stats report: every VIP with its backends' new-flow counters
/// and expected shares; `healthy` judges each backend.
pub fn samples(
    stats: &Stats,
    healthy: impl Fn(&VipStats, &BackendStats) -> bool,
) -> Vec<VipSample> {
    stats
        .vips
        .iter()
        .map(|vip| {
            let forwarding = if vip.forwarding == "ipip" {
                Forwarding::Ipip
            } else {
                Forwarding::Dsr
            };
            let server = servers(vip.backends.iter().map(|b| (b.address, b.mac)), forwarding);
            VipSample {
                vip: vip.vip.clone(),
                backends: vip
                    .backends
                    .iter()
                    .zip(server)
                    .map(|(backend, server)| BackendSample {
                        backend: backend.address,
                        new_flows_total: backend.new_flows,
                        expected_share: backend.expected_share,
                        healthy: healthy(vip, backend),
                        server,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// For each of a VIP's backends (address and destination MAC), the physical server it reaches
/// ([`BackendSample::server`]).
pub fn servers(
    backends: impl IntoIterator<Item = (IpAddr, [u8; 6])>,
    forwarding: Forwarding,
) -> Vec<IpAddr> {
    let entries: Vec<Entry> = backends
        .into_iter()
        .map(|(address, mac)| Entry::new(address, mac))
        .collect();
    effect::servers(&entries, forwarding)
        .into_iter()
        .map(|first| entries[first].address)
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// One server takes more than `max_share` of a VIP's new flows while the VIP names more
    /// backends. First in order: when shares go wrong, the first alert names the overloaded
    /// server.
    Dominant,
    /// A backend's observed share of new flows is above expected × factor.
    Skew,
    /// A VIP has fewer than `min_healthy` healthy backends.
    FewHealthy,
    /// The daemon's scheduled audit found the live maps drifted from its config, or a VIP
    /// whose new flows all go to one server.
    Audit,
    /// A VIP's new flows per second are far above its normal rate ([`crate::flood`]).
    Flood,
    /// The flow table evicted flows that had sent more than a SYN; about no VIP in particular.
    Evictions,
}

impl AlertKind {
    pub const ALL: [AlertKind; 6] = [
        AlertKind::Dominant,
        AlertKind::Skew,
        AlertKind::FewHealthy,
        AlertKind::Audit,
        AlertKind::Flood,
        AlertKind::Evictions,
    ];

    /// The `kind` label of `xlb_alert`.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Skew => "skew",
            AlertKind::Dominant => "dominant",
            AlertKind::FewHealthy => "few_healthy",
            AlertKind::Audit => "audit",
            AlertKind::Flood => "flood",
            AlertKind::Evictions => "evictions",
        }
    }

    /// Whether alerts of this kind name a VIP (`evictions` is about the whole flow table).
    pub fn about_vip(self) -> bool {
        self != AlertKind::Evictions
    }
}

/// An alert, or a change of one: it started firing or stopped.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub vip: String,
    /// The backend it is about (`skew`, `dominant`); `None` for the VIP as a whole.
    pub backend: Option<IpAddr>,
    /// For people: what is wrong and where to look; or, when it stops, why.
    pub message: String,
    pub firing: bool,
}

/// Identifies an alert across samples.
type AlertKey = (String, AlertKind, Option<IpAddr>);

/// One VIP's backends' new-flow counters in a sample, (address, counter) in the VIP's order.
type NewFlows = Arc<[(IpAddr, u64)]>;

/// New-flow counters of one sample, by VIP. A VIP's counters are shared with the sample before
/// while none of them moved: a window holds them once per change, not once per second, and a
/// VIP whose counters stood still over the window is known by pointer, without a comparison.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters(BTreeMap<Arc<str>, NewFlows>);

impl Counters {
    /// The counters of `vips` (name, then each backend's address and counter), shared with
    /// `previous` for each VIP whose counters are the same there.
    pub fn of<'a, B>(
        vips: impl IntoIterator<Item = (&'a str, B)>,
        previous: Option<&Counters>,
    ) -> Counters
    where
        B: IntoIterator<Item = (IpAddr, u64)>,
        B::IntoIter: Clone,
    {
        let counters = vips.into_iter().map(|(vip, backends)| {
            let backends = backends.into_iter();
            match previous.and_then(|previous| previous.0.get_key_value(vip)) {
                Some((name, kept)) if kept.iter().copied().eq(backends.clone()) => {
                    (Arc::clone(name), Arc::clone(kept))
                }
                Some((name, _)) => (Arc::clone(name), backends.collect()),
                None => (Arc::from(vip), backends.collect()),
            }
        });
        Counters(counters.collect())
    }

    /// The counters of one sample of the skew detector.
    fn of_sample(sample: &[VipSample], previous: Option<&Counters>) -> Counters {
        let vips = sample.iter().map(|vip| {
            let backends = vip.backends.iter().map(|b| (b.backend, b.new_flows_total));
            (vip.vip.as_str(), backends)
        });
        Counters::of(vips, previous)
    }

    /// Each VIP with its backends' counters.
    pub fn vips(&self) -> impl Iterator<Item = (&Arc<str>, &[(IpAddr, u64)])> {
        self.0.iter().map(|(vip, flows)| (vip, &flows[..]))
    }

    /// `vip`'s counters, if it is in the sample.
    pub fn get(&self, vip: &str) -> Option<&[(IpAddr, u64)]> {
        self.0.get(vip).map(|flows| &flows[..])
    }

    /// Whether `vip`'s counters here are the very ones of `newer` (none moved in between).
    pub fn unmoved(&self, newer: &Counters, vip: &str) -> bool {
        match (self.0.get(vip), newer.0.get(vip)) {
            (Some(old), Some(new)) => Arc::ptr_eq(old, new),
            _ => false,
        }
    }
}

/// Watches samples of new-flow counters and reports alerts as they start and stop.
#[derive(Clone, Debug)]
pub struct Detector {
    settings: Settings,
    /// Oldest first; none older than the window before the newest.
    samples: VecDeque<(Instant, Counters)>,
    firing: BTreeMap<AlertKey, Alert>,
    /// Each VIP's expected shares in the newest sample: when they change (a new table), the
    /// VIP's window starts again, so flows counted under the old table are not judged
    /// against the new one.
    expected: BTreeMap<String, Vec<(IpAddr, f64)>>,
    /// Each VIP's last `few_healthy` message with the backends it was written for (how many,
    /// and those down): while they stay, the message is not written again every sample.
    few_healthy: BTreeMap<String, FewHealthy>,
    /// Each VIP last judged on a window in which none of its counters moved, with its
    /// backends' health then: judged so again, it raises the same alerts.
    flat: BTreeMap<String, Vec<bool>>,
}

/// A `few_healthy` message and what it says: the VIP's backend count and those not healthy.
#[derive(Clone, Debug)]
struct FewHealthy {
    backends: usize,
    down: Vec<IpAddr>,
    message: String,
}

/// The `few_healthy` message of `vip`, which has `backends` backends, `down` of them not
/// healthy.
fn few_healthy_message(vip: &str, settings: &Settings, backends: usize, down: &[IpAddr]) -> String {
    if backends == 0 {
        return format!(
            "vip {vip}: has no backends (at least {} healthy wanted): add backends to its \
             config and apply it",
            settings.min_healthy
        );
    }
    let down: Vec<String> = down.iter().map(ToString::to_string).collect();
    format!(
        "vip {vip}: only {} of {backends} backends healthy (at least {} wanted), down: {}: \
         check the backends and their health-check errors in the xlb log",
        backends - down.len(),
        settings.min_healthy,
        down.join(", ")
    )
}

/// One VIP over the window, as the newest sample and the counters' growth show it.
struct Window<'a> {
    span: Duration,
    /// New flows of all its backends in the window.
    total: u64,
    /// Each backend with its new flows in the window.
    backends: Vec<(&'a BackendSample, u64)>,
}

impl Window<'_> {
    fn share(&self, new_flows: u64) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            new_flows as f64 / self.total as f64
        }
    }

    fn backend(&self, address: IpAddr) -> Option<(&BackendSample, u64)> {
        self.backends
            .iter()
            .find(|(b, _)| b.backend == address)
            .map(|(b, flows)| (*b, *flows))
    }

    fn healthy(&self) -> usize {
        self.backends.iter().filter(|(b, _)| b.healthy).count()
    }
}

impl Detector {
    pub fn new(settings: Settings) -> Detector {
        Detector {
            settings,
            samples: VecDeque::new(),
            firing: BTreeMap::new(),
            expected: BTreeMap::new(),
            few_healthy: BTreeMap::new(),
            flat: BTreeMap::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Adds the sample taken at `now` and returns the alerts that started (`firing: true`) or
    /// stopped (`firing: false`) with it, sorted by VIP, kind and backend.
    pub fn observe(&mut self, now: Instant, sample: &[VipSample]) -> Vec<Alert> {
        let counters = Counters::of_sample(sample, self.samples.back().map(|(_, c)| c));
        for vip in sample {
            let same = |old: &Vec<(IpAddr, f64)>| {
                old.len() == vip.backends.len()
                    && old.iter().zip(&vip.backends).all(|(&(address, share), b)| {
                        (address, share) == (b.backend, b.expected_share)
                    })
            };
            // Compared in place: the shares stay the same most seconds.
            match self.expected.get(&vip.vip).map(same) {
                Some(true) => continue,
                Some(false) => {
                    for (_, counters) in &mut self.samples {
                        counters.0.remove(vip.vip.as_str());
                    }
                    self.flat.remove(&vip.vip);
                }
                None => {}
            }
            let expected = vip
                .backends
                .iter()
                .map(|b| (b.backend, b.expected_share))
                .collect();
            self.expected.insert(vip.vip.clone(), expected);
        }
        let names: HashSet<&str> = sample.iter().map(|vip| vip.vip.as_str()).collect();
        self.expected
            .retain(|name, _| names.contains(name.as_str()));
        self.few_healthy
            .retain(|name, _| self.expected.contains_key(name));
        self.samples.push_back((now, counters));
        while let Some((taken, _)) = self.samples.front()
            && now.saturating_duration_since(*taken) > self.settings.window
        {
            self.samples.pop_front();
        }

        let mut changes = Vec::new();
        for vip in sample {
            if self.settled(vip) {
                continue;
            }
            let window = self.window(now, vip);
            let alerts = self.judge(&vip.vip, &window);
            let start = (vip.vip.clone(), AlertKind::Dominant, None);
            let was: Vec<AlertKey> = self
                .firing
                .range(start..)
                .take_while(|((name, _, _), _)| *name == vip.vip)
                .map(|(key, _)| key.clone())
                .collect();
            for key in was {
                if alerts.iter().any(|a| (a.kind, a.backend) == (key.1, key.2)) {
                    continue;
                }
                if let Some(alert) = self.firing.remove(&key) {
                    changes.push(Alert {
                        message: self.cleared(&alert, Some(&window)),
                        firing: false,
                        ..alert
                    });
                }
            }
            for alert in alerts {
                let key = (alert.vip.clone(), alert.kind, alert.backend);
                // Firing alerts keep their latest message (the shares move while they fire).
                if self.firing.insert(key, alert.clone()).is_none() {
                    changes.push(alert);
                }
            }
        }
        let gone: Vec<AlertKey> = self
            .firing
            .keys()
            .filter(|(vip, _, _)| !names.contains(vip.as_str()))
            .cloned()
            .collect();
        for key in gone {
            if let Some(alert) = self.firing.remove(&key) {
                changes.push(Alert {
                    message: self.cleared(&alert, None),
                    firing: false,
                    ..alert
                });
            }
        }
        self.flat.retain(|name, _| names.contains(name.as_str()));
        changes.sort_by(|a, b| (&a.vip, a.kind, a.backend).cmp(&(&b.vip, b.kind, b.backend)));
        changes
    }

    /// Whether `vip` would raise exactly the alerts it raised last: no counter moved in its
    /// window then or now, and its backends' health is the same. Records what it was judged on
    /// otherwise. Most VIPs of an idle daemon are settled each second.
    fn settled(&mut self, vip: &VipSample) -> bool {
        let healthy = vip.backends.iter().map(|b| b.healthy);
        let flat = match (self.oldest(&vip.vip), self.samples.back()) {
            (Some((_, old)), Some((_, newest))) => old.unmoved(newest, &vip.vip),
            _ => true,
        };
        if !flat {
            self.flat.remove(&vip.vip);
            return false;
        }
        match self.flat.get_mut(&vip.vip) {
            Some(judged) if judged.iter().copied().eq(healthy.clone()) => true,
            Some(judged) => {
                judged.clear();
                judged.extend(healthy);
                false
            }
            None => {
                self.flat.insert(vip.vip.clone(), healthy.collect());
                false
            }
        }
    }

    /// The counters of the latest sample.
    pub fn newest(&self) -> Option<&Counters> {
        self.samples.back().map(|(_, counters)| counters)
    }

    /// The alerts firing after the latest sample, sorted by VIP, kind and backend.
    pub fn firing(&self) -> Vec<Alert> {
        self.firing.values().cloned().collect()
    }

    /// `vip` over the window: each backend's counter growth since the oldest sample in the
    /// window that has the VIP. Every sample since a VIP's shares last changed holds its backends
    /// in the same order (another backend is another share), so a backend's old counter is
    /// found by its position.
    fn window<'a>(&self, now: Instant, vip: &'a VipSample) -> Window<'a> {
        let (span, old) = match self.oldest(&vip.vip) {
            Some((taken, old)) => (
                now.saturating_duration_since(*taken),
                old.get(&vip.vip).unwrap_or_default(),
            ),
            None => (Duration::ZERO, &[][..]),
        };
        let backends: Vec<(&BackendSample, u64)> = vip
            .backends
            .iter()
            .enumerate()
            .map(|(i, backend)| {
                let flows = match old.get(i) {
                    // A counter below its old value was reset (the program was reloaded):
                    // everything it counted since is new.
                    Some(&(address, old)) if address == backend.backend => backend
                        .new_flows_total
                        .checked_sub(old)
                        .unwrap_or(backend.new_flows_total),
                    _ => 0,
                };
                (backend, flows)
            })
            .collect();
        Window {
            span: if backends.is_empty() {
                Duration::ZERO
            } else {
                span
            },
            total: backends.iter().map(|(_, flows)| flows).sum(),
            backends,
        }
    }

    /// The oldest sample in the window that has `vip`.
    fn oldest(&self, vip: &str) -> Option<&(Instant, Counters)> {
        self.samples
            .iter()
            .find(|(_, counters)| counters.0.contains_key(vip))
    }

    /// The alerts `window` of `vip` calls for.
    fn judge(&mut self, vip: &str, window: &Window) -> Vec<Alert> {
        let settings = self.settings;
        let mut alerts = Vec::new();
        let healthy = window.healthy();
        if (healthy as u64) < u64::from(settings.min_healthy) {
            let down: Vec<IpAddr> = window
                .backends
                .iter()
                .filter(|(b, _)| !b.healthy)
                .map(|(b, _)| b.backend)
                .collect();
            let backends = window.backends.len();
            let message = match self.few_healthy.get(vip) {
                Some(seen) if seen.backends == backends && seen.down == down => {
                    seen.message.clone()
                }
                _ => {
                    let message = few_healthy_message(vip, &self.settings, backends, &down);
                    let seen = FewHealthy {
                        backends,
                        down,
                        message: message.clone(),
                    };
                    self.few_healthy.insert(vip.to_owned(), seen);
                    message
                }
            };
            alerts.push(alert(AlertKind::FewHealthy, vip, None, message));
        }
        if window.total < settings.min_new_flows {
            return alerts;
        }
        let last = span_text(window.span);
        for &(backend, flows) in &window.backends {
            let observed = window.share(flows);
            let address = backend.backend;
            if observed > backend.expected_share * settings.factor {
                alerts.push(alert(
                    AlertKind::Skew,
                    vip,
                    Some(address),
                    format!(
                        "vip {vip}: backend {address} took {} of new flows in the last {last} \
                         (expected {}): check the weights (xlb audit) and the table (xlb stats)",
                        percent(observed),
                        percent(backend.expected_share)
                    ),
                ));
            }
        }
        // Per physical server: entries of one server add up.
        let mut servers: Vec<(IpAddr, u64)> = Vec::new();
        for &(backend, flows) in &window.backends {
            match servers.iter_mut().find(|(s, _)| *s == backend.server) {
                Some((_, total)) => *total += flows,
                None => servers.push((backend.server, flows)),
            }
        }
        for &(server, flows) in &servers {
            let observed = window.share(flows);
            let others: Vec<String> = window
                .backends
                .iter()
                .filter(|(b, _)| b.backend != server)
                .map(|(b, _)| {
                    let why = if b.server == server {
                        " (the same server)"
                    } else if !b.healthy {
                        " (out)"
                    } else if b.expected_share == 0.0 {
                        " (no slots)"
                    } else {
                        ""
                    };
                    format!("{}{why}", b.backend)
                })
                .collect();
            if observed > settings.max_share && !others.is_empty() {
                alerts.push(alert(
                    AlertKind::Dominant,
                    vip,
                    Some(server),
                    format!(
                        "vip {vip}: server {server} took {} of new flows in the last {last}, \
                         more than the {} one server may take while the VIP names others ({}): \
                         check the weights (xlb audit), the table (xlb stats) and why the others \
                         take nothing",
                        percent(observed),
                        percent(settings.max_share),
                        others.join(", ")
                    ),
                ));
            }
        }
        alerts
    }

    /// Why `alert` stopped firing, given its VIP's window (`None`: the VIP is gone).
    fn cleared(&self, alert: &Alert, window: Option<&Window>) -> String {
        let vip = &alert.vip;
        let kind = alert.kind.name();
        let Some(window) = window else {
            return format!("vip {vip} is no longer in the live config: {kind} alert cleared");
        };
        let last = span_text(window.span);
        let min = self.settings.min_new_flows;
        let Some(address) = alert.backend else {
            return format!(
                "vip {vip}: {} of {} backends healthy again (at least {} wanted)",
                window.healthy(),
                window.backends.len(),
                self.settings.min_healthy
            );
        };
        let Some((backend, flows)) = window.backend(address) else {
            return format!("vip {vip}: backend {address} left the VIP: {kind} alert cleared");
        };
        if window.total < min {
            return format!(
                "vip {vip}: {} new flows in the last {last}, fewer than the {min} needed to \
                 judge shares: {kind} alert on backend {address} cleared",
                window.total
            );
        }
        let observed = percent(window.share(flows));
        match alert.kind {
            AlertKind::Skew => format!(
                "vip {vip}: backend {address} is back in line: {observed} of new flows in the \
                 last {last} (expected {})",
                percent(backend.expected_share)
            ),
            _ => format!(
                "vip {vip}: backend {address} no longer dominates: {observed} of new flows in \
                 the last {last} (at most {} wanted)",
                percent(self.settings.max_share)
            ),
        }
    }
}

/// A firing alert.
pub(crate) fn alert(kind: AlertKind, vip: &str, backend: Option<IpAddr>, message: String) -> Alert {
    Alert {
        kind,
        vip: vip.to_owned(),
        backend,
        message,
        firing: true,
    }
}

/// `97%`, never `100%` for less.
fn percent(share: f64) -> String {
    effect::percent(share, 0)
}

/// `10s`, or `2.5s` when not close to whole seconds.
fn span_text(span: Duration) -> String {
    let seconds = span.as_secs_f64();
    if (seconds - seconds.round()).abs() < 0.05 {
        format!("{}s", seconds.round())
    } else {
        format!("{seconds:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: &str = "198.18.1.10:80/tcp";

    fn settings() -> Settings {
        Settings {
            window: Duration::from_secs(10),
            factor: 1.5,
            max_share: 0.8,
            min_healthy: 2,
            min_new_flows: 100,
        }
    }

    fn address(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, last])
    }

    /// One VIP over three equal backends 198.18.0.10-12 with these counters and health.
    fn sample(counters: [u64; 3], healthy: [bool; 3]) -> Vec<VipSample> {
        vec![VipSample {
            vip: VIP.to_owned(),
            backends: (0..3)
                .map(|i| BackendSample {
                    backend: address(10 + i as u8),
                    new_flows_total: counters[i],
                    expected_share: 1.0 / 3.0,
                    healthy: healthy[i],
                    server: address(10 + i as u8),
                })
                .collect(),
        }]
    }

    fn all_up(counters: [u64; 3]) -> Vec<VipSample> {
        sample(counters, [true; 3])
    }

    fn kinds(alerts: &[Alert]) -> Vec<(AlertKind, Option<IpAddr>, bool)> {
        alerts
            .iter()
            .map(|a| (a.kind, a.backend, a.firing))
            .collect()
    }

    /// A detector with [`settings`] that has observed `first`, and the test's clock: `at(s)`
    /// is `s` seconds after that first sample.
    fn seen(first: &[VipSample]) -> (Detector, impl Fn(u64) -> Instant + use<>) {
        let start = Instant::now();
        let mut detector = Detector::new(settings());
        detector.observe(start, first);
        (detector, move |seconds| {
            start + Duration::from_secs(seconds)
        })
    }

    /// Test that an even spread of new flows over equal, healthy backends raises nothing.
    #[test]
    fn even_sample_raises_nothing() {
        let start = Instant::now();
        let mut detector = Detector::new(settings());
        assert_eq!(detector.observe(start, &all_up([0, 0, 0])), []);
        let second = start + Duration::from_secs(5);
        assert_eq!(detector.observe(second, &all_up([340, 330, 330])), []);
        assert_eq!(detector.firing(), []);
    }

    /// Test that all new flows going to one of three equal backends fires skew and dominant
    /// for it within one window, with a message naming the VIP, backend, shares and next step.
    #[test]
    fn one_backend_taking_everything_fires_skew_and_dominant() {
        let (mut detector, at) = seen(&all_up([1000, 1000, 1000]));
        let alerts = detector.observe(at(10), &all_up([1300, 1000, 1000]));
        assert_eq!(
            kinds(&alerts),
            [
                (AlertKind::Dominant, Some(address(10)), true),
                (AlertKind::Skew, Some(address(10)), true),
            ]
        );
        assert_eq!(
            alerts[1].message,
            "vip 198.18.1.10:80/tcp: backend 198.18.0.10 took 100% of new flows in the last 10s \
             (expected 33%): check the weights (xlb audit) and the table (xlb stats)"
        );
        assert!(
            alerts[0].message.contains("198.18.0.11, 198.18.0.12"),
            "{}",
            alerts[0].message
        );
        assert_eq!(detector.firing(), alerts);

        // Still skewed: no new transition, still firing.
        let later = detector.observe(at(12), &all_up([1400, 1000, 1000]));
        assert_eq!(later, []);
        assert_eq!(detector.firing().len(), 2);
    }

    /// Test that skew and dominant clear once the distribution evens out in a later window,
    /// the old lopsided samples having left it.
    #[test]
    fn skew_clears_when_the_distribution_evens_out() {
        let (mut detector, at) = seen(&all_up([0, 0, 0]));
        assert_eq!(detector.observe(at(5), &all_up([300, 0, 0])).len(), 2);
        assert_eq!(detector.observe(at(10), &all_up([600, 0, 0])), []);
        // From here on each backend gets 100 new flows every 5 s; the window (10 s) keeps
        // the lopsided growth until the samples from before 10 s leave it.
        let mut cleared = detector.observe(at(15), &all_up([700, 100, 100]));
        let last = detector.observe(at(20), &all_up([800, 200, 200]));
        let skew = last
            .iter()
            .find(|a| a.kind == AlertKind::Skew)
            .expect("skew clears");
        assert!(
            skew.message
                .contains("back in line: 33% of new flows in the last 10s"),
            "{}",
            skew.message
        );
        cleared.extend(last);
        cleared.sort_by_key(|a| a.kind);
        assert_eq!(
            kinds(&cleared),
            [
                (AlertKind::Dominant, Some(address(10)), false),
                (AlertKind::Skew, Some(address(10)), false),
            ]
        );
        assert_eq!(detector.firing(), []);
    }

    /// Test that fewer healthy backends than min_healthy fires few_healthy (without traffic)
    /// naming the ones down, and that it clears when they recover.
    #[test]
    fn few_healthy_fires_below_min_healthy_and_clears() {
        let start = Instant::now();
        let mut detector = Detector::new(settings());
        assert_eq!(
            detector.observe(start, &sample([0; 3], [true, true, false])),
            []
        );
        let alerts = detector.observe(
            start + Duration::from_secs(1),
            &sample([0; 3], [true, false, false]),
        );
        assert_eq!(kinds(&alerts), [(AlertKind::FewHealthy, None, true)]);
        assert!(
            alerts[0].message.contains(
                "only 1 of 3 backends healthy (at least 2 wanted), down: 198.18.0.11, 198.18.0.12"
            ),
            "{}",
            alerts[0].message
        );
        let cleared = detector.observe(start + Duration::from_secs(2), &all_up([0; 3]));
        assert_eq!(kinds(&cleared), [(AlertKind::FewHealthy, None, false)]);
    }

    /// Test that a firing few_healthy alert keeps naming the backends down now: the message
    /// kept while they stay is written again when another one goes down.
    #[test]
    fn few_healthy_message_follows_the_backends_down() {
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let mut detector = Detector::new(Settings {
            min_healthy: 3,
            ..settings()
        });
        let message = |detector: &Detector| {
            let firing = detector.firing();
            assert_eq!(kinds(&firing), [(AlertKind::FewHealthy, None, true)]);
            firing[0].message.clone()
        };
        detector.observe(at(0), &sample([0; 3], [true, false, true]));
        assert_eq!(
            message(&detector),
            "vip 198.18.1.10:80/tcp: only 2 of 3 backends healthy (at least 3 wanted), down: \
             198.18.0.11: check the backends and their health-check errors in the xlb log"
        );
        detector.observe(at(1), &sample([0; 3], [true, false, true]));
        assert!(message(&detector).contains("only 2 of 3 backends healthy"));
        assert_eq!(
            detector.observe(at(2), &sample([0; 3], [false, false, true])),
            [],
            "still firing: no transition"
        );
        assert!(
            message(&detector).contains(
                "only 1 of 3 backends healthy (at least 3 wanted), down: 198.18.0.10, 198.18.0.11"
            ),
            "{}",
            message(&detector)
        );
    }

    /// Test that below min_new_flows in the window a lopsided split raises no share alert,
    /// and that a firing one clears when traffic falls below it.
    #[test]
    fn below_min_new_flows_no_share_alert() {
        let (mut detector, at) = seen(&all_up([0, 0, 0]));
        assert_eq!(detector.observe(at(1), &all_up([99, 0, 0])), []);

        assert_eq!(detector.observe(at(2), &all_up([200, 0, 0])).len(), 2);
        // From 15 s on only the samples at 5 s and later count: 50 new flows.
        detector.observe(at(5), &all_up([200, 0, 0]));
        let cleared = detector.observe(at(15), &all_up([250, 0, 0]));
        assert_eq!(cleared.len(), 2);
        assert!(cleared.iter().all(|a| !a.firing));
        assert!(
            cleared[0]
                .message
                .contains("50 new flows in the last 10s, fewer than the 100"),
            "{}",
            cleared[0].message
        );
    }

    /// Test that dominant judges the intended spread: one server taking everything fires
    /// whether the others are down by health checks or idle with no slots (weight 0), and
    /// names the overloaded server.
    #[test]
    fn dominant_fires_whatever_keeps_the_others_out() {
        let start = Instant::now();
        let mut detector = Detector::new(settings());
        detector.observe(start, &sample([0; 3], [true, false, false]));
        let alerts = detector.observe(
            start + Duration::from_secs(1),
            &sample([300, 0, 0], [true, false, false]),
        );
        let dominant = alerts
            .iter()
            .find(|a| a.kind == AlertKind::Dominant && a.firing)
            .unwrap_or_else(|| {
                panic!("two of three down still leaves one server with all: {alerts:?}")
            });
        assert_eq!(dominant.backend, Some(address(10)));
        assert!(
            dominant.message.contains("198.18.0.11 (out)"),
            "{}",
            dominant.message
        );

        let mut weighted = all_up([0, 0, 0]);
        for (b, share) in weighted[0].backends.iter_mut().zip([1.0, 0.0, 0.0]) {
            b.expected_share = share;
        }
        let mut detector = Detector::new(settings());
        detector.observe(start, &weighted);
        weighted[0].backends[0].new_flows_total = 300;
        let alerts = detector.observe(start + Duration::from_secs(1), &weighted);
        assert_eq!(
            kinds(&alerts),
            [(AlertKind::Dominant, Some(address(10)), true)],
            "all weight on one of three healthy backends is dominance, and not skew (the table \
             says so): {alerts:?}"
        );
    }

    /// Test that entries of one physical server are judged together: two entries of one
    /// server taking all new flows between them is dominance of that server.
    #[test]
    fn entries_of_one_server_are_judged_together() {
        let start = Instant::now();
        let mut detector = Detector::new(settings());
        let mut shared = all_up([0, 0, 0]);
        shared[0].backends[1].server = address(10);
        detector.observe(start, &shared);
        shared[0].backends[0].new_flows_total = 150;
        shared[0].backends[1].new_flows_total = 150;
        shared[0].backends[2].new_flows_total = 10;
        let alerts = detector.observe(start + Duration::from_secs(1), &shared);
        assert!(
            alerts
                .iter()
                .any(|a| a.kind == AlertKind::Dominant && a.backend == Some(address(10))),
            "{alerts:?}"
        );
    }

    /// Test that a table change starts the VIP's window again: right after the table moves
    /// every flow to one backend, the first alert names that backend (dominant), and the
    /// starved ones are not called skewed for flows counted under the old table.
    #[test]
    fn a_table_change_restarts_the_window_and_names_the_overloaded_server() {
        let (mut detector, at) = seen(&all_up([0, 0, 0]));
        detector.observe(at(2), &all_up([1000, 1000, 1000]));
        let mut changed = all_up([1000, 1000, 1000]);
        for (b, share) in changed[0].backends.iter_mut().zip([1.0, 0.0, 0.0]) {
            b.expected_share = share;
        }
        detector.observe(at(3), &changed);
        changed[0].backends[0].new_flows_total = 1300;
        let alerts = detector.observe(at(4), &changed);
        assert_eq!(
            kinds(&alerts),
            [(AlertKind::Dominant, Some(address(10)), true)],
            "{alerts:?}"
        );
    }

    /// Test that a sample's counters share each VIP's with the sample before while none of
    /// them moved, and that a moved counter or a new VIP gets counters of its own.
    #[test]
    fn counters_are_shared_while_they_stand_still() {
        let first = Counters::of_sample(&all_up([5, 6, 7]), None);
        let same = Counters::of_sample(&all_up([5, 6, 7]), Some(&first));
        assert!(first.unmoved(&same, VIP));
        let moved = Counters::of_sample(&all_up([5, 6, 8]), Some(&same));
        assert!(!same.unmoved(&moved, VIP));
        assert_eq!(moved.get(VIP).map(|c| c[2]), Some((address(12), 8)));
        let fresh = Counters::of_sample(&all_up([5, 6, 8]), None);
        assert!(
            !fresh.unmoved(&moved, VIP),
            "equal counters read apart are not shared"
        );
        assert_eq!(fresh, moved);
    }

    /// Test that a VIP left alone while its counters stand still keeps its alerts, and is
    /// judged again as soon as its health or its counters move.
    #[test]
    fn a_still_vip_is_judged_again_when_health_or_counters_move() {
        let (mut detector, at) = seen(&all_up([0, 0, 0]));
        assert_eq!(detector.observe(at(1), &all_up([0, 0, 0])), []);
        let down = [true, false, false];
        let fired = detector.observe(at(2), &sample([0; 3], down));
        assert_eq!(kinds(&fired), [(AlertKind::FewHealthy, None, true)]);
        for second in 3..15 {
            assert_eq!(detector.observe(at(second), &sample([0; 3], down)), []);
            assert_eq!(kinds(&detector.firing()), kinds(&fired));
        }
        let skewed = detector.observe(at(15), &sample([300, 0, 0], down));
        assert_eq!(
            kinds(&skewed),
            [
                (AlertKind::Dominant, Some(address(10)), true),
                (AlertKind::Skew, Some(address(10)), true),
            ]
        );
        let cleared = detector.observe(at(16), &all_up([300, 0, 0]));
        assert_eq!(kinds(&cleared), [(AlertKind::FewHealthy, None, false)]);
    }

    /// Test that a VIP leaving the samples clears its alerts, and that a counter reset (the
    /// program reloaded) counts from zero instead of wrapping.
    #[test]
    fn vanished_vip_clears_and_reset_counters_restart() {
        let (mut detector, at) = seen(&all_up([5000, 5000, 5000]));
        let alerts = detector.observe(at(1), &all_up([300, 0, 0]));
        assert_eq!(
            alerts.len(),
            2,
            "reset counters count from zero: {alerts:?}"
        );
        let cleared = detector.observe(at(2), &[]);
        assert_eq!(cleared.len(), 2);
        assert!(
            cleared[0].message.contains("no longer in the live config"),
            "{}",
            cleared[0].message
        );
    }

    /// Test that settings out of range are refused with the field named.
    #[test]
    fn settings_check_names_the_field() {
        assert!(Settings::default().check().is_ok());
        let factor = Settings {
            factor: 1.0,
            ..Settings::default()
        };
        let max_share = Settings {
            max_share: 1.5,
            ..Settings::default()
        };
        for (bad, says) in [(factor, "skew factor 1"), (max_share, "max_share 1.5")] {
            let refused = bad.check().unwrap_err().to_string();
            assert!(refused.contains(says), "{refused}");
        }
    }
}
