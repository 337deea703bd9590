//! The daemon's side of a canary apply: it starts the canary, judges the slice at every tick
//! (the outage guards' effect model on the tried tables, traffic against both tables, health
//! of the backends the slice uses, no_backend drops), and ends it: rolled back on the first
//! alarm, promoted (and written into the daemon's config file) when the watch ends clean.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
};
use lb_common::{BackendCounter, Reason, VipKey, map_names};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::Daemon;
use crate::{
    canary::{self, Alarm, CanaryAction, Finished, Outcome, Started, Tables},
    capacity::Capacity,
    config::{self, HostEnvironment},
    control::Refusal,
    counters::Totals,
    diff::effect,
    exit,
    health::{self, Checker, Health, Probe, Target, Tracker},
    live::Snapshot,
    rollout::{self, live_address},
    trusted_dir,
};

/// A canary being watched.
pub(super) struct Running {
    /// The candidate file, its bytes and the overrides it was accepted with.
    file: PathBuf,
    bytes: Vec<u8>,
    overrides: Vec<String>,
    percent: u32,
    ends: Instant,
    tables: Vec<Tables>,
    /// New flows per backend id, and no_backend drops, when the canary started.
    base_flows: BTreeMap<u32, u64>,
    base_no_backend: u64,
    settings: canary::Settings,
    /// The effect model's verdict on the tried tables, raised at the first tick.
    concentrated: Option<Alarm>,
    /// Health checks of the backends the slice uses, as the candidate configures them.
    checker: Checker,
    tracker: Tracker,
    targets: Vec<Target>,
    pub(super) probes: mpsc::Receiver<Probe>,
}

impl Daemon {
    /// Starts a canary of the candidate `file` on `percent` of the hash space for `watch`.
    pub(super) fn start_canary(
        &mut self,
        ebpf: &mut Ebpf,
        file: &Path,
        overrides: Vec<String>,
        percent: u32,
        watch: Duration,
    ) -> Result<Started, Refusal> {
        let refuse = |code, message: String| Refusal { code, message };
        if self.canary.is_some() {
            return Err(refuse(
                exit::FAILED,
                "a canary is running already: `xlb canary promote|abort` ends it".to_owned(),
            ));
        }
        if crate::control::same_file(file, &self.file) {
            return Err(refuse(
                exit::FAILED,
                format!(
                    "{} is the daemon's own config, which it makes live within a second of any \
                     change, so it cannot be tried on a slice: write the change to another \
                     file and canary that one (promoted, it is written into {})",
                    file.display(),
                    self.file.display()
                ),
            ));
        }
        let bytes = config::read_bytes(file).map_err(|err| {
            refuse(
                exit::UNREADABLE,
                format!("cannot read {}: {err}", file.display()),
            )
        })?;
        let config::Loaded {
            model,
            warnings,
            text,
            ..
        } = config::check_bytes_overriding(&bytes, file, &HostEnvironment, &overrides).map_err(
            |rejected| {
                let rendered: Vec<String> = rejected
                    .diagnostics
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                refuse(
                    exit::INVALID,
                    format!(
                        "{} is invalid; nothing was changed:\n{}",
                        file.display(),
                        rendered.join("\n")
                    ),
                )
            },
        )?;
        for warning in &warnings {
            warn!("{warning}");
        }
        if model.global.pin_path != self.pin_path
            || model.global.interface != self.model.global.interface
        {
            return Err(refuse(
                exit::FAILED,
                "the pin path and the interface cannot change while running".to_owned(),
            ));
        }
        let failed = |err: anyhow::Error| refuse(exit::code_of(&err), format!("{err:#}"));
        let desired = self.desired_with_health(&model, text.hash);
        let before = Snapshot::read(ebpf).map_err(failed)?;
        let capacity = Capacity::read(ebpf).map_err(failed)?;
        let max_share = model.alerts.max_share;
        let concentrated =
            effect::concentrated(ebpf, &before, &capacity, &desired, max_share, None)
                .map_err(failed)?
                .into_iter()
                .next()
                .map(|(vip, server)| Alarm::Concentrated {
                    vip: rollout::describe_vip(&vip),
                    server: server.address,
                    share: server.share,
                    max_share,
                });
        let threshold = lb_common::canary::threshold(percent);
        let ends_unix = canary::now_unix() + watch.as_secs().max(1);
        let (applied, tried) =
            rollout::apply_canary(ebpf, &desired, threshold, ends_unix as u32).map_err(failed)?;
        self.own_generation = applied.generation;
        // From here the slice is live: if it cannot be watched, it is undone.
        let Watched {
            tables,
            views,
            base_flows,
            base_no_backend,
        } = match what_to_watch(ebpf, &before, &applied, &tried, percent) {
            Ok(watched) => watched,
            Err(err) => {
                let _ = rollout::end_canary(ebpf, false);
                let _ = self.reconcile(ebpf, "the canary could not be watched");
                return Err(failed(err.context("the canary was rolled back at once")));
            }
        };
        // The slice's backends are checked as the candidate configures them, from "up".
        let used: BTreeSet<(VipKey, std::net::IpAddr)> = tables
            .iter()
            .flat_map(|t| {
                t.new
                    .keys()
                    .filter_map(|id| Some((t.vip, *t.addresses.get(id)?)))
            })
            .collect();
        let targets: Vec<Target> = health::targets(&model)
            .into_iter()
            .filter(|target| {
                model.vips.iter().any(|vip| {
                    vip.name == target.vip && used.contains(&(vip.key(), target.backend))
                })
            })
            .collect();
        let (sender, probes) = mpsc::channel(1024);
        let started = Started {
            generation: applied.generation,
            percent,
            watch_seconds: watch.as_secs_f64(),
            vips: views,
        };
        warn!(file = %file.display(), percent, watch = ?watch, vips = tables.len(),
            "canary started: the slice takes the new tables while the daemon watches");
        self.canary = Some(Running {
            file: file.to_path_buf(),
            bytes,
            overrides,
            percent,
            ends: Instant::now() + watch,
            tables,
            base_flows,
            base_no_backend,
            settings: canary::Settings {
                skew_factor: model.alerts.skew_factor,
                max_share,
                min_new_flows: model.alerts.min_new_flows,
            },
            concentrated,
            checker: Checker::start(self.probe_runtime.handle(), targets.clone(), sender),
            tracker: Tracker::new(targets.len()),
            targets,
            probes,
        });
        self.export_canary(ends_unix);
        Ok(started)
    }

