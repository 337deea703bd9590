//! Data-plane benchmark (run by `cargo xtask bench`): kernel-measured ns/packet of xlb's paths
//! through BPF_PROG_TEST_RUN, each beside bare XDP_DROP and XDP_TX programs measured the same
//! way in the same run, as min and median over several runs and as a ratio to bare XDP_TX.
//! Every case proves the path it measured by its counter. Writes JSON.

use std::process::ExitCode;

use anyhow::ensure;
use aya::{Ebpf, programs::Xdp};
use lb_common::{PROGRAM_NAME, Reason, service::VIP_FORWARD_IPIP};
use lb_userspace::{counters::Totals, object, testrun};
use serde_json::json;
use xlb_tests::{
    packets::{self, Flow},
    steering::{load, load_scaled, vip_key},
};

/// Runs per case; the first one or two of a series are often high, hence min and median.
const RUNS: usize = 7;
/// Repetitions per run for packets the program leaves as they were (or only re-addresses).
const REPEAT: u32 = 200_000;
/// Separate calls per run for packets the program grows (encapsulation).
const CALLS: u32 = 20_000;

/// How a case is measured. `Repeat` lets the kernel loop over one buffer: valid only when the
/// program's output takes the same path again. `Fresh` starts every packet from its original
/// bytes, one system call each.
#[derive(Clone, Copy, PartialEq)]
enum Method {
    Repeat,
    Fresh,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Repeat => "repeat",
            Method::Fresh => "fresh",
        }
    }
    fn packets_per_run(self) -> u64 {
        u64::from(match self {
            Method::Repeat => REPEAT,
            Method::Fresh => CALLS,
        })
    }
}

struct Stats {
    min: f64,
    median: f64,
}

