//! Tests of the operator packaging (`packaging/`: the systemd unit and the Grafana dashboard)
//! and of `xlb completions`. No kernel is needed, so there is no privilege gate.

use std::collections::BTreeSet;

use serde_json::Value;
use xlb_tests::{
    demo,
    systemd::{self, UNIT, settings as unit_settings},
};

const DASHBOARD: &str = include_str!("../../packaging/grafana-dashboard.json");
/// The exporter's source: the metric names it renders are its `"xlb_..."` string literals.
const METRICS_SOURCE: &str = include_str!("../../lb-userspace/src/metrics.rs");

/// Every top-level verb of `xlb`.
const VERBS: [&str; 13] = [
    "run",
    "validate",
    "plan",
    "apply",
    "status",
    "stats",
    "explain",
    "audit",
    "backend",
    "down",
    "completions",
    "man",
    "top",
];

/// Whether `c` may continue a metric name.
fn name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

/// Every `xlb_...` metric name token in `text` (at a word start, so `myxlb_x` is not one).
fn metric_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    for (at, _) in text.match_indices("xlb_") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let len = text[at..]
            .find(|c: char| !name_char(c))
            .unwrap_or(text.len() - at);
        tokens.push(&text[at..at + len]);
    }
    tokens
}

/// The metric names `lb_userspace::metrics` renders: the `"xlb_...` string literals of its
/// source outside the unit tests, with the `_bucket`, `_sum` and `_count` series of those it
/// renders as histograms (the literal passed to `histogram(`).
fn exported_metrics() -> BTreeSet<String> {
    let code = METRICS_SOURCE
        .split("#[cfg(test)]")
        .next()
        .expect("split yields at least one part");
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("\"xlb_") {
        let name = &code[at + 1..];
        let name = &name[..name.find(|c: char| !name_char(c)).unwrap_or(name.len())];
        names.insert(name.to_owned());
        let call = code[..at].trim_end().trim_end_matches(',').trim_end();
        if call.ends_with("histogram(\n        &mut out") || call.ends_with("histogram(&mut out") {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// The family a series belongs to: a histogram's `_bucket`, `_sum` or `_count` series to the
/// histogram.
fn family_of<'a>(series: &'a str, exported: &BTreeSet<String>) -> &'a str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| series.strip_suffix(suffix))
        .filter(|base| exported.contains(*base))
        .unwrap_or(series)
}

/// Every string under a key named `key`, anywhere in `value`.
fn strings_under<'a>(value: &'a Value, key: &str, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == key
                    && let Some(text) = v.as_str()
                {
                    out.push(text);
                }
                strings_under(v, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("packaging/grafana-dashboard.json is not valid JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("the dashboard has a `panels` list")
        .iter()
        .collect();
    while let Some(panel) = stack.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            stack.extend(nested);
        }
        all.push(panel);
    }
    all
}

/// Test that the scan of the exporter's source finds its metric families (a guard for the
/// dashboard test below, which trusts this list).
#[test]
fn metric_names_are_found_in_the_exporter_source() {
    let names = exported_metrics();
    for name in [
        "xlb_vip_packets_total",
        "xlb_backend_expected_share",
        "xlb_packets_total",
        "xlb_alert",
        "xlb_health_check_duration_seconds",
        "xlb_health_check_duration_seconds_bucket",
        "xlb_apply_duration_seconds_count",
        "xlb_vip_table_info",
    ] {
        assert!(names.contains(name), "{name} not found among {names:?}");
    }
    assert!(
        !names.contains("xlb_vip_table_info_bucket"),
        "not a histogram"
    );
    assert_eq!(metric_tokens("rate(xlb_a[1m]) / myxlb_b"), ["xlb_a"]);
}

/// Test that the dashboard is JSON with a Prometheus datasource input that every panel and
/// query uses, in a schema version Grafana 10 imports.
#[test]
fn dashboard_parses_and_uses_the_prometheus_input() {
    let dashboard = dashboard();
    let inputs = dashboard["__inputs"].as_array().expect("`__inputs` list");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS input for the prometheus plugin: {inputs:?}"
    );
    let schema = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    for panel in panels(&dashboard) {
        if panel["type"] == "row" {
            continue;
        }
        let title = &panel["title"];
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {title}"
        );
        let targets = panel["targets"].as_array().expect("panel targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(
                !metric_tokens(expr).is_empty(),
                "panel {title}: query {expr:?} reads no xlb metric"
            );
        }
    }
}