    /// Judges the running canary (every tick): rolls it back on the first alarm, promotes it
    /// when the watch is over.
    pub(super) fn judge_canary(&mut self, ebpf: &mut Ebpf) {
        let Some(running) = &mut self.canary else {
            return;
        };
        let alarm = match running.concentrated.take() {
            Some(alarm) => Some(alarm),
            None => match judge_traffic(ebpf, running) {
                Ok(alarm) => alarm,
                Err(err) => return error!("judging the canary: {err:#}"),
            },
        };
        let due = Instant::now() >= running.ends;
        if alarm.is_some() || due {
            let _ = self.end_canary_with(ebpf, alarm);
        }
    }

    /// A health probe of a backend the slice uses: failing its checks is an alarm.
    pub(super) fn canary_probed(&mut self, ebpf: &mut Ebpf, probe: &Probe) {
        let Some(running) = &mut self.canary else {
            return;
        };
        let Some(target) = running.targets.get(probe.target_index) else {
            return;
        };
        let check = &target.check;
        let Some(transition) =
            running
                .tracker
                .record(probe.target_index, probe, check.rise, check.fall)
        else {
            return;
        };
        if transition.health == Health::Down {
            let alarm = Alarm::Unhealthy {
                vip: target.vip.clone(),
                backend: target.backend,
                reason: transition.reason.to_string(),
            };
            let _ = self.end_canary_with(ebpf, Some(alarm));
        }
    }

    /// `xlb canary promote|abort`.
    pub(super) fn end_canary_by_hand(
        &mut self,
        ebpf: &mut Ebpf,
        action: CanaryAction,
    ) -> Result<Finished, Refusal> {
        if self.canary.is_none() {
            return Err(Refusal {
                code: exit::FAILED,
                message: "no canary is running".to_owned(),
            });
        }
        let alarm = match action {
            CanaryAction::Promote => None,
            CanaryAction::Abort => Some(Alarm::Aborted),
        };
        self.end_canary_with(ebpf, alarm).map_err(|err| Refusal {
            code: exit::code_of(&err),
            message: format!("{err:#}"),
        })
    }

