//! Kernel-backed tests of `explain` and `audit`: explain names the backend the real XDP program
//! picks (by table and by flow-table entry), and audit finds each change made to the maps
//! behind xlb's back.

use std::{net::IpAddr, path::PathBuf};

use aya::maps::HashMap;
use lb_common::{
    Backend, FlowSlot, PROGRAM_NAME, Verdict, Vip, VipKey,
    address::Mac,
    flow_hash, map_names,
    service::{BACKEND_DRAINED, vip_filter_bit},
};
use lb_userspace::{
    audit::{self, Kind, Severity},
    capacity::Capacity,
    config::{self, HostEnvironment, Protocol},
    exit,
    explain::{self, Explanation, Query},
    flow_table, object, pins,
    rollout::{self, Desired},
    steering, testrun,
};
use xlb_tests::{
    live::{LiveXlb, assert_fields, config_text},
    packets::{self, Flow},
    require_privileges,
    steering::{flow_key, vip_key},
};

/// Three VIPs: `web` (dsr, 5-tuple, IPv4 TCP port 80, weights 1:2:1:3), `api` (ipip, source
/// hash, every TCP port of 198.18.1.20) and `dns6` (dsr, IPv6 UDP port 53).
fn three_vips() -> String {
    let web = config_text(&[
        ("198.18.0.10", 1),
        ("198.18.0.11", 2),
        ("198.18.0.12", 1),
        ("198.18.0.13", 3),
    ])
    .replace(
        "interface = \"lo\"\n",
        "interface = \"lo\"\nipip_source_v4 = \"198.18.0.2\"\n",
    );
    let mut text = web
        + "\n[[vip]]\nname = \"api\"\naddress = \"198.18.1.20\"\nport = 0\nprotocol = \"tcp\"\n\
           forwarding = \"ipip\"\nhash = \"source\"\ntable_size = 1031\n";
    for (i, address) in ["198.18.0.20", "198.18.0.21", "198.18.0.22"]
        .iter()
        .enumerate()
    {
        text += &format!(
            "\n[[vip.backend]]\naddress = \"{address}\"\nmac = \"02:00:00:00:04:{i:02x}\"\n\
             [vip.backend.health]\ncheck = \"tcp\"\nport = 22\n"
        );
    }
    text += "\n[[vip]]\nname = \"dns6\"\naddress = \"2001:db8:1::53\"\nport = 53\n\
             protocol = \"udp\"\ntable_size = 251\n";
    for (i, address) in ["2001:db8::53", "2001:db8::54"].iter().enumerate() {
        text += &format!(
            "\n[[vip.backend]]\naddress = \"{address}\"\nmac = \"02:00:00:00:05:{i:02x}\"\n"
        );
    }
    text
}

/// The verdict and output of the real program for `frame`.
fn kernel(live: &mut LiveXlb, frame: &[u8]) -> testrun::Outcome {
    let program = object::xdp_program(&mut live.ebpf, PROGRAM_NAME).expect("program");
    testrun::run(program, frame).expect("test run")
}

fn explain_flow(live: &LiveXlb, flow: &Flow, protocol: Protocol) -> Explanation {
    let mut maps = pins::open(&live.pin_path).expect("open pins");
    let query = Query {
        source: (flow.src, flow.sport).into(),
        destination: (flow.dst, flow.dport).into(),
        protocol,
    };
    explain::explain(&mut maps, &query).expect("explain")
}

/// The id of the live backend with address `address`.
fn backend_id(live: &mut LiveXlb, address: &str) -> u32 {
    let snapshot = live.snapshot();
    let addr = xlb_tests::steering::addr_bytes(address.parse().expect("address")).0;
    (0..)
        .zip(&snapshot.backends)
        .find(|(_, b)| b.addr == addr && **b != Backend::default())
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("no live backend {address}"))
}

fn live_vip(live: &mut LiveXlb, key: &VipKey) -> Vip {
    *live.snapshot().vip(key).expect("VIP entry")
}

/// Makes the flow table remember `flow` (to VIP `vip`) on backend `backend`, as the kernel
/// would have.
fn remember(live: &mut LiveXlb, flow: &Flow, vip: &VipKey, backend: u32) {
    let vip = live_vip(live, vip);
    let snapshot = live.snapshot();
    let key = flow_key(flow, 6);
    let slot = FlowSlot::new(
        key,
        flow_hash(&key, false),
        backend,
        snapshot.backends[backend as usize].cookie,
        vip.id,
        vip.flags,
    );
    flow_table::remember(&mut live.ebpf, &slot).expect("remember a flow");
}

