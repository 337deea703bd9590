//! Steering set-ups shared by the fixtures and the benchmarks: a loaded program with
//! a few active backends, VIPs pointing at a Maglev table, the keys the kernel computes, and a
//! run of one packet that checks it was counted under exactly one reason and verdict.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::Ebpf;
use lb_common::{
    Backend, Config, Counter, FlowKey, PROGRAM_NAME, Reason, Verdict, Vip, VipKey, map_names,
    service::{BACKEND_ACTIVE, FAMILY_IPV4, FAMILY_IPV6, MAGLEV_CHUNK_SLOTS},
};
use lb_userspace::{counters::Totals, maglev, object, steering, testrun};

use crate::packets::{self, Flow, LB_MAC};

pub const BACKENDS: u32 = 3;
/// Table copies live at these offsets of the slot map.
pub const TABLE_A: u32 = 0;
pub const TABLE_B: u32 = 100_000;

pub fn backend_mac(id: u32) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x01, id as u8]
}

/// Runs one packet through the loaded program; returns its verdict and output.
pub fn run(ebpf: &mut Ebpf, packet: &[u8]) -> (Option<Verdict>, Vec<u8>) {
    let program = object::xdp_program(ebpf, PROGRAM_NAME).expect("program");
    let outcome = testrun::run(program, packet).expect("test run");
    (Verdict::from_code(outcome.code), outcome.output)
}

/// The packet as dsr must emit it towards backend `id`.
pub fn dsr_output(packet: &[u8], id: u32) -> Vec<u8> {
    let mut out = packet.to_vec();
    out[..6].copy_from_slice(&backend_mac(id));
    out[6..12].copy_from_slice(&LB_MAC);
    out
}

/// Asserts that the program counted exactly `packets` packets of `bytes` bytes in all, every
/// one under `reason` and its verdict, and nothing under any other reason or verdict.
pub fn assert_counted(ebpf: &Ebpf, reason: Reason, packets: u64, bytes: u64, context: &str) {
    let totals = Totals::read(ebpf).expect("read counters");
    let counted = Counter { packets, bytes };
    assert_only(Reason::ALL, reason, counted, |r| {
        (totals.reason(r), format!("{context}: reason {}", r.name()))
    });
    assert_only(Verdict::ALL, reason.verdict(), counted, |v| {
        (
            totals.verdict(v),
            format!("{context}: verdict {}", v.name()),
        )
    });
}

/// Asserts that of `all` (reasons or verdicts), `chosen` counted `counted` and every other
/// nothing; `count` gives what one counted and how to name it in a failure.
fn assert_only<T: Copy + PartialEq>(
    all: impl IntoIterator<Item = T>,
    chosen: T,
    counted: Counter,
    count: impl Fn(T) -> (Counter, String),
) {
    for each in all {
        let want = if each == chosen {
            counted
        } else {
            Counter::default()
        };
        let (got, what) = count(each);
        assert_eq!(got, want, "{what}");
    }
}

/// An address's kernel form: its 16 bytes and family.
pub use lb_common::address::to_kernel as addr_bytes;

pub fn vip_key(addr: &str, port: u16, proto: u8) -> VipKey {
    let (addr, family) = addr_bytes(addr.parse().expect("VIP address"));
    VipKey {
        addr,
        port: port.to_be(),
        proto,
        family,
    }
}

pub fn flow_key(flow: &Flow, proto: u8) -> FlowKey {
    FlowKey {
        src: addr_bytes(flow.src).0,
        dst: addr_bytes(flow.dst).0,
        sport: flow.sport.to_be(),
        dport: flow.dport.to_be(),
        proto,
        pad: [0; 3],
    }
}

/// A Maglev table of `size` slots over backends `ids`, as the control plane builds it.
pub fn table(ids: &[u32], size: u32) -> Vec<u32> {
    let keys: Vec<[u8; 4]> = ids.iter().map(|id| id.to_be_bytes()).collect();
    let backends: Vec<maglev::Backend> = keys
        .iter()
        .map(|key| maglev::Backend { key, weight: 1 })
        .collect();
    let slots = maglev::build(&backends, size).expect("Maglev table");
    slots.into_iter().map(|index| ids[index as usize]).collect()
}

