//! `xlb audit`: compare the live kernel maps with a config file (or, without one, with
//! themselves) and report every drift: what the maps should hold, what they hold, and the fix.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use lb_common::{
    Backend, Vip, VipKey,
    address::Mac,
    service::{
        BACKEND_ACTIVE, BACKEND_DISABLED, BACKEND_DRAINED, BACKEND_UNHEALTHY, VIP_FORWARD_IPIP,
        VIP_HASH_SOURCE_ONLY, vip_filter_bit,
    },
};
use serde::{Serialize, Serializer};

use crate::{
    capacity::Capacity,
    config::{self, Diagnostic, Environment, Model},
    diff::{
        self, Change, Field, Setting, SettingDiff, VipDiff,
        effect::{self, KnownCounts},
    },
    exit,
    live::{BackendState, Snapshot},
    maglev,
    maps::Maps,
    pins,
    rollout::{self, Desired, ExpectedTable, NO_BACKEND, describe_vip, live_address},
    steering,
    table_record::Records,
    validate::plural,
};

/// Audits as [`audit`] does, then compares each VIP's table fingerprint with the xlb pinned
/// under each of `peers`.
pub fn audit_with_peers(
    file: Option<&Path>,
    pin_path: Option<&Path>,
    env: &dyn Environment,
    peers: &[PathBuf],
) -> anyhow::Result<Report> {
    let mut report = audit(file, pin_path, env)?;
    if report.diagnostics.is_empty() && !peers.is_empty() {
        let own = PathBuf::from(report.pin_path.clone().unwrap_or_default());
        let ours = crate::status::read(&own)?;
        for peer in peers {
            let theirs = crate::status::read(peer)?;
            report
                .findings
                .extend(compare_peer(&ours.vips, &theirs.vips, peer));
            report.peers.push(peer.display().to_string());
        }
        report.tally();
    }
    Ok(report)
}

/// The result of an audit.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// No drift (notes allowed) and a valid config.
    pub ok: bool,
    /// The config file audited against; none: the live maps were checked against themselves.
    pub file: Option<String>,
    /// The pin directory of the audited xlb; none when an invalid config stopped the audit.
    pub pin_path: Option<String>,
    /// Pin paths of other nodes whose tables were compared with this one's (`--peer`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Errors in the config file; when there are any the kernel was not read.
    pub diagnostics: Vec<Diagnostic>,
    /// Findings that are drift, and findings that are notes.
    pub drift: usize,
    pub notes: usize,
    pub findings: Vec<Finding>,
    /// The exit code: [`exit::OK`], [`exit::INVALID`] (drift, or an invalid config) or
    /// [`exit::UNREADABLE`] (the config cannot be read).
    #[serde(rename = "exit_code")]
    pub code: u8,
}

impl Report {
    /// Counts the findings into drift and notes and sets the verdict and exit code from them.
    fn tally(&mut self) {
        self.drift = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Drift)
            .count();
        self.notes = self.findings.len() - self.drift;
        self.ok = self.drift == 0;
        self.code = if self.ok { exit::OK } else { exit::INVALID };
    }
}

/// One difference between the maps and what they should hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    /// `address:port/protocol`; none for program-wide findings (run-time config, meta).
    pub vip: Option<String>,
    /// The VIP's name in the config last applied (see [`crate::names`]).
    pub vip_name: Option<String>,
    /// The backend's address, or `id N` for an id that holds none.
    pub backend: Option<String>,
    pub expected: String,
    pub actual: String,
    pub fix: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The maps differ from what they should hold: the audit fails.
    Drift,
    /// Worth knowing, not wrong: state nobody needs to fix here (an operator's drain or
    /// disable, a backend down by its health checks), an older config file.
    Note,
}