/// xorshift64: a fixed sequence of pseudo-random flows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Test that explain names the backend the kernel really sends a new flow to, for 200 random
/// flows over a dsr VIP, an all-ports ipip VIP with source hashing and an IPv6 UDP VIP (same
/// destination MAC, and for ipip the same outer destination).
#[test]
fn explain_names_the_backend_the_kernel_picks() {
    require_privileges!();
    let (mut live, _) = three_applied("explain-random");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..200 {
        let r = rng.next();
        let sport = 1024 + (r % 60_000) as u16;
        let (flow, protocol, frame) = match (r >> 32) % 3 {
            0 => {
                let src = format!("198.18.{}.{}", (r >> 40) % 256, (r >> 48) % 256);
                let flow = Flow::new(&src, "198.18.1.10", sport, 80);
                (flow, Protocol::Tcp, packets::tcp_syn(&flow))
            }
            1 => {
                let src = format!("198.19.{}.{}", (r >> 40) % 256, (r >> 48) % 256);
                let dport = 1 + ((r >> 16) % 65_000) as u16;
                let flow = Flow::new(&src, "198.18.1.20", sport, dport);
                (flow, Protocol::Tcp, packets::tcp_syn(&flow))
            }
            _ => {
                let src = format!("2001:db8:7::{:x}", (r >> 40) & 0xffff);
                let flow = Flow::new(&src, "2001:db8:1::53", sport, 53);
                (flow, Protocol::Udp, packets::udp(&flow, b"query"))
            }
        };
        let report = explain_flow(&live, &flow, protocol);
        let outcome = kernel(&mut live, &frame);
        assert_eq!(
            Verdict::from_code(outcome.code),
            Some(Verdict::Tx),
            "{flow:?}"
        );
        let decision = match protocol {
            Protocol::Tcp => report.syn.as_ref().expect("a SYN decision"),
            Protocol::Udp => report.established.as_ref().expect("a decision"),
        };
        let frame_out = decision.frame.as_ref().expect("forwarded");
        let mac: [u8; 6] = outcome.output[..6].try_into().expect("MAC");
        assert_eq!(
            frame_out.dst_mac,
            Mac(mac).to_string(),
            "{flow:?}: {report:#?}"
        );
        if let Some(tunnel) = &frame_out.tunnel {
            let outer: [u8; 4] = outcome.output[30..34].try_into().expect("outer dst");
            assert_eq!(tunnel.outer_dst, IpAddr::from(outer), "{flow:?}");
            assert_eq!(tunnel.protocol, 4);
        }
        assert!(report.is_vip);
        assert_eq!(decision.via, "table");
    }
}

