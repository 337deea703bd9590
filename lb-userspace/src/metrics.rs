//! `/metrics`: a running xlb's counters, shares, backend health and alerts in the Prometheus
//! text exposition format 0.0.4, and the HTTP server (hyper) that answers scrapes. Anyone who
//! can connect may try to blind it, so every connection is bounded: a cap on how many, a
//! deadline for the request head and for the whole connection, and a page rendered at most
//! once a second however many scrapes come.

use std::{
    collections::{BTreeMap, HashMap},
    fmt, io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Bytes,
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use lb_common::{Counter, Verdict, VipKey, map_names, meta::Meta};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::Semaphore,
};

use crate::{
    config::Model,
    ethtool,
    maps::{Maps, array},
    rollout::describe_vip,
    skew::{Alert, AlertKind},
    stats::{self, Stats},
    status,
};

/// What the daemon knows beyond the maps. A VIP is named either by `describe_vip` (the `vip`
/// label, e.g. `198.18.1.10:80/tcp`) or by its config name when `vip_names` maps that name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extra {
    /// Config name → VIP key ([`Extra::set_vip_names`]); adds `xlb_vip_info{vip,name}` and
    /// lets the rows below name VIPs as the config does.
    pub vip_names: Vec<(String, VipKey)>,
    /// Health-check state: (VIP, backend, 1 up / 0 down), a row per health-checked target in
    /// the daemon's order ([`Extra::set_targets`]). A backend without a row has no check and
    /// counts as up.
    pub health: Vec<(String, IpAddr, u8)>,
    /// The skew detector's alerts ([`crate::skew::Detector::firing`]). Every live VIP shows a
    /// 0 for each [`AlertKind`] not firing.
    pub alerts: Vec<Alert>,
    /// How long applies took.
    pub apply_seconds: Histogram,
    /// For each health row, the index of its probe in `probe_seconds`: targets that share a
    /// probe share its outcomes, so their durations are recorded once, not once per VIP.
    pub row_probes: Vec<usize>,
    /// How long each probe's health checks took.
    pub probe_seconds: Vec<Histogram>,
    /// The daemon's scheduled audits of the live maps.
    pub audit: AuditMetrics,
    /// Canary applies: the one being watched, promotions and rollbacks.
    pub canary: crate::canary::Metrics,
    /// Config reloads that failed, by why ([`ReloadFailure`]).
    pub reload_failures: BTreeMap<ReloadFailure, u64>,
    /// Whether the last reload made its config live (true before any reload).
    pub last_reload_failed: bool,
    /// The interface the program is attached to: its driver's XDP_TX failures are exported.
    pub interface: Option<String>,
}

/// Why a config reload failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReloadFailure {
    /// The file could not be read.
    Unreadable,
    /// The file is invalid (syntax or a validation rule).
    Invalid,
    /// The file changes what cannot change while running (pin path, interface).
    Refused,
    /// Applying the valid file to the maps failed.
    Apply,
}

impl ReloadFailure {
    pub const ALL: [ReloadFailure; 4] = [
        ReloadFailure::Unreadable,
        ReloadFailure::Invalid,
        ReloadFailure::Refused,
        ReloadFailure::Apply,
    ];

    /// The `reason` label of `xlb_reload_failures_total`.
    pub fn name(self) -> &'static str {
        match self {
            ReloadFailure::Unreadable => "unreadable",
            ReloadFailure::Invalid => "invalid",
            ReloadFailure::Refused => "refused",
            ReloadFailure::Apply => "apply",
        }
    }
}

/// Upper bounds (seconds) of the duration histograms' buckets: from a 1 ms apply or check to
/// a health check that runs into a 10 s timeout.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A Prometheus histogram of durations over [`DURATION_BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bound (not cumulative), then above the last.
    counts: [u64; DURATION_BUCKETS.len() + 1],
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = DURATION_BUCKETS.partition_point(|bound| *bound < seconds);
        self.counts[bucket] += 1;
        self.sum += seconds;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `_bucket` samples (cumulative, `le` label, `+Inf` last), `_sum` and `_count`, each
    /// with `labels` too.
    fn samples(&self, labels: &Labels) -> Vec<(&'static str, Labels, Value)> {
        let mut below = 0;
        let mut out = Vec::new();
        for (i, count) in self.counts.iter().enumerate() {
            below += count;
            let le = DURATION_BUCKETS.get(i).map_or_else(
                || "+Inf".to_owned(),
                |bound| Value::Float(*bound).to_string(),
            );
            let mut labels = labels.clone();
            labels.push(("le", le));
            out.push(("_bucket", labels, Value::Int(below)));
        }
        out.push(("_sum", labels.clone(), Value::Float(self.sum)));
        out.push(("_count", labels.clone(), Value::Int(below)));
        out
    }
}

/// What the daemon's scheduled audits found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditMetrics {
    pub runs: u64,
    /// When the last one ran, seconds since the Unix epoch (0: never).
    pub last_run: u64,
    /// Findings of the last one: (kind, severity) → count.
    pub findings: BTreeMap<(&'static str, &'static str), u64>,
}

impl Extra {
    /// Maps each VIP's config name to its key, so rows may use the names.
    pub fn set_vip_names(&mut self, model: &Model) {
        self.vip_names = model
            .vips
            .iter()
            .map(|vip| (vip.name.clone(), vip.key()))
            .collect();
    }

