//! Randomised test of the XDP program through BPF_PROG_TEST_RUN: frames mutated from a corpus
//! of well-formed ones (bit flips, truncation, length fields, IHL, TCP data offsets, protocol
//! numbers, Ethernet trailers, IPv6 extension headers, VLAN tags) run through the real program,
//! each checked against an independent model of the README's rules written here: the reason,
//! the verdict, and the exact output (unchanged, or the MACs rewritten towards the backend the
//! live Maglev table gives the flow by `lb_common`'s hash).
//!
//! `XLB_MUTATED_SEED` (default a fixed seed) and `XLB_MUTATED_FRAMES` (default 3,000) set the
//! run; a failure prints the seed and the frame to replay it.

use std::{collections::BTreeSet, net::Ipv4Addr};

use aya::Ebpf;
use lb_common::{
    FlowKey, Reason, VipKey, flow_hash, maglev_slot,
    service::{FAMILY_IPV4, FAMILY_IPV6, vip_filter_bit},
};
use lb_userspace::{counters::Totals, steering};
use xlb_tests::{
    packets::{self, Flow},
    require_privileges,
    steering::{TABLE_A, addr_bytes, dsr_output, load, run, vip_key},
};

const TABLE_SIZE: u32 = 13;
const DEFAULT_SEED: u64 = 0x786c_625f_6d75_7461;
const DEFAULT_FRAMES: u64 = 3_000;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?}: give a decimal number"))
    })
}

/// The VIPs of the run: (address, port, protocol); port 0 takes every port.
const VIPS: [(&str, u16, u8); 5] = [
    ("198.18.1.10", 80, 6),
    ("198.18.1.10", 53, 17),
    ("198.18.1.20", 0, 6),
    ("2001:db8:1::10", 443, 6),
    ("2001:db8:1::10", 53, 17),
];

/// What the model knows of the live state: VIP keys, VIP addresses and the live table.
struct Model {
    vips: BTreeSet<VipKey>,
    addresses: BTreeSet<([u8; 16], u8)>,
    filter_bits: BTreeSet<u32>,
    table: Vec<u32>,
}

/// The model's verdict on one frame: its reason, and for a steered frame the backend.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    reason: Reason,
    backend: Option<u32>,
}

fn be16(frame: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([frame[at], frame[at + 1]]))
}

fn v4_addr(frame: &[u8], at: usize) -> [u8; 16] {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&frame[at..at + 4]);
    addr
}

fn v6_addr(frame: &[u8], at: usize) -> [u8; 16] {
    frame[at..at + 16].try_into().unwrap()
}

/// A flow key as lb_common defines it.
fn key(
    family: u8,
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    sport: [u8; 2],
    dport: [u8; 2],
) -> FlowKey {
    let mut flow = if family == FAMILY_IPV4 {
        FlowKey::v4(
            &src[..4].try_into().unwrap(),
            &dst[..4].try_into().unwrap(),
            proto,
        )
    } else {
        FlowKey::v6(&src, &dst, proto)
    };
    flow.set_ports(sport, dport);
    flow
}

/// The parse result: the flow, whether it is an ICMP error about it, or a reason.
struct Parsed {
    flow: FlowKey,
    family: u8,
    icmp: bool,
}

impl Model {
    fn unsteered(&self, dst: [u8; 16], family: u8, reason: Reason) -> Reason {
        if self.addresses.contains(&(dst, family)) {
            reason
        } else {
            Reason::NotVip
        }
    }

    fn expect(&self, frame: &[u8]) -> Expected {
        let steered = self.parse(frame).and_then(|parsed| {
            let reason = if parsed.icmp {
                Reason::IcmpSteered
            } else {
                Reason::ForwardedDsr
            };
            self.steer(&parsed).map(|backend| (reason, backend))
        });
        match steered {
            Ok((reason, backend)) => Expected {
                reason,
                backend: Some(backend),
            },
            Err(reason) => Expected {
                reason,
                backend: None,
            },
        }
    }

