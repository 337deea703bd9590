//! Kernel-backed tests of `status` and `stats`: a config applied to a loaded xlb, SYNs pushed
//! through the real XDP program, and the reports read back from the pinned maps.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use lb_common::{PROGRAM_NAME, Verdict};
use lb_userspace::{
    config, exit,
    live::BackendState,
    object, pins,
    stats::{self, Skew},
    status, testrun,
};
use xlb_tests::{
    live::{EQUAL, LiveXlb, TEST_CAPACITY, assert_fields, config_text, flow, predicted},
    netns::Lab,
    packets::{self},
    require_privileges,
};

/// FNV-1a 64 over each slot's owner (its address bytes and family, from the backend map),
/// written out independently of xlb.
fn fnv1a(table: &[u32], live: &mut LiveXlb) -> String {
    let backends = lb_userspace::live::Snapshot::read(&mut live.ebpf)
        .expect("snapshot")
        .backends;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for id in table {
        let owner = backends[*id as usize];
        for byte in owner.addr.into_iter().chain([owner.family]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Test that status reports the generation, when and what was applied, the VIP with its
/// backends and a fingerprint of the table apply installed, and that re-applying the same
/// config (a new generation, the other table copy) keeps the fingerprint.
#[test]
fn status_reports_generation_vip_and_table_fingerprint() {
    require_privileges!();
    let mut live = LiveXlb::new("status");
    let first = live.apply(&EQUAL);
    let status = status::read(&live.pin_path).expect("status");
    assert_eq!(status.generation, 1);
    assert_eq!(status.pin_path, live.pin_path.display().to_string());
    let applied_at = status.applied_at.as_deref().expect("applied_at");
    assert_eq!(applied_at, status::rfc3339(status.applied_at_unix));
    assert!(
        applied_at.ends_with('Z') && applied_at.len() == 20,
        "{applied_at}"
    );
    assert_eq!(
        status.config_hash,
        format!("{:016x}", config::hash(config_text(&EQUAL).as_bytes()))
    );
    // LiveXlb pins maps only, unattached: as after a load without `xlb run`.
    assert!(!status.program_pinned && !status.link_pinned);
    assert_eq!((status.ifindex, &status.interface), (0, &None));
    assert_eq!(status.attach_mode, None);
    assert_eq!(status.capacity.vips, TEST_CAPACITY.vips);
    assert_eq!(
        status.capacity.backends_per_vip,
        TEST_CAPACITY.backends_per_vip
    );
    assert_eq!(status.capacity.table_slots, TEST_CAPACITY.table_slots);

    let [vip] = status.vips.as_slice() else {
        panic!("one VIP expected: {:?}", status.vips);
    };
    let applied = &first.vips[0];
    assert_eq!(vip.vip, "198.18.1.10:80/tcp");
    assert_eq!((vip.forwarding, vip.hash), ("dsr", "5-tuple"));
    assert_eq!(vip.table_size, applied.vip.table_size);
    assert_eq!(vip.active_copy, applied.vip.active);
    assert_eq!((vip.backends.total, vip.backends.active), (3, 3), "{vip:?}");
    assert_eq!((vip.backends.drained, vip.backends.disabled), (0, 0));
    assert_eq!(vip.fingerprint, fnv1a(&applied.table, &mut live));
    let text = status::render(&status);
    assert!(text.contains(&vip.fingerprint), "{text}");

    let second = live.apply(&EQUAL);
    let again = status::read(&live.pin_path).expect("status");
    assert_eq!(again.generation, 2);
    // Nothing of the VIP changed: its table stands, in the same copy.
    assert!(!second.vips[0].rebuilt);
    assert_eq!(again.vips[0].active_copy, vip.active_copy, "the same copy");
    assert_eq!(again.vips[0].fingerprint, vip.fingerprint);
    assert_eq!(again.config_hash, status.config_hash);

    let heavier = live.apply(&[("198.18.0.10", 1), ("198.18.0.11", 1), ("198.18.0.12", 2)]);
    let changed = status::read(&live.pin_path).expect("status");
    assert_ne!(changed.vips[0].fingerprint, vip.fingerprint);
    assert_eq!(
        changed.vips[0].fingerprint,
        fnv1a(&heavier.vips[0].table, &mut live)
    );
    assert_ne!(changed.config_hash, status.config_hash);
}

/// Test that status and stats with nothing pinned (no directory, or an empty one) fail with a
/// NotLoaded error, exit code NOT_LOADED.
#[test]
fn status_and_stats_without_pins_are_not_loaded() {
    require_privileges!();
    let mut lab = Lab::new("nopins").expect("lab");
    let empty = lab.pin_dir("empty").expect("pin directory");
    let absent = empty.join("absent");
    for path in [&absent, &empty] {
        let err = status::read(path).expect_err("status of nothing");
        assert_eq!(exit::code_of(&err), exit::NOT_LOADED, "{err:#}");
        assert!(
            format!("{err:#}").contains(&path.display().to_string()),
            "{err:#}"
        );
        let err = stats::read(path, None, 1.5).expect_err("stats of nothing");
        assert_eq!(exit::code_of(&err), exit::NOT_LOADED, "{err:#}");
    }
}

/// Test that each backend's new flows, packets and bytes are exactly the SYNs the live table
/// sends it, and that with equal weights the observed shares of a spread sample stay within
/// 2 points of the expected shares and nothing is flagged.
#[test]
fn stats_count_new_flows_per_backend_as_the_table_steers() {
    require_privileges!();
    let (mut live, vip) = LiveXlb::equal("stats");
    let (expected, frame) = live.send_predicted_syns(&vip, 10_000..13_000);

    let stats = stats::read(&live.pin_path, None, 1.5).expect("stats");
    let [report] = stats.vips.as_slice() else {
        panic!("one VIP expected: {:?}", stats.vips);
    };
    assert_eq!(report.vip, "198.18.1.10:80/tcp");
    assert_eq!(
        (report.packets, report.bytes, report.new_flows),
        (3000, 3000 * frame, 3000)
    );
    assert_eq!(report.rates, None);
    let ids: Vec<u32> = report.backends.iter().map(|b| b.id).collect();
    assert_eq!(ids, vip.backend_ids);
    for backend in &report.backends {
        let want = expected.get(&backend.id).copied().unwrap_or(0);
        assert_eq!(backend.new_flows, want, "{backend:?}");
        assert_eq!(
            (backend.packets, backend.bytes),
            (want, want * frame),
            "{backend:?}"
        );
        assert_eq!(backend.state, BackendState::Active);
        assert_eq!(backend.weight, 1);
        let slots = vip.table.iter().filter(|id| **id == backend.id).count();
        assert_eq!(
            backend.expected_share,
            slots as f64 / vip.table.len() as f64
        );
        assert!(
            (backend.expected_share - 1.0 / 3.0).abs() < 0.01,
            "{backend:?}"
        );
        assert!(
            (backend.observed_share - backend.expected_share).abs() < 0.02,
            "{backend:?}"
        );
        assert_eq!(backend.skew, None, "{backend:?}");
    }
    assert_eq!(stats.skewed_backends, 0);
    assert_eq!(stats.reasons["forwarded_dsr"].packets, 3000);
    assert_eq!(stats.events["flow_miss"].packets, 3000);
    let text = stats::render(&stats);
    assert!(text.contains("no skew"), "{text}");
}

/// Test that the expected share follows the weights: with 1:1:8 the heavy backend holds about
/// 80% of the table, and a spread sample's observed shares follow it without a flag.
#[test]
fn stats_expected_share_follows_weights() {
    require_privileges!();
    let mut live = LiveXlb::new("weights");
    live.apply(&[("198.18.0.10", 1), ("198.18.0.11", 1), ("198.18.0.12", 8)]);
    live.send_syns(20_000..23_000);
    let stats = stats::read(&live.pin_path, None, 1.5).expect("stats");
    let backends = &stats.vips[0].backends;
    let shares: Vec<f64> = backends.iter().map(|b| b.expected_share).collect();
    assert!((shares[2] - 0.8).abs() < 0.01, "{shares:?}");
    assert!((shares[0] - 0.1).abs() < 0.01, "{shares:?}");
    assert_eq!(backends[2].weight, 8);
    for backend in backends {
        assert!(
            (backend.observed_share - backend.expected_share).abs() < 0.02,
            "{backend:?}"
        );
    }
    assert_eq!(stats.skewed_backends, 0);
}

/// Test that 300 new flows picked to land on one backend flag it `over` and the others
/// `under`, and that new flows to a backend the table no longer gives a slot (weight set to 0
/// after it got them) flag it `unexpected`.
#[test]
fn stats_flag_skewed_and_unexpected_backends() {
    require_privileges!();
    let (mut live, vip) = LiveXlb::equal("skew");
    let target = vip.backend_ids[0];
    let chosen: Vec<u16> = (30_000..u16::MAX)
        .filter(|sport| predicted(&vip, *sport) == target)
        .take(300)
        .collect();
    assert_eq!(chosen.len(), 300);
    live.send_syns(chosen);
    let stats = stats::read(&live.pin_path, None, 1.5).expect("stats");
    let report = &stats.vips[0];
    let skews: Vec<(u32, u64, Option<Skew>)> = report
        .backends
        .iter()
        .map(|b| (b.id, b.new_flows, b.skew))
        .collect();
    assert_eq!(
        skews,
        [
            (target, 300, Some(Skew::Over)),
            (vip.backend_ids[1], 0, Some(Skew::Under)),
            (vip.backend_ids[2], 0, Some(Skew::Under)),
        ]
    );
    assert_eq!(report.backends[0].observed_share, 1.0);
    assert_eq!(stats.skewed_backends, 3);
    assert!(
        stats::render(&stats).contains("3 backend(s) skewed"),
        "{}",
        stats::render(&stats)
    );

    // The first backend keeps its 300 new flows but leaves the table: judged since the change,
    // those flows are history, not skew.
    let out = live.apply(&[("198.18.0.10", 0), ("198.18.0.11", 1), ("198.18.0.12", 1)]);
    assert!(!out.vips[0].table.contains(&target));
    let stats = stats::read(&live.pin_path, None, 1.5).expect("stats");
    let first = &stats.vips[0].backends[0];
    assert_eq!(first.expected_share, 0.0);
    assert_eq!((first.new_flows, first.window_new_flows), (300, 0));
    assert_eq!(first.skew, None, "{first:?}");
    // Without a recorded change (share bases cleared, as pins from before they existed) the
    // lifetime counters are all there is, and flows to a backend without slots are unexpected.
    let mut pinned = pins::open(&live.pin_path).expect("pins");
    let mut bases = lb_userspace::maps::array::<lb_common::meta::ShareBase>(
        &mut pinned,
        lb_common::map_names::SHARE_BASE,
    )
    .expect("share bases");
    for id in &vip.backend_ids {
        bases
            .set(*id, &lb_common::meta::ShareBase::default(), 0)
            .expect("clear");
    }
    let stats = stats::read(&live.pin_path, None, 1.5).expect("stats");
    let first = &stats.vips[0].backends[0];
    assert_eq!(first.skew, Some(Skew::Unexpected), "{first:?}");
}

/// Test that with an interval the rates are the traffic between the two samples: above zero
/// while another thread sends SYNs, exactly zero when nothing is sent.
#[test]
fn stats_interval_rates_follow_traffic_between_samples() {
    require_privileges!();
    let mut live = LiveXlb::new("rates");
    live.apply(&EQUAL);
    let mut pinned = pins::open(&live.pin_path).expect("pins");
    let interval = Duration::from_millis(200);
    let stop = AtomicBool::new(false);
    let (busy, sent) = std::thread::scope(|scope| {
        let ebpf = &mut live.ebpf;
        let stop = &stop;
        let sender = scope.spawn(move || {
            let program = object::xdp_program(ebpf, PROGRAM_NAME).expect("program");
            let mut sent = 0u64;
            // From before the first sample until after the second: some SYNs fall between.
            while !stop.load(Ordering::Relaxed) {
                let sport = 40_000 + (sent % 20_000) as u16;
                let outcome =
                    testrun::run(program, &packets::tcp_syn(&flow(sport))).expect("test run");
                assert_eq!(Verdict::from_code(outcome.code), Some(Verdict::Tx));
                sent += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            sent
        });
        let stats = stats::collect(&mut pinned, Some(interval), 1.5);
        stop.store(true, Ordering::Relaxed);
        (stats.expect("stats"), sender.join().expect("sender"))
    });
    let seconds = busy.interval_seconds.expect("interval");
    assert!(seconds >= 0.2, "{seconds}");
    let vip = &busy.vips[0];
    let rates = vip.rates.expect("VIP rates");
    assert!(rates.packets_per_second > 0.0, "{rates:?}");
    assert!(rates.new_flows_per_second > 0.0, "{rates:?}");
    assert!(rates.bytes_per_second > 0.0, "{rates:?}");
    assert!(
        rates.packets_per_second * seconds <= sent as f64 + 0.5,
        "{rates:?}, {sent} sent"
    );
    let backend_flows: f64 = vip
        .backends
        .iter()
        .map(|b| b.rates.expect("backend rates").new_flows_per_second)
        .sum();
    assert!(
        (backend_flows - rates.new_flows_per_second).abs() < 1e-6,
        "{vip:?}"
    );
    assert!(
        stats::render(&busy).contains("packets/s"),
        "{}",
        stats::render(&busy)
    );

    let idle = stats::collect(&mut pinned, Some(interval), 1.5).expect("stats");
    let vip = &idle.vips[0];
    let zero = |r: stats::Rates| {
        r.packets_per_second == 0.0 && r.bytes_per_second == 0.0 && r.new_flows_per_second == 0.0
    };
    assert!(zero(vip.rates.expect("VIP rates")), "{vip:?}");
    for backend in &vip.backends {
        assert!(zero(backend.rates.expect("backend rates")), "{backend:?}");
    }
    assert!(vip.packets > 0, "totals still count the earlier traffic");
}

/// Test that the real `xlb status --output json` and `xlb stats --output json` each print one
/// JSON document with the documented fields.
#[test]
fn status_and_stats_json_have_the_documented_fields() {
    require_privileges!();
    let mut live = LiveXlb::new("json");
    live.apply(&EQUAL);
    live.send_syns(50_000..50_200);
    let (code, status) = live.xlb_json(&["status"]);
    assert_eq!(code, Some(0), "{status}");
    assert_fields(
        &status,
        "status",
        "pin_path program_pinned link_pinned ifindex interface attach_mode \
         generation applied_at applied_at_unix config_hash capacity vips",
    );
    assert_eq!(status["generation"], 1);
    assert_eq!(status["interface"], serde_json::Value::Null);
    assert_eq!(status["capacity"]["table_slots"], TEST_CAPACITY.table_slots);
    let vip = &status["vips"][0];
    assert_fields(
        vip,
        "status VIP",
        "vip id forwarding hash table_size active_copy backends fingerprint",
    );
    assert_eq!(vip["vip"], "198.18.1.10:80/tcp");
    assert_eq!(vip["hash"], "5-tuple");
    assert_eq!(vip["backends"]["active"], 3);
    assert_eq!(vip["fingerprint"].as_str().map(str::len), Some(16));

    let (code, stats) = live.xlb_json(&["stats"]);
    assert_eq!(code, Some(0), "{stats}");
    assert_fields(
        &stats,
        "stats",
        "interval_seconds skew_factor skew_min_new_flows skewed_backends vips \
         reasons events",
    );
    assert_eq!(stats["reasons"]["forwarded_dsr"]["packets"], 200);
    assert_eq!(stats["events"]["flow_miss"]["packets"], 200);
    let vip = &stats["vips"][0];
    assert_fields(
        vip,
        "stats VIP",
        "vip id forwarding table_size packets bytes new_flows rates backends",
    );
    assert_eq!(vip["new_flows"], 200);
    let backend = &vip["backends"][0];
    assert_fields(
        backend,
        "stats backend",
        "id address state weight packets bytes new_flows observed_share \
         expected_share skew rates",
    );
    assert_eq!(backend["address"], "198.18.0.10");
    assert_eq!(backend["state"], "active");
    assert!(backend["expected_share"].as_f64().is_some());
}