/// Test that every query of the dashboard (panels, annotations, variables) names only metrics
/// the exporter renders, and that the panels the operator needs are there.
#[test]
fn dashboard_queries_only_exported_metrics() {
    let dashboard = dashboard();
    let exported = exported_metrics();
    let mut queries = Vec::new();
    strings_under(&dashboard, "expr", &mut queries);
    strings_under(&dashboard, "query", &mut queries);
    strings_under(&dashboard, "definition", &mut queries);
    assert!(queries.len() >= 10, "only {} queries found", queries.len());
    let mut used = BTreeSet::new();
    for query in &queries {
        for token in metric_tokens(query) {
            assert!(
                exported.contains(token),
                "query {query:?} uses {token}, which lb_userspace::metrics does not render \
                 (it renders {exported:?})"
            );
            used.insert(family_of(token, &exported));
        }
    }
    for wanted in [
        "xlb_vip_packets_total",
        "xlb_vip_bytes_total",
        "xlb_backend_new_flows_total",
        "xlb_backend_observed_share",
        "xlb_backend_expected_share",
        "xlb_backend_up",
        "xlb_alert",
        "xlb_packets_total",
        "xlb_config_generation",
        "xlb_apply_duration_seconds",
        "xlb_health_check_duration_seconds",
    ] {
        assert!(used.contains(wanted), "no panel shows {wanted}");
    }
}

/// Test that the systemd unit has its three sections, runs `xlb run --config` as a notify
/// service with a watchdog (only the main process notifies), reloads with SIGHUP, restarts on
/// failure, and leaves `xlb down` on stop commented out (stopping keeps
/// forwarding).
#[test]
fn systemd_unit_runs_reloads_and_keeps_forwarding_on_stop() {
    let sections: Vec<&str> = UNIT
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .collect();
    assert_eq!(sections, ["[Unit]", "[Service]", "[Install]"]);
    let service = unit_settings(UNIT, "[Service]");
    let get = |key: &str| {
        service
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("[Service] has no {key}="))
    };
    assert_eq!(get("Type"), "notify");
    assert_eq!(get("NotifyAccess"), "main");
    let watchdog = get("WatchdogSec");
    let seconds: u64 = watchdog
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("WatchdogSec={watchdog}: seconds expected"));
    assert!(
        (10..=120).contains(&seconds),
        "WatchdogSec={watchdog}: long enough for a slow apply, short enough to matter"
    );
    let start: Vec<&str> = get("ExecStart").split_whitespace().collect();
    assert!(
        start[0].ends_with("/xlb") && start[1..3] == ["run", "--config"] && start.len() == 4,
        "ExecStart={start:?}"
    );
    let reload = get("ExecReload");
    assert!(
        reload.contains("kill") && reload.contains("-HUP") && reload.contains("$MAINPID"),
        "ExecReload={reload}"
    );
    assert_eq!(get("Restart"), "on-failure");
    for capability in ["CAP_BPF", "CAP_NET_ADMIN"] {
        assert!(
            get("CapabilityBoundingSet").contains(capability),
            "{capability}"
        );
    }
    assert!(
        service.iter().all(|(k, _)| *k != "ExecStopPost"),
        "ExecStopPost is active: stopping would detach"
    );
    assert!(
        UNIT.lines()
            .any(|l| l.starts_with("#ExecStopPost=") && l.ends_with("xlb down")),
        "the commented `ExecStopPost=... xlb down` line is missing"
    );
    assert!(
        unit_settings(UNIT, "[Unit]").contains(&("After", "network-online.target")),
        "After=network-online.target"
    );
    assert!(
        unit_settings(UNIT, "[Install]")
            .iter()
            .any(|(k, _)| *k == "WantedBy"),
        "[Install] has no WantedBy="
    );
}

