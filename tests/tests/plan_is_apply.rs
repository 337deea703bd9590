//! Kernel-backed test that `xlb plan` reports what `xlb apply` then writes: for a walk of config
//! pairs, the live maps read before and after a real apply differ where, and only where, the
//! plan of that apply said they would.

use std::collections::{BTreeMap, BTreeSet};

use lb_common::{
    Backend, Config, Vip,
    service::{BACKEND_DRAINED, VipFilter},
};
use lb_userspace::{
    apply::{Options, apply_file},
    capacity::Capacity,
    config::HostEnvironment,
    diff::effect,
    live::Snapshot,
    pins::Live,
    plan::{Change, DEFAULT_SEED, PlanReport, Sample, VipPlan, plan_file},
    rollout::{self, Desired, describe_vip, live_address},
};
use xlb_tests::{live::LiveXlb, require_privileges};

/// One VIP of a config: name, address, port and protocol, extra settings (TOML lines), and
/// backends (address, weight, last byte of the MAC).
struct VipSpec<'a> {
    name: &'a str,
    socket: (&'a str, u16, &'a str),
    settings: &'a str,
    backends: &'a [(&'a str, u32, u8)],
}

fn config(global: &str, vips: &[VipSpec]) -> String {
    let mut text = format!(
        "[global]\ninterface = \"lo\"\n{global}\n[audit]\nmax_backend_share = 1.0\n\
         min_backends = 1\n"
    );
    for vip in vips {
        let (address, port, protocol) = vip.socket;
        text += &format!(
            "\n[[vip]]\nname = \"{}\"\naddress = \"{address}\"\nport = {port}\nprotocol = \
             \"{protocol}\"\n{}\n",
            vip.name, vip.settings
        );
        for (address, weight, mac) in vip.backends {
            text += &format!(
                "[[vip.backend]]\naddress = \"{address}\"\nweight = {weight}\nmac = \
                 \"02:00:00:00:04:{mac:02x}\"\n"
            );
        }
    }
    text
}

const WEB: (&str, u16, &str) = ("198.18.1.10", 80, "tcp");
const DNS: (&str, u16, &str) = ("198.18.1.20", 53, "udp");
const API: (&str, u16, &str) = ("2001:db8:1::30", 443, "tcp");
const WEB_BACKENDS: [(&str, u32, u8); 3] = [
    ("198.18.0.10", 1, 0x10),
    ("198.18.0.11", 1, 0x11),
    ("198.18.0.12", 1, 0x12),
];
const DNS_BACKENDS: [(&str, u32, u8); 2] = [("198.18.0.20", 1, 0x20), ("198.18.0.21", 1, 0x21)];

fn base() -> String {
    config(
        "",
        &[
            VipSpec {
                name: "web",
                socket: WEB,
                settings: "",
                backends: &WEB_BACKENDS,
            },
            VipSpec {
                name: "dns",
                socket: DNS,
                settings: "",
                backends: &DNS_BACKENDS,
            },
        ],
    )
}

/// What the maps hold for one VIP: its entry, its live table and its backend entries (id and
/// entry) by address.
struct VipState {
    vip: Vip,
    table: Vec<u32>,
    backends: BTreeMap<String, (u32, Backend)>,
}

/// The parts of the live maps an apply writes.
struct State {
    vips: BTreeMap<String, VipState>,
    config: Config,
    filter: VipFilter,
}

fn read(live: &mut LiveXlb) -> State {
    let snapshot = Snapshot::read(&mut live.ebpf).expect("snapshot");
    let capacity = Capacity::read(&live.ebpf).expect("capacity");
    let vips = snapshot
        .vips
        .iter()
        .map(|(key, vip)| {
            let backends = effect::live_entries(&snapshot, &capacity, vip)
                .into_iter()
                .map(|(id, backend)| (live_address(&backend).to_string(), (id, backend)))
                .collect();
            let table = snapshot.active_table(&live.ebpf, vip).expect("table");
            (
                describe_vip(key),
                VipState {
                    vip: *vip,
                    table,
                    backends,
                },
            )
        })
        .collect();
    State {
        vips,
        config: snapshot.config,
        filter: snapshot.filter,
    }
}

