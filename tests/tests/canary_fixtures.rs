//! Fixture tests of canary applies through BPF_PROG_TEST_RUN: with a VIP's threshold set, new
//! flows split between its two table copies exactly as userspace predicts (the same hash, the
//! same tables, [`lb_common::canary::table_copy`]), and established flows keep their backends
//! while the canary runs, when it is promoted and when it is rolled back.

use aya::Ebpf;
use lb_common::{Verdict, Vip, canary, flow_hash, service::VIP_HASH_SOURCE_ONLY};
use lb_userspace::steering;
use xlb_tests::{
    packets::{self, Flow},
    require_privileges,
    steering::{BACKENDS, TABLE_A, TABLE_B, dsr_output, flow_key, load, run, table, vip_key},
};

const SIZE: u32 = 13;
const VIP: &str = "198.18.1.10";

/// Table B: every slot names another backend than table A's, so each output says which copy
/// the kernel read.
fn shifted(a: &[u32]) -> Vec<u32> {
    a.iter().map(|id| (id + 1) % BACKENDS).collect()
}

/// The backend the kernel sent `packet` to (its destination MAC's last byte).
fn sent_to(ebpf: &mut Ebpf, packet: &[u8]) -> u32 {
    let (verdict, out) = run(ebpf, packet);
    assert_eq!(verdict, Some(Verdict::Tx), "steered");
    assert_eq!(out, dsr_output(packet, u32::from(out[5])), "dsr output");
    u32::from(out[5])
}

/// Loads a VIP (with `flags`) over tables A and B and sets its canary `threshold`.
fn canary_vip(flags: u32, threshold: u32) -> (Ebpf, Vip, Vec<u32>, Vec<u32>) {
    let key = vip_key(VIP, 80, 6);
    let (mut ebpf, vip) = load(&[(key, flags)], SIZE);
    let a = table(&[0, 1, 2], SIZE);
    let b = shifted(&a);
    steering::write_table(&mut ebpf, TABLE_B, &b).expect("table B");
    let vip = Vip {
        canary: threshold,
        ..vip
    };
    steering::set_vip(&mut ebpf, &key, &vip).expect("canary threshold");
    (ebpf, vip, a, b)
}

fn set_vip(ebpf: &mut Ebpf, vip: &Vip) {
    steering::set_vip(ebpf, &vip_key(VIP, 80, 6), vip).expect("VIP entry");
}

/// Test that under a 30% canary each new flow takes the copy userspace predicts: table B
/// exactly when its table hash (the source hash for a `hash = "source"` VIP) is below the
/// threshold, so about 30% of flows, and table A otherwise.
#[test]
fn new_flows_split_at_the_threshold_as_userspace_predicts() {
    require_privileges!();
    let threshold = canary::threshold(30);
    for flags in [0, VIP_HASH_SOURCE_ONLY] {
        let (mut ebpf, vip, a, b) = canary_vip(flags, threshold);
        let mut took_b = 0;
        let flows = 300u16;
        for i in 0..flows {
            // Sources vary too, so a source-hashed VIP splits.
            let client = format!("198.18.{}.{}", 2 + i / 200, 1 + i % 200);
            let flow = Flow::new(&client, VIP, 20_000 + i, 80);
            let key = flow_key(&flow, 6);
            let slot = steering::slot(&vip, &key) as usize;
            let predicted_base = steering::copy_base(&vip, &key);
            let predicted = if predicted_base == TABLE_B {
                b[slot]
            } else {
                a[slot]
            };
            let below = flow_hash(&key, flags & VIP_HASH_SOURCE_ONLY != 0) < threshold;
            assert_eq!(predicted_base == TABLE_B, below, "flags {flags} flow {i}");
            let got = sent_to(&mut ebpf, &packets::tcp_syn(&flow));
            assert_eq!(got, predicted, "flags {flags} flow {i}: the kernel's copy");
            took_b += u32::from(below);
        }
        // 300 flows, p = 0.3: 90 expected, sd about 8.
        assert!(
            (60..=120).contains(&took_b),
            "flags {flags}: {took_b} of {flows} flows took the tried table"
        );
    }
}

/// Test that flows established before and during a canary keep their backends through the
/// canary, its promotion (the tried copy becomes live) and its rollback (threshold 0), though
/// every new flow's table changes each time.
#[test]
fn established_flows_never_move_through_canary_promote_or_rollback() {
    require_privileges!();
    for promote in [true, false] {
        let (mut ebpf, vip, _, _) = canary_vip(0, 0);
        let flows: Vec<Flow> = (0..60u16)
            .map(|i| Flow::new("198.18.0.1", VIP, 30_000 + i, 80))
            .collect();
        let ack = |flow: &Flow| packets::tcp_ack(flow, b"data");
        let mut backend = Vec::new();
        // Half the flows start before the canary, half under it.
        for flow in &flows[..30] {
            backend.push(sent_to(&mut ebpf, &packets::tcp_syn(flow)));
        }
        let under = Vip {
            canary: canary::threshold(50),
            ..vip
        };
        set_vip(&mut ebpf, &under);
        for flow in &flows[30..] {
            backend.push(sent_to(&mut ebpf, &packets::tcp_syn(flow)));
        }
        let check = |ebpf: &mut Ebpf, stage: &str| {
            for (i, flow) in flows.iter().enumerate() {
                assert_eq!(
                    sent_to(ebpf, &ack(flow)),
                    backend[i],
                    "{stage}: flow {i} moved"
                );
            }
        };
        check(&mut ebpf, "during the canary");
        let ended = if promote {
            Vip {
                active: 1,
                canary: 0,
                ..vip
            }
        } else {
            Vip { canary: 0, ..vip }
        };
        set_vip(&mut ebpf, &ended);
        let stage = if promote { "promoted" } else { "rolled back" };
        check(&mut ebpf, stage);
        // New flows now all take one copy: B when promoted, A when rolled back.
        let fresh = Flow::new("198.18.0.1", VIP, 40_000, 80);
        let key = flow_key(&fresh, 6);
        let expected_base = if promote { TABLE_B } else { TABLE_A };
        assert_eq!(steering::copy_base(&ended, &key), expected_base, "{stage}");
    }
}