/// Test that for an established flow whose flow-table entry points at another backend (written
/// behind xlb's back), explain says the flow table wins over the table's choice and a TCP ACK
/// through the kernel goes there; and that once that backend is inactive, explain says the flow
/// will be re-hashed and the kernel indeed sends the next ACK to the table's choice.
#[test]
fn explain_follows_the_flow_table_for_established_flows() {
    require_privileges!();
    let (mut live, _) = three_applied("explain-established");
    let flow = Flow::new("198.18.0.77", "198.18.1.10", 41_000, 80);
    let fresh = explain_flow(&live, &flow, Protocol::Tcp);
    assert!(fresh.flow_entry.is_none(), "{fresh:#?}");
    let table_choice = fresh.syn.expect("SYN").backend.expect("backend");
    let other = ["198.18.0.10", "198.18.0.11", "198.18.0.12", "198.18.0.13"]
        .into_iter()
        .map(|address| backend_id(&mut live, address))
        .find(|id| *id != table_choice.id)
        .expect("another backend");
    remember(&mut live, &flow, &vip_key("198.18.1.10", 80, 6), other);

    let report = explain_flow(&live, &flow, Protocol::Tcp);
    let established = report.established.as_ref().expect("established");
    assert_eq!(established.via, "flow_table");
    assert_eq!(established.event, "flow_hit");
    let remembered = established.backend.as_ref().expect("backend");
    assert_eq!(remembered.id, other);
    assert_eq!(
        report
            .syn
            .as_ref()
            .and_then(|d| d.backend.as_ref())
            .map(|b| b.id),
        Some(table_choice.id),
        "a SYN still takes the table's choice"
    );
    let text = explain::text(&report);
    assert!(
        text.contains("a new TCP SYN re-hashes")
            && text.contains("other packets follow the flow-table entry"),
        "{text}"
    );
    let outcome = kernel(&mut live, &packets::tcp_ack(&flow, b"data"));
    assert_eq!(Verdict::from_code(outcome.code), Some(Verdict::Tx));
    assert_eq!(
        Mac(outcome.output[..6].try_into().unwrap()).to_string(),
        remembered.mac
    );

    // The remembered backend goes inactive behind xlb's back: the flow is re-hashed.
    let snapshot = live.snapshot();
    let inactive = Backend {
        flags: 0,
        ..snapshot.backends[other as usize]
    };
    steering::set_backend(&mut live.ebpf, other, &inactive).expect("backend");
    let report = explain_flow(&live, &flow, Protocol::Tcp);
    let established = report.established.as_ref().expect("established");
    assert_eq!(
        (established.via, established.event),
        ("table", "flow_stale")
    );
    assert_eq!(
        established.backend.as_ref().map(|b| b.id),
        Some(table_choice.id)
    );
    assert!(
        explain::text(&report).contains("will be re-hashed"),
        "{report:#?}"
    );
    let outcome = kernel(&mut live, &packets::tcp_ack(&flow, b"more"));
    assert_eq!(
        Mac(outcome.output[..6].try_into().unwrap()).to_string(),
        table_choice.mac
    );
}

/// Test that explain says a destination is not a VIP, and whether the address filter or the
/// service lookup ruled it out, and that the kernel passes such packets.
#[test]
fn explain_of_a_non_vip_destination_says_so() {
    require_privileges!();
    let (mut live, _) = three_applied("explain-not-vip");
    let filter = live.snapshot().filter;
    let clear = (1..=254)
        .map(|i| format!("198.18.3.{i}"))
        .find(|address| {
            let (addr, family) = xlb_tests::steering::addr_bytes(address.parse().unwrap());
            let bit = vip_filter_bit(&addr, family);
            filter[(bit / 64) as usize] & (1 << (bit % 64)) == 0
        })
        .expect("an address whose filter bit is clear");
    let cases = [
        (
            Flow::new("198.18.0.1", &clear, 40_000, 80),
            Protocol::Tcp,
            "filter",
        ),
        (
            Flow::new("198.18.0.1", "198.18.1.10", 40_000, 81),
            Protocol::Tcp,
            "lookup",
        ),
        (
            Flow::new("198.18.0.1", "198.18.1.20", 40_000, 53),
            Protocol::Udp,
            "lookup",
        ),
    ];
    for (flow, protocol, ruled_out_by) in cases {
        let report = explain_flow(&live, &flow, protocol);
        assert!(!report.is_vip, "{report:#?}");
        assert_eq!(report.ruled_out_by, Some(ruled_out_by), "{report:#?}");
        assert!(report.vip.is_none() && report.syn.is_none() && report.established.is_none());
        let last = report.steps.last().expect("a step");
        assert!(last.contains("not_vip") && last.contains("stack"), "{last}");
        let frame = match protocol {
            Protocol::Tcp => packets::tcp_syn(&flow),
            Protocol::Udp => packets::udp(&flow, b"query"),
        };
        let outcome = kernel(&mut live, &frame);
        assert_eq!(
            Verdict::from_code(outcome.code),
            Some(Verdict::Pass),
            "{flow:?}"
        );
    }
}

/// The drift kinds of an audit, sorted.
fn drift_kinds(report: &audit::Report) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Drift)
        .map(|f| f.kind.name())
        .collect();
    kinds.sort_unstable();
    kinds
}

fn find(report: &audit::Report, kind: Kind) -> &audit::Finding {
    report
        .findings
        .iter()
        .find(|f| f.kind == kind)
        .unwrap_or_else(|| panic!("no {} finding in {report:#?}", kind.name()))
}