    /// Makes the health rows those of `targets` (VIP name, backend, index of the probe that
    /// checks it), in their order and all up (checks start from up); a probe keeps the
    /// histogram of the first of its targets that had one.
    pub fn set_targets<'a>(&mut self, targets: impl IntoIterator<Item = (&'a str, IpAddr, usize)>) {
        let old_seconds = std::mem::take(&mut self.probe_seconds);
        let mut old: HashMap<(String, IpAddr), usize> = std::mem::take(&mut self.health)
            .into_iter()
            .zip(std::mem::take(&mut self.row_probes))
            .map(|((vip, backend, _), probe)| ((vip, backend), probe))
            .collect();
        for (vip, backend, probe) in targets {
            if self.probe_seconds.len() <= probe {
                self.probe_seconds
                    .resize_with(probe + 1, Histogram::default);
            }
            let kept = old.remove(&(vip.to_owned(), backend));
            if let Some(histogram) = kept.and_then(|old| old_seconds.get(old))
                && self.probe_seconds[probe] == Histogram::default()
            {
                self.probe_seconds[probe] = histogram.clone();
            }
            self.health.push((vip.to_owned(), backend, 1));
            self.row_probes.push(probe);
        }
    }

    /// Records how long one check of probe `probe` took ([`Extra::set_targets`]). Called for
    /// every probe (10,000 a second at scale), so by index, without a lookup.
    pub fn record_check(&mut self, probe: usize, duration: Duration) {
        if let Some(seconds) = self.probe_seconds.get_mut(probe) {
            seconds.observe(duration);
        }
    }

    /// Records whether the target in row `row` is now up: called when its health changes.
    pub fn set_up(&mut self, row: usize, up: bool) {
        if let Some(health) = self.health.get_mut(row) {
            health.2 = u8::from(up);
        }
    }

    /// Records the outcome of a config reload: `None` if it made the file live.
    pub fn record_reload(&mut self, failure: Option<ReloadFailure>) {
        self.last_reload_failed = failure.is_some();
        if let Some(failure) = failure {
            *self.reload_failures.entry(failure).or_default() += 1;
        }
    }

    /// The `vip` label for a VIP named `vip` (config name or already `describe_vip`).
    fn vip_label(&self, vip: &str) -> String {
        self.vip_names
            .iter()
            .find(|(name, _)| name == vip)
            .map_or_else(|| vip.to_owned(), |(_, key)| describe_vip(key))
    }
}

/// The metrics of the program behind `maps`, with `extra`, as Prometheus text.
pub fn render(maps: &mut (impl Maps + ?Sized), extra: &Extra) -> anyhow::Result<String> {
    let sample = stats::Sample::read(maps)?;
    // The report's skew flags are not exported (`xlb_alert` carries the detector's verdict),
    // so any valid factor does.
    let stats = stats::compare(&sample, None, 1.5);
    let meta = array::<Meta>(maps, map_names::META)?
        .get(&0, 0)
        .context("reading the meta map")?;
    let live = Live {
        fingerprints: status::fingerprints(maps)?,
        // A driver without the counters, or an interface gone, leaves the sample out.
        xdp_tx_errors: extra.interface.as_ref().and_then(|interface| {
            let errors = ethtool::xdp_tx_errors(interface);
            Some((interface.clone(), errors.ok().flatten()?))
        }),
    };
    Ok(exposition(
        &stats,
        &sample.totals.verdicts,
        &meta,
        &live,
        extra,
    ))
}

/// `xlb_canary_*`: the canary being watched (by VIP), time left, promotions and rollbacks.
fn canary_families(out: &mut String, canary: &crate::canary::Metrics, meta: &Meta) {
    family(
        out,
        "xlb_canary_percent",
        "gauge",
        "Percent of the VIP's hash space whose new flows take the tables of a canary apply \
         being watched (only VIPs under canary have a sample).",
        canary
            .running
            .iter()
            .map(|(vip, percent)| (vec![("vip", vip.clone())], Value::Float(*percent))),
    );
    let ends = u64::from(meta.canary_ends).max(canary.ends);
    let left = if canary.running.is_empty() {
        0
    } else {
        ends.saturating_sub(crate::canary::now_unix())
    };
    family(
        out,
        "xlb_canary_seconds_left",
        "gauge",
        "Seconds left in the running canary's watch (0: none running).",
        [(vec![], Value::Int(left))],
    );
    family(
        out,
        "xlb_canary_promotions_total",
        "counter",
        "Canary applies promoted (a clean watch, or `xlb canary promote`).",
        [(vec![], Value::Int(canary.promotions))],
    );
    family(
        out,
        "xlb_canary_rollbacks_total",
        "counter",
        "Canary applies rolled back, by the alarm that did it.",
        crate::canary::Alarm::KINDS.iter().map(|kind| {
            (
                vec![("alarm", (*kind).to_owned())],
                Value::Int(canary.rollbacks.get(kind).copied().unwrap_or(0)),
            )
        }),
    );
}

/// What a scrape reads beside the counters.
#[derive(Default)]
struct Live {
    /// Each live VIP's label and table fingerprint ([`status::fingerprints`]).
    fingerprints: Vec<(String, String)>,
    /// The attached interface and its driver's XDP_TX failures.
    xdp_tx_errors: Option<(String, u64)>,
}

/// The version and commit `xlb` was built from (`build.rs` records the commit).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("XLB_COMMIT");

