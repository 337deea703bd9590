//! Kernel-backed tests of the metrics exporter and the skew alarm: a config applied to a loaded
//! xlb, SYNs pushed through the real XDP program, the Prometheus text parsed back, and the skew
//! detector fed from `stats` samples.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_userspace::{
    metrics::{self, Extra},
    pins,
    skew::{self, AlertKind, Detector, Settings},
    stats, status,
};
use xlb_tests::{
    live::{EQUAL, LiveXlb, flow, predicted},
    packets::{self},
    require_privileges,
};

const VIP_LABEL: &str = "198.18.1.10:80/tcp";

/// One sample line of a Prometheus text exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses Prometheus text format 0.0.4 strictly enough to catch what a scraper would refuse,
/// and the conventions on top: every sample's family has HELP then TYPE before it, a family's
/// samples are together and its label sets unique, and counters end in `_total`. Panics with
/// the offending line otherwise.
fn parse(text: &str) -> Vec<Sample> {
    try_parse(text).unwrap_or_else(|why| panic!("{why}\n{text}"))
}

/// [`parse`], returning what is wrong instead of panicking.
fn try_parse(text: &str) -> Result<Vec<Sample>, String> {
    if !text.ends_with('\n') {
        return Err("the exposition must end with a line feed".into());
    }
    let mut help: BTreeMap<String, ()> = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut samples: Vec<Sample> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let fail = |why: &str| Err(format!("line {}: {why}: {line:?}", number + 1));
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if let Err(why) = check_name(name) {
                return fail(&why);
            }
            if help.insert(name.to_owned(), ()).is_some() {
                return fail("second HELP for one family");
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next()) else {
                return fail("TYPE needs a name and a type");
            };
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return fail("unknown type");
            }
            if !help.contains_key(name) {
                return fail("TYPE before HELP");
            }
            if kind == "counter" && !name.ends_with("_total") {
                return fail("a counter's name must end in _total");
            }
            if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                return fail("second TYPE for one family");
            }
            if let Some(done) = current.replace(name.to_owned()) {
                finished.push(done);
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let sample = match parse_sample(line) {
            Ok(sample) => sample,
            Err(why) => return fail(&why),
        };
        if !types.contains_key(&sample.name) {
            return fail("sample without HELP and TYPE before it");
        }
        if current.as_deref() != Some(sample.name.as_str()) || finished.contains(&sample.name) {
            return fail("sample outside its family's block");
        }
        if samples
            .iter()
            .any(|s| s.name == sample.name && s.labels == sample.labels)
        {
            return fail("label set repeated");
        }
        samples.push(sample);
    }
    Ok(samples)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

