//! Packet fixtures as data: well-formed frames built with etherparse, and the edits that make
//! them malformed (bad IHL, fragments, truncation), addressed inside the test ranges.

use std::net::IpAddr;

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

/// Inserts an IPv6 fragment header (first fragment, more to come) after the fixed header of
/// an untagged IPv6 frame.
pub fn add_ipv6_fragment_header(frame: &mut Vec<u8>) {
    const FIXED: usize = 40;
    let next = frame[ETH_LEN + 6];
    frame[ETH_LEN + 6] = 44;
    let payload_len = u16::from_be_bytes([frame[ETH_LEN + 4], frame[ETH_LEN + 5]]) + 8;
    frame[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&payload_len.to_be_bytes());
    let fragment = [next, 0, 0x00, 0x01, 0, 0, 0, 7];
    frame.splice(ETH_LEN + FIXED..ETH_LEN + FIXED, fragment);
}

fn finish(
    size: usize,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), etherparse::err::packet::BuildWriteError>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    write(&mut out).expect("building a fixture packet");
    out
}