/// A sample value: counters print as integers, gauges as Go-style floats.
#[derive(Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) if x.is_nan() => f.write_str("NaN"),
            Value::Float(x) if x.is_infinite() => {
                f.write_str(if x > 0.0 { "+Inf" } else { "-Inf" })
            }
            // Rust prints every finite f64 as plain decimal digits, which Prometheus parses.
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

type Labels = Vec<(&'static str, String)>;

/// Writes one metric family: HELP, TYPE, then all its samples together (the format allows
/// each family once).
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, Value)>,
) {
    debug_assert!(kind != "counter" || name.ends_with("_total"), "{name}");
    *out += &format!(
        "# HELP {name} {}\n# TYPE {name} {kind}\n",
        escape_help(help)
    );
    for (labels, value) in samples {
        sample(out, name, &labels, value);
    }
}

/// Writes one histogram family: each item's `_bucket`, `_sum` and `_count` samples.
fn histogram<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    items: impl IntoIterator<Item = (Labels, &'a Histogram)>,
) {
    *out += &format!(
        "# HELP {name} {}\n# TYPE {name} histogram\n",
        escape_help(help)
    );
    for (labels, histogram) in items {
        for (suffix, labels, value) in histogram.samples(&labels) {
            sample(out, &format!("{name}{suffix}"), &labels, value);
        }
    }
}

/// Writes one sample line.
fn sample(out: &mut String, name: &str, labels: &Labels, value: Value) {
    *out += name;
    if !labels.is_empty() {
        let labels: Vec<String> = labels
            .iter()
            .map(|(label, value)| format!("{label}=\"{}\"", escape_label(value)))
            .collect();
        *out += &format!("{{{}}}", labels.join(","));
    }
    *out += &format!(" {value}\n");
}

/// A label value: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// HELP text: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

