//! Kernel-backed tests of `xlb plan` against a pinned xlb: the diff against the live state,
//! expected shares before and after, the share of new flows that would move, the kernel check
//! through a scratch program, the outage refusal, and that nothing live changes.

use std::path::Path;

use lb_common::service::BACKEND_DRAINED;
use lb_userspace::{
    capacity::Capacity,
    config::HostEnvironment,
    counters::Totals,
    exit,
    plan::{Change, Options, PlanReport, Sample, VipPlan, clients::Clients, plan_file, plan_with},
    rollout::{self, Desired},
    steering,
};
use xlb_tests::{
    live::{LiveXlb, assert_fields, config_text},
    require_privileges,
};

/// Kernel shares of a 10,000-flow sample stay this close to the expected share (about six
/// standard deviations of a binomial at p = 1/3).
const TOLERANCE: f64 = 0.03;

fn plan(live: &LiveXlb, path: &Path) -> PlanReport {
    plan_file(path, &HostEnvironment, &live.live(), &Sample::default()).expect("plan")
}

fn only_vip(report: &PlanReport) -> &VipPlan {
    assert_eq!(report.vips.len(), 1, "{report:#?}");
    &report.vips[0]
}

/// Asserts that every backend the kernel sampled got close to its expected share.
fn assert_kernel_matches_expected(vip: &VipPlan) {
    let kernel = vip.kernel.as_ref().expect("kernel check");
    assert!(kernel.agrees, "{kernel:#?}");
    assert_eq!(kernel.agreed, kernel.flows);
    assert_eq!(kernel.flows, 10_000);
    for backend in &vip.backends {
        let observed = backend.kernel_share.expect("kernel share");
        assert!(
            (observed - backend.share_after).abs() <= TOLERANCE,
            "{}: kernel {observed:.4}, expected {:.4}",
            backend.address,
            backend.share_after
        );
    }
}

const THREE: [(&str, u32); 3] = [("198.18.0.10", 1), ("198.18.0.11", 1), ("198.18.0.12", 1)];

/// Test that planning the config that is already live shows no change, no moved flows, and
/// that the kernel sends 10,000 sample flows to three equal backends in thirds, each flow
/// where userspace predicted.
#[test]
fn plan_of_the_live_config_changes_nothing() {
    require_privileges!();
    let mut live = LiveXlb::new("plan-same");
    let path = live.apply_config("same.toml", &config_text(&THREE));
    let report = plan(&live, &path);
    assert_eq!(report.code, exit::OK);
    assert!(report.live.as_ref().expect("live").loaded);
    let vip = only_vip(&report);
    assert_eq!(vip.change, Change::Unchanged, "{vip:#?}");
    assert!(vip.changes.is_empty());
    assert_eq!(vip.moved_share, Some(0.0));
    assert!(!vip.moved_estimated);
    assert_eq!(vip.backends.len(), 3);
    for backend in &vip.backends {
        assert_eq!(backend.change, Change::Unchanged);
        assert_eq!(backend.share_before, backend.share_after);
        assert!(
            (backend.share_after - 1.0 / 3.0).abs() < 0.01,
            "{backend:#?}"
        );
    }
    assert_kernel_matches_expected(vip);
    assert_eq!(report.summary.vips_unchanged, 1);
    assert_eq!(report.summary.flows_agreed, 10_000);
    assert!(report.global.is_empty(), "{:?}", report.global);
}

/// Test that removing one of four equal backends shows it removed with its share going to 0,
/// about a quarter of new flows moving (Maglev's minimal disruption), the other three at a
/// third each, and the kernel sending nothing to the removed one.
#[test]
fn plan_removing_one_of_four_backends_moves_a_quarter() {
    require_privileges!();
    let mut live = LiveXlb::new("plan-remove");
    let four = [
        ("198.18.0.10", 1),
        ("198.18.0.11", 1),
        ("198.18.0.12", 1),
        ("198.18.0.13", 1),
    ];
    live.apply_config("four.toml", &config_text(&four));
    let three = live.config_file("three.toml", &config_text(&four[..3]));
    let report = plan(&live, &three);
    assert_eq!(report.code, exit::OK);
    let vip = only_vip(&report);
    assert_eq!(vip.change, Change::Changed);
    let removed: Vec<_> = vip
        .backends
        .iter()
        .filter(|b| b.change == Change::Removed)
        .collect();
    assert_eq!(removed.len(), 1);
    let removed = removed[0];
    assert_eq!(removed.address.to_string(), "198.18.0.13");
    assert!((removed.share_before - 0.25).abs() < 0.01);
    assert_eq!(removed.share_after, 0.0);
    assert_eq!(removed.kernel_flows, Some(0));
    let moved = vip.moved_share.expect("moved share");
    assert!((moved - 0.25).abs() <= 0.03, "moved {moved}");
    assert!(!vip.moved_estimated);
    for backend in vip.backends.iter().filter(|b| b.change != Change::Removed) {
        assert_eq!(backend.change, Change::Unchanged);
        assert!((backend.share_before - 0.25).abs() < 0.01, "{backend:#?}");
        assert!(
            (backend.share_after - 1.0 / 3.0).abs() < 0.01,
            "{backend:#?}"
        );
    }
    assert_kernel_matches_expected(vip);
    assert_eq!(report.summary.backends_removed, 1);
}