/// `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = inner.find("=\"").ok_or("label without =\"")?;
            let label = &inner[..eq];
            if label.is_empty()
                || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || label.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(format!("bad label name {label:?}"));
            }
            let mut value = String::new();
            let mut chars = inner[eq + 2..].char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break eq + 2 + i + 1,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        other => return Err(format!("bad escape \\{other}")),
                    },
                    (_, '\n') => return Err("raw line feed in a label value".into()),
                    (_, c) => value.push(c),
                }
            };
            if labels.insert(label.to_owned(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            inner = &inner[end..];
            inner = inner.strip_prefix(',').unwrap_or(inner);
        }
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or("no space before the value")?
        .split(' ');
    let value = match fields.next().ok_or("no value")? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text
            .parse::<f64>()
            .map_err(|err| format!("value {text:?}: {err}"))?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|err| format!("timestamp {timestamp:?}: {err}"))?;
    }
    if fields.next().is_some() {
        return Err("text after the value".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The value of the sample `name` with exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {samples:#?}"))
        .value
}

/// Test that the parser this file relies on refuses what a scraper would: a sample without
/// HELP/TYPE, a counter not ending in _total, a family split in two, a bad escape.
#[test]
fn exposition_parser_refuses_malformed_text() {
    let good = "# HELP a_total h\n# TYPE a_total counter\na_total{x=\"q\\\"\"} 1\n";
    assert_eq!(parse(good)[0].labels["x"], "q\"");
    for (bad, why) in [
        ("a 1\n", "without HELP and TYPE"),
        ("# HELP a h\n# TYPE a counter\na 1\n", "must end in _total"),
        (
            "# HELP a h\n# TYPE a gauge\na 1\n# HELP b h\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",
            "outside its family's block",
        ),
        ("# HELP a h\n# TYPE a gauge\na{x=\"\\t\"} 1\n", "bad escape"),
    ] {
        let err = try_parse(bad).expect_err(bad);
        assert!(err.contains(why), "{bad:?}: {err}");
    }
}

/// Test that the rendered metrics parse as Prometheus text and carry exactly what went
/// through the kernel: per-backend new flows, packets and bytes as the table steered the SYNs,
/// shares equal to `stats`, health by config name (1 without a check), reasons, verdicts,
/// events, the generation, and every alert kind at 0; and that the pinned maps render the
/// same text as the loaded object.
#[test]
fn metrics_render_what_the_kernel_counted() {
    require_privileges!();
    let mut live = LiveXlb::new("metrics");
    let applied = live.apply(&EQUAL);
    let vip = &applied.vips[0];
    let sports = 10_000..10_600u16;
    let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
    for sport in sports.clone() {
        *expected.entry(predicted(vip, sport)).or_default() += 1;
    }
    live.send_syns(sports);
    let frame = packets::tcp_syn(&flow(10_000)).len() as u64;
    let down: IpAddr = "198.18.0.11".parse().unwrap();
    let extra = Extra {
        vip_names: vec![("web".to_owned(), vip.key)],
        health: vec![("web".to_owned(), down, 0)],
        alerts: Vec::new(),
        last_apply_seconds: 0.125,
        health_check_seconds: vec![(VIP_LABEL.to_owned(), down, 0.5)],
    };

    let text = metrics::render(&mut live.ebpf, &extra).expect("render");
    let samples = parse(&text);
    let report = stats::collect(&mut live.ebpf, None, 1.5).expect("stats");
    let [vip_stats] = report.vips.as_slice() else {
        panic!("one VIP expected: {:?}", report.vips);
    };
    assert_eq!(vip_stats.vip, VIP_LABEL);
    for (backend, id) in vip_stats.backends.iter().zip(&vip.backend_ids) {
        let address = backend.address.to_string();
        let labels = [("vip", VIP_LABEL), ("backend", address.as_str())];
        let want = expected.get(id).copied().unwrap_or(0);
        assert!(want > 0, "every backend gets some of 600 flows");
        let get = |name| value(&samples, name, &labels);
        assert_eq!(get("xlb_backend_new_flows_total"), want as f64, "{address}");
        assert_eq!(get("xlb_backend_packets_total"), want as f64, "{address}");
        assert_eq!(get("xlb_backend_bytes_total"), (want * frame) as f64);
        assert_eq!(get("xlb_backend_observed_share"), backend.observed_share);
        assert_eq!(get("xlb_backend_expected_share"), backend.expected_share);
        let up = if backend.address == down { 0.0 } else { 1.0 };
        assert_eq!(get("xlb_backend_up"), up, "{address}");
    }
    let vip_labels = [("vip", VIP_LABEL)];
    assert_eq!(value(&samples, "xlb_vip_packets_total", &vip_labels), 600.0);
    assert_eq!(
        value(&samples, "xlb_vip_bytes_total", &vip_labels),
        (600 * frame) as f64
    );
    let one = |label, name: &str, v| value(&samples, name, &[(label, v)]);
    assert_eq!(one("reason", "xlb_packets_total", "forwarded_dsr"), 600.0);
    assert_eq!(
        one("reason", "xlb_bytes_total", "forwarded_dsr"),
        (600 * frame) as f64
    );
    assert_eq!(one("reason", "xlb_packets_total", "no_backend"), 0.0);
    assert_eq!(one("verdict", "xlb_verdict_packets_total", "tx"), 600.0);
    assert_eq!(one("event", "xlb_flow_events_total", "flow_miss"), 600.0);
    assert_eq!(value(&samples, "xlb_config_generation", &[]), 1.0);
    let status = status::read(&live.pin_path).expect("status");
    assert_eq!(
        value(&samples, "xlb_config_applied_timestamp_seconds", &[]),
        status.applied_at_unix as f64
    );
    assert_eq!(value(&samples, "xlb_apply_duration_seconds", &[]), 0.125);
    assert_eq!(
        value(
            &samples,
            "xlb_health_check_duration_seconds",
            &[("vip", VIP_LABEL), ("backend", "198.18.0.11")]
        ),
        0.5
    );
    assert_eq!(
        value(
            &samples,
            "xlb_vip_info",
            &[("vip", VIP_LABEL), ("name", "web")]
        ),
        1.0
    );
    for kind in AlertKind::ALL {
        assert_eq!(
            value(
                &samples,
                "xlb_alert",
                &[("kind", kind.name()), ("vip", VIP_LABEL)]
            ),
            0.0
        );
    }

    let mut pinned = pins::open(&live.pin_path).expect("pins");
    assert_eq!(
        metrics::render(&mut pinned, &extra).expect("render from pins"),
        text
    );
}

/// Test the alarm on real counters: all new flows of a window sent to one of three equal
/// backends fires skew and dominant for it (and `xlb_alert` shows them), and both clear once
/// an even spread dominates a later window.
#[test]
fn skew_alarm_fires_on_kernel_counters_and_clears() {
    require_privileges!();
    let mut live = LiveXlb::new("skewalarm");
    let applied = live.apply(&EQUAL);
    let vip = &applied.vips[0];
    let mut detector = Detector::new(Settings {
        window: Duration::from_secs(60),
        factor: 1.5,
        max_share: 0.8,
        min_healthy: 2,
        min_new_flows: 100,
    });
    let start = Instant::now();
    let observe = |detector: &mut Detector, live: &mut LiveXlb, seconds: u64| {
        let report = stats::collect(&mut live.ebpf, None, 1.5).expect("stats");
        let sample = skew::samples(&report, |_, _| true);
        detector.observe(start + Duration::from_secs(seconds), &sample)
    };
    assert_eq!(observe(&mut detector, &mut live, 0), []);

    let target = vip.backend_ids[0];
    let chosen: Vec<u16> = (30_000..u16::MAX)
        .filter(|sport| predicted(vip, *sport) == target)
        .take(300)
        .collect();
    live.send_syns(chosen);
    let fired = observe(&mut detector, &mut live, 10);
    let kinds: Vec<(AlertKind, bool)> = fired.iter().map(|a| (a.kind, a.firing)).collect();
    assert_eq!(
        kinds,
        [(AlertKind::Skew, true), (AlertKind::Dominant, true)],
        "{fired:?}"
    );
    let target_address: IpAddr = "198.18.0.10".parse().unwrap();
    assert!(
        fired
            .iter()
            .all(|a| a.backend == Some(target_address) && a.vip == VIP_LABEL)
    );
    assert_eq!(
        fired[0].message,
        "vip 198.18.1.10:80/tcp: backend 198.18.0.10 took 100% of new flows in the last 10s \
         (expected 33%): check the weights (xlb audit) and the table (xlb stats)"
    );

    let extra = Extra {
        alerts: detector.firing(),
        ..Extra::default()
    };
    let samples = parse(&metrics::render(&mut live.ebpf, &extra).expect("render"));
    let alert = |kind: &str| value(&samples, "xlb_alert", &[("kind", kind), ("vip", VIP_LABEL)]);
    assert_eq!(
        (alert("skew"), alert("dominant"), alert("few_healthy")),
        (1.0, 1.0, 0.0)
    );

    // 3000 flows spread by the table: over the window the target has about 1300 of 3300.
    live.send_syns(20_000..23_000);
    let cleared = observe(&mut detector, &mut live, 30);
    let kinds: Vec<(AlertKind, bool)> = cleared.iter().map(|a| (a.kind, a.firing)).collect();
    assert_eq!(
        kinds,
        [(AlertKind::Skew, false), (AlertKind::Dominant, false)],
        "{cleared:?}"
    );
    assert_eq!(detector.firing(), []);
}