    fn parse(&self, f: &[u8]) -> Result<Parsed, Reason> {
        let mut l2 = 14;
        let mut ether_type = be16(f, 12);
        if ether_type == 0x8100 {
            if f.len() < 18 {
                return Err(Reason::Truncated);
            }
            ether_type = be16(f, 16);
            l2 = 18;
        }
        let (family, dst, src, proto, l4, ip_end) = match ether_type {
            0x0800 => {
                if f.len() < l2 + 20 {
                    return Err(Reason::Truncated);
                }
                let header_len = usize::from(f[l2] & 0x0f) * 4;
                let total = be16(f, l2 + 2);
                if f[l2] >> 4 != 4 || header_len < 20 || total < header_len {
                    return Err(Reason::BadHeader);
                }
                if l2 + total > f.len() {
                    return Err(Reason::Truncated);
                }
                if be16(f, l2 + 6) & 0x3fff != 0 {
                    return Err(Reason::Fragment);
                }
                let dst = v4_addr(f, l2 + 16);
                (
                    FAMILY_IPV4,
                    dst,
                    v4_addr(f, l2 + 12),
                    f[l2 + 9],
                    l2 + header_len,
                    l2 + total,
                )
            }
            0x86dd => {
                if f.len() < l2 + 40 {
                    return Err(Reason::Truncated);
                }
                if f[l2] >> 4 != 6 {
                    return Err(Reason::BadHeader);
                }
                let end = l2 + 40 + be16(f, l2 + 4);
                if end > f.len() {
                    return Err(Reason::Truncated);
                }
                if f[l2 + 6] == 44 {
                    return Err(Reason::Fragment);
                }
                (
                    FAMILY_IPV6,
                    v6_addr(f, l2 + 24),
                    v6_addr(f, l2 + 8),
                    f[l2 + 6],
                    l2 + 40,
                    end,
                )
            }
            _ => return Err(Reason::NotIp),
        };
        if !self.filter_bits.contains(&vip_filter_bit(&dst, family)) {
            return Err(Reason::NotVip);
        }
        let icmp_proto = if family == FAMILY_IPV4 { 1 } else { 58 };
        let parsed = if proto == icmp_proto {
            self.icmp(f, family, dst, l4, ip_end).ok_or(Reason::OtherL4)
        } else {
            transport(f, proto, l4, ip_end).map(|(sport, dport)| Parsed {
                flow: key(family, src, dst, proto, sport, dport),
                family,
                icmp: false,
            })
        };
        parsed.map_err(|reason| self.unsteered(dst, family, reason))
    }

    /// A too-big error about a TCP or UDP packet `dst` sent, inside the IP packet.
    fn icmp(
        &self,
        f: &[u8],
        family: u8,
        dst: [u8; 16],
        l4: usize,
        ip_end: usize,
    ) -> Option<Parsed> {
        let quoted = l4 + 8;
        let (header_len, qsrc, qdst, qproto) = if family == FAMILY_IPV4 {
            if f.len() < quoted + 20 || f[l4] != 3 || f[l4 + 1] != 4 {
                return None;
            }
            let header_len = usize::from(f[quoted] & 0x0f) * 4;
            if f[quoted] >> 4 != 4 || header_len < 20 {
                return None;
            }
            (
                header_len,
                v4_addr(f, quoted + 12),
                v4_addr(f, quoted + 16),
                f[quoted + 9],
            )
        } else {
            if f.len() < quoted + 40 || f[l4] != 2 || f[quoted] >> 4 != 6 {
                return None;
            }
            (
                40,
                v6_addr(f, quoted + 8),
                v6_addr(f, quoted + 24),
                f[quoted + 6],
            )
        };
        let ports = quoted + header_len;
        if qsrc != dst || !(qproto == 6 || qproto == 17) || ports + 4 > ip_end {
            return None;
        }
        let (sport, dport) = ([f[ports + 2], f[ports + 3]], [f[ports], f[ports + 1]]);
        Some(Parsed {
            flow: key(family, qdst, qsrc, qproto, sport, dport),
            family,
            icmp: true,
        })
    }

    /// The backend the VIP's live table gives the flow, or why none.
    fn steer(&self, parsed: &Parsed) -> Result<u32, Reason> {
        let flow = &parsed.flow;
        let lookup = |port: u16| VipKey {
            addr: flow.dst,
            port,
            proto: flow.proto,
            family: parsed.family,
        };
        if !self.vips.contains(&lookup(flow.dport)) && !self.vips.contains(&lookup(0)) {
            return Err(if parsed.icmp {
                self.unsteered(flow.dst, parsed.family, Reason::OtherL4)
            } else {
                Reason::NotVip
            });
        }
        Ok(self.table[maglev_slot(flow_hash(flow, false), TABLE_SIZE) as usize])
    }
}

/// The ports of a TCP or UDP header inside the IP packet, or why not.
fn transport(f: &[u8], proto: u8, l4: usize, ip_end: usize) -> Result<([u8; 2], [u8; 2]), Reason> {
    let ports = |at: usize| ([f[at], f[at + 1]], [f[at + 2], f[at + 3]]);
    match proto {
        6 => {
            if l4 + 20 > f.len() || l4 + 20 > ip_end {
                return Err(Reason::Truncated);
            }
            let data_offset = usize::from(f[l4 + 12] >> 4) * 4;
            if data_offset < 20 {
                return Err(Reason::BadHeader);
            }
            if l4 + data_offset > ip_end {
                return Err(Reason::Truncated);
            }
            Ok(ports(l4))
        }
        17 => {
            if l4 + 8 > f.len() || l4 + 8 > ip_end {
                return Err(Reason::Truncated);
            }
            let len = be16(f, l4 + 4);
            if len < 8 || l4 + len > ip_end {
                return Err(Reason::BadHeader);
            }
            Ok(ports(l4))
        }
        _ => Err(Reason::OtherL4),
    }
}

