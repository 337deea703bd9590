//! Kernel-backed tests of the flow table (set-associative, in an array map): second-chance
//! replacement in a full set, the backend cookie that stops a flow from following a re-bound
//! id, torn slots read as stale, the set count told to the program matching the map's size
//! (also when a pinned table is adopted), and a re-bound id through a real apply.

use aya::Ebpf;
use lb_common::{
    Backend, Event, FlowSlot, PROGRAM_NAME, Reason, Verdict, Vip,
    flow::FLOW_WAYS,
    flow_hash, map_names,
    service::{BACKEND_ACTIVE, FAMILY_IPV4},
};
use lb_userspace::{counters::Totals, flow_table, object, steering, testrun};
use xlb_tests::{
    live::{self, LiveXlb},
    netns::Lab,
    packets::{self, Flow},
    require_privileges,
    steering::{BACKENDS, backend_mac, configure, flow_key, load, load_sized, vip_key},
};

const VIP: &str = "198.18.1.10";

/// Runs one packet; returns the verdict and the backend id the output MAC names.
fn run(ebpf: &mut Ebpf, packet: &[u8]) -> (Option<Verdict>, u32) {
    let program = object::xdp_program(ebpf, PROGRAM_NAME).expect("program");
    let outcome = testrun::run(program, packet).expect("test run");
    (
        Verdict::from_code(outcome.code),
        u32::from(outcome.output[5]),
    )
}

fn flow(sport: u16) -> Flow {
    Flow::new("198.18.0.1", VIP, sport, 80)
}

fn event(ebpf: &Ebpf, event: Event) -> u64 {
    Totals::read(ebpf).expect("counters").event(event).packets
}

fn remembered(ebpf: &Ebpf, sport: u16) -> Option<FlowSlot> {
    flow_table::lookup(ebpf, &flow_key(&flow(sport), 6)).expect("flow table")
}

/// The program with the one VIP over the test backends (table size 13), after a SYN from
/// `sport`; returns it, the VIP and the backend the SYN went to.
fn first_syn(sport: u16) -> (Ebpf, Vip, u32) {
    let (mut ebpf, vip) = load(&[(vip_key(VIP, 80, 6), 0)], 13);
    let (_, backend) = run(&mut ebpf, &packets::tcp_syn(&flow(sport)));
    (ebpf, vip, backend)
}

/// Test that in a full set the flow a packet used since the last insert survives the next
/// insert, and exactly one of the unused ones makes room (second chance).
#[test]
fn full_set_keeps_the_flow_used_since_the_last_insert() {
    require_privileges!();
    // One set: every flow shares it.
    let (mut ebpf, _) = load_sized(&[(map_names::FLOWS, 1)], &[(vip_key(VIP, 80, 6), 0)], 13);
    let ways = FLOW_WAYS as u16;
    let (used, unused) = (40_000, 40_001..40_000 + ways);
    for sport in 40_000..40_000 + ways {
        assert_eq!(
            run(&mut ebpf, &packets::tcp_syn(&flow(sport))).0,
            Some(Verdict::Tx)
        );
        assert!(
            remembered(&ebpf, sport).is_some(),
            "flow {sport} remembered"
        );
    }
    let (verdict, _) = run(&mut ebpf, &packets::tcp_ack(&flow(used), b"x"));
    assert_eq!(verdict, Some(Verdict::Tx));
    assert_eq!(event(&ebpf, Event::FlowHit), 1, "the ACK hit the table");

    let newcomer = 40_000 + ways;
    assert_eq!(
        run(&mut ebpf, &packets::tcp_syn(&flow(newcomer))).0,
        Some(Verdict::Tx)
    );
    assert!(remembered(&ebpf, newcomer).is_some(), "the new flow is in");
    assert!(remembered(&ebpf, used).is_some(), "the used flow stayed");
    let unused_left = unused
        .filter(|sport| remembered(&ebpf, *sport).is_some())
        .count();
    assert_eq!(
        unused_left,
        FLOW_WAYS - 2,
        "exactly one unused flow was evicted"
    );
}

/// Test that a remembered flow follows its backend only while the backend's cookie is the one
/// it was remembered with: a re-bound id (new cookie, still active) sends the flow back to the
/// table as flow_stale.
#[test]
fn remembered_flow_does_not_follow_a_re_bound_backend_id() {
    require_privileges!();
    let (mut ebpf, _, first) = first_syn(41_000);
    let slot = remembered(&ebpf, 41_000).expect("remembered");
    assert_eq!(slot.backend, first);

    // Same id, same MAC, still active: only the cookie says it is another backend now.
    let rebound = Backend {
        mac: backend_mac(first),
        family: FAMILY_IPV4,
        flags: BACKEND_ACTIVE,
        cookie: slot.cookie + 1,
        ..Backend::default()
    };
    steering::set_backend(&mut ebpf, first, &rebound).expect("re-bind");
    let stale = event(&ebpf, Event::FlowStale);
    let (verdict, _) = run(&mut ebpf, &packets::tcp_ack(&flow(41_000), b"x"));
    assert_eq!(verdict, Some(Verdict::Tx));
    assert_eq!(
        event(&ebpf, Event::FlowStale),
        stale + 1,
        "re-hashed as stale"
    );
    assert_eq!(event(&ebpf, Event::FlowHit), 0);
    let renewed = remembered(&ebpf, 41_000).expect("remembered again");
    assert_eq!(
        renewed.cookie,
        slot.cookie + 1,
        "remembered under the new cookie"
    );
}

