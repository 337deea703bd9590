//! Fixture tests of the backend-side decapsulation program (`xlb_decap`) through
//! BPF_PROG_TEST_RUN: tunnel frames to this host's addresses come out as the inner frame,
//! everything else passes untouched or is dropped as malformed, and each packet is counted
//! once under its verdict and its reason (bytes as received).
//!
//! A decapsulated frame keeps the tunnel frame's Ethernet addresses (and 802.1Q tag): it was
//! delivered to this host, so it reaches the stack as received here, with the EtherType of the
//! inner family. Expected output is therefore the inner frame with the tunnel frame's MACs.

use std::net::IpAddr;

use aya::Ebpf;
use lb_common::{DECAP_PROGRAM_NAME, Reason, Verdict};
use lb_userspace::{decap, object, testrun};
use xlb_tests::{
    packets::{self, ETH_LEN, Flow},
    require_privileges,
    steering::assert_counted,
};

/// Outer destinations this host accepts (the fixtures list both), and one it does not.
const HOST_V4: &str = "198.18.2.1";
const HOST_V6: &str = "2001:db8:2::1";
const OTHER_HOST_V4: &str = "198.18.2.99";
/// Outer sources: the load balancer.
const LB_V4: &str = "198.18.0.2";
const LB_V6: &str = "2001:db8::2";
/// Where the outer IP header starts in an untagged frame, and its fields' offsets there.
const OUTER: usize = ETH_LEN;
const IPV4_IHL: usize = OUTER;
const IPV4_TOTAL_LEN: usize = OUTER + 2;
const IPV4_FRAG: usize = OUTER + 6;
const IPV4_PROTO: usize = OUTER + 9;
const IPV4_CHECKSUM: usize = OUTER + 10;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;

fn addr(text: &str) -> IpAddr {
    text.parse().expect("fixture address")
}

/// A client's TCP SYN to a VIP (IPv4).
fn v4_syn() -> Vec<u8> {
    packets::tcp_syn(&Flow::new("198.18.0.1", "198.18.1.10", 40000, 80))
}

/// A client's UDP datagram to a VIP (IPv6).
fn v6_udp() -> Vec<u8> {
    packets::udp(
        &Flow::new("2001:db8::1", "2001:db8:1::10", 40000, 443),
        b"hello",
    )
}

fn in_v4(inner: &[u8], dst: &str) -> Vec<u8> {
    packets::encapsulated(addr(LB_V4), addr(dst), inner)
}

fn in_v6(inner: &[u8], dst: &str) -> Vec<u8> {
    packets::encapsulated(addr(LB_V6), addr(dst), inner)
}

/// What decapsulating `tunnel` must give: `inner` with the tunnel frame's MAC addresses.
fn stripped(tunnel: &[u8], inner: &[u8]) -> Vec<u8> {
    let mut frame = tunnel[..12].to_vec();
    frame.extend_from_slice(&inner[12..]);
    frame
}

/// `frame` with an 802.1Q tag (VLAN `vlan`) after its MAC addresses.
fn tagged(frame: &[u8], vlan: u16) -> Vec<u8> {
    let mut out = frame.to_vec();
    let tci = vlan.to_be_bytes();
    out.splice(12..12, [0x81, 0x00, tci[0], tci[1]]);
    out
}

/// Applies `edit` to the outer IPv4 header of an untagged tunnel frame and recomputes its
/// checksum, so that only the edited field is unusual.
fn edit_outer_ipv4(mut frame: Vec<u8>, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    edit(&mut frame);
    let header_len = usize::from(frame[IPV4_IHL] & 0x0f) * 4;
    frame[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].fill(0);
    let checksum = packets::ipv4_checksum(&frame[OUTER..OUTER + header_len]);
    frame[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&checksum.to_be_bytes());
    frame
}

/// The decapsulation program, loaded fresh, accepting [`HOST_V4`] and [`HOST_V6`].
fn load() -> Ebpf {
    let mut ebpf = object::load(object::DECAP_OBJECT, DECAP_PROGRAM_NAME).expect("load xlb_decap");
    for host in [HOST_V4, HOST_V6] {
        decap::accept(&mut ebpf, addr(host)).expect("accept a host address");
    }
    ebpf
}

