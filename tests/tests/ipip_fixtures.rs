//! Fixture tests of `ipip` forwarding through BPF_PROG_TEST_RUN: exact tunnel frames for every
//! combination of inner and outer family, VLAN tags kept, and the MTU limit.

use std::net::IpAddr;

use lb_common::{Config, Reason, Verdict, service::VIP_FORWARD_IPIP};
use lb_userspace::{counters::Totals, steering};
use xlb_tests::{
    packets::{self, Flow},
    require_privileges,
    steering::{
        addr_bytes, assert_counted, backend_addr, backend_mac, flow_key, load, predicted_backend,
        run, tunnelled, use_ipip, vip_key,
    },
};

/// The program with an ipip VIP at `vip`:80/TCP, backends of the family `v6_backends` picks,
/// and `mtu`.
fn ipip_program(vip: &str, v6_backends: bool, mtu: u32) -> (aya::Ebpf, lb_common::Vip) {
    let (mut ebpf, config) = load(&[(vip_key(vip, 80, 6), VIP_FORWARD_IPIP)], 13);
    use_ipip(&mut ebpf, v6_backends, mtu);
    (ebpf, config)
}

/// (VIP, client, backends on IPv6): IPv4 in IPv4, IPv6 in IPv6, IPv6 in IPv4, IPv4 in IPv6.
const FAMILY_PAIRS: [(&str, &str, bool); 4] = [
    ("198.18.1.10", "198.18.0.1", false),
    ("2001:db8:1::10", "2001:db8::1", true),
    ("2001:db8:1::10", "2001:db8::1", false),
    ("198.18.1.10", "198.18.0.1", true),
];

/// Test that a SYN to an ipip VIP leaves as exactly the expected tunnel frame towards the
/// predicted backend, for IPv4 in IPv4, IPv6 in IPv6, IPv6 in IPv4 and IPv4 in IPv6.
#[test]
fn syn_is_tunnelled_to_the_predicted_backend_in_every_family_pair() {
    require_privileges!();
    for (vip, client, v6_backends) in FAMILY_PAIRS {
        let (mut ebpf, config) = ipip_program(vip, v6_backends, 1500);
        let flow = Flow::new(client, vip, 40000, 80);
        let syn = packets::tcp_syn(&flow);
        let id = predicted_backend(&config, &flow, 6);
        let what = format!(
            "{vip} via {} backends",
            if v6_backends { "IPv6" } else { "IPv4" }
        );
        assert_eq!(
            run(&mut ebpf, &syn),
            (Some(Verdict::Tx), tunnelled(&syn, id, v6_backends)),
            "{what}"
        );
        let totals = Totals::read(&ebpf).unwrap();
        assert_eq!(totals.reason(Reason::ForwardedIpip).packets, 1, "{what}");
        assert_eq!(
            totals.reason(Reason::ForwardedIpip).bytes,
            syn.len() as u64,
            "{what}: bytes as received"
        );
    }
}

/// An 802.1Q tag (VLAN 42) as a frame carries it, after the MAC addresses.
const TAG: [u8; 4] = [0x81, 0x00, 0x00, 42];

/// `frame` with [`TAG`] after its MAC addresses.
fn tagged(frame: &[u8]) -> Vec<u8> {
    let mut tagged = frame.to_vec();
    tagged.splice(12..12, TAG);
    tagged
}

/// Test that a VLAN-tagged packet keeps its tag in front of the outer header, for every pair
/// of inner and outer family, and in front of the too-big answer it gets when the tunnel would
/// take it over the MTU.
#[test]
fn vlan_tag_stays_in_front_of_the_tunnel_and_the_too_big_answer() {
    require_privileges!();
    for (vip, client, v6_backends) in FAMILY_PAIRS {
        let what = format!("{vip}, IPv6 backends: {v6_backends}");
        let (mut ebpf, config) = ipip_program(vip, v6_backends, 1500);
        let flow = Flow::new(client, vip, 40000, 80);
        let ack = packets::tcp_ack(&flow, b"GET /");
        let id = predicted_backend(&config, &flow, 6);
        assert_eq!(
            run(&mut ebpf, &tagged(&ack)),
            (Some(Verdict::Tx), tagged(&tunnelled(&ack, id, v6_backends))),
            "{what}"
        );
        let outer = if v6_backends { 40 } else { 20 };
        let headers = if flow.dst.is_ipv4() { 40 } else { 60 };
        let too_big = packets::tcp_ack(&flow, &vec![7u8; 1500 - outer - headers + 1]);
        let answer = packets::too_big_answer(&too_big, (1500 - outer) as u16);
        assert_eq!(
            run(&mut ebpf, &tagged(&too_big)),
            (Some(Verdict::Tx), tagged(&answer)),
            "{what}: too big"
        );
    }
}

