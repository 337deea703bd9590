//! Kernel-backed tests of `apply`: a desired state lands in the maps of a loaded program,
//! tables flip from one copy to the other, ids stay stable, and a failure at any step leaves
//! the previous state byte for byte.

use aya::Ebpf;
use lb_common::{
    Config, PROGRAM_NAME, Reason, Verdict,
    config::CONFIG_TRACE,
    map_names,
    service::{BACKEND_ACTIVE, VIP_FORWARD_IPIP},
};
use lb_userspace::{
    capacity::Capacity,
    counters::Totals,
    live::Snapshot,
    maps, object,
    rollout::{self as apply, Desired, DesiredBackend, DesiredVip},
    steering,
    table_record::Records,
};
use xlb_tests::{
    packets::{self, Flow},
    require_privileges,
    steering::{flow_key, run, vip_key},
};

const CAPACITY: Capacity = Capacity {
    vips: 4,
    backends_per_vip: 8,
    table_slots: 1031,
};

fn program() -> Ebpf {
    object::load_sized(object::XDP_OBJECT, PROGRAM_NAME, &CAPACITY.map_sizes()).expect("load xlb")
}

fn backend(address: &str, weight: u32, last_mac_byte: u8) -> DesiredBackend {
    DesiredBackend {
        address: address.parse().expect("backend address"),
        weight,
        mac: [0x02, 0, 0, 0, 0x02, last_mac_byte],
        operator: None,
        unhealthy: None,
    }
}

fn desired(weights: [u32; 3]) -> Desired {
    Desired {
        vips: vec![
            DesiredVip {
                key: vip_key("198.18.1.10", 80, 6),
                flags: 0,
                table_size: 1031,
                backends: vec![
                    backend("198.18.0.10", weights[0], 10),
                    backend("198.18.0.11", weights[1], 11),
                    backend("198.18.0.12", weights[2], 12),
                ],
            },
            DesiredVip {
                key: vip_key("2001:db8:1::10", 443, 6),
                flags: VIP_FORWARD_IPIP,
                table_size: 13,
                backends: vec![
                    backend("2001:db8::10", 1, 20),
                    backend("2001:db8::11", 1, 21),
                ],
            },
        ],
        config: Config {
            mtu: 1500,
            ipip_src_v6: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            ..Config::default()
        },
        config_hash: 42,
        max_share: 0.9,
    }
}

/// The MAC the kernel sent a SYN of `flow` to.
fn kernel_choice(ebpf: &mut Ebpf, flow: &Flow) -> [u8; 6] {
    let (verdict, output) = run(ebpf, &packets::tcp_syn(flow));
    assert_eq!(verdict, Some(Verdict::Tx), "{flow:?}");
    output[..6].try_into().expect("MAC")
}

