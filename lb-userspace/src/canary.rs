//! Canary applies (`xlb apply FILE --canary PERCENT --watch DURATION`): a config's new tables
//! take the first PERCENT of each changed VIP's hash space while the daemon watches, and undo
//! themselves on an alarm. The data plane side is [`lb_common::canary::table_copy`] and
//! [`crate::rollout::apply_canary`]; the daemon's side is `daemon/canary.rs`. This module holds
//! what both and the verbs share: the flags' values, the alarms and how traffic is judged, and
//! the canary as `status` and `plan` show it.

use std::{collections::BTreeMap, fmt, net::IpAddr, time::Duration};

use lb_common::{VipKey, canary};
use serde::{Deserialize, Serialize};

use crate::{live::Snapshot, rollout::describe_vip};

pub mod verb;

/// How `xlb canary` ends a running canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CanaryAction {
    /// The tried tables become the whole tables now.
    Promote,
    /// Every new flow takes the live tables again now.
    Abort,
}

/// The `--canary` value: a whole percent of the hash space, 1 to 99 (0 would try nothing and
/// 100 is a plain apply).
pub fn parse_percent(text: &str) -> Result<u32, String> {
    let percent: u32 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{text}` is not a whole percent: give 1 to 99, e.g. --canary 10"))?;
    if (1..=99).contains(&percent) {
        Ok(percent)
    } else {
        Err(format!(
            "{percent}% is outside 1 to 99: 0 tries nothing and 100 is a plain apply"
        ))
    }
}

/// The `--watch` value: a number with a unit, `ms`, `s`, `m` or `h` (e.g. `30s`, `5m`), between
/// one second and a day.
pub fn parse_watch(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("`{text}` is not a duration: give a number and a unit, e.g. 30s or 5m");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let watch = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if (Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&watch) {
        Ok(watch)
    } else {
        Err(format!(
            "{text} is outside 1s to 24h: the daemon judges the slice once a second"
        ))
    }
}

/// Why a canary was rolled back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "alarm", rename_all = "snake_case")]
pub enum Alarm {
    /// The outage guards' effect model: the tried table gives one server more than
    /// `alerts.max_share` of a VIP's new flows (accepted at apply with an override or --force).
    Concentrated {
        vip: String,
        server: IpAddr,
        share: f64,
        max_share: f64,
    },
    /// A backend took more of the VIP's new flows than both tables together predict, by more
    /// than `alerts.skew_factor`.
    Skew {
        vip: String,
        backend: IpAddr,
        observed: u64,
        expected: f64,
    },
    /// One backend took more than `alerts.max_share` of the slice's new flows (estimated).
    Dominant {
        vip: String,
        backend: IpAddr,
        share: f64,
        max_share: f64,
    },
    /// A backend the slice uses failed its health checks.
    Unhealthy {
        vip: String,
        backend: IpAddr,
        reason: String,
    },
    /// Packets were dropped for want of a backend.
    NoBackend { drops: u64 },
    /// Something else changed the live state during the watch (a reload, a health change of
    /// a backend the slice does not use); the canary judges one change at a time.
    Interrupted { why: String },
    /// The daemon stopped during the watch; the next one rolled the canary back at start.
    Restart,
    /// An operator ran `xlb canary abort`.
    Aborted,
}

impl Alarm {
    /// The alarm's name, as metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            Alarm::Concentrated { .. } => "concentrated",
            Alarm::Skew { .. } => "skew",
            Alarm::Dominant { .. } => "dominant",
            Alarm::Unhealthy { .. } => "unhealthy",
            Alarm::NoBackend { .. } => "no_backend",
            Alarm::Interrupted { .. } => "interrupted",
            Alarm::Restart => "restart",
            Alarm::Aborted => "aborted",
        }
    }

    /// Every kind, so metrics show a 0 for each.
    pub const KINDS: [&'static str; 8] = [
        "concentrated",
        "skew",
        "dominant",
        "unhealthy",
        "no_backend",
        "interrupted",
        "restart",
        "aborted",
    ];
}

impl fmt::Display for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |x: f64| crate::diff::effect::percent(x, 0);
        match self {
            Alarm::Concentrated {
                vip,
                server,
                share,
                max_share,
            } => write!(
                f,
                "the tried table of {vip} gives {server} {} of its new flows (alerts.max_share \
                 {})",
                pct(*share),
                pct(*max_share)
            ),
            Alarm::Skew {
                vip,
                backend,
                observed,
                expected,
            } => write!(
                f,
                "{backend} of {vip} took {observed} new flows where the tables predict \
                 {expected:.0}"
            ),
            Alarm::Dominant {
                vip,
                backend,
                share,
                max_share,
            } => write!(
                f,
                "{backend} took about {} of the slice's new flows of {vip} (alerts.max_share {})",
                pct(*share),
                pct(*max_share)
            ),
            Alarm::Unhealthy {
                vip,
                backend,
                reason,
            } => write!(
                f,
                "{backend}, which the slice of {vip} uses, failed its health check: {reason}"
            ),
            Alarm::NoBackend { drops } => {
                write!(f, "{drops} packets dropped as no_backend during the watch")
            }
            Alarm::Interrupted { why } => write!(
                f,
                "the live state had to change during the watch ({why}); a canary judges one \
                 change at a time: start it again"
            ),
            Alarm::Restart => f.write_str(
                "the daemon stopped during the watch; the restarted daemon rolled it back",
            ),
            Alarm::Aborted => f.write_str("aborted by an operator (`xlb canary abort`)"),
        }
    }
}

/// How traffic is judged: the config's `[alerts]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub skew_factor: f64,
    pub max_share: f64,
    /// New flows a VIP needs during the watch before its traffic is judged.
    pub min_new_flows: u64,
}