/// The exposition of a stats report, the verdict counters, the meta entry and `extra`.
fn exposition(
    stats: &Stats,
    verdicts: &[(Verdict, Counter)],
    meta: &Meta,
    live: &Live,
    extra: &Extra,
) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "xlb_build_info",
        "gauge",
        "1, labelled with the version and git commit xlb was built from.",
        [(
            vec![
                ("version", VERSION.to_owned()),
                ("commit", COMMIT.to_owned()),
            ],
            Value::Int(1),
        )],
    );
    let backends = || {
        stats.vips.iter().flat_map(|vip| {
            vip.backends.iter().map(move |backend| {
                let labels = vec![
                    ("vip", vip.vip.clone()),
                    ("backend", backend.address.to_string()),
                ];
                (labels, backend)
            })
        })
    };
    let per_backend =
        |out: &mut String, name, kind, help, pick: fn(&stats::BackendStats) -> Value| {
            family(
                out,
                name,
                kind,
                help,
                backends().map(|(labels, b)| (labels, pick(b))),
            );
        };
    per_backend(
        &mut out,
        "xlb_backend_packets_total",
        "counter",
        "Packets sent to the backend.",
        |b| Value::Int(b.packets),
    );
    per_backend(
        &mut out,
        "xlb_backend_bytes_total",
        "counter",
        "Bytes of the frames sent to the backend, as received (Ethernet header included).",
        |b| Value::Int(b.bytes),
    );
    per_backend(
        &mut out,
        "xlb_backend_new_flows_total",
        "counter",
        "New flows the VIP's Maglev table chose the backend for.",
        |b| Value::Int(b.new_flows),
    );

    let health: BTreeMap<(String, IpAddr), u8> = extra
        .health
        .iter()
        .map(|(vip, backend, up)| ((extra.vip_label(vip), *backend), u8::from(*up != 0)))
        .collect();
    family(
        &mut out,
        "xlb_backend_up",
        "gauge",
        "1 if the backend passes its health check or has none, 0 if it fails it.",
        backends().map(|(labels, b)| {
            let up = health
                .get(&(labels[0].1.clone(), b.address))
                .copied()
                .unwrap_or(1);
            (labels, Value::Int(u64::from(up)))
        }),
    );
    per_backend(
        &mut out,
        "xlb_backend_observed_share",
        "gauge",
        "The backend's part (0 to 1) of its VIP's new flows since the program was loaded.",
        |b| Value::Float(b.observed_share),
    );
    per_backend(
        &mut out,
        "xlb_backend_expected_share",
        "gauge",
        "The backend's part (0 to 1) of its VIP's live Maglev table slots.",
        |b| Value::Float(b.expected_share),
    );

    let per_vip = |out: &mut String, name, help, pick: fn(&stats::VipStats) -> u64| {
        family(
            out,
            name,
            "counter",
            help,
            stats
                .vips
                .iter()
                .map(|vip| (vec![("vip", vip.vip.clone())], Value::Int(pick(vip)))),
        );
    };
    per_vip(
        &mut out,
        "xlb_vip_packets_total",
        "Packets addressed to the VIP.",
        |vip| vip.packets,
    );
    per_vip(
        &mut out,
        "xlb_vip_bytes_total",
        "Bytes of the frames addressed to the VIP, as received.",
        |vip| vip.bytes,
    );
    per_vip(
        &mut out,
        "xlb_vip_new_flows_total",
        "New flows of all the VIP's backends.",
        |vip| vip.new_flows,
    );
    family(
        &mut out,
        "xlb_vip_info",
        "gauge",
        "1 for each VIP with a config name: maps the vip label to the name.",
        extra.vip_names.iter().map(|(name, key)| {
            (
                vec![("vip", describe_vip(key)), ("name", name.clone())],
                Value::Int(1),
            )
        }),
    );

    let reasons = |pick: fn(&stats::Count) -> u64| {
        stats
            .reasons
            .iter()
            .map(move |(reason, c)| (vec![("reason", (*reason).to_owned())], Value::Int(pick(c))))
    };
    family(
        &mut out,
        "xlb_packets_total",
        "counter",
        "Packets seen by the XDP program, by the reason for their verdict (each counts once).",
        reasons(|c| c.packets),
    );
    family(
        &mut out,
        "xlb_bytes_total",
        "counter",
        "Bytes of the frames seen by the XDP program, by the reason for their verdict.",
        reasons(|c| c.bytes),
    );
    family(
        &mut out,
        "xlb_verdict_packets_total",
        "counter",
        "Packets by XDP verdict.",
        verdicts.iter().map(|(verdict, c)| {
            (
                vec![("verdict", verdict.name().to_owned())],
                Value::Int(c.packets),
            )
        }),
    );
    family(
        &mut out,
        "xlb_flow_events_total",
        "counter",
        "Packets by flow-table event: flow_hit (known flow), flow_miss (hashed into the table), \
         flow_stale (known flow whose backend left: re-hashed), flow_remembered (a missed flow \
         took a slot), flow_not_remembered (a SYN steered by the table without being \
         remembered), flow_evicted_proven (a flow that had sent more than a SYN was evicted).",
        stats
            .events
            .iter()
            .map(|(event, c)| (vec![("event", (*event).to_owned())], Value::Int(c.packets))),
    );

    family(
        &mut out,
        "xlb_config_generation",
        "gauge",
        "Changes made to the live state since the program was loaded (0: nothing applied).",
        [(vec![], Value::Int(meta.generation))],
    );
    family(
        &mut out,
        "xlb_config_applied_timestamp_seconds",
        "gauge",
        "When the live generation was applied, seconds since the Unix epoch (0: never).",
        [(vec![], Value::Int(meta.applied_at))],
    );
    histogram(
        &mut out,
        "xlb_apply_duration_seconds",
        "How long the daemon's applies took.",
        [(vec![], &extra.apply_seconds)],
    );
    histogram(
        &mut out,
        "xlb_health_check_duration_seconds",
        "How long the backend's health checks took.",
        extra
            .health
            .iter()
            .zip(&extra.row_probes)
            .filter_map(|((vip, backend, _), probe)| {
                let labels = vec![
                    ("vip", extra.vip_label(vip)),
                    ("backend", backend.to_string()),
                ];
                Some((labels, extra.probe_seconds.get(*probe)?))
            }),
    );
    family(
        &mut out,
        "xlb_reload_failures_total",
        "counter",
        "Config reloads that failed, by reason: unreadable (the file), invalid (a syntax error \
         or a rule), refused (a change of pin path or interface, which needs a restart), apply \
         (writing the maps). The running config stays in force.",
        ReloadFailure::ALL.into_iter().map(|reason| {
            let count = extra.reload_failures.get(&reason).copied().unwrap_or(0);
            (
                vec![("reason", reason.name().to_owned())],
                Value::Int(count),
            )
        }),
    );
    family(
        &mut out,
        "xlb_config_last_reload_successful",
        "gauge",
        "1 if the last config reload made its file live (or none failed yet), 0 if it failed \
         and an older config is in force.",
        [(vec![], Value::Int(u64::from(!extra.last_reload_failed)))],
    );
    family(
        &mut out,
        "xlb_vip_table_info",
        "gauge",
        "1 for each live VIP, labelled with its table's fingerprint (as `xlb status` shows it): \
         nodes steering the VIP alike have equal fingerprints.",
        live.fingerprints.iter().map(|(vip, fingerprint)| {
            (
                vec![("vip", vip.clone()), ("fingerprint", fingerprint.clone())],
                Value::Int(1),
            )
        }),
    );
    family(
        &mut out,
        "xlb_interface_xdp_tx_errors_total",
        "counter",
        "Frames XDP_TX failed to send on the attached interface, from its driver's statistics \
         (ethtool -S: e.g. a veth whose peer has no XDP program). xlb counted them as forwarded.",
        live.xdp_tx_errors.iter().map(|(interface, errors)| {
            (vec![("interface", interface.clone())], Value::Int(*errors))
        }),
    );

    family(
        &mut out,
        "xlb_audit_runs_total",
        "counter",
        "Scheduled audits of the live maps the daemon ran (drift from its config, and where each \
         VIP's new flows go).",
        [(vec![], Value::Int(extra.audit.runs))],
    );
    family(
        &mut out,
        "xlb_audit_last_run_timestamp_seconds",
        "gauge",
        "When the daemon last audited the live maps, seconds since the Unix epoch (0: never).",
        [(vec![], Value::Int(extra.audit.last_run))],
    );
    family(
        &mut out,
        "xlb_audit_findings",
        "gauge",
        "Findings of the last scheduled audit by kind (e.g. table, backend_weight, outage) and \
         severity (drift fails the audit and raises the audit alert; note does not).",
        extra
            .audit
            .findings
            .iter()
            .map(|((kind, severity), count)| {
                (
                    vec![
                        ("kind", (*kind).to_owned()),
                        ("severity", (*severity).to_owned()),
                    ],
                    Value::Int(*count),
                )
            }),
    );

    canary_families(&mut out, &extra.canary, meta);

    // Every live VIP shows every kind about a VIP, and the table-wide kinds show once with an
    // empty VIP, so a dashboard sees 0 rather than no data.
    let mut alerts: BTreeMap<(String, String), u8> = stats
        .vips
        .iter()
        .map(|vip| vip.vip.clone())
        .chain([String::new()])
        .flat_map(|vip| {
            let about_vip = !vip.is_empty();
            AlertKind::ALL
                .into_iter()
                .filter(move |kind| kind.about_vip() == about_vip)
                .map(move |kind| ((vip.clone(), kind.name().to_owned()), 0))
        })
        .collect();
    for alert in &extra.alerts {
        let slot = alerts
            .entry((extra.vip_label(&alert.vip), alert.kind.name().to_owned()))
            .or_default();
        *slot = (*slot).max(u8::from(alert.firing));
    }
    family(
        &mut out,
        "xlb_alert",
        "gauge",
        "1 while an alert of this kind fires for the VIP (dominant, skew, few_healthy, audit, \
         flood) or for the flow table (evictions, vip=\"\"), else 0.",
        alerts.into_iter().map(|((vip, kind), firing)| {
            (
                vec![("kind", kind), ("vip", vip)],
                Value::Int(u64::from(firing)),
            )
        }),
    );
    out
}