/// Test that an apply installs every VIP, backend and table, that the kernel then steers by
/// those tables, and that a second apply flips each VIP to its other table copy, keeping ids
/// and leaving the previous copy intact; each apply records the tables it wrote.
#[test]
fn apply_installs_tables_and_flips_copies() {
    require_privileges!();
    let mut ebpf = program();
    let first = apply::apply(&mut ebpf, &desired([1, 1, 1])).expect("first apply");
    assert_eq!(first.generation, 1);
    let snapshot = Snapshot::read(&mut ebpf).expect("snapshot");
    assert_eq!(snapshot.meta.generation, 1);
    assert_eq!(snapshot.meta.config_hash, 42);
    for applied in &first.vips {
        let live = snapshot.vip(&applied.key).expect("VIP entry");
        assert_eq!(live, &applied.vip);
        assert_eq!(
            snapshot.active_table(&ebpf, live).expect("table"),
            applied.table
        );
        for id in &applied.backend_ids {
            assert_eq!(snapshot.backends[*id as usize].flags, BACKEND_ACTIVE);
            assert_eq!(snapshot.backends[*id as usize].weight, 1);
        }
    }
    assert_records_vouch(&ebpf, &first.vips);
    let v4 = &first.vips[0];
    for sport in 1000..1100 {
        let flow = Flow::new("198.18.0.1", "198.18.1.10", sport, 80);
        let slot = steering::slot(&v4.vip, &flow_key(&flow, 6)) as usize;
        let id = v4.table[slot];
        let mac = snapshot.backends[id as usize].mac;
        assert_eq!(kernel_choice(&mut ebpf, &flow), mac, "{flow:?}");
    }

    let second = apply::apply(&mut ebpf, &desired([1, 0, 3])).expect("second apply");
    assert_eq!(second.generation, 2);
    let after = Snapshot::read(&mut ebpf).expect("snapshot");
    assert_records_vouch(&ebpf, &second.vips);
    let (old, new) = (&first.vips[0], &second.vips[0]);
    assert_eq!(new.vip.id, old.vip.id, "VIP id kept");
    assert_eq!(new.backend_ids, old.backend_ids, "backend ids kept");
    assert_eq!(new.vip.active, 1 - old.vip.active, "flipped");
    assert_eq!(after.active_table(&ebpf, &new.vip).unwrap(), new.table);
    assert_eq!(
        after.active_table(&ebpf, &old.vip).unwrap(),
        old.table,
        "old copy intact"
    );
    assert!(
        !new.table.contains(&new.backend_ids[1]),
        "weight 0 is out of the table"
    );
}

/// Test that the state `apply_over` returns is the one a read of the maps finds after it,
/// through a chain of applies each starting from the state the previous one returned: the
/// first, a weight change, a removal of a VIP and a backend, an added VIP, a settings change
/// and an apply that changes nothing. And that a snapshot kept past another writer's apply is
/// not used: the generation moved, so the maps are read again.
#[test]
fn apply_over_returns_the_state_it_wrote() {
    require_privileges!();
    let mut ebpf = program();
    let mut removal = desired([5, 1, 0]);
    removal.vips.remove(0);
    removal.vips[0].backends.pop();
    let mut growth = desired([1, 2, 3]);
    let mut third = growth.vips[0].clone();
    third.key = vip_key("198.18.1.11", 80, 6);
    growth.vips.push(third);
    let mut settings = growth.clone();
    settings.config.mtu = 1400;
    settings.config_hash = 43;
    let mut live = Snapshot::read(&mut ebpf).expect("snapshot");
    for (n, change) in [
        desired([1, 1, 1]),
        desired([1, 0, 3]),
        removal,
        growth,
        settings.clone(),
        settings,
    ]
    .iter()
    .enumerate()
    {
        let generation = live.meta.generation;
        let (applied, left) = apply::apply_over(&mut ebpf, live, change).expect("apply");
        assert_eq!(applied.generation, generation + 1, "change {n}");
        let read = Snapshot::read(&mut ebpf).expect("snapshot");
        assert_eq!(
            left, read,
            "change {n}: the state returned is not the state written"
        );
        live = left;
    }
    // `xlb trace` switches its flag without a new generation: an apply over a kept snapshot
    // that changes the settings keeps it.
    let mut configs = maps::array::<Config>(&mut ebpf, map_names::CONFIG).expect("config map");
    let traced = Config {
        flags: configs.get(&0, 0).expect("config").flags | CONFIG_TRACE,
        ..configs.get(&0, 0).expect("config")
    };
    configs.set(0, &traced, 0).expect("trace on");
    let mut mtu = desired([1, 2, 3]);
    mtu.config.mtu = 1300;
    let (_, live) = apply::apply_over(&mut ebpf, live, &mtu).expect("apply");
    assert_eq!(live, Snapshot::read(&mut ebpf).expect("snapshot"));
    assert_ne!(
        live.config.flags & CONFIG_TRACE,
        0,
        "the trace flag was lost"
    );
    assert_eq!(live.config.mtu, 1300);
    let kept = live.clone();
    apply::apply(&mut ebpf, &desired([2, 2, 2])).expect("another writer's apply");
    let now = Snapshot::read_unless_kept(&mut ebpf, Some(kept.clone())).expect("snapshot");
    assert_ne!(now, kept, "a snapshot of an older generation was used");
    assert_eq!(now, Snapshot::read(&mut ebpf).expect("snapshot"));
}

