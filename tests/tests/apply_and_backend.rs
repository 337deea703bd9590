//! Kernel-backed tests of the `apply` and `backend` verbs against a pinned xlb: a config file
//! becomes live, a bad one changes nothing, and drain/disable/enable act on established and
//! new flows as documented.

use std::path::Path;

use aya::Ebpf;
use lb_common::{PROGRAM_NAME, Verdict, service::BACKEND_DRAINED};
use lb_userspace::{
    apply::{ApplyReport, Options, apply_file},
    backend::{BackendAction, parse_vip},
    config::HostEnvironment,
    exit, object, pins, testrun,
};
use xlb_tests::{
    live::{LiveXlb, change_backend, config_text},
    packets::{self, Flow},
    require_privileges,
};

const BACKENDS: [(&str, u32); 3] = [("198.18.0.10", 1), ("198.18.0.11", 1), ("198.18.0.12", 1)];

/// The last byte of the MAC the kernel sent `packet` to (config_text MACs end in the index).
fn sent_to(ebpf: &mut Ebpf, packet: &[u8]) -> u8 {
    let program = object::xdp_program(ebpf, PROGRAM_NAME).expect("program");
    let outcome = testrun::run(program, packet).expect("test run");
    assert_eq!(Verdict::from_code(outcome.code), Some(Verdict::Tx));
    outcome.output[5]
}

/// Test that `apply` makes a valid config live (generation 1, then 2), and refuses a config
/// with an error or (without --allow-warnings) a warning, changing nothing.
#[test]
fn apply_verb_applies_valid_configs_and_refuses_others() {
    require_privileges!();
    let mut live = LiveXlb::new("apply");
    let good = live.config_file("good.toml", &config_text(&BACKENDS));
    let report = live.apply_file(&good, &Options::default()).expect("apply");
    assert!(report.applied, "{report:?}");
    assert_eq!(report.generation, Some(1));
    let again = live.apply_file(&good, &Options::default()).expect("apply");
    assert_eq!(again.generation, Some(2));

    let outage = live.config_file(
        "outage.toml",
        &config_text(&[("198.18.0.10", 1), ("198.18.0.11", 0), ("198.18.0.12", 0)]),
    );
    let overriding = Options {
        overrides: vec!["XLB003".into()],
        ..Options::default()
    };
    let (refused, forced) = refused_unless(&mut live, &outage, &overriding);
    assert!(
        refused.diagnostics.iter().any(|d| d.contains("XLB003")),
        "{refused:?}"
    );
    assert!(
        forced.applied,
        "--override XLB003 forces the outage config live: {forced:?}"
    );
    assert!(
        forced.diagnostics.iter().any(|d| d.contains("overridden")),
        "{forced:?}"
    );
    live.apply_file(&good, &Options::default()).expect("apply");
    let warned = live.config_file(
        "single.toml",
        &config_text(&[("198.18.0.10", 1)]).replace("min_backends = 1", "min_backends = 2"),
    );
    let allowing = Options {
        allow_warnings: true,
        ..Options::default()
    };
    let (_, allowed) = refused_unless(&mut live, &warned, &allowing);
    assert!(allowed.applied);
}

/// Applies `file` with the default options, which must refuse it and change nothing, then
/// with `options`; returns both reports.
fn refused_unless(
    live: &mut LiveXlb,
    file: &Path,
    options: &Options,
) -> (ApplyReport, ApplyReport) {
    let before = live.snapshot();
    let refused = live.apply_file(file, &Options::default()).expect("apply");
    assert!(!refused.applied, "refused without {options:?}: {refused:?}");
    assert_eq!(live.snapshot(), before, "refused: unchanged");
    let report = live.apply_file(file, options).expect("apply");
    (refused, report)
}

/// Test that `apply` with nothing running fails with the not-loaded exit code.
#[test]
fn apply_verb_without_a_running_xlb_is_not_loaded() {
    require_privileges!();
    let live = LiveXlb::new("noapply");
    let good = live.config_file("good.toml", &config_text(&BACKENDS));
    let err = apply_file(
        &good,
        &HostEnvironment,
        &live.nowhere(),
        &Options::default(),
    )
    .expect_err("nothing runs");
    assert_eq!(exit::code_of(&err), exit::NOT_LOADED, "{err:#}");
}

