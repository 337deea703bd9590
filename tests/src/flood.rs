//! The SYN-flood experiment (issue 19) through the real program: established flows each send a
//! packet between two bursts of spoofed SYNs from random sources, a backend is added (the VIP
//! flips to a table over four backends), and each flow sends one more packet: how many moved.
//! Also the handshakes that straddle a flip, with or without a flood between SYN and ACK.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::Ebpf;
use lb_common::{
    Config, Event, PROGRAM_NAME, Verdict, Vip, VipKey,
    flow::flow_sets,
    map_names,
    service::{BACKEND_ACTIVE, FAMILY_IPV4},
};
use lb_userspace::{
    config::FlowAdmission,
    counters::Totals,
    object,
    steering::{self, set_config},
    testrun,
};

use crate::{
    packets::{self, Flow},
    steering::{BACKENDS, TABLE_B, backend_mac, load_sized, table, vip_key},
};

/// Maglev table size of the experiment's VIP (the default).
const MAGLEV_SIZE: u32 = 65_537;

/// One run of the experiment.
#[derive(Clone, Copy, Debug)]
pub struct Experiment {
    /// `flow_table_size` (flows).
    pub table_size: u32,
    /// Established flows.
    pub flows: u32,
    /// Spoofed SYNs in each burst between two packets of every established flow.
    pub flood: u32,
    pub admission: FlowAdmission,
    pub ipv6: bool,
    pub seed: u64,
}

/// What the experiment saw.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Established flows whose packet after the flip reached another backend than before.
    pub moved: u32,
    pub flows: u32,
    /// Flow-table events over the whole run.
    pub remembered: u64,
    pub not_remembered: u64,
    pub evicted_proven: u64,
}

impl Outcome {
    pub fn moved_share(&self) -> f64 {
        f64::from(self.moved) / f64::from(self.flows.max(1))
    }
}

/// The program with a flow table of `table_size` flows under `admission`, one VIP (port 80/TCP)
/// over three backends; the VIP's key and entry.
pub fn load(table_size: u32, admission: FlowAdmission, ipv6: bool) -> (Ebpf, VipKey, Vip) {
    let key = vip_key(&vip(ipv6).to_string(), 80, 6);
    let (mut ebpf, entry) = load_sized(
        &[(map_names::FLOWS, flow_sets(table_size))],
        &[(key, 0)],
        MAGLEV_SIZE,
    );
    let config = Config {
        flags: admission.flags(),
        ..Config::default()
    };
    set_config(&mut ebpf, &config).expect("set the flow admission");
    (ebpf, key, entry)
}

fn vip(ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 18, 1, 10))
    }
}

/// Legitimate client `i`: 198.18.0.0/16 (2001:db8:1::/48) with its own source port.
pub fn client(i: u32, ipv6: bool) -> Flow {
    let [_, _, a, b] = i.to_be_bytes();
    let src = if ipv6 {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            1,
            0,
            0,
            0,
            u16::from(a),
            u16::from(b),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 18, a, b))
    };
    Flow {
        src,
        dst: vip(ipv6),
        sport: 10_000 + (i % 50_000) as u16,
        dport: 80,
    }
}

/// `count` SYNs from random sources in 198.19.0.0/16 (2001:db8:f::/48) and random ports.
pub fn spoofed_syns(
    rng: &mut fastrand::Rng,
    count: u32,
    ipv6: bool,
) -> impl Iterator<Item = Vec<u8>> {
    let dst = vip(ipv6);
    (0..count).map(move |_| {
        let src = if ipv6 {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0xf,
                rng.u16(..),
                rng.u16(..),
                rng.u16(..),
                rng.u16(..),
                rng.u16(..),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 19, rng.u8(..), rng.u8(..)))
        };
        packets::tcp_syn(&Flow {
            src,
            dst,
            sport: rng.u16(1024..),
            dport: 80,
        })
    })
}

/// Runs `packet`; the backend id its output MAC names (the packet must be forwarded).
pub fn send(ebpf: &mut Ebpf, packet: &[u8]) -> u32 {
    let program = object::xdp_program(ebpf, PROGRAM_NAME).expect("program");
    let outcome = testrun::run(program, packet).expect("test run");
    assert_eq!(
        Verdict::from_code(outcome.code),
        Some(Verdict::Tx),
        "packet not forwarded"
    );
    u32::from(outcome.output[5])
}

