//! Fixture tests of the XDP program's parsing stage through BPF_PROG_TEST_RUN: each packet gets
//! its expected verdict, comes out byte-for-byte as expected, and is counted under exactly one
//! verdict and one reason.

use lb_common::{PROGRAM_NAME, Reason, Verdict};
use lb_userspace::{object, testrun};
use xlb_tests::{
    packets::{self, Flow},
    require_privileges,
    steering::{assert_counted, run_counted},
};

/// One packet and what the program must do with it.
struct Fixture {
    name: &'static str,
    packet: Vec<u8>,
    reason: Reason,
}

fn v4() -> Flow {
    Flow::new("198.18.0.1", "198.18.1.10", 40000, 80)
}

fn v6() -> Flow {
    Flow::new("2001:db8::1", "2001:db8:1::10", 40000, 443)
}

fn corpus() -> Vec<Fixture> {
    let truncated = |mut p: Vec<u8>, len: usize| {
        p.truncate(len);
        p
    };
    let edited = |mut p: Vec<u8>, edit: &dyn Fn(&mut Vec<u8>)| {
        edit(&mut p);
        p
    };
    let v4_syn = packets::tcp_syn(&v4());
    let v6_udp = packets::udp(&v6(), b"hello");
    let malformed = packets::MALFORMED_IPV4.map(|(name, field, value, reason)| Fixture {
        name,
        packet: edited(v4_syn.clone(), &|p| field.set(p, value)),
        reason,
    });
    let mut corpus = vec![
        Fixture {
            name: "ipv4 tcp syn",
            packet: v4_syn.clone(),
            reason: Reason::NotVip,
        },
        Fixture {
            name: "ipv4 tcp data",
            packet: packets::tcp_ack(&v4(), b"GET /"),
            reason: Reason::NotVip,
        },
        Fixture {
            name: "ipv4 udp",
            packet: packets::udp(&v4(), b"dns?"),
            reason: Reason::NotVip,
        },
        Fixture {
            name: "ipv6 tcp syn",
            packet: packets::tcp_syn(&v6()),
            reason: Reason::NotVip,
        },
        Fixture {
            name: "ipv6 udp",
            packet: v6_udp.clone(),
            reason: Reason::NotVip,
        },
        Fixture {
            name: "ipv4 with 8 bytes of options",
            packet: packets::ipv4_tcp_syn_with_options(&v4(), &[1, 1, 1, 0, 1, 1, 1, 0]),
            reason: Reason::NotVip,
        },
        Fixture {
            name: "ipv4 with 40 bytes of options",
            packet: packets::ipv4_tcp_syn_with_options(&v4(), &[1; 40]),
            reason: Reason::NotVip,
        },
        Fixture {
            name: "vlan-tagged ipv4 tcp syn",
            packet: packets::tagged_tcp_syn(&v4(), 42),
            reason: Reason::NotVip,
        },
        Fixture {
            name: "vlan tag cut short",
            packet: truncated(packets::tagged_tcp_syn(&v4(), 42), 16),
            reason: Reason::Truncated,
        },
        Fixture {
            name: "vlan-tagged ipv6 udp",
            packet: packets::with_tags(&v6_udp, &[(0x8100, 42)]),
            reason: Reason::NotVip,
        },
        Fixture {
            name: "two 802.1Q tags",
            packet: packets::with_tags(&v4_syn, &[(0x8100, 42), (0x8100, 7)]),
            reason: Reason::NotIp,
        },
        Fixture {
            name: "802.1ad and 802.1Q tags on ipv6",
            packet: packets::with_tags(&v6_udp, &[(0x88a8, 42), (0x8100, 7)]),
            reason: Reason::NotIp,
        },
        Fixture {
            name: "ipv4 EtherType with an ipv6 packet",
            packet: edited(v6_udp.clone(), &|p| {
                p[12..14].copy_from_slice(&[0x08, 0x00])
            }),
            reason: Reason::BadHeader,
        },
        Fixture {
            name: "ipv6 EtherType with an ipv4 packet",
            packet: edited(v4_syn.clone(), &|p| {
                p[12..14].copy_from_slice(&[0x86, 0xdd])
            }),
            reason: Reason::BadHeader,
        },
        Fixture {
            name: "arp",
            packet: packets::arp_request(),
            reason: Reason::NotIp,
        },
        Fixture {
            // No VIP has this address: the filter stops it before the transport header.
            name: "icmpv4 echo to a non-VIP address",
            packet: packets::icmpv4_echo(&v4()),
            reason: Reason::NotVip,
        },
        Fixture {
            name: "ipv4 ihl 0",
            packet: edited(v4_syn.clone(), &|p| packets::set_ipv4_ihl(p, 0)),
            reason: Reason::BadHeader,
        },
        Fixture {
            name: "ipv4 don't-fragment is not a fragment",
            packet: edited(v4_syn.clone(), &|p| packets::set_ipv4_frag(p, 0x4000)),
            reason: Reason::NotVip,
        },
        Fixture {
            name: "ipv6 fragment header",
            packet: edited(v6_udp.clone(), &|p| packets::add_ipv6_fragment_header(p)),
            reason: Reason::Fragment,
        },
        Fixture {
            name: "ipv4 header cut",
            packet: truncated(v4_syn.clone(), 14 + 19),
            reason: Reason::Truncated,
        },
        Fixture {
            name: "ipv6 header cut",
            packet: truncated(v6_udp.clone(), 14 + 39),
            reason: Reason::Truncated,
        },
        Fixture {
            name: "ethernet header only",
            packet: truncated(v4_syn.clone(), 14),
            reason: Reason::Truncated,
        },
    ];
    corpus.extend(malformed);
    corpus
}

/// Test that every fixture gets its verdict, leaves the packet unchanged, and is counted once
/// under its reason and verdict. Each fixture runs on a freshly loaded program.
#[test]
fn every_fixture_gets_its_verdict_and_one_count() {
    require_privileges!();
    for fixture in corpus() {
        let mut ebpf = object::load(object::XDP_OBJECT, PROGRAM_NAME).expect("load xlb");
        let program = object::xdp_program(&mut ebpf, PROGRAM_NAME).expect("program");
        let outcome = testrun::run(program, &fixture.packet)
            .unwrap_or_else(|e| panic!("{}: {e:#}", fixture.name));
        let expected = fixture.reason.verdict();
        assert_eq!(
            Verdict::from_code(outcome.code),
            Some(expected),
            "{}: verdict",
            fixture.name
        );
        assert_eq!(
            outcome.output, fixture.packet,
            "{}: output bytes",
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

/// Test that truncating a TCP or UDP packet at any byte after the Ethernet header never lets
/// it through as well-formed: every cut is dropped and counted under `truncated` alone (one
/// packet, its length in bytes), while the whole packet passes as `not_vip`.
#[test]
fn every_truncation_is_dropped_as_truncated() {
    require_privileges!();
    let mut ebpf = object::load(object::XDP_OBJECT, PROGRAM_NAME).expect("load xlb");
    for whole in [
        packets::tcp_syn(&v4()),
        packets::udp(&v4(), b"x"),
        packets::tcp_syn(&v6()),
    ] {
        // BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet header.
        for len in packets::ETH_LEN..whole.len() {
            let (_, _, reason) = run_counted(&mut ebpf, &whole[..len]);
            assert_eq!(
                reason,
                Reason::Truncated,
                "packet cut to {len} of {} bytes",
                whole.len()
            );
        }
        let (_, _, reason) = run_counted(&mut ebpf, &whole);
        assert_eq!(reason, Reason::NotVip, "whole packet");
    }
}