/// The backend a VIP set up by [`configure`] sends `flow` (protocol `proto`) to: the userspace
/// reproduction of the kernel's hash and Maglev lookup over the VIP's table.
pub fn predicted_backend(vip: &Vip, flow: &Flow, proto: u8) -> u32 {
    let ids: Vec<u32> = (0..BACKENDS).collect();
    table(&ids, vip.table_size)[steering::slot(vip, &flow_key(flow, proto)) as usize]
}

/// The program loaded with `BACKENDS` active backends and `vips` pointing at table A.
pub fn load(vips: &[(VipKey, u32)], size: u32) -> (Ebpf, Vip) {
    load_sized(&[], vips, size)
}

/// [`load`] with VIPs `(address, port, protocol)`, no flags, and 13-slot tables: the set-up
/// most fixtures share.
pub fn load_vips(vips: &[(&str, u16, u8)]) -> (Ebpf, Vip) {
    let keys: Vec<(VipKey, u32)> = vips
        .iter()
        .map(|&(address, port, proto)| (vip_key(address, port, proto), 0))
        .collect();
    load(&keys, 13)
}

/// [`load`] with the map capacities `capacities`.
pub fn load_sized(capacities: &[(&str, u32)], vips: &[(VipKey, u32)], size: u32) -> (Ebpf, Vip) {
    let mut ebpf =
        object::load_sized(object::XDP_OBJECT, PROGRAM_NAME, capacities).expect("load xlb");
    let vip = configure(&mut ebpf, vips, size);
    (ebpf, vip)
}

/// Gives a loaded program `BACKENDS` active backends and `vips` (with `flags`) pointing at
/// table A; returns the last VIP entry.
pub fn configure(ebpf: &mut Ebpf, vips: &[(VipKey, u32)], size: u32) -> Vip {
    let ids = add_backends(ebpf, BACKENDS);
    steering::write_table(ebpf, TABLE_A, &table(&ids, size)).expect("table");
    let mut last = Vip::default();
    for &(key, flags) in vips {
        last = Vip {
            id: 7,
            flags,
            table_size: size,
            active: 0,
            tables: [TABLE_A, TABLE_B],
            canary: 0,
        };
        steering::set_vip(ebpf, &key, &last).expect("vip");
    }
    last
}

/// The program with `vips` dsr VIPs (198.18.100.0 onwards, port 80/TCP) over the same
/// `backends` active backends, each VIP with its own `size`-slot table copy: the scale at which
/// lookup cost must not grow. 1,000 x 65,537 slots is about 260 MB of tables. Returns the last
/// VIP entry and the table all the copies hold.
pub fn load_scaled(vips: u32, backends: u32, size: u32) -> (Ebpf, Vip, Vec<u32>) {
    let chunks = (u64::from(vips) * u64::from(size)).div_ceil(u64::from(MAGLEV_CHUNK_SLOTS));
    let capacities = [
        (
            map_names::MAGLEV,
            u32::try_from(chunks).expect("slot map size"),
        ),
        (map_names::BACKENDS, backends.max(1)),
    ];
    let mut ebpf = object::load_sized(object::XDP_OBJECT, PROGRAM_NAME, &capacities)
        .expect("load xlb with large maps");
    let ids = add_backends(&mut ebpf, backends);
    // Every VIP has the same backends, so the same table; each still gets its own copy.
    let shared = table(&ids, size);
    let copies: Vec<(u32, &[u32])> = (0..vips).map(|i| (i * size, shared.as_slice())).collect();
    steering::write_tables(&mut ebpf, &copies).expect("tables");
    let mut last = Vip::default();
    for i in 0..vips {
        let addr = format!("198.18.{}.{}", 100 + i / 256, i % 256);
        last = Vip {
            id: i,
            flags: 0,
            table_size: size,
            active: 0,
            tables: [i * size, i * size],
            canary: 0,
        };
        steering::set_vip(&mut ebpf, &vip_key(&addr, 80, 6), &last).expect("vip");
    }
    (ebpf, last, shared)
}