/// Test that auditing the config just applied is clean, that a backend MAC, a table slot and a
/// VIP changed behind xlb's back are each reported with the right kind (exit 1), and that a
/// config with a VIP the kernel lacks reports it missing.
#[test]
fn audit_against_a_config_finds_each_change_behind_xlbs_back() {
    require_privileges!();
    let mut live = LiveXlb::new("audit-config");
    let text = three_vips();
    let path = live.apply_config("three.toml", &text);
    let clean = audit::audit(Some(&path), Some(&live.pin_path), &HostEnvironment).expect("audit");
    assert_eq!(clean.code, exit::OK, "{clean:#?}");
    assert!(clean.ok && clean.findings.is_empty(), "{clean:#?}");

    let web = vip_key("198.18.1.10", 80, 6);
    let dns6 = vip_key("2001:db8:1::53", 53, 17);
    let id = backend_id(&mut live, "198.18.0.11");
    let snapshot = live.snapshot();
    let changed = Backend {
        mac: [0x02, 0, 0, 0, 0, 0x99],
        ..snapshot.backends[id as usize]
    };
    steering::set_backend(&mut live.ebpf, id, &changed).expect("overwrite MAC");
    let vip = live_vip(&mut live, &web);
    let base = vip.live_table().0;
    let table = steering::read_table(&live.ebpf, base, vip.table_size).expect("table");
    let wrong = backend_id(&mut live, "198.18.0.10");
    let slot = (0..)
        .zip(&table)
        .find(|(_, id)| **id != wrong)
        .expect("a slot")
        .0;
    steering::write_table(&mut live.ebpf, base + slot, &[wrong]).expect("corrupt a slot");
    HashMap::<_, VipKey, Vip>::try_from(live.ebpf.map_mut(map_names::VIPS).unwrap())
        .expect("VIP map")
        .remove(&dns6)
        .expect("delete a VIP");

    let report = audit::audit(Some(&path), Some(&live.pin_path), &HostEnvironment).expect("audit");
    assert_eq!(report.code, exit::INVALID, "{report:#?}");
    assert!(!report.ok);
    assert_eq!(
        drift_kinds(&report),
        ["backend_mac", "table", "vip_missing"],
        "{report:#?}"
    );
    let mac = find(&report, Kind::BackendMac);
    assert_eq!(mac.vip.as_deref(), Some("198.18.1.10:80/tcp"));
    assert_eq!(mac.backend.as_deref(), Some("198.18.0.11"));
    assert_eq!(mac.expected, "02:00:00:00:03:01");
    assert_eq!(mac.actual, "02:00:00:00:00:99");
    assert!(mac.fix.contains("xlb apply"), "{mac:?}");
    let table = find(&report, Kind::Table);
    assert!(
        table.actual.starts_with(&format!(
            "1 of 65537 slots differ (slot {slot} holds backend {wrong}"
        )),
        "{table:?}"
    );
    let missing = find(&report, Kind::VipMissing);
    assert_eq!(missing.vip.as_deref(), Some("[2001:db8:1::53]:53/udp"));

    // Repaired by re-applying; then a config with one more VIP finds it missing.
    live.apply_config("three.toml", &text);
    let repaired = audit::audit(Some(&path), Some(&live.pin_path), &HostEnvironment).unwrap();
    assert_eq!(repaired.code, exit::OK, "{repaired:#?}");
    let more = text
        + "\n[[vip]]\nname = \"extra\"\naddress = \"198.18.1.30\"\nport = 443\nprotocol = \"tcp\"\n\
           \n[[vip.backend]]\naddress = \"198.18.0.30\"\nmac = \"02:00:00:00:06:00\"\n";
    let bigger = live.config_file("four.toml", &more);
    let report = audit::audit(Some(&bigger), Some(&live.pin_path), &HostEnvironment).unwrap();
    assert_eq!(report.code, exit::INVALID);
    assert_eq!(drift_kinds(&report), ["vip_missing"], "{report:#?}");
    assert_eq!(
        find(&report, Kind::VipMissing).vip.as_deref(),
        Some("198.18.1.30:443/tcp")
    );
    assert_eq!(find(&report, Kind::ConfigHash).severity, Severity::Note);
}

