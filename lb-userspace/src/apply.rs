//! `xlb apply FILE`: validate a config and make it live on the running xlb, all or nothing.
//! With an `xlb run --config` daemon owning the pins, the daemon does it (see [`crate::owner`]):
//! only for its own config file, which it then keeps live. It also checks and guards that file
//! itself, once, with what it keeps from the last check (the VIPs parsed, the tables counted),
//! and answers with the report the verb prints.

use std::path::Path;

use lb_common::VipKey;
use serde::{Deserialize, Serialize};

use crate::{
    audit,
    capacity::Capacity,
    config::{self, Environment, rules},
    control,
    diff::effect,
    exit,
    live::Snapshot,
    owner::{self, Writer},
    pins,
    rollout::{self, Applied, Desired, describe_vip},
};

/// What an apply did, or why it refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyReport {
    pub file: String,
    pub pin_path: String,
    /// Errors and warnings in the config, rendered (file:line:column: ...).
    pub diagnostics: Vec<String>,
    /// Whether the config is live now.
    pub applied: bool,
    /// Why nothing changed, when `applied` is false.
    pub refused: Option<String>,
    /// The exit code: 0 applied, 1 refused for the config's findings, 2 the file is unreadable.
    #[serde(rename = "exit_code")]
    pub code: u8,
    /// The pid of the `xlb run` daemon that made the change, when one owns the pins.
    pub daemon: Option<u32>,
    /// The new generation, when applied.
    pub generation: Option<u64>,
    pub vips: Vec<AppliedVipReport>,
    /// The canary the daemon started, for `--canary`.
    pub canary: Option<crate::canary::Started>,
}

impl ApplyReport {
    /// The report of an apply of `file` to `pin_path` that has done nothing yet.
    pub fn new(file: &Path, pin_path: &Path) -> ApplyReport {
        ApplyReport {
            file: file.display().to_string(),
            pin_path: pin_path.display().to_string(),
            diagnostics: Vec::new(),
            applied: false,
            refused: None,
            code: exit::INVALID,
            daemon: None,
            generation: None,
            vips: Vec::new(),
            canary: None,
        }
    }

    /// Refuses a config with errors: its findings, exit 1 (2 if the file is unreadable).
    pub fn reject(&mut self, rejected: &config::Rejected) {
        self.diagnostics = rejected
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect();
        self.refused = Some("the config has errors; nothing was changed".into());
        if rejected.unreadable() {
            self.code = exit::UNREADABLE;
        }
    }

    /// Records a valid config's `warnings`; false (refused) if `options` do not accept them.
    pub fn accept(&mut self, warnings: &[config::Diagnostic], options: &Options) -> bool {
        self.diagnostics = warnings.iter().map(ToString::to_string).collect();
        self.refused = options
            .refusal(warnings)
            .map(|reason| format!("{reason}; nothing was changed"));
        self.refused.is_none()
    }

    /// Records what the apply made live.
    pub fn made(&mut self, made: Made) {
        self.applied = true;
        self.code = exit::OK;
        self.generation = Some(made.generation);
        self.vips = made.vips;
    }
}

/// What an apply made live.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Made {
    pub generation: u64,
    pub vips: Vec<AppliedVipReport>,
}

