//! Control-plane benchmark (run by `cargo xtask bench`): Maglev table build time for 10, 100
//! and 1,000 backends at M = 65,537, and the time to apply 100 VIPs to a loaded program, each
//! beside a baseline measured in the same run: filling the same table round-robin (no
//! hashing), and copying the same 100 tables into the slot map (no planning, no flips).
//! Median and min of 7 runs. Writes JSON.

use std::{
    net::{IpAddr, Ipv4Addr},
    process::ExitCode,
    time::{Duration, Instant},
};

use lb_common::{Config, PROGRAM_NAME};
use lb_userspace::{
    capacity::Capacity,
    maglev, object,
    rollout::{self, Desired, DesiredBackend, DesiredVip},
    steering,
};
use serde_json::json;
use xlb_tests::steering::vip_key;

const RUNS: usize = 7;
const SIZE: u32 = 65_537;

/// Min and median of `RUNS` timings of `f`, in milliseconds.
fn time(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok((ms(samples[0]), ms(samples[RUNS / 2])))
}

fn backend_address(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i))
}

fn bench() -> anyhow::Result<serde_json::Value> {
    let mut rows = Vec::new();
    for count in [10u32, 100, 1000] {
        let keys: Vec<[u8; 16]> = (0..count)
            .map(|i| lb_userspace::config::kernel_address(backend_address(i)).0)
            .collect();
        let members: Vec<maglev::Backend> = keys
            .iter()
            .map(|key| maglev::Backend { key, weight: 1 })
            .collect();
        let build = time(|| {
            std::hint::black_box(maglev::build(&members, SIZE)?);
            Ok(())
        })?;
        let baseline = time(|| {
            let table: Vec<u32> = (0..SIZE).map(|slot| slot % count).collect();
            std::hint::black_box(table);
            Ok(())
        })?;
        rows.push((
            format!("maglev_build_{count}_backends"),
            build,
            "round_robin_fill",
            baseline,
            20.0,
        ));
    }

    let capacity = Capacity {
        vips: 128,
        backends_per_vip: 16,
        table_slots: SIZE,
    };
    let mut ebpf = object::load_sized(object::XDP_OBJECT, PROGRAM_NAME, &capacity.map_sizes())?;
    let vips: Vec<DesiredVip> = (0..100u16)
        .map(|i| DesiredVip {
            key: vip_key("198.18.1.10", 1000 + i, 6),
            flags: 0,
            table_size: SIZE,
            backends: (0..10)
                .map(|b| DesiredBackend {
                    address: backend_address(u32::from(i) * 10 + b),
                    weight: 1,
                    mac: [0x02, 0, 0, 0, (i >> 8) as u8, b as u8],
                    operator: None,
                    unhealthy: None,
                })
                .collect(),
        })
        .collect();
    let desired = Desired {
        vips,
        config: Config::default(),
        config_hash: 0,
        max_share: 0.9,
    };
    let apply = time(|| rollout::apply(&mut ebpf, &desired).map(|_| ()))?;
    let tables: Vec<Vec<u32>> = (0..100).map(|i| vec![i; SIZE as usize]).collect();
    let copies: Vec<(u32, &[u32])> = (0..100)
        .map(|i| (capacity.table_base(i, 0), tables[i as usize].as_slice()))
        .collect();
    let copy = time(|| steering::write_tables(&mut ebpf, &copies))?;
    rows.push((
        "apply_100_vips".into(),
        apply,
        "copy_100_tables",
        copy,
        1000.0,
    ));

    println!(
        "{:<28} {:>9} {:>11}  {:<18} {:>11} {:>9} {:>9}",
        "case", "min ms", "median ms", "baseline", "median ms", "ratio", "target"
    );
    let mut json_rows = Vec::new();
    for (name, (min, median), baseline, (_, base_median), target) in &rows {
        let ratio = median / base_median;
        println!(
            "{name:<28} {min:>9.2} {median:>11.2}  {baseline:<18} {base_median:>11.2} {ratio:>9.1} {:>9}",
            format!("<{target} ms")
        );
        json_rows.push(json!({
            "name": name,
            "ms_min": min,
            "ms_median": median,
            "baseline": baseline,
            "baseline_ms_median": base_median,
            "ratio_to_baseline_median": ratio,
            "target_ms": target,
            "meets_target": median < target,
        }));
    }
    Ok(json!({ "runs": RUNS, "table_size": SIZE, "cases": json_rows }))
}

fn main() -> ExitCode {
    xlb_tests::report::main("xlb-bench-control", "target/bench/controlplane.json", bench)
}
