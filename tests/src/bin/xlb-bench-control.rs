//! Control-plane benchmark (run by `cargo xtask bench`), each figure beside a baseline measured
//! in the same run: Maglev table build time for 10, 100 and 1,000 backends at M = 65,537
//! (equal weights and weights 1..10) beside the C reference `bench/maglev_populate.c`, which
//! this run compiles and runs; and the time to apply 100 VIPs of 10 backends to a loaded
//! program (each apply changes every VIP's table, so all 100 are built and flipped) beside
//! copying 100 tables into the slot map (no planning, no flips).
//! Median and min of 7 runs. Writes JSON.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

use lb_common::{Config, PROGRAM_NAME};
use lb_userspace::{
    capacity::Capacity,
    diff::effect,
    maglev, object,
    rollout::{self, Desired, DesiredBackend, DesiredVip},
    steering,
};
use serde_json::json;
use xlb_tests::steering::vip_key;

const RUNS: usize = 7;
const SIZE: u32 = 65_537;

/// Min and median of `RUNS` wall-clock timings of `f`, and the median of the CPU time the
/// process spent in it (all threads), in milliseconds: the machine may be shared, and CPU time
/// says what the work costs where wall time also counts waiting for a core.
fn time(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64, f64)> {
    let mut samples = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..RUNS {
        let (start, cpu_start) = (Instant::now(), cpu_time());
        f()?;
        samples.push(start.elapsed());
        cpu.push(cpu_time() - cpu_start);
    }
    samples.sort();
    cpu.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok((ms(samples[0]), ms(samples[RUNS / 2]), ms(cpu[RUNS / 2])))
}

/// CPU time used by this process so far, all threads.
fn cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill; the clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn backend_address(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i))
}

fn bench() -> anyhow::Result<serde_json::Value> {
    let maglev = maglev_against_c()?;
    let mut rows = Vec::new();
    let capacity = Capacity {
        vips: 128,
        backends_per_vip: 16,
        table_slots: SIZE,
    };
    let mut ebpf = object::load_sized(object::XDP_OBJECT, PROGRAM_NAME, &capacity.map_sizes())?;
    // Two states whose every VIP's table differs (its first backend weighs 1 or 2): each apply
    // rebuilds and flips all 100 tables. Applying one state again would settle every VIP in
    // place and time an apply that writes nothing.
    let state = |first_weight: u32| Desired {
        vips: (0..100u16)
            .map(|i| DesiredVip {
                key: vip_key("198.18.1.10", 1000 + i, 6),
                flags: 0,
                table_size: SIZE,
                backends: (0..10)
                    .map(|b| DesiredBackend {
                        address: backend_address(u32::from(i) * 10 + b),
                        weight: if b == 0 { first_weight } else { 1 },
                        mac: [0x02, 0, 0, 0, (i >> 8) as u8, b as u8],
                        operator: None,
                        unhealthy: None,
                    })
                    .collect(),
            })
            .collect(),
        config: Config::default(),
        config_hash: 0,
        max_share: 0.9,
    };
    let states = [state(1), state(2)];
    let mut runs = 0;
    let mut next = || {
        runs += 1;
        &states[runs % 2]
    };
    let rebuilt_all = |applied: &rollout::Applied| {
        let rebuilt = applied.vips.iter().filter(|vip| vip.rebuilt).count();
        ensure!(rebuilt == 100, "{rebuilt} of 100 tables rebuilt");
        Ok(())
    };
    let apply = time(|| rebuilt_all(&rollout::apply(&mut ebpf, next())?))?;
    // As `xlb apply` does without --force: the concentration guard judges the planned tables.
    let guarded = time(|| {
        let desired = next();
        let applied =
            rollout::apply_guarded(&mut ebpf, desired, |maps, snapshot, capacity, planned| {
                let found = effect::concentrated_in(
                    maps,
                    snapshot,
                    capacity,
                    desired,
                    planned,
                    desired.max_share,
                    None,
                )?;
                Ok(found.first().map(|(key, _)| rollout::describe_vip(key)))
            })?
            .map_err(|vip| {
                anyhow::anyhow!("the guard refused the apply: {vip} too concentrated")
            })?;
        rebuilt_all(&applied)
    })?;
    let tables: Vec<Vec<u32>> = (0..100).map(|i| vec![i; SIZE as usize]).collect();
    let copies: Vec<(u32, &[u32])> = (0..100)
        .map(|i| (capacity.table_base(i, 0), tables[i as usize].as_slice()))
        .collect();
    let copy = time(|| steering::write_tables(&mut ebpf, &copies))?;
    rows.push((
        "apply_100_vips".to_owned(),
        apply,
        "copy_100_tables",
        copy,
        100.0,
    ));
    rows.push((
        "apply_100_vips_guarded".to_owned(),
        guarded,
        "copy_100_tables",
        copy,
        100.0,
    ));

    println!(
        "{:<28} {:>9} {:>11} {:>8}  {:<18} {:>11} {:>9} {:>9}",
        "case", "min ms", "median ms", "cpu ms", "baseline", "median ms", "ratio", "target"
    );
    let mut json_rows = Vec::new();
    for (name, (min, median, cpu), baseline, (_, base_median, _), target) in &rows {
        let ratio = median / base_median;
        println!(
            "{name:<28} {min:>9.2} {median:>11.2} {cpu:>8.2}  {baseline:<18} {base_median:>11.2} {ratio:>9.1} {:>9}",
            format!("<{target} ms")
        );
        json_rows.push(json!({
            "name": name,
            "ms_min": min,
            "ms_median": median,
            "cpu_ms_median": cpu,
            "baseline": baseline,
            "baseline_ms_median": base_median,
            "ratio_to_baseline_median": ratio,
            "target_ms": target,
            "meets_target": median < target,
        }));
    }
    Ok(json!({
        "runs": RUNS,
        "table_size": SIZE,
        // How busy the machine was: wall times on a shared machine include waiting for a core.
        "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "maglev": maglev,
        "cases": json_rows,
    }))
}

