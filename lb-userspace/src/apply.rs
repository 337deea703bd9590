//! `xlb apply FILE`: validate a config and make it live on the running xlb, all or nothing.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    args::{ApplyArgs, LiveArgs},
    config::{self, Environment, HostEnvironment},
    exit, pins, report,
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
    for rule in &args.overrides {
        anyhow::ensure!(
            config::OVERRIDABLE.contains(&rule.as_str()),
            "--override {rule}: only {} can be overridden",
            config::OVERRIDABLE.join(", ")
        );
    }
    let options = Options {
        allow_warnings: args.allow_warnings,
        overrides: args.overrides.clone(),
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
    let applied = rollout::apply(&mut maps, &Desired::from_model(&model, &bytes))?;
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
