//! Packet fixtures as data: well-formed frames built with etherparse, and the edits that make
//! them malformed (bad IHL, fragments, truncation), addressed inside the test ranges.

use std::net::IpAddr;

use lb_common::Reason;

use etherparse::{IpHeaders, Ipv4Header, Ipv4Options, PacketBuilder, PacketBuilderStep};

/// MAC of the sending side in fixtures.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC of the load balancer in fixtures.
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Length of an untagged Ethernet header.
pub const ETH_LEN: usize = 14;

/// The addressing of one packet.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl Flow {
    /// A flow between two addresses given as text (test code: panics on a typo).
    pub fn new(src: &str, dst: &str, sport: u16, dport: u16) -> Flow {
        Flow {
            src: src.parse().expect("source address"),
            dst: dst.parse().expect("destination address"),
            sport,
            dport,
        }
    }

    fn ip(&self) -> PacketBuilderStep<IpHeaders> {
        let eth = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => panic!("flow {self:?} mixes address families"),
        }
    }
}

/// A TCP SYN carried in an 802.1Q-tagged frame with VLAN id `vlan`.
pub fn tagged_tcp_syn(flow: &Flow, vlan: u16) -> Vec<u8> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (flow.src, flow.dst) else {
        panic!("tagged fixtures are IPv4, got {flow:?}");
    };
    let vlan = etherparse::VlanId::try_new(vlan).expect("VLAN id below 4095");
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .single_vlan(vlan)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(flow.sport, flow.dport, 1000, 64240)
        .syn();
    finish(builder.size(0), |out| builder.write(out, &[]))
}

/// A TCP SYN (the first packet of a new connection).
pub fn tcp_syn(flow: &Flow) -> Vec<u8> {
    let builder = flow.ip().tcp(flow.sport, flow.dport, 1000, 64240).syn();
    finish(builder.size(0), |out| builder.write(out, &[]))
}

/// A TCP segment of an established connection carrying `payload`.
pub fn tcp_ack(flow: &Flow, payload: &[u8]) -> Vec<u8> {
    let builder = flow.ip().tcp(flow.sport, flow.dport, 1001, 64240).ack(5000);
    finish(builder.size(payload.len()), |out| {
        builder.write(out, payload)
    })
}

/// A UDP datagram carrying `payload`.
pub fn udp(flow: &Flow, payload: &[u8]) -> Vec<u8> {
    let builder = flow.ip().udp(flow.sport, flow.dport);
    finish(builder.size(payload.len()), |out| {
        builder.write(out, payload)
    })
}

/// An ICMPv4 echo request from `flow.src` to `flow.dst` (ports unused).
pub fn icmpv4_echo(flow: &Flow) -> Vec<u8> {
    let builder = flow.ip().icmpv4_echo_request(1, 1);
    finish(builder.size(8), |out| builder.write(out, &[0u8; 8]))
}

/// An IPv4 TCP SYN whose header carries `options` (a multiple of 4 bytes, at most 40).
pub fn ipv4_tcp_syn_with_options(flow: &Flow, options: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (flow.src, flow.dst) else {
        panic!("IPv4 options need an IPv4 flow, got {flow:?}");
    };
    let mut header = Ipv4Header::new(0, 64, etherparse::IpNumber::TCP, src.octets(), dst.octets())
        .expect("IPv4 header");
    header.options = Ipv4Options::try_from(options).expect("IPv4 options: 4-byte multiple, <= 40");
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ip(IpHeaders::Ipv4(header, Default::default()))
        .tcp(flow.sport, flow.dport, 1000, 64240)
        .syn();
    finish(builder.size(0), |out| builder.write(out, &[]))
}

/// An ARP request: not IP at all.
pub fn arp_request() -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&[0x08, 0x06]);
    // Ethernet/IPv4 ARP request, who-has 198.18.0.2 tell 198.18.0.1.
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&[198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2]);
    frame
}

/// Destination MAC of the tunnel frames [`encapsulated`] builds: backend 0's
/// (`steering::backend_mac(0)`), the next hop a load balancer sends them to.
const TUNNEL_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x00];