/// Renders the metrics page; called at most once per [`Limits::page_max_age`].
pub type RenderFn = Arc<dyn Fn() -> anyhow::Result<String> + Send + Sync>;

/// What one scraper, or anyone else who can connect, may cost the server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog for a free slot.
    pub max_connections: usize,
    /// How long a client may take to send its request head: an idle or slowloris connection
    /// holds its slot no longer than this.
    pub head_deadline: Duration,
    /// How long a connection may live in all, answer included (a client reading slowly).
    pub connection_deadline: Duration,
    /// How long a rendered page is served again before the maps are read anew: a flood of
    /// scrapes costs one render a second, not one each.
    pub page_max_age: Duration,
}

impl Limits {
    /// The daemon's limits: far more connections than a Prometheus fleet opens, a head
    /// deadline well under Prometheus' 10 s scrape timeout, pages fresh to the second.
    pub const DAEMON: Limits = Limits {
        max_connections: 4096,
        head_deadline: Duration::from_secs(2),
        connection_deadline: Duration::from_secs(10),
        page_max_age: Duration::from_secs(1),
    };
}

impl Limits {
    /// These limits with at most a quarter of this process's open-files limit as connections:
    /// scrapers must never take the descriptors health checks and map updates need.
    fn within_open_files(self) -> Limits {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit, which lives here.
        let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } == 0;
        let quarter = usize::try_from(limit.rlim_cur / 4).unwrap_or(usize::MAX);
        Limits {
            max_connections: if known {
                self.max_connections.min(quarter.max(1))
            } else {
                self.max_connections
            },
            ..self
        }
    }
}

/// The listen backlog: connections waiting for a slot queue here rather than being refused.
const BACKLOG: u32 = 4096;
/// Longest request head accepted (hyper's smallest buffer); a scrape's is a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";
/// Content type of the plain-text error pages.
const TEXT: &str = "text/plain; charset=utf-8";

/// A listening socket for [`serve`] on `address`, with a backlog of [`BACKLOG`].
pub fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// The last rendered page and when it was rendered.
struct Pages {
    render: RenderFn,
    max_age: Duration,
    last: std::sync::Mutex<Option<(Instant, Bytes)>>,
}

impl Pages {
    /// The page, rendered anew only if the last one is older than `max_age`. Concurrent
    /// scrapes wait for one render instead of each doing its own. Blocking: the maps are read
    /// with system calls.
    fn get(&self) -> anyhow::Result<Bytes> {
        let mut last = self
            .last
            .lock()
            .map_err(|_| anyhow::anyhow!("metrics page cache poisoned"))?;
        if let Some((at, page)) = last.as_ref()
            && at.elapsed() < self.max_age
        {
            return Ok(page.clone());
        }
        let page = Bytes::from((self.render)()?);
        *last = Some((Instant::now(), page.clone()));
        Ok(page)
    }
}

/// Answers `GET /metrics` (and `HEAD`) with `render`'s text and anything else with 404 (405 for
/// another method on /metrics), one request per connection, many connections at once within
/// [`Limits::DAEMON`] (fewer if the open-files limit is low). Runs until its task is aborted.
pub async fn serve(listener: TcpListener, render: RenderFn) -> anyhow::Result<()> {
    serve_with(listener, render, Limits::DAEMON.within_open_files()).await
}

/// [`serve`] with other limits.
pub async fn serve_with(
    listener: TcpListener,
    render: RenderFn,
    limits: Limits,
) -> anyhow::Result<()> {
    let pages = Arc::new(Pages {
        render,
        max_age: limits.page_max_age,
        last: std::sync::Mutex::default(),
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.head_deadline)
        .keep_alive(false)
        .title_case_headers(true)
        .max_buf_size(MAX_REQUEST_HEAD);
    loop {
        let slot = Arc::clone(&slots).acquire_owned().await?;
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Failed accepts are transient (a client gone before the handshake ended, no
                // file descriptors left); the scraper retries anyway.
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (pages, http) = (Arc::clone(&pages), http.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let pages = Arc::clone(&pages);
                async move { Ok::<_, std::convert::Infallible>(respond(&request, pages).await) }
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            // A client's errors (it went away, it stalled) are its own; the slot frees either way.
            let _ = tokio::time::timeout(limits.connection_deadline, connection).await;
            drop(slot);
        });
    }
}

type Page = Response<Full<Bytes>>;

/// The response to `request`.
async fn respond<B>(request: &Request<B>, pages: Arc<Pages>) -> Page {
    let path = request.uri().path();
    if path != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            format!("no page at {path}: the metrics are at /metrics\n"),
        );
    }
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not supported: use GET /metrics\n"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    // Reading the maps is blocking system calls: keep them off the async workers.
    match tokio::task::spawn_blocking(move || pages.get()).await {
        Ok(Ok(page)) => {
            let mut response = Response::new(Full::new(page));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            response
        }
        Ok(Err(err)) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the metrics failed: {err:#}\n"),
        ),
        Err(err) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the metrics failed: {err}\n"),
        ),
    }
}

