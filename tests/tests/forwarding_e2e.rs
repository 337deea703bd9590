//! End-to-end forwarding: real TCP connections from a client namespace to a VIP, steered by
//! xlb in native XDP mode (`dsr`, or `ipip` with the backends' `xlb_decap` stripping the
//! tunnel) to backend namespaces whose servers answer the client directly; the answers show
//! which backend the data plane chose.

use std::net::IpAddr;

use lb_common::Reason;
use lb_userspace::counters::Totals;
use xlb_tests::{
    require_privileges,
    topology::{CLIENT_MTU, Forwarding, Options, Topology, VIP_V4, VIP_V6},
};

/// Opens one connection to `vip` from each of the `total` source ports from `first` and
/// returns, per backend id, how many it answered; all must be. Bounded: one connection per
/// port, each with its own timeouts (speed is `cargo xtask bench`'s business, not this test's).
fn connect_all(topology: &Topology, vip: IpAddr, first: u16, total: u16) -> Vec<u64> {
    let mut answered = vec![0u64; topology.backends.len()];
    for sport in first..first + total {
        let id = topology
            .ask(vip, sport)
            .unwrap_or_else(|err| panic!("connection to {vip} from port {sport}: {err:#}"));
        answered[id as usize] += 1;
    }
    assert_eq!(answered.iter().sum::<u64>(), u64::from(total));
    answered
}

/// Asserts that backend `id`'s new-flow counter covers the `count` connections it answered
/// (one new flow per SYN: a retransmitted SYN counts again, so only a lower bound).
fn assert_new_flows_cover(topology: &Topology, id: usize, count: u64) {
    let stats = topology.backend_stats(id as u32).expect("backend stats");
    eprintln!("b{id}: {} new flows counted", stats.new_flows);
    assert!(
        stats.new_flows >= count,
        "b{id} answered {count} connections but counted {} new flows",
        stats.new_flows
    );
}

/// Asserts backend `id`'s `count` of `total` connections is a third, ± 5 points.
fn assert_third(id: usize, count: u64, total: u16, answered: &[u64]) {
    let share = count as f64 / f64::from(total);
    eprintln!(
        "b{id}: {count} of {total} connections ({:.1}%)",
        share * 100.0
    );
    assert!(
        (share - 1.0 / 3.0).abs() <= 0.05,
        "b{id} answered {count} of {total} connections ({:.1}%), not 33.3% ± 5: {answered:?}",
        share * 100.0
    );
}

/// Test that 600 real TCP connections to an IPv4 VIP over three equal backends are all
/// answered, each backend serving a third of them (±5 points), and that each backend's
/// new-flow counter covers the connections it answered.
#[test]
fn dsr_spreads_real_tcp_connections_by_weight() {
    require_privileges!();
    spread_in_thirds(Forwarding::Dsr, 20_000);
}

/// Test that real TCP connections to the IPv6 VIP are all answered, by all three backends.
#[test]
fn dsr_serves_the_ipv6_vip() {
    require_privileges!();
    let (topology, answered) = served_by_all(Forwarding::Dsr, 21_000);
    for (id, &count) in answered.iter().enumerate() {
        assert_new_flows_cover(&topology, id, count);
    }
}

/// Test that each connection is answered by the backend that the userspace reproduction of the
/// kernel's flow hash and Maglev lookup predicts, for both VIPs.
#[test]
fn dsr_connection_follows_the_predicted_backend() {
    require_privileges!();
    let topology = Topology::new("predict", &Options::equal(3)).expect("topology");
    for vip in [IpAddr::V4(VIP_V4), IpAddr::V6(VIP_V6)] {
        let client = Topology::client_addr(vip);
        let mut predicted_backends = vec![0u32; topology.backends.len()];
        for sport in 30_000..30_050 {
            let predicted = topology.service(vip).predict(client, sport);
            let answered = topology
                .ask(vip, sport)
                .unwrap_or_else(|err| panic!("connection to {vip} from port {sport}: {err:#}"));
            assert_eq!(
                answered, predicted,
                "{client}:{sport} -> {vip}: answered by b{answered}, predicted b{predicted}"
            );
            predicted_backends[predicted as usize] += 1;
        }
        // The check means little if every prediction named the same backend.
        assert!(
            predicted_backends.iter().filter(|&&n| n > 0).count() > 1,
            "{vip}: all 50 flows predicted on one backend: {predicted_backends:?}"
        );
    }
}

/// Three equal backends reached by `forwarding` (with `ipip`, its outer family).
fn equal_three(forwarding: Forwarding) -> Options {
    Options {
        forwarding,
        ..Options::equal(3)
    }
}

