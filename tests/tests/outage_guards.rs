//! Kernel-backed tests of the outage guards on live state and real clients: the backend verbs
//! refuse a change that leaves one server with the VIP, `audit` finds a VIP whose new flows all
//! go to one server however it got there, `plan` shows what the kernel does with a real client
//! sample (a list or a pcap capture), and `stats` judges shares since the table changed.

use std::path::PathBuf;

use lb_userspace::{
    apply,
    audit::{self, Kind, Severity},
    backend::{BackendAction, Refused, change, parse_vip},
    config::HostEnvironment,
    exit,
    plan::{self, Options, Sample, clients},
    stats,
};
use xlb_tests::{
    daemon_lab::host_verb,
    demo::xlb_binary,
    live::{LiveXlb, VIP, change_backend, config_text},
    packets::{self, Flow},
    require_privileges,
};

const WEB: &str = "198.18.1.10:80/tcp";

/// `xlb ARGS --pin-path PIN` with the real binary: (exit code, stdout, stderr).
fn xlb(live: &LiveXlb, args: &[&str]) -> (Option<i32>, String, String) {
    let out = host_verb(&xlb_binary().expect("xlb binary"), &live.pin_path, args).expect("run xlb");
    (out.code, out.stdout, out.stderr)
}

/// The live audit's findings of `kind` (without a config file).
fn live_findings(live: &LiveXlb, kind: Kind) -> Vec<audit::Finding> {
    let report = audit::audit(None, Some(&live.pin_path), &HostEnvironment).expect("audit");
    report
        .findings
        .into_iter()
        .filter(|f| f.kind == kind)
        .collect()
}

