//! `xlb plan FILE`: what applying a config would change, tested on the real XDP program before
//! anything touches the running state.
//!
//! The config is validated first (errors stop the plan; an all-weight-on-one VIP, the outage
//! xlb was born from, is called out). The live state, if an xlb runs, is read but never
//! written. The new config is applied to a separate scratch instance of the program (loaded
//! with the live capacity, unattached, unpinned, unloaded when the plan ends), and synthetic new
//! flows go through it with BPF_PROG_TEST_RUN: the kernel's choices are counted per backend and
//! compared, flow by flow, with the userspace prediction (flow hash and new table).
//!
//! The sample flows come from random clients, or from real ones (`--clients`, `--pcap`): with
//! `hash = "source"` a VIP's spread follows its clients, and only a sample of the real ones
//! shows a service behind a few NAT addresses landing on a few servers. Where the kernel sent
//! the sample is reported per physical server ([`crate::diff::effect`]); all of it on one server is
//! an outage. The plan fails (exit 1) when `apply` with the same options would refuse.
//!
//! `--output json` prints one [`PlanReport`]: `file`, `code` (the exit code), `valid`,
//! `errors`, `warnings`, `diagnostics` (as `validate` prints them), `outages` (XLB003 findings
//! and sample outages: `vip`, `address`, `backend` (the server), `message`), `refusal` (why
//! `apply` would refuse), `clients` (the client file), `live` (`loaded`, `pin_path`,
//! `generation`, `capacity`), `global` (changed run-time settings), `vips` (each with `name`,
//! `vip`, `change`, `changes`, `moved_share`, `backends` with `share_before`, `share_after`,
//! `kernel_share`, `servers` (the kernel's sample per physical server), and `kernel` with the
//! agreement counts), `sample`, `summary` and, with `--canary`, `canary` (`percent`,
//! `refused`, `vips` with the backends the slice sees and the share of new flows that moves).
//! Shares are fractions of 1.

pub mod clients;
mod kernel;
mod sample;
mod sides;
mod text;

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
};

use anyhow::Context as _;
use lb_common::{
    PROGRAM_NAME,
    service::{BACKEND_DISABLED, BACKEND_DRAINED, BACKEND_UNHEALTHY},
};
use serde::Serialize;

use crate::{
    apply,
    capacity::{Capacity, Memory},
    config::{self, Diagnostic, Environment, Model, VipModel, rules},
    diff::{
        self,
        effect::{self, Effect, Entry},
    },
    exit, object, pins,
    rollout::{self, Desired},
};
use clients::Clients;

/// The default `--seed`: the same sample on every run and host unless asked otherwise.
pub const DEFAULT_SEED: u64 = 0x786c_625f_706c_616e; // "xlb_plan"

/// The text report of `report`, as `xlb plan` prints it.
pub fn render_text(report: &PlanReport) -> String {
    text::render(report)
}

/// How many synthetic new flows per VIP go through the kernel, and the seed that picks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub flows: u32,
    pub seed: u64,
}

impl Default for Sample {
    fn default() -> Self {
        Sample {
            flows: 10_000,
            seed: DEFAULT_SEED,
        }
    }
}

/// Everything that shapes a plan besides the config and the live state.
#[derive(Clone, Debug)]
pub struct Options {
    pub sample: Sample,
    /// Where the sample flows come from.
    pub clients: Clients,
    /// The file the clients came from (for the report).
    pub clients_source: Option<String>,
    /// What `apply` would be told (warnings allowed, rules overridden): the plan fails exactly
    /// when that apply would refuse.
    pub accept: apply::Options,
    /// `--canary`: also say what a canary of this percent would try.
    pub canary: Option<u32>,
}

impl Options {
    /// Options sampling `sample` flows from the clients in `clients_file` or the flows in
    /// `pcap` (random clients without either), judged as an apply with `accept` would judge.
    pub fn reading(
        sample: Sample,
        clients_file: Option<&Path>,
        pcap: Option<&Path>,
        accept: apply::Options,
        canary: Option<u32>,
    ) -> anyhow::Result<Options> {
        let (clients, source) = match (clients_file, pcap) {
            (Some(path), _) => (clients::read_addresses(path)?, Some(path)),
            (None, Some(path)) => (clients::read_pcap(path)?, Some(path)),
            (None, None) => (Clients::Synthetic, None),
        };
        Ok(Options {
            sample,
            clients,
            clients_source: source.map(|p| p.display().to_string()),
            accept,
            canary,
        })
    }
}