/// What kind of difference a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A VIP of the config is not in the kernel.
    VipMissing,
    /// A VIP in the kernel is not in the config.
    VipExtra,
    /// Forwarding or hash mode differ.
    VipFlags,
    VipTableSize,
    /// The VIP entry itself is unusable: id, table copies or live-copy index out of place.
    VipEntry,
    BackendMissing,
    BackendExtra,
    BackendMac,
    BackendWeight,
    /// Backend flags no xlb verb writes (inactive without a disable, or both).
    BackendState,
    /// A backend drained or disabled by an operator (a note).
    BackendOperator,
    /// A backend the daemon's health checks took out of the table (a note).
    BackendHealth,
    /// The live table differs from the one xlb would build.
    Table,
    /// Table slots pointing at no usable backend of the VIP.
    Slot,
    /// A VIP address's bit is clear in the VIP filter.
    Filter,
    Mtu,
    TunnelSource,
    /// The flow table's admission policy differs (`global.flow_admission`).
    FlowAdmission,
    /// The config cannot be applied to the running program (capacity).
    Capacity,
    /// The live state came from another version of the file (a note).
    ConfigHash,
    /// Another node (`--peer`) steers a VIP with a different table, or lacks it.
    Peer,
    /// Every new flow of a VIP that names several backends goes to one server: the outage.
    Outage,
    /// One server takes more than the recorded `alerts.max_share` of a VIP's new flows (a
    /// note: weights can mean it).
    Concentrated,
    /// Two live entries of a VIP reach the same server.
    SameServer,
    /// An active backend with weight gets no slot of its VIP's table.
    NoSlot,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::VipMissing => "vip_missing",
            Kind::VipExtra => "vip_extra",
            Kind::VipFlags => "vip_flags",
            Kind::VipTableSize => "vip_table_size",
            Kind::VipEntry => "vip_entry",
            Kind::BackendMissing => "backend_missing",
            Kind::BackendExtra => "backend_extra",
            Kind::BackendMac => "backend_mac",
            Kind::BackendWeight => "backend_weight",
            Kind::BackendState => "backend_state",
            Kind::BackendOperator => "backend_operator",
            Kind::BackendHealth => "backend_health",
            Kind::Table => "table",
            Kind::Slot => "slot",
            Kind::Filter => "filter",
            Kind::Mtu => "mtu",
            Kind::TunnelSource => "tunnel_source",
            Kind::FlowAdmission => "flow_admission",
            Kind::Capacity => "capacity",
            Kind::ConfigHash => "config_hash",
            Kind::Peer => "peer",
            Kind::Outage => "outage",
            Kind::Concentrated => "concentrated",
            Kind::SameServer => "same_server",
            Kind::NoSlot => "no_slot",
        }
    }
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Drift => "drift",
            Severity::Note => "note",
        }
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Audits the xlb pinned at `pin_path` (default: the config's `global.pin_path`, else
/// [`pins::DEFAULT_PIN_PATH`]) against the config `file`, or against itself without one. A
/// config that does not validate stops the audit before the kernel is audited.
pub fn audit(
    file: Option<&Path>,
    pin_path: Option<&Path>,
    env: &dyn Environment,
) -> anyhow::Result<Report> {
    let mut report = Report {
        ok: false,
        file: file.map(|f| f.display().to_string()),
        pin_path: None,
        peers: Vec::new(),
        diagnostics: Vec::new(),
        drift: 0,
        notes: 0,
        findings: Vec::new(),
        code: exit::INVALID,
    };
    let loaded = match file {
        None => None,
        Some(file) => match check_on_live_tables(file, pin_path, env, &[]) {
            Ok(loaded) => Some(loaded),
            Err(rejected) => {
                if rejected.unreadable() {
                    report.code = exit::UNREADABLE;
                }
                report.diagnostics = rejected.diagnostics;
                return Ok(report);
            }
        },
    };
    let pin_path: PathBuf = pin_path
        .map(Path::to_path_buf)
        .or_else(|| {
            loaded
                .as_ref()
                .map(|loaded| loaded.model.global.pin_path.clone())
        })
        .unwrap_or_else(|| PathBuf::from(pins::DEFAULT_PIN_PATH));
    let mut maps = pins::open(&pin_path)?;
    report.pin_path = Some(pin_path.display().to_string());
    report.findings = match &loaded {
        Some(loaded) => against_config(
            &mut maps,
            &loaded.model,
            loaded.text.hash,
            &loaded.text.path,
        )?,
        None => consistency(&mut maps)?,
    };
    let names = crate::names::read(&pin_path);
    for finding in &mut report.findings {
        finding.vip_name = finding.vip.as_deref().and_then(|vip| names.name_of(vip));
    }
    report.tally();
    Ok(report)
}

/// Checks the config `file` as `validate` does, taking the tables of the VIPs whose live
/// tables (under `pin_path`, else the pin path the file names) are vouched for by their records
/// from there rather than building them: the same findings, without 1,000 Maglev builds. With
/// `pin_path` given, those tables are counted while the file is parsed. The findings of the
/// `overrides` rules are warnings, as in [`config::load_overriding`].
pub fn check_on_live_tables(
    file: &Path,
    pin_path: Option<&Path>,
    env: &dyn Environment,
    overrides: &[String],
) -> config::Checked {
    std::thread::scope(|scope| {
        let counting = pin_path.map(|pin_path| scope.spawn(|| live_counts(pin_path)));
        let parsed = config::read_bytes(file)
            .map_err(|err| config::unreadable_file(file, err))
            .and_then(|bytes| config::parse_bytes(&bytes, file))?;
        let known = match counting {
            Some(counting) => counting
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => live_counts(&parsed.pin_path()),
        };
        config::check_parsed(parsed, env, overrides, &known)
    })
}

/// The slot counts of the live tables under `pin_path` that their records vouch for (each the
/// table its live backends and weights build), by those inputs: a check of a config asking for
/// the same tables takes them from here rather than building them. None when nothing can be
/// read there (no xlb, no privilege): the check then builds every table.
pub fn live_counts(pin_path: &Path) -> KnownCounts {
    let read = || -> anyhow::Result<KnownCounts> {
        let mut maps = pins::open(pin_path)?;
        let snapshot = Snapshot::read(&mut maps)?;
        let capacity = Capacity::read(&maps)?;
        let desired = Desired::from_live(&snapshot, &capacity);
        let expected = rollout::expected_tables(&snapshot, &capacity, &desired)?;
        let live: Vec<(&ExpectedTable, &Vip)> = expected
            .iter()
            .filter_map(|want| Some((want, snapshot.vip(&want.key)?)))
            .filter(|(want, vip)| vip.table_size == want.vip.table_size)
            .collect();
        let ranges: Vec<(u32, u32)> = live.iter().map(|(_, vip)| vip.live_table()).collect();
        let records = Records::read(&maps)?;
        let counted = steering::map_tables(&maps, &ranges, |i, table| {
            let (want, vip) = live[i];
            if !records.vouches(vip, want.inputs(), table) {
                return None;
            }
            let backends = effect::live_entries(&snapshot, &capacity, vip);
            let counts = effect::of_ids(&backends, effect::forwarding(vip), table).entry_counts;
            Some((want.weights(&backends), vip.table_size, counts))
        })?;
        let mut known = KnownCounts::default();
        for (backends, size, counts) in counted.into_iter().flatten() {
            known.insert(backends, size, counts);
        }
        Ok(known)
    };
    read().unwrap_or_default()
}

/// Every VIP whose live table differs between this node (`ours`) and the peer pinned at
/// `peer` (`theirs`): a flow that moves between them must get the same backend on both, so
/// each difference is drift.
pub fn compare_peer(
    ours: &[crate::status::VipStatus],
    theirs: &[crate::status::VipStatus],
    peer: &Path,
) -> Vec<Finding> {
    let fix = format!(
        "apply the same config file to both nodes (`xlb apply FILE` here and with `--pin-path {}`)",
        peer.display()
    );
    let mut findings = Vec::new();
    let mut finding = |vip: &str, expected: String, actual: String| {
        findings.push(Finding {
            kind: Kind::Peer,
            severity: Severity::Drift,
            vip: Some(vip.to_owned()),
            vip_name: None,
            backend: None,
            expected,
            actual,
            fix: fix.clone(),
        })
    };
    for vip in ours {
        match theirs.iter().find(|v| v.vip == vip.vip) {
            None => finding(
                &vip.vip,
                format!("table {} here and at {}", vip.fingerprint, peer.display()),
                format!("absent at {}", peer.display()),
            ),
            Some(other) if other.fingerprint != vip.fingerprint => finding(
                &vip.vip,
                format!("table {} (this node)", vip.fingerprint),
                format!("table {} at {}", other.fingerprint, peer.display()),
            ),
            Some(_) => {}
        }
    }
    for other in theirs {
        if !ours.iter().any(|v| v.vip == other.vip) {
            finding(
                &other.vip,
                "absent here and at the peer".to_owned(),
                format!("table {} at {}", other.fingerprint, peer.display()),
            );
        }
    }
    findings
}

/// Every drift between the maps and the config `model` read from `bytes` in `file`.
pub fn against_config(
    maps: &mut (impl Maps + ?Sized),
    model: &Model,
    config_hash: u64,
    file: &Path,
) -> anyhow::Result<Vec<Finding>> {
    let snapshot = Snapshot::read(maps)?;
    let capacity = Capacity::read(maps)?;
    let reapply = format!("re-apply the config: `xlb apply {}`", file.display());
    let mut audit = Audit {
        snapshot: &snapshot,
        capacity,
        reapply: &reapply,
        findings: Vec::new(),
    };
    audit.entries_and_backend_states();
    let desired = Desired::from_model(model, config_hash);
    let live = Desired::from_live(&snapshot, &capacity);
    let changes = diff::diff(&desired, &live);
    for vip in &changes.vips {
        audit.vip_drift(vip, &desired, &reapply);
    }
    let expected = rollout::expected_tables(&snapshot, &capacity, &desired);
    let live = audit.read_tables(maps, expected.as_deref().ok())?;
    audit.tables(expected, &live, "the config's backends and weights");
    audit.effects(&live);
    audit.run_time_config(&changes.settings);
    if snapshot.meta.config_hash != config_hash {
        audit.push(
            Kind::ConfigHash,
            Severity::Note,
            None,
            None,
            format!("{config_hash:#018x} (this file)"),
            format!(
                "{:#018x} (applied as generation {})",
                snapshot.meta.config_hash, snapshot.meta.generation
            ),
            format!(
                "the live state was applied from another version of the file; `xlb plan {}` \
                 shows what applying this one would change",
                file.display()
            ),
        );
    }
    Ok(audit.findings)
}

/// Every inconsistency of the maps with themselves: tables pointing at backends that are not
/// there, not the VIP's or not active; tables that differ from the Maglev table the live
/// backends and weights give; VIP addresses missing from the filter.
pub fn consistency(maps: &mut (impl Maps + ?Sized)) -> anyhow::Result<Vec<Finding>> {
    let snapshot = Snapshot::read(maps)?;
    let capacity = Capacity::read(maps)?;
    let reapply = "re-apply the config xlb runs (`xlb apply FILE`): it rewrites every entry and \
                   table";
    let mut audit = Audit {
        snapshot: &snapshot,
        capacity,
        reapply,
        findings: Vec::new(),
    };
    audit.entries_and_backend_states();
    let mut desired = Desired::from_live(&snapshot, &capacity);
    // An unusable entry is reported already; its table cannot be rebuilt.
    desired
        .vips
        .retain(|want| snapshot.vip(&want.key).is_some_and(|vip| audit.usable(vip)));
    let expected = rollout::expected_tables(&snapshot, &capacity, &desired);
    let live = audit.read_tables(maps, expected.as_deref().ok())?;
    audit.slots(&live);
    audit.tables(expected, &live, "the live backends' weights");
    audit.effects(&live);
    Ok(audit.findings)
}

/// What one read of a usable VIP's live table shows.
struct LiveTable {
    /// Slots that point at no usable backend of the VIP, by backend id (see `bad_slots`).
    bad: BTreeMap<u32, (String, Vec<u32>)>,
    /// The backend entries the VIP names, and where its new flows go over them.
    backends: Vec<(u32, Backend)>,
    effect: effect::Effect,
    /// Against the expected table, when there is one to compare with: how the two differ
    /// (`None`: not at all), or why the expected table could not be built.
    differ: Option<anyhow::Result<Option<Differ>>>,
}

/// How a live table differs from the expected one.
#[derive(Clone)]
struct Differ {
    /// Slots that differ, of `len`.
    count: usize,
    len: usize,
    /// The first slot that differs, and the backend ids it holds and should hold.
    first: usize,
    live: u32,
    expected: u32,
}

/// How `table` differs from `expected`; `None` when they are equal.
fn differ(table: &[u32], expected: &[u32]) -> Option<Differ> {
    if table == expected {
        return None;
    }
    let mut slots = (0..)
        .zip(table.iter().zip(expected))
        .filter(|(_, (a, b))| a != b);
    let (first, (&live, &want)) = slots.next()?;
    Some(Differ {
        count: 1 + slots.count(),
        len: table.len(),
        first,
        live,
        expected: want,
    })
}

struct Audit<'a> {
    snapshot: &'a Snapshot,
    capacity: Capacity,
    /// The fix for most drift.
    reapply: &'a str,
    findings: Vec<Finding>,
}