/// Test that a config with all weight on one backend is refused (INVALID) before anything
/// else happens, and that the report names XLB003 and the backend and says every new flow
/// would go to it.
#[test]
fn plan_refuses_all_weight_on_one_backend() {
    require_privileges!();
    let mut live = LiveXlb::new("plan-outage");
    live.apply_config("good.toml", &config_text(&THREE));
    let before = live.snapshot();
    let outage = live.config_file(
        "outage.toml",
        &config_text(&[("198.18.0.10", 1), ("198.18.0.11", 0), ("198.18.0.12", 0)]),
    );
    let report = plan(&live, &outage);
    assert_eq!(report.code, exit::INVALID);
    assert!(!report.valid);
    assert!(report.vips.is_empty() && report.live.is_none() && report.sample.is_none());
    assert_eq!(report.outages.len(), 1);
    assert_eq!(report.outages[0].rule, "XLB003");
    assert_eq!(report.outages[0].backend, "198.18.0.10");
    assert_eq!(report.outages[0].vip, "web");
    let text = rendered(&report);
    assert!(text.contains("XLB003"), "{text}");
    assert!(text.contains("EVERY new flow"), "{text}");
    assert!(text.contains("ONE server, 198.18.0.10"), "{text}");
    assert!(text.contains("REFUSED"), "{text}");
    assert_eq!(live.snapshot(), before);
}

/// Test that a 1:1:8 config is valid with the XLB002 warning shown on the heavy backend, that
/// the plan fails as `apply` would refuse it (unless warnings are allowed, as for apply), and
/// that the kernel sends that backend about 80% of the new flows.
#[test]
fn plan_of_a_dominant_backend_warns_and_shows_its_80_percent() {
    require_privileges!();
    let live = LiveXlb::new("plan-dominant");
    let text = config_text(&[("198.18.0.10", 1), ("198.18.0.11", 1), ("198.18.0.12", 8)])
        .replace("max_backend_share = 1.0", "max_backend_share = 0.5");
    let path = live.config_file("dominant.toml", &text);
    let refused = plan(&live, &path);
    assert_eq!(
        refused.code,
        exit::INVALID,
        "apply would refuse the warning"
    );
    let text = rendered(&refused);
    assert!(
        text.contains("would refuse") && !text.contains("makes this live"),
        "{text}"
    );
    let report = plan_with(
        &path,
        &HostEnvironment,
        &live.live(),
        &Options {
            sample: Sample::default(),
            clients: Clients::Synthetic,
            clients_source: None,
            accept: lb_userspace::apply::Options {
                allow_warnings: true,
                ..lb_userspace::apply::Options::default()
            },
            canary: None,
        },
    )
    .expect("plan");
    assert_eq!(report.code, exit::OK, "allowed warnings do not fail a plan");
    assert!(report.valid);
    assert_eq!(report.warnings, 1);
    assert_eq!(report.diagnostics[0].rule, "XLB002");
    let vip = only_vip(&report);
    let heavy = vip
        .backends
        .iter()
        .find(|b| b.address.to_string() == "198.18.0.12")
        .expect("heavy backend");
    assert_eq!(heavy.warnings, ["XLB002"]);
    assert!((heavy.share_after - 0.8).abs() < 0.01, "{heavy:#?}");
    let kernel = heavy.kernel_share.expect("kernel share");
    assert!((kernel - 0.8).abs() <= TOLERANCE, "kernel {kernel}");
    assert_kernel_matches_expected(vip);
    let text = rendered(&report);
    assert!(text.contains("WARNING"), "{text}");
    assert!(
        text.contains("198.18.0.12 would take 80.0% of the new flows (XLB002"),
        "{text}"
    );
}