/// Builds per timed run: each run reports the fastest of them, as the C reference does, so a
/// run measures the builder and not the first build's page faults.
const BUILDS_PER_RUN: usize = 20;

/// The C reference (the paper's Populate loop with incremental positions, see the file's head),
/// compiled here with `cc -O2` so that its figures come from this machine and this run.
struct Reference {
    binary: PathBuf,
}

impl Reference {
    fn compile() -> anyhow::Result<Reference> {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/maglev_populate.c");
        let binary =
            std::env::temp_dir().join(format!("xlb-maglev-populate-{}", std::process::id()));
        let status = Command::new("cc")
            .args(["-O2", "-DINCREMENTAL"])
            .arg(&source)
            .arg("-o")
            .arg(&binary)
            .status()
            .context("running cc (the C reference needs a C compiler)")?;
        ensure!(
            status.success(),
            "cc {} failed ({status})",
            source.display()
        );
        Ok(Reference { binary })
    }

    /// The fastest of `BUILDS_PER_RUN` builds of a table of `backends` in one process, in ms.
    fn run(&self, backends: u32) -> anyhow::Result<f64> {
        let output = Command::new(&self.binary)
            .args([backends, SIZE, BUILDS_PER_RUN as u32].map(|n| n.to_string()))
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        ensure!(output.status.success(), "the C reference failed");
        let text = String::from_utf8_lossy(&output.stdout);
        // "N=10 M=65537 runs=20 min 0.885 ms mean ..."
        text.split_once(" min ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|ms| ms.parse().ok())
            .with_context(|| format!("unexpected output from the C reference: {text:?}"))
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.binary);
    }
}

/// Min and median of `samples`.
fn min_median(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    (samples[0], samples[samples.len() / 2])
}

/// `maglev::build` beside the C reference for 10, 100 and 1,000 backends at M = 65,537:
/// `RUNS` runs each, alternating Rust and C so that load from elsewhere falls on both; a run is
/// the fastest of `BUILDS_PER_RUN` builds on either side. Equal weights are the comparison (the
/// reference is unweighted); weights 1..10 are reported against the same C figure.
fn maglev_against_c() -> anyhow::Result<serde_json::Value> {
    let reference = Reference::compile()?;
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}",
        "maglev build, M = 65,537", "min ms", "med ms", "C min", "C med", "ratio", "target"
    );
    let mut cases = Vec::new();
    for count in [10u32, 100, 1000] {
        let keys: Vec<[u8; 16]> = (0..count)
            .map(|i| lb_common::address::to_kernel(backend_address(i)).0)
            .collect();
        for weighted in [false, true] {
            let members: Vec<maglev::Backend> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| maglev::Backend {
                    key,
                    weight: if weighted { 1 + (i % 10) as u32 } else { 1 },
                })
                .collect();
            let (mut rust, mut c) = (Vec::new(), Vec::new());
            for _ in 0..RUNS {
                let mut fastest = f64::INFINITY;
                for _ in 0..BUILDS_PER_RUN {
                    let start = Instant::now();
                    std::hint::black_box(maglev::build(&members, SIZE)?);
                    fastest = fastest.min(start.elapsed().as_secs_f64() * 1000.0);
                }
                rust.push(fastest);
                c.push(reference.run(count)?);
            }
            let ((min, median), (c_min, c_median)) = (min_median(rust), min_median(c));
            let weights = if weighted { "weights 1..10" } else { "equal" };
            let ratio = median / c_median;
            // The target is for equal weights, which is what the reference builds.
            let target = (!weighted).then_some(1.1);
            println!(
                "{:<34} {min:>8.3} {median:>8.3} {c_min:>8.3} {c_median:>8.3} {ratio:>7.2} {:>7}",
                format!("{count} backends, {weights}"),
                target.map_or("-".into(), |t| format!("<={t}x")),
            );
            cases.push(json!({
                "backends": count,
                "weights": weights,
                "ms_min": min,
                "ms_median": median,
                "c_ms_min": c_min,
                "c_ms_median": c_median,
                "ratio_median": ratio,
                "ratio_min": min / c_min,
                "target_ratio": target,
                "meets_target": target.map(|t| ratio <= t),
            }));
        }
    }
    Ok(json!({
        "reference": "tests/bench/maglev_populate.c, cc -O2 -DINCREMENTAL",
        "builds_per_run": BUILDS_PER_RUN,
        "cases": cases,
    }))
}

fn main() -> ExitCode {
    xlb_tests::report::main("xlb-bench-control", "target/bench/controlplane.json", bench)
}
