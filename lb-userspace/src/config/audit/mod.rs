//! The checks a well-formed config must pass (XLB001..): values in range, VIPs and backends
//! consistent with each other and with the host, and weights that do not put a VIP's traffic
//! on one server. One module per section of the file; `audit` runs them in file order.

mod alerts;
mod bgp;
mod capacity;
mod global;
mod health;
mod reuse;
mod text;
mod vip;
mod weights;

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

use lb_common::service::MAX_TABLE_SIZE;
use toml::Spanned;

use super::Recheck;
use super::diagnostic::{Diagnostic, Rule, Source};
use super::environment::Environment;
use super::file::{
    AlertsFile, BackendFile, BgpFile, Check, ConfigFile, GlobalFile, HealthFile, VipFile,
};
use super::model::{
    self, ALERT_WINDOW_SECONDS_RANGE, AUDIT_INTERVAL_SECONDS_RANGE, Alerts, AuditThresholds,
    BPFFS_ROOT, BackendModel, Bgp, CAPACITY_BACKENDS_PER_VIP_RANGE, CAPACITY_MAX_BACKENDS,
    CAPACITY_MAX_SLOTS, CAPACITY_TABLE_SLOTS_RANGE, CAPACITY_VIPS_RANGE, CheckKind,
    DEFAULT_BIRD_SOCKET, DEFAULT_EXPECT_STATUS, DEFAULT_FALL, DEFAULT_FLOW_TABLE_SIZE,
    DEFAULT_HTTP_PATH, DEFAULT_INTERVAL_MS, DEFAULT_METRICS_ADDRESS, DEFAULT_MTU, DEFAULT_PIN_PATH,
    DEFAULT_RISE, DEFAULT_TABLE_SIZE, DEFAULT_TIMEOUT_MS, DEFAULT_WEIGHT,
    DRAIN_TIMEOUT_SECONDS_RANGE, FLOOD_MIN_RATE_RANGE, FLOW_TABLE_SIZE_RANGE, Forwarding, Global,
    HTTP_STATUS_RANGE, HashMode, HealthCheck, MAX_EVICTED_PROVEN_RANGE, MIN_HEALTHY_RANGE,
    MIN_NEW_FLOWS_RANGE, MTU_RANGE, Model, Protocol, Reload, SLOTS_PER_BACKEND, VipModel, value,
};
use super::rules::*;
use reuse::CheckedVip;
pub use reuse::CheckedVips;

use crate::{
    capacity::Capacity,
    diff::effect::{self, Effect, Entry, KnownCounts, SameServer, TableInputs},
    maglev::is_prime,
};

/// Every finding about a config that parsed, and its model: each section is checked and
/// converted, defaults applied, in one pass. The model is `None` only where a finding is an
/// error (a value that has no model form). Tables are counted from `known` where it has them;
/// the counts of this config's tables come back, for the next check. With `last`, a VIP the
/// last check already judged in the same place and surroundings is taken from there (see
/// [`reuse`]), and every VIP's results are kept there for the next.
pub(crate) fn check(
    file: &ConfigFile,
    source: &Source<'_>,
    env: &dyn Environment,
    known: &KnownCounts,
    last: Option<&mut Recheck>,
) -> (Option<Model>, Vec<Diagnostic>, KnownCounts) {
    let mut audit = Audit {
        source,
        findings: Vec::new(),
        spans: Vec::new(),
        missing_sources: Vec::new(),
        wanted_sources: Vec::new(),
        counted: KnownCounts::with_capacity(file.vip.len()),
    };
    audit.lengths(file);
    audit.control_characters(file);
    let global = audit.global(file.global.get_ref(), env);
    let thresholds = audit.thresholds(file);
    let alerts = audit.alerts(file.alerts.as_ref().map(Spanned::get_ref));
    let bgp = file.bgp.as_ref().map(|bgp| audit.bgp(bgp));
    let capacity = audit.capacity(file);
    let vips = audit.vips(file, &thresholds, known, last);
    let model = match (global, alerts, capacity, vips) {
        (Some(global), Some(alerts), Some(capacity), Some(vips)) => Some(Model {
            global,
            audit: thresholds,
            alerts,
            bgp,
            capacity,
            vips,
        }),
        _ => None,
    };
    (model, audit.findings, audit.counted)
}

/// A VIP endpoint as messages show it: `198.18.1.10 port 80/tcp`.
fn endpoint(address: IpAddr, port: u16, protocol: Protocol) -> String {
    let protocol = match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    if port == 0 {
        format!("{address} every port/{protocol}")
    } else {
        format!("{address} port {port}/{protocol}")
    }
}

/// The span of an optional field, or of the table it would be in.
fn span_or<T>(field: &Option<Spanned<T>>, table: Range<usize>) -> Range<usize> {
    field.as_ref().map_or(table, Spanned::span)
}

/// "IPv4" or "IPv6".
fn family(address: IpAddr) -> &'static str {
    if address.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// Why an address cannot be a VIP, a backend or a tunnel source, if it cannot.
fn unusable(address: IpAddr) -> Option<&'static str> {
    if address.is_unspecified() {
        Some("the unspecified address")
    } else if address.is_loopback() {
        Some("a loopback address")
    } else if address.is_multicast() {
        Some("a multicast address")
    } else if address == IpAddr::from([255, 255, 255, 255]) {
        Some("the broadcast address")
    } else {
        None
    }
}

/// Why a MAC cannot be the destination of a frame towards a backend, if it cannot.
fn unusable_mac(mac: [u8; 6]) -> Option<&'static str> {
    if mac == [0; 6] {
        Some("the all-zero MAC")
    } else if mac[0] & 1 == 1 {
        Some("a multicast or broadcast MAC")
    } else {
        None
    }
}