/// One VIP under canary: each backend id's share of the live (old) and tried (new) table.
#[derive(Clone, Debug, PartialEq)]
pub struct Tables {
    pub vip: VipKey,
    pub old: BTreeMap<u32, f64>,
    pub new: BTreeMap<u32, f64>,
    pub addresses: BTreeMap<u32, IpAddr>,
}

/// Each backend id's share of the slots of `table` (ids that name no backend left out).
pub fn shares(table: &[u32]) -> BTreeMap<u32, f64> {
    let mut counts: BTreeMap<u32, f64> = BTreeMap::new();
    for &id in table.iter().filter(|&&id| id != crate::rollout::NO_BACKEND) {
        *counts.entry(id).or_default() += 1.0;
    }
    let size = table.len().max(1) as f64;
    counts.values_mut().for_each(|count| *count /= size);
    counts
}

/// Judges a VIP's new flows since the canary started (`new_flows`, by backend id) against what
/// its tables predict for a slice of `slice` (0 to 1). The counters count new flows per
/// backend, not per table copy, so the slice's own flows are estimated: a backend's flows less
/// what the live table sends it from the rest of the hash space.
pub fn judge_flows(
    tables: &Tables,
    slice: f64,
    new_flows: &BTreeMap<u32, u64>,
    settings: &Settings,
) -> Option<Alarm> {
    let total: u64 = new_flows.values().sum();
    if total == 0 || total < settings.min_new_flows {
        return None;
    }
    let n = total as f64;
    let vip = describe_vip(&tables.vip);
    let share = |map: &BTreeMap<u32, f64>, id| map.get(id).copied().unwrap_or(0.0);
    let address = |id: &u32| {
        tables
            .addresses
            .get(id)
            .copied()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
    };
    let mut slice_flows = BTreeMap::new();
    for (id, &observed) in new_flows {
        let expected =
            n * (slice * share(&tables.new, id) + (1.0 - slice) * share(&tables.old, id));
        // Three standard deviations of a Poisson count, plus a few flows: no alarm on noise.
        let slack = 3.0 * expected.sqrt() + 3.0;
        if observed as f64 > settings.skew_factor * expected + slack {
            return Some(Alarm::Skew {
                vip,
                backend: address(id),
                observed,
                expected,
            });
        }
        let from_rest = n * (1.0 - slice) * share(&tables.old, id);
        slice_flows.insert(*id, (observed as f64 - from_rest).max(0.0));
    }
    let slice_total: f64 = slice_flows.values().sum();
    let several = tables.new.len() > 1 || tables.addresses.len() > 1;
    if several && slice_total >= (settings.min_new_flows as f64 * slice).max(10.0) {
        for (id, flows) in &slice_flows {
            let part = flows / slice_total;
            if part > settings.max_share {
                return Some(Alarm::Dominant {
                    vip,
                    backend: address(id),
                    share: part,
                    max_share: settings.max_share,
                });
            }
        }
    }
    None
}

/// A VIP's canary as the live maps show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipCanary {
    /// Percent of the hash space whose new flows take the tried table.
    pub percent: u32,
    /// Seconds left in the watch (0 when it is over: the daemon promotes at its next tick);
    /// absent when no watch end is recorded.
    pub seconds_left: Option<u64>,
}

