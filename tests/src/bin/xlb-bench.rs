//! Data-plane benchmark (run by `cargo xtask bench`): kernel-measured ns/packet of xlb's paths
//! through BPF_PROG_TEST_RUN, each beside bare XDP_DROP and XDP_TX programs measured in the same
//! run, as min and median over several runs and as a ratio to bare XDP_TX. Writes JSON.

use std::process::ExitCode;

use anyhow::{Context as _, ensure};
use lb_common::{PROGRAM_NAME, Reason};
use lb_userspace::{counters::Totals, object, testrun};
use serde_json::json;
use xlb_tests::{
    packets::{self, Flow},
    steering::{load, vip_key},
};

/// Runs per case; the first one or two of a series are often high, hence min and median.
const RUNS: usize = 7;
/// Repetitions per run. Safe because every case here leaves the packet unchanged.
const REPEAT: u32 = 200_000;

struct Stats {
    min: f64,
    median: f64,
}

fn measure(program: &aya::programs::Xdp, packet: &[u8]) -> anyhow::Result<Stats> {
    let mut samples = (0..RUNS)
        .map(|_| testrun::ns_per_packet(program, packet, REPEAT))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    samples.sort_by(f64::total_cmp);
    Ok(Stats {
        min: samples[0],
        median: samples[RUNS / 2],
    })
}

fn bench() -> anyhow::Result<serde_json::Value> {
    let syn = packets::tcp_syn(&Flow::new("198.18.0.1", "198.18.1.10", 40000, 80));
    let baselines = [("bare_drop", "XDP_DROP"), ("bare_tx", "XDP_TX")];
    let mut rows = Vec::new();
    let mut bare_tx_median = 0.0;
    for (name, _) in baselines {
        let mut ebpf = object::load(object::BASELINE_OBJECT, name)?;
        let stats = measure(object::xdp_program(&mut ebpf, name)?, &syn)?;
        if name == "bare_tx" {
            bare_tx_median = stats.median;
        }
        rows.push((name.to_owned(), stats, String::new()));
    }

    let v4 = Flow::new("198.18.0.1", "198.18.1.10", 40000, 80);
    let v6 = Flow::new("2001:db8::1", "2001:db8:1::10", 40000, 80);
    let vips = [
        (vip_key("198.18.1.10", 80, 6), 0),
        (vip_key("2001:db8:1::10", 80, 6), 0),
    ];
    // (case, packet, whether the VIPs exist, the reason every repetition must be counted under).
    // A SYN always takes the new-flow path (Maglev lookup and flow-table insert); an ACK takes
    // it once and then hits the flow table. dsr rewrites only MACs, so repeats see the same flow.
    let cases = [
        ("non_vip_ipv4_tcp_syn", syn.clone(), false, Reason::NotVip),
        (
            "non_vip_ipv6_udp",
            packets::udp(&v6, b"query"),
            false,
            Reason::NotVip,
        ),
        ("non_ip_arp", packets::arp_request(), false, Reason::NotIp),
        (
            "dsr_new_flow_ipv4_syn",
            packets::tcp_syn(&v4),
            true,
            Reason::ForwardedDsr,
        ),
        (
            "dsr_established_ipv4_ack",
            packets::tcp_ack(&v4, b"GET /"),
            true,
            Reason::ForwardedDsr,
        ),
        (
            "dsr_new_flow_ipv6_syn",
            packets::tcp_syn(&v6),
            true,
            Reason::ForwardedDsr,
        ),
        (
            "dsr_established_ipv6_ack",
            packets::tcp_ack(&v6, b"GET /"),
            true,
            Reason::ForwardedDsr,
        ),
    ];
    for (name, packet, with_vips, reason) in cases {
        let mut ebpf = if with_vips {
            load(&vips, 65_537).0
        } else {
            object::load(object::XDP_OBJECT, PROGRAM_NAME)?
        };
        let stats = measure(object::xdp_program(&mut ebpf, PROGRAM_NAME)?, &packet)?;
        // Prove which path ran: every repetition counted under the expected reason.
        let counted = Totals::read(&ebpf)?.reason(reason).packets;
        let expected = RUNS as u64 * u64::from(REPEAT);
        ensure!(
            counted == expected,
            "{name}: {counted} packets counted as {}, expected {expected}",
            reason.name()
        );
        rows.push((
            name.to_owned(),
            stats,
            format!("reason.{}={counted}", reason.name()),
        ));
    }

    println!(
        "{:<24} {:>10} {:>10} {:>14}  proof",
        "case", "min ns", "median ns", "x bare_tx"
    );
    let mut json_rows = Vec::new();
    for (name, stats, proof) in &rows {
        let ratio = stats.median / bare_tx_median;
        println!(
            "{name:<24} {:>10.1} {:>10.1} {ratio:>14.2}  {proof}",
            stats.min, stats.median
        );
        json_rows.push(json!({
            "name": name,
            "ns_per_packet_min": stats.min,
            "ns_per_packet_median": stats.median,
            "baseline": "bare_tx",
            "baseline_ns_per_packet_median": bare_tx_median,
            "ratio_to_baseline_median": ratio,
            "proof": proof,
        }));
    }
    Ok(json!({ "runs": RUNS, "repeat": REPEAT, "cases": json_rows }))
}

fn main() -> ExitCode {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/bench/dataplane.json".into());
    let result = bench().and_then(|report| {
        let path = std::path::Path::new(&out);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {out}"))?;
        println!("wrote {out}");
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xlb-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