/// A fresh topology of [`equal_three`] and the answers per backend of `total`
/// connections to `vip` from source ports `first_sport` on (see [`connect_all`]).
fn answers(
    forwarding: Forwarding,
    vip: IpAddr,
    first_sport: u16,
    total: u16,
) -> (Topology, Vec<u64>) {
    let label = format!("spread{first_sport}");
    let topology = Topology::new(&label, &equal_three(forwarding)).expect("topology");
    let answered = connect_all(&topology, vip, first_sport, total);
    (topology, answered)
}

/// 600 connections to the IPv4 VIP from source ports `first_sport` on ([`answers`]), each
/// backend asserted to answer a third of them (±5 points) and to count them as new flows.
fn spread_in_thirds(forwarding: Forwarding, first_sport: u16) -> (Topology, Vec<u64>) {
    let total = 600u16;
    let (topology, answered) = answers(forwarding, IpAddr::V4(VIP_V4), first_sport, total);
    for (id, &count) in answered.iter().enumerate() {
        assert_third(id, count, total, &answered);
        assert_new_flows_cover(&topology, id, count);
    }
    (topology, answered)
}

/// 150 connections to the IPv6 VIP from source ports `first_sport` on ([`answers`]), every
/// backend asserted to answer some.
fn served_by_all(forwarding: Forwarding, first_sport: u16) -> (Topology, Vec<u64>) {
    let total = 150u16;
    let (topology, answered) = answers(forwarding, IpAddr::V6(VIP_V6), first_sport, total);
    eprintln!("{forwarding:?} answers per backend: {answered:?}");
    for (id, &count) in answered.iter().enumerate() {
        assert!(count > 0, "b{id} answered none of {total}: {answered:?}");
    }
    (topology, answered)
}

/// Test that 200 KB uploads through `ipip` VIPs whose tunnel MTU is the client's own (1500)
/// complete, for both VIPs and both outer families: xlb answers the client's full-size
/// segments with ICMP "fragmentation needed" / ICMPv6 "packet too big" carrying the MTU less
/// the outer header, the client's path MTU to the VIP drops to it, and the rest of the upload
/// crosses the tunnel in smaller segments.
#[test]
fn ipip_upload_larger_than_the_tunnel_mtu_completes() {
    require_privileges!();
    const BODY: usize = 200_000;
    for (label, forwarding, outer) in [
        ("tb4", Forwarding::IpipV4, 20),
        ("tb6", Forwarding::IpipV6, 40),
    ] {
        let options = Options {
            tunnel_mtu: CLIENT_MTU,
            ..equal_three(forwarding)
        };
        let topology = Topology::new(label, &options).expect("ipip topology");
        for (sport, vip) in [(25_000, IpAddr::V4(VIP_V4)), (25_001, IpAddr::V6(VIP_V6))] {
            let upload = topology.upload(vip, sport, BODY).unwrap_or_else(|err| {
                panic!(
                    "{forwarding:?}: upload to {vip} through a {CLIENT_MTU}-byte tunnel: {err:#}"
                )
            });
            assert_eq!(
                upload.received, BODY as u64,
                "{forwarding:?}: b{} read {} of the {BODY} bytes sent to {vip}",
                upload.backend, upload.received
            );
            assert_eq!(
                upload.path_mtu,
                CLIENT_MTU - outer,
                "{forwarding:?}: the client's path MTU to {vip} after the too-big answers"
            );
        }
        let totals = xlb_totals(&topology);
        let answered = totals.reason(Reason::TooBigAnswered).packets;
        assert!(
            answered >= 2,
            "{forwarding:?}: {answered} too-big answers sent"
        );
        assert_eq!(
            totals.reason(Reason::EncapTooBig).packets,
            0,
            "{forwarding:?}: packets dropped as too big"
        );
    }
}

/// xlb's counters on the lb, summed over CPUs.
fn xlb_totals(topology: &Topology) -> Totals {
    Totals::read(&topology.ebpf).expect("xlb counters")
}

/// Backend `id`'s decapsulation counters, summed over CPUs.
fn decap_totals(topology: &Topology, id: usize) -> Totals {
    Totals::read(&topology.decap[id]).expect("decap counters")
}

