//! The checks a well-formed config must pass (XLB001..): values in range, VIPs and backends
//! consistent with each other and with the host, and weights that do not put a VIP's traffic
//! on one server.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::{Component, Path};

use lb_common::service::MAX_TABLE_SIZE;
use toml::Spanned;

use super::diagnostic::{Diagnostic, Rule, Source};
use super::environment::Environment;
use super::file::{
    AlertsFile, BackendFile, BgpFile, Check, ConfigFile, GlobalFile, HealthFile, VipFile,
};
use super::model::{
    self, ALERT_WINDOW_SECONDS_RANGE, AUDIT_INTERVAL_SECONDS_RANGE, AuditThresholds, BPFFS_ROOT,
    CAPACITY_BACKENDS_PER_VIP_RANGE, CAPACITY_MAX_BACKENDS, CAPACITY_MAX_SLOTS,
    CAPACITY_TABLE_SLOTS_RANGE, CAPACITY_VIPS_RANGE, DEFAULT_INTERVAL_MS, DEFAULT_TABLE_SIZE,
    DEFAULT_TIMEOUT_MS, DEFAULT_WEIGHT, DRAIN_TIMEOUT_SECONDS_RANGE, FLOOD_MIN_RATE_RANGE,
    FLOW_TABLE_SIZE_RANGE, Forwarding, HashMode, MAX_EVICTED_PROVEN_RANGE, MIN_HEALTHY_RANGE,
    MIN_NEW_FLOWS_RANGE, MTU_RANGE, Protocol, SLOTS_PER_BACKEND, value,
};
use super::rules::*;
use crate::{
    capacity::Capacity,
    effect::{self, Effect, Entry, SameServer},
    maglev::is_prime,
};

/// Every finding about a config that parsed.
pub(crate) fn audit(
    file: &ConfigFile,
    source: &Source<'_>,
    env: &dyn Environment,
) -> Vec<Diagnostic> {
    let mut audit = Audit {
        source,
        findings: Vec::new(),
        missing_sources: Vec::new(),
    };
    audit.lengths(file);
    audit.control_characters(file);
    audit.global(file.global.get_ref(), env);
    audit.thresholds(file);
    if let Some(alerts) = &file.alerts {
        audit.alerts(alerts.get_ref());
    }
    if let Some(bgp) = &file.bgp {
        audit.bgp(bgp);
    }
    audit.capacity(file);
    let thresholds = model::audit_thresholds(file);
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut keys: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
    let vip_addresses: Vec<(IpAddr, &str)> = file
        .vip
        .iter()
        .map(|vip| {
            (
                vip.get_ref().address.get_ref().0,
                vip.get_ref().name.get_ref().0.as_str(),
            )
        })
        .collect();
    for (i, spanned) in file.vip.iter().enumerate() {
        let vip = spanned.get_ref();
        let name = vip.name.get_ref().0.as_str();
        if let Some(&first) = names.get(name) {
            audit.report(
                &DUPLICATE_VIP,
                vip.name.span(),
                format!("vip[{i}].name"),
                format!("vip name \"{name}\" is used twice (first by vip[{first}])"),
                "give every VIP a unique name: counters, logs and other verbs refer to VIPs by \
                 name",
            );
        } else {
            names.insert(name, i);
        }
        let key = (
            vip.address.get_ref().0,
            *vip.port.get_ref(),
            *vip.protocol.get_ref(),
        );
        if let Some(&first) = keys.get(&key) {
            let other = file.vip[first].get_ref().name.get_ref().0.as_str();
            audit.report(
                &DUPLICATE_VIP,
                vip.address.span(),
                format!("vip[{i}].address"),
                format!(
                    "vip \"{name}\" has the same address, port and protocol as vip \"{other}\" \
                     ({})",
                    endpoint(key.0, key.1, key.2)
                ),
                "change the address, port or protocol of one of them, or merge their backends \
                 into one VIP",
            );
        } else {
            keys.insert(key, i);
        }
        audit.vip(
            i,
            spanned,
            &vip_addresses,
            file.global.get_ref(),
            &thresholds,
        );
    }
    audit.findings
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
    /// Tunnel sources already reported missing: one finding per source is enough, as one line
    /// of [global] fixes them all.
    missing_sources: Vec<&'static str>,
}

/// The longest value of each free-text field: the kernel's limit where it has one (IFNAMSIZ,
/// sun_path), else far beyond any sane value, so a mistaken paste stops here.
const MAX_INTERFACE_LEN: usize = 15;
const MAX_SOCKET_PATH_LEN: usize = 107;
const MAX_PATH_LEN: usize = 1024;
const MAX_COMMAND_LEN: usize = 4096;

