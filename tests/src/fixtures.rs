//! The packet fixtures as one table: each case's set-up, input frame, expected reason (and so
//! verdict) and expected output. `tests/tests/packet_fixtures.rs` runs every case on a freshly
//! loaded program; `cargo xtask bench` (`xlb-bench`) measures the cases that carry a [`Bench`],
//! under their names here.

use std::net::{IpAddr, Ipv4Addr};

use aya::Ebpf;
use lb_common::{
    PROGRAM_NAME, Reason, Verdict, Vip,
    proto::{TCP as IPPROTO_TCP, UDP as IPPROTO_UDP},
    service::{VIP_FORWARD_IPIP, vip_filter_bit_v4},
};
use lb_userspace::{object, steering as kernel};

use crate::{
    packets::{self, Flow},
    steering::{dsr_output, flow_key, load, load_scaled, table, tunnelled, use_ipip, vip_key},
};

const VIP_V4: &str = "198.18.1.10";
const VIP_V6: &str = "2001:db8:1::10";
/// Shares the IPv6 VIP's last 8 bytes, so its filter bit, but is no VIP address.
const NEIGHBOUR_V6: &str = "2001:db8:2::10";
/// Slots of the bench set-ups' tables, the default.
const BENCH_SLOTS: u32 = lb_common::service::DEFAULT_TABLE_SIZE;
const IPPROTO_GRE: u8 = 47;
const IPPROTO_HOP_BY_HOP: u8 = 0;

/// The program state a fixture runs against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Setup {
    /// No VIPs.
    Empty,
    /// `dsr` VIPs 198.18.1.10 and 2001:db8:1::10, port 80/TCP, 3 backends, 65,537 slots.
    Dsr,
    /// The same VIPs in `ipip` mode, over IPv4 backends (`steering::use_ipip`).
    Ipip,
    /// 1,000 `dsr` VIPs (198.18.100.0 onwards, port 80/TCP) x 100 backends, a 65,537-slot
    /// table each (~260 MB of tables).
    Large,
    /// `dsr` VIPs 198.18.1.10 80/TCP and 53/UDP, 2001:db8:1::10 443/TCP and 53/UDP, 3
    /// backends, 13 slots.
    Services,
}

/// A program loaded with a [`Setup`], and what it needs to predict a steered packet's backend.
pub struct Loaded {
    pub ebpf: Ebpf,
    /// The VIP entry the set-up's steered fixtures hit (its hash flags and table size).
    vip: Vip,
    /// That VIP's table.
    table: Vec<u32>,
}

impl Loaded {
    /// The backend the kernel must choose for `flow` (`proto`): its slot in the VIP's table.
    pub fn backend(&self, flow: &Flow, proto: u8) -> u32 {
        self.table[kernel::slot(&self.vip, &flow_key(flow, proto)) as usize]
    }
}

impl Setup {
    pub fn load(self) -> Loaded {
        let both = |port, flags| {
            [
                (vip_key(VIP_V4, port, IPPROTO_TCP), flags),
                (vip_key(VIP_V6, port, IPPROTO_TCP), flags),
            ]
        };
        let small = |vips: &[_], slots| {
            let (ebpf, vip) = load(vips, slots);
            let table = table(&[0, 1, 2], slots);
            Loaded { ebpf, vip, table }
        };
        match self {
            Setup::Empty => Loaded {
                ebpf: object::load(object::XDP_OBJECT, PROGRAM_NAME).expect("load xlb"),
                vip: Vip::default(),
                table: Vec::new(),
            },
            Setup::Dsr => small(&both(80, 0), BENCH_SLOTS),
            Setup::Ipip => {
                let mut loaded = small(&both(80, VIP_FORWARD_IPIP), BENCH_SLOTS);
                use_ipip(&mut loaded.ebpf, false, 1500);
                loaded
            }
            Setup::Large => {
                // Every VIP has the same hash flags, table size and table.
                let (ebpf, vip, table) = load_scaled(1000, 100, BENCH_SLOTS);
                Loaded { ebpf, vip, table }
            }
            Setup::Services => small(
                &[
                    (vip_key(VIP_V4, 80, IPPROTO_TCP), 0),
                    (vip_key(VIP_V4, 53, IPPROTO_UDP), 0),
                    (vip_key(VIP_V6, 443, IPPROTO_TCP), 0),
                    (vip_key(VIP_V6, 53, IPPROTO_UDP), 0),
                ],
                13,
            ),
        }
    }
}