/// Test that with nothing running the plan says so and shows every VIP and backend added,
/// the kernel check still running on a scratch program of the default capacity.
#[test]
fn plan_with_nothing_running_adds_everything() {
    require_privileges!();
    let live = LiveXlb::new("plan-empty");
    let path = live.config_file("new.toml", &config_text(&THREE));
    let report =
        plan_file(&path, &HostEnvironment, &live.nowhere(), &Sample::default()).expect("plan");
    assert_eq!(report.code, exit::OK);
    let state = report.live.as_ref().expect("live");
    assert!(!state.loaded);
    assert_eq!(state.generation, None);
    assert_eq!(state.capacity.vips, 64, "default capacity");
    let vip = only_vip(&report);
    assert_eq!(vip.change, Change::Added);
    assert_eq!(vip.moved_share, None);
    assert!(vip.backends.iter().all(|b| b.change == Change::Added));
    assert!(vip.backends.iter().all(|b| b.share_before == 0.0));
    assert_kernel_matches_expected(vip);
    assert_eq!(report.summary.vips_added, 1);
    assert_eq!(report.summary.backends_added, 3);
    let text = rendered(&report);
    assert!(text.contains("nothing is loaded"), "{text}");
    assert!(text.contains("+ vip \"web\""), "{text}");
    assert!(text.contains("+ 198.18.0.10"), "{text}");
}

/// Test that a plan changes nothing live: VIP entries, backends, config, filter, meta, the
/// active tables and the counters are byte for byte what they were, even for a plan that
/// changes weights, table size and VIPs.
#[test]
fn plan_leaves_the_live_state_unchanged() {
    require_privileges!();
    let mut live = LiveXlb::new("plan-untouched");
    live.apply_config("live.toml", &config_text(&THREE));
    let read = |live: &mut LiveXlb| {
        let snapshot = live.snapshot();
        let tables: Vec<Vec<u32>> = snapshot
            .vips
            .iter()
            .map(|(_, vip)| snapshot.active_table(&live.ebpf, vip).expect("table"))
            .collect();
        let copies: Vec<Vec<u32>> = snapshot
            .vips
            .iter()
            .flat_map(|(_, vip)| vip.tables)
            .map(|base| steering::read_table(&live.ebpf, base, 65_537).expect("copy"))
            .collect();
        let totals = Totals::read(&live.ebpf).expect("counters");
        (snapshot, tables, copies, totals)
    };
    let before = read(&mut live);
    let text = config_text(&[("198.18.0.10", 2), ("198.18.0.11", 1), ("198.18.0.14", 1)]).replace(
        "protocol = \"tcp\"\n",
        "protocol = \"tcp\"\ntable_size = 307\n",
    ) + "\n[[vip]]\nname = \"dns\"\naddress = \"198.18.1.20\"\nport = 53\nprotocol = \"udp\"\n\
           \n[[vip.backend]]\naddress = \"198.18.0.20\"\nmac = \"02:00:00:00:04:00\"\n";
    let path = live.config_file("changed.toml", &text);
    let report = plan(&live, &path);
    assert_eq!(report.code, exit::OK, "{}", rendered(&report));
    assert_eq!(report.summary.vips_added, 1);
    assert_eq!(report.summary.vips_changed, 1);
    let after = read(&mut live);
    assert!(
        before.0 == after.0,
        "VIPs, backends, config, filter or meta changed"
    );
    assert!(before.1 == after.1, "an active table changed");
    assert!(before.2 == after.2, "a table copy changed");
    assert_eq!(before.3, after.3, "counters changed");
}

/// Test that `--output json` is one document with the documented fields, and that a plan
/// changing a table size and removing a VIP reports them (the moved share then estimated
/// from the sample, the removed VIP's flows all moving).
#[test]
fn plan_json_has_the_documented_fields() {
    require_privileges!();
    let mut live = LiveXlb::new("plan-json");
    let two_vips = config_text(&THREE)
        + "\n[[vip]]\nname = \"dns\"\naddress = \"198.18.1.20\"\nport = 53\nprotocol = \"udp\"\n\
           \n[[vip.backend]]\naddress = \"198.18.0.20\"\nmac = \"02:00:00:00:04:00\"\n";
    live.apply_config("two.toml", &two_vips);
    let text = config_text(&THREE).replace(
        "protocol = \"tcp\"\n",
        "protocol = \"tcp\"\ntable_size = 1031\n",
    );
    let path = live.config_file("one.toml", &text);
    let (code, document) = live.xlb_json(&["plan", path.to_str().expect("path")]);
    assert_eq!(code, Some(0), "{document:#}");
    assert_fields(
        &document,
        "plan JSON",
        "file code valid errors warnings diagnostics outages live global vips \
         sample summary",
    );
    assert_eq!(document["code"], 0);
    assert_eq!(document["live"]["loaded"], true);
    assert_eq!(document["live"]["generation"], 1);
    assert_eq!(document["sample"]["flows"], 10_000);
    let vips = document["vips"].as_array().expect("vips");
    assert_eq!(vips.len(), 2);
    let web = &vips[0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["vip"], "198.18.1.10:80/tcp");
    assert_eq!(web["change"], "changed");
    assert_eq!(web["changes"][0]["field"], "table_size");
    assert_eq!(web["changes"][0]["before"], "65537");
    assert_eq!(web["changes"][0]["after"], "1031");
    assert_eq!(web["moved_estimated"], true);
    // A new table size gives every flow a new slot in a new permutation: with three equal
    // backends about two thirds of new flows land elsewhere.
    let moved = web["moved_share"].as_f64().expect("moved share");
    assert!((moved - 2.0 / 3.0).abs() < 0.05, "moved {moved}");
    let backend = &web["backends"][0];
    assert_fields(
        backend,
        "plan backend",
        "address change weight mac share_before share_after kernel_flows \
         kernel_share warnings",
    );
    assert_eq!(backend["address"], "198.18.0.10");
    assert_eq!(web["kernel"]["agrees"], true);
    assert_eq!(web["kernel"]["agreed"], 10_000);
    assert_eq!(web["kernel"]["packet"], "tcp-syn");
    let dns = &vips[1];
    assert_eq!(dns["name"], serde_json::Value::Null);
    assert_eq!(dns["vip"], "198.18.1.20:53/udp");
    assert_eq!(dns["change"], "removed");
    assert_eq!(dns["moved_share"], 1.0);
    assert_eq!(dns["kernel"], serde_json::Value::Null);
    assert_eq!(dns["backends"][0]["change"], "removed");
    assert_eq!(document["summary"]["vips_removed"], 1);
    assert_eq!(document["summary"]["vips_changed"], 1);
}