/// Test that draining a backend keeps its established flows but gives it no new ones, that
/// disabling moves its established flows, that enabling brings it back, and that a later
/// apply of the config keeps an operator's drain.
#[test]
fn backend_drain_disable_enable() {
    require_privileges!();
    let mut live = LiveXlb::new("backend");
    let good = live.config_file("good.toml", &config_text(&BACKENDS));
    live.apply_file(&good, &Options::default()).expect("apply");
    let vip = parse_vip("198.18.1.10:80/tcp").expect("vip");
    // Establish one flow on each backend.
    let mut established = std::collections::BTreeMap::new();
    for sport in 20000..20100 {
        let flow = Flow::new("198.18.0.1", "198.18.1.10", sport, 80);
        let backend = sent_to(&mut live.ebpf, &packets::tcp_syn(&flow));
        established.entry(backend).or_insert(flow);
    }
    assert_eq!(established.len(), 3, "every backend got a flow");
    let drained_flow = established[&1];

    let mut maps = pins::open(&live.pin_path).expect("pins");
    change_backend(&mut maps, &vip, "198.18.0.11", BackendAction::Drain).expect("drain");
    let ack = packets::tcp_ack(&drained_flow, b"more");
    assert_eq!(
        sent_to(&mut live.ebpf, &ack),
        1,
        "established flow stays on the drained backend"
    );
    for sport in 30000..30300 {
        let syn = packets::tcp_syn(&Flow::new("198.18.0.1", "198.18.1.10", sport, 80));
        assert_ne!(
            sent_to(&mut live.ebpf, &syn),
            1,
            "a new flow reached the drained backend"
        );
    }
    // A re-apply of the same config keeps the operator's drain.
    live.apply_file(&good, &Options::default())
        .expect("re-apply");
    let snapshot = live.snapshot();
    assert!(
        snapshot
            .backends
            .iter()
            .any(|b| b.flags & BACKEND_DRAINED != 0),
        "drain kept"
    );

    change_backend(&mut maps, &vip, "198.18.0.11", BackendAction::Disable).expect("disable");
    assert_ne!(
        sent_to(&mut live.ebpf, &ack),
        1,
        "a disabled backend's flows move"
    );
    change_backend(&mut maps, &vip, "198.18.0.11", BackendAction::Enable).expect("enable");
    let back = (40000..40100).any(|sport| {
        let syn = packets::tcp_syn(&Flow::new("198.18.0.1", "198.18.1.10", sport, 80));
        sent_to(&mut live.ebpf, &syn) == 1
    });
    assert!(back, "the enabled backend takes new flows again");

    let err = change_backend(&mut maps, &vip, "198.18.0.99", BackendAction::Drain)
        .expect_err("unknown backend");
    assert!(
        format!("{err:#}").contains("198.18.0.10"),
        "lists the VIP's backends: {err:#}"
    );
    let other = parse_vip("198.18.1.11:80/tcp").unwrap();
    let err = change_backend(&mut maps, &other, "198.18.0.10", BackendAction::Drain)
        .expect_err("unknown VIP");
    assert!(format!("{err:#}").contains("xlb status"), "{err:#}");
}

/// Test that VIP arguments are parsed for both families and bad ones are explained.
#[test]
fn vip_argument_forms() {
    assert!(parse_vip("198.18.1.10:80/tcp").is_ok());
    assert!(parse_vip("[2001:db8:1::10]:443/udp").is_ok());
    for bad in [
        "198.18.1.10:80",
        "198.18.1.10/tcp",
        "198.18.1.10:80/sctp",
        "web",
    ] {
        let err = parse_vip(bad).expect_err(bad);
        assert!(
            format!("{err:#}").contains("ADDRESS:PORT/PROTOCOL"),
            "{bad}: {err:#}"
        );
    }
}