impl Audit<'_> {
    /// The outage rules on the live maps, whatever put them there (`--override`, disables,
    /// health checks, a map edited by hand): where each usable VIP's new flows really go.
    fn effects(&mut self, live: &[Option<LiveTable>]) {
        let max_share = rollout::max_share(&self.snapshot.meta);
        for ((key, vip), live) in self.snapshot.vips.iter().zip(live) {
            let Some(LiveTable {
                backends, effect, ..
            }) = live
            else {
                continue;
            };
            let forwarding = effect::forwarding(vip);
            for j in 0..backends.len() {
                let entry = effect::live_entry(&backends[j].1);
                let same = (0..j).find_map(|i| {
                    let other = effect::live_entry(&backends[i].1);
                    effect::same_server(&other, &entry, forwarding).map(|why| (other, why))
                });
                if let Some((other, why)) = same {
                    self.push(
                        Kind::SameServer,
                        Severity::Drift,
                        Some(key),
                        Some(entry.address.to_string()),
                        "one entry per server".to_owned(),
                        format!(
                            "the same server as {} ({})",
                            other.address,
                            match why {
                                effect::SameServer::Address => "same address",
                                effect::SameServer::Mac => "same MAC, dsr",
                            }
                        ),
                        "give each entry its own server's address and MAC in the config, and \
                         apply it"
                            .to_owned(),
                    );
                }
            }
            for (i, (_, backend)) in backends.iter().enumerate() {
                if BackendState::of(backend) == BackendState::Active
                    && backend.weight > 0
                    && effect.entry_counts[i] == 0
                    && effect.total > 0
                {
                    self.push(
                        Kind::NoSlot,
                        Severity::Drift,
                        Some(key),
                        Some(live_address(backend).to_string()),
                        format!("slots for weight {}", backend.weight),
                        format!("no slot of {}", vip.table_size),
                        "raise the VIP's table_size or bring the weights closer together \
                         (`xlb validate` names the size), and apply"
                            .to_owned(),
                    );
                }
            }
            let (kind, severity, server) = match (effect.all_on_one(), effect.over(max_share)) {
                (Some(server), _) => (Kind::Outage, Severity::Drift, server),
                (None, Some(server)) => (Kind::Concentrated, Severity::Note, server),
                (None, None) => continue,
            };
            let out: Vec<String> = backends
                .iter()
                .filter(|(_, b)| BackendState::of(b) != BackendState::Active)
                .map(|(_, b)| format!("{} {}", live_address(b), BackendState::of(b).name()))
                .collect();
            self.push(
                kind,
                severity,
                Some(key),
                Some(server.address.to_string()),
                format!(
                    "new flows spread over the {} backends the VIP names (at most {} on one \
                     server)",
                    backends.len(),
                    effect::percent(max_share, 0)
                ),
                format!(
                    "{} of the VIP's new flows go to {}{}",
                    effect::percent(server.share, 0),
                    server.address,
                    if out.is_empty() {
                        String::new()
                    } else {
                        format!(" (out of the table: {})", out.join(", "))
                    }
                ),
                "enable the other backends (`xlb backend enable`), fix their health, or apply a \
                 config whose table spreads the VIP (`xlb plan FILE` shows it)"
                    .to_owned(),
            );
        }
    }

    #[expect(clippy::too_many_arguments, reason = "one finding's fields, all named")]
    fn push(
        &mut self,
        kind: Kind,
        severity: Severity,
        vip: Option<&VipKey>,
        backend: Option<String>,
        expected: String,
        actual: String,
        fix: String,
    ) {
        self.findings.push(Finding {
            kind,
            severity,
            vip: vip.map(describe_vip),
            vip_name: None,
            backend,
            expected,
            actual,
            fix,
        });
    }

    /// A drift fixed by re-applying.
    fn drift(
        &mut self,
        kind: Kind,
        vip: &VipKey,
        backend: Option<String>,
        expected: String,
        actual: String,
    ) {
        let fix = self.reapply.to_owned();
        self.push(
            kind,
            Severity::Drift,
            Some(vip),
            backend,
            expected,
            actual,
            fix,
        );
    }

    /// Drift of one field that differs (`field`), both sides shown by `show`.
    fn field_drift<T: Copy>(
        &mut self,
        kind: Kind,
        vip: &VipKey,
        backend: Option<String>,
        field: Option<Field<T>>,
        show: impl Fn(T) -> String,
    ) {
        if let Some(field) = field {
            self.drift(kind, vip, backend, show(field.desired), show(field.live));
        }
    }

    /// The findings of one VIP's difference from the config (`desired`, the side it was
    /// computed from).
    fn vip_drift(&mut self, vip: &VipDiff, desired: &Desired, reapply: &str) {
        let key = &vip.key;
        let want = vip.desired.map(|i| &desired.vips[i]);
        match vip.change {
            Change::Unchanged => return,
            Change::Removed => {
                let fix = format!("{reapply} to remove it, or add it to the config");
                self.push(
                    Kind::VipExtra,
                    Severity::Drift,
                    Some(key),
                    None,
                    "absent (the config does not list it)".to_owned(),
                    "in the kernel, steering packets".to_owned(),
                    fix,
                );
                return;
            }
            Change::Added => {
                self.drift(
                    Kind::VipMissing,
                    key,
                    None,
                    format!("in the kernel with {} backends", vip.backends.len()),
                    "absent: its packets go to the host's stack unsteered".to_owned(),
                );
                return;
            }
            Change::Changed => {}
        }
        self.field_drift(Kind::VipFlags, key, None, vip.flags, describe_flags);
        self.field_drift(Kind::VipTableSize, key, None, vip.table_size, |size| {
            format!("{size} slots")
        });
        // The live side was read from the snapshot in its order (`Desired::from_live`).
        let live_entries = vip
            .live
            .map(|j| self.backends_of(&self.snapshot.vips[j].1))
            .unwrap_or_default();
        for backend in &vip.backends {
            let name = Some(backend.address.to_string());
            match backend.change {
                Change::Unchanged => {}
                Change::Added => {
                    let weight = backend
                        .desired
                        .and_then(|i| want.map(|want| want.backends[i].weight))
                        .unwrap_or_default();
                    self.drift(
                        Kind::BackendMissing,
                        key,
                        name,
                        format!("in the VIP with weight {weight}"),
                        "absent: it gets no traffic".to_owned(),
                    );
                }
                Change::Removed => {
                    let Some((id, extra)) = backend.live.and_then(|j| live_entries.get(j)) else {
                        continue;
                    };
                    self.drift(
                        Kind::BackendExtra,
                        key,
                        name,
                        "not in the VIP (the config does not list it)".to_owned(),
                        format!("backend id {id}, {}", state_of(extra)),
                    );
                }
                Change::Changed => {
                    self.field_drift(Kind::BackendMac, key, name.clone(), backend.mac, |mac| {
                        Mac(mac).to_string()
                    });
                    self.field_drift(Kind::BackendWeight, key, name, backend.weight, |weight| {
                        format!("weight {weight}")
                    });
                }
            }
        }
    }

    fn usable(&self, vip: &Vip) -> bool {
        vip.id < self.capacity.vips
            && vip.active <= 1
            && vip.table_size <= self.capacity.table_slots
            && maglev::is_prime(vip.table_size)
            && vip.tables
                == [
                    self.capacity.table_base(vip.id, 0),
                    self.capacity.table_base(vip.id, 1),
                ]
    }

    /// The live, non-empty backend entries in `vip`'s id range.
    fn backends_of(&self, vip: &Vip) -> Vec<(u32, Backend)> {
        self.capacity
            .backend_ids(vip.id)
            .filter_map(|id| Some((id, *self.snapshot.backends.get(id as usize)?)))
            .filter(|(_, b)| *b != Backend::default())
            .collect()
    }

    /// VIP entries, filter bits and backend flags: checked with or without a config.
    fn entries_and_backend_states(&mut self) {
        for (key, vip) in &self.snapshot.vips {
            if !self.usable(vip) {
                let expected = format!(
                    "id below {}, a prime table size up to {}, live copy 0 or 1, copies at \
                     slots {} and {}",
                    self.capacity.vips,
                    self.capacity.table_slots,
                    self.capacity.table_base(vip.id, 0),
                    self.capacity.table_base(vip.id, 1)
                );
                let actual = format!(
                    "id {}, table size {}, live copy {}, copies at slots {} and {}",
                    vip.id, vip.table_size, vip.active, vip.tables[0], vip.tables[1]
                );
                self.drift(Kind::VipEntry, key, None, expected, actual);
            }
            let bit = vip_filter_bit(&key.addr, key.family);
            if self.snapshot.filter[(bit / 64) as usize] & (1 << (bit % 64)) == 0 {
                self.drift(
                    Kind::Filter,
                    key,
                    None,
                    format!("filter bit {bit} set"),
                    format!("bit {bit} clear: every packet to this address passes unsteered"),
                );
            }
            for (_, backend) in self.backends_of(vip) {
                self.backend_state(key, &backend);
            }
        }
    }

    fn backend_state(&mut self, key: &VipKey, backend: &Backend) {
        let name = Some(live_address(backend).to_string());
        let active = backend.flags & BACKEND_ACTIVE != 0;
        let (drained, disabled) = (
            backend.flags & BACKEND_DRAINED != 0,
            backend.flags & BACKEND_DISABLED != 0,
        );
        let vip = describe_vip(key);
        let enable = format!(
            "`xlb backend enable {vip} {}` returns it to its weight; nothing to do if this is \
             intended",
            live_address(backend)
        );
        match (active, disabled) {
            (true, true) => self.drift(
                Kind::BackendState,
                key,
                name,
                "a disabled backend is inactive".to_owned(),
                "marked disabled but active: the kernel still sends it flows".to_owned(),
            ),
            // The daemon's health checks took it out: state, not drift (the daemon puts it
            // back when it passes again; an apply would not).
            (false, false) if backend.flags & BACKEND_UNHEALTHY != 0 => self.push(
                Kind::BackendHealth,
                Severity::Note,
                Some(key),
                name,
                format!("in the table with weight {}", backend.weight),
                "down by its health checks: out of the table, its flows moved".to_owned(),
                "nothing to do here: fix the backend; xlb run puts it back once its checks \
                 pass"
                    .to_owned(),
            ),
            (false, false) => self.drift(
                Kind::BackendState,
                key,
                name,
                "active (no operator disabled it)".to_owned(),
                "inactive: the kernel sends it nothing and moves its flows".to_owned(),
            ),
            (false, true) => self.push(
                Kind::BackendOperator,
                Severity::Note,
                Some(key),
                name,
                format!("active with weight {}", backend.weight),
                "disabled with `xlb backend disable`: out of the table, its flows moved".to_owned(),
                enable,
            ),
            (true, false) if drained => self.push(
                Kind::BackendOperator,
                Severity::Note,
                Some(key),
                name,
                format!("in the table with weight {}", backend.weight),
                "drained with `xlb backend drain`: no new flows, established flows stay".to_owned(),
                enable,
            ),
            (true, false) => {}
        }
    }

    /// Reads the live table of every usable VIP once, all through one mapping of the slot map
    /// and on every CPU: its bad slots, its effect, and how it differs from its table in
    /// `expected`, for a VIP live with the expected size: built beside it, one at a time,
    /// unless the table's record vouches for it (see [`crate::table_record`]).
    /// `None` for an unusable VIP, in the snapshot's order.
    fn read_tables(
        &self,
        maps: &(impl Maps + ?Sized),
        expected: Option<&[ExpectedTable]>,
    ) -> anyhow::Result<Vec<Option<LiveTable>>> {
        let usable: Vec<usize> = (0..self.snapshot.vips.len())
            .filter(|&i| self.usable(&self.snapshot.vips[i].1))
            .collect();
        let mut compare_with: Vec<Option<&ExpectedTable>> = vec![None; self.snapshot.vips.len()];
        for want in expected.unwrap_or_default() {
            if let Ok(i) = self
                .snapshot
                .vips
                .binary_search_by_key(&want.key, |(key, _)| *key)
                && self.snapshot.vips[i].1.table_size == want.vip.table_size
            {
                compare_with[i] = Some(want);
            }
        }
        let ranges: Vec<(u32, u32)> = usable
            .iter()
            .map(|&i| {
                let vip = &self.snapshot.vips[i].1;
                vip.live_table()
            })
            .collect();
        let records = Records::read(maps)?;
        let read = steering::map_tables(maps, &ranges, |n, table| {
            let i = usable[n];
            let vip = &self.snapshot.vips[i].1;
            let backends = effect::live_entries(self.snapshot, &self.capacity, vip);
            let effect = effect::of_ids(&backends, effect::forwarding(vip), table);
            // A table its record vouches for is the one its inputs build: no build to compare.
            let differ = compare_with[i].map(|want| {
                if records.vouches(vip, want.inputs(), table) {
                    return Ok(None);
                }
                want.build().map(|expected| differ(table, &expected))
            });
            LiveTable {
                bad: self.bad_slots(vip, table),
                differ,
                backends,
                effect,
            }
        })?;
        let mut live: Vec<Option<LiveTable>> =
            (0..self.snapshot.vips.len()).map(|_| None).collect();
        for (i, table) in usable.into_iter().zip(read) {
            live[i] = Some(table);
        }
        Ok(live)
    }

    /// Slots of `vip`'s live table that point at no usable backend of the VIP, by backend id
    /// (in slot order) with the problem.
    fn bad_slots(&self, vip: &Vip, table: &[u32]) -> BTreeMap<u32, (String, Vec<u32>)> {
        let owned = self.capacity.backend_ids(vip.id);
        let eligible = self.backends_of(vip).iter().any(|(_, b)| {
            b.flags & (BACKEND_ACTIVE | BACKEND_DRAINED | BACKEND_DISABLED) == BACKEND_ACTIVE
                && b.weight > 0
        });
        // What is wrong with each of the VIP's own ids (`None`: an active backend), worded
        // once per id rather than per slot.
        let problems: Vec<Option<String>> = owned
            .clone()
            .map(|id| match self.snapshot.backends.get(id as usize) {
                Some(b) if *b == Backend::default() => {
                    Some(format!("backend id {id}, which holds no backend"))
                }
                Some(b) if b.flags & BACKEND_ACTIVE == 0 => Some(format!(
                    "backend id {id} ({}), which is inactive",
                    live_address(b)
                )),
                _ => None,
            })
            .collect();
        let mut bad: BTreeMap<u32, (String, Vec<u32>)> = BTreeMap::new();
        for (slot, &id) in (0..).zip(table) {
            let known = problems.get(id.wrapping_sub(owned.start) as usize);
            if matches!(known, Some(None)) || (id == NO_BACKEND && !eligible) {
                continue;
            }
            let problem = || match known {
                Some(Some(problem)) => problem.clone(),
                _ if id == NO_BACKEND => {
                    "no backend, though the VIP has eligible backends".to_owned()
                }
                _ => format!(
                    "backend id {id}, not one of this VIP's (ids {} to {})",
                    owned.start,
                    owned.end - 1
                ),
            };
            bad.entry(id)
                .or_insert_with(|| (problem(), Vec::new()))
                .1
                .push(slot);
        }
        bad
    }

    /// One finding per backend id that slots of a usable VIP's live table hold though it is
    /// no usable backend of the VIP.
    fn slots(&mut self, live: &[Option<LiveTable>]) {
        for ((key, _), live) in self.snapshot.vips.iter().zip(live) {
            let Some(live) = live else { continue };
            for (id, (problem, slots)) in &live.bad {
                let backend = match self.snapshot.backends.get(*id as usize) {
                    Some(b) if *b != Backend::default() => live_address(b).to_string(),
                    _ if *id == NO_BACKEND => "none".to_owned(),
                    _ => format!("id {id}"),
                };
                self.drift(
                    Kind::Slot,
                    key,
                    Some(backend),
                    "every slot holds an active backend of this VIP".to_owned(),
                    format!(
                        "{} {} {problem}",
                        list_slots(slots),
                        if slots.len() == 1 { "holds" } else { "hold" }
                    ),
                );
            }
        }
    }

    /// Each VIP's live table against the one rollout builds (`expected`, planned for what
    /// `source` says), for VIPs in the kernel with the expected table size.
    fn tables(
        &mut self,
        expected: anyhow::Result<Vec<ExpectedTable>>,
        live: &[Option<LiveTable>],
        source: &str,
    ) {
        let compared = expected.and_then(|expected| {
            let mut compared = Vec::new();
            for want in expected {
                let Ok(i) = self
                    .snapshot
                    .vips
                    .binary_search_by_key(&want.key, |(key, _)| *key)
                else {
                    continue;
                };
                if let Some(Some(differ)) = live[i].as_ref().map(|live| &live.differ) {
                    let differ = differ.as_ref().map_err(|err| anyhow::anyhow!("{err:#}"))?;
                    compared.push((want.key, differ.clone()));
                }
            }
            Ok(compared)
        });
        let compared = match compared {
            Ok(compared) => compared,
            Err(err) => {
                self.push(
                    Kind::Capacity,
                    Severity::Drift,
                    None,
                    None,
                    "the config fits the running program".to_owned(),
                    format!("{err:#}"),
                    "shrink the config, or restart xlb with a larger capacity".to_owned(),
                );
                return;
            }
        };
        for (key, differ) in compared {
            let Some(differ) = differ else { continue };
            let name = |id: u32| {
                if id == NO_BACKEND {
                    "none".to_owned()
                } else {
                    id.to_string()
                }
            };
            self.drift(
                Kind::Table,
                &key,
                None,
                format!("the Maglev table built from {source}"),
                format!(
                    "{} of {} slots differ (slot {} holds backend {}, expected {})",
                    differ.count,
                    differ.len,
                    differ.first,
                    name(differ.live),
                    name(differ.expected)
                ),
            );
        }
    }

    /// The run-time settings that differ ([`diff::settings`]).
    fn run_time_config(&mut self, settings: &[SettingDiff]) {
        for setting in settings {
            let kind = match setting.setting {
                Setting::FlowAdmission => Kind::FlowAdmission,
                Setting::Mtu => Kind::Mtu,
                Setting::IpipSourceV4 | Setting::IpipSourceV6 => Kind::TunnelSource,
            };
            // A tunnel source reads alone; the others with their name, as in the config.
            let show = |value: &str| match kind {
                Kind::TunnelSource => value.to_owned(),
                _ => format!("{} {value}", setting.setting.name()),
            };
            self.push(
                kind,
                Severity::Drift,
                None,
                None,
                show(&setting.desired),
                show(&setting.live),
                self.reapply.to_owned(),
            );
        }
    }
}