/// A response with a plain-text `body`.
fn plain(status: StatusCode, body: String) -> Page {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT));
    response
}

#[cfg(test)]
mod tests {
    use lb_common::service::FAMILY_IPV4;
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpStream,
    };

    use super::*;
    use crate::{
        live::BackendState,
        stats::{BackendStats, Count, VipStats},
    };

    fn web_key() -> VipKey {
        VipKey {
            addr: [198, 18, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            port: 80u16.to_be(),
            proto: 6,
            family: FAMILY_IPV4,
        }
    }

    fn backend(last: u8, new_flows: u64, observed: f64) -> BackendStats {
        BackendStats {
            id: u32::from(last),
            address: IpAddr::from([198, 18, 0, last]),
            mac: [2, 0, 0, 0, 0, last],
            state: BackendState::Active,
            weight: 1,
            packets: new_flows * 2,
            bytes: new_flows * 120,
            new_flows,
            window_new_flows: new_flows,
            observed_share: observed,
            expected_share: 0.5,
            skew: None,
            rates: None,
        }
    }

    fn stats() -> Stats {
        Stats {
            interval_seconds: None,
            skew_factor: 1.5,
            skew_min_new_flows: 100,
            skewed_backends: 0,
            vips: vec![VipStats {
                vip: describe_vip(&web_key()),
                name: None,
                id: 0,
                forwarding: "dsr",
                table_size: 13,
                packets: 200,
                bytes: 12_000,
                new_flows: 100,
                window: crate::stats::Window::Lifetime,
                window_new_flows: 100,
                dominant: None,
                rates: None,
                backends: vec![backend(10, 75, 0.75), backend(11, 25, 0.25)],
            }],
            reasons: [(
                "forwarded_dsr",
                Count {
                    packets: 200,
                    bytes: 12_000,
                },
            )]
            .into(),
            events: [(
                "flow_miss",
                Count {
                    packets: 100,
                    bytes: 6_000,
                },
            )]
            .into(),
        }
    }

    /// Test that the exposition has one HELP and TYPE per family before its samples, the
    /// backend and VIP counters, health by config name or label (up without a check), and
    /// every alert kind per VIP (0 unless a row fires it).
    #[test]
    fn exposition_has_families_health_and_alerts() {
        let meta = Meta {
            generation: 3,
            applied_at: 1_700_000_000,
            ..Meta::default()
        };
        let mut extra = Extra {
            vip_names: vec![("web".to_owned(), web_key())],
            alerts: vec![Alert {
                kind: AlertKind::Skew,
                vip: "web".to_owned(),
                backend: Some(IpAddr::from([198, 18, 0, 10])),
                message: "backend 198.18.0.10 took 75%".to_owned(),
                firing: true,
            }],
            ..Extra::default()
        };
        extra.apply_seconds.observe(Duration::from_millis(250));
        extra.apply_seconds.observe(Duration::from_millis(3));
        extra.record_reload(Some(ReloadFailure::Invalid));
        extra.record_reload(Some(ReloadFailure::Invalid));
        let (first, second) = (
            IpAddr::from([198, 18, 0, 10]),
            IpAddr::from([198, 18, 0, 11]),
        );
        extra.set_targets([("web", second, 0)]);
        extra.record_check(0, Duration::from_millis(1));
        extra.record_check(0, Duration::from_millis(1));
        extra.set_up(0, false);
        // A new target list keeps the histograms of the targets that stay, all up again.
        extra.set_targets([("web", first, 0), ("web", second, 1)]);
        assert_eq!(
            extra.health,
            [("web".to_owned(), first, 1), ("web".to_owned(), second, 1)]
        );
        assert_eq!(extra.probe_seconds[1].count(), 2);
        extra.record_check(1, Duration::from_millis(1));
        extra.set_up(1, false);
        extra.record_check(0, Duration::from_millis(500));
        extra.record_check(0, Duration::from_millis(3));
        assert_eq!(
            extra.health,
            [("web".to_owned(), first, 1), ("web".to_owned(), second, 0)]
        );
        assert_eq!(extra.probe_seconds[0].count(), 2);
        assert_eq!(extra.probe_seconds[1].count(), 3);
        let verdicts = [(
            Verdict::Tx,
            Counter {
                packets: 200,
                bytes: 12_000,
            },
        )];
        let live = Live {
            fingerprints: vec![(describe_vip(&web_key()), "00000000deadbeef".to_owned())],
            xdp_tx_errors: Some(("xlb0".to_owned(), 7)),
        };
        let text = exposition(&stats(), &verdicts, &meta, &live, &extra);
        let lines: Vec<&str> = text.lines().collect();
        for wanted in [
            r#"xlb_backend_new_flows_total{vip="198.18.1.10:80/tcp",backend="198.18.0.10"} 75"#,
            r#"xlb_backend_packets_total{vip="198.18.1.10:80/tcp",backend="198.18.0.11"} 50"#,
            r#"xlb_backend_up{vip="198.18.1.10:80/tcp",backend="198.18.0.10"} 1"#,
            r#"xlb_backend_up{vip="198.18.1.10:80/tcp",backend="198.18.0.11"} 0"#,
            r#"xlb_backend_observed_share{vip="198.18.1.10:80/tcp",backend="198.18.0.10"} 0.75"#,
            r#"xlb_backend_expected_share{vip="198.18.1.10:80/tcp",backend="198.18.0.10"} 0.5"#,
            r#"xlb_vip_bytes_total{vip="198.18.1.10:80/tcp"} 12000"#,
            r#"xlb_vip_info{vip="198.18.1.10:80/tcp",name="web"} 1"#,
            r#"xlb_packets_total{reason="forwarded_dsr"} 200"#,
            r#"xlb_verdict_packets_total{verdict="tx"} 200"#,
            r#"xlb_flow_events_total{event="flow_miss"} 100"#,
            "xlb_config_generation 3",
            "xlb_config_applied_timestamp_seconds 1700000000",
            r#"xlb_apply_duration_seconds_bucket{le="0.001"} 0"#,
            r#"xlb_apply_duration_seconds_bucket{le="0.005"} 1"#,
            r#"xlb_apply_duration_seconds_bucket{le="0.25"} 2"#,
            r#"xlb_apply_duration_seconds_bucket{le="+Inf"} 2"#,
            "xlb_apply_duration_seconds_sum 0.253",
            "xlb_apply_duration_seconds_count 2",
            r#"xlb_health_check_duration_seconds_bucket{vip="198.18.1.10:80/tcp",backend="198.18.0.10",le="0.0025"} 0"#,
            r#"xlb_health_check_duration_seconds_bucket{vip="198.18.1.10:80/tcp",backend="198.18.0.10",le="0.005"} 1"#,
            r#"xlb_health_check_duration_seconds_bucket{vip="198.18.1.10:80/tcp",backend="198.18.0.10",le="0.5"} 2"#,
            r#"xlb_health_check_duration_seconds_count{vip="198.18.1.10:80/tcp",backend="198.18.0.10"} 2"#,
            r#"xlb_reload_failures_total{reason="invalid"} 2"#,
            r#"xlb_reload_failures_total{reason="apply"} 0"#,
            "xlb_config_last_reload_successful 0",
            r#"xlb_vip_table_info{vip="198.18.1.10:80/tcp",fingerprint="00000000deadbeef"} 1"#,
            r#"xlb_interface_xdp_tx_errors_total{interface="xlb0"} 7"#,
            r#"xlb_alert{kind="skew",vip="198.18.1.10:80/tcp"} 1"#,
            r#"xlb_alert{kind="dominant",vip="198.18.1.10:80/tcp"} 0"#,
            r#"xlb_alert{kind="few_healthy",vip="198.18.1.10:80/tcp"} 0"#,
        ] {
            assert!(lines.contains(&wanted), "missing {wanted}:\n{text}");
        }
        let build = format!(r#"xlb_build_info{{version="{VERSION}",commit="{COMMIT}"}} 1"#);
        assert!(lines.contains(&build.as_str()), "missing {build}:\n{text}");
        assert_eq!(COMMIT.len(), 12, "a commit of 12 hex digits: {COMMIT}");
        let mut seen = Vec::new();
        for line in &lines {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!seen.contains(&name), "family {name} twice:\n{text}");
                seen.push(name);
            }
        }
        assert_eq!(seen.len(), text.matches("# HELP ").count());
    }

    /// Test that label values escape backslash, quote and line feed, and that special floats
    /// use the spelling Prometheus parses.
    #[test]
    fn labels_and_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), r#"a\\b\"c\nd"#);
        assert_eq!(escape_help("x\\y\nz"), r"x\\y\nz");
        let text: Vec<String> = [f64::NAN, f64::INFINITY, -f64::INFINITY, 1.0, 0.125]
            .map(|x| Value::Float(x).to_string())
            .into();
        assert_eq!(text, ["NaN", "+Inf", "-Inf", "1", "0.125"]);
        let mut out = String::new();
        family(
            &mut out,
            "xlb_alert",
            "gauge",
            "h",
            [(vec![("vip", "we\"ird".to_owned())], Value::Int(1))],
        );
        assert!(out.ends_with("xlb_alert{vip=\"we\\\"ird\"} 1\n"), "{out}");
    }

    /// Sends `request` to `address` and returns the whole response.
    async fn fetch(address: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("receive");
        response
    }

    /// The response to `request` (`METHOD TARGET`) sent to `address`, checked to have `status`.
    async fn answer(address: SocketAddr, request: &str, status: &str) -> String {
        let response = fetch(address, &format!("{request} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
        let status_line = format!("HTTP/1.1 {status}\r\n");
        assert!(response.starts_with(&status_line), "{response}");
        response
    }

    async fn server(
        limits: Limits,
        render: RenderFn,
    ) -> (SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>) {
        let listener = listen("127.0.0.1:0".parse().unwrap()).expect("listen");
        let address = listener.local_addr().expect("address");
        (address, tokio::spawn(serve_with(listener, render, limits)))
    }

    /// Test that serve answers GET /metrics over real TCP with 200, the exposition content
    /// type and the text; HEAD with the head only; other paths with 404, other methods with
    /// 405, and a failing render with 500 and its error.
    #[tokio::test]
    async fn serve_answers_metrics_and_refuses_the_rest() {
        let render: RenderFn = Arc::new(|| Ok("xlb_config_generation 1\n".to_owned()));
        let (address, task) = server(Limits::DAEMON, render).await;
        let ok = answer(address, "GET /metrics", "200 OK").await;
        for part in [
            "\r\nContent-Type: text/plain; version=0.0.4\r\n",
            "\r\nContent-Length: 24\r\n",
        ] {
            assert!(ok.contains(part), "{ok}");
        }
        assert!(ok.ends_with("\r\n\r\nxlb_config_generation 1\n"), "{ok}");
        let head = answer(address, "HEAD /metrics?x=1", "200 OK").await;
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        answer(address, "GET /", "404 Not Found").await;
        let post = answer(address, "POST /metrics", "405 Method Not Allowed").await;
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
        task.abort();

        let render: RenderFn = Arc::new(|| anyhow::bail!("map XLB_META is gone"));
        let (address, task) = server(Limits::DAEMON, render).await;
        let failed = answer(address, "GET /metrics", "500 Internal Server Error").await;
        assert!(failed.contains("map XLB_META is gone"), "{failed}");
        task.abort();
    }

    /// Test that a client that connects and sends nothing, and one that sends half a request
    /// head and stalls (slowloris), are both cut off at the head deadline, while a scrape made
    /// meanwhile is answered at once.
    #[tokio::test]
    async fn serve_cuts_off_silent_and_slow_clients() {
        let render: RenderFn = Arc::new(|| Ok("up 1\n".to_owned()));
        let deadline = Duration::from_millis(300);
        let limits = Limits {
            head_deadline: deadline,
            ..Limits::DAEMON
        };
        let (address, task) = server(limits, render).await;
        let mut silent = TcpStream::connect(address).await.expect("connect");
        let mut slow = TcpStream::connect(address).await.expect("connect");
        slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("half a head");
        let next = tokio::time::timeout(
            Duration::from_secs(5),
            fetch(address, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await
        .expect("answered beside the stalled clients");
        assert!(next.starts_with("HTTP/1.1 200 OK\r\n"), "{next}");
        for (name, stream) in [("silent", &mut silent), ("slowloris", &mut slow)] {
            let mut rest = Vec::new();
            tokio::time::timeout(deadline * 10, stream.read_to_end(&mut rest))
                .await
                .unwrap_or_else(|_| panic!("the {name} client was never cut off"))
                .expect("closed");
            let rest = String::from_utf8_lossy(&rest);
            assert!(
                rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
                "{name}: {rest}"
            );
        }
        task.abort();
    }

    /// Test that scrapes are answered while `XLB_METRICS_IDLE` (default 2,000) connections sit
    /// open, 15% of them slowloris clients that sent half a head, with a head deadline longer
    /// than the test so none of them is cut off: each scrape is served beside them, not after
    /// them. Prints each scrape's latency.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scrapes_are_answered_beside_thousands_of_idle_connections() {
        let idle: usize = std::env::var("XLB_METRICS_IDLE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        let render: RenderFn = Arc::new(|| Ok("xlb_config_generation 1\n".to_owned()));
        let limits = Limits {
            head_deadline: Duration::from_secs(120),
            ..Limits::DAEMON
        };
        let (address, task) = server(limits, render).await;
        let mut held = Vec::with_capacity(idle);
        for i in 0..idle {
            let mut stream = TcpStream::connect(address)
                .await
                .unwrap_or_else(|err| panic!("idle connection {i}: {err}"));
            if i % 7 == 0 {
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
                    .await
                    .expect("half a head");
            }
            held.push(stream);
        }
        let mut latencies = Vec::new();
        for _ in 0..6 {
            let started = Instant::now();
            let answer = tokio::time::timeout(
                Duration::from_secs(5),
                fetch(address, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            )
            .await
            .unwrap_or_else(|_| panic!("no answer within 5 s beside {idle} idle connections"));
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
            latencies.push(started.elapsed());
        }
        println!("scrape latencies beside {idle} idle connections: {latencies:?}");
        drop(held);
        task.abort();
    }

    /// Test that a burst of scrapes renders the page once (the cache serves the rest), and
    /// that a scrape after the page's age renders it anew.
    #[tokio::test]
    async fn a_burst_of_scrapes_renders_once() {
        let renders = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // A page that says how many times it was rendered.
        let counting = || -> RenderFn {
            let renders = Arc::clone(&renders);
            Arc::new(move || {
                let n = renders.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                Ok(format!("renders {n}\n"))
            })
        };
        let limits = Limits {
            page_max_age: Duration::from_secs(60),
            ..Limits::DAEMON
        };
        let (address, task) = server(limits, counting()).await;
        let request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        let burst: Vec<_> = (0..50)
            .map(|_| tokio::spawn(fetch(address, request)))
            .collect();
        for scrape in burst {
            let answer = scrape.await.expect("scrape");
            assert!(answer.ends_with("renders 1\n"), "{answer}");
        }
        assert_eq!(renders.load(std::sync::atomic::Ordering::SeqCst), 1);
        task.abort();

        let limits = Limits {
            page_max_age: Duration::ZERO,
            ..Limits::DAEMON
        };
        let (address, task) = server(limits, counting()).await;
        fetch(address, request).await;
        let fresh = fetch(address, request).await;
        assert!(fresh.ends_with("renders 3\n"), "{fresh}");
        task.abort();
    }
}
