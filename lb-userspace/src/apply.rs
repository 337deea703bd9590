//! `xlb apply FILE`: validate a config and make it live on the running xlb, all or nothing.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    args::{ApplyArgs, LiveArgs},
    capacity::Capacity,
    config::{self, Environment, HostEnvironment, rules},
    effect, exit,
    live::Snapshot,
    pins, report,
    rollout::{self, Desired, describe_vip},
};

/// What an apply did, or why it refused.
#[derive(Clone, Debug, Serialize)]
pub struct ApplyReport {
    pub file: String,
    pub pin_path: String,
    /// Errors and warnings in the config, rendered (file:line:column: ...).
    pub diagnostics: Vec<String>,
    /// Whether the config is live now.
    pub applied: bool,
    /// Why nothing changed, when `applied` is false.
    pub refused: Option<String>,
    /// The new generation, when applied.
    pub generation: Option<u64>,
    pub vips: Vec<AppliedVipReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AppliedVipReport {
    pub vip: String,
    pub id: u32,
    /// The table copy now live (0 or 1).
    pub active_copy: u32,
    pub backends: usize,
}

pub fn run(args: ApplyArgs) -> anyhow::Result<u8> {
    check_overrides(&args.overrides)?;
    let options = Options {
        allow_warnings: args.allow_warnings,
        overrides: args.overrides.clone(),
        force: args.force,
    };
    let report = apply_file(&args.file, &HostEnvironment, &args.live, &options)?;
    let code = if report.applied {
        exit::OK
    } else {
        exit::INVALID
    };
    report::emit(args.live.output, &report, render)?;
    Ok(code)
}

/// How strict an apply is.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Apply despite warnings.
    pub allow_warnings: bool,
    /// Audit rules whose findings count as accepted warnings (see [`config::OVERRIDABLE`]).
    pub overrides: Vec<String>,
    /// Apply even if, with the live drains, disables and health kept, one server would take
    /// more than `alerts.max_share` of a VIP's new flows (also implied by overriding XLB003,
    /// which accepts exactly that).
    pub force: bool,
}

/// Refuses an `--override` of a rule that cannot be overridden, naming the ones that can.
pub fn check_overrides(overrides: &[String]) -> anyhow::Result<()> {
    for rule in overrides {
        anyhow::ensure!(
            config::OVERRIDABLE.contains(&rule.as_str()),
            "--override {rule}: only {} can be overridden",
            config::OVERRIDABLE.join(", ")
        );
    }
    Ok(())
}

impl Options {
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
    live: &LiveArgs,
    options: &Options,
) -> anyhow::Result<ApplyReport> {
    let mut report = ApplyReport {
        file: file.display().to_string(),
        pin_path: live.pin_path(None).display().to_string(),
        diagnostics: Vec::new(),
        applied: false,
        refused: None,
        generation: None,
        vips: Vec::new(),
    };
    let (model, warnings) = match config::load_overriding(file, env, &options.overrides) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            report.diagnostics = diagnostics.iter().map(ToString::to_string).collect();
            report.refused = Some("the config has errors; nothing was changed".into());
            return Ok(report);
        }
    };
    report.diagnostics = warnings.iter().map(ToString::to_string).collect();
    if let Some(reason) = options.refusal(&warnings) {
        report.refused = Some(format!("{reason}; nothing was changed"));
        return Ok(report);
    }
    let pin_path = live.pin_path(Some(&model.global.pin_path));
    report.pin_path = pin_path.display().to_string();
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut maps = pins::open(&pin_path)?;
    let desired = Desired::from_model(&model, &bytes);
    if !options.force
        && !options
            .overrides
            .iter()
            .any(|o| o == rules::ALL_WEIGHT_ON_ONE.id)
    {
        let snapshot = Snapshot::read(&mut maps)?;
        let capacity = Capacity::read(&maps)?;
        let max_share = model.alerts.max_share;
        let found = effect::concentrated(&maps, &snapshot, &capacity, &desired, max_share, None)?;
        if let Some((vip, server)) = found.first() {
            report.refused = Some(format!(
                "with the live state kept (drained, disabled and unhealthy backends stay out), \
                 {} of the new flows of {} would go to one server, {} (at most {} allowed by \
                 alerts.max_share); nothing was changed: bring the other backends back (`xlb \
                 backend enable`), or pass --force if this is really meant",
                effect::percent(server.share, 0),
                describe_vip(vip),
                server.address,
                effect::percent(max_share, 0)
            ));
            return Ok(report);
        }
    }
    let applied = rollout::apply(&mut maps, &desired)?;
    report.applied = true;
    report.generation = Some(applied.generation);
    report.vips = applied
        .vips
        .iter()
        .map(|vip| AppliedVipReport {
            vip: describe_vip(&vip.key),
            id: vip.vip.id,
            active_copy: vip.vip.active,
            backends: vip.backend_ids.len(),
        })
        .collect();
    Ok(report)
}

fn render(report: &ApplyReport) -> String {
    let mut out = String::new();
    for diagnostic in &report.diagnostics {
        out += &format!("{diagnostic}\n");
    }
    match (&report.refused, report.generation) {
        (Some(reason), _) => out += &format!("xlb: {}: not applied: {reason}\n", report.file),
        (None, Some(generation)) => {
            out += &format!(
                "xlb: applied {} as generation {generation} ({} VIPs) under {}\n",
                report.file,
                report.vips.len(),
                report.pin_path
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