/// Everything `xlb plan` found; see the module doc for the JSON shape.
#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    pub file: String,
    /// The exit code: OK, INVALID (config errors), UNREADABLE, or FAILED (the kernel disagreed
    /// with the prediction: a bug).
    pub code: u8,
    /// The config has no errors.
    pub valid: bool,
    pub errors: usize,
    pub warnings: usize,
    /// Every finding of the validation, errors first.
    pub diagnostics: Vec<Diagnostic>,
    /// VIPs whose every new flow would go to one server (XLB003, or the kernel's spread of a
    /// real client sample): the plan fails.
    pub outages: Vec<Outage>,
    /// Why `xlb apply` with the same options would refuse this config, if it would.
    pub refusal: Option<String>,
    /// The file of real clients (`--clients`) or flows (`--pcap`) the sample came from; absent
    /// for random synthetic clients.
    pub clients: Option<String>,
    /// The running state planned against; absent when the config was refused.
    pub live: Option<LiveState>,
    /// Changed run-time settings (MTU, tunnel sources).
    pub global: Vec<FieldChange>,
    /// The config's VIPs in file order, then the live VIPs it removes.
    pub vips: Vec<VipPlan>,
    /// Absent when the config was refused.
    pub sample: Option<Sample>,
    pub summary: Summary,
    /// With `--canary`: what the slice would see, or why a canary would be refused.
    pub canary: Option<crate::canary::CanaryPlan>,
}