impl Audit<'_> {
    /// Every free-text field within its length limit (names are limited where they parse).
    fn lengths(&mut self, file: &ConfigFile) {
        let global = file.global.get_ref();
        let mut fields = vec![(
            "global.interface".to_owned(),
            &global.interface,
            MAX_INTERFACE_LEN,
        )];
        fields.extend(
            global
                .pin_path
                .iter()
                .map(|p| ("global.pin_path".to_owned(), p, MAX_PATH_LEN)),
        );
        if let Some(bgp) = &file.bgp {
            let bgp = bgp.get_ref();
            fields.push(("bgp.routes_file".to_owned(), &bgp.routes_file, MAX_PATH_LEN));
            fields.extend(
                bgp.socket
                    .iter()
                    .map(|s| ("bgp.socket".to_owned(), s, MAX_SOCKET_PATH_LEN)),
            );
            fields.extend(
                bgp.reload_command
                    .iter()
                    .map(|c| ("bgp.reload_command".to_owned(), c, MAX_COMMAND_LEN)),
            );
        }
        if let Some(alerts) = &file.alerts {
            let command = alerts.get_ref().command.iter();
            fields.extend(command.map(|c| ("alerts.command".to_owned(), c, MAX_COMMAND_LEN)));
        }
        for (i, vip) in file.vip.iter().enumerate() {
            for (j, backend) in vip.get_ref().backend.iter().enumerate() {
                let health = backend.get_ref().health.as_ref();
                if let Some(path) = health.and_then(|h| h.get_ref().path.as_ref()) {
                    fields.push((
                        format!("vip[{i}].backend[{j}].health.path"),
                        path,
                        MAX_PATH_LEN,
                    ));
                }
            }
        }
        for (field, value, max) in fields {
            let len = value.get_ref().len();
            if len > max {
                self.report(
                    &SYNTAX,
                    value.span(),
                    field.clone(),
                    format!("{field} is {len} bytes long, more than the {max} it may be"),
                    format!("shorten {field} to at most {max} bytes"),
                );
            }
        }
    }

    fn report(
        &mut self,
        rule: &Rule,
        span: Range<usize>,
        field: String,
        message: String,
        fix: impl Into<String>,
    ) {
        self.findings
            .push(self.source.diagnostic(rule, span, field, message, fix));
    }

    /// XLB024: a control character in any value that reaches a file (the BIRD include file,
    /// the BGP record, the pin path) or a command line, a request or a log: a line feed there
    /// would start a line the config author never wrote.
    fn control_characters(&mut self, file: &ConfigFile) {
        let global = file.global.get_ref();
        let mut values = vec![("global.interface".to_owned(), Some(&global.interface))];
        values.push(("global.pin_path".to_owned(), global.pin_path.as_ref()));
        if let Some(alerts) = &file.alerts {
            values.push((
                "alerts.command".to_owned(),
                alerts.get_ref().command.as_ref(),
            ));
        }
        if let Some(bgp) = &file.bgp {
            let bgp = bgp.get_ref();
            values.push(("bgp.routes_file".to_owned(), Some(&bgp.routes_file)));
            values.push(("bgp.socket".to_owned(), bgp.socket.as_ref()));
            values.push(("bgp.reload_command".to_owned(), bgp.reload_command.as_ref()));
        }
        for (i, vip) in file.vip.iter().enumerate() {
            for (j, backend) in vip.get_ref().backend.iter().enumerate() {
                let path = backend
                    .get_ref()
                    .health
                    .as_ref()
                    .and_then(|h| h.get_ref().path.as_ref());
                values.push((format!("vip[{i}].backend[{j}].health.path"), path));
            }
        }
        for (field, value) in values {
            let Some(value) = value else { continue };
            let text = value.get_ref();
            if let Some(c) = text.chars().find(|c| c.is_control()) {
                self.report(
                    &CONTROL_CHARACTER,
                    value.span(),
                    field.clone(),
                    format!("{field} = {text:?} holds the control character {c:?}"),
                    format!(
                        "remove the control character: write {field} on one line of printable \
                         characters (a multi-line command belongs in a script the setting runs)"
                    ),
                );
            }
        }
    }

    fn global(&mut self, global: &GlobalFile, env: &dyn Environment) {
        let interface = global.interface.get_ref();
        // A name too long for the kernel is reported by `lengths`, one with a control character
        // is XLB024's finding: no interface can carry either.
        if interface.len() <= MAX_INTERFACE_LEN
            && !interface.chars().any(char::is_control)
            && !env.interface_exists(interface)
        {
            let known = env.interfaces();
            let fix = if known.is_empty() {
                "set global.interface to an interface of this host (see `ip link`)".to_owned()
            } else {
                format!(
                    "set global.interface to an interface of this host: {} (see `ip link`)",
                    known.join(", ")
                )
            };
            self.report(
                &UNKNOWN_INTERFACE,
                global.interface.span(),
                "global.interface".into(),
                format!("interface \"{interface}\" does not exist on this host"),
                fix + "; or validate on the host that will run xlb",
            );
        }
        if let Some(size) = &global.flow_table_size
            && !FLOW_TABLE_SIZE_RANGE.contains(size.get_ref())
        {
            self.report(
                &BAD_GLOBAL,
                size.span(),
                "global.flow_table_size".into(),
                format!("flow_table_size {} is out of range", size.get_ref()),
                format!(
                    "use a value in {}..={} (the number of flows remembered; default {})",
                    FLOW_TABLE_SIZE_RANGE.start(),
                    FLOW_TABLE_SIZE_RANGE.end(),
                    model::DEFAULT_FLOW_TABLE_SIZE
                ),
            );
        }
        if let Some(mtu) = &global.mtu
            && !MTU_RANGE.contains(mtu.get_ref())
        {
            self.report(
                &BAD_GLOBAL,
                mtu.span(),
                "global.mtu".into(),
                format!("mtu {} is out of range", mtu.get_ref()),
                format!(
                    "use a value in {}..={}: the MTU of the path to the backends (default {})",
                    MTU_RANGE.start(),
                    MTU_RANGE.end(),
                    model::DEFAULT_MTU
                ),
            );
        }
        if let Some(pin_path) = &global.pin_path {
            let path = Path::new(pin_path.get_ref());
            let under_bpffs = path.is_absolute()
                && path.starts_with(BPFFS_ROOT)
                && path != Path::new(BPFFS_ROOT)
                && !path.components().any(|c| c == Component::ParentDir);
            if !under_bpffs {
                self.report(
                    &BAD_GLOBAL,
                    pin_path.span(),
                    "global.pin_path".into(),
                    format!(
                        "pin_path \"{}\" is not a directory under {BPFFS_ROOT}",
                        pin_path.get_ref()
                    ),
                    format!(
                        "use an absolute path below the bpffs mount, e.g. \"{}\" (pins only live \
                         on a bpffs)",
                        model::DEFAULT_PIN_PATH
                    ),
                );
            }
        }
        let metrics_address = global
            .metrics_address
            .as_ref()
            .map(|address| (address, address.get_ref().parse::<SocketAddr>()));
        if let Some((address, Ok(parsed))) = &metrics_address
            && !parsed.ip().is_loopback()
        {
            self.report(
                &METRICS_EXPOSED,
                address.span(),
                "global.metrics_address".into(),
                format!(
                    "metrics_address \"{}\" is not a loopback address: anyone who reaches \
                     {} reads the metrics, without authentication",
                    address.get_ref(),
                    parsed.ip()
                ),
                "serve on loopback (e.g. \"127.0.0.1:9100\") and let a local Prometheus or a \
                 reverse proxy with authentication and TLS carry the metrics further; if this \
                 address is firewalled to the scrapers, keep it and ignore this warning",
            );
        }
        if let Some((address, Err(_))) = &metrics_address {
            self.report(
                &BAD_GLOBAL,
                address.span(),
                "global.metrics_address".into(),
                format!(
                    "metrics_address \"{}\" is not an IP address and port",
                    address.get_ref()
                ),
                "write an IP address and a port, e.g. \"127.0.0.1:9100\" or \"[::1]:9100\" \
                 (host names are not resolved)",
            );
        }
        self.integer(
            &BAD_GLOBAL,
            &global.drain_timeout_seconds,
            "global.drain_timeout_seconds",
            DRAIN_TIMEOUT_SECONDS_RANGE,
            format!(
                "write drain_timeout_seconds = {} (the default) or another number of seconds in \
                 {}..={}: how long a drained backend keeps its established flows before the \
                 daemon disables it",
                model::DEFAULT_DRAIN_TIMEOUT_SECONDS,
                DRAIN_TIMEOUT_SECONDS_RANGE.start(),
                DRAIN_TIMEOUT_SECONDS_RANGE.end()
            ),
        );
        let sources = [
            (
                "ipip_source_v4",
                global
                    .ipip_source_v4
                    .as_ref()
                    .map(|s| (IpAddr::V4(s.get_ref().0.addr()), s.span())),
            ),
            (
                "ipip_source_v6",
                global
                    .ipip_source_v6
                    .as_ref()
                    .map(|s| (IpAddr::V6(s.get_ref().0.addr()), s.span())),
            ),
        ];
        for (name, source) in sources {
            if let Some((address, span)) = source
                && let Some(why) = unusable(address)
            {
                self.report(
                    &UNUSABLE_ADDRESS,
                    span,
                    format!("global.{name}"),
                    format!("{name} {address} is {why}: backends cannot answer it"),
                    format!("set {name} to a unicast address of this host the backends can reach"),
                );
            }
        }
    }

    fn thresholds(&mut self, file: &ConfigFile) {
        let Some(audit) = &file.audit else { return };
        self.integer(
            &BAD_GLOBAL,
            &audit.get_ref().interval_seconds,
            "audit.interval_seconds",
            AUDIT_INTERVAL_SECONDS_RANGE,
            format!(
                "write interval_seconds = {} (the default) or another number of seconds in \
                 {}..={}: how often the daemon audits the live maps",
                model::DEFAULT_AUDIT_INTERVAL_SECONDS,
                AUDIT_INTERVAL_SECONDS_RANGE.start(),
                AUDIT_INTERVAL_SECONDS_RANGE.end()
            ),
        );
        if let Some(share) = &audit.get_ref().max_backend_share {
            let value = *share.get_ref();
            // Written so that NaN fails too.
            if !(value > 0.0 && value <= 1.0) {
                self.report(
                    &BAD_GLOBAL,
                    share.span(),
                    "audit.max_backend_share".into(),
                    format!("max_backend_share {value} is out of range"),
                    "use a share above 0 and at most 1, e.g. 0.5 (1 turns the warning off)",
                );
            }
        }
    }

    /// A finding of `rule` if an integer field is given and outside `range`: the message names
    /// the field, the value and the range; `fix` says what to write instead.
    fn integer(
        &mut self,
        rule: &Rule,
        field: &Option<Spanned<i64>>,
        path: &str,
        range: RangeInclusive<i64>,
        fix: String,
    ) {
        let Some(spanned) = field else { return };
        let value = *spanned.get_ref();
        if range.contains(&value) {
            return;
        }
        // An upper bound that only the model's type sets is noise next to a value too small.
        let allowed = if *range.end() == i64::MAX
            || (value < *range.start() && *range.end() >= i64::from(u32::MAX))
        {
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
    }

    /// A finding of XLB015 if factor `alerts.NAME` is given and not a finite number above 1;
    /// `meaning` says why.
    fn factor(&mut self, field: &Option<Spanned<f64>>, name: &str, default: f64, meaning: &str) {
        let Some(factor) = field else { return };
        let value = *factor.get_ref();
        // Written so that NaN fails too; infinity would never alert.
        if !(value > 1.0 && value.is_finite()) {
            self.report(
                &BAD_ALERTS,
                factor.span(),
                format!("alerts.{name}"),
                format!(
                    "alerts.{name} = {value} is out of range: it must be a finite number above 1"
                ),
                format!(
                    "write {name} = {default} (the default) or another number above 1: {meaning}"
                ),
            );
        }
    }

    /// XLB015: settings of the daemon's alerts that would alert on noise or never alert.
    fn alerts(&mut self, alerts: &AlertsFile) {
        self.integer(
            &BAD_ALERTS,
            &alerts.window_seconds,
            "alerts.window_seconds",
            ALERT_WINDOW_SECONDS_RANGE,
            format!(
                "write window_seconds = {} (the default) or another number of seconds in \
                 {}..={}: the sliding window over which new flows are counted",
                model::DEFAULT_ALERT_WINDOW_SECONDS,
                ALERT_WINDOW_SECONDS_RANGE.start(),
                ALERT_WINDOW_SECONDS_RANGE.end()
            ),
        );
        self.factor(
            &alerts.skew_factor,
            "skew_factor",
            model::DEFAULT_SKEW_FACTOR,
            "a backend alerts when its share of new flows is more than skew_factor times its \
             expected share, so 1 or less would flag backends that get their fair share",
        );
        self.factor(
            &alerts.flood_factor,
            "flood_factor",
            model::DEFAULT_FLOOD_FACTOR,
            "a VIP alerts when its new flows per second are more than flood_factor times its \
             normal rate, so 1 or less would flag ordinary traffic",
        );
        if let Some(share) = &alerts.max_share {
            let value = *share.get_ref();
            // Written so that NaN fails too.
            if !(value > 0.0 && value <= 1.0) {
                self.report(
                    &BAD_ALERTS,
                    share.span(),
                    "alerts.max_share".into(),
                    format!(
                        "alerts.max_share = {value} is out of range: it must be above 0 and at \
                         most 1"
                    ),
                    format!(
                        "write max_share = {} (the default) or another share above 0 and at most \
                         1 (1 turns this alert off)",
                        model::DEFAULT_MAX_SHARE
                    ),
                );
            }
        }
        self.integer(
            &BAD_ALERTS,
            &alerts.min_healthy,
            "alerts.min_healthy",
            MIN_HEALTHY_RANGE,
            format!(
                "write min_healthy = {} (the default) or a larger count: a VIP alerts when fewer \
                 of its backends are healthy, so 0 would never alert",
                model::DEFAULT_MIN_HEALTHY
            ),
        );
        self.integer(
            &BAD_ALERTS,
            &alerts.min_new_flows,
            "alerts.min_new_flows",
            MIN_NEW_FLOWS_RANGE,
            format!(
                "write min_new_flows = {} (the default) or another count of at least 0 (0 lets \
                 share alerts fire on any traffic)",
                model::DEFAULT_MIN_NEW_FLOWS
            ),
        );
        self.integer(
            &BAD_ALERTS,
            &alerts.flood_min_rate,
            "alerts.flood_min_rate",
            FLOOD_MIN_RATE_RANGE,
            format!(
                "write flood_min_rate = {} (the default) or another number of new flows per \
                 second of at least 0: below it no rate is a flood",
                model::DEFAULT_FLOOD_MIN_RATE
            ),
        );
        self.integer(
            &BAD_ALERTS,
            &alerts.max_evicted_proven,
            "alerts.max_evicted_proven",
            MAX_EVICTED_PROVEN_RANGE,
            format!(
                "write max_evicted_proven = {} (the default) or another count of at least 0: \
                 the established flows the flow table may evict in a window before `evictions` \
                 fires",
                model::DEFAULT_MAX_EVICTED_PROVEN
            ),
        );
        if let Some(command) = &alerts.command {
            let text = command.get_ref();
            let problem = if text.trim().is_empty() {
                Some("is empty: there is nothing to run")
            } else {
                None
            };
            if let Some(problem) = problem {
                self.report(
                    &BAD_ALERTS,
                    command.span(),
                    "alerts.command".into(),
                    format!("alerts.command = {text:?} {problem}"),
                    "write the shell command to run when an alert starts or stops firing, e.g. \
                     command = 'logger -t xlb \"$XLB_ALERT_MESSAGE\"', or remove command to run \
                     nothing",
                );
            }
        }
    }

    /// XLB016: `[bgp]` settings the daemon could not use to announce or withdraw.
    fn bgp(&mut self, spanned: &Spanned<BgpFile>) {
        let bgp = spanned.get_ref();
        let path_problem = |text: &str| {
            if text.is_empty() {
                Some("is empty")
            } else if !text.starts_with('/') {
                Some("is not an absolute path")
            } else if text.ends_with('/') {
                Some("names a directory, not a file")
            } else if text
                .chars()
                .any(|c| c == '"' || (c.is_whitespace() && !c.is_control()))
            {
                Some("holds a quote or a blank")
            } else {
                None
            }
        };
        if let Some(problem) = path_problem(bgp.routes_file.get_ref()) {
            self.report(
                &BAD_BGP,
                bgp.routes_file.span(),
                "bgp.routes_file".into(),
                format!(
                    "bgp.routes_file = {:?} {problem}",
                    bgp.routes_file.get_ref()
                ),
                "write the absolute path of the file the daemon writes and bird.conf includes, \
                 e.g. routes_file = \"/run/xlb/bird-vips.conf\"",
            );
        }
        if let Some(socket) = &bgp.socket
            && let Some(problem) = path_problem(socket.get_ref())
        {
            self.report(
                &BAD_BGP,
                socket.span(),
                "bgp.socket".into(),
                format!("bgp.socket = {:?} {problem}", socket.get_ref()),
                format!(
                    "write the absolute path of BIRD's control socket (bird -s), e.g. socket = \
                     \"{}\", or remove socket for that default",
                    model::DEFAULT_BIRD_SOCKET
                ),
            );
        }
        if let Some(command) = &bgp.reload_command {
            let text = command.get_ref();
            let problem = if text.trim().is_empty() {
                Some("is empty: BIRD would never reload the routes")
            } else if bgp.socket.is_some() {
                Some("is given with socket: only one of them can say how BIRD reloads")
            } else {
                None
            };
            if let Some(problem) = problem {
                self.report(
                    &BAD_BGP,
                    command.span(),
                    "bgp.reload_command".into(),
                    format!("bgp.reload_command = {text:?} {problem}"),
                    "write the shell command that makes BIRD re-read its config, e.g. \
                     reload_command = \"birdc -s /run/bird/bird.ctl configure\", or remove it \
                     (and keep socket) for that default",
                );
            }
        }
    }

    fn vip(
        &mut self,
        i: usize,
        spanned: &Spanned<VipFile>,
        vip_addresses: &[(IpAddr, &str)],
        global: &GlobalFile,
        thresholds: &AuditThresholds,
    ) {
        let vip = spanned.get_ref();
        let name = vip.name.get_ref().0.as_str();
        let address = vip.address.get_ref().0;
        if let Some(why) = unusable(address) {
            self.report(
                &UNUSABLE_ADDRESS,
                vip.address.span(),
                format!("vip[{i}].address"),
                format!("vip \"{name}\" address {address} is {why}: no client can reach it"),
                "use a unicast address that routes to this host",
            );
        }
        self.table_size(i, spanned);
        let forwarding = value(&vip.forwarding).unwrap_or_default();
        let entries: Vec<Entry> = vip.backend.iter().map(|b| entry(b.get_ref())).collect();
        for (j, backend) in vip.backend.iter().enumerate() {
            let field = |name: &str| format!("vip[{i}].backend[{j}].{name}");
            let table = backend.span();
            let backend = backend.get_ref();
            let at = backend.address.span();
            let addr = backend.address.get_ref().0;
            if let Some(why) = unusable(addr) {
                self.report(
                    &UNUSABLE_ADDRESS,
                    at.clone(),
                    field("address"),
                    format!("backend {addr} of vip \"{name}\" is {why}"),
                    "use the backend's own unicast address",
                );
            }
            self.same_server(i, j, name, forwarding, &vip.backend, &entries);
            if let Some((_, other)) = vip_addresses.iter().find(|(vip, _)| *vip == addr) {
                self.report(
                    &BACKEND_IS_VIP,
                    at.clone(),
                    field("address"),
                    format!("backend {addr} of vip \"{name}\" is the address of vip \"{other}\""),
                    "use the backend's own address: packets sent to a VIP address come back to \
                     xlb instead of reaching a server",
                );
            }
            self.family(i, j, name, address, forwarding, backend, global);
            match &backend.mac {
                None => {
                    let next_hop = match forwarding {
                        Forwarding::Dsr => format!(
                            "the backend's own MAC (on the backend: `ip link`; from here: `ip \
                             neigh show {addr}`)"
                        ),
                        Forwarding::Ipip => format!(
                            "the MAC of the next hop towards {addr} (`ip route get {addr}`, then \
                             `ip neigh`)"
                        ),
                    };
                    self.report(
                        &MISSING_MAC,
                        table,
                        field("mac"),
                        format!("backend {addr} of vip \"{name}\" has no mac"),
                        format!("add mac = \"xx:xx:xx:xx:xx:xx\": {next_hop}"),
                    );
                }
                Some(mac) => {
                    let bytes = mac.get_ref().0;
                    let why = if bytes == [0; 6] {
                        Some("the all-zero MAC")
                    } else if bytes[0] & 1 == 1 {
                        Some("a multicast or broadcast MAC")
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        self.report(
                            &UNUSABLE_ADDRESS,
                            mac.span(),
                            field("mac"),
                            format!("mac of backend {addr} of vip \"{name}\" is {why}"),
                            "use the unicast MAC the frames must go to (`ip neigh`)",
                        );
                    }
                }
            }
            if let Some(health) = &backend.health {
                self.health(i, j, *vip.port.get_ref(), health);
            }
        }
        if value(&vip.hash) == Some(HashMode::Source)
            && vip.backend.len() >= 2
            && value(&vip.source_hash_checked) != Some(true)
        {
            self.report(
                &SOURCE_HASH_CLIENTS,
                span_or(&vip.hash, spanned.span()),
                format!("vip[{i}].hash"),
                format!(
                    "vip \"{name}\" hashes on the client address alone: its {} backends share \
                     its clients by address, so clients behind a few NAT or proxy addresses \
                     land on a few servers",
                    vip.backend.len()
                ),
                "use hash = \"5-tuple\" unless clients must stick to one server; otherwise \
                 check the spread over real clients with `xlb plan FILE --clients ADDRESSES` \
                 (or --pcap CAPTURE) and then set source_hash_checked = true on the VIP",
            );
        }
        self.weights(i, spanned, forwarding, &entries, thresholds);
    }

    /// XLB005: backend `j` reaches the same server as an earlier entry of its VIP.
    fn same_server(
        &mut self,
        i: usize,
        j: usize,
        name: &str,
        forwarding: Forwarding,
        backends: &[Spanned<BackendFile>],
        entries: &[Entry],
    ) {
        let Some((first, why)) = (0..j).find_map(|k| {
            effect::same_server(&entries[k], &entries[j], forwarding).map(|why| (k, why))
        }) else {
            return;
        };
        let backend = backends[j].get_ref();
        let addr = entries[j].address;
        let other = entries[first].address;
        let (span, field, message, fix) = match why {
            SameServer::Address if addr == other => (
                backend.address.span(),
                "address",
                format!(
                    "backend {addr} appears twice in vip \"{name}\" (first as backend[{first}])"
                ),
                "remove one of the entries or merge their weights".to_owned(),
            ),
            SameServer::Address => (
                backend.address.span(),
                "address",
                format!(
                    "backend {addr} of vip \"{name}\" is backend[{first}] ({other}) written \
                     another way: both entries reach the same server"
                ),
                format!(
                    "remove one of the entries or merge their weights, and write the address \
                     once, as {}",
                    addr.to_canonical()
                ),
            ),
            SameServer::Mac => (
                backend
                    .mac
                    .as_ref()
                    .map_or(backends[j].span(), Spanned::span),
                "mac",
                format!(
                    "backend {addr} of vip \"{name}\" has the MAC of backend[{first}] ({other}): \
                     dsr sends the frame to whoever owns that MAC, so both entries are one server"
                ),
                format!(
                    "set the MAC of {addr}'s own interface (`ip neigh show {addr}`), or remove \
                     the entry if {addr} is another address of the same server"
                ),
            ),
        };
        self.report(
            &DUPLICATE_BACKEND,
            span,
            format!("vip[{i}].backend[{j}].{field}"),
            message,
            fix,
        );
    }

    /// XLB028: `[capacity]` in range, and the VIPs within it.
    fn capacity(&mut self, file: &ConfigFile) {
        let table = file.capacity.as_ref();
        let fields = table.map(|t| t.get_ref());
        let ranges = [
            (
                "vips",
                fields.and_then(|f| f.vips.as_ref()),
                CAPACITY_VIPS_RANGE,
            ),
            (
                "backends_per_vip",
                fields.and_then(|f| f.backends_per_vip.as_ref()),
                CAPACITY_BACKENDS_PER_VIP_RANGE,
            ),
            (
                "table_slots",
                fields.and_then(|f| f.table_slots.as_ref()),
                CAPACITY_TABLE_SLOTS_RANGE,
            ),
        ];
        let mut in_range = true;
        for (name, field, range) in ranges {
            let Some(spanned) = field else { continue };
            if range.contains(spanned.get_ref()) {
                continue;
            }
            in_range = false;
            self.integer(
                &CAPACITY,
                &Some(spanned.clone()),
                &format!("capacity.{name}"),
                range.clone(),
                format!(
                    "write {name} as a number in {}..={}, or leave it out for the default \
                     ({})",
                    range.start(),
                    range.end(),
                    match name {
                        "vips" => Capacity::default().vips,
                        "backends_per_vip" => Capacity::default().backends_per_vip,
                        _ => Capacity::default().table_slots,
                    }
                ),
            );
        }
        let Some(capacity) = model::capacity(file).filter(|_| in_range) else {
            return;
        };
        let whole = table.map(Spanned::span);
        let span_of = |field: Option<&Spanned<i64>>, otherwise: Range<usize>| {
            field
                .map(Spanned::span)
                .or(whole.clone())
                .unwrap_or(otherwise)
        };
        let backends = u64::from(capacity.vips) * u64::from(capacity.backends_per_vip);
        let slots = 2 * u64::from(capacity.vips) * u64::from(capacity.table_slots);
        if backends > CAPACITY_MAX_BACKENDS || slots > CAPACITY_MAX_SLOTS {
            self.report(
                &CAPACITY,
                whole.clone().unwrap_or_default(),
                "capacity".into(),
                format!(
                    "[capacity] asks for {backends} backends and {slots} table slots in all: \
                     at most {CAPACITY_MAX_BACKENDS} and {CAPACITY_MAX_SLOTS} fit"
                ),
                "lower capacity.vips, capacity.backends_per_vip or capacity.table_slots to \
                 what this host serves (the product is what the kernel allocates)",
            );
            return;
        }
        let restart = "a change of capacity takes effect when `xlb run` starts (a restart)";
        let count = file.vip.len();
        if count > capacity.vips as usize {
            let first_over = file.vip[capacity.vips as usize].span();
            self.report(
                &CAPACITY,
                span_of(fields.and_then(|f| f.vips.as_ref()), first_over),
                "capacity.vips".into(),
                format!(
                    "the config has {count} VIPs but capacity.vips is {}{}",
                    capacity.vips,
                    if fields.and_then(|f| f.vips.as_ref()).is_none() {
                        " (the default)"
                    } else {
                        ""
                    }
                ),
                format!(
                    "set vips = {count} or more in [capacity] ({}); {restart}",
                    Capacity {
                        vips: u32::try_from(count).unwrap_or(u32::MAX),
                        ..capacity
                    }
                    .memory_here()
                ),
            );
        }
        for (i, spanned) in file.vip.iter().enumerate() {
            let vip = spanned.get_ref();
            let name = vip.name.get_ref().0.as_str();
            if vip.backend.len() > capacity.backends_per_vip as usize {
                self.report(
                    &CAPACITY,
                    spanned.span(),
                    "capacity.backends_per_vip".into(),
                    format!(
                        "vip \"{name}\" has {} backends but capacity.backends_per_vip is {}",
                        vip.backend.len(),
                        capacity.backends_per_vip
                    ),
                    format!(
                        "set backends_per_vip = {} or more in [capacity]; {restart}",
                        vip.backend.len()
                    ),
                );
            }
            let size = value(&vip.table_size).unwrap_or(DEFAULT_TABLE_SIZE);
            if size > capacity.table_slots && size <= MAX_TABLE_SIZE {
                self.report(
                    &CAPACITY,
                    span_or(&vip.table_size, spanned.span()),
                    format!("vip[{i}].table_size"),
                    format!(
                        "table_size {size} of vip \"{name}\" is above capacity.table_slots = {}",
                        capacity.table_slots
                    ),
                    format!(
                        "set table_slots = {size} or more in [capacity] ({restart}), or give \
                         the VIP a prime table_size of at most {}",
                        capacity.table_slots
                    ),
                );
            }
        }
    }

    fn table_size(&mut self, i: usize, spanned: &Spanned<VipFile>) {
        let vip = spanned.get_ref();
        let name = vip.name.get_ref().0.as_str();
        let size = value(&vip.table_size).unwrap_or(DEFAULT_TABLE_SIZE);
        let span = span_or(&vip.table_size, spanned.span());
        let field = format!("vip[{i}].table_size");
        let backends = vip.backend.len();
        if size > MAX_TABLE_SIZE {
            self.report(
                &TABLE_SIZE_OUT_OF_RANGE,
                span,
                field,
                format!(
                    "table_size {size} of vip \"{name}\" is above the data plane's maximum of \
                     {MAX_TABLE_SIZE}"
                ),
                format!(
                    "use a prime of at most {MAX_TABLE_SIZE}, e.g. {DEFAULT_TABLE_SIZE} (room \
                     for {} backends)",
                    DEFAULT_TABLE_SIZE / SLOTS_PER_BACKEND
                ),
            );
            return;
        }
        if !is_prime(size) {
            self.report(
                &TABLE_SIZE_NOT_PRIME,
                span.clone(),
                field.clone(),
                format!("table_size {size} of vip \"{name}\" is not prime"),
                format!(
                    "use {}, the next prime: Maglev needs a prime size so that every backend's \
                     walk covers the whole table",
                    prime_at_least(size.saturating_add(1))
                ),
            );
        }
        let wanted = u32::try_from(backends)
            .unwrap_or(u32::MAX)
            .saturating_mul(SLOTS_PER_BACKEND);
        if backends > size as usize {
            self.report(
                &TABLE_SIZE_OUT_OF_RANGE,
                span,
                field,
                format!(
                    "table_size {size} of vip \"{name}\" has fewer slots than its {backends} \
                     backends"
                ),
                format!(
                    "use a prime of at least {wanted} (100 slots per backend), e.g. {}",
                    prime_at_least(wanted)
                ),
            );
        } else if size < wanted {
            self.report(
                &TABLE_TOO_SMALL,
                span,
                field,
                format!(
                    "table_size {size} of vip \"{name}\" is below 100 slots for each of its \
                     {backends} backends: their shares of the traffic will drift from their \
                     weights"
                ),
                format!(
                    "use a prime of at least {wanted}, e.g. {}",
                    prime_at_least(wanted)
                ),
            );
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one backend's context, used once"
    )]
    fn family(
        &mut self,
        i: usize,
        j: usize,
        name: &str,
        vip_address: IpAddr,
        forwarding: Forwarding,
        backend: &BackendFile,
        global: &GlobalFile,
    ) {
        let addr = backend.address.get_ref().0;
        let field = format!("vip[{i}].backend[{j}].address");
        match forwarding {
            Forwarding::Dsr if addr.is_ipv4() != vip_address.is_ipv4() => {
                let other = if addr.is_ipv4() {
                    "ipip_source_v4"
                } else {
                    "ipip_source_v6"
                };
                self.report(
                    &FAMILY_MISMATCH,
                    backend.address.span(),
                    field,
                    format!(
                        "backend {addr} of vip \"{name}\" is {} but the VIP is {}: dsr cannot \
                         change address families",
                        family(addr),
                        family(vip_address)
                    ),
                    format!(
                        "use an {} backend, or set forwarding = \"ipip\" on the VIP (with \
                         global.{other})",
                        family(vip_address)
                    ),
                );
            }
            Forwarding::Ipip => {
                let (configured, source, example) = match addr {
                    IpAddr::V4(_) => (
                        global.ipip_source_v4.is_some(),
                        "ipip_source_v4",
                        "198.18.0.2",
                    ),
                    IpAddr::V6(_) => (
                        global.ipip_source_v6.is_some(),
                        "ipip_source_v6",
                        "2001:db8::2",
                    ),
                };
                if !configured && !self.missing_sources.contains(&source) {
                    self.missing_sources.push(source);
                    self.report(
                        &FAMILY_MISMATCH,
                        backend.address.span(),
                        field,
                        format!(
                            "vip \"{name}\" tunnels to {} backend {addr}, but global.{source} is \
                             not set",
                            family(addr)
                        ),
                        format!(
                            "set global.{source} (e.g. \"{example}\") to an address of this host \
                             that {addr} can reach: it is the tunnel's outer source"
                        ),
                    );
                }
            }
            Forwarding::Dsr => {}
        }
    }

    fn health(&mut self, i: usize, j: usize, vip_port: u16, spanned: &Spanned<HealthFile>) {
        let health = spanned.get_ref();
        let field = |name: &str| format!("vip[{i}].backend[{j}].health.{name}");
        let check = *health.check.get_ref();
        match &health.port {
            Some(port) if *port.get_ref() == 0 => self.report(
                &BAD_HEALTH_CHECK,
                port.span(),
                field("port"),
                "health check port 0 cannot be probed".into(),
                "set port to the port the backend's service listens on, e.g. port = 80",
            ),
            None if vip_port == 0 => self.report(
                &BAD_HEALTH_CHECK,
                spanned.span(),
                field("port"),
                "health check has no port, and its VIP (port 0, every port) has none to lend it"
                    .into(),
                "add port = <the port the backend's service listens on>, e.g. port = 80",
            ),
            _ => {}
        }
        if check == Check::Tcp {
            if let Some(path) = &health.path {
                self.report(
                    &BAD_HEALTH_CHECK,
                    path.span(),
                    field("path"),
                    "path only applies to http checks, and this one is tcp".into(),
                    "remove path, or set check = \"http\"",
                );
            }
            if let Some(status) = &health.expect_status {
                self.report(
                    &BAD_HEALTH_CHECK,
                    status.span(),
                    field("expect_status"),
                    "expect_status only applies to http checks, and this one is tcp".into(),
                    "remove expect_status, or set check = \"http\"",
                );
            }
        } else {
            if let Some(path) = &health.path {
                let text = path.get_ref();
                if !text.starts_with('/')
                    || text.chars().any(|c| c.is_whitespace() && !c.is_control())
                {
                    self.report(
                        &BAD_HEALTH_CHECK,
                        path.span(),
                        field("path"),
                        format!("health check path {text:?} is not an HTTP path"),
                        "write an absolute path without spaces, e.g. path = \"/healthz\"",
                    );
                }
            }
            if let Some(status) = &health.expect_status
                && !(100..=599).contains(status.get_ref())
            {
                self.report(
                    &BAD_HEALTH_CHECK,
                    status.span(),
                    field("expect_status"),
                    format!("expect_status {} is not an HTTP status", status.get_ref()),
                    "use a status in 100..=599, e.g. expect_status = 200",
                );
            }
        }
        let interval = value(&health.interval_ms).unwrap_or(DEFAULT_INTERVAL_MS);
        let timeout = value(&health.timeout_ms).unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout >= interval {
            let (span, name) = match (&health.timeout_ms, &health.interval_ms) {
                (Some(t), _) => (t.span(), "timeout_ms"),
                (None, Some(i)) => (i.span(), "interval_ms"),
                (None, None) => (spanned.span(), "timeout_ms"),
            };
            self.report(
                &BAD_HEALTH_CHECK,
                span,
                field(name),
                format!(
                    "health check timeout_ms ({timeout}) is not below interval_ms ({interval})"
                ),
                "make timeout_ms smaller than interval_ms, e.g. timeout_ms = 500 with \
                 interval_ms = 1000, so each probe ends before the next one starts",
            );
        }
        for (name, count) in [("rise", &health.rise), ("fall", &health.fall)] {
            if let Some(count) = count
                && *count.get_ref() == 0
            {
                let meaning = if name == "rise" { "up" } else { "down" };
                self.report(
                    &BAD_HEALTH_CHECK,
                    count.span(),
                    field(name),
                    format!(
                        "health check {name} is 0: the backend would be marked {meaning} without \
                         a single probe"
                    ),
                    format!(
                        "use at least 1, e.g. {name} = {}",
                        if name == "rise" { 2 } else { 3 }
                    ),
                );
            }
        }
    }

    /// XLB001..XLB004 and XLB026: where a VIP's new flows go, judged on the table an apply
    /// would build and the servers its entries reach (the effect model), not on the weights.
    fn weights(
        &mut self,
        i: usize,
        spanned: &Spanned<VipFile>,
        forwarding: Forwarding,
        entries: &[Entry],
        thresholds: &AuditThresholds,
    ) {
        let vip = spanned.get_ref();
        let name = vip.name.get_ref().0.as_str();
        let backends = &vip.backend;
        let weight =
            |b: &Spanned<BackendFile>| value(&b.get_ref().weight).unwrap_or(DEFAULT_WEIGHT);
        // The weight's span, or the backend table's when the weight is the default.
        let weight_span = |b: &Spanned<BackendFile>| span_or(&b.get_ref().weight, b.span());
        let total: u64 = backends.iter().map(|b| u64::from(weight(b))).sum();
        let taking: Vec<usize> = (0..backends.len())
            .filter(|&j| weight(&backends[j]) > 0)
            .collect();
        if backends.is_empty() {
            self.report(
                &ZERO_TOTAL_WEIGHT,
                vip.name.span(),
                format!("vip[{i}].backend"),
                format!("vip \"{name}\" has no backends: every packet for it would be dropped"),
                "add [[vip.backend]] entries (address, mac) under the VIP, or remove the VIP",
            );
            return;
        }
        if total == 0 {
            self.report(
                &ZERO_TOTAL_WEIGHT,
                weight_span(&backends[0]),
                format!("vip[{i}].backend[0].weight"),
                format!(
                    "every backend of vip \"{name}\" weighs 0: every packet for it would be \
                     dropped"
                ),
                "give the backends that should take traffic a positive weight, e.g. weight = 1",
            );
            return;
        }
        let size = value(&vip.table_size).unwrap_or(DEFAULT_TABLE_SIZE);
        let weighted: Vec<(IpAddr, u32)> = entries
            .iter()
            .zip(backends)
            .map(|(entry, b)| (entry.address, weight(b)))
            .collect();
        let owners = match effect::table(&weighted, size) {
            Ok(owners) => owners,
            // One weighted backend owns every slot of any table.
            Err(_) if taking.len() == 1 => vec![Some(taking[0])],
            // An unusable size or a repeated address is reported on its own.
            Err(_) => return,
        };
        let effect = Effect::of(entries, forwarding, owners);
        if let Some(server) = effect.all_on_one() {
            self.all_on_one(i, spanned, &effect, server, &taking, size);
            return;
        }
        for &j in &taking {
            if effect.entry_counts[j] > 0 {
                continue;
            }
            let needed = (total / u64::from(weight(&backends[j])))
                .max(backends.len() as u64 * u64::from(SLOTS_PER_BACKEND));
            self.report(
                &NO_SLOT,
                weight_span(&backends[j]),
                format!("vip[{i}].backend[{j}].weight"),
                format!(
                    "backend {} of vip \"{name}\" weighs {} of {total} but gets no slot of the \
                     {size}-slot table: it would take no new flow",
                    entries[j].address,
                    weight(&backends[j]),
                ),
                format!(
                    "use a table_size of at least {needed}, e.g. {}, or weights closer \
                     together; set weight = 0 if it is meant to take nothing",
                    prime_at_least(u32::try_from(needed).unwrap_or(u32::MAX))
                ),
            );
        }
        if effect.serving() >= 2 {
            for server in &effect.servers {
                // A slot of rounding is the table's, not the config's: two equal backends of
                // a 65,537-slot table get 32,769 and 32,768 slots.
                if server.count as f64 <= thresholds.max_backend_share * effect.total as f64 + 1.0 {
                    continue;
                }
                let first = server.entries[0];
                self.report(
                    &DOMINANT_BACKEND,
                    weight_span(&backends[first]),
                    format!("vip[{i}].backend[{first}].weight"),
                    format!(
                        "backend {} takes {} of the new flows of vip \"{name}\" ({} of {} table \
                         slots), more than audit.max_backend_share ({})",
                        server.address,
                        effect::percent(server.share, 0),
                        server.count,
                        effect.total,
                        effect::percent(thresholds.max_backend_share, 0)
                    ),
                    "spread the weight more evenly (e.g. equal weights), or raise \
                     audit.max_backend_share if this backend is meant to carry that much",
                );
            }
        }
        let min = thresholds.min_backends as usize;
        let count = effect.serving();
        if count < min {
            self.report(
                &SINGLE_BACKEND,
                vip.name.span(),
                format!("vip[{i}].backend"),
                format!(
                    "vip \"{name}\" has {count} backend{} taking traffic, fewer than \
                     audit.min_backends ({min}): {}",
                    if count == 1 { "" } else { "s" },
                    if count == 1 {
                        "if it fails, the VIP is down".to_owned()
                    } else {
                        format!("one failure takes {}% of its capacity", 100 / count)
                    },
                ),
                format!("add backends, or set audit.min_backends = {count} if so few are intended"),
            );
        }
    }

    /// XLB003: every new flow of VIP `i` would reach `server` although it names more backends;
    /// the finding says why (weights, one server written twice, or a table too small).
    fn all_on_one(
        &mut self,
        i: usize,
        spanned: &Spanned<VipFile>,
        effect: &Effect,
        server: &effect::Server,
        taking: &[usize],
        size: u32,
    ) {
        let vip = spanned.get_ref();
        let name = vip.name.get_ref().0.as_str();
        let backends = &vip.backend;
        let address = server.address;
        let others = effect.named - 1;
        let list = |indices: &[usize]| {
            indices
                .iter()
                .map(|&j| {
                    format!(
                        "backend[{j}] ({})",
                        backends[j].get_ref().address.get_ref().0
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let [only] = taking {
            let only = &backends[*only];
            self.report(
                &ALL_WEIGHT_ON_ONE,
                span_or(&only.get_ref().weight, only.span()),
                format!("vip[{i}].backend[{}].weight", taking[0]),
                format!(
                    "all the weight of vip \"{name}\" is on one backend: every new flow of vip \
                     \"{name}\" would go to {address} (the other {others} backend{} weigh{} 0)",
                    if others == 1 { "" } else { "s" },
                    if others == 1 { "s" } else { "" },
                ),
                "give the other backends a positive weight (e.g. weight = 1 each); if one server \
                 really is meant to take everything, remove the drained entries so the config \
                 says so",
            );
        } else if taking.iter().all(|j| server.entries.contains(j)) {
            let first = server.entries[0];
            self.report(
                &ALL_WEIGHT_ON_ONE,
                backends[first].get_ref().address.span(),
                format!("vip[{i}].backend[{first}].address"),
                format!(
                    "every new flow of vip \"{name}\" would go to one server, {address}: its \
                     entries {} are the same server (same address or, for dsr, same MAC)",
                    list(&server.entries)
                ),
                "give each backend entry its own server's address and MAC; list a server once",
            );
        } else {
            let starved: Vec<usize> = taking
                .iter()
                .copied()
                .filter(|&j| effect.entry_counts[j] == 0)
                .collect();
            let wanted = (backends.len() as u32).saturating_mul(SLOTS_PER_BACKEND);
            let least = taking
                .iter()
                .map(|&j| value(&backends[j].get_ref().weight).unwrap_or(DEFAULT_WEIGHT))
                .min()
                .unwrap_or(1)
                .max(1);
            let total: u32 = taking
                .iter()
                .map(|&j| value(&backends[j].get_ref().weight).unwrap_or(DEFAULT_WEIGHT))
                .fold(0, u32::saturating_add);
            let needed = wanted.max(total / least);
            self.report(
                &ALL_WEIGHT_ON_ONE,
                span_or(&vip.table_size, spanned.span()),
                format!("vip[{i}].table_size"),
                format!(
                    "the {size}-slot table of vip \"{name}\" sends every new flow to {address}: \
                     {} weigh more than 0 but get no slot",
                    list(&starved)
                ),
                format!(
                    "use a table_size of at least {needed}, e.g. {}, or weights closer together",
                    prime_at_least(needed)
                ),
            );
        }
    }
}