/// Test that a slot whose fields do not match its check (as when two CPUs write it at once) is
/// never followed: the packet goes to the table's choice as flow_stale.
#[test]
fn torn_slot_is_stale_and_never_followed() {
    require_privileges!();
    let (mut ebpf, vip, choice) = first_syn(42_000);
    let other = (choice + 1) % BACKENDS;
    let flow_key = flow_key(&flow(42_000), 6);
    // A whole slot for the table's choice, then another writer's backend over it.
    let mut torn = FlowSlot::new(
        flow_key,
        flow_hash(&flow_key, false),
        choice,
        0,
        vip.id,
        vip.flags,
    );
    torn.backend = other;
    flow_table::remember(&mut ebpf, &torn).expect("stage a torn slot");
    assert!(
        remembered(&ebpf, 42_000).is_none(),
        "userspace sees no whole slot"
    );

    let (verdict, to) = run(&mut ebpf, &packets::tcp_ack(&flow(42_000), b"x"));
    assert_eq!(
        (verdict, to),
        (Some(Verdict::Tx), choice),
        "the table's choice"
    );
    assert_eq!(event(&ebpf, Event::FlowStale), 1);
    assert_eq!(event(&ebpf, Event::FlowHit), 0);
}

/// Test that the program indexes the flow table by the map's real number of sets: a resized
/// table, and a pinned table adopted by a load that asks for another size, both hold every
/// flow where userspace looks for it, and ACKs hit.
#[test]
fn program_uses_the_flow_table_size_it_was_loaded_with() {
    require_privileges!();
    let key = vip_key(VIP, 80, 6);
    let check = |ebpf: &mut Ebpf, sports: std::ops::Range<u16>| {
        for sport in sports {
            run(ebpf, &packets::tcp_syn(&flow(sport)));
            assert!(
                remembered(ebpf, sport).is_some(),
                "flow {sport} where expected"
            );
            let hits = event(ebpf, Event::FlowHit);
            run(ebpf, &packets::tcp_ack(&flow(sport), b"x"));
            assert_eq!(
                event(ebpf, Event::FlowHit),
                hits + 1,
                "ACK from {sport} hit"
            );
        }
    };
    let (mut resized, _) = load_sized(&[(map_names::FLOWS, 8)], &[(key, 0)], 13);
    check(&mut resized, 43_000..43_040);

    let mut lab = Lab::new("flow-sets").expect("lab");
    let pins = lab.pin_dir("pins").expect("pin directory");
    let load_pinned = |sets: u32| {
        object::load_pinned(
            object::XDP_OBJECT,
            PROGRAM_NAME,
            &[(map_names::FLOWS, sets)],
            &map_names::XLB,
            &pins,
        )
        .expect("load pinned")
    };
    drop(load_pinned(8));
    let mut adopted = load_pinned(4096);
    configure(&mut adopted, &[(key, 0)], 13);
    check(&mut adopted, 44_000..44_040);
}

/// Test that through real applies, a flow remembered on a backend that is removed, and whose
/// id a later apply gives to a new backend, is re-hashed (flow_stale), not sent to the new
/// backend as if it were the old one.
#[test]
fn apply_gives_a_reused_backend_id_a_new_cookie() {
    require_privileges!();
    let mut live = LiveXlb::new("flow-cookie");
    let applied = live.apply(&live::EQUAL);
    let vip = &applied.vips[0];
    let gone = vip.backend_ids[2];
    let sport = (30_000..40_000)
        .find(|sport| live::predicted(vip, *sport) == gone)
        .expect("a flow to the third backend");
    live.send_syns([sport]);
    let old = flow_table::lookup(&live.ebpf, &flow_key(&live::flow(sport), 6))
        .expect("flow table")
        .expect("remembered");
    assert_eq!(old.backend, gone);

    live.apply(&live::EQUAL[..2]);
    let reused = live.apply(&[live::EQUAL[0], live::EQUAL[1], ("198.18.0.20", 1)]);
    assert_eq!(
        reused.vips[0].backend_ids[2], gone,
        "the new backend took the freed id"
    );
    let ack = packets::tcp_ack(&live::flow(sport), b"x");
    let program = object::xdp_program(&mut live.ebpf, PROGRAM_NAME).expect("program");
    let outcome = testrun::run(program, &ack).expect("test run");
    assert_eq!(Verdict::from_code(outcome.code), Some(Verdict::Tx));
    let totals = Totals::read(&live.ebpf).expect("counters");
    assert_eq!(
        totals.event(Event::FlowStale).packets,
        1,
        "re-hashed as stale"
    );
    assert_eq!(totals.event(Event::FlowHit).packets, 0);
    assert_eq!(totals.reason(Reason::ForwardedDsr).packets, 2);
}