/// A backend's weight, the default applied.
fn weight(backend: &BackendFile) -> u32 {
    value(&backend.weight).unwrap_or(DEFAULT_WEIGHT)
}

/// A VIP's Maglev table size, the default applied.
fn maglev_size(vip: &VipFile) -> u32 {
    value(&vip.table_size).unwrap_or(DEFAULT_TABLE_SIZE)
}

/// What decides a VIP's table: each backend's address and weight, in file order (its size
/// aside).
fn table_inputs(vip: &VipFile) -> Vec<(IpAddr, u32)> {
    vip.backend
        .iter()
        .map(|b| (b.get_ref().address.get_ref().0, weight(b.get_ref())))
        .collect()
}

/// A backend entry as the effect model sees it.
fn entry(backend: &BackendFile) -> Entry {
    Entry {
        address: backend.address.get_ref().0,
        mac: backend.mac.as_ref().map(|m| m.get_ref().0),
    }
}

/// The smallest prime at least `n` (for `n` up to the data plane's maximum table size, below
/// which there is always one).
fn prime_at_least(n: u32) -> u32 {
    (n.max(2)..=u32::MAX)
        .find(|&candidate| is_prime(candidate))
        .unwrap_or(n)
}

struct Audit<'a> {
    source: &'a Source<'a>,
    findings: Vec<Diagnostic>,
    /// The span of each finding: a later check that takes a VIP's findings again, the VIP
    /// moved, places them anew.
    spans: Vec<Range<usize>>,
    /// Tunnel sources already reported missing: one finding per source is enough, as one line
    /// of [global] fixes them all.
    missing_sources: Vec<&'static str>,
    /// Tunnel sources the VIP being checked lacks, reported or not.
    wanted_sources: Vec<&'static str>,
    /// The slot counts of the tables judged.
    counted: KnownCounts,
}

/// The longest value of each free-text field: the kernel's limit where it has one (IFNAMSIZ,
/// sun_path), else far beyond any sane value, so a mistaken paste stops here.
const MAX_INTERFACE_LEN: usize = 15;
const MAX_SOCKET_PATH_LEN: usize = 107;
const MAX_PATH_LEN: usize = 1024;
const MAX_COMMAND_LEN: usize = 4096;

impl Audit<'_> {
    fn report(
        &mut self,
        rule: &Rule,
        span: Range<usize>,
        field: String,
        message: String,
        fix: impl Into<String>,
    ) {
        self.findings.push(
            self.source
                .diagnostic(rule, span.clone(), field, message, fix),
        );
        self.spans.push(span);
    }

    /// An integer field in the model's type: `default` when absent, its value when inside
    /// `range`; else a finding of `rule` that names the field, the value and the range (`fix`
    /// says what to write instead), and `None`.
    fn integer<S, T>(
        &mut self,
        rule: &Rule,
        field: &Option<Spanned<S>>,
        path: &str,
        range: RangeInclusive<S>,
        default: T,
        fix: String,
    ) -> Option<T>
    where
        S: Copy + PartialOrd + Display + Into<i64>,
        T: TryFrom<S>,
    {
        let Some(spanned) = field else {
            return Some(default);
        };
        let value = *spanned.get_ref();
        if range.contains(&value) {
            return T::try_from(value).ok();
        }
        // An upper bound that only the model's type sets is noise next to a value too small.
        let end: i64 = (*range.end()).into();
        let allowed = if end == i64::MAX || (value < *range.start() && end >= i64::from(u32::MAX)) {
            format!("at least {}", range.start())
        } else {
            format!("in {}..={}", range.start(), range.end())
        };
        self.report(
            rule,
            spanned.span(),
            path.to_owned(),
            format!("{path} = {value} is out of range: it must be {allowed}"),
            fix,
        );
        None
    }

    /// A finding of `rule` if real field `path` is given and outside `bounds`; `fix` says
    /// what to write instead.
    fn real(
        &mut self,
        rule: &Rule,
        field: &Option<Spanned<f64>>,
        path: &str,
        bounds: Real,
        fix: String,
    ) {
        let Some(spanned) = field else { return };
        let value = *spanned.get_ref();
        if !bounds.contains(value) {
            self.report(
                rule,
                spanned.span(),
                path.to_owned(),
                format!(
                    "{path} = {value} is out of range: it must be {}",
                    bounds.describe()
                ),
                fix,
            );
        }
    }

    /// A finding of `rule` on text field `path` when `problem` says what is wrong with its
    /// value (the message quotes the value, then the problem).
    fn text(
        &mut self,
        rule: &Rule,
        field: &Spanned<String>,
        path: &str,
        problem: Option<&str>,
        fix: impl Into<String>,
    ) {
        if let Some(problem) = problem {
            self.report(
                rule,
                field.span(),
                path.to_owned(),
                format!("{path} = {:?} {problem}", field.get_ref()),
                fix,
            );
        }
    }
}

/// The bounds of a real-valued setting.
#[derive(Clone, Copy)]
enum Real {
    /// Above 0 and at most 1.
    Share,
    /// A finite number above 1 (infinity would never alert).
    Factor,
}

impl Real {
    /// Written so that NaN lies outside every bound.
    fn contains(self, value: f64) -> bool {
        match self {
            Real::Share => value > 0.0 && value <= 1.0,
            Real::Factor => value > 1.0 && value.is_finite(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Real::Share => "above 0 and at most 1",
            Real::Factor => "a finite number above 1",
        }
    }
}