/// What a fixture must come out as.
#[derive(Clone, Copy, Debug)]
pub enum Output {
    Unchanged,
    /// Rewritten by `dsr` towards the backend the table gives the flow (`Flow`, protocol).
    Dsr(Flow, u8),
    /// Tunnelled by `ipip` to the backend the table gives the flow (`Flow`, protocol).
    Ipip(Flow, u8),
}

/// How the bench measures a case.
#[derive(Clone, Copy, Debug)]
pub struct Bench {
    /// The program's output takes the same path again, so the kernel's repeat loop over one
    /// buffer measures it too (fresh packets, one call each, measure every case).
    pub repeat: bool,
    pub target: Option<f64>,
}

/// Targets as ratios to bare XDP_TX. The bench judges them on the method the paths call for:
/// fresh packets for VIP paths (they rewrite the packet and the flow table), the repeat loop for
/// paths that leave the packet alone.
const ESTABLISHED: Option<f64> = Some(4.0);
const NEW_FLOW: Option<f64> = Some(6.0);
const NON_VIP: Option<f64> = Some(1.5);

pub struct Fixture {
    pub name: &'static str,
    pub setup: Setup,
    pub frame: Vec<u8>,
    /// Counted under this reason, with its verdict.
    pub reason: Reason,
    pub output: Output,
    pub bench: Option<Bench>,
}

impl Fixture {
    pub fn verdict(&self) -> Verdict {
        self.reason.verdict()
    }

    /// The exact bytes the program must emit for this fixture's frame.
    pub fn expected_output(&self, loaded: &Loaded) -> Vec<u8> {
        match self.output {
            Output::Unchanged => self.frame.clone(),
            Output::Dsr(flow, proto) => dsr_output(&self.frame, loaded.backend(&flow, proto)),
            Output::Ipip(flow, proto) => {
                tunnelled(&self.frame, loaded.backend(&flow, proto), false)
            }
        }
    }
}

/// A case the bench measures.
fn bench(
    name: &'static str,
    setup: Setup,
    frame: Vec<u8>,
    reason: Reason,
    output: Output,
    target: Option<f64>,
) -> Fixture {
    Fixture {
        name,
        setup,
        frame,
        reason,
        output,
        // `ipip` grows the frame: the repeat loop would see its own tunnel frame.
        bench: Some(Bench {
            repeat: setup != Setup::Ipip,
            target,
        }),
    }
}

