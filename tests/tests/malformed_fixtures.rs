//! Fixture tests through BPF_PROG_TEST_RUN of frames to VIP addresses and to addresses that
//! share a VIP's filter bit: transport headers must lie inside the IP packet (not in the
//! Ethernet trailer), TCP data offsets and UDP lengths must be consistent, other transports
//! to a VIP address are `other_l4`, and nothing to a non-VIP address is ever steered or
//! dropped (`not_vip`), however it collides with the filter. Each fixture runs on a freshly
//! loaded program, gets its verdict, exact output bytes, and one count under its reason.

use std::net::{IpAddr, Ipv4Addr};

use lb_common::{Reason, service::vip_filter_bit_v4};
use lb_userspace::steering;
use xlb_tests::{
    packets::{self, Flow},
    require_privileges,
    steering::{assert_counted, dsr_output, flow_key, load, run, table, vip_key},
};

const VIP_V4: &str = "198.18.1.10";
const VIP_V6: &str = "2001:db8:1::10";
/// Shares the IPv6 VIP's last 8 bytes, so its filter bit, but is no VIP address.
const NEIGHBOUR_V6: &str = "2001:db8:2::10";
const TABLE_SIZE: u32 = 13;
const IPPROTO_GRE: u8 = 47;
const IPPROTO_HOP_BY_HOP: u8 = 0;

/// An IPv4 test address that is no VIP address but has the IPv4 VIP's filter bit.
fn neighbour_v4() -> IpAddr {
    let vip: Ipv4Addr = VIP_V4.parse().unwrap();
    let bit = vip_filter_bit_v4(&vip.octets());
    (0..1u32 << 17)
        .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i))
        .find(|addr| *addr != vip && vip_filter_bit_v4(&addr.octets()) == bit)
        .expect("an address in 198.18.0.0/15 sharing the VIP's filter bit")
        .into()
}

/// What a fixture must come out as.
enum Output {
    Unchanged,
    /// Rewritten by dsr towards the backend the table gives the flow (`Flow`, protocol).
    Dsr(Flow, u8),
}

struct Fixture {
    name: &'static str,
    packet: Vec<u8>,
    reason: Reason,
    output: Output,
}

fn tcp4(dst: &str, dport: u16) -> Flow {
    Flow::new("198.18.0.1", dst, 40000, dport)
}

fn tcp6(dst: &str, dport: u16) -> Flow {
    Flow::new("2001:db8::1", dst, 40000, dport)
}

fn edited(mut packet: Vec<u8>, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    edit(&mut packet);
    packet
}

fn fixture(name: &'static str, packet: Vec<u8>, reason: Reason) -> Fixture {
    Fixture {
        name,
        packet,
        reason,
        output: Output::Unchanged,
    }
}