/// Every new flow of `vip` would go to one server, `backend`: an XLB003 finding, or what the
/// kernel did with a real client sample.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outage {
    pub rule: &'static str,
    /// The VIP's name.
    pub vip: String,
    /// The VIP's address (as written in the config).
    pub address: String,
    /// The server that would take every new flow.
    pub backend: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveState {
    /// Whether an xlb's pins were found; if not the plan is against an empty state.
    pub loaded: bool,
    pub pin_path: String,
    pub generation: Option<u64>,
    /// Unix seconds of the last apply.
    pub applied_at: Option<u64>,
    /// The capacity the scratch program was loaded with: the live one, or the config's when
    /// nothing runs or the running program cannot hold the config.
    pub capacity: CapacityInfo,
    /// The config's `[capacity]`: what the next `xlb run` loads.
    pub config_capacity: CapacityInfo,
    /// What the config's capacity takes in the kernel.
    pub memory: Memory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CapacityInfo {
    pub vips: u32,
    pub backends_per_vip: u32,
    pub table_slots: u32,
}

impl From<Capacity> for CapacityInfo {
    fn from(capacity: Capacity) -> Self {
        CapacityInfo {
            vips: capacity.vips,
            backends_per_vip: capacity.backends_per_vip,
            table_slots: capacity.table_slots,
        }
    }
}

pub use crate::diff::Change;

/// One setting that differs: its name and both values as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: &'static str,
    pub before: String,
    pub after: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct VipPlan {
    /// The config's name; absent for a live VIP the config removes.
    pub name: Option<String>,
    /// `address:port/protocol`.
    pub vip: String,
    pub change: Change,
    /// `forwarding`, `hash`, `table_size`.
    pub changes: Vec<FieldChange>,
    /// Settings after the change (before, for a removed VIP).
    pub forwarding: &'static str,
    pub hash: &'static str,
    pub table_size: u32,
    /// Share of the VIP's new flows that would go to another backend than today; absent for
    /// an added VIP. Established flows keep their backend through the flow table (unless it
    /// is removed or disabled).
    pub moved_share: Option<f64>,
    /// `moved_share` is an estimate from the sample (the table size or hash mode changes, so
    /// slots cannot be compared one to one) rather than exact.
    pub moved_estimated: bool,
    /// Ids of the config warnings about this VIP (e.g. XLB001).
    pub warnings: Vec<&'static str>,
    /// Plain-language remarks (a removed VIP, a live table that differs from its config).
    pub notes: Vec<String>,
    /// The config's backends in file order, then the live ones it removes.
    pub backends: Vec<BackendPlan>,
    /// The kernel check; absent for a removed VIP (or an empty sample).
    pub kernel: Option<KernelCheck>,
    /// Where the kernel sent the sample, by physical server (entries of one server added up).
    pub servers: Vec<effect::Server>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackendPlan {
    pub address: IpAddr,
    pub change: Change,
    /// `weight`, `mac`.
    pub changes: Vec<FieldChange>,
    /// After the change (before, for a removed backend).
    pub weight: u32,
    pub mac: String,
    /// `drained` or `disabled` by an operator: kept by an apply, so out of the new table too.
    pub state: Option<&'static str>,
    /// Expected share of new flows: its slots in the live table / table size.
    pub share_before: f64,
    /// Expected share of new flows: its slots in the new table / table size.
    pub share_after: f64,
    /// Sample flows the kernel sent to this backend.
    pub kernel_flows: Option<u32>,
    /// `kernel_flows` / flows in the sample.
    pub kernel_share: Option<f64>,
    /// Ids of the config warnings about this backend (e.g. XLB002).
    pub warnings: Vec<&'static str>,
}

/// Synthetic new flows through the scratch program, compared with the prediction.
#[derive(Clone, Debug, Serialize)]
pub struct KernelCheck {
    pub flows: u32,
    /// `tcp-syn` or `udp`.
    pub packet: &'static str,
    /// Flows the kernel sent where userspace predicted (or dropped when no backend was).
    pub agreed: u32,
    pub disagreed: u32,
    /// Flows the kernel dropped because their slot has no backend, as predicted (counted in
    /// `agreed` too).
    pub dropped: u32,
    /// Every flow agreed. If not, it is a bug in xlb and the plan fails.
    pub agrees: bool,
    /// Largest |kernel_share - share_after| over the backends.
    pub max_deviation: f64,
    /// The first few disagreements.
    pub disagreements: Vec<Disagreement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub predicted: String,
    pub observed: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub vips_added: usize,
    pub vips_removed: usize,
    pub vips_changed: usize,
    pub vips_unchanged: usize,
    pub backends_added: usize,
    pub backends_removed: usize,
    pub backends_changed: usize,
    pub flows_checked: u64,
    pub flows_agreed: u64,
}

/// Plans the config at `file` against the xlb `live` points at (or the config's pin path).
/// Changes nothing in the running state.
pub fn plan_file(
    file: &Path,
    env: &dyn Environment,
    live: &pins::Live,
    sample: &Sample,
) -> anyhow::Result<PlanReport> {
    let options = Options {
        sample: *sample,
        clients: Clients::Synthetic,
        clients_source: None,
        accept: apply::Options::default(),
        canary: None,
    };
    plan_with(file, env, live, &options)
}

/// Plans the config at `file` as [`plan_file`] does, with the sample, clients and apply
/// options of `options`.
pub fn plan_with(
    file: &Path,
    env: &dyn Environment,
    live: &pins::Live,
    options: &Options,
) -> anyhow::Result<PlanReport> {
    let sample = &options.sample;
    let config::Loaded {
        model,
        warnings,
        text,
        ..
    } = match config::load_overriding(file, env, &options.accept.overrides) {
        Ok(loaded) => loaded,
        Err(rejected) => return Ok(refused(file, rejected)),
    };
    let pin_path = live.pin_path(Some(&model.global.pin_path));
    let current = sides::read_live(&pin_path)?;
    let desired = desired(&model, text.hash, current.as_ref());
    // What an apply would execute: the same diff against the same live state.
    let changes = match &current {
        Some(live) => diff::diff(&desired, &Desired::observed(&live.snapshot, &live.capacity)),
        None => diff::diff(
            &desired,
            &Desired {
                vips: Vec::new(),
                ..desired.clone()
            },
        ),
    };
    // Against the running program's capacity; a config it cannot hold is staged at its own
    // capacity (what a restart would load) and refused, as `apply` refuses it.
    let shortfalls = current.as_ref().map_or_else(Vec::new, |l| {
        l.capacity.shortfalls(&Capacity::needed(&desired.vips))
    });
    let capacity = match &current {
        Some(live) if shortfalls.is_empty() => live.capacity,
        _ => model.capacity,
    };

    // A program of our own to stage the new tables in: the running one's maps are only read.
    let mut scratch =
        object::load_sized(object::XDP_OBJECT, PROGRAM_NAME, &capacity.map_sizes())
            .context("loading a scratch copy of the XDP program to test the new tables in")?;
    let applied = rollout::apply(&mut scratch, &desired).context(
        "staging the config in a scratch copy of the program failed, so `xlb apply` would \
         fail too",
    )?;
    let program = object::xdp_program(&mut scratch, PROGRAM_NAME)?;

    let mut vips = Vec::new();
    let mut outages = Vec::new();
    let mut concentrated: Vec<String> = Vec::new();
    // The diff lists the config's VIPs first, in its order.
    for ((index, vip), change) in model.vips.iter().enumerate().zip(&changes.vips) {
        let key = vip.key();
        let (want, done) = desired
            .vips
            .iter()
            .zip(&applied.vips)
            .find(|(want, _)| want.key == key)
            .context("the scratch apply lost a VIP: this is a bug in xlb")?;
        let after = sides::Side::applied(done, want);
        let before = current.as_ref().and_then(|l| l.vips.get(&key));
        let before_effect = before.map(sides::Side::effect);
        if !options.accept.accepts_concentration()
            && let after_effect = after.effect()
            && let Some(server) = effect::worse_concentration(
                &after_effect,
                before_effect.as_ref(),
                model.alerts.max_share,
            )
        {
            concentrated.push(format!(
                "with the live drains and disables kept, {} of the new flows of vip \"{}\" \
                 would go to one server, {} (at most {} allowed by alerts.max_share): bring \
                 the other backends back, or pass --force",
                effect::percent(server.share, 0),
                vip.name,
                server.address,
                effect::percent(model.alerts.max_share, 0)
            ));
        }
        // Ports a more specific VIP of this address and protocol takes from a port-0 VIP.
        let claimed: Vec<u16> = model
            .vips
            .iter()
            .filter(|other| {
                vip.port == 0
                    && other.port != 0
                    && other.address == vip.address
                    && other.protocol == vip.protocol
            })
            .map(|other| other.port)
            .collect();
        let probes =
            sample::client_probes(vip, &claimed, &options.clients, sample.flows, sample.seed);
        let outcome = if probes.is_empty() {
            None
        } else {
            Some(
                kernel::check(program, vip, &after, &probes).with_context(|| {
                    format!(
                        "pushing sample flows of vip \"{}\" through the scratch program",
                        vip.name
                    )
                })?,
            )
        };
        let mut plan = sides::vip_plan(
            Some(vip),
            before,
            Some(&after),
            change,
            outcome,
            &probes,
            &vip_warnings(&warnings, index),
        );
        let spread = sample_effect(vip, &plan);
        if let Some(server) = spread.as_ref().and_then(Effect::all_on_one)
            && options.clients != Clients::Synthetic
        {
            outages.push(Outage {
                rule: rules::ALL_WEIGHT_ON_ONE.id,
                vip: vip.name.clone(),
                address: vip.address.to_string(),
                backend: server.address.to_string(),
                message: format!(
                    "the kernel sent every one of the {} sample flows of vip \"{}\" from the \
                     clients in {} to one server, {}",
                    spread.as_ref().map_or(0, |e| e.total),
                    vip.name,
                    options.clients_source.as_deref().unwrap_or("the sample"),
                    server.address
                ),
            });
        }
        plan.servers = spread.map(|e| e.servers).unwrap_or_default();
        if probes.is_empty() && options.clients != Clients::Synthetic {
            plan.notes.push(format!(
                "no client of {} reaches this VIP: its spread over real clients is unknown",
                options.clients_source.as_deref().unwrap_or("the sample")
            ));
        }
        vips.push(plan);
    }
    // Then the live VIPs it removes.
    for change in &changes.vips[model.vips.len()..] {
        let before = current.as_ref().and_then(|l| l.vips.get(&change.key));
        vips.push(sides::vip_plan(None, before, None, change, None, &[], &[]));
    }
    let global = changes
        .settings
        .iter()
        .map(|setting| FieldChange {
            field: setting.setting.name(),
            before: setting.live.clone(),
            after: setting.desired.clone(),
        })
        .collect();
    let summary = summarize(&vips);
    let canary = options
        .canary
        .map(|percent| crate::canary::plan(&vips, percent));
    let refusal = options
        .accept
        .refusal(&warnings)
        .or_else(|| (!shortfalls.is_empty()).then(|| shortfalls.join("; ")))
        .or_else(|| concentrated.first().cloned());
    let code = if vips
        .iter()
        .any(|vip| vip.kernel.as_ref().is_some_and(|k| !k.agrees))
    {
        exit::FAILED
    } else if !outages.is_empty() || refusal.is_some() {
        exit::INVALID
    } else {
        exit::OK
    };
    Ok(PlanReport {
        file: file.display().to_string(),
        code,
        valid: true,
        errors: 0,
        warnings: warnings.len(),
        diagnostics: warnings,
        outages,
        refusal,
        clients: options.clients_source.clone(),
        live: Some(LiveState {
            loaded: current.is_some(),
            pin_path: pin_path.display().to_string(),
            generation: current.as_ref().map(|l| l.snapshot.meta.generation),
            applied_at: current.as_ref().map(|l| l.snapshot.meta.applied_at),
            capacity: capacity.into(),
            config_capacity: model.capacity.into(),
            memory: model.capacity.memory_here(),
        }),
        global,
        vips,
        sample: Some(*sample),
        summary,
        canary,
    })
}

/// Where the kernel sent the sample flows of `vip`, by physical server; `None` without a kernel
/// check. The plan's first backends are the config's, in file order.
fn sample_effect(vip: &VipModel, plan: &VipPlan) -> Option<Effect> {
    plan.kernel.as_ref()?;
    let entries: Vec<Entry> = vip
        .backends
        .iter()
        .map(|b| Entry::new(b.address, b.mac))
        .collect();
    let counts = plan
        .backends
        .iter()
        .take(entries.len())
        .map(|b| u64::from(b.kernel_flows.unwrap_or(0)))
        .collect();
    Some(Effect::of_counts(&entries, vip.forwarding, counts))
}

/// The state an apply of `model` would install: the live operator and health state (drained,
/// disabled, unhealthy) of every backend the config keeps is carried over, as `apply` keeps it.
fn desired(model: &Model, config_hash: u64, current: Option<&sides::Live>) -> Desired {
    let mut desired = Desired::from_model(model, config_hash);
    let Some(current) = current else {
        return desired;
    };
    for vip in &mut desired.vips {
        let Some(live) = current.vips.get(&vip.key) else {
            continue;
        };
        for backend in &mut vip.backends {
            if let Some(found) = live.backends.iter().find(|b| b.address == backend.address) {
                backend.operator = Some(found.flags & (BACKEND_DRAINED | BACKEND_DISABLED));
                backend.unhealthy = Some(found.flags & BACKEND_UNHEALTHY != 0);
            }
        }
    }
    desired
}

/// The report of a config with errors: its diagnostics, and nothing planned.
fn refused(file: &Path, rejected: config::Rejected) -> PlanReport {
    let code = if rejected.unreadable() {
        exit::UNREADABLE
    } else {
        exit::INVALID
    };
    let config::Rejected { diagnostics, text } = rejected;
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let text = text.map(|t| t.text).unwrap_or_default();
    let outages = diagnostics
        .iter()
        .filter(|d| d.rule == rules::ALL_WEIGHT_ON_ONE.id)
        .map(|d| outage(d, &text))
        .collect();
    PlanReport {
        file: file.display().to_string(),
        code,
        valid: false,
        errors,
        warnings: diagnostics.len() - errors,
        diagnostics,
        outages,
        refusal: None,
        clients: None,
        live: None,
        global: Vec::new(),
        vips: Vec::new(),
        sample: None,
        summary: Summary::default(),
        canary: None,
    }
}

/// The VIP and backend an XLB003 finding is about, looked up in the file by its field path.
fn outage(diagnostic: &Diagnostic, text: &str) -> Outage {
    let (vip, backend) = field_indices(&diagnostic.field);
    let table: toml::Table = text.parse().unwrap_or_default();
    let vip_entry = vip.and_then(|i| table.get("vip")?.as_array()?.get(i));
    let get = |value: Option<&toml::Value>, key: &str| {
        value
            .and_then(|v| v.get(key))
            .and_then(toml::Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    let backend_entry = backend.and_then(|j| vip_entry?.get("backend")?.as_array()?.get(j));
    Outage {
        rule: diagnostic.rule,
        vip: get(vip_entry, "name"),
        address: get(vip_entry, "address"),
        backend: get(backend_entry, "address"),
        message: diagnostic.message.clone(),
    }
}

/// The indices in a diagnostic's field path: `vip[2].backend[1].weight` is (2, 1).
fn field_indices(field: &str) -> (Option<usize>, Option<usize>) {
    let index = |prefix: &str| {
        let rest = &field[field.find(prefix)? + prefix.len()..];
        rest[..rest.find(']')?].parse().ok()
    };
    (index("vip["), index("backend["))
}

/// The warnings about VIP `index`: (backend index or None for the VIP itself, rule id).
fn vip_warnings(warnings: &[Diagnostic], index: usize) -> Vec<(Option<usize>, &'static str)> {
    warnings
        .iter()
        .filter_map(|d| match field_indices(&d.field) {
            (Some(vip), backend) if vip == index => Some((backend, d.rule)),
            _ => None,
        })
        .collect()
}

fn summarize(vips: &[VipPlan]) -> Summary {
    let mut summary = Summary::default();
    for vip in vips {
        match vip.change {
            Change::Added => summary.vips_added += 1,
            Change::Removed => summary.vips_removed += 1,
            Change::Changed => summary.vips_changed += 1,
            Change::Unchanged => summary.vips_unchanged += 1,
        }
        for backend in &vip.backends {
            match backend.change {
                Change::Added => summary.backends_added += 1,
                Change::Removed => summary.backends_removed += 1,
                Change::Changed => summary.backends_changed += 1,
                Change::Unchanged => {}
            }
        }
        if let Some(kernel) = &vip.kernel {
            summary.flows_checked += u64::from(kernel.flows);
            summary.flows_agreed += u64::from(kernel.agreed);
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_indices_read_vip_and_backend() {
        // Test that diagnostic field paths give their VIP and backend indices.
        assert_eq!(
            field_indices("vip[2].backend[11].weight"),
            (Some(2), Some(11))
        );
        assert_eq!(field_indices("vip[0].backend"), (Some(0), None));
        assert_eq!(field_indices("global.mtu"), (None, None));
    }

    #[test]
    fn refused_config_names_the_outage_backend() {
        // Test that an all-weight-on-one config is refused (INVALID) with the VIP and the one
        // backend named, without touching the kernel.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/configs/bad/all-weight-on-one.toml");
        let env = config::FixedEnvironment::new(&["eth0"]);
        let report = plan_file(&path, &env, &no_live(), &Sample::default()).expect("plan");
        assert_eq!(report.code, exit::INVALID);
        assert!(!report.valid);
        assert_eq!(report.outages.len(), 1);
        let outage = &report.outages[0];
        assert_eq!(outage.rule, "XLB003");
        assert_eq!(outage.vip, "web");
        assert_eq!(outage.address, "198.18.1.10");
        assert_eq!(outage.backend, "198.18.0.10");
        assert!(report.live.is_none() && report.vips.is_empty());
        let text = text::render(&report);
        assert!(text.contains("EVERY new flow"), "{text}");
        assert!(text.contains("198.18.0.10"), "{text}");
    }

    #[test]
    fn unreadable_config_exits_unreadable() {
        // Test that a missing file is UNREADABLE with the path in the output.
        let path = Path::new("/nonexistent/xlb-plan.toml");
        let env = config::FixedEnvironment::new(&["eth0"]);
        let report = plan_file(path, &env, &no_live(), &Sample::default()).expect("plan");
        assert_eq!(report.code, exit::UNREADABLE);
        assert!(text::render(&report).contains("/nonexistent/xlb-plan.toml"));
    }

    fn no_live() -> pins::Live {
        pins::Live {
            pin_path: Some("/nonexistent/xlb-pins".into()),
        }
    }
}