/// Asserts that every steered packet went through the tunnel (none by `dsr`, none dropped
/// for size), and that each backend's `xlb_decap` stripped at least one packet per connection
/// it answered (a connection's SYN and ACK both arrive tunnelled, so this is a lower bound).
fn assert_tunnelled(topology: &Topology, answered: &[u64]) {
    let xlb = xlb_totals(topology);
    eprint!("xlb on the lb:\n{}", xlb.render());
    assert_eq!(xlb.reason(Reason::ForwardedDsr).packets, 0, "{xlb:?}");
    assert_eq!(xlb.reason(Reason::EncapTooBig).packets, 0, "{xlb:?}");
    assert!(
        xlb.reason(Reason::ForwardedIpip).packets >= answered.iter().sum::<u64>(),
        "fewer packets tunnelled than connections answered: {xlb:?}"
    );
    for (id, &count) in answered.iter().enumerate() {
        let decap = decap_totals(topology, id);
        let stripped = decap.reason(Reason::Decapsulated).packets;
        eprintln!("b{id}: answered {count} connections, decapsulated {stripped} packets");
        assert!(
            stripped >= count,
            "b{id} answered {count} connections but decapsulated only {stripped} packets:\n{}",
            decap.render()
        );
    }
}

/// Test that 600 real TCP connections to an IPv4 VIP forwarding in `ipip` mode (IPv4 in
/// IPv4) over three equal backends are all answered, each backend serving a third of them
/// (±5 points), and that each backend's decapsulation program stripped at least as many
/// packets as the connections it answered.
#[test]
fn ipip_spreads_real_tcp_connections_by_weight() {
    require_privileges!();
    let (topology, answered) = spread_in_thirds(Forwarding::IpipV4, 22_000);
    assert_tunnelled(&topology, &answered);
}

/// Test that real TCP connections to the IPv6 VIP forwarding in `ipip` mode over IPv6
/// backends (IPv6 in IPv6) are all answered, by all three backends, every one of them through
/// the tunnel.
#[test]
fn ipip_serves_the_ipv6_vip() {
    require_privileges!();
    let (topology, answered) = served_by_all(Forwarding::IpipV6, 23_000);
    assert_tunnelled(&topology, &answered);
}

/// Test that 100 KB uploads through `ipip` VIPs, sent by a client with an ordinary 1500-byte
/// MTU in full-size segments, arrive whole, for both VIPs and both outer families (IPv4 in
/// IPv4, IPv6 in IPv4, IPv4 in IPv6, IPv6 in IPv6), with no packet dropped as `encap_too_big`.
///
/// The design under test raises the MTU between the lb and the backends (FABRIC_MTU, 1600)
/// and tells xlb so (`Config::mtu`), so a 1500-byte packet, 1520 or 1540 bytes once
/// tunnelled, is forwarded rather than dropped. Nothing clamps the client's MSS and no ICMP
/// lowers its path MTU: the test checks that the client's path MTU stayed at 1500 and that
/// the tunnelled frames were on average near full size, so the uploads really crossed the
/// tunnel in 1500-byte packets.
#[test]
fn ipip_large_request_stays_within_the_mtu() {
    require_privileges!();
    const BODY: usize = 100_000;
    const UPLOADS: u16 = 4;
    for (label, forwarding) in [("big4", Forwarding::IpipV4), ("big6", Forwarding::IpipV6)] {
        let topology = Topology::new(label, &equal_three(forwarding)).expect("ipip topology");
        let mut answered = vec![0u64; topology.backends.len()];
        for vip in [IpAddr::V4(VIP_V4), IpAddr::V6(VIP_V6)] {
            for sport in 24_000..24_000 + UPLOADS {
                let upload = topology.upload(vip, sport, BODY).unwrap_or_else(|err| {
                    panic!("{forwarding:?}: upload to {vip} from port {sport}: {err:#}")
                });
                assert_eq!(
                    upload.received, BODY as u64,
                    "{forwarding:?}: b{} read {} of the {BODY} bytes sent to {vip}",
                    upload.backend, upload.received
                );
                assert_eq!(
                    upload.path_mtu, CLIENT_MTU,
                    "{forwarding:?}: the client's path MTU to {vip} changed"
                );
                answered[upload.backend as usize] += 1;
            }
        }
        eprintln!("{forwarding:?}: uploads per backend {answered:?}");
        assert_tunnelled(&topology, &answered);
        let tunnelled = xlb_totals(&topology).reason(Reason::ForwardedIpip);
        let uploaded = BODY as u64 * u64::from(UPLOADS) * 2;
        assert!(
            tunnelled.bytes >= uploaded,
            "{forwarding:?}: {} bytes tunnelled for {uploaded} bytes uploaded",
            tunnelled.bytes
        );
        // Frames as received by xlb, Ethernet header included: a full-size packet is a
        // 1514-byte frame, and each upload adds about five small control frames to some 70
        // full ones. Segments clamped to 1400 bytes would bring the average near 1330.
        let average = tunnelled.bytes / tunnelled.packets;
        eprintln!(
            "{forwarding:?}: {} frames tunnelled, {average} bytes on average",
            tunnelled.packets
        );
        assert!(
            average >= 1380,
            "{forwarding:?}: tunnelled frames averaged {average} bytes: the uploads were not \
             sent in full-size segments"
        );
    }
}