/// The frame a load balancer in `ipip` mode sends for the untagged IPv4 or IPv6 frame `inner`
/// (as the other builders make it): the inner IP packet behind a new Ethernet header and an
/// outer IP header of the family of `outer_src` and `outer_dst`. Byte for byte:
///
/// - Ethernet (14 bytes): destination `02:00:00:00:01:00` (the backend's MAC), source
///   [`LB_MAC`], EtherType of the outer family (`0x0800` or `0x86dd`).
/// - Outer IPv4 (20 bytes, no options): version/IHL `0x45`; TOS copied from an inner IPv4
///   header, 0 for inner IPv6; total length 20 + inner IP packet length; identification 0;
///   flags and fragment offset 0 (DF clear); TTL 64; protocol 4 (inner IPv4) or 41 (inner
///   IPv6); header checksum ([`ipv4_checksum`]); source `outer_src`; destination `outer_dst`.
/// - Outer IPv6 (40 bytes): version 6, traffic class 0, flow label 0 (bytes `60 00 00 00`);
///   payload length = inner IP packet length; next header 4 or 41 as above; hop limit 64;
///   source `outer_src`; destination `outer_dst`.
/// - The inner IP packet unchanged: `inner` without its 14-byte Ethernet header (its TTL or
///   hop limit is not decremented).
pub fn encapsulated(outer_src: IpAddr, outer_dst: IpAddr, inner: &[u8]) -> Vec<u8> {
    const IPPROTO_IPIP: u8 = 4;
    const IPPROTO_IPV6: u8 = 41;
    const TTL: u8 = 64;
    let packet = &inner[ETH_LEN..];
    let (proto, tos) = match [inner[12], inner[13]] {
        [0x08, 0x00] => (IPPROTO_IPIP, packet[1]),
        [0x86, 0xdd] => (IPPROTO_IPV6, 0),
        other => panic!(
            "encapsulated: inner frame is not untagged IPv4 or IPv6 (EtherType {other:02x?})"
        ),
    };
    let mut frame = Vec::with_capacity(ETH_LEN + 40 + packet.len());
    frame.extend_from_slice(&TUNNEL_DST_MAC);
    frame.extend_from_slice(&LB_MAC);
    match (outer_src, outer_dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total_len = u16::try_from(20 + packet.len()).expect("outer IPv4 total length");
            let mut header = [0u8; 20];
            header[0] = 0x45;
            header[1] = tos;
            header[2..4].copy_from_slice(&total_len.to_be_bytes());
            header[8] = TTL;
            header[9] = proto;
            header[12..16].copy_from_slice(&src.octets());
            header[16..20].copy_from_slice(&dst.octets());
            let checksum = ipv4_checksum(&header);
            header[10..12].copy_from_slice(&checksum.to_be_bytes());
            frame.extend_from_slice(&[0x08, 0x00]);
            frame.extend_from_slice(&header);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let payload_len = u16::try_from(packet.len()).expect("outer IPv6 payload length");
            let mut header = [0u8; 40];
            header[0] = 0x60;
            header[4..6].copy_from_slice(&payload_len.to_be_bytes());
            header[6] = proto;
            header[7] = TTL;
            header[8..24].copy_from_slice(&src.octets());
            header[24..40].copy_from_slice(&dst.octets());
            frame.extend_from_slice(&[0x86, 0xdd]);
            frame.extend_from_slice(&header);
        }
        _ => panic!("encapsulated: outer addresses {outer_src} and {outer_dst} mix families"),
    }
    frame.extend_from_slice(packet);
    frame
}

/// The IPv4 header checksum (RFC 1071) of `header`, whose checksum field must be zero: the
/// value to store there, big-endian.
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Malformed IPv4 headers, as a field of a well-formed untagged IPv4 frame set to a value,
/// each named and with the reason the program counts it under, to a VIP or not: run by the
/// parse fixtures and by the steering fixtures (which check none is forwarded).
pub const MALFORMED_IPV4: [(&str, Ipv4Field, u16, Reason); 6] = [
    ("ipv4 ihl 4", Ipv4Field::Ihl, 4, Reason::BadHeader),
    (
        "ipv4 ihl beyond the frame",
        Ipv4Field::Ihl,
        15,
        Reason::BadHeader,
    ),
    (
        "ipv4 total length shorter than the header",
        Ipv4Field::TotalLen,
        19,
        Reason::BadHeader,
    ),
    (
        "ipv4 total length beyond the frame",
        Ipv4Field::TotalLen,
        1400,
        Reason::Truncated,
    ),
    (
        "ipv4 first fragment",
        Ipv4Field::Frag,
        0x2000,
        Reason::Fragment,
    ),
    (
        "ipv4 later fragment",
        Ipv4Field::Frag,
        0x0010,
        Reason::Fragment,
    ),
];