/// The paths `cargo xtask bench` measures. A SYN always takes the new-flow path (Maglev lookup
/// and flow-table insert); an ACK takes it once and then hits the flow table. `dsr` only
/// re-addresses the frame, so a repeat loop sees the same flow again and shows the path's own
/// cost without the per-call set-up.
#[rustfmt::skip] // One row per case, read as a table.
fn bench_cases() -> Vec<Fixture> {
    let v4 = Flow::new("198.18.0.1", VIP_V4, 40000, 80);
    let v6 = Flow::new("2001:db8::1", VIP_V6, 40000, 80);
    // The large set-up's VIP 500.
    let large = Flow::new("198.18.0.1", "198.18.101.244", 40000, 80);
    let tcp = |flow| Output::Dsr(flow, IPPROTO_TCP);
    let ipip = |flow| Output::Ipip(flow, IPPROTO_TCP);
    let ack = |flow| packets::tcp_ack(flow, b"GET /");
    let syn = packets::tcp_syn;
    let unchanged = Output::Unchanged;
    use Reason::{ForwardedDsr, ForwardedIpip, NotIp, NotVip};
    use Setup::{Dsr, Empty, Ipip, Large};
    vec![
        // name                                       set-up frame                        reason         output     target
        bench("non_vip_ipv4_tcp_syn",                 Empty, syn(&v4),                    NotVip,        unchanged, NON_VIP),
        bench("non_vip_ipv6_udp",                     Empty, packets::udp(&v6, b"query"), NotVip,        unchanged, NON_VIP),
        bench("non_ip_arp",                           Empty, packets::arp_request(),      NotIp,         unchanged, NON_VIP),
        bench("dsr_new_flow_ipv4",                    Dsr,   syn(&v4),                    ForwardedDsr,  tcp(v4),   NEW_FLOW),
        bench("dsr_established_ipv4",                 Dsr,   ack(&v4),                    ForwardedDsr,  tcp(v4),   ESTABLISHED),
        bench("dsr_new_flow_ipv6",                    Dsr,   syn(&v6),                    ForwardedDsr,  tcp(v6),   NEW_FLOW),
        bench("dsr_established_ipv6",                 Dsr,   ack(&v6),                    ForwardedDsr,  tcp(v6),   ESTABLISHED),
        bench("ipip_new_flow_ipv4",                   Ipip,  syn(&v4),                    ForwardedIpip, ipip(v4),  NEW_FLOW),
        bench("ipip_established_ipv4",                Ipip,  ack(&v4),                    ForwardedIpip, ipip(v4),  ESTABLISHED),
        bench("ipip_new_flow_ipv6",                   Ipip,  syn(&v6),                    ForwardedIpip, ipip(v6),  NEW_FLOW),
        bench("ipip_established_ipv6",                Ipip,  ack(&v6),                    ForwardedIpip, ipip(v6),  ESTABLISHED),
        // The small side of the scale comparison, beside the large set-up's.
        bench("dsr_new_flow_1vip_3backends",          Dsr,   syn(&v4),                    ForwardedDsr,  tcp(v4),   None),
        bench("dsr_new_flow_1000vips_100backends",    Large, syn(&large),                 ForwardedDsr,  tcp(large), None),
        bench("dsr_established_1000vips_100backends", Large, ack(&large),                 ForwardedDsr,  tcp(large), None),
    ]
}

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

/// A [`Setup::Services`] fixture steered by `dsr` (`Some(flow, proto)`) or left unchanged.
fn services(
    name: &'static str,
    frame: Vec<u8>,
    reason: Reason,
    dsr: Option<(Flow, u8)>,
) -> Fixture {
    Fixture {
        name,
        setup: Setup::Services,
        frame,
        reason,
        output: dsr.map_or(Output::Unchanged, |(flow, proto)| Output::Dsr(flow, proto)),
        bench: None,
    }
}

