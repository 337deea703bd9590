//! Fixture tests of ICMP steering through BPF_PROG_TEST_RUN: "fragmentation needed" and
//! "packet too big" errors about a VIP's flow go to the backend that owns the flow; other ICMP
//! stays with the host.

use lb_common::{Reason, Verdict};
use lb_userspace::counters::Totals;
use xlb_tests::{
    packets::{self, Flow, LB_MAC},
    require_privileges,
    steering::{assert_counted, backend_mac, load_vips, predicted_backend, run},
};

/// Test that an ICMP "fragmentation needed" and an ICMPv6 "packet too big" about a connection
/// to the VIP reach the backend that the connection itself is sent to (dsr rewrite only).
#[test]
fn too_big_errors_follow_their_flow_to_its_backend() {
    require_privileges!();
    for (vip, client, router) in [
        ("198.18.1.10", "198.18.0.1", "198.18.3.1"),
        ("2001:db8:1::10", "2001:db8::1", "2001:db8:3::1"),
    ] {
        let (mut ebpf, config) = load_vips(&[(vip, 80, 6)]);
        let flow = Flow::new(client, vip, 40000, 80);
        let owner = predicted_backend(&config, &flow, 6);
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

/// Test that ICMP to a VIP address that is not a too-big error about a VIP flow passes to the
/// host untouched as `other_l4` (README's reasons table): an echo request, a too-big error
/// about a port the VIP address does not serve, and one quoting a packet from another address.
#[test]
fn other_icmp_to_a_vip_address_passes_as_other_l4() {
    require_privileges!();
    let (mut ebpf, _) = load_vips(&[("198.18.1.10", 80, 6)]);
    let echo = packets::icmpv4_echo(&Flow::new("198.18.0.1", "198.18.1.10", 0, 0));
    let other_port =
        packets::icmp_too_big("198.18.3.1", &Flow::new("198.18.0.1", "198.18.1.10", 1, 22));
    // About a packet 198.18.1.11 sent, but delivered to the VIP address.
    let mut other_source =
        packets::icmp_too_big("198.18.3.1", &Flow::new("198.18.0.1", "198.18.1.11", 1, 80));
    packets::set_ip_dst(&mut other_source, "198.18.1.10".parse().unwrap());
    let mut bytes = 0;
    for packet in [echo, other_port, other_source] {
        assert_eq!(
            run(&mut ebpf, &packet),
            (Some(Verdict::Pass), packet.clone())
        );
        bytes += packet.len() as u64;
    }
    assert_counted(&ebpf, Reason::OtherL4, 3, bytes, "ICMP to the VIP address");
}

/// Test that a too-big error to an address that only shares a VIP's filter bit (an IPv6
/// address with the VIP's last 8 bytes, an IPv4 address with the same bit) is never steered,
/// even when it quotes a packet of a live VIP flow: it passes untouched as `not_vip`.
#[test]
fn too_big_to_a_filter_bit_neighbour_passes_as_not_vip() {
    require_privileges!();
    let ipv4 = "198.18.1.10".parse::<std::net::Ipv4Addr>().unwrap();
    let bit = lb_common::service::vip_filter_bit_v4(&ipv4.octets());
    let neighbour_v4 = (1..=u32::from(u16::MAX))
        .map(|i| std::net::Ipv4Addr::from(u32::from(ipv4) + i))
        .find(|addr| lb_common::service::vip_filter_bit_v4(&addr.octets()) == bit)
        .expect("an IPv4 test address sharing the VIP's filter bit");
    for (vip, client, router, neighbour) in [
        (
            "198.18.1.10",
            "198.18.0.1",
            "198.18.3.1",
            neighbour_v4.to_string(),
        ),
        (
            "2001:db8:1::10",
            "2001:db8::1",
            "2001:db8:3::1",
            "2001:db8:2::10".to_owned(),
        ),
    ] {
        let (mut ebpf, _) = load_vips(&[(vip, 80, 6)]);
        let flow = Flow::new(client, vip, 40000, 80);
        let syn = packets::tcp_syn(&flow);
        assert_eq!(run(&mut ebpf, &syn).0, Some(Verdict::Tx), "{vip}: SYN");
        // About the live flow, but sent to the neighbour.
        let mut about_vip = packets::icmp_too_big(router, &flow);
        packets::set_ip_dst(&mut about_vip, neighbour.parse().unwrap());
        // About the neighbour's own packet, to the neighbour.
        let about_neighbour =
            packets::icmp_too_big(router, &Flow::new(client, &neighbour, 40000, 80));
        for packet in [&about_vip, &about_neighbour] {
            assert_eq!(
                run(&mut ebpf, packet),
                (Some(Verdict::Pass), packet.clone()),
                "{vip}: too-big to {neighbour}"
            );
        }
        let totals = Totals::read(&ebpf).unwrap();
        assert_eq!(totals.reason(Reason::NotVip).packets, 2, "{vip}");
        assert_eq!(totals.reason(Reason::IcmpSteered).packets, 0, "{vip}");
        assert_eq!(totals.reason(Reason::ForwardedDsr).packets, 1, "{vip}");
    }
}

/// Test that a too-big error whose quoted packet is cut short is left to the host as
/// `other_l4`.
#[test]
fn truncated_quote_passes_to_the_host() {
    require_privileges!();
    let (mut ebpf, _) = load_vips(&[("198.18.1.10", 80, 6)]);
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