/// Test that a packet that would exceed the MTU once tunnelled is answered with exactly the
/// expected ICMP "fragmentation needed" (IPv4 with DF) or ICMPv6 "packet too big" carrying the
/// MTU less the outer header, sent back to the client (too_big_answered); an IPv4 packet
/// without DF is dropped as encap_too_big; one that fits exactly is tunnelled.
#[test]
fn packet_too_big_for_the_tunnel_is_answered_with_the_tunnel_mtu() {
    require_privileges!();
    for (vip, client) in [
        ("198.18.1.10", "198.18.0.1"),
        ("2001:db8:1::10", "2001:db8::1"),
    ] {
        for (v6_backends, outer) in [(false, 20), (true, 40)] {
            let what = format!("{vip} with a {outer}-byte outer header");
            let (mut ebpf, _) = ipip_program(vip, v6_backends, 1500);
            let flow = Flow::new(client, vip, 40000, 80);
            let headers = if flow.dst.is_ipv4() { 40 } else { 60 };
            // The inner packet fills the MTU minus the outer header, or one byte more.
            let fits = packets::tcp_ack(&flow, &vec![0u8; 1500 - outer - headers]);
            let too_big = packets::tcp_ack(&flow, &vec![7u8; 1500 - outer - headers + 1]);
            assert_eq!(run(&mut ebpf, &fits).0, Some(Verdict::Tx), "{what}: fits");
            let answer = packets::too_big_answer(&too_big, (1500 - outer) as u16);
            assert_eq!(
                run(&mut ebpf, &too_big),
                (Some(Verdict::Tx), answer),
                "{what}: too big"
            );
            let totals = Totals::read(&ebpf).unwrap();
            assert_eq!(totals.reason(Reason::ForwardedIpip).packets, 1, "{what}");
            assert_eq!(
                totals.reason(Reason::TooBigAnswered),
                lb_common::Counter {
                    packets: 1,
                    bytes: too_big.len() as u64
                },
                "{what}"
            );
            if flow.dst.is_ipv4() {
                let mut may_fragment = too_big.clone();
                packets::set_ipv4_frag(&mut may_fragment, 0);
                assert_eq!(
                    run(&mut ebpf, &may_fragment),
                    (Some(Verdict::Drop), may_fragment.clone()),
                    "{what}: DF clear"
                );
                let dropped = Totals::read(&ebpf).unwrap().reason(Reason::EncapTooBig);
                assert_eq!(dropped.packets, 1, "{what}: DF clear");
            }
        }
    }
}

/// Test that an ICMP "fragmentation needed" / ICMPv6 "packet too big" about a flow of an ipip
/// VIP leaves as exactly the tunnel frame the flow's own packets get, towards the flow's
/// backend, counted once as icmp_steered.
#[test]
fn too_big_error_about_an_ipip_flow_is_tunnelled_to_its_backend() {
    require_privileges!();
    for (vip, client, router, v6_backends) in [
        ("198.18.1.10", "198.18.0.1", "198.18.3.1", false),
        ("2001:db8:1::10", "2001:db8::1", "2001:db8:3::1", true),
        ("2001:db8:1::10", "2001:db8::1", "2001:db8:3::1", false),
    ] {
        let (mut ebpf, config) = ipip_program(vip, v6_backends, 1500);
        let flow = Flow::new(client, vip, 40000, 80);
        let id = predicted_backend(&config, &flow, 6);
        let error = packets::icmp_too_big(router, &flow);
        assert_eq!(
            run(&mut ebpf, &error),
            (Some(Verdict::Tx), tunnelled(&error, id, v6_backends)),
            "{vip}"
        );
        assert_counted(&ebpf, Reason::IcmpSteered, 1, error.len() as u64, vip);
    }
}

/// Test that with a tunnel source prefix (198.18.200.0/24, 2001:db8:200::/120) each flow's
/// tunnel frames carry an outer source inside the prefix, different flows different sources
/// (64 flows over at least 32 of them), and every packet of a flow (SYN, data, and again)
/// the same one, exactly the frame the flow's hash gives.
#[test]
fn outer_source_spreads_flows_over_the_configured_prefix() {
    require_privileges!();
    for &(vip, client, v6_backends) in &FAMILY_PAIRS[..2] {
        let (mut ebpf, config) = ipip_program(vip, v6_backends, 1500);
        let settings = Config {
            mtu: 1500,
            ipip_src_v4: [198, 18, 200, 0],
            ipip_src_v6: addr_bytes("2001:db8:200::".parse().unwrap()).0,
            ipip_src_v4_hosts: [0, 0, 0, 255],
            ipip_src_v6_hosts: [0, 0, 0, 255],
            ..Config::default()
        };
        steering::set_config(&mut ebpf, &settings).expect("config");
        let mut sources = std::collections::BTreeSet::new();
        for sport in 40_000..40_064 {
            let flow = Flow::new(client, vip, sport, 80);
            let key = flow_key(&flow, 6);
            let id = predicted_backend(&config, &flow, 6);
            let hash = lb_common::flow_hash(&key, false);
            let source: IpAddr = if v6_backends {
                settings.ipip_source_v6(hash).into()
            } else {
                settings.ipip_source_v4(hash).into()
            };
            for packet in [
                packets::tcp_syn(&flow),
                packets::tcp_ack(&flow, b"data"),
                packets::tcp_ack(&flow, b"more data"),
            ] {
                let mut expected =
                    packets::encapsulated(source, backend_addr(id, v6_backends), &packet);
                expected[..6].copy_from_slice(&backend_mac(id));
                assert_eq!(
                    run(&mut ebpf, &packet),
                    (Some(Verdict::Tx), expected),
                    "{vip} port {sport}"
                );
            }
            let in_prefix = match source {
                IpAddr::V4(v4) => v4.octets()[..3] == [198, 18, 200],
                IpAddr::V6(v6) => v6.segments()[..7] == [0x2001, 0xdb8, 0x200, 0, 0, 0, 0],
            };
            assert!(in_prefix, "{vip} port {sport}: outer source {source}");
            sources.insert(source);
        }
        assert!(
            sources.len() >= 32,
            "{vip}: 64 flows used only {} outer sources: {sources:?}",
            sources.len()
        );
    }
}