/// Sends `count` spoofed SYNs.
pub fn flood(ebpf: &mut Ebpf, rng: &mut fastrand::Rng, count: u32, ipv6: bool) {
    for syn in spoofed_syns(rng, count, ipv6) {
        send(ebpf, &syn);
    }
}

/// Adds backend [`BACKENDS`] (id 3) and flips `key`'s VIP to table B over all four backends,
/// as an apply that adds a backend does: about a quarter of the table's slots move to it.
/// Returns the VIP entry now live.
pub fn add_backend(ebpf: &mut Ebpf, key: &VipKey, vip: &Vip) -> Vip {
    let backend = lb_common::Backend {
        mac: backend_mac(BACKENDS),
        family: FAMILY_IPV4,
        flags: BACKEND_ACTIVE,
        ..lb_common::Backend::default()
    };
    steering::set_backend(ebpf, BACKENDS, &backend).expect("add a backend");
    let ids: Vec<u32> = (0..=BACKENDS).collect();
    steering::write_table(ebpf, TABLE_B, &table(&ids, MAGLEV_SIZE)).expect("table B");
    let flipped = Vip { active: 1, ..*vip };
    steering::set_vip(ebpf, key, &flipped).expect("flip");
    flipped
}

/// Runs the experiment.
pub fn run(experiment: &Experiment) -> Outcome {
    let Experiment {
        table_size,
        flows,
        flood: burst,
        admission,
        ipv6,
        seed,
    } = *experiment;
    let (mut ebpf, key, vip) = load(table_size, admission, ipv6);
    let mut rng = fastrand::Rng::with_seed(seed);
    let clients: Vec<Flow> = (0..flows).map(|i| client(i, ipv6)).collect();
    let ack = |flow: &Flow| packets::tcp_ack(flow, b"x");
    let mut backends = Vec::new();
    for flow in &clients {
        let to = send(&mut ebpf, &packets::tcp_syn(flow));
        assert_eq!(
            send(&mut ebpf, &ack(flow)),
            to,
            "handshake of {flow:?} split"
        );
        backends.push(to);
    }
    flood(&mut ebpf, &mut rng, burst, ipv6);
    for (flow, to) in clients.iter().zip(&backends) {
        assert_eq!(
            send(&mut ebpf, &ack(flow)),
            *to,
            "{flow:?} moved without a change"
        );
    }
    flood(&mut ebpf, &mut rng, burst, ipv6);
    add_backend(&mut ebpf, &key, &vip);
    let moved = clients
        .iter()
        .zip(&backends)
        .filter(|(flow, to)| send(&mut ebpf, &ack(flow)) != **to)
        .count();
    let totals = Totals::read(&ebpf).expect("counters");
    Outcome {
        moved: moved as u32,
        flows,
        remembered: totals.event(Event::FlowRemembered).packets,
        not_remembered: totals.event(Event::FlowNotRemembered).packets,
        evicted_proven: totals.event(Event::FlowEvictedProven).packets,
    }
}

/// Handshakes straddling a flip: each of `flows` clients sends its SYN, then `burst` spoofed
/// SYNs arrive, a backend is added, and each sends its first ACK. Returns how many of the
/// handshakes whose table slot changed owner had their ACK reach another backend than their
/// SYN, and how many such handshakes there were (the others cannot move).
pub fn straddling(
    table_size: u32,
    flows: u32,
    burst: u32,
    admission: FlowAdmission,
    seed: u64,
) -> (u32, u32) {
    let (mut ebpf, key, vip) = load(table_size, admission, false);
    let mut rng = fastrand::Rng::with_seed(seed);
    let clients: Vec<Flow> = (0..flows).map(|i| client(i, false)).collect();
    let syn_backends: Vec<u32> = clients
        .iter()
        .map(|flow| send(&mut ebpf, &packets::tcp_syn(flow)))
        .collect();
    flood(&mut ebpf, &mut rng, burst, false);
    let vip = add_backend(&mut ebpf, &key, &vip);
    let new_table = table(&(0..=BACKENDS).collect::<Vec<_>>(), MAGLEV_SIZE);
    let mut exposed = 0;
    let mut moved = 0;
    for (flow, syn_backend) in clients.iter().zip(syn_backends) {
        let slot = steering::slot(&vip, &crate::steering::flow_key(flow, 6));
        if new_table[slot as usize] == syn_backend {
            continue;
        }
        exposed += 1;
        moved += u32::from(send(&mut ebpf, &packets::tcp_ack(flow, b"x")) != syn_backend);
    }
    (moved, exposed)
}