    /// Ends the running canary at once because the live state must change for `why` (the
    /// caller then applies that change, which cleans up after the canary).
    pub(super) fn interrupt_canary(&mut self, ebpf: &mut Ebpf, why: &str) {
        if let Some(running) = self.canary.take() {
            let alarm = Alarm::Interrupted {
                why: why.to_owned(),
            };
            self.close(ebpf, running, Some(&alarm));
        }
    }

    /// Promotes (no alarm) or rolls back the running canary.
    fn end_canary_with(
        &mut self,
        ebpf: &mut Ebpf,
        alarm: Option<Alarm>,
    ) -> anyhow::Result<Finished> {
        let running = self.canary.take().context("no canary is running")?;
        let mut alarm = alarm;
        // The promoted config replaces the file in one step (the watch never reads half of
        // it) and keeps the file's mode.
        let mode =
            std::fs::metadata(&self.file).map_or(0o644, |meta| meta.permissions().mode() & 0o7777);
        if alarm.is_none()
            && let Err(err) = trusted_dir::replace(&self.file, &running.bytes, mode)
        {
            alarm = Some(Alarm::Interrupted {
                why: format!(
                    "writing the promoted config into {} failed: {err:#}",
                    self.file.display()
                ),
            });
        }
        let (file, bytes, overrides) = (
            running.file.clone(),
            running.bytes.clone(),
            running.overrides.clone(),
        );
        self.close(ebpf, running, alarm.as_ref());
        let applied = match &alarm {
            None => self
                .adopt(ebpf, bytes, &overrides)
                .map_err(|refusal| anyhow::Error::from(exit::Coded(refusal.code, refusal.message))),
            Some(_) => self.reconcile(ebpf, "canary rollback"),
        }?;
        Ok(Finished {
            outcome: if alarm.is_none() {
                Outcome::Promoted
            } else {
                Outcome::RolledBack
            },
            message: match &alarm {
                None => format!(
                    "{} is live for every new flow and written into {}",
                    file.display(),
                    self.file.display()
                ),
                Some(alarm) => alarm.to_string(),
            },
            alarm,
            generation: applied.generation,
        })
    }

    /// Ends the canary's thresholds (every new flow takes the live tables), stops its checks
    /// and says so; the whole apply that follows promotes or cleans up.
    fn close(&mut self, ebpf: &mut Ebpf, running: Running, alarm: Option<&Alarm>) {
        if let Err(err) = rollout::end_canary(ebpf, alarm.is_none()) {
            error!("ending the canary's thresholds failed: {err:#}");
        }
        running.checker.stop();
        match alarm {
            Some(alarm) => warn!(file = %running.file.display(), alarm = alarm.kind(),
                "canary rolled back: {alarm}"),
            None => info!(file = %running.file.display(), percent = running.percent,
                "canary promoted: the watch ended clean"),
        }
        if let Ok(mut extra) = self.shared.lock() {
            let metrics = &mut extra.canary;
            metrics.running.clear();
            metrics.ends = 0;
            match alarm {
                Some(alarm) => *metrics.rollbacks.entry(alarm.kind()).or_default() += 1,
                None => metrics.promotions += 1,
            }
        }
    }

    /// Records that a canary left by a stopped daemon was rolled back at start.
    pub fn rolled_back_at_start(&mut self) {
        if let Ok(mut extra) = self.shared.lock() {
            *extra
                .canary
                .rollbacks
                .entry(Alarm::Restart.kind())
                .or_default() += 1;
        }
    }

    fn export_canary(&self, ends_unix: u64) {
        let Some(running) = &self.canary else { return };
        if let Ok(mut extra) = self.shared.lock() {
            extra.canary.running = running
                .tables
                .iter()
                .map(|t| (rollout::describe_vip(&t.vip), f64::from(running.percent)))
                .collect();
            extra.canary.ends = ends_unix;
        }
    }
}

