//! Synthetic new flows for `plan`'s kernel check: reproducible client addresses and ports, the
//! frames that carry them, and what the XDP program did with each frame.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::PacketBuilder;
use lb_common::{FlowKey, Verdict, address::to_kernel};

use super::clients::Clients;
use crate::config::{Protocol, VipModel};

/// Clients come from ranges reserved for benchmarking and documentation (RFC 2544, RFC 3849),
/// so a sample can never be mistaken for real traffic: 198.18.128.0/17 and 2001:db8:ffff::/48.
const CLIENTS_V4: [u8; 3] = [198, 18, 128];
const CLIENTS_V6: [u8; 6] = [0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff];
/// Source MAC of the synthetic frames (the client's side) and destination (ours).
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];

/// xorshift64*: tiny, fast, and the same sequence on every host for a seed.
pub(super) struct Rng(u64);

impl Rng {
    /// A generator for `seed`, decorrelated from generators of nearby seeds by splitmix64.
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // xorshift has one fixed point, 0.
        Rng(if z == 0 { 1 } else { z })
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A port in `low..=65535`.
    fn port(&mut self, low: u16) -> u16 {
        let span = u64::from(u16::MAX - low) + 1;
        low + (self.next() % span) as u16
    }
}

/// One synthetic new flow.
#[derive(Clone, Copy, Debug)]
pub(super) struct Probe {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub key: FlowKey,
}

/// `count` new flows to `vip` from random clients and source ports; for a port-0 VIP also to
/// random destination ports, except those in `claimed` (ports a more specific VIP of the same
/// address and protocol takes, whose packets the kernel rightly steers elsewhere). The same
/// 5-tuple may come up twice, as it would in real traffic.
pub(super) fn probes(vip: &VipModel, claimed: &[u16], count: u32, seed: u64) -> Vec<Probe> {
    let mut rng = vip_rng(vip, seed);
    (0..count)
        .map(|_| {
            let client = match vip.address {
                IpAddr::V4(_) => {
                    let low = rng.next() as u16 & 0x7fff;
                    let [a, b, c] = CLIENTS_V4;
                    IpAddr::V4(Ipv4Addr::new(a, b, c | (low >> 8) as u8, low as u8))
                }
                IpAddr::V6(_) => {
                    let mut octets = [0u8; 16];
                    octets[..6].copy_from_slice(&CLIENTS_V6);
                    octets[6..14].copy_from_slice(&rng.next().to_be_bytes());
                    octets[14..].copy_from_slice(&(rng.next() as u16).to_be_bytes());
                    IpAddr::V6(Ipv6Addr::from(octets))
                }
            };
            random_port_probe(vip, claimed, client, &mut rng)
        })
        .collect()
}

/// `count` new flows to `vip` from the real `clients` (those of the VIP's address family), each
/// sending its weight's part of them from random source ports; or, for a capture, the captured
/// flows to `vip` themselves. Empty when no client of the sample can reach `vip`.
pub(super) fn client_probes(
    vip: &VipModel,
    claimed: &[u16],
    clients: &Clients,
    count: u32,
    seed: u64,
) -> Vec<Probe> {
    match clients {
        Clients::Synthetic => probes(vip, claimed, count, seed),
        Clients::Addresses(addresses) => {
            let usable: Vec<(IpAddr, u64)> = addresses
                .iter()
                .filter(|(address, _)| address.is_ipv4() == vip.address.is_ipv4())
                .map(|(address, weight)| (*address, u64::from(*weight)))
                .collect();
            let total: u64 = usable.iter().map(|(_, weight)| weight).sum();
            if total == 0 {
                return Vec::new();
            }
            let mut rng = vip_rng(vip, seed);
            (0..u64::from(count))
                .map(|k| {
                    // Flow k goes to the client whose weight covers position k * total / count.
                    let mut position = k * total / u64::from(count);
                    let client = usable
                        .iter()
                        .find(|(_, weight)| {
                            let inside = position < *weight;
                            position = position.saturating_sub(*weight);
                            inside
                        })
                        .map_or(usable[0].0, |(address, _)| *address);
                    random_port_probe(vip, claimed, client, &mut rng)
                })
                .collect()
        }
        Clients::Flows(flows) => flows
            .iter()
            .filter(|(_, destination, proto)| {
                destination.ip().to_canonical() == vip.address
                    && *proto == vip.protocol.number()
                    && if vip.port == 0 {
                        !claimed.contains(&destination.port())
                    } else {
                        destination.port() == vip.port
                    }
            })
            .map(|(source, destination, _)| {
                probe(
                    vip,
                    source.ip().to_canonical(),
                    source.port(),
                    destination.port(),
                )
            })
            .collect(),
    }
}

