//! Kernel-backed tests of the metrics exporter and the skew alarm: a config applied to a loaded
//! xlb, SYNs pushed through the real XDP program, the Prometheus text parsed back, and the skew
//! detector fed from `stats` samples.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_userspace::{
    metrics::{self, Extra},
    pins,
    skew::{self, Alert, AlertKind, Detector, Settings},
    stats, status,
};
use xlb_tests::{
    live::{LiveXlb, predicted},
    prometheus::{parse, value},
    require_privileges,
};

const VIP_LABEL: &str = "198.18.1.10:80/tcp";

/// Lints `text` with `promtool check metrics` (Prometheus' own parser and naming rules); panics
/// with its findings. `cargo xtask setup` installs promtool.
fn promtool_check_metrics(text: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("promtool: {err}: run `cargo xtask setup`"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let output = child.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Test that the rendered metrics parse as Prometheus text and carry exactly what went
/// through the kernel: per-backend new flows, packets and bytes as the table steered the SYNs,
/// shares equal to `stats`, health by config name (1 without a check), reasons, verdicts,
/// events, the generation, the apply and health-check histograms, reload failures, the build
/// and the table fingerprint `xlb status` shows, and every alert kind at 0; and that the pinned
/// maps render the same text as the loaded object; `promtool check metrics` finds nothing.
#[test]
fn metrics_render_what_the_kernel_counted() {
    require_privileges!();
    let (mut live, vip) = LiveXlb::equal("metrics");
    let (expected, frame) = live.send_predicted_syns(&vip, 10_000..10_600);
    let down: IpAddr = "198.18.0.11".parse().unwrap();
    let mut extra = Extra {
        vip_names: vec![("web".to_owned(), vip.key)],
        ..Extra::default()
    };
    extra.set_targets([("web", down, 0)]);
    extra.apply_seconds.observe(Duration::from_millis(125));
    extra.record_check(0, Duration::from_millis(500));
    extra.set_up(0, false);
    extra.record_reload(Some(metrics::ReloadFailure::Apply));
    extra.record_reload(None);

    let text = metrics::render(&mut live.ebpf, &extra).expect("render");
    let samples = parse(&text);
    promtool_check_metrics(&text);
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
    assert_eq!(
        value(&samples, "xlb_apply_duration_seconds_sum", &[]),
        0.125
    );
    assert_eq!(
        value(&samples, "xlb_apply_duration_seconds_count", &[]),
        1.0
    );
    for (le, count) in [("0.1", 0.0), ("0.25", 1.0), ("+Inf", 1.0)] {
        let bucket = value(&samples, "xlb_apply_duration_seconds_bucket", &[("le", le)]);
        assert_eq!(bucket, count, "apply bucket le={le}");
    }
    let check = [("vip", VIP_LABEL), ("backend", "198.18.0.11")];
    assert_eq!(
        value(&samples, "xlb_health_check_duration_seconds_sum", &check),
        0.5
    );
    let check_le = |le| [check[0], check[1], ("le", le)];
    assert_eq!(
        value(
            &samples,
            "xlb_health_check_duration_seconds_bucket",
            &check_le("0.25")
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "xlb_health_check_duration_seconds_bucket",
            &check_le("0.5")
        ),
        1.0
    );
    let reloads = |reason| value(&samples, "xlb_reload_failures_total", &[("reason", reason)]);
    assert_eq!((reloads("apply"), reloads("invalid")), (1.0, 0.0));
    assert_eq!(
        value(&samples, "xlb_config_last_reload_successful", &[]),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "xlb_build_info",
            &[("version", metrics::VERSION), ("commit", metrics::COMMIT)]
        ),
        1.0
    );
    // The same fingerprint `xlb status` (and so `audit --peer`) shows.
    let fingerprint = status.vips[0].fingerprint.as_str();
    assert_eq!(
        value(
            &samples,
            "xlb_vip_table_info",
            &[("vip", VIP_LABEL), ("fingerprint", fingerprint)]
        ),
        1.0
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
        // Table-wide kinds (evictions) show once, with an empty VIP.
        let vip = if kind.about_vip() { VIP_LABEL } else { "" };
        assert_eq!(
            value(
                &samples,
                "xlb_alert",
                &[("kind", kind.name()), ("vip", vip)]
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
    let (mut live, vip) = LiveXlb::equal("skewalarm");
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
        .filter(|sport| predicted(&vip, *sport) == target)
        .take(300)
        .collect();
    live.send_syns(chosen);
    let fired = observe(&mut detector, &mut live, 10);
    assert_kinds(&fired, true);
    let target_address: IpAddr = "198.18.0.10".parse().unwrap();
    assert!(
        fired
            .iter()
            .all(|a| a.backend == Some(target_address) && a.vip == VIP_LABEL)
    );
    assert_eq!(
        fired[1].message,
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
    assert_kinds(&observe(&mut detector, &mut live, 30), false);
    assert_eq!(detector.firing(), []);
}

/// Asserts that `alerts` are exactly the dominant and the skew alert, both `firing` (or both
/// cleared).
fn assert_kinds(alerts: &[Alert], firing: bool) {
    let kinds: Vec<(AlertKind, bool)> = alerts.iter().map(|a| (a.kind, a.firing)).collect();
    assert_eq!(
        kinds,
        [(AlertKind::Dominant, firing), (AlertKind::Skew, firing)],
        "{alerts:?}"
    );
}