/// Runs `packet` through a freshly loaded program and asserts the verdict of `reason`, the
/// exact output bytes and one count under `reason`.
fn check(name: &str, packet: &[u8], reason: Reason, output: &[u8]) {
    let mut ebpf = load();
    let program = object::xdp_program(&mut ebpf, DECAP_PROGRAM_NAME).expect("program");
    let outcome = testrun::run(program, packet).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert_eq!(
        Verdict::from_code(outcome.code),
        Some(reason.verdict()),
        "{name}: verdict"
    );
    assert_eq!(outcome.output, output, "{name}: output bytes");
    assert_counted(&ebpf, reason, 1, packet.len() as u64, name);
}

/// Checks that `packet` passes or is dropped unchanged, counted under `reason`.
fn check_unchanged(name: &str, packet: &[u8], reason: Reason) {
    check(name, packet, reason, packet);
}

/// Test that the tunnel frames the load balancer builds carry standard outer headers, as
/// etherparse reads them: the right protocol, lengths, addresses and a valid IPv4 checksum.
#[test]
fn encapsulated_frames_have_standard_outer_headers() {
    use etherparse::{IpHeaders, IpNumber, IpSlice};
    let v4: fn(&[u8], &str) -> Vec<u8> = in_v4;
    let v6: fn(&[u8], &str) -> Vec<u8> = in_v6;
    for (inner, encapsulate, host, carried) in [
        (v4_syn(), v4, HOST_V4, IpNumber::IPV4),
        (v6_udp(), v6, HOST_V6, IpNumber::IPV6),
    ] {
        let frame = encapsulate(&inner, host);
        let outer = IpSlice::from_slice(&frame[ETH_LEN..])
            .unwrap_or_else(|e| panic!("tunnel frame to {host} does not parse: {e}"));
        let header_len = match outer.to_header() {
            IpHeaders::Ipv4(header, _) => {
                assert_eq!(header.protocol, carried, "{host}");
                assert_eq!(header.time_to_live, 64, "{host}");
                assert_eq!(header.header_checksum, header.calc_header_checksum());
                assert_eq!(usize::from(header.total_len), frame.len() - ETH_LEN);
                IPV4_HEADER
            }
            IpHeaders::Ipv6(header, _) => {
                assert_eq!(header.next_header, carried, "{host}");
                assert_eq!(header.hop_limit, 64, "{host}");
                assert_eq!(usize::from(header.payload_length), inner.len() - ETH_LEN);
                IPV6_HEADER
            }
        };
        // The destination's family is the outer header's.
        assert_eq!(outer.destination_addr(), addr(host));
        assert_eq!(&frame[ETH_LEN + header_len..], &inner[ETH_LEN..], "{host}");
    }
}

/// Test that a tunnel to a listed address comes out as the inner frame, passed up: IPv4 or
/// IPv6 inside IPv4 (protocol 4 or 41) or inside IPv6 (next header 4 or 41), each with the
/// inner frame's EtherType.
#[test]
fn tunnels_to_a_listed_address_are_stripped() {
    require_privileges!();
    let v4: fn(&[u8], &str) -> Vec<u8> = in_v4;
    let v6: fn(&[u8], &str) -> Vec<u8> = in_v6;
    for (name, inner, encapsulate, host) in [
        ("ipv4 in ipv4", v4_syn(), v4, HOST_V4),
        ("ipv6 in ipv6", v6_udp(), v6, HOST_V6),
        ("ipv6 in ipv4", v6_udp(), v4, HOST_V4),
        ("ipv4 in ipv6", v4_syn(), v6, HOST_V6),
    ] {
        let tunnel = encapsulate(&inner, host);
        check(
            name,
            &tunnel,
            Reason::Decapsulated,
            &stripped(&tunnel, &inner),
        );
    }
}

