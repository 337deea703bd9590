//! End-to-end forwarding: real TCP connections from a client namespace to a VIP, steered by
//! xlb in native XDP mode (`dsr`) to backend namespaces whose servers answer the client
//! directly; the answers show which backend the data plane chose.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use xlb_tests::{
    require_privileges,
    topology::{Options, Topology, VIP_V4, VIP_V6},
};

/// Opens one connection to `vip` from each source port in `ports` and returns, per backend id,
/// how many it answered. Bounded: every connection has its own timeouts, and the whole loop
/// must finish within `budget`.
fn connect_all(
    topology: &Topology,
    vip: IpAddr,
    ports: std::ops::Range<u16>,
    budget: Duration,
) -> Vec<u64> {
    let deadline = Instant::now() + budget;
    let mut answered = vec![0u64; topology.backends.len()];
    for sport in ports {
        assert!(
            Instant::now() < deadline,
            "connections to {vip} took longer than {budget:?} (at source port {sport})"
        );
        let id = topology
            .ask(vip, sport)
            .unwrap_or_else(|err| panic!("connection to {vip} from port {sport}: {err:#}"));
        answered[id as usize] += 1;
    }
    answered
}

/// Test that 600 real TCP connections to an IPv4 VIP over three equal backends are all
/// answered, each backend serving a third of them (±5 points), and that each backend's
/// new-flow counter covers the connections it answered.
#[test]
fn dsr_spreads_real_tcp_connections_by_weight() {
    require_privileges!();
    let topology = Topology::new("spread4", &Options::equal(3)).expect("topology");
    let total = 600u16;
    let answered = connect_all(
        &topology,
        IpAddr::V4(VIP_V4),
        20_000..20_000 + total,
        Duration::from_secs(40),
    );
    assert_eq!(answered.iter().sum::<u64>(), u64::from(total));
    for (id, &count) in answered.iter().enumerate() {
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
        let stats = topology.backend_stats(id as u32).expect("backend stats");
        eprintln!("b{id}: {} new flows counted", stats.new_flows);
        // One new flow per SYN: a retransmitted SYN counts again, so only a lower bound.
        assert!(
            stats.new_flows >= count,
            "b{id} answered {count} connections but counted {} new flows",
            stats.new_flows
        );
    }
}

/// Test that real TCP connections to the IPv6 VIP are all answered, by all three backends.
#[test]
fn dsr_serves_the_ipv6_vip() {
    require_privileges!();
    let topology = Topology::new("spread6", &Options::equal(3)).expect("topology");
    let total = 150u16;
    let answered = connect_all(
        &topology,
        IpAddr::V6(VIP_V6),
        21_000..21_000 + total,
        Duration::from_secs(20),
    );
    eprintln!("IPv6 answers per backend: {answered:?}");
    assert_eq!(answered.iter().sum::<u64>(), u64::from(total));
    for (id, &count) in answered.iter().enumerate() {
        assert!(count > 0, "b{id} answered none of {total}: {answered:?}");
        let stats = topology.backend_stats(id as u32).expect("backend stats");
        assert!(
            stats.new_flows >= count,
            "b{id} answered {count} connections but counted {} new flows",
            stats.new_flows
        );
    }
}

/// Test that each connection is answered by the backend that the userspace reproduction of the
/// kernel's flow hash and Maglev lookup predicts, for both VIPs.
#[test]
fn dsr_connection_follows_the_predicted_backend() {
    require_privileges!();
    let topology = Topology::new("predict", &Options::equal(3)).expect("topology");
    let deadline = Instant::now() + Duration::from_secs(30);
    for vip in [IpAddr::V4(VIP_V4), IpAddr::V6(VIP_V6)] {
        let client = Topology::client_addr(vip);
        let mut predicted_backends = vec![0u32; topology.backends.len()];
        for sport in 30_000..30_050 {
            assert!(Instant::now() < deadline, "connections took over 30 s");
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
