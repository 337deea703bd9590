//! Tests of the config layer against the corpus in tests/configs: every bad file yields the
//! diagnostic its first line names, every good file and the example yield none.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lb_common::service::{VIP_FORWARD_IPIP, VIP_HASH_SOURCE_ONLY};

use super::test_texts::{TWO_BACKENDS, two_backends_with};
use super::*;
use crate::attach::AttachMode;

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/configs")
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/xlb.toml")
}

/// A host with the interfaces the corpus uses.
fn env() -> FixedEnvironment {
    FixedEnvironment::new(&["lo", "eth0"])
}

/// Every diagnostic of a load, whether it succeeded or not.
fn diagnostics(checked: &Checked) -> &[Diagnostic] {
    match checked {
        Ok(loaded) => &loaded.warnings,
        Err(rejected) => &rejected.diagnostics,
    }
}

/// The model of a config that must load without an error or a warning; a panic names `what`
/// and lists every finding.
fn clean(checked: Checked, what: &str) -> Model {
    match checked {
        Ok(Loaded {
            model, warnings, ..
        }) if warnings.is_empty() => model,
        other => panic!(
            "{what}: {}",
            diagnostics(&other)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

/// What a bad file's header promises: `# expect: XLB005`, optionally
/// `# at: LINE:COLUMN FIELD` for the first diagnostic of that rule, and optionally
/// `# also: XLB003 ...` for the rules one mistake necessarily trips as well (two entries of one
/// server are XLB005, and with nothing else to take flows also XLB003).
struct Expectation {
    rule: &'static Rule,
    at: Option<(usize, usize, String)>,
    also: Vec<String>,
}

fn expectation(path: &Path) -> Expectation {
    // Bytes, not a string: one bad file is deliberately not UTF-8.
    let bytes = std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    let id = lines
        .next()
        .and_then(|line| line.strip_prefix("# expect: "))
        .unwrap_or_else(|| {
            panic!(
                "{}: the first line must be `# expect: XLBnnn`",
                path.display()
            )
        });
    let rule = rules::find(id.trim()).unwrap_or_else(|| panic!("{}: no rule {id}", path.display()));
    let at = lines
        .next()
        .and_then(|line| line.strip_prefix("# at: "))
        .filter(|at| *at != "?")
        .map(|at| {
            let (position, field) = at.split_once(' ').unwrap_or((at, ""));
            let (line, column) = position.split_once(':').expect("LINE:COLUMN");
            (
                line.parse().expect("line"),
                column.parse().expect("column"),
                field.to_owned(),
            )
        });
    let also = text
        .lines()
        .take_while(|line| line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("# also: "))
        .flat_map(|ids| ids.split_whitespace().map(str::to_owned))
        .collect();
    Expectation { rule, at, also }
}

/// What is wrong with a bad file's diagnostics against its header: empty when it yields the
/// rule it names, with that rule's severity, nothing else (one mistake per file), at the
/// promised position, with a message and a fix.
fn bad_config_failures(path: &Path) -> Vec<String> {
    let expected = expectation(path);
    let checked = load(path, &env());
    let found = diagnostics(&checked);
    let rendered: Vec<String> = found.iter().map(ToString::to_string).collect();
    let rendered = rendered.join("\n");
    let mut failures = Vec::new();
    let mut fail = |why: String| failures.push(format!("{}: {why}\n{rendered}", path.display()));
    let Some(hit) = found.iter().find(|d| d.rule == expected.rule.id) else {
        fail(format!("no {} diagnostic", expected.rule.id));
        return failures;
    };
    if hit.severity != expected.rule.severity || hit.name != expected.rule.name {
        fail(format!(
            "{} has the wrong severity or name",
            expected.rule.id
        ));
    }
    for id in &expected.also {
        if !found.iter().any(|d| d.rule == id) {
            fail(format!(
                "no {id} diagnostic, which the header says comes with it"
            ));
        }
    }
    if found
        .iter()
        .any(|d| d.rule != expected.rule.id && !expected.also.iter().any(|id| id == d.rule))
    {
        fail("diagnostics of other rules: the file should hold one mistake".into());
    }
    match (&checked, expected.rule.severity) {
        (Ok(_), Severity::Error) => fail("accepted despite an error".into()),
        (Err(_), Severity::Warning) => fail("rejected for a warning".into()),
        _ => {}
    }
    if let Some((line, column, field)) = &expected.at
        && (hit.line, hit.column, &hit.field) != (*line, *column, field)
    {
        fail(format!(
            "expected at {line}:{column} {field}, found {}:{} {}",
            hit.line, hit.column, hit.field
        ));
    }
    if hit.message.is_empty() || hit.fix.is_empty() {
        fail("a diagnostic without message or fix".into());
    }
    failures
}

#[test]
fn every_bad_config_yields_its_named_diagnostic() {
    // Test that each file in tests/configs/bad yields the rule its first line names, with that
    // rule's severity, nothing else (one mistake per file), and at the promised position.
    let failures: Vec<String> = toml_files(&configs().join("bad"))
        .iter()
        .flat_map(|path| bad_config_failures(path))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_rule_has_a_bad_config() {
    // Test that the corpus covers the whole catalogue.
    let covered: Vec<&str> = toml_files(&configs().join("bad"))
        .iter()
        .map(|path| expectation(path).rule.id)
        .collect();
    for rule in rules::RULES {
        assert!(
            covered.contains(&rule.id),
            "no bad config expects {}",
            rule.id
        );
    }
}

#[test]
fn good_configs_have_no_findings() {
    // Test that each file in tests/configs/good loads without an error or a warning.
    let files = toml_files(&configs().join("good"));
    assert!(files.len() >= 2);
    for path in files {
        clean(load(&path, &env()), &path.display().to_string());
    }
}

#[test]
fn example_config_is_valid_without_warnings() {
    // Test that examples/xlb.toml, the documented config, passes cleanly.
    let model = clean(load(&example(), &env()), "examples/xlb.toml");
    assert_eq!(model.vips.len(), 2);
}

#[test]
fn example_and_its_compact_copy_give_the_same_model() {
    // Test that tests/configs/good/example.toml stays the example's equivalent.
    let Loaded { model: example, .. } = load(&example(), &env()).expect("example");
    let Loaded { model: copy, .. } =
        load(&configs().join("good/example.toml"), &env()).expect("copy");
    assert_eq!(example, copy);
}

#[test]
fn model_holds_typed_values_defaults_and_file_order() {
    // Test the model of the example: typed values, defaults filled in, VIPs and backends in
    // file order, and the kernel forms derived from it.
    let Loaded { model, .. } = load(&example(), &env()).expect("example");
    assert_eq!(model.global.interface, "eth0");
    assert_eq!(model.global.xdp_mode, AttachMode::Native);
    assert_eq!(model.global.flow_table_size, 65_536);
    assert_eq!(model.global.pin_path, Path::new("/sys/fs/bpf/xlb"));
    assert_eq!(model.global.metrics_address.to_string(), "127.0.0.1:9100");
    assert_eq!(model.global.mtu, 1500);
    assert_eq!(
        model.global.ipip_source_v4,
        Some(Ipv4Addr::new(198, 18, 0, 2).into())
    );
    assert_eq!(
        model.global.ipip_source_v6,
        Some("2001:db8::2".parse::<Ipv6Addr>().unwrap().into())
    );
    assert_eq!(model.audit.max_backend_share, 0.5);
    assert_eq!(model.audit.min_backends, 2);

    let web = &model.vips[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.address, IpAddr::from([198, 18, 1, 10]));
    assert_eq!(
        (web.port, web.protocol, web.protocol.number()),
        (80, Protocol::Tcp, 6)
    );
    assert_eq!(
        (web.forwarding, web.hash, web.table_size),
        (Forwarding::Dsr, HashMode::FiveTuple, 65_537)
    );
    let addresses: Vec<String> = web.backends.iter().map(|b| b.address.to_string()).collect();
    assert_eq!(addresses, ["198.18.0.10", "198.18.0.11", "198.18.0.12"]);
    let weights: Vec<u32> = web.backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, [2, 2, 1]);
    assert_eq!(web.backends[0].mac, [2, 0, 0, 0, 1, 0]);
    // The second backend's check gives only `check` and `path`: the rest are defaults, and
    // the port is the VIP's.
    let health = web.backends[1].health.as_ref().expect("health");
    assert_eq!(
        *health,
        HealthCheck {
            check: CheckKind::Http {
                path: "/healthz".into(),
                expect_status: 200
            },
            port: 80,
            interval: std::time::Duration::from_millis(1000),
            timeout: std::time::Duration::from_millis(500),
            rise: 2,
            fall: 3,
        }
    );
    assert_eq!(web.flags(), 0);
    let key = web.key();
    assert_eq!(
        (key.addr[..4].to_vec(), key.port, key.proto, key.family),
        (vec![198, 18, 1, 10], 80u16.to_be(), 6, 4)
    );

    let api = &model.vips[1];
    assert_eq!(api.name, "api-v6");
    assert_eq!(api.flags(), VIP_FORWARD_IPIP | VIP_HASH_SOURCE_ONLY);
    assert_eq!(
        api.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
        [1, 1, 1]
    );
    assert_eq!(api.key().family, 6);
    let config = model.global.kernel_config();
    assert_eq!(config.ipip_src_v4, [198, 18, 0, 2]);
    assert_eq!(config.mtu, 1500);
}

/// A config with a healthy `[global]` and the given VIP section, for position tests.
fn check(vips: &str) -> Checked {
    let text = format!("[global]\ninterface = \"eth0\"\n{vips}");
    check_text(&text, Path::new("xlb.toml"), &env())
}

/// The only diagnostic of a check of [`TWO_BACKENDS`] with its first `from` written as `to`.
fn only_with(from: &str, to: &str) -> Diagnostic {
    only(&check(&two_backends_with(from, to))).clone()
}

/// The only diagnostic of a check.
fn only(checked: &Checked) -> &Diagnostic {
    let found = diagnostics(checked);
    assert_eq!(found.len(), 1, "{found:#?}");
    &found[0]
}

#[test]
fn duplicate_backend_points_at_the_second_address() {
    // Test the position of an audit finding: line 16 is the third backend's address, whose
    // value starts at column 13.
    let vips = format!(
        "{TWO_BACKENDS}  [[vip.backend]]\n  address = \"198.18.0.10\"\n  \
         mac = \"02:00:00:00:01:02\"\n"
    );
    let checked = check(&vips);
    let d = only(&checked);
    assert_eq!((d.rule, d.line, d.column), ("XLB005", 16, 13));
    assert_eq!(d.field, "vip[0].backend[2].address");
    assert_eq!(
        d.to_string(),
        "xlb.toml:16:13: error[XLB005 duplicate-backend]: backend 198.18.0.10 appears twice in \
         vip \"web\" (first as backend[0]) (vip[0].backend[2].address)\n  fix: remove one of the \
         entries or merge their weights"
    );
}

#[test]
fn unknown_field_points_at_the_key_and_suggests_the_right_name() {
    // Test the position and fix of a serde error: the misspelt key on line 10, column 3.
    let d = only_with("mac = \"02:00:00:00:01:00\"", "mca = \"02:00:00:00:01:00\"");
    assert_eq!((d.rule, d.line, d.column), ("XLB000", 11, 3));
    assert_eq!(d.field, "vip[0].backend[0].mca");
    assert!(d.message.contains("unknown field `mca`"), "{}", d.message);
    assert!(d.fix.contains("did you mean `mac`?"), "{}", d.fix);
    assert!(d.fix.contains("address, weight, mac, health"), "{}", d.fix);
}

#[test]
fn bad_enum_value_names_the_field_and_the_allowed_values() {
    // Test the position of a value error (column of the opening quote) and its message.
    let d = only_with("protocol = \"tcp\"", "protocol = \"tpc\"");
    assert_eq!((d.rule, d.line, d.column), ("XLB000", 8, 12));
    assert_eq!(d.field, "vip[0].protocol");
    assert_eq!(d.message, "protocol = \"tpc\" is not allowed");
    assert_eq!(d.fix, "use one of: tcp, udp (did you mean tcp?)");
}

#[test]
fn missing_mac_points_at_the_backend_table() {
    // Test that a finding about an absent field points at the table it belongs in.
    let d = only_with("  mac = \"02:00:00:00:01:01\"\n", "");
    assert_eq!((d.rule, d.line, d.column), ("XLB012", 12, 3));
    assert_eq!(d.field, "vip[0].backend[1].mac");
}

#[test]
fn all_weight_on_one_says_where_every_flow_would_go() {
    // Test that the outage xlb was born from is an error that says so plainly.
    let checked = check(&two_backends_with(
        "mac = \"02:00:00:00:01:01\"\n",
        "mac = \"02:00:00:00:01:01\"\n  weight = 0\n",
    ));
    assert!(checked.is_err());
    let d = only(&checked);
    assert_eq!(d.rule, "XLB003");
    assert!(
        d.message
            .contains("every new flow of vip \"web\" would go to 198.18.0.10"),
        "{}",
        d.message
    );
}

#[test]
fn audit_thresholds_change_the_warnings() {
    // Test that [audit] moves the thresholds: a single backend is fine with min_backends = 1.
    let single = two_backends_with(
        "  [[vip.backend]]\n  address = \"198.18.0.11\"\n  mac = \"02:00:00:00:01:01\"\n",
        "",
    );
    assert_eq!(only(&check(&single)).rule, "XLB001");
    let model = clean(
        check(&format!("[audit]\nmin_backends = 1\n{single}")),
        "min_backends = 1",
    );
    assert_eq!(model.audit.min_backends, 1);
}

#[test]
fn every_syntax_error_is_reported() {
    // Test that broken TOML yields a diagnostic per error, not just the first.
    let checked = check_text(
        "[global]\ninterface = \"eth0\nmtu = = 3\n[[vip]\n",
        Path::new("x.toml"),
        &env(),
    );
    let errors = checked.expect_err("broken TOML").diagnostics;
    assert!(errors.len() >= 2, "{errors:#?}");
    assert!(errors.iter().all(|d| d.rule == "XLB000" && d.line > 0));
}

#[test]
fn loading_keeps_the_text_it_checked_and_its_hash() {
    // Test that a load hands back the bytes it read and their hash, so no verb reads the file
    // again: for a valid config, for one with errors, and none for a file it cannot read.
    let bytes = std::fs::read(example()).expect("example");
    let loaded = load(&example(), &env()).expect("example");
    assert_eq!(loaded.text.text.as_bytes(), bytes);
    assert_eq!(loaded.text.hash, hash(&bytes));
    assert_eq!(loaded.text.path, example());
    let bad = configs().join("bad/all-weight-on-one.toml");
    let rejected = load(&bad, &env()).expect_err("XLB003");
    let text = rejected.text.expect("the text of a readable file");
    assert_eq!(
        *text.text,
        std::fs::read_to_string(&bad).expect("bad config")
    );
    assert_ne!(text.hash, loaded.text.hash);
    let missing = load(&configs().join("bad/does-not-exist.toml"), &env());
    assert!(missing.expect_err("missing file").text.is_none());
}

#[test]
fn unreadable_file_is_one_error_naming_the_path() {
    // Test that load reports a missing file as XLB021 with the path and the OS error.
    let path = configs().join("bad/does-not-exist.toml");
    let errors = load(&path, &env()).expect_err("missing file").diagnostics;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].rule, "XLB021");
    assert!(errors[0].message.contains(&path.display().to_string()));
    assert!(errors[0].message.contains("No such file or directory"));
}

#[test]
fn errors_come_before_warnings() {
    // Test the order of findings: errors first, then warnings, each in file order.
    let vips = format!(
        "{TWO_BACKENDS}\n[[vip]]\nname = \"dns\"\naddress = \"198.18.1.20\"\nport = 53\n\
         protocol = \"udp\"\ntable_size = 100\n  [[vip.backend]]\n  address = \"198.18.0.20\"\n  \
         mac = \"02:00:00:00:02:00\"\n"
    );
    let found = check(&vips).expect_err("not prime").diagnostics;
    let rules: Vec<&str> = found.iter().map(|d| d.rule).collect();
    assert_eq!(rules, ["XLB007", "XLB001"]);
}

#[test]
fn daemon_settings_default_when_absent() {
    // Test that a config without drain_timeout_seconds or [alerts] gets the documented
    // defaults: a 300 s drain, a 10 s window, factor 1.5, share 0.9, 1 healthy, 100 flows and
    // no command.
    let model = clean(
        load(&configs().join("good/minimal.toml"), &env()),
        "minimal",
    );
    assert_eq!(model.global.drain_timeout, Duration::from_secs(300));
    assert_eq!(
        model.alerts,
        Alerts {
            window: Duration::from_secs(10),
            skew_factor: 1.5,
            max_share: 0.9,
            min_healthy: 1,
            min_new_flows: 100,
            flood_factor: 10.0,
            flood_min_rate: 1000,
            max_evicted_proven: 0,
            command: None,
        }
    );
    assert_eq!(model.alerts, Alerts::default());
}

#[test]
fn empty_alerts_table_means_defaults() {
    // Test that `[alerts]` with no fields is the same as no table.
    let Loaded { model, .. } = check(&format!("[alerts]\n{TWO_BACKENDS}")).expect("valid");
    assert_eq!(model.alerts, Alerts::default());
}

#[test]
fn daemon_settings_are_parsed() {
    // Test that every new field of tests/configs/good/alerts.toml reaches the model, an
    // integer skew_factor included, and the flow admission reaches the kernel's config flags.
    let model = clean(load(&configs().join("good/alerts.toml"), &env()), "alerts");
    assert_eq!(model.global.drain_timeout, Duration::from_secs(900));
    assert_eq!(model.global.flow_admission, FlowAdmission::FirstAck);
    assert_eq!(
        model.global.kernel_config().flags,
        lb_common::config::CONFIG_FLOWS_FIRST_ACK
    );
    assert_eq!(
        model.alerts,
        Alerts {
            window: Duration::from_secs(30),
            skew_factor: 2.0,
            max_share: 0.75,
            min_healthy: 2,
            min_new_flows: 0,
            flood_factor: 4.0,
            flood_min_rate: 0,
            max_evicted_proven: 50,
            command: Some(
                "echo \"$XLB_ALERT_FIRING $XLB_ALERT_KIND $XLB_ALERT_VIP $XLB_ALERT_BACKEND\" >> \
                 /run/xlb-alerts"
                    .into()
            ),
        }
    );
}

#[test]
fn example_documents_the_daemon_settings() {
    // Test that examples/xlb.toml sets the daemon's settings to their defaults and names every
    // variable the alert command sees.
    let Loaded { model, .. } = load(&example(), &env()).expect("example");
    assert_eq!(model.global.drain_timeout, Duration::from_secs(300));
    assert_eq!(
        Alerts {
            command: None,
            ..model.alerts.clone()
        },
        Alerts::default()
    );
    assert!(model.alerts.command.is_some());
    let text = std::fs::read_to_string(example()).expect("example");
    for variable in [
        "XLB_ALERT_KIND",
        "XLB_ALERT_VIP",
        "XLB_ALERT_BACKEND",
        "XLB_ALERT_FIRING",
        "XLB_ALERT_MESSAGE",
    ] {
        assert!(
            text.contains(variable),
            "examples/xlb.toml does not name {variable}"
        );
    }
}

#[test]
fn bad_daemon_settings_point_at_their_field() {
    // Test that each new bad file is in the corpus, expects the right rule and an exact
    // position, and passes the corpus check (rule, severity, position, nothing else).
    let cases = [
        ("drain-timeout-out-of-range", "XLB014"),
        ("alerts-window-out-of-range", "XLB015"),
        ("alerts-skew-factor-not-above-one", "XLB015"),
        ("alerts-max-share-out-of-range", "XLB015"),
        ("alerts-min-healthy-zero", "XLB015"),
        ("alerts-min-new-flows-negative", "XLB015"),
        ("alerts-empty-command", "XLB015"),
        ("alerts-unknown-field", "XLB000"),
    ];
    let corpus = toml_files(&configs().join("bad"));
    for (name, rule) in cases {
        let path = configs().join(format!("bad/{name}.toml"));
        assert!(
            corpus.contains(&path),
            "{} is not in the corpus",
            path.display()
        );
        let expected = expectation(&path);
        assert_eq!(expected.rule.id, rule, "{name}");
        assert!(expected.at.is_some(), "{name}: no `# at:` line");
        let failures = bad_config_failures(&path);
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}

#[test]
fn out_of_range_alerts_name_the_field_value_and_range() {
    // Test the words of XLB015 and XLB014 (in [global], [audit] and [alerts]): the field, the
    // value, the allowed range, and a fix that says what to write.
    let cases = [
        (
            "[global]\nflow_table_size = 0",
            "global.flow_table_size = 0",
            "1..=16777216",
            "flow_table_size = 65536",
        ),
        (
            "[global]\nmtu = 100",
            "global.mtu = 100",
            "576..=9216",
            "mtu = 1500",
        ),
        (
            "[audit]\nmax_backend_share = 1.5",
            "audit.max_backend_share = 1.5",
            "above 0 and at most 1",
            "max_backend_share = 0.5",
        ),
        (
            "[global]\ndrain_timeout_seconds = 86401",
            "global.drain_timeout_seconds = 86401",
            "1..=86400",
            "drain_timeout_seconds = 300",
        ),
        (
            "[alerts]\nwindow_seconds = 0",
            "alerts.window_seconds = 0",
            "1..=3600",
            "window_seconds = 10",
        ),
        (
            "[alerts]\nskew_factor = 0.5",
            "alerts.skew_factor = 0.5",
            "above 1",
            "skew_factor = 1.5",
        ),
        (
            "[alerts]\nskew_factor = nan",
            "alerts.skew_factor = NaN",
            "above 1",
            "skew_factor = 1.5",
        ),
        (
            "[alerts]\nmax_share = 0",
            "alerts.max_share = 0",
            "above 0 and at most 1",
            "max_share = 0.9",
        ),
        (
            "[alerts]\nmin_healthy = -1",
            "alerts.min_healthy = -1",
            "at least 1",
            "min_healthy = 1",
        ),
        (
            "[alerts]\nmin_new_flows = -1",
            "alerts.min_new_flows = -1",
            "at least 0",
            "min_new_flows = 100",
        ),
        (
            "[alerts]\ncommand = \"  \"",
            "alerts.command = \"  \" is empty",
            "",
            "command = ",
        ),
    ];
    for (table, message, range, fix) in cases {
        // `check` writes [global] with its interface (lines 1-2): a [global] field goes on line
        // 3, another table on line 3 with its field on line 4.
        let (checked, line) = match table.strip_prefix("[global]\n") {
            Some(field) => (check(&format!("{field}\n{TWO_BACKENDS}")), 3),
            None => (check(&format!("{table}\n{TWO_BACKENDS}")), 4),
        };
        let rule = if table.starts_with("[alerts]") {
            "XLB015"
        } else {
            "XLB014"
        };
        let d = only(&checked);
        assert_eq!((d.rule, d.line), (rule, line), "{table}: {d}");
        assert!(d.message.contains(message), "{table}: {}", d.message);
        assert!(d.message.contains(range), "{table}: {}", d.message);
        assert!(d.fix.starts_with("write "), "{table}: {}", d.fix);
        assert!(d.fix.contains(fix), "{table}: {}", d.fix);
    }
}

#[test]
fn unknown_alerts_field_lists_the_fields() {
    // Test that a misspelt [alerts] field is XLB000 with a suggestion and every allowed name.
    let checked = check(&format!("[alerts]\nskew_factr = 2\n{TWO_BACKENDS}"));
    let d = only(&checked);
    assert_eq!((d.rule, d.line, d.column), ("XLB000", 4, 1));
    assert_eq!(d.field, "alerts.skew_factr");
    assert_eq!(d.message, "unknown field `skew_factr` in `alerts`");
    assert!(d.fix.contains("did you mean `skew_factor`?"), "{}", d.fix);
    assert!(
        d.fix.contains(
            "window_seconds, skew_factor, max_share, min_healthy, min_new_flows, flood_factor, \
             flood_min_rate, max_evicted_proven, command"
        ),
        "{}",
        d.fix
    );
}

#[test]
fn alerts_field_of_the_wrong_type_gets_its_hint() {
    // Test that a wrong type in [alerts] says what the field holds, with an example.
    let checked = check(&format!(
        "[alerts]\nwindow_seconds = \"10s\"\n{TWO_BACKENDS}"
    ));
    let d = only(&checked);
    assert_eq!((d.rule, d.line, d.column), ("XLB000", 4, 18));
    assert_eq!(
        d.message,
        "window_seconds must be an integer, not the string \"10s\""
    );
    assert_eq!(d.fix, "write seconds in 1..=3600, e.g. window_seconds = 10");
}

#[test]
fn bgp_settings_reach_the_model_with_the_default_reload_command() {
    // Test that tests/configs/good/bgp.toml gives a routes file and a reload command built
    // from its socket, that no [bgp] means no announcements, and that a reload_command is
    // taken as written.
    let Loaded { model, .. } = load(&configs().join("good/bgp.toml"), &env()).expect("bgp");
    let bgp = model.bgp.expect("[bgp]");
    assert_eq!(bgp.routes_file, Path::new("/run/xlb/bird-vips.conf"));
    assert_eq!(
        bgp.reload,
        Reload::Birdc {
            socket: "/run/bird/xlb-node.ctl".into()
        }
    );
    let Loaded { model, .. } = check(TWO_BACKENDS).expect("valid");
    assert_eq!(model.bgp, None);
    let reloads = [
        (
            "",
            Reload::Birdc {
                socket: "/run/bird/bird.ctl".into(),
            },
        ),
        (
            "reload_command = \"birdc configure\"\n",
            Reload::Shell {
                command: "birdc configure".to_owned(),
            },
        ),
    ];
    for (reload_command, reload) in reloads {
        let checked = check(&format!(
            "[bgp]\nroutes_file = \"/run/v.conf\"\n{reload_command}{TWO_BACKENDS}"
        ));
        let Ok(Loaded { model, .. }) = checked else {
            panic!("{reload_command:?}: {:#?}", diagnostics(&checked));
        };
        assert_eq!(
            model.bgp.expect("[bgp]").reload,
            reload,
            "{reload_command:?}"
        );
    }
}

#[test]
fn ipip_source_prefix_gives_the_kernel_its_host_bits() {
    // Test that a tunnel source prefix reaches the kernel as its network and host bits (a
    // single address as no host bits), and that flows spread over the prefix by their hash.
    let path = configs().join("good/ipip-source-prefix.toml");
    let Loaded { model, .. } = load(&path, &env()).expect("prefix config");
    let config = model.global.kernel_config();
    assert_eq!(config.ipip_src_v4, [198, 18, 200, 0]);
    assert_eq!(config.ipip_src_v4_hosts, [0, 0, 0, 255]);
    assert_eq!(
        config.ipip_src_v6[..15],
        Ipv6Addr::from([0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 0]).octets()[..15]
    );
    assert_eq!(config.ipip_src_v6_hosts, [0, 0, 0, 255]);
    let sources: std::collections::BTreeSet<[u8; 4]> = (0..64u32)
        .map(|i| config.ipip_source_v4(i.wrapping_mul(0x9e37_79b9)))
        .collect();
    assert!(
        sources.len() > 32,
        "64 hashes gave {} sources",
        sources.len()
    );
    assert!(
        sources.iter().all(|s| s[..3] == [198, 18, 200]),
        "{sources:?}"
    );
    let Loaded { model: single, .. } = load(&example(), &env()).expect("example");
    let single = single.global.kernel_config();
    assert_eq!(single.ipip_src_v4_hosts, [0; 4]);
    assert_eq!(single.ipip_source_v4(0xdead_beef), [198, 18, 0, 2]);
}

/// [`TWO_BACKENDS`] with a third backend, the first weighing 8 and the others 1, in a 101-slot
/// table: judged XLB002 (the first takes most new flows) and XLB008 (the table is small), both
/// on its table's counts.
fn weighed() -> String {
    let two = TWO_BACKENDS
        .replace("port = 80\n", "port = 80\ntable_size = 101\n")
        .replace("01:00\"\n", "01:00\"\n  weight = 8\n");
    format!("{two}  [[vip.backend]]\n  address = \"198.18.0.12\"\n  mac = \"02:00:00:00:01:02\"\n")
}

/// [`weighed`] with each input of its table changed in turn: a weight, an address, the size,
/// one backend more, one weighing 0; and unchanged, last.
fn weighed_variants() -> Vec<String> {
    let base = weighed();
    vec![
        base.replace("weight = 8", "weight = 7"),
        base.replace("198.18.0.12", "198.18.0.13"),
        base.replace("table_size = 101", "table_size = 103"),
        format!(
            "{base}  [[vip.backend]]\n  address = \"198.18.0.14\"\n  mac = \"02:00:00:00:01:04\"\n"
        ),
        base.replace("weight = 8", "weight = 0"),
        base,
    ]
}

/// A check of `vips` (under a `[global]`) that counts tables from `known`.
fn check_knowing(vips: &str, known: &KnownCounts) -> Checked {
    let text = format!("[global]\ninterface = \"eth0\"\n{vips}");
    let parsed = parse(&text, Path::new("xlb.toml")).expect("TOML");
    check_parsed(parsed, &env(), &[], known)
}

#[test]
fn known_counts_give_the_findings_a_build_gives() {
    // Test that a check taking its tables from the counts of an earlier check (as the
    // daemon's reload does) finds exactly what a fresh check finds, with the same model,
    // whichever input of the table changed since.
    let base = check(&weighed()).expect("warnings only");
    let rules: Vec<&str> = base.warnings.iter().map(|d| d.rule).collect();
    assert_eq!(rules, ["XLB008", "XLB002"]);
    assert_eq!(base.counts.len(), 1);
    for vips in weighed_variants() {
        let fresh = check(&vips);
        let reused = check_knowing(&vips, &base.counts);
        assert_eq!(diagnostics(&reused), diagnostics(&fresh), "{vips}");
        assert_eq!(
            reused.as_ref().ok().map(|l| &l.model),
            fresh.as_ref().ok().map(|l| &l.model),
            "{vips}"
        );
    }
}

#[test]
fn known_counts_are_taken_only_for_the_same_inputs() {
    // Test that a table found in the known counts is not built (counts that put every slot
    // on the first backend make the unchanged VIP XLB003), and that a change of any input of
    // the table (address, weight, size, backends) builds it (the fresh findings).
    let address = |last: u8| IpAddr::V4(Ipv4Addr::new(198, 18, 0, last));
    let mut known = KnownCounts::default();
    known.insert(
        vec![(address(10), 8), (address(11), 1), (address(12), 1)],
        101,
        vec![101, 0, 0],
    );
    let unchanged = check_knowing(&weighed(), &known);
    let rules: Vec<&str> = diagnostics(&unchanged).iter().map(|d| d.rule).collect();
    assert_eq!(rules, ["XLB003", "XLB008"]);
    for vips in &weighed_variants()[..5] {
        assert_eq!(
            diagnostics(&check_knowing(vips, &known)),
            diagnostics(&check(vips)),
            "{vips}"
        );
    }
}

#[test]
fn out_of_range_health_status_names_the_field_value_and_range() {
    // Test that XLB013's expect_status finding gives the value, the allowed range and the
    // default, like every other range check.
    let d = only_with(
        "mac = \"02:00:00:00:01:00\"\n",
        "mac = \"02:00:00:00:01:00\"\n  health = { check = \"http\", expect_status = 99 }\n",
    );
    let field = "vip[0].backend[0].health.expect_status";
    assert_eq!((d.rule, d.line, d.field.as_str()), ("XLB013", 12, field));
    let range = "health.expect_status = 99 is out of range: it must be in 100..=599";
    assert!(d.message.ends_with(range), "{d}");
    assert!(d.fix.starts_with("write expect_status = 200"), "{d}");
}

/// Test that `named_pin_path` finds `global.pin_path` without the VIPs, before or after them,
/// gives the default without one and the full parse's `Parsed::pin_path` either way, and gives
/// up (`None`) on a file that is missing or whose tables outside the VIPs do not parse alone.
#[test]
fn the_pin_path_is_found_without_parsing_the_vips() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("xlb.toml");
    let named = |text: &str| {
        std::fs::write(&file, text).expect("writing the config");
        let found = named_pin_path(&file);
        if let Ok(parsed) = parse(text, &file) {
            assert_eq!(found, Some(parsed.pin_path()), "{text}");
        }
        found
    };
    let pin = "[global]\ninterface = \"eth0\"\npin_path = \"/sys/fs/bpf/edge\"\n";
    let edge = Some(PathBuf::from("/sys/fs/bpf/edge"));
    assert_eq!(named(&format!("{pin}{TWO_BACKENDS}")), edge);
    assert_eq!(named(&format!("{TWO_BACKENDS}\n{pin}")), edge);
    assert_eq!(
        named(TWO_BACKENDS),
        Some(PathBuf::from(model::DEFAULT_PIN_PATH))
    );
    assert_eq!(named(&format!("{pin}pin_path = 5\n{TWO_BACKENDS}")), None);
    assert_eq!(named_pin_path(&dir.path().join("missing.toml")), None);
}

/// `vips` VIPs of two backends each (a 101-slot table: one XLB008 warning per VIP), VIP 0
/// opening with a comment line; `edit` changes the text before it is returned.
fn recheck_config(vips: usize) -> String {
    let mut text = String::from("[global]\ninterface = \"eth0\"\n\n");
    for i in 0..vips {
        text += &format!(
            "[[vip]]\n# ab\nname = \"web{i}\"\naddress = \"198.51.100.{i}\"\nport = 80\n\
             protocol = \"tcp\"\nforwarding = \"dsr\" \ntable_size = 101\n  [[vip.backend]]\n  \
             address = \"198.51.101.{i}\"\n  mac = \"02:00:00:00:0{i}:01\"\n  weight = 1\n  \
             [[vip.backend]]\n  address = \"198.51.102.{i}\"\n  mac = \"02:00:00:00:0{i}:02\"\n\n"
        );
    }
    text
}

/// `text` with the `n`th (0-based) occurrence of `from` written as `to`.
fn nth_replaced(text: &str, n: usize, from: &str, to: &str) -> String {
    let (at, _) = text.match_indices(from).nth(n).expect("occurs");
    format!("{}{to}{}", &text[..at], &text[at + from.len()..])
}

#[test]
fn a_recheck_finds_what_a_full_check_finds() {
    // Test that the daemon's check, which takes each VIP the reparse reused from the last
    // check, gives what a check of the whole text gives (findings with their file, line and
    // snippet, the model, the table counts) through edits that move lines, change which VIP
    // reports a missing tunnel source first, make a backend a VIP's address, duplicate a name,
    // change [global] or the file's name, and override a rule; and that it judges only the
    // VIPs whose text, place or surroundings changed.
    let base = recheck_config(6);
    let ipip = |text: &str, n| nth_replaced(text, n, "\"dsr\" ", "\"ipip\"");
    // Each step: the text, its name, the rules overridden and how many VIPs the check must
    // judge after the step before.
    let steps: Vec<(String, &str, Vec<String>, usize)> = vec![
        (base.clone(), "xlb.toml", vec![], 6),
        (base.clone(), "xlb.toml", vec![], 0),
        (
            nth_replaced(&base, 3, "weight = 1", "weight = 2"),
            "xlb.toml",
            vec![],
            1,
        ),
        (base.clone(), "xlb.toml", vec![], 1),
        (ipip(&base, 4), "xlb.toml", vec![], 1),
        // VIP 1 now reports the missing source; VIP 4 no longer does, and then again.
        (ipip(&ipip(&base, 4), 1), "xlb.toml", vec![], 2),
        (ipip(&base, 4), "xlb.toml", vec![], 2),
        (base.clone(), "xlb.toml", vec![], 1),
        // One line more in VIP 0, the same length: every later VIP's findings move a line,
        // and are placed anew rather than judged again.
        (base.replacen("# ab\n", "#\n#a\n", 1), "xlb.toml", vec![], 1),
        (base.clone(), "xlb.toml", vec![], 1),
        // VIP 1 longer by a byte, then by a line (a backend added): every later VIP moves.
        (
            nth_replaced(&base, 1, "weight = 1", "weight = 10"),
            "xlb.toml",
            vec![],
            1,
        ),
        (
            nth_replaced(
                &base,
                2,
                "  [[vip.backend]]\n",
                "  [[vip.backend]]\n  address = \"198.51.103.1\"\n  mac = \"02:00:00:00:03:01\"\n  \
                 [[vip.backend]]\n",
            ),
            "xlb.toml",
            vec![],
            1,
        ),
        (base.clone(), "xlb.toml", vec![], 1),
        // A backend of VIP 2 becomes VIP 5's address (XLB006 on VIP 2).
        (
            base.replacen("198.51.100.5", "198.51.101.2", 1),
            "xlb.toml",
            vec![],
            6,
        ),
        (
            base.replacen("\"web4\"", "\"web1\"", 1),
            "xlb.toml",
            vec![],
            6,
        ),
        (
            base.replacen("\"eth0\"", "\"lo\"", 1),
            "xlb.toml",
            vec![],
            6,
        ),
        (base.clone(), "xlb.toml", vec![], 6),
        (base.clone(), "other.toml", vec![], 0),
        (base.clone(), "xlb.toml", vec!["XLB008".to_owned()], 0),
    ];
    let mut recheck = Recheck::default();
    for (step, (text, name, overrides, judged)) in steps.into_iter().enumerate() {
        let file = Path::new(name);
        let full = check_parsed(
            parse(&text, file).expect("TOML"),
            &env(),
            &overrides,
            &KnownCounts::default(),
        );
        let parsed = parse_bytes_reusing(text.as_bytes(), file, &mut recheck.reparse);
        let again = check_parsed_reusing(
            parsed.expect("TOML"),
            &env(),
            &overrides,
            &KnownCounts::default(),
            &mut recheck,
        );
        assert_eq!(diagnostics(&again), diagnostics(&full), "{text}");
        let snippets = |checked: &Checked| -> Vec<String> {
            diagnostics(checked)
                .iter()
                .map(|d| d.snippet.clone())
                .collect()
        };
        assert_eq!(snippets(&again), snippets(&full), "{text}");
        assert!(!diagnostics(&full).is_empty());
        assert_eq!(
            again.as_ref().ok().map(|l| (&l.model, &l.counts)),
            full.as_ref().ok().map(|l| (&l.model, &l.counts)),
            "{text}"
        );
        assert_eq!(recheck.vips.judged(), judged, "step {step}: {text}");
    }
}