/// Test that the unit sandboxes the daemon: no new privileges, a private /tmp, the whole file
/// system read-only but for the pins and xlb's runtime directory (both default paths xlb
/// writes lie inside), no home directories, umask 0077, and capabilities limited to CAP_BPF,
/// CAP_NET_ADMIN and CAP_PERFMON (no CAP_SYS_ADMIN), the same in the ambient set.
#[test]
fn systemd_unit_sandboxes_the_daemon_with_the_smallest_capabilities() {
    let get =
        |key: &str| systemd::service(key).unwrap_or_else(|| panic!("[Service] has no {key}="));
    assert_eq!(get("NoNewPrivileges"), "yes");
    assert_eq!(get("PrivateTmp"), "yes");
    assert_eq!(get("ProtectSystem"), "strict");
    assert!(["yes", "read-only", "tmpfs"].contains(&get("ProtectHome")));
    assert_eq!(get("UMask"), "0077");
    let mut writable: Vec<String> = get("ReadWritePaths")
        .split_whitespace()
        .map(|p| p.trim_start_matches(['-', '+']).to_owned())
        .collect();
    writable.extend(
        systemd::service("RuntimeDirectory")
            .unwrap_or_default()
            .split_whitespace()
            .map(|d| format!("/run/{d}")),
    );
    for written in [
        lb_userspace::pins::DEFAULT_PIN_PATH,
        lb_userspace::bgp::STATE_DIR,
    ] {
        assert!(
            writable
                .iter()
                .any(|w| std::path::Path::new(written).starts_with(w)),
            "xlb writes {written}, which ProtectSystem=strict leaves read-only ({writable:?})"
        );
    }
    let mut bounding = systemd::bounding_set();
    bounding.sort_unstable();
    assert_eq!(bounding, ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
    let mut ambient: Vec<&str> = get("AmbientCapabilities").split_whitespace().collect();
    ambient.sort_unstable();
    assert_eq!(ambient, bounding, "AmbientCapabilities");
}

/// Test that the bash completion script completes every top-level verb, and that every shell
/// gets a script.
#[test]
fn completion_scripts_name_every_verb() {
    let bash = completion_script("bash");
    for verb in VERBS {
        assert!(
            bash.contains(&format!("xlb,{verb})")),
            "bash completion does not complete `xlb {verb}`"
        );
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = completion_script(shell);
        assert!(
            VERBS.iter().all(|verb| script.contains(verb)),
            "{shell}: a verb is missing"
        );
    }
}

/// What `xlb completions SHELL` prints.
fn completion_script(shell: &str) -> String {
    let xlb = demo::xlb_binary().expect("xlb binary");
    let output = std::process::Command::new(&xlb)
        .args(["completions", shell])
        .output()
        .expect("run xlb completions");
    assert!(
        output.status.success(),
        "xlb completions {shell}: {output:?}"
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

const RULES: &str = include_str!("../../packaging/xlb-alerts.yml");
const RULE_TESTS: &str = include_str!("../prometheus/xlb-alerts.test.yml");

/// Runs `promtool ARGS` in `dir` and returns its output; panics if promtool is missing (`cargo
/// xtask setup` installs it) or fails.
fn promtool(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|err| {
            panic!("promtool: {err}: run `cargo xtask setup`, which installs it")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The `- alert: NAME` rules of the rules file, each with its `expr:`.
fn alert_rules() -> Vec<(&'static str, &'static str)> {
    let mut rules = Vec::new();
    let mut lines = RULES.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("- alert: ") {
            let expr = lines
                .next()
                .and_then(|l| l.strip_prefix("expr: "))
                .unwrap_or_else(|| panic!("alert {name}: `expr:` must follow `alert:`"));
            rules.push((name, expr));
        }
    }
    rules
}

/// Test that `promtool check rules` accepts packaging/xlb-alerts.yml and `promtool test rules`
/// passes its unit tests (tests/prometheus/xlb-alerts.test.yml); that there is a rule for every
/// alert kind the daemon raises, for failed reloads, XDP_TX failures and differing table
/// fingerprints; and that the unit tests check each rule both firing and silent.
#[test]
fn alert_rules_cover_every_alert_and_pass_promtool() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let checked = promtool(&root, &["check", "rules", "packaging/xlb-alerts.yml"]);
    let rules = alert_rules();
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{checked}"
    );
    let tested = promtool(
        &root.join("tests/prometheus"),
        &["test", "rules", "xlb-alerts.test.yml"],
    );
    assert!(tested.contains("SUCCESS"), "{tested}");

    let exprs: Vec<&str> = rules.iter().map(|(_, expr)| *expr).collect();
    for kind in lb_userspace::skew::AlertKind::ALL {
        let selector = format!("xlb_alert{{kind=\"{}\"}} == 1", kind.name());
        assert!(exprs.contains(&selector.as_str()), "no rule `{selector}`");
    }
    for metric in [
        "xlb_config_last_reload_successful",
        "xlb_interface_xdp_tx_errors_total",
        "xlb_vip_table_info",
    ] {
        assert!(
            exprs
                .iter()
                .any(|expr| metric_tokens(expr).contains(&metric)),
            "no rule reads {metric}"
        );
    }
    let exported = exported_metrics();
    for (name, expr) in &rules {
        for token in metric_tokens(expr) {
            assert!(
                exported.contains(token),
                "{name} reads {token}, which xlb does not export"
            );
        }
        // Each rule's tests: an evaluation with no alert and one with an alert.
        let cases: Vec<&str> = RULE_TESTS
            .split("- eval_time:")
            .filter(|case| case.contains(&format!("alertname: {name}\n")))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "no test that {name} stays silent"
        );
        assert!(
            cases.iter().any(|c| c.contains("- exp_labels:")),
            "no test that {name} fires"
        );
    }
}