/// Test that an outer IPv4 header with options is removed whole, options included.
#[test]
fn outer_ipv4_options_are_stripped_with_the_header() {
    require_privileges!();
    let inner = v4_syn();
    let plain = in_v4(&inner, HOST_V4);
    let tunnel = edit_outer_ipv4(plain.clone(), |frame| {
        let options = [1, 1, 1, 0, 1, 1, 1, 0];
        let at = OUTER + IPV4_HEADER;
        frame.splice(at..at, options);
        frame[IPV4_IHL] = 0x47;
        let total_len = (frame.len() - ETH_LEN) as u16;
        frame[IPV4_TOTAL_LEN..IPV4_TOTAL_LEN + 2].copy_from_slice(&total_len.to_be_bytes());
    });
    check(
        "ipv4 in ipv4 with 8 bytes of outer options",
        &tunnel,
        Reason::Decapsulated,
        &stripped(&plain, &inner),
    );
}

/// Test that a VLAN-tagged tunnel frame keeps its tag in front of the inner packet, the tag's
/// EtherType now the inner family's.
#[test]
fn vlan_tagged_tunnel_frame_keeps_its_tag() {
    require_privileges!();
    for (name, inner, tunnel) in [
        ("tagged ipv4 in ipv4", v4_syn(), in_v4(&v4_syn(), HOST_V4)),
        ("tagged ipv4 in ipv6", v4_syn(), in_v6(&v4_syn(), HOST_V6)),
        ("tagged ipv6 in ipv4", v6_udp(), in_v4(&v6_udp(), HOST_V4)),
    ] {
        check(
            name,
            &tagged(&tunnel, 42),
            Reason::Decapsulated,
            &tagged(&stripped(&tunnel, &inner), 42),
        );
    }
}

/// Test that a tunnel packet to an address this host does not list passes untouched, as not
/// for us.
#[test]
fn tunnel_to_an_unlisted_address_passes_unchanged() {
    require_privileges!();
    check_unchanged(
        "ipv4 in ipv4 to another host",
        &in_v4(&v4_syn(), OTHER_HOST_V4),
        Reason::NotVip,
    );
    check_unchanged(
        "ipv6 in ipv6 to another host",
        &in_v6(&v6_udp(), "2001:db8:2::99"),
        Reason::NotVip,
    );
}

/// Test that ordinary traffic, even to a listed address, passes untouched: only protocols 4
/// and 41 are tunnels.
#[test]
fn plain_tcp_passes_unchanged() {
    require_privileges!();
    let to_host = Flow::new("198.18.0.1", HOST_V4, 40000, 22);
    check_unchanged(
        "tcp to a listed address",
        &packets::tcp_syn(&to_host),
        Reason::NotVip,
    );
    check_unchanged("tcp to elsewhere", &v4_syn(), Reason::NotVip);
    check_unchanged("udp over ipv6", &v6_udp(), Reason::NotVip);
}

/// Test that a frame that is not IP at all passes untouched as not_ip.
#[test]
fn arp_passes_unchanged_as_not_ip() {
    require_privileges!();
    check_unchanged("arp", &packets::arp_request(), Reason::NotIp);
}

/// Test that a fragment of a tunnel packet passes untouched: only the first fragment holds the
/// inner header, so the stack must reassemble first.
#[test]
fn fragmented_tunnel_packet_passes_unchanged() {
    require_privileges!();
    for (name, flags_offset) in [("first fragment", 0x2000u16), ("later fragment", 0x0010)] {
        let tunnel = edit_outer_ipv4(in_v4(&v4_syn(), HOST_V4), |frame| {
            frame[IPV4_FRAG..IPV4_FRAG + 2].copy_from_slice(&flags_offset.to_be_bytes());
        });
        check_unchanged(name, &tunnel, Reason::Fragment);
    }
}

/// Test that an IPv6 tunnel packet to a listed address carrying a fragment header (first or
/// later fragment) passes to the stack unchanged as a fragment, never stripped.
#[test]
fn ipv6_tunnel_packet_with_a_fragment_header_passes_unchanged() {
    require_privileges!();
    for inner in [v4_syn(), v6_udp()] {
        let mut tunnel = in_v6(&inner, HOST_V6);
        packets::add_ipv6_fragment_header(&mut tunnel);
        check_unchanged("first fragment", &tunnel, Reason::Fragment);
        // A later fragment: offset 1 (8 bytes), no more fragments.
        let at = OUTER + IPV6_HEADER + 2;
        tunnel[at..at + 2].copy_from_slice(&[0x00, 0x08]);
        check_unchanged("later fragment", &tunnel, Reason::Fragment);
    }
}