/// Outer source addresses of the tunnels [`use_ipip`] sets up.
pub const TUNNEL_SRC_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const TUNNEL_SRC_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// Address of backend `id` in `ipip` set-ups: 198.18.2.10 onwards, or 2001:db8:2::10 onwards
/// (`v6`).
pub fn backend_addr(id: u32, v6: bool) -> IpAddr {
    let text = if v6 {
        format!("2001:db8:2::{}", 10 + id)
    } else {
        format!("198.18.2.{}", 10 + id)
    };
    text.parse().expect("backend address")
}

/// Readies a program loaded with `ipip` VIPs to tunnel: gives its backends addresses of the
/// family `v6_backends` picks ([`backend_addr`]), the tunnel sources [`TUNNEL_SRC_V4`] and
/// [`TUNNEL_SRC_V6`] and `mtu`.
pub fn use_ipip(ebpf: &mut Ebpf, v6_backends: bool, mtu: u32) {
    let family = if v6_backends {
        FAMILY_IPV6
    } else {
        FAMILY_IPV4
    };
    for id in 0..BACKENDS {
        let backend = Backend {
            addr: addr_bytes(backend_addr(id, v6_backends)).0,
            mac: backend_mac(id),
            family,
            flags: BACKEND_ACTIVE,
            ..Backend::default()
        };
        steering::set_backend(ebpf, id, &backend).expect("backend");
    }
    let settings = Config {
        flags: 0,
        mtu,
        ipip_src_v4: TUNNEL_SRC_V4.octets(),
        ipip_src_v6: TUNNEL_SRC_V6.octets(),
        ..Config::default()
    };
    steering::set_config(ebpf, &settings).expect("config");
}

/// The tunnel frame a program readied by [`use_ipip`] must emit for `inner` towards backend
/// `id`.
pub fn tunnelled(inner: &[u8], id: u32, v6_backends: bool) -> Vec<u8> {
    let src = if v6_backends {
        TUNNEL_SRC_V6.into()
    } else {
        TUNNEL_SRC_V4.into()
    };
    let mut frame = packets::encapsulated(src, backend_addr(id, v6_backends), inner);
    frame[..6].copy_from_slice(&backend_mac(id));
    frame
}

/// Backends `0..count`, active, with [`backend_mac`] MACs; returns their ids.
fn add_backends(ebpf: &mut Ebpf, count: u32) -> Vec<u32> {
    let ids: Vec<u32> = (0..count).collect();
    for &id in &ids {
        let backend = Backend {
            mac: backend_mac(id),
            family: FAMILY_IPV4,
            flags: BACKEND_ACTIVE,
            ..Backend::default()
        };
        steering::set_backend(ebpf, id, &backend).expect("backend");
    }
    ids
}

/// Runs one packet and checks that exactly one reason and one verdict counted it, by one packet
/// and its length in bytes, and that the verdict is the reason's; returns the verdict, the
/// output and the reason.
pub fn run_counted(ebpf: &mut Ebpf, packet: &[u8]) -> (Option<Verdict>, Vec<u8>, Reason) {
    let before = Totals::read(ebpf).expect("counters");
    let program = object::xdp_program(ebpf, PROGRAM_NAME).expect("program");
    let outcome = testrun::run(program, packet).expect("test run");
    let (verdict, output) = (Verdict::from_code(outcome.code), outcome.output);
    let after = Totals::read(ebpf).expect("counters");
    let one = Counter {
        packets: 1,
        bytes: packet.len() as u64,
    };
    let grew = |was: Counter, now: Counter| Counter {
        packets: now.packets - was.packets,
        bytes: now.bytes - was.bytes,
    };
    let counted: Vec<(Reason, Counter)> = Reason::ALL
        .into_iter()
        .map(|r| (r, grew(before.reason(r), after.reason(r))))
        .filter(|(_, c)| *c != Counter::default())
        .collect();
    let [(reason, count)] = counted[..] else {
        panic!(
            "{} bytes counted under reasons {counted:?}, not exactly one",
            packet.len()
        )
    };
    assert_eq!(count, one, "reason {}", reason.name());
    assert_eq!(verdict, Some(reason.verdict()), "reason {}", reason.name());
    assert_only(Verdict::ALL, reason.verdict(), one, |v| {
        let what = format!("verdict {}", v.name());
        (grew(before.verdict(v), after.verdict(v)), what)
    });
    (verdict, output, reason)
}