/// One random stream per VIP and seed, independent of the other VIPs in the config.
fn vip_rng(vip: &VipModel, seed: u64) -> Rng {
    let (vip_bytes, _) = to_kernel(vip.address);
    let salt = vip_bytes
        .iter()
        .chain(&vip.port.to_be_bytes())
        .chain(&[vip.protocol.number()])
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    Rng::new(seed ^ salt)
}

/// A flow from `client` with a random source port (and, for a port-0 VIP, a random destination
/// port no more specific VIP claims).
fn random_port_probe(vip: &VipModel, claimed: &[u16], client: IpAddr, rng: &mut Rng) -> Probe {
    let sport = rng.port(1024);
    let dport = if vip.port == 0 {
        loop {
            let port = rng.port(1);
            if !claimed.contains(&port) {
                break port;
            }
        }
    } else {
        vip.port
    };
    probe(vip, client, sport, dport)
}

fn probe(vip: &VipModel, client: IpAddr, sport: u16, dport: u16) -> Probe {
    Probe {
        source: SocketAddr::new(client, sport),
        destination: SocketAddr::new(vip.address, dport),
        key: FlowKey {
            src: to_kernel(client).0,
            dst: to_kernel(vip.address).0,
            sport: sport.to_be(),
            dport: dport.to_be(),
            proto: vip.protocol.number(),
            pad: [0; 3],
        },
    }
}

/// The first packet of `probe`'s flow: a TCP SYN, or a UDP datagram with a small payload,
/// in an untagged Ethernet frame with valid checksums.
pub(super) fn frame(probe: &Probe, protocol: Protocol) -> Vec<u8> {
    let (sport, dport) = (probe.source.port(), probe.destination.port());
    let ethernet = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC);
    let ip = match (probe.source.ip(), probe.destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => ethernet.ipv4(src.octets(), dst.octets(), 64),
        (IpAddr::V6(src), IpAddr::V6(dst)) => ethernet.ipv6(src.octets(), dst.octets(), 64),
        _ => unreachable!("probes take the client's family from the VIP"),
    };
    let mut frame = Vec::new();
    let written = match protocol {
        Protocol::Tcp => ip
            .tcp(sport, dport, 1000, 64240)
            .syn()
            .write(&mut frame, &[]),
        Protocol::Udp => ip.udp(sport, dport).write(&mut frame, b"xlb plan"),
    };
    written.expect("a SYN or an 8-byte datagram fits its headers' length fields");
    frame
}

/// What the XDP program did with a probe's frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Observed {
    /// Sent (XDP_TX) to this destination MAC (`dsr`).
    Mac([u8; 6]),
    /// Sent (XDP_TX) in a tunnel to this outer destination (`ipip`).
    Tunnel(IpAddr),
    /// Dropped, as for a VIP whose table has no backend for the flow.
    Dropped,
    /// Any other verdict (the raw XDP code), or a frame this module cannot read.
    Other(u32),
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Observed::Mac(mac) => write!(f, "sent to MAC {}", lb_common::address::Mac(*mac)),
            Observed::Tunnel(address) => write!(f, "tunnelled to {address}"),
            Observed::Dropped => f.write_str("dropped"),
            Observed::Other(code) => match Verdict::from_code(*code) {
                Some(verdict) => write!(f, "verdict {}", verdict.name()),
                None => write!(f, "XDP return code {code}"),
            },
        }
    }
}