/// The canary of `vip` in `snapshot`, if one runs.
pub fn of_vip(snapshot: &Snapshot, vip: &lb_common::Vip, now_unix: u64) -> Option<VipCanary> {
    (vip.canary != 0).then(|| VipCanary {
        percent: (canary::share(vip.canary) * 100.0).round() as u32,
        seconds_left: (snapshot.meta.canary_ends != 0)
            .then(|| u64::from(snapshot.meta.canary_ends).saturating_sub(now_unix)),
    })
}

impl fmt::Display for VipCanary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seconds_left {
            Some(left) => write!(f, "{}% {left}s left", self.percent),
            None => write!(f, "{}%", self.percent),
        }
    }
}

/// The VIPs under canary in `snapshot`.
pub fn running(snapshot: &Snapshot) -> Vec<VipKey> {
    snapshot
        .vips
        .iter()
        .filter(|(_, vip)| vip.canary != 0)
        .map(|(key, _)| *key)
        .collect()
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The daemon's answer to a canary apply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    pub generation: u64,
    pub percent: u32,
    pub watch_seconds: f64,
    /// The VIPs whose tables are tried, with the backends the slice sees.
    pub vips: Vec<SliceView>,
}

/// What the slice of one VIP sees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SliceView {
    pub vip: String,
    /// Each backend of the tried table and its share of the slice's new flows.
    pub backends: Vec<(IpAddr, f64)>,
    /// Share of all the VIP's new flows that go elsewhere than today (the slice times the
    /// share of slots that change).
    pub moved_share: f64,
}

/// The slice of a VIP given `tables`: the tried table's backends, and the new flows that move.
pub fn slice_view(tables: &Tables, slice: f64, moved_slots: f64) -> SliceView {
    SliceView {
        vip: describe_vip(&tables.vip),
        backends: tables
            .new
            .iter()
            .filter_map(|(id, share)| Some((*tables.addresses.get(id)?, *share)))
            .collect(),
        moved_share: slice * moved_slots,
    }
}

/// The text `xlb apply --canary` prints for a started canary of `file`.
pub fn render_started(started: &Started, file: &str) -> String {
    let mut out = format!(
        "xlb: canary of {file} started as generation {}: {}% of new flows take the new tables \
         for {}s, watched by xlb run; it promotes itself when the watch ends clean, rolls back \
         on an alarm (`xlb status` shows it; `xlb canary promote|abort` ends it now)\n",
        started.generation, started.percent, started.watch_seconds
    );
    for view in &started.vips {
        out += &render_slice(view);
    }
    out
}

/// One VIP's slice, for people.
pub fn render_slice(view: &SliceView) -> String {
    let backends: Vec<String> = view
        .backends
        .iter()
        .map(|(address, share)| format!("{address} {}", crate::diff::effect::percent(*share, 1)))
        .collect();
    format!(
        "  {}: {} of all new flows move; the slice sees {}\n",
        view.vip,
        crate::diff::effect::percent(view.moved_share, 1),
        backends.join(", ")
    )
}

/// What a canary of a config would try, as `xlb plan --canary` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CanaryPlan {
    pub percent: u32,
    /// Why `xlb apply --canary` would refuse this change, if it would.
    pub refused: Option<String>,
    /// The VIPs whose tables change: what their slices would see.
    pub vips: Vec<SliceView>,
}