fn describe_flags(flags: u32) -> String {
    format!(
        "{} forwarding, {} hash",
        if flags & VIP_FORWARD_IPIP != 0 {
            "ipip"
        } else {
            "dsr"
        },
        if flags & VIP_HASH_SOURCE_ONLY != 0 {
            "source"
        } else {
            "5-tuple"
        }
    )
}

fn state_of(backend: &Backend) -> &'static str {
    crate::live::BackendState::of(backend).name()
}

/// `slot 7` or `slots 7, 9, 12 and 40 more`.
fn list_slots(slots: &[u32]) -> String {
    const SHOWN: usize = 3;
    let shown: Vec<String> = slots.iter().take(SHOWN).map(u32::to_string).collect();
    match slots.len() {
        1 => format!("slot {}", shown[0]),
        n if n <= SHOWN => format!("slots {}", shown.join(", ")),
        n => format!("slots {} and {} more", shown.join(", "), n - SHOWN),
    }
}

/// A header line, then one aligned row per finding with its fix below it.
pub fn text(report: &Report) -> String {
    let against = report
        .file
        .as_deref()
        .map_or_else(|| "itself".to_owned(), |f| f.to_owned());
    let peers = if report.peers.is_empty() {
        String::new()
    } else {
        format!(" and the tables of {}", report.peers.join(", "))
    };
    let mut out = format!(
        "audit of the xlb at {} against {}{peers}: {}, {}\n",
        report.pin_path.as_deref().unwrap_or("?"),
        against,
        plural(report.drift, "drift"),
        plural(report.notes, "note")
    );
    if report.findings.is_empty() {
        return out;
    }
    let rows: Vec<[String; 6]> = report
        .findings
        .iter()
        .map(|f| {
            [
                match f.severity {
                    Severity::Drift => "drift".to_owned(),
                    Severity::Note => "note".to_owned(),
                },
                f.kind.name().to_owned(),
                f.vip.as_deref().map_or_else(
                    || "-".to_owned(),
                    |vip| crate::names::label(vip, f.vip_name.as_deref()),
                ),
                f.backend.clone().unwrap_or_else(|| "-".to_owned()),
                f.expected.clone(),
                f.actual.clone(),
            ]
        })
        .collect();
    let header = ["", "KIND", "VIP", "BACKEND", "EXPECTED", "ACTUAL"].map(str::to_owned);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |row: &[String; 6]| {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            line += &format!("{cell:<width$}  ");
        }
        line += &row[5];
        line + "\n"
    };
    out += &line(&header);
    for (row, finding) in rows.iter().zip(&report.findings) {
        out += &line(row);
        out += &format!("{:w$}  fix: {}\n", "", finding.fix, w = widths[0]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rules;

    /// Test that an invalid or unreadable config stops the audit before the kernel is read: the
    /// pin directory does not exist, yet the result is the config's diagnostics, not NotLoaded.
    #[test]
    fn a_bad_config_stops_before_the_kernel() {
        let env = crate::config::FixedEnvironment::new(&["lo"]);
        let pins = Path::new("/nonexistent/xlb-pins");
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("xlb.toml");
        std::fs::write(
            &path,
            "[global]\ninterface = \"lo\"\n[[vip]]\nname = \"x\"\n",
        )
        .expect("temporary config");
        let invalid = audit(Some(&path), Some(pins), &env).expect("a report");
        std::fs::remove_file(&path).expect("removing the temporary config");
        assert_eq!(invalid.code, exit::INVALID);
        assert!(!invalid.ok && invalid.pin_path.is_none());
        assert!(invalid.diagnostics.iter().any(Diagnostic::is_error));
        let unreadable = audit(Some(&path), Some(pins), &env).expect("a report");
        assert_eq!(unreadable.code, exit::UNREADABLE);
        assert_eq!(unreadable.diagnostics[0].rule, rules::UNREADABLE_FILE.id);
    }

    /// Test that long slot lists are cut short with a count.
    #[test]
    fn slot_lists_are_short() {
        assert_eq!(list_slots(&[7]), "slot 7");
        assert_eq!(list_slots(&[7, 9]), "slots 7, 9");
        assert_eq!(list_slots(&[1, 2, 3, 4, 5]), "slots 1, 2, 3 and 2 more");
    }

    /// Test that the text rendering has a header line and a fix under every finding.
    #[test]
    fn text_has_header_rows_and_fixes() {
        let report = Report {
            ok: false,
            file: Some("web.toml".to_owned()),
            pin_path: Some("/sys/fs/bpf/xlb".to_owned()),
            peers: Vec::new(),
            diagnostics: Vec::new(),
            drift: 1,
            notes: 0,
            findings: vec![Finding {
                kind: Kind::BackendMac,
                vip_name: None,
                severity: Severity::Drift,
                vip: Some("198.18.1.10:80/tcp".to_owned()),
                backend: Some("198.18.0.10".to_owned()),
                expected: "02:00:00:00:03:00".to_owned(),
                actual: "02:00:00:00:00:99".to_owned(),
                fix: "re-apply the config: `xlb apply web.toml`".to_owned(),
            }],
            code: exit::INVALID,
        };
        let out = text(&report);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].contains("1 drift, 0 notes"), "{out}");
        assert!(
            lines[1].contains("KIND") && lines[1].contains("ACTUAL"),
            "{out}"
        );
        assert!(lines[2].starts_with("drift  backend_mac"), "{out}");
        assert!(lines[3].trim_start().starts_with("fix: re-apply"), "{out}");
        assert_eq!(
            lines[1].find("EXPECTED"),
            lines[2].find("02:00:00:00:03:00")
        );
    }

    #[test]
    fn peers_with_other_tables_or_vips_are_drift() {
        // Test that `--peer` finds a VIP whose fingerprint differs, a VIP only here and a VIP
        // only at the peer, and nothing when the tables are the same.
        let vip = |name: &str, print: &str| crate::status::VipStatus {
            entry: crate::status::VipEntry {
                vip: name.to_owned(),
                name: None,
                id: 0,
                forwarding: "dsr",
                hash: "5-tuple",
                table_size: 7,
                active_copy: 0,
            },
            backends: Default::default(),
            fingerprint: print.to_owned(),
            canary: None,
        };
        let peer = Path::new("/sys/fs/bpf/xlb-b");
        let ours = [
            vip("a:80/tcp", "1"),
            vip("b:80/tcp", "2"),
            vip("c:80/tcp", "3"),
        ];
        assert!(compare_peer(&ours, &ours, peer).is_empty());
        let theirs = [
            vip("a:80/tcp", "1"),
            vip("b:80/tcp", "9"),
            vip("d:80/tcp", "4"),
        ];
        let found = compare_peer(&ours, &theirs, peer);
        let vips: Vec<&str> = found.iter().filter_map(|f| f.vip.as_deref()).collect();
        assert_eq!(vips, ["b:80/tcp", "c:80/tcp", "d:80/tcp"]);
        assert!(
            found
                .iter()
                .all(|f| f.kind == Kind::Peer && f.severity == Severity::Drift)
        );
        assert!(found[0].actual.contains("table 9 at /sys/fs/bpf/xlb-b"));
    }
}