/// The address owning each slot of `state`'s table.
fn owners(state: &VipState) -> Vec<Option<&String>> {
    let by_id: BTreeMap<u32, &String> = state
        .backends
        .iter()
        .map(|(address, (id, _))| (*id, address))
        .collect();
    state
        .table
        .iter()
        .map(|id| by_id.get(id).copied())
        .collect()
}

/// What an apply did to a thing found `before` and `after` it (or on one side only), `same`
/// saying whether it was left as it was.
fn observed<T>(before: Option<T>, after: Option<T>, same: impl FnOnce(&T, &T) -> bool) -> Change {
    match (before, after) {
        (None, Some(_)) => Change::Added,
        (Some(_), None) => Change::Removed,
        (Some(was), Some(is)) if same(&was, &is) => Change::Unchanged,
        (Some(_), Some(_)) => Change::Changed,
        (None, None) => panic!("the plan lists something on neither side"),
    }
}

/// Checks the backends of one VIP the plan reports against the entries before and after.
fn assert_backends(plan: &VipPlan, before: Option<&VipState>, after: Option<&VipState>) {
    let entries = |state: Option<&VipState>| state.map(|s| s.backends.clone()).unwrap_or_default();
    let (old, new) = (entries(before), entries(after));
    let every: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    assert_eq!(
        plan.backends.len(),
        every.len(),
        "{}: the plan lists each backend of both sides once: {plan:#?}",
        plan.vip
    );
    for backend in &plan.backends {
        let address = backend.address.to_string();
        let settings = |(_, b): &(u32, Backend)| (b.weight, b.mac, b.flags);
        let seen = (
            old.get(&address).map(settings),
            new.get(&address).map(settings),
        );
        let observed = observed(seen.0, seen.1, |was, is| was == is);
        assert_eq!(
            backend.change, observed,
            "{} backend {address}: planned {:?}, the apply made it {observed:?} ({seen:?})",
            plan.vip, backend.change
        );
    }
}

/// Checks one VIP of the plan against the maps before and after the apply.
fn assert_vip(plan: &VipPlan, before: Option<&VipState>, after: Option<&VipState>) {
    // A VIP an apply touches gets its new table in the other copy and flips to it.
    let observed = observed(before, after, |was, is| was.vip == is.vip);
    if let (Change::Unchanged, Some(was), Some(is)) = (observed, before, after) {
        assert_eq!(
            was.table, is.table,
            "{}: entry kept, table rewritten",
            plan.vip
        );
        assert_eq!(was.backends, is.backends, "{}: entry kept", plan.vip);
    }
    assert_eq!(
        plan.change, observed,
        "{}: planned {:?}, the apply made it {observed:?}",
        plan.vip, plan.change
    );
    assert_backends(plan, before, after);
    if let (Some(was), Some(is), Some(moved), false) =
        (before, after, plan.moved_share, plan.moved_estimated)
    {
        let (old, new) = (owners(was), owners(is));
        let differ = old.iter().zip(&new).filter(|(a, b)| a != b).count();
        let share = differ as f64 / old.len() as f64;
        assert!(
            (moved - share).abs() < 1e-9,
            "{}: planned {moved} of new flows moving, the tables differ in {share}",
            plan.vip
        );
    }
}