/// The canary plan of the VIP plans `vips` for `percent`: a canary tries tables only, so a
/// VIP added or removed, or one whose size, forwarding or hashing changes, refuses it.
pub fn plan(vips: &[crate::plan::VipPlan], percent: u32) -> CanaryPlan {
    use crate::plan::Change;
    let slice = f64::from(percent) / 100.0;
    let refused = vips.iter().find_map(|vip| match vip.change {
        Change::Added | Change::Removed => Some(format!(
            "VIP {} is {}: a canary tries new tables for the VIPs that run; add or remove VIPs \
             with a plain apply",
            vip.vip,
            if vip.change == Change::Added {
                "added"
            } else {
                "removed"
            }
        )),
        _ if !vip.changes.is_empty() => Some(format!(
            "VIP {} changes {}: both table copies share those, so change them with a plain apply",
            vip.vip,
            vip.changes
                .iter()
                .map(|c| c.field)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => None,
    });
    let vips = vips
        .iter()
        .filter(|vip| vip.moved_share.is_some_and(|moved| moved > 0.0))
        .map(|vip| SliceView {
            vip: vip.vip.clone(),
            backends: vip
                .backends
                .iter()
                .filter(|b| b.share_after > 0.0)
                .map(|b| (b.address, b.share_after))
                .collect(),
            moved_share: slice * vip.moved_share.unwrap_or(0.0),
        })
        .collect();
    CanaryPlan {
        percent,
        refused,
        vips,
    }
}

/// The canary section of `xlb plan --canary`.
pub fn render_plan(plan: &CanaryPlan) -> String {
    let mut out = format!(
        "\ncanary {}%: new flows whose hash falls in the first {}% of the hash space take the \
         new tables; established flows keep their backends\n",
        plan.percent, plan.percent
    );
    if let Some(reason) = &plan.refused {
        out += &format!("  refused: {reason}\n");
    }
    if plan.vips.is_empty() && plan.refused.is_none() {
        out += "  no VIP's table changes: there is nothing to try on a slice\n";
    }
    for view in &plan.vips {
        out += &render_slice(view);
    }
    out
}

/// How a canary ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Finished {
    /// `promoted` or `rolled_back`.
    pub outcome: Outcome,
    /// Why it was rolled back.
    pub alarm: Option<Alarm>,
    pub message: String,
    pub generation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Promoted,
    RolledBack,
}

/// What the daemon exports about canaries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// VIPs under canary now and their percent.
    pub running: Vec<(String, f64)>,
    /// When the running watch ends, seconds since the Unix epoch (0: none).
    pub ends: u64,
    pub promotions: u64,
    /// Rollbacks by alarm kind.
    pub rollbacks: BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(old: &[(u32, f64)], new: &[(u32, f64)]) -> Tables {
        Tables {
            vip: VipKey::default(),
            old: old.iter().copied().collect(),
            new: new.iter().copied().collect(),
            addresses: (0..4)
                .map(|id| (id, IpAddr::from([198, 18, 0, 10 + id as u8])))
                .collect(),
        }
    }

    const SETTINGS: Settings = Settings {
        skew_factor: 1.5,
        max_share: 0.5,
        min_new_flows: 100,
    };

    /// Test that flows spread as both tables predict raise nothing, and too few are not judged.
    #[test]
    fn predicted_spread_raises_nothing() {
        let t = tables(&[(0, 0.5), (1, 0.5)], &[(0, 0.25), (1, 0.25), (2, 0.5)]);
        // 10% slice: 0 and 1 get 0.45+0.025 each, 2 gets 0.05.
        let flows = [(0, 475), (1, 475), (2, 50)].into_iter().collect();
        assert_eq!(judge_flows(&t, 0.1, &flows, &SETTINGS), None);
        let few = [(2, 60)].into_iter().collect();
        assert_eq!(judge_flows(&t, 0.1, &few, &SETTINGS), None);
    }

    /// What `judge_flows` says of `flows` in a canary of `slice` between two tables that
    /// both split evenly between backends 0 and 1.
    fn judge_even(slice: f64, flows: &[(u32, u64)]) -> Option<Alarm> {
        let even = [(0, 0.5), (1, 0.5)];
        let flows = flows.iter().copied().collect();
        judge_flows(&tables(&even, &even), slice, &flows, &SETTINGS)
    }

    /// Test that a backend far above its predicted flows raises skew, naming it.
    #[test]
    fn a_backend_above_prediction_raises_skew() {
        let alarm = judge_even(0.1, &[(0, 900), (1, 100)]).expect("skew");
        assert!(
            matches!(alarm, Alarm::Skew { observed: 900, .. }),
            "{alarm:?}"
        );
    }

    /// Test that a slice sent mostly to one backend raises dominant though the whole VIP
    /// looks balanced.
    #[test]
    fn a_slice_on_one_backend_raises_dominant() {
        // 20% slice all to backend 1: 0 gets 400, 1 gets 400 + 200.
        let alarm = judge_even(0.2, &[(0, 400), (1, 600)]).expect("dominant");
        assert!(
            matches!(alarm, Alarm::Dominant { backend, .. } if backend == IpAddr::from([198, 18, 0, 11])),
            "{alarm:?}"
        );
    }

    /// Test that the flags take 1 to 99 percent and durations with units, and name the fix.
    #[test]
    fn flag_values_are_checked() {
        assert_eq!(parse_percent("10"), Ok(10));
        assert_eq!(parse_percent("5%"), Ok(5));
        for bad in ["0", "100", "-3", "ten", "2.5"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_watch("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_watch("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_watch("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["30", "s", "0s", "2d", "25h", "500ms"] {
            let err = parse_watch(bad).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
    }

    /// Test that a table's shares count its slots per backend and leave empty slots out.
    #[test]
    fn shares_count_slots() {
        let got = shares(&[1, 1, 2, crate::rollout::NO_BACKEND]);
        assert_eq!(got, [(1, 0.5), (2, 0.25)].into_iter().collect());
    }
}