/// An IPv4 header field of [`MALFORMED_IPV4`].
#[derive(Clone, Copy, Debug)]
pub enum Ipv4Field {
    /// The header length, in 32-bit words.
    Ihl,
    TotalLen,
    /// The flags and fragment offset.
    Frag,
}

impl Ipv4Field {
    /// Sets this field of an untagged IPv4 frame to `value`.
    pub fn set(self, frame: &mut [u8], value: u16) {
        match self {
            Ipv4Field::Ihl => set_ipv4_ihl(frame, value as u8),
            Ipv4Field::TotalLen => set_ipv4_total_len(frame, value),
            Ipv4Field::Frag => set_ipv4_frag(frame, value),
        }
    }
}

/// Sets the IPv4 header length field (in 32-bit words) of an untagged IPv4 frame.
pub fn set_ipv4_ihl(frame: &mut [u8], words: u8) {
    frame[ETH_LEN] = (frame[ETH_LEN] & 0xf0) | (words & 0x0f);
}

/// Sets the IPv4 total length field of an untagged IPv4 frame.
pub fn set_ipv4_total_len(frame: &mut [u8], len: u16) {
    frame[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&len.to_be_bytes());
}

/// Sets the IPv4 flags and fragment offset field (host order, e.g. 0x2000 = more fragments).
pub fn set_ipv4_frag(frame: &mut [u8], flags_offset: u16) {
    frame[ETH_LEN + 6..ETH_LEN + 8].copy_from_slice(&flags_offset.to_be_bytes());
}

/// `frame` with 802.1Q (TPID 0x8100) or 802.1ad (0x88a8) tags `(tpid, vlan id)` inserted after
/// the MAC addresses, outermost first.
pub fn with_tags(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (tpid, vlan) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&vlan.to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

fn is_ipv6(frame: &[u8]) -> bool {
    frame[12..14] == [0x86, 0xdd]
}

/// Offset of the transport header of an untagged IPv4 or IPv6 frame without extension headers.
pub fn l4_offset(frame: &[u8]) -> usize {
    if is_ipv6(frame) {
        ETH_LEN + 40
    } else {
        ETH_LEN + usize::from(frame[ETH_LEN] & 0x0f) * 4
    }
}

/// Sets the IPv4 protocol or IPv6 next header of an untagged frame (the IPv4 header checksum
/// is left stale: xlb does not check it).
pub fn set_ip_proto(frame: &mut [u8], proto: u8) {
    let at = if is_ipv6(frame) { 6 } else { 9 };
    frame[ETH_LEN + at] = proto;
}

/// Sets the destination address of an untagged IPv4 or IPv6 frame (the IPv4 header checksum is
/// left stale: xlb does not check it).
pub fn set_ip_dst(frame: &mut [u8], dst: IpAddr) {
    match dst {
        IpAddr::V4(v4) => frame[ETH_LEN + 16..ETH_LEN + 20].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => frame[ETH_LEN + 24..ETH_LEN + 40].copy_from_slice(&v6.octets()),
    }
}

/// Sets the IPv6 payload length of an untagged IPv6 frame.
pub fn set_ipv6_payload_len(frame: &mut [u8], len: u16) {
    frame[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&len.to_be_bytes());
}

/// Sets the TCP data offset (header length in 32-bit words) of an untagged TCP frame.
pub fn set_tcp_data_offset(frame: &mut [u8], words: u8) {
    let at = l4_offset(frame) + 12;
    frame[at] = (frame[at] & 0x0f) | (words << 4);
}

/// Sets the UDP length field of an untagged UDP frame.
pub fn set_udp_len(frame: &mut [u8], len: u16) {
    let at = l4_offset(frame) + 4;
    frame[at..at + 2].copy_from_slice(&len.to_be_bytes());
}

/// Inserts an IPv6 fragment header (first fragment, more to come) after the fixed header of
/// an untagged IPv6 frame.
pub fn add_ipv6_fragment_header(frame: &mut Vec<u8>) {
    const FIXED: usize = 40;
    let next = frame[ETH_LEN + 6];
    frame[ETH_LEN + 6] = 44;
    let payload_len = u16::from_be_bytes([frame[ETH_LEN + 4], frame[ETH_LEN + 5]]).wrapping_add(8);
    frame[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&payload_len.to_be_bytes());
    let fragment = [next, 0, 0x00, 0x01, 0, 0, 0, 7];
    frame.splice(ETH_LEN + FIXED..ETH_LEN + FIXED, fragment);
}

/// An ICMP error about `quoted` (a packet the VIP sent, here a TCP segment from `flow.dst` back
/// to `flow.src`) sent by router `router` to the VIP: ICMPv4 "fragmentation needed" or ICMPv6
/// "packet too big", quoting the packet's IP header and first 8 bytes of TCP.
pub fn icmp_too_big(router: &str, flow: &Flow) -> Vec<u8> {
    let reply = Flow {
        src: flow.dst,
        dst: flow.src,
        sport: flow.dport,
        dport: flow.sport,
    };
    let quoted_frame = tcp_ack(&reply, &[0u8; 64]);
    let ip_header_len = match reply.src {
        IpAddr::V4(_) => 20,
        IpAddr::V6(_) => 40,
    };
    let quoted = &quoted_frame[ETH_LEN..ETH_LEN + ip_header_len + 8];
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC);
    let router: IpAddr = router.parse().expect("router address");
    match (router, flow.dst) {
        (IpAddr::V4(r), IpAddr::V4(vip)) => {
            let too_big = etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1400,
            };
            let builder = eth
                .ipv4(r.octets(), vip.octets(), 64)
                .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(too_big));
            finish(builder.size(quoted.len()), |out| builder.write(out, quoted))
        }
        (IpAddr::V6(r), IpAddr::V6(vip)) => {
            let builder = eth
                .ipv6(r.octets(), vip.octets(), 64)
                .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 });
            finish(builder.size(quoted.len()), |out| builder.write(out, quoted))
        }
        _ => panic!("router {router} and flow {flow:?} mix address families"),
    }
}