impl Made {
    pub fn of(applied: &Applied) -> Made {
        Made {
            generation: applied.generation,
            vips: applied
                .vips
                .iter()
                .map(|vip| AppliedVipReport {
                    vip: describe_vip(&vip.key),
                    id: vip.vip.id,
                    active_copy: vip.vip.active,
                    backends: vip.backend_ids.len(),
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppliedVipReport {
    pub vip: String,
    pub id: u32,
    /// The table copy now live (0 or 1).
    pub active_copy: u32,
    pub backends: usize,
}

/// How strict an apply is.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Options {
    /// Apply despite warnings.
    pub allow_warnings: bool,
    /// Audit rules whose findings count as accepted warnings (see [`config::OVERRIDABLE`]).
    pub overrides: Vec<String>,
    /// Apply even if, with the live drains, disables and health kept, one server would take
    /// more than `alerts.max_share` of a VIP's new flows (also implied by overriding XLB003,
    /// which accepts exactly that).
    pub force: bool,
    /// `--canary` and `--watch`: the percent of the hash space the new tables take while the
    /// daemon watches.
    pub canary: Option<(u32, std::time::Duration)>,
}

impl Options {
    /// Options accepting `overrides` (refused if a rule cannot be overridden, naming the ones
    /// that can), warnings if `allow_warnings`, one dominant server if `force`.
    pub fn accepting(
        allow_warnings: bool,
        overrides: Vec<String>,
        force: bool,
    ) -> anyhow::Result<Options> {
        for rule in &overrides {
            anyhow::ensure!(
                config::OVERRIDABLE.contains(&rule.as_str()),
                "--override {rule}: only {} can be overridden",
                config::OVERRIDABLE.join(", ")
            );
        }
        Ok(Options {
            allow_warnings,
            overrides,
            force,
            canary: None,
        })
    }

    /// Whether one server above `alerts.max_share` is accepted: `--force`, or an override of
    /// XLB003, which accepts exactly that.
    pub fn accepts_concentration(&self) -> bool {
        self.force
            || self
                .overrides
                .iter()
                .any(|o| o == rules::ALL_WEIGHT_ON_ONE.id)
    }

    /// Why an apply with these options refuses a valid config with `warnings`, if it does:
    /// `plan` asks the same question, so it fails exactly when `apply` would refuse.
    pub fn refusal(&self, warnings: &[config::Diagnostic]) -> Option<String> {
        let overridden = |d: &config::Diagnostic| self.overrides.iter().any(|o| o == d.rule);
        let open: Vec<&str> = warnings
            .iter()
            .filter(|d| !overridden(d))
            .map(|d| d.rule)
            .collect();
        (!open.is_empty() && !self.allow_warnings).then(|| {
            format!(
                "the config has warnings ({}): fix them, or pass --allow-warnings",
                open.join(", ")
            )
        })
    }
}

/// Validates `file` and applies it to the xlb pinned where `live` (or the config) says.
/// Refuses (changing nothing) on errors, and on warnings unless allowed or overridden.
pub fn apply_file(
    file: &Path,
    env: &dyn Environment,
    live: &pins::Live,
    options: &Options,
) -> anyhow::Result<ApplyReport> {
    if options.canary.is_none()
        && let Some(report) = through_daemon(file, live, options)?
    {
        return Ok(report);
    }
    let mut report = ApplyReport::new(file, &live.pin_path(None));
    // A table already live (its record vouches for it) is counted there rather than built:
    // the same findings, without 1,000 Maglev builds at scale.
    let loaded = match audit::check_on_live_tables(
        file,
        live.pin_path.as_deref(),
        env,
        &options.overrides,
    ) {
        Ok(loaded) => loaded,
        Err(rejected) => {
            report.reject(&rejected);
            return Ok(report);
        }
    };
    let model = &loaded.model;
    if !report.accept(&loaded.warnings, options) {
        return Ok(report);
    }
    let pin_path = live.pin_path(Some(&model.global.pin_path));
    report.pin_path = pin_path.display().to_string();
    let desired = Desired::from_model(model, loaded.text.hash);
    let mut maps = pins::open(&pin_path)?;
    let capacity = Capacity::read(&maps)?;
    if let Some(refusal) = shortfall_refusal(&capacity, &desired) {
        report.refused = Some(refusal);
        return Ok(report);
    }
    let max_share = model.alerts.max_share;
    let guarded = !options.accepts_concentration();
    let made = match (owner::writer(&pin_path)?, options.canary) {
        (Writer::Daemon(daemon), canary) => {
            if guarded {
                let snapshot = Snapshot::read(&mut maps)?;
                if let Some(refusal) =
                    live_refusal(&maps, &snapshot, &capacity, &desired, max_share, options)?
                {
                    report.refused = Some(refusal);
                    return Ok(report);
                }
            }
            if let Some((percent, watch)) = canary {
                let (pid, started) =
                    daemon.ask::<crate::canary::Started>(&control::Request::Canary {
                        file: std::path::absolute(file)?,
                        overrides: options.overrides.clone(),
                        percent,
                        watch_ms: watch.as_millis() as u64,
                    })?;
                report.daemon = Some(pid);
                report.applied = true;
                report.code = exit::OK;
                report.generation = Some(started.generation);
                report.canary = Some(started);
                return Ok(report);
            }
            // Not the daemon's own file (that went through it above): it refuses.
            return Ok(ask_daemon(daemon, file, options)?.1);
        }
        (Writer::Direct(_lock), Some(_)) => {
            return Err(exit::Coded(
                exit::FAILED,
                format!(
                    "--canary needs the `xlb run --config` daemon owning {}: nobody else would \
                     watch the slice or roll it back; nothing was changed. Run the daemon, or \
                     apply without --canary",
                    pin_path.display()
                ),
            )
            .into());
        }
        (Writer::Direct(_lock), None) => {
            // Opened again under the lock: a restart may have replaced the maps since. The
            // check sees the tables the apply then writes: planned once.
            let outcome = rollout::apply_guarded(
                &mut pins::open(&pin_path)?,
                &desired,
                |maps, snapshot, capacity, planned| {
                    if !guarded {
                        return Ok(None);
                    }
                    let found = effect::concentrated_in(
                        maps, snapshot, capacity, &desired, planned, max_share, None,
                    )?;
                    Ok(concentration_refusal(&found, max_share))
                },
            )?;
            let applied = match outcome {
                Ok(applied) => applied,
                Err(refusal) => {
                    report.refused = Some(refusal);
                    return Ok(report);
                }
            };
            if let Err(err) = crate::names::record(&pin_path, model) {
                tracing::warn!("{err:#}");
            }
            Made::of(&applied)
        }
    };
    report.made(made);
    Ok(report)
}

/// The report of the running daemon whose config is `file`: it checks, guards and applies it,
/// once. That daemon is the one owning `live`'s pin path if given, else whichever running
/// daemon says so, else the one owning the pin path `file` names. `None` if none: the file is
/// then checked here first, as without a daemon.
fn through_daemon(
    file: &Path,
    live: &pins::Live,
    options: &Options,
) -> anyhow::Result<Option<ApplyReport>> {
    let daemon = match &live.pin_path {
        Some(pin_path) => daemon_for(pin_path, file),
        None => control::Daemon::keeping(file)
            .or_else(|| daemon_for(&config::named_pin_path(file)?, file)),
    };
    let Some(daemon) = daemon else {
        return Ok(None);
    };
    let (pid, mut report) = ask_daemon(daemon, file, options)?;
    report.daemon = Some(pid);
    Ok(Some(report))
}

/// A new connection to the daemon owning `pin_path` if its config is `file`. Anything amiss
/// (no daemon, no permission, another file) is said by the path without one.
fn daemon_for(pin_path: &Path, file: &Path) -> Option<control::Daemon> {
    let connect = || control::Daemon::connect(pin_path).ok().flatten();
    let (_, identity) = connect()?
        .ask::<control::Identity>(&control::Request::Identify)
        .ok()?;
    connect().filter(|_| control::same_file(file, &identity.config))
}

/// Asks `daemon` to apply `file` (its own config) with `options`: its report, as it made it.
fn ask_daemon(
    daemon: control::Daemon,
    file: &Path,
    options: &Options,
) -> anyhow::Result<(u32, ApplyReport)> {
    daemon.ask::<ApplyReport>(&control::Request::Apply {
        file: std::path::absolute(file)?,
        shown: file.to_path_buf(),
        options: options.clone(),
    })
}

/// Why an apply refuses `desired`, if the running program's `capacity` cannot hold it.
pub fn shortfall_refusal(capacity: &Capacity, desired: &Desired) -> Option<String> {
    let short = capacity.shortfalls(&Capacity::needed(&desired.vips));
    (!short.is_empty()).then(|| format!("{}; nothing was changed", short.join("; ")))
}

/// Why an apply of `desired` onto the live state (`snapshot`, under a program of `capacity`)
/// refuses, if it does: a capacity it lacks, or, unless `options` accept it, one server above
/// `max_share` of a VIP's new flows with the live drains, disables and health kept.
pub fn live_refusal(
    maps: &(impl crate::maps::Maps + ?Sized),
    snapshot: &Snapshot,
    capacity: &Capacity,
    desired: &Desired,
    max_share: f64,
    options: &Options,
) -> anyhow::Result<Option<String>> {
    if let Some(refusal) = shortfall_refusal(capacity, desired) {
        return Ok(Some(refusal));
    }
    if options.accepts_concentration() {
        return Ok(None);
    }
    let found = effect::concentrated(maps, snapshot, capacity, desired, max_share, None)?;
    Ok(concentration_refusal(&found, max_share))
}

/// [`live_refusal`]'s judgement of an apply already `planned` (of `desired`, the capacity
/// checked by [`shortfall_refusal`] first): the tables it judges are those it would write.
pub fn planned_refusal(
    maps: &(impl crate::maps::Maps + ?Sized),
    planned: &rollout::Planned,
    capacity: &Capacity,
    desired: &Desired,
    max_share: f64,
    options: &Options,
) -> anyhow::Result<Option<String>> {
    if options.accepts_concentration() {
        return Ok(None);
    }
    let found = effect::concentrated_in(
        maps,
        planned.live(),
        capacity,
        desired,
        planned.vips(),
        max_share,
        None,
    )?;
    Ok(concentration_refusal(&found, max_share))
}

/// Why an apply refuses a change that leaves `found` (a VIP and its server) above `max_share`.
fn concentration_refusal(found: &[(VipKey, effect::Server)], max_share: f64) -> Option<String> {
    let (vip, server) = found.first()?;
    Some(format!(
        "with the live state kept (drained, disabled and unhealthy backends stay out), {} of \
         the new flows of {} would go to one server, {} (at most {} allowed by \
         alerts.max_share); nothing was changed: bring the other backends back (`xlb backend \
         enable`), or pass --force if this is really meant",
        effect::percent(server.share, 0),
        describe_vip(vip),
        server.address,
        effect::percent(max_share, 0)
    ))
}

/// What `xlb apply` prints.
pub fn render(report: &ApplyReport) -> String {
    let mut out = String::new();
    for diagnostic in &report.diagnostics {
        out += &format!("{diagnostic}\n");
    }
    if let (None, Some(started)) = (&report.refused, &report.canary) {
        return out + &crate::canary::render_started(started, &report.file);
    }
    match (&report.refused, report.generation) {
        (Some(reason), _) => out += &format!("xlb: {}: not applied: {reason}\n", report.file),
        (None, Some(generation)) => {
            out += &format!(
                "xlb: applied {} as generation {generation} ({} VIPs) under {}{}\n",
                report.file,
                report.vips.len(),
                report.pin_path,
                report
                    .daemon
                    .map(|pid| format!(" through xlb run (pid {pid}), which keeps it"))
                    .unwrap_or_default()
            );
            out += &format!(
                "{:<36} {:>4} {:>6} {:>9}\n",
                "vip", "id", "copy", "backends"
            );
            for vip in &report.vips {
                out += &format!(
                    "{:<36} {:>4} {:>6} {:>9}\n",
                    vip.vip, vip.id, vip.active_copy, vip.backends
                );
            }
        }
        (None, None) => {}
    }
    out
}