/// Test that disabling backends until one server is left with more than alerts.max_share of
/// the VIP is refused (exit 1, the server named, nothing written) by the library and the real
/// `xlb backend` verb, that --force makes the change, and that the live audit then reports
/// the outage (exit 1) naming the server that takes everything.
#[test]
fn disabling_down_to_one_server_is_refused_unless_forced() {
    require_privileges!();
    let mut live = LiveXlb::new("guard-disable");
    let file = live.config_file("web.toml", &config_text(&xlb_tests::live::EQUAL));
    live.apply_file(&file, &apply::Options::default())
        .expect("apply");
    let vip = parse_vip(WEB).expect("vip");
    change_backend(&mut live.ebpf, &vip, "198.18.0.11", BackendAction::Disable)
        .expect("two of three left: 50% each is allowed");
    assert!(live_findings(&live, Kind::Outage).is_empty());

    let before = live.snapshot();
    let err = change_backend(&mut live.ebpf, &vip, "198.18.0.12", BackendAction::Drain)
        .expect_err("draining the second leaves 198.18.0.10 with everything");
    let refused = err.downcast_ref::<Refused>().expect("a refusal");
    assert!(
        refused.0.contains("198.18.0.10") && refused.0.contains("100%"),
        "{refused}"
    );
    assert_eq!(live.snapshot(), before, "a refused change writes nothing");

    let (code, _, stderr) = xlb(&live, &["backend", "disable", WEB, "198.18.0.12"]);
    assert_eq!(code, Some(i32::from(exit::INVALID)), "{stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(live.snapshot(), before);

    let (code, stdout, stderr) = xlb(
        &live,
        &["backend", "disable", WEB, "198.18.0.12", "--force"],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let outage = live_findings(&live, Kind::Outage);
    assert_eq!(outage.len(), 1, "{outage:?}");
    assert_eq!(outage[0].severity, Severity::Drift);
    assert_eq!(outage[0].backend.as_deref(), Some("198.18.0.10"));
    let (code, stdout, _) = xlb(&live, &["audit"]);
    assert_eq!(code, Some(i32::from(exit::INVALID)), "{stdout}");
    assert!(stdout.contains("outage"), "{stdout}");

    // Bringing one back lowers the share: allowed without --force.
    change_backend(&mut live.ebpf, &vip, "198.18.0.11", BackendAction::Enable).expect("enable");
    assert!(live_findings(&live, Kind::Outage).is_empty());
}

/// Test that `apply` judges the change with the live state kept: a config that is fine on
/// paper (two equal backends in the table) but leaves one server with every new flow because
/// the other is disabled live is refused (nothing written, exit 1 from the real verb) unless
/// --force, and `plan` fails the same way.
#[test]
fn apply_that_leaves_one_server_with_the_live_disables_is_refused() {
    require_privileges!();
    let mut live = LiveXlb::new("guard-apply");
    let equal = live.config_file("equal.toml", &config_text(&xlb_tests::live::EQUAL));
    let options = apply::Options::default();
    live.apply_file(&equal, &options).expect("apply");
    let vip = parse_vip(WEB).expect("vip");
    change_backend(&mut live.ebpf, &vip, "198.18.0.11", BackendAction::Disable)
        .expect("disable one of three");
    let before = live.snapshot();
    let paper = live.config_file(
        "paper.toml",
        &config_text(&[("198.18.0.10", 1), ("198.18.0.11", 1), ("198.18.0.12", 0)]),
    );
    let report = live.apply_file(&paper, &options).expect("apply");
    assert!(!report.applied, "{report:?}");
    let why = report.refused.as_deref().unwrap_or_default();
    assert!(
        why.contains("198.18.0.10") && why.contains("--force"),
        "{why}"
    );
    assert_eq!(live.snapshot(), before);
    let plan = plan::plan_with(
        &paper,
        &HostEnvironment,
        &live.live(),
        &Options {
            sample: Sample {
                flows: 100,
                seed: plan::DEFAULT_SEED,
            },
            clients: clients::Clients::Synthetic,
            clients_source: None,
            accept: options.clone(),
            canary: None,
        },
    )
    .expect("plan");
    assert_eq!(plan.code, exit::INVALID, "{}", plan::render_text(&plan));
    let paper_path = paper.to_str().unwrap();
    let (code, stdout, _) = xlb(&live, &["apply", paper_path]);
    assert_eq!(code, Some(i32::from(exit::INVALID)), "{stdout}");
    let (code, stdout, stderr) = xlb(&live, &["apply", paper_path, "--force"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
}

/// Test that the live audit finds an outage forced past validation (`--override XLB003`)
/// (against the file, the file's own XLB003 fails the audit), and live entries that are one server (same MAC on dsr)
/// written behind xlb's validation.
#[test]
fn audit_finds_forced_outages_and_one_server_twice() {
    require_privileges!();
    let mut live = LiveXlb::new("guard-audit");
    let forced = live.config_file(
        "forced.toml",
        &config_text(&[("198.18.0.10", 1), ("198.18.0.11", 0), ("198.18.0.12", 0)]),
    );
    let report = live
        .apply_file(
            &forced,
            &apply::Options {
                overrides: vec!["XLB003".into()],
                ..apply::Options::default()
            },
        )
        .expect("apply");
    assert!(report.applied, "{report:?}");
    let report = audit::audit(None, Some(&live.pin_path), &HostEnvironment).expect("audit");
    let outage: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind == Kind::Outage)
        .collect();
    assert_eq!(outage.len(), 1, "{:?}", report.findings);
    assert_eq!(outage[0].backend.as_deref(), Some("198.18.0.10"));
    assert_eq!(report.code, exit::INVALID);
    // Against the file, the config itself is the finding: XLB003, exit 1.
    let report =
        audit::audit(Some(&forced), Some(&live.pin_path), &HostEnvironment).expect("audit");
    assert_eq!(report.code, exit::INVALID);
    assert!(
        report.diagnostics.iter().any(|d| d.rule == "XLB003"),
        "{:?}",
        report.diagnostics
    );

    // Validation refuses one server written twice (XLB005, an error no --override lets
    // through); another writer of the maps does not ask: write such a state directly.
    let mut desired = lb_userspace::rollout::Desired::from_live(
        &live.snapshot(),
        &lb_userspace::capacity::Capacity::read(&live.ebpf).expect("capacity"),
    );
    for backend in &mut desired.vips[0].backends {
        backend.weight = 1;
        backend.mac = [2, 0, 0, 0, 3, 0];
    }
    lb_userspace::rollout::apply(&mut live.ebpf, &desired).expect("apply");
    let same = live_findings(&live, Kind::SameServer);
    assert_eq!(same.len(), 2, "{same:?}");
    assert!(!live_findings(&live, Kind::Outage).is_empty());
}

/// A client list or capture file in a temporary directory of `live`'s.
fn clients_file(live: &LiveXlb, name: &str, bytes: &[u8]) -> PathBuf {
    let path = live.config_file(name, "");
    std::fs::write(&path, bytes).expect("write");
    path
}

/// A pcap file (Ethernet) holding `frames`.
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0u8; 8]);
    out.extend(65_535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    for (i, frame) in frames.iter().enumerate() {
        out.extend((i as u32).to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend(frame);
    }
    out
}

/// Test that `plan` with a real client sample reports what the kernel does with it: a
/// source-hashed VIP whose clients all come through one NAT address sends every sample flow
/// to one server (an outage, exit 1, the server named), from a client list and from a pcap
/// capture alike, while many clients spread and random synthetic ones never show it.
#[test]
fn plan_with_real_clients_shows_a_source_hash_outage() {
    require_privileges!();
    let live = LiveXlb::new("guard-plan");
    let text = config_text(&xlb_tests::live::EQUAL).replace(
        "protocol = \"tcp\"\n",
        "protocol = \"tcp\"\nhash = \"source\"\nsource_hash_checked = true\n",
    );
    let file = live.config_file("source.toml", &text);
    let plan = |clients: clients::Clients| {
        plan::plan_with(
            &file,
            &HostEnvironment,
            &live.live(),
            &Options {
                sample: Sample {
                    flows: 600,
                    seed: plan::DEFAULT_SEED,
                },
                clients,
                clients_source: Some("the sample".into()),
                accept: apply::Options::default(),
                canary: None,
            },
        )
        .expect("plan")
    };
    let synthetic = plan(clients::Clients::Synthetic);
    assert_eq!(
        synthetic.code,
        exit::OK,
        "{}",
        plan::render_text(&synthetic)
    );

    let nat = clients_file(&live, "nat.txt", b"# one NAT gateway\n198.18.7.1 600\n");
    let report = plan(clients::read_addresses(&nat).expect("clients"));
    assert_eq!(report.code, exit::INVALID, "{}", plan::render_text(&report));
    assert_eq!(report.outages.len(), 1);
    let server = &report.outages[0].backend;
    let kernel = report.vips[0].kernel.as_ref().expect("kernel check");
    assert!(kernel.agrees && kernel.flows == 600, "{kernel:?}");
    assert_eq!(
        report.vips[0]
            .servers
            .iter()
            .filter(|s| s.count > 0)
            .count(),
        1
    );
    let text = plan::render_text(&report);
    assert!(
        text.contains("OUTAGE") && text.contains(server.as_str()),
        "{text}"
    );
    assert!(!text.contains("makes this live"), "{text}");

    let many: String = (1..=200)
        .map(|i| format!("198.18.{}.{}\n", 8 + i / 250, i % 250 + 1))
        .collect();
    let spread = plan(clients::Clients::Addresses(
        many.lines().map(|a| (a.parse().unwrap(), 1)).collect(),
    ));
    assert_eq!(spread.code, exit::OK, "{}", plan::render_text(&spread));
    assert_eq!(
        spread.vips[0]
            .servers
            .iter()
            .filter(|s| s.count > 0)
            .count(),
        3
    );

    let frames: Vec<Vec<u8>> = (0..50)
        .map(|i| packets::tcp_syn(&Flow::new("198.18.7.1", VIP, 40_000 + i, 80)))
        .chain([packets::tcp_syn(&Flow::new(
            "198.18.7.9",
            "198.18.1.99",
            1,
            80,
        ))])
        .collect();
    let capture = clients_file(&live, "nat.pcap", &pcap(&frames));
    let report = plan(clients::read_pcap(&capture).expect("pcap"));
    assert_eq!(report.code, exit::INVALID, "{}", plan::render_text(&report));
    let kernel = report.vips[0].kernel.as_ref().expect("kernel check");
    assert_eq!(
        kernel.flows, 50,
        "the flow to another address is not the VIP's"
    );

    // The real command line: the same verdict and exit code.
    let (code, stdout, _) = xlb(
        &live,
        &[
            "plan",
            file.to_str().unwrap(),
            "--clients",
            nat.to_str().unwrap(),
            "--flows",
            "300",
        ],
    );
    assert_eq!(code, Some(i32::from(exit::INVALID)), "{stdout}");
    assert!(stdout.contains("OUTAGE"), "{stdout}");
}

/// Test that `stats` judges shares since the VIP's table last changed: after two backends are
/// disabled (forced), the one left takes every new flow and is flagged dominant, not "under"
/// for the flows counted before the change.
#[test]
fn stats_judge_shares_since_the_table_changed() {
    require_privileges!();
    let mut live = LiveXlb::new("guard-stats");
    live.apply(&xlb_tests::live::EQUAL);
    live.send_syns(10_000..10_600);
    let vip = parse_vip(WEB).expect("vip");
    for backend in ["198.18.0.11", "198.18.0.12"] {
        change(
            &mut live.ebpf,
            &vip,
            backend.parse().unwrap(),
            BackendAction::Disable,
            true,
        )
        .expect("disable");
    }
    live.send_syns(20_000..20_300);
    let stats = stats::collect(&mut live.ebpf, None, 1.5).expect("stats");
    let web = &stats.vips[0];
    assert!(
        matches!(web.window, stats::Window::SinceChange { .. }),
        "{:?}",
        web.window
    );
    assert_eq!(web.window_new_flows, 300);
    assert_eq!(web.new_flows, 900);
    let survivor = &web.backends[0];
    assert_eq!(survivor.observed_share, 1.0);
    assert_eq!(survivor.skew, None, "{web:?}");
    assert!(web.backends.iter().all(|b| b.skew.is_none()), "{web:?}");
    let dominant = web.dominant.as_ref().expect("dominant");
    assert_eq!(dominant.server.to_string(), "198.18.0.10");
    let text = stats::render(&stats);
    assert!(text.contains("since the table changed"), "{text}");
}