fn corpus() -> Vec<Fixture> {
    let neighbour_v4 = neighbour_v4().to_string();
    let neighbour_v4 = neighbour_v4.as_str();
    let syn4 = packets::tcp_syn(&tcp4(VIP_V4, 80));
    let syn6 = packets::tcp_syn(&tcp6(VIP_V6, 443));
    let udp4 = packets::udp(&tcp4(VIP_V4, 53), b"hello");
    let udp6 = packets::udp(&tcp6(VIP_V6, 53), b"hello");
    let trailer = |packet: &[u8], bytes: usize| {
        let mut frame = packet.to_vec();
        frame.resize(packet.len() + bytes, 0);
        frame
    };
    let ip4_len = |len: u16| move |p: &mut Vec<u8>| packets::set_ipv4_total_len(p, len);
    let ip6_len = |len: u16| move |p: &mut Vec<u8>| packets::set_ipv6_payload_len(p, len);
    let neighbour_syn4 = packets::tcp_syn(&tcp4(neighbour_v4, 80));
    let neighbour_syn6 = packets::tcp_syn(&tcp6(NEIGHBOUR_V6, 443));
    vec![
        Fixture {
            name: "ipv4 tcp syn with an Ethernet trailer",
            packet: trailer(&syn4, 6),
            reason: Reason::ForwardedDsr,
            output: Output::Dsr(tcp4(VIP_V4, 80), 6),
        },
        Fixture {
            name: "vlan-tagged ipv6 tcp syn",
            packet: packets::with_tags(&syn6, &[(0x8100, 42)]),
            reason: Reason::ForwardedDsr,
            output: Output::Dsr(tcp6(VIP_V6, 443), 6),
        },
        fixture(
            "ipv4 tcp header wholly in the Ethernet trailer",
            edited(syn4.clone(), ip4_len(20)),
            Reason::Truncated,
        ),
        fixture(
            "ipv4 tcp header half past the IP length",
            edited(syn4.clone(), ip4_len(30)),
            Reason::Truncated,
        ),
        fixture(
            "ipv6 tcp header half past the IP length",
            edited(syn6.clone(), ip6_len(10)),
            Reason::Truncated,
        ),
        fixture(
            "tcp data offset 4",
            edited(syn4.clone(), |p| packets::set_tcp_data_offset(p, 4)),
            Reason::BadHeader,
        ),
        fixture(
            "ipv6 tcp data offset 0",
            edited(syn6.clone(), |p| packets::set_tcp_data_offset(p, 0)),
            Reason::BadHeader,
        ),
        fixture(
            "tcp options past the IP length, into the Ethernet trailer",
            edited(trailer(&syn4, 4), |p| packets::set_tcp_data_offset(p, 6)),
            Reason::Truncated,
        ),
        fixture(
            "ipv6 tcp options past the end of the frame",
            edited(syn6.clone(), |p| packets::set_tcp_data_offset(p, 15)),
            Reason::Truncated,
        ),
        fixture(
            "ipv6 udp header half past the IP length",
            edited(udp6.clone(), ip6_len(4)),
            Reason::Truncated,
        ),
        fixture(
            "udp length 7",
            edited(udp4.clone(), |p| packets::set_udp_len(p, 7)),
            Reason::BadHeader,
        ),
        fixture(
            "ipv6 udp length one past the IP payload",
            edited(udp6.clone(), |p| packets::set_udp_len(p, 8 + 5 + 1)),
            Reason::BadHeader,
        ),
        Fixture {
            // RFC 768 allows it; the receiving stack trims the datagram to the UDP length.
            name: "udp length shorter than the IP payload",
            packet: edited(udp4.clone(), |p| packets::set_udp_len(p, 8)),
            reason: Reason::ForwardedDsr,
            output: Output::Dsr(tcp4(VIP_V4, 53), 17),
        },
        fixture(
            "gre to the VIP address",
            edited(udp4.clone(), |p| packets::set_ip_proto(p, IPPROTO_GRE)),
            Reason::OtherL4,
        ),
        fixture(
            "ipv6 hop-by-hop header to the VIP address",
            edited(udp6.clone(), |p| {
                packets::set_ip_proto(p, IPPROTO_HOP_BY_HOP)
            }),
            Reason::OtherL4,
        ),
        fixture(
            "tcp to a port the VIP address does not serve",
            packets::tcp_syn(&tcp4(VIP_V4, 22)),
            Reason::NotVip,
        ),
        fixture(
            "gre to an address sharing the VIP's filter bit",
            edited(packets::udp(&tcp4(neighbour_v4, 53), b"x"), |p| {
                packets::set_ip_proto(p, IPPROTO_GRE)
            }),
            Reason::NotVip,
        ),
        fixture(
            "ipv6 hop-by-hop header to an address sharing the VIP's last 8 bytes",
            edited(packets::udp(&tcp6(NEIGHBOUR_V6, 53), b"x"), |p| {
                packets::set_ip_proto(p, IPPROTO_HOP_BY_HOP)
            }),
            Reason::NotVip,
        ),
        fixture(
            "tcp header cut, to an address sharing the VIP's filter bit",
            edited(neighbour_syn4.clone(), ip4_len(30)),
            Reason::NotVip,
        ),
        fixture(
            "ipv6 tcp header cut, to an address sharing the VIP's last 8 bytes",
            edited(neighbour_syn6.clone(), |p| {
                packets::set_ipv6_payload_len(p, 10);
                p.truncate(packets::ETH_LEN + 40 + 10);
            }),
            Reason::NotVip,
        ),
        fixture(
            "ipv6 tcp data offset 4, to an address sharing the VIP's last 8 bytes",
            edited(neighbour_syn6, |p| packets::set_tcp_data_offset(p, 4)),
            Reason::NotVip,
        ),
        fixture(
            "ipv6 tcp syn to an address sharing the VIP's last 8 bytes",
            packets::tcp_syn(&tcp6(NEIGHBOUR_V6, 443)),
            Reason::NotVip,
        ),
    ]
}

/// Test that every fixture to a VIP address or its filter-bit neighbour gets its verdict, its
/// exact output bytes, and one count under its reason and verdict, nothing else.
#[test]
fn every_fixture_gets_its_reason_and_exact_output() {
    require_privileges!();
    let vips = [
        (vip_key(VIP_V4, 80, 6), 0),
        (vip_key(VIP_V4, 53, 17), 0),
        (vip_key(VIP_V6, 443, 6), 0),
        (vip_key(VIP_V6, 53, 17), 0),
    ];
    let backends = table(&[0, 1, 2], TABLE_SIZE);
    for fixture in corpus() {
        let (mut ebpf, vip) = load(&vips, TABLE_SIZE);
        let expected = match fixture.output {
            Output::Unchanged => fixture.packet.clone(),
            Output::Dsr(flow, proto) => {
                let slot = steering::slot(&vip, &flow_key(&flow, proto));
                dsr_output(&fixture.packet, backends[slot as usize])
            }
        };
        assert_eq!(
            run(&mut ebpf, &fixture.packet),
            (Some(fixture.reason.verdict()), expected),
            "{}: verdict and output bytes",
            fixture.name
        );
        assert_counted(
            &ebpf,
            fixture.reason,
            1,
            fixture.packet.len() as u64,
            fixture.name,
        );
    }
}