/// Checks that the table record of each VIP `applied` rebuilt vouches for the table the apply
/// wrote into its live copy, and for no other table.
fn assert_records_vouch(ebpf: &Ebpf, applied: &[apply::AppliedVip]) {
    let records = Records::read(ebpf).expect("table records");
    for applied in applied.iter().filter(|applied| applied.rebuilt) {
        assert!(
            records.vouches(&applied.vip, applied.inputs, &applied.table),
            "{applied:?}"
        );
        let mut edited = applied.table.clone();
        edited[0] = edited[0].wrapping_add(1);
        assert!(!records.vouches(&applied.vip, applied.inputs, &edited));
    }
}

/// Test that removing a VIP and a backend clears them from the maps, and that the kernel stops
/// steering the removed VIP.
#[test]
fn apply_removes_what_the_config_no_longer_has() {
    require_privileges!();
    let mut ebpf = program();
    let first = apply::apply(&mut ebpf, &desired([1, 1, 1])).expect("first apply");
    let mut smaller = desired([1, 1, 1]);
    smaller.vips.truncate(1);
    smaller.vips[0].backends.pop();
    apply::apply(&mut ebpf, &smaller).expect("second apply");
    let after = Snapshot::read(&mut ebpf).expect("snapshot");
    assert_eq!(after.vips.len(), 1);
    let removed = first.vips[0].backend_ids[2];
    assert_eq!(
        after.backends[removed as usize],
        lb_common::Backend::default()
    );
    for id in &first.vips[1].backend_ids {
        assert_eq!(after.backends[*id as usize], lb_common::Backend::default());
    }
    let syn = packets::tcp_syn(&Flow::new("2001:db8::1", "2001:db8:1::10", 1, 443));
    assert_eq!(
        run(&mut ebpf, &syn).0,
        Some(Verdict::Pass),
        "removed VIP is not steered"
    );
    // The VIP address map follows the VIPs: GRE to the kept VIP's address is other_l4, to the
    // removed one's not_vip.
    let before = Totals::read(&ebpf).expect("counters");
    for dst in ["198.18.1.10", "2001:db8:1::10"] {
        let src = if dst.contains(':') {
            "2001:db8::1"
        } else {
            "198.18.0.1"
        };
        let mut gre = packets::udp(&Flow::new(src, dst, 1, 1), b"x");
        packets::set_ip_proto(&mut gre, 47);
        assert_eq!(run(&mut ebpf, &gre).0, Some(Verdict::Pass), "{dst}");
    }
    let after = Totals::read(&ebpf).expect("counters");
    let counted = |reason| after.reason(reason).packets - before.reason(reason).packets;
    assert_eq!(
        (counted(Reason::OtherL4), counted(Reason::NotVip)),
        (1, 1),
        "GRE to the kept and to the removed VIP address"
    );
}

/// The live tables of every VIP, in the snapshot's order.
fn live_tables(ebpf: &Ebpf, snapshot: &Snapshot) -> Vec<Vec<u32>> {
    snapshot
        .vips
        .iter()
        .map(|(_, vip)| snapshot.active_table(ebpf, vip).expect("live table"))
        .collect()
}