/// Frames to VIP addresses and to addresses that share a VIP's filter bit: transport headers
/// must lie inside the IP packet (not in the Ethernet trailer), TCP data offsets and UDP
/// lengths must be consistent, other transports to a VIP address are `other_l4`, and nothing
/// to a non-VIP address is ever steered or dropped (`not_vip`), however it collides with the
/// filter.
fn malformed_and_foreign() -> Vec<Fixture> {
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
    let unchanged = |name, frame, reason| services(name, frame, reason, None);
    vec![
        services(
            "ipv4 tcp syn with an Ethernet trailer",
            trailer(&syn4, 6),
            Reason::ForwardedDsr,
            Some((tcp4(VIP_V4, 80), IPPROTO_TCP)),
        ),
        services(
            "vlan-tagged ipv6 tcp syn",
            packets::with_tags(&syn6, &[(0x8100, 42)]),
            Reason::ForwardedDsr,
            Some((tcp6(VIP_V6, 443), IPPROTO_TCP)),
        ),
        unchanged(
            "ipv4 tcp header wholly in the Ethernet trailer",
            edited(syn4.clone(), ip4_len(20)),
            Reason::Truncated,
        ),
        unchanged(
            "ipv4 tcp header half past the IP length",
            edited(syn4.clone(), ip4_len(30)),
            Reason::Truncated,
        ),
        unchanged(
            "ipv6 tcp header half past the IP length",
            edited(syn6.clone(), ip6_len(10)),
            Reason::Truncated,
        ),
        unchanged(
            "tcp data offset 4",
            edited(syn4.clone(), |p| packets::set_tcp_data_offset(p, 4)),
            Reason::BadHeader,
        ),
        unchanged(
            "ipv6 tcp data offset 0",
            edited(syn6.clone(), |p| packets::set_tcp_data_offset(p, 0)),
            Reason::BadHeader,
        ),
        unchanged(
            "tcp options past the IP length, into the Ethernet trailer",
            edited(trailer(&syn4, 4), |p| packets::set_tcp_data_offset(p, 6)),
            Reason::Truncated,
        ),
        unchanged(
            "ipv6 tcp options past the end of the frame",
            edited(syn6.clone(), |p| packets::set_tcp_data_offset(p, 15)),
            Reason::Truncated,
        ),
        unchanged(
            "ipv6 udp header half past the IP length",
            edited(udp6.clone(), ip6_len(4)),
            Reason::Truncated,
        ),
        unchanged(
            "udp length 7",
            edited(udp4.clone(), |p| packets::set_udp_len(p, 7)),
            Reason::BadHeader,
        ),
        unchanged(
            "ipv6 udp length one past the IP payload",
            edited(udp6.clone(), |p| packets::set_udp_len(p, 8 + 5 + 1)),
            Reason::BadHeader,
        ),
        // RFC 768 allows it; the receiving stack trims the datagram to the UDP length.
        services(
            "udp length shorter than the IP payload",
            edited(udp4.clone(), |p| packets::set_udp_len(p, 8)),
            Reason::ForwardedDsr,
            Some((tcp4(VIP_V4, 53), IPPROTO_UDP)),
        ),
        unchanged(
            "gre to the VIP address",
            edited(udp4.clone(), |p| packets::set_ip_proto(p, IPPROTO_GRE)),
            Reason::OtherL4,
        ),
        unchanged(
            "ipv6 hop-by-hop header to the VIP address",
            edited(udp6.clone(), |p| {
                packets::set_ip_proto(p, IPPROTO_HOP_BY_HOP)
            }),
            Reason::OtherL4,
        ),
        unchanged(
            "tcp to a port the VIP address does not serve",
            packets::tcp_syn(&tcp4(VIP_V4, 22)),
            Reason::NotVip,
        ),
        unchanged(
            "gre to an address sharing the VIP's filter bit",
            edited(packets::udp(&tcp4(neighbour_v4, 53), b"x"), |p| {
                packets::set_ip_proto(p, IPPROTO_GRE)
            }),
            Reason::NotVip,
        ),
        unchanged(
            "ipv6 hop-by-hop header to an address sharing the VIP's last 8 bytes",
            edited(packets::udp(&tcp6(NEIGHBOUR_V6, 53), b"x"), |p| {
                packets::set_ip_proto(p, IPPROTO_HOP_BY_HOP)
            }),
            Reason::NotVip,
        ),
        unchanged(
            "tcp header cut, to an address sharing the VIP's filter bit",
            edited(neighbour_syn4.clone(), ip4_len(30)),
            Reason::NotVip,
        ),
        unchanged(
            "ipv6 tcp header cut, to an address sharing the VIP's last 8 bytes",
            edited(neighbour_syn6.clone(), |p| {
                packets::set_ipv6_payload_len(p, 10);
                p.truncate(packets::ETH_LEN + 40 + 10);
            }),
            Reason::NotVip,
        ),
        unchanged(
            "ipv6 tcp data offset 4, to an address sharing the VIP's last 8 bytes",
            edited(neighbour_syn6, |p| packets::set_tcp_data_offset(p, 4)),
            Reason::NotVip,
        ),
        unchanged(
            "ipv6 tcp syn to an address sharing the VIP's last 8 bytes",
            packets::tcp_syn(&tcp6(NEIGHBOUR_V6, 443)),
            Reason::NotVip,
        ),
    ]
}

/// Every packet fixture: the bench's paths, then malformed and foreign frames.
pub fn all() -> Vec<Fixture> {
    let mut all = bench_cases();
    all.extend(malformed_and_foreign());
    all
}