/// Test that without a config, audit finds a freshly applied state consistent, and reports a
/// table slot pointing at another VIP's backend id with its slot number.
#[test]
fn audit_without_a_config_checks_the_maps_against_themselves() {
    require_privileges!();
    let (mut live, _) = three_applied("audit-self");
    let clean = audit::audit(None, Some(&live.pin_path), &HostEnvironment).expect("audit");
    assert_eq!(clean.code, exit::OK, "{clean:#?}");
    assert!(clean.findings.is_empty(), "{clean:#?}");

    let api = vip_key("198.18.1.20", 0, 6);
    let vip = live_vip(&mut live, &api);
    let capacity = Capacity::read(&live.ebpf).expect("capacity");
    let foreign = capacity.backend_ids(vip.id + 1).start;
    let base = vip.live_table().0;
    steering::write_table(&mut live.ebpf, base + 7, &[foreign]).expect("corrupt slot 7");
    let report = audit::audit(None, Some(&live.pin_path), &HostEnvironment).expect("audit");
    assert_eq!(report.code, exit::INVALID, "{report:#?}");
    assert_eq!(drift_kinds(&report), ["slot", "table"], "{report:#?}");
    let slot = find(&report, Kind::Slot);
    assert_eq!(slot.vip.as_deref(), Some("198.18.1.20:0/tcp"));
    assert!(
        slot.actual.starts_with(&format!(
            "slot 7 holds backend id {foreign}, not one of this VIP's"
        )),
        "{slot:?}"
    );
    assert_slot_7_differs(&report);
}

/// Points slot 7 of `api`'s live table at another of its backends, behind xlb's back.
fn change_slot_7_of_api(live: &mut LiveXlb) {
    let api = vip_key("198.18.1.20", 0, 6);
    let vip = live_vip(live, &api);
    let base = vip.live_table().0;
    let table = steering::read_table(&live.ebpf, base, vip.table_size).expect("table");
    let other = *table
        .iter()
        .find(|id| **id != table[7])
        .expect("two backends");
    steering::write_table(&mut live.ebpf, base + 7, &[other]).expect("change slot 7");
}

/// Test that the pins of an older xlb, which has no table records, are audited as before: the
/// audit opens them, finds them clean, and finds a slot changed behind xlb's back by rebuilding
/// the table to compare.
#[test]
fn audit_of_pins_without_table_records_rebuilds_to_compare() {
    require_privileges!();
    let (mut live, path) = three_applied("audit-old-pins");
    std::fs::remove_file(live.pin_path.join(map_names::TABLE_RECORDS)).expect("unpin records");
    let clean = audit::audit(Some(&path), Some(&live.pin_path), &HostEnvironment).expect("audit");
    assert_eq!(clean.code, exit::OK, "{clean:#?}");

    change_slot_7_of_api(&mut live);
    let report = audit::audit(Some(&path), Some(&live.pin_path), &HostEnvironment).expect("audit");
    assert_eq!(drift_kinds(&report), ["table"], "{report:#?}");
    assert_slot_7_differs(&report);
}

/// Test that the live tables a config check may take instead of building them are exactly
/// the tables their records vouch for: just applied, every VIP's live counts are the counts
/// its build gives, and a check on them finds what a fresh check finds; once a slot is edited
/// by hand, that VIP's table is no longer taken (it is built and judged), and the check still
/// finds the same.
#[test]
fn audit_checks_the_config_on_live_tables_only_where_records_vouch() {
    require_privileges!();
    let mut live = LiveXlb::new("audit-counts");
    let path = live.apply_config("three.toml", &three_vips());
    let fresh = config::load(&path, &HostEnvironment).expect("valid");
    let on_live = |live: &LiveXlb| {
        let known = audit::live_counts(&live.pin_path);
        let text = std::fs::read(&path).expect("config");
        let parsed = config::parse_bytes(&text, &path).expect("TOML");
        let checked = config::check_parsed(parsed, &HostEnvironment, &[], &known);
        let loaded = checked.expect("valid on the live tables");
        assert_eq!(loaded.warnings, fresh.warnings);
        assert_eq!(loaded.model, fresh.model);
        known
    };
    assert_eq!(on_live(&live), fresh.counts);

    change_slot_7_of_api(&mut live);
    let known = on_live(&live);
    assert_eq!(known.len(), fresh.counts.len() - 1, "{known:?}");
}