fn measure(program: &Xdp, packet: &[u8], method: Method) -> anyhow::Result<Stats> {
    let mut samples = (0..RUNS)
        .map(|_| match method {
            Method::Repeat => testrun::ns_per_packet(program, packet, REPEAT),
            Method::Fresh => testrun::ns_per_fresh_packet(program, packet, CALLS),
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    samples.sort_by(f64::total_cmp);
    Ok(Stats {
        min: samples[0],
        median: samples[RUNS / 2],
    })
}

struct Row {
    name: String,
    method: Method,
    stats: Stats,
    proof: String,
}

/// Which program set-up a case runs against.
enum Setup {
    /// No VIPs.
    Empty,
    /// dsr or ipip VIPs 198.18.1.10 and 2001:db8:1::10, port 80/TCP, 3 backends.
    Small(u32),
    /// 1,000 dsr VIPs x 100 backends, a 65,537-slot table each (~260 MB of tables).
    Large,
}

fn program(setup: &Setup) -> anyhow::Result<Ebpf> {
    let vips = |flags| {
        [
            (vip_key("198.18.1.10", 80, 6), flags),
            (vip_key("2001:db8:1::10", 80, 6), flags),
        ]
    };
    Ok(match setup {
        Setup::Empty => object::load(object::XDP_OBJECT, PROGRAM_NAME)?,
        Setup::Small(flags) => load(&vips(*flags), 65_537).0,
        Setup::Large => load_scaled(1000, 100, 65_537),
    })
}

fn bench() -> anyhow::Result<serde_json::Value> {
    let v4 = Flow::new("198.18.0.1", "198.18.1.10", 40000, 80);
    let v6 = Flow::new("2001:db8::1", "2001:db8:1::10", 40000, 80);
    // The large set-up's VIP 500 (VIPs are 198.18.100.0 onwards).
    let large = Flow::new("198.18.0.1", "198.18.101.244", 40000, 80);
    let syn4 = packets::tcp_syn(&v4);
    let mut rows = Vec::new();
    for (name, method) in [
        ("bare_drop", Method::Repeat),
        ("bare_tx", Method::Repeat),
        ("bare_tx", Method::Fresh),
    ] {
        let mut ebpf = object::load(object::BASELINE_OBJECT, name)?;
        let stats = measure(object::xdp_program(&mut ebpf, name)?, &syn4, method)?;
        rows.push(Row {
            name: name.into(),
            method,
            stats,
            proof: String::new(),
        });
    }

    let ipip = Setup::Small(VIP_FORWARD_IPIP);
    let dsr = Setup::Small(0);
    // A SYN always takes the new-flow path (Maglev lookup and flow-table insert); an ACK takes
    // it once and then hits the flow table. dsr only re-addresses the frame, so a repeat sees
    // the same flow again; ipip grows it, so it is measured fresh.
    let cases = [
        (
            "non_vip_ipv4_tcp_syn",
            &Setup::Empty,
            syn4.clone(),
            Method::Repeat,
            Reason::NotVip,
        ),
        (
            "non_vip_ipv6_udp",
            &Setup::Empty,
            packets::udp(&v6, b"query"),
            Method::Repeat,
            Reason::NotVip,
        ),
        (
            "non_ip_arp",
            &Setup::Empty,
            packets::arp_request(),
            Method::Repeat,
            Reason::NotIp,
        ),
        (
            "dsr_new_flow_ipv4",
            &dsr,
            packets::tcp_syn(&v4),
            Method::Repeat,
            Reason::ForwardedDsr,
        ),
        (
            "dsr_established_ipv4",
            &dsr,
            packets::tcp_ack(&v4, b"GET /"),
            Method::Repeat,
            Reason::ForwardedDsr,
        ),
        (
            "dsr_new_flow_ipv6",
            &dsr,
            packets::tcp_syn(&v6),
            Method::Repeat,
            Reason::ForwardedDsr,
        ),
        (
            "dsr_established_ipv6",
            &dsr,
            packets::tcp_ack(&v6, b"GET /"),
            Method::Repeat,
            Reason::ForwardedDsr,
        ),
        (
            "ipip_new_flow_ipv4",
            &ipip,
            packets::tcp_syn(&v4),
            Method::Fresh,
            Reason::ForwardedIpip,
        ),
        (
            "ipip_established_ipv4",
            &ipip,
            packets::tcp_ack(&v4, b"GET /"),
            Method::Fresh,
            Reason::ForwardedIpip,
        ),
        (
            "ipip_new_flow_ipv6",
            &ipip,
            packets::tcp_syn(&v6),
            Method::Fresh,
            Reason::ForwardedIpip,
        ),
        (
            "ipip_established_ipv6",
            &ipip,
            packets::tcp_ack(&v6, b"GET /"),
            Method::Fresh,
            Reason::ForwardedIpip,
        ),
        (
            "dsr_new_flow_1vip_3backends",
            &dsr,
            packets::tcp_syn(&v4),
            Method::Repeat,
            Reason::ForwardedDsr,
        ),
        (
            "dsr_new_flow_1000vips_100backends",
            &Setup::Large,
            packets::tcp_syn(&large),
            Method::Repeat,
            Reason::ForwardedDsr,
        ),
        (
            "dsr_established_1000vips_100backends",
            &Setup::Large,
            packets::tcp_ack(&large, b"GET /"),
            Method::Repeat,
            Reason::ForwardedDsr,
        ),
    ];
    for (name, setup, packet, method, reason) in cases {
        let mut ebpf = program(setup)?;
        let stats = measure(
            object::xdp_program(&mut ebpf, PROGRAM_NAME)?,
            &packet,
            method,
        )?;
        let counted = Totals::read(&ebpf)?.reason(reason).packets;
        let expected = RUNS as u64 * method.packets_per_run();
        ensure!(
            counted == expected,
            "{name}: {counted} packets counted as {}, expected {expected}",
            reason.name()
        );
        rows.push(Row {
            name: name.into(),
            method,
            stats,
            proof: format!("reason.{}={counted}", reason.name()),
        });
    }

    let baseline = |method: Method| {
        rows.iter()
            .find(|row| row.name == "bare_tx" && row.method == method)
            .map_or(f64::NAN, |row| row.stats.median)
    };
    println!(
        "{:<38} {:>7} {:>8} {:>10} {:>10}  proof",
        "case", "method", "min ns", "median ns", "x bare_tx"
    );
    let mut json_rows = Vec::new();
    for row in &rows {
        let base = baseline(row.method);
        let ratio = row.stats.median / base;
        println!(
            "{:<38} {:>7} {:>8.1} {:>10.1} {ratio:>10.2}  {}",
            row.name,
            row.method.name(),
            row.stats.min,
            row.stats.median,
            row.proof
        );
        json_rows.push(json!({
            "name": row.name,
            "method": row.method.name(),
            "ns_per_packet_min": row.stats.min,
            "ns_per_packet_median": row.stats.median,
            "baseline": format!("bare_tx ({})", row.method.name()),
            "baseline_ns_per_packet_median": base,
            "ratio_to_baseline_median": ratio,
            "proof": row.proof,
        }));
    }
    Ok(json!({ "runs": RUNS, "repeat": REPEAT, "fresh_calls": CALLS, "cases": json_rows }))
}

fn main() -> ExitCode {
    xlb_tests::report::main("xlb-bench", "target/bench/dataplane.json", bench)
}
