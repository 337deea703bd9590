//! Fixture tests of ICMP steering through BPF_PROG_TEST_RUN: "fragmentation needed" and
//! "packet too big" errors about a VIP's flow go to the backend that owns the flow; other ICMP
//! stays with the host.

use lb_common::{PROGRAM_NAME, Reason, Verdict};
use lb_userspace::{counters::Totals, object, steering, testrun};
use xlb_tests::{
    packets::{self, Flow, LB_MAC},
    require_privileges,
    steering::{backend_mac, flow_key, load, table, vip_key},
};

/// Runs one packet and returns its verdict and output.
fn run(ebpf: &mut aya::Ebpf, packet: &[u8]) -> (Option<Verdict>, Vec<u8>) {
    let program = object::xdp_program(ebpf, PROGRAM_NAME).expect("program");
    let outcome = testrun::run(program, packet).expect("test run");
    (Verdict::from_code(outcome.code), outcome.output)
}

/// Test that an ICMP "fragmentation needed" and an ICMPv6 "packet too big" about a connection
/// to the VIP reach the backend that the connection itself is sent to (dsr rewrite only).
#[test]
fn too_big_errors_follow_their_flow_to_its_backend() {
    require_privileges!();
    for (vip, client, router) in [
        ("198.18.1.10", "198.18.0.1", "198.18.3.1"),
        ("2001:db8:1::10", "2001:db8::1", "2001:db8:3::1"),
    ] {
        let (mut ebpf, config) = load(&[(vip_key(vip, 80, 6), 0)], 13);
        let flow = Flow::new(client, vip, 40000, 80);
        let owner = table(&[0, 1, 2], 13)[steering::slot(&config, &flow_key(&flow, 6)) as usize];
        // The connection's own SYN goes to `owner`...
        let (_, out) = run(&mut ebpf, &packets::tcp_syn(&flow));
        assert_eq!(out[..6], backend_mac(owner), "{vip}: SYN");
        // ...and so does the router's error about the VIP's reply.
        let error = packets::icmp_too_big(router, &flow);
        let mut expected = error.clone();
        expected[..6].copy_from_slice(&backend_mac(owner));
        expected[6..12].copy_from_slice(&LB_MAC);
        assert_eq!(
            run(&mut ebpf, &error),
            (Some(Verdict::Tx), expected),
            "{vip}: ICMP"
        );
        assert_eq!(
            Totals::read(&ebpf)
                .unwrap()
                .reason(Reason::IcmpSteered)
                .packets,
            1,
            "{vip}"
        );
    }
}

/// Test that ICMP that is not a too-big error about a VIP flow passes to the host untouched:
/// an echo request to the VIP, and a too-big error about a port that is not the VIP's.
#[test]
fn other_icmp_passes_to_the_host() {
    require_privileges!();
    let (mut ebpf, _) = load(&[(vip_key("198.18.1.10", 80, 6), 0)], 13);
    let echo = packets::icmpv4_echo(&Flow::new("198.18.0.1", "198.18.1.10", 0, 0));
    assert_eq!(run(&mut ebpf, &echo), (Some(Verdict::Pass), echo.clone()));
    let other = packets::icmp_too_big("198.18.3.1", &Flow::new("198.18.0.1", "198.18.1.10", 1, 22));
    assert_eq!(run(&mut ebpf, &other), (Some(Verdict::Pass), other.clone()));
    let totals = Totals::read(&ebpf).unwrap();
    assert_eq!(totals.reason(Reason::OtherL4).packets, 1);
    assert_eq!(totals.reason(Reason::NotVip).packets, 1);
}

/// Test that a too-big error whose quoted packet is cut short is left to the host.
#[test]
fn truncated_quote_passes_to_the_host() {
    require_privileges!();
    let (mut ebpf, _) = load(&[(vip_key("198.18.1.10", 80, 6), 0)], 13);
    let whole = packets::icmp_too_big("198.18.3.1", &Flow::new("198.18.0.1", "198.18.1.10", 4, 80));
    // Cut inside the quoted TCP ports, and fix the IP total length to match the cut.
    let mut cut = whole[..whole.len() - 6].to_vec();
    let ip_len = (cut.len() - packets::ETH_LEN) as u16;
    packets::set_ipv4_total_len(&mut cut, ip_len);
    assert_eq!(run(&mut ebpf, &cut), (Some(Verdict::Pass), cut.clone()));
    assert_eq!(
        Totals::read(&ebpf).unwrap().reason(Reason::OtherL4).packets,
        1
    );
}