/// Plans `text`, applies it as `xlb apply` does, and checks that the maps changed exactly as
/// the plan said: which VIPs and backends were added, removed, changed or left alone, the
/// share of slots that moved, and the run-time settings.
fn assert_apply_writes_what_plan_reports(live: &mut LiveXlb, name: &str, text: &str) {
    let path = live.config_file(name, text);
    let live_args = Live {
        pin_path: Some(live.pin_path.clone()),
    };
    let sample = Sample {
        flows: 500,
        seed: DEFAULT_SEED,
    };
    let report: PlanReport = plan_file(&path, &HostEnvironment, &live_args, &sample).expect("plan");
    assert_eq!(report.refusal, None, "{name}: {report:#?}");
    let before = read(live);
    let applied =
        apply_file(&path, &HostEnvironment, &live_args, &Options::default()).expect("apply");
    assert!(applied.applied, "{name}: {applied:?}");
    let after = read(live);

    let keys: BTreeSet<&String> = before.vips.keys().chain(after.vips.keys()).collect();
    assert_eq!(
        report.vips.len(),
        keys.len(),
        "{name}: the plan lists each VIP of both sides once"
    );
    for vip in &report.vips {
        assert_vip(vip, before.vips.get(&vip.vip), after.vips.get(&vip.vip));
    }
    assert_eq!(
        report.global.is_empty(),
        before.config == after.config,
        "{name}: planned settings {:?}, config {:?} -> {:?}",
        report.global,
        before.config,
        after.config
    );
    let same_set = report
        .vips
        .iter()
        .all(|vip| !matches!(vip.change, Change::Added | Change::Removed));
    if same_set {
        assert_eq!(before.filter, after.filter, "{name}: no VIP came or went");
    }
}

/// Test that for a walk of config changes (identical, weights and MACs, backends added and
/// removed, VIPs added and removed, forwarding, hashing, table size, MTU, tunnel source and
/// flow admission, an operator drain kept, and back), the plan of each apply lists exactly
/// the VIPs, backends and settings the apply then changes in the maps, and leaves every other
/// entry and table as it was.
#[test]
fn apply_writes_what_plan_reports() {
    require_privileges!();
    let mut live = LiveXlb::new("plan-is-apply");
    let web = |settings, backends| VipSpec {
        name: "web",
        socket: WEB,
        settings,
        backends,
    };
    let api = |settings| VipSpec {
        name: "api",
        socket: API,
        settings,
        backends: &[("2001:db8::40", 1, 0x40), ("2001:db8::41", 2, 0x41)],
    };
    let dns = |backends| VipSpec {
        name: "dns",
        socket: DNS,
        settings: "",
        backends,
    };
    let reweighted = [
        ("198.18.0.10", 1, 0x10),
        ("198.18.0.11", 3, 0x11),
        ("198.18.0.12", 1, 0x99),
    ];
    let grown = [
        ("198.18.0.10", 1, 0x10),
        ("198.18.0.11", 3, 0x11),
        ("198.18.0.12", 1, 0x99),
        ("198.18.0.13", 1, 0x13),
    ];
    let steps = [
        ("base", base()),
        ("same", base()),
        (
            "weights-and-macs",
            config("", &[web("", &reweighted), dns(&DNS_BACKENDS)]),
        ),
        (
            "backends",
            config("", &[web("", &grown), dns(&DNS_BACKENDS[..1])]),
        ),
        (
            "vips",
            config("", &[web("", &grown), api("table_size = 251")]),
        ),
        (
            "forwarding-and-settings",
            config(
                "mtu = 1400\nipip_source_v4 = \"198.18.200.0/30\"\nflow_admission = \"first_ack\"\n",
                &[
                    web("forwarding = \"ipip\"", &grown),
                    api("table_size = 257\nhash = \"source\"\nsource_hash_checked = true"),
                ],
            ),
        ),
        ("back", base()),
    ];
    for (name, text) in &steps {
        assert_apply_writes_what_plan_reports(&mut live, &format!("{name}.toml"), text);
    }

    // An operator drain, then the config again: plan and apply both keep the drain.
    let snapshot = Snapshot::read(&mut live.ebpf).expect("snapshot");
    let capacity = Capacity::read(&live.ebpf).expect("capacity");
    let mut drained = Desired::from_live(&snapshot, &capacity);
    drained.vips[0].backends[1].operator = Some(BACKEND_DRAINED);
    rollout::apply(&mut live.ebpf, &drained).expect("drain");
    assert_apply_writes_what_plan_reports(&mut live, "after-drain.toml", &base());
    let after = read(&mut live);
    let web_state = &after.vips["198.18.1.10:80/tcp"];
    assert!(
        web_state
            .backends
            .values()
            .any(|(_, b)| b.flags & BACKEND_DRAINED != 0),
        "the drain is kept"
    );
}