/// Test that a backend drained by an operator is reported as a note naming the command, and the
/// audit stays clean with and without the config.
#[test]
fn audit_reports_an_operator_drain_as_a_note() {
    require_privileges!();
    let (mut live, path) = three_applied("audit-drain");
    let snapshot = live.snapshot();
    let capacity = Capacity::read(&live.ebpf).expect("capacity");
    let mut desired = Desired::from_live(&snapshot, &capacity);
    let drained: IpAddr = "198.18.0.12".parse().unwrap();
    for vip in &mut desired.vips {
        for backend in &mut vip.backends {
            if backend.address == drained {
                backend.operator = Some(BACKEND_DRAINED);
            }
        }
    }
    rollout::apply(&mut live.ebpf, &desired).expect("drain");
    for file in [None, Some(path.as_path())] {
        let report = audit::audit(file, Some(&live.pin_path), &HostEnvironment).expect("audit");
        assert_eq!(report.code, exit::OK, "{report:#?}");
        assert_eq!((report.drift, report.notes), (0, 1), "{report:#?}");
        let note = find(&report, Kind::BackendOperator);
        assert_eq!(note.backend.as_deref(), Some("198.18.0.12"));
        assert!(note.actual.contains("`xlb backend drain`"), "{note:?}");
        assert!(
            note.fix
                .contains("xlb backend enable 198.18.1.10:80/tcp 198.18.0.12")
        );
    }
}

/// Test that the real `xlb explain --output json` and `xlb audit --output json` each print one
/// JSON document with the documented fields (audit exiting 1 on the drift it reports).
#[test]
fn explain_and_audit_json_have_the_documented_fields() {
    require_privileges!();
    let (mut live, path) = three_applied("explain-audit-json");
    let (code, json) = live.xlb_json(&["explain", "198.18.0.1:40000", "198.18.1.20:8443", "tcp"]);
    assert_eq!(code, Some(0), "{json}");
    assert_fields(
        &json,
        "explain JSON",
        "source destination protocol filter_bit filter_set is_vip ruled_out_by \
         vip table flow_entry syn established steps",
    );
    assert_eq!(json["vip"]["vip"], "198.18.1.20:0/tcp");
    assert_eq!(json["vip"]["exact_port"], false);
    assert_eq!(json["vip"]["forwarding"], "ipip");
    assert_eq!(json["vip"]["hash"], "source");
    assert_fields(
        &json["syn"],
        "syn",
        "via event reason verdict backend frame",
    );
    assert_eq!(json["syn"]["reason"], "forwarded_ipip");
    assert_eq!(json["syn"]["frame"]["tunnel"]["outer_src"], "198.18.0.2");
    assert_fields(
        &json["syn"]["backend"],
        "backend",
        "id address mac weight state active",
    );
    assert!(
        json["steps"].as_array().is_some_and(|s| s.len() >= 5),
        "{json}"
    );

    let base = {
        let vip = live_vip(&mut live, &vip_key("198.18.1.10", 80, 6));
        vip.live_table().0
    };
    steering::write_table(&mut live.ebpf, base, &[rollout::NO_BACKEND]).expect("corrupt");
    let (code, json) = live.xlb_json(&["audit", path.to_str().expect("path")]);
    assert_eq!(code, Some(1), "drift exits 1: {json}");
    assert_fields(
        &json,
        "audit JSON",
        "ok file pin_path diagnostics drift notes findings",
    );
    assert_eq!(json["ok"], false);
    assert_eq!(json["drift"], 1);
    let finding = &json["findings"][0];
    assert_fields(
        finding,
        "finding",
        "kind severity vip backend expected actual fix",
    );
    assert_eq!(finding["kind"], "table");
    assert_eq!(finding["severity"], "drift");
    assert_eq!(finding["vip"], "198.18.1.10:80/tcp");
    assert!(finding["backend"].is_null());
}

/// A live xlb with the [`three_vips`] config applied from a file; returns the file too.
fn three_applied(label: &str) -> (LiveXlb, PathBuf) {
    let mut live = LiveXlb::new(label);
    let path = live.apply_config("three.toml", &three_vips());
    (live, path)
}

/// Asserts that `report` has a table finding of exactly one slot differing, slot 7.
fn assert_slot_7_differs(report: &audit::Report) {
    assert!(
        find(report, Kind::Table)
            .actual
            .starts_with("1 of 1031 slots differ (slot 7 "),
        "{report:#?}"
    );
}