/// Well-formed frames to VIPs, to their filter-bit neighbours, and to other hosts.
fn corpus() -> Vec<Vec<u8>> {
    let vip4: Ipv4Addr = "198.18.1.10".parse().unwrap();
    let bit = vip_filter_bit(&addr_bytes(vip4.into()).0, FAMILY_IPV4);
    let neighbour4 = (1..=u32::from(u16::MAX))
        .map(|i| Ipv4Addr::from(u32::from(vip4) + i))
        .find(|a| vip_filter_bit(&addr_bytes((*a).into()).0, FAMILY_IPV4) == bit)
        .expect("an IPv4 neighbour")
        .to_string();
    let mut frames = Vec::new();
    for (client, dst, router) in [
        ("198.18.0.1", "198.18.1.10", "198.18.3.1"),
        ("198.18.0.1", "198.18.1.20", "198.18.3.1"),
        ("198.18.0.1", neighbour4.as_str(), "198.18.3.1"),
        ("198.18.0.1", "198.18.7.7", "198.18.3.1"),
        ("2001:db8::1", "2001:db8:1::10", "2001:db8:3::1"),
        ("2001:db8::1", "2001:db8:2::10", "2001:db8:3::1"),
    ] {
        for dport in [80, 443, 53, 22] {
            let flow = Flow::new(client, dst, 40000 + dport, dport);
            frames.push(packets::tcp_syn(&flow));
            frames.push(packets::tcp_ack(&flow, b"GET / HTTP/1.1\r\n"));
            frames.push(packets::udp(&flow, b"query"));
            frames.push(packets::icmp_too_big(router, &flow));
        }
        let flow = Flow::new(client, dst, 1, 1);
        if flow.dst.is_ipv4() {
            frames.push(packets::icmpv4_echo(&flow));
            frames.push(packets::ipv4_tcp_syn_with_options(&flow, &[1; 12]));
            frames.push(packets::tagged_tcp_syn(
                &Flow::new(client, dst, 5000, 80),
                9,
            ));
        }
    }
    frames
}

/// One random mutation of a frame (earlier mutations may have made it anything); the frame
/// stays >= 14 bytes, the least BPF_PROG_TEST_RUN takes. Field edits apply to untagged IP
/// frames long enough to hold the field.
fn mutate(rng: &mut fastrand::Rng, mut f: Vec<u8>) -> Vec<u8> {
    const ETH: usize = packets::ETH_LEN;
    let len = f.len();
    let v4 = f[12..14] == [0x08, 0x00] && len >= ETH + 20;
    let v6 = f[12..14] == [0x86, 0xdd] && len >= ETH + 40;
    let l4 = if v4 || v6 {
        packets::l4_offset(&f)
    } else {
        ETH
    };
    match rng.u8(0..12) {
        0 => {
            // Flip 1-3 bits in the headers.
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(12..len.min(l4 + 24).max(13));
                f[at] ^= 1 << rng.u8(0..8);
            }
        }
        1 if len > ETH => f.truncate(rng.usize(ETH..len)),
        2 if v4 => packets::set_ipv4_total_len(&mut f, rng.u16(0..len as u16 + 8)),
        2 | 3 if v6 => packets::set_ipv6_payload_len(&mut f, rng.u16(0..len as u16)),
        3 if v4 => packets::set_ipv4_ihl(&mut f, rng.u8(0..16)),
        4 if (v4 || v6) && len >= l4 + 14 => packets::set_tcp_data_offset(&mut f, rng.u8(0..16)),
        5 if (v4 || v6) && len >= l4 + 8 => packets::set_udp_len(&mut f, rng.u16(0..64)),
        6 if v4 || v6 => {
            packets::set_ip_proto(&mut f, [0, 1, 6, 17, 47, 58, 43, 60][rng.usize(0..8)])
        }
        7 => f.resize(len + rng.usize(1..32), rng.u8(..)),
        8 if v6 => {
            // An 8-byte extension header (hop-by-hop, routing, destination options) in front.
            let next = f[ETH + 6];
            let payload = be16(&f, ETH + 4) as u16;
            packets::set_ipv6_payload_len(&mut f, payload.wrapping_add(8));
            f[ETH + 6] = [0, 43, 60][rng.usize(0..3)];
            f.splice(ETH + 40..ETH + 40, [next, 0, 0, 0, 0, 0, 0, 0]);
        }
        8 if v4 => packets::set_ipv4_frag(&mut f, [0x2000, 0x0001, 0x4000][rng.usize(0..3)]),
        9 if v6 => packets::add_ipv6_fragment_header(&mut f),
        9 => f = packets::with_tags(&f, &[(0x8100, rng.u16(1..4095))]),
        10 => f = packets::with_tags(&f, &[(0x88a8, 7), (0x8100, 8)]),
        _ => {
            // Rewrite one of the first bytes after the IP header (ports, ICMP type and code).
            if len > l4 {
                let at = rng.usize(l4..len.min(l4 + 8));
                f[at] = rng.u8(..);
            }
        }
    }
    f
}