/// What a canary is judged on, from its start.
struct Watched {
    tables: Vec<Tables>,
    /// What each tried VIP's slice sees, for the operator.
    views: Vec<canary::SliceView>,
    base_flows: BTreeMap<u32, u64>,
    base_no_backend: u64,
}

/// What a canary just started is judged on: each tried VIP's tables (by backend id, with
/// addresses), what its slice sees, and the new-flow and no_backend counts to judge from.
fn what_to_watch(
    ebpf: &mut Ebpf,
    before: &Snapshot,
    applied: &rollout::Applied,
    tried: &[VipKey],
    percent: u32,
) -> anyhow::Result<Watched> {
    let after = Snapshot::read(ebpf)?;
    let mut tables = Vec::new();
    let mut views = Vec::new();
    for applied_vip in applied.vips.iter().filter(|a| tried.contains(&a.key)) {
        let Some(live) = before.vip(&applied_vip.key) else {
            continue;
        };
        // The live copy: the canary wrote the other one.
        let old = before.active_table(ebpf, live)?;
        let moved = old
            .iter()
            .zip(&applied_vip.table)
            .filter(|(a, b)| a != b)
            .count() as f64
            / old.len().max(1) as f64;
        let old_shares = canary::shares(&old);
        let new_shares = canary::shares(&applied_vip.table);
        let addresses = old_shares
            .keys()
            .chain(new_shares.keys())
            .filter_map(|id| Some((*id, live_address(after.backends.get(*id as usize)?))))
            .collect();
        let vip_tables = Tables {
            vip: applied_vip.key,
            old: old_shares,
            new: new_shares,
            addresses,
        };
        views.push(canary::slice_view(
            &vip_tables,
            f64::from(percent) / 100.0,
            moved,
        ));
        tables.push(vip_tables);
    }
    let ids: BTreeSet<u32> = tables
        .iter()
        .flat_map(|t| t.addresses.keys())
        .copied()
        .collect();
    Ok(Watched {
        base_flows: new_flows(ebpf, &ids)?,
        base_no_backend: no_backend(ebpf)?,
        tables,
        views,
    })
}

/// The traffic alarms: no_backend drops, then each VIP's new flows against its tables.
fn judge_traffic(ebpf: &Ebpf, running: &Running) -> anyhow::Result<Option<Alarm>> {
    let drops = no_backend(ebpf)?.saturating_sub(running.base_no_backend);
    if drops > 0 {
        return Ok(Some(Alarm::NoBackend { drops }));
    }
    let slice = f64::from(running.percent) / 100.0;
    for tables in &running.tables {
        let ids: BTreeSet<u32> = tables.addresses.keys().copied().collect();
        let now = new_flows(ebpf, &ids)?;
        let since: BTreeMap<u32, u64> = now
            .iter()
            .map(|(id, n)| {
                let base = running.base_flows.get(id).copied().unwrap_or(0);
                (*id, n.saturating_sub(base))
            })
            .collect();
        if let Some(alarm) = canary::judge_flows(tables, slice, &since, &running.settings) {
            return Ok(Some(alarm));
        }
    }
    Ok(None)
}

/// New flows counted per backend id (summed over CPUs).
fn new_flows(ebpf: &Ebpf, ids: &BTreeSet<u32>) -> anyhow::Result<BTreeMap<u32, u64>> {
    let counters: PerCpuArray<&MapData, BackendCounter> = PerCpuArray::try_from(
        ebpf.map(map_names::BACKEND_STATS)
            .context("no backend counters")?,
    )
    .context("the backend counter map is not a per-CPU array of backend counters")?;
    ids.iter()
        .map(|&id| {
            let per_cpu = counters
                .get(&id, 0)
                .with_context(|| format!("reading the counters of backend {id}"))?;
            Ok((id, per_cpu.iter().map(|c| c.new_flows).sum()))
        })
        .collect()
}

/// Packets dropped as no_backend so far.
fn no_backend(ebpf: &Ebpf) -> anyhow::Result<u64> {
    Ok(Totals::read(ebpf)?.reason(Reason::NoBackend).packets)
}