/// The answer xlb sends in place of the untagged `frame` (client to VIP) when it is too big for
/// an `ipip` tunnel whose inner MTU is `mtu`: the MACs swapped, an ICMP "fragmentation needed"
/// (IPv4: TTL 64, id 0, no flags) or ICMPv6 "packet too big" (hop limit 64) from the VIP to the
/// client carrying `mtu`, quoting the frame's first 68 IP bytes.
pub fn too_big_answer(frame: &[u8], mtu: u16) -> Vec<u8> {
    const QUOTE: usize = 68;
    let quote = &frame[ETH_LEN..ETH_LEN + QUOTE];
    let dst_mac: [u8; 6] = frame[6..12].try_into().unwrap();
    let src_mac: [u8; 6] = frame[..6].try_into().unwrap();
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    if frame[12..14] == [0x08, 0x00] {
        let (client, vip) = (
            &frame[ETH_LEN + 12..ETH_LEN + 16],
            &frame[ETH_LEN + 16..ETH_LEN + 20],
        );
        let mut header = Ipv4Header::new(
            0,
            64,
            etherparse::IpNumber::ICMP,
            vip.try_into().unwrap(),
            client.try_into().unwrap(),
        )
        .expect("IPv4 header");
        header.dont_fragment = false;
        let too_big =
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu };
        let builder = eth
            .ip(IpHeaders::Ipv4(header, Default::default()))
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(too_big));
        finish(builder.size(QUOTE), |out| builder.write(out, quote))
    } else {
        let (client, vip) = (
            &frame[ETH_LEN + 8..ETH_LEN + 24],
            &frame[ETH_LEN + 24..ETH_LEN + 40],
        );
        let builder = eth
            .ipv6(vip.try_into().unwrap(), client.try_into().unwrap(), 64)
            .icmpv6(etherparse::Icmpv6Type::PacketTooBig {
                mtu: u32::from(mtu),
            });
        finish(builder.size(QUOTE), |out| builder.write(out, quote))
    }
}

fn finish(
    size: usize,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), etherparse::err::packet::BuildWriteError>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    write(&mut out).expect("building a fixture packet");
    out
}