/// Test that every mutated frame gets the reason, verdict and exact output bytes the
/// independent model predicts (only well-formed frames to a VIP are forwarded, to the
/// backend the live table gives their flow), and that the counters add up to the frames run.
#[test]
fn mutated_frames_match_the_model() {
    require_privileges!();
    let seed = knob("XLB_MUTATED_SEED", DEFAULT_SEED);
    let frames = knob("XLB_MUTATED_FRAMES", DEFAULT_FRAMES);
    let keys: Vec<(VipKey, u32)> = VIPS
        .iter()
        .map(|&(addr, port, proto)| (vip_key(addr, port, proto), 0))
        .collect();
    let (mut ebpf, _) = load(&keys, TABLE_SIZE);
    let model = Model {
        vips: keys.iter().map(|(key, _)| *key).collect(),
        addresses: keys.iter().map(|(key, _)| (key.addr, key.family)).collect(),
        filter_bits: keys
            .iter()
            .map(|(key, _)| vip_filter_bit(&key.addr, key.family))
            .collect(),
        table: steering::read_table(&ebpf, TABLE_A, TABLE_SIZE).expect("live table"),
    };
    let corpus = corpus();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut reasons = std::collections::BTreeMap::<&str, u64>::new();
    let mut bytes = 0u64;
    for i in 0..frames {
        let mut frame = corpus[rng.usize(0..corpus.len())].clone();
        for _ in 0..rng.usize(0..3) {
            frame = mutate(&mut rng, frame);
        }
        check(&mut ebpf, &model, &frame, &format!("seed {seed} frame {i}"));
        *reasons
            .entry(model.expect(&frame).reason.name())
            .or_default() += 1;
        bytes += frame.len() as u64;
    }
    let totals = Totals::read(&ebpf).expect("counters");
    let counted: u64 = Reason::ALL.iter().map(|r| totals.reason(*r).packets).sum();
    let counted_bytes: u64 = Reason::ALL.iter().map(|r| totals.reason(*r).bytes).sum();
    assert_eq!(
        (counted, counted_bytes),
        (frames, bytes),
        "seed {seed}: reason counters"
    );
    for reason in Reason::ALL {
        let want = reasons.get(reason.name()).copied().unwrap_or(0);
        assert_eq!(
            totals.reason(reason).packets,
            want,
            "seed {seed}: {}",
            reason.name()
        );
    }
    // The corpus and mutations must reach every branch that matters, or the run proves little.
    // Only these are out of reach: every VIP here forwards by dsr to active backends.
    let unreachable = [
        Reason::NoBackend,
        Reason::ForwardedIpip,
        Reason::EncapTooBig,
        Reason::Decapsulated,
        Reason::TooBigAnswered,
    ];
    for reason in Reason::ALL.into_iter().filter(|r| !unreachable.contains(r)) {
        assert!(
            frames < 1_000 || reasons.contains_key(reason.name()),
            "seed {seed}: no frame reached {} in {frames}: {reasons:?}",
            reason.name()
        );
    }
    eprintln!("seed {seed}, {frames} frames: {reasons:?}");
}

fn check(ebpf: &mut Ebpf, model: &Model, frame: &[u8], context: &str) {
    let before = Totals::read(ebpf).expect("counters");
    let expected = model.expect(frame);
    let output = match expected.backend {
        Some(id) => dsr_output(frame, id),
        None => frame.to_vec(),
    };
    let got = run(ebpf, frame);
    let after = Totals::read(ebpf).expect("counters");
    let counted: Vec<&str> = Reason::ALL
        .iter()
        .filter(|r| after.reason(**r).packets != before.reason(**r).packets)
        .map(|r| r.name())
        .collect();
    assert_eq!(
        (got, counted),
        (
            (Some(expected.reason.verdict()), output),
            vec![expected.reason.name()]
        ),
        "{context}: frame {frame:02x?}"
    );
}