/// Test that an IPv6 `ipip` VIP for every UDP port is checked too: flows to random ports
/// (none a more specific VIP claims) are tunnelled to the predicted backend, counted by outer
/// destination.
#[test]
fn plan_checks_an_ipip_port_zero_vip_in_the_kernel() {
    require_privileges!();
    let live = LiveXlb::new("plan-ipip");
    let text = "[global]\ninterface = \"lo\"\nipip_source_v6 = \"2001:db8::2\"\n\n\
        [[vip]]\nname = \"dns\"\naddress = \"2001:db8:1::10\"\nport = 53\nprotocol = \"udp\"\n\
        \n[[vip.backend]]\naddress = \"2001:db8::20\"\nmac = \"02:00:00:00:05:20\"\n\
        \n[[vip.backend]]\naddress = \"2001:db8::21\"\nmac = \"02:00:00:00:05:21\"\n\n\
        [[vip]]\nname = \"any\"\naddress = \"2001:db8:1::10\"\nport = 0\nprotocol = \"udp\"\n\
        forwarding = \"ipip\"\n\
        \n[[vip.backend]]\naddress = \"2001:db8::10\"\nmac = \"02:00:00:00:05:00\"\n\
        \n[[vip.backend]]\naddress = \"2001:db8::11\"\nmac = \"02:00:00:00:05:00\"\n";
    let path = live.config_file("ipip.toml", text);
    let report = plan(&live, &path);
    assert_eq!(report.code, exit::OK, "{}", rendered(&report));
    let any = &report.vips[1];
    assert_eq!(any.forwarding, "ipip");
    assert_eq!(any.kernel.as_ref().expect("kernel").packet, "udp");
    assert_kernel_matches_expected(any);
}

/// Test that a backend an operator drained stays out of the planned table, as `apply` keeps
/// the drain: replanning the live config moves nothing and shows the backend drained.
#[test]
fn plan_keeps_an_operator_drain() {
    require_privileges!();
    let mut live = LiveXlb::new("plan-drain");
    let path = live.apply_config("live.toml", &config_text(&THREE));
    let snapshot = live.snapshot();
    let capacity = Capacity::read(&live.ebpf).expect("capacity");
    let mut drained = Desired::from_live(&snapshot, &capacity);
    drained.vips[0].backends[1].operator = Some(BACKEND_DRAINED);
    rollout::apply(&mut live.ebpf, &drained).expect("drain");
    let report = plan(&live, &path);
    assert_eq!(report.code, exit::OK);
    let vip = only_vip(&report);
    assert_eq!(vip.change, Change::Unchanged, "{vip:#?}");
    assert_eq!(vip.moved_share, Some(0.0));
    let backend = &vip.backends[1];
    assert_eq!(backend.address.to_string(), "198.18.0.11");
    assert_eq!(backend.state, Some("drained"));
    assert_eq!((backend.share_before, backend.share_after), (0.0, 0.0));
    assert_eq!(backend.kernel_flows, Some(0));
    assert_kernel_matches_expected(vip);
}

/// The text report, as `xlb plan` prints it.
fn rendered(report: &PlanReport) -> String {
    lb_userspace::plan::render_text(report)
}