/// Reads the verdict and output frame of one test run; `ipip` says how the VIP forwards.
pub(super) fn observe(code: u32, output: &[u8], ipip: bool) -> Observed {
    match Verdict::from_code(code) {
        Some(Verdict::Tx) => {}
        Some(Verdict::Drop) => return Observed::Dropped,
        _ => return Observed::Other(code),
    }
    if !ipip {
        return match output.get(..6) {
            Some(mac) => Observed::Mac(mac.try_into().expect("6 bytes")),
            None => Observed::Other(code),
        };
    }
    // The input frames carry no VLAN tag, so the outer IP header follows the Ethernet header.
    let header = &output[ETH_LEN.min(output.len())..];
    let address = match output.get(12..14) {
        Some(t) if t == ETHERTYPE_IPV4 => header
            .get(16..20)
            .map(|d| IpAddr::from(<[u8; 4]>::try_from(d).expect("4 bytes"))),
        Some(t) if t == ETHERTYPE_IPV6 => header
            .get(24..40)
            .map(|d| IpAddr::from(<[u8; 16]>::try_from(d).expect("16 bytes"))),
        _ => None,
    };
    address.map_or(Observed::Other(code), Observed::Tunnel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Forwarding, HashMode};

    /// The one's-complement sum (RFC 1071) of `bytes`, not yet folded.
    fn sum(bytes: &[u8]) -> u32 {
        bytes
            .chunks(2)
            .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
            .sum()
    }

    fn pseudo_sum(src: &[u8], dst: &[u8], proto: u8, len: u16) -> u32 {
        sum(src) + sum(dst) + u32::from(proto) + u32::from(len)
    }

    fn finish(mut sum: u32) -> u16 {
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn vip(address: &str, port: u16, protocol: Protocol) -> VipModel {
        VipModel {
            name: "web".into(),
            address: address.parse().unwrap(),
            port,
            protocol,
            forwarding: Forwarding::Dsr,
            hash: HashMode::FiveTuple,
            table_size: 251,
            backends: Vec::new(),
        }
    }

    #[test]
    fn probes_are_reproducible_and_in_the_client_ranges() {
        // Test that a seed gives the same sample, another seed another, and that clients come
        // from 198.18.128.0/17 or 2001:db8:ffff::/48 with the VIP as destination.
        let v4 = vip("198.18.1.10", 80, Protocol::Tcp);
        let a = probes(&v4, &[], 500, 7);
        let b = probes(&v4, &[], 500, 7);
        let c = probes(&v4, &[], 500, 8);
        assert_eq!(
            a.iter().map(|p| p.source).collect::<Vec<_>>(),
            b.iter().map(|p| p.source).collect::<Vec<_>>()
        );
        assert_ne!(a[0].source, c[0].source);
        for probe in &a {
            let IpAddr::V4(src) = probe.source.ip() else {
                panic!("IPv4 VIP, IPv6 client")
            };
            assert_eq!(src.octets()[..2], [198, 18]);
            assert!(src.octets()[2] >= 128, "{src}");
            assert!(probe.source.port() >= 1024);
            assert_eq!(probe.destination, "198.18.1.10:80".parse().unwrap());
        }
        let v6 = vip("2001:db8:1::10", 443, Protocol::Udp);
        for probe in probes(&v6, &[], 100, 7) {
            let IpAddr::V6(src) = probe.source.ip() else {
                panic!("IPv6 VIP, IPv4 client")
            };
            assert_eq!(src.segments()[..3], [0x2001, 0x0db8, 0xffff]);
            assert_eq!(probe.key.proto, 17);
        }
    }

    #[test]
    fn port_zero_probes_avoid_claimed_ports() {
        // Test that a port-0 VIP's sample uses many destination ports but none a more
        // specific VIP claims.
        let any = vip("198.18.1.20", 0, Protocol::Udp);
        let sample = probes(&any, &[53], 5000, 1);
        let ports: std::collections::BTreeSet<u16> =
            sample.iter().map(|p| p.destination.port()).collect();
        assert!(ports.len() > 4000, "{} distinct ports", ports.len());
        assert!(!ports.contains(&53) && !ports.contains(&0));
    }

    #[test]
    fn frames_have_valid_checksums() {
        // Test that IPv4 and transport checksums verify (sum to 0xffff with the field in).
        let probe = probes(&vip("198.18.1.10", 80, Protocol::Tcp), &[], 1, 3)[0];
        let tcp = frame(&probe, Protocol::Tcp);
        assert_eq!(tcp.len(), 14 + 20 + 20);
        assert_eq!(finish(sum(&tcp[14..34])), 0);
        let IpAddr::V4(src) = probe.source.ip() else {
            unreachable!()
        };
        let pseudo = pseudo_sum(&src.octets(), &[198, 18, 1, 10], 6, 20);
        assert_eq!(finish(pseudo + sum(&tcp[34..])), 0);
        assert_eq!(tcp[34 + 13], 0x02, "SYN only");
        let probe = probes(&vip("2001:db8:1::10", 53, Protocol::Udp), &[], 1, 3)[0];
        let udp = frame(&probe, Protocol::Udp);
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (probe.source.ip(), probe.destination.ip()) else {
            unreachable!()
        };
        let len = (udp.len() - 54) as u16;
        let pseudo = pseudo_sum(&src.octets(), &dst.octets(), 17, len);
        assert_eq!(finish(pseudo + sum(&udp[54..])), 0);
    }

    #[test]
    fn observe_reads_the_mac_or_the_outer_destination() {
        // Test that a TX frame is read by MAC for dsr and by outer destination for ipip.
        let mut out = vec![0u8; 60];
        out[..6].copy_from_slice(&[2, 0, 0, 0, 3, 1]);
        assert_eq!(observe(3, &out, false), Observed::Mac([2, 0, 0, 0, 3, 1]));
        out[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        out[14 + 16..14 + 20].copy_from_slice(&[198, 18, 0, 11]);
        assert_eq!(
            observe(3, &out, true),
            Observed::Tunnel("198.18.0.11".parse().unwrap())
        );
        assert_eq!(observe(1, &out, true), Observed::Dropped);
        assert_eq!(observe(2, &out, false), Observed::Other(2));
    }
}