/// Fails `change` at every fault point in turn (between the write steps and inside them: after
/// some backends, half of a table, some VIP flips), checking each time that every map is as it
/// was byte for byte, until an apply runs past the last point; then checks that this apply
/// succeeded and made `change` live.
fn assert_every_fault_restores(ebpf: &mut Ebpf, change: &Desired) {
    /// More fault points than any change here has: the loop must end before.
    const BOUND: usize = 200;
    let before = Snapshot::read(ebpf).expect("snapshot");
    let tables_before = live_tables(ebpf, &before);
    for point in 0..BOUND {
        let result = apply::apply_with_fault_injection(ebpf, change, Some(point));
        let after = Snapshot::read(ebpf).expect("snapshot");
        let applied = match result {
            Err(err) => {
                assert!(
                    format!("{err:#}").contains(&format!("fault injected at fault point {point}")),
                    "fault point {point}: {err:#}"
                );
                assert_eq!(
                    after, before,
                    "state changed by an apply failing at fault point {point}"
                );
                assert_eq!(
                    live_tables(ebpf, &after),
                    tables_before,
                    "live tables changed (fault point {point})"
                );
                continue;
            }
            Ok(applied) => applied,
        };
        // Past the last fault point: the apply went through, whole.
        assert!(
            point >= 12,
            "only {point} fault points: the write steps and the points inside them are fewer \
             than this change needs"
        );
        assert_eq!(after.meta.generation, before.meta.generation + 1);
        assert_eq!(after.meta.config_hash, change.config_hash);
        assert_eq!(after.vips.len(), change.vips.len(), "{after:?}");
        for (want, done) in change.vips.iter().zip(&applied.vips) {
            let live = after.vip(&want.key).expect("an applied VIP is live");
            assert_eq!(live, &done.vip);
            let table = after.active_table(ebpf, live).expect("table");
            if done.rebuilt {
                assert_eq!(table, done.table);
            } else {
                // Left alone: the live table is the one from before, untouched.
                let old = before.vip(&want.key).expect("an unchanged VIP was live");
                assert_eq!(old, live);
                assert_eq!(table, before.active_table(ebpf, old).expect("table"));
            }
        }
        return;
    }
    panic!("the apply failed at every one of {BOUND} fault points: it never went through");
}

/// Test that an apply failing at any point (before each write step, and part-way through one:
/// after some backends are written, after half of a table's slots, after one VIP's flip of
/// two) leaves every map as it was: VIP entries, backends, config, filter, meta and the live
/// tables, byte for byte; and that the same apply with no fault left goes through and makes
/// the change live. Two changes: one that removes a VIP, one that changes two VIPs and adds a
/// third.
#[test]
fn failed_apply_leaves_the_old_state_byte_for_byte() {
    require_privileges!();
    let mut ebpf = program();
    apply::apply(&mut ebpf, &desired([1, 1, 1])).expect("first apply");
    let mut removal = desired([5, 1, 0]);
    removal.vips[1]
        .backends
        .push(backend("2001:db8::12", 1, 22));
    removal.vips.remove(0);
    assert_every_fault_restores(&mut ebpf, &removal);

    let mut growth = desired([1, 2, 3]);
    growth.vips[1].backends.push(backend("2001:db8::13", 2, 23));
    let mut third = growth.vips[0].clone();
    third.key = vip_key("198.18.1.11", 80, 6);
    growth.vips.push(third);
    growth.config_hash = 43;
    assert_every_fault_restores(&mut ebpf, &growth);
}

/// Test that a desired state the running program cannot hold is refused before anything is
/// written, with an error that names the limit.
#[test]
fn apply_refuses_what_does_not_fit() {
    require_privileges!();
    let mut ebpf = program();
    apply::apply(&mut ebpf, &desired([1, 1, 1])).expect("first apply");
    let before = Snapshot::read(&mut ebpf).expect("snapshot");
    let mut too_big = desired([1, 1, 1]);
    too_big.vips[0].table_size = 65_537;
    let err = apply::apply(&mut ebpf, &too_big).expect_err("table larger than the capacity");
    assert!(format!("{err:#}").contains("capacity"), "{err:#}");
    let mut too_many = desired([1, 1, 1]);
    for port in 1..=4 {
        let mut extra = too_many.vips[0].clone();
        extra.key = vip_key("198.18.1.10", port, 6);
        too_many.vips.push(extra);
    }
    let err = apply::apply(&mut ebpf, &too_many).expect_err("more VIPs than the capacity");
    assert!(format!("{err:#}").contains("VIPs do not fit"), "{err:#}");
    assert_eq!(Snapshot::read(&mut ebpf).expect("snapshot"), before);
}