/// Test that an inner header whose version is not the one the outer protocol announces is
/// dropped as a bad header, in both directions and both outer families.
#[test]
fn inner_version_mismatch_is_dropped_as_bad_header() {
    require_privileges!();
    // Protocol 4 announcing IPv4, but the inner version nibble says 6.
    let mut v6_nibble = in_v4(&v4_syn(), HOST_V4);
    v6_nibble[OUTER + IPV4_HEADER] = 0x65;
    // Protocol 41 announcing IPv6 in front of an IPv4 packet (long enough for an IPv6 header).
    let v4_as_v6 = edit_outer_ipv4(in_v4(&v4_syn(), HOST_V4), |frame| {
        frame[IPV4_PROTO] = 41;
    });
    // Next header 4 in IPv6 in front of an IPv6 packet.
    let mut v6_as_v4 = in_v6(&v6_udp(), HOST_V6);
    v6_as_v4[OUTER + 6] = 4;
    for (name, packet) in [
        ("version 6 behind protocol 4", v6_nibble),
        ("ipv4 behind protocol 41", v4_as_v6),
        ("ipv6 behind next header 4", v6_as_v4),
    ] {
        check_unchanged(name, &packet, Reason::BadHeader);
    }
}

/// Test that an outer IPv4 header length (IHL) below 5 words is dropped as a bad header.
#[test]
fn outer_ipv4_ihl_below_5_is_dropped_as_bad_header() {
    require_privileges!();
    for ihl in [0u8, 4] {
        let mut tunnel = in_v4(&v4_syn(), HOST_V4);
        tunnel[IPV4_IHL] = 0x40 | ihl;
        check_unchanged(&format!("outer ihl {ihl}"), &tunnel, Reason::BadHeader);
    }
}

/// Test that an outer header announcing fewer bytes than an inner header needs is dropped as
/// a bad header, even though the frame ends where the outer header says.
#[test]
fn outer_length_too_short_for_an_inner_header_is_dropped_as_bad_header() {
    require_privileges!();
    let short = edit_outer_ipv4(in_v4(&v4_syn(), HOST_V4), |frame| {
        frame.truncate(OUTER + IPV4_HEADER + 19);
        frame[IPV4_TOTAL_LEN..IPV4_TOTAL_LEN + 2]
            .copy_from_slice(&((IPV4_HEADER + 19) as u16).to_be_bytes());
    });
    check_unchanged("19 bytes of inner ipv4", &short, Reason::BadHeader);
}

/// Test that a tunnel frame cut at any byte is dropped as truncated: inside the 802.1Q tag, the
/// outer header, or anywhere short of the outer header's length (which covers the inner
/// header). Cuts inside the Ethernet addresses cannot be tested: BPF_PROG_TEST_RUN refuses XDP
/// input shorter than an Ethernet header.
#[test]
fn every_truncation_of_a_tunnel_frame_is_dropped_as_truncated() {
    require_privileges!();
    let tunnels = [
        ("ipv4 in ipv4", in_v4(&v4_syn(), HOST_V4)),
        ("ipv6 in ipv6", in_v6(&v6_udp(), HOST_V6)),
        ("ipv6 in ipv4", in_v4(&v6_udp(), HOST_V4)),
        ("ipv4 in ipv6", in_v6(&v4_syn(), HOST_V6)),
        (
            "tagged ipv4 in ipv4",
            tagged(&in_v4(&v4_syn(), HOST_V4), 42),
        ),
    ];
    for (name, whole) in tunnels {
        let mut ebpf = load();
        let program = object::xdp_program(&mut ebpf, DECAP_PROGRAM_NAME).expect("program");
        let (mut packets, mut bytes) = (0, 0);
        for len in ETH_LEN..whole.len() {
            let cut = &whole[..len];
            let outcome = testrun::run(program, cut).expect("test run");
            assert_eq!(
                Verdict::from_code(outcome.code),
                Some(Verdict::Drop),
                "{name} cut to {len} of {} bytes",
                whole.len()
            );
            assert_eq!(outcome.output, cut, "{name} cut to {len}: output bytes");
            packets += 1;
            bytes += len as u64;
        }
        assert_counted(&ebpf, Reason::Truncated, packets, bytes, name);
    }
}
