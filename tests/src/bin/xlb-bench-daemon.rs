//! Control plane at scale (run by `cargo xtask bench`): 1,000 VIPs x 100 backends. Writes JSON.
//!
//! The library, on a program loaded with that capacity and pinned: the first apply, an apply
//! that changes one backend's weight, one that changes nothing, a backend shared by 100 VIPs
//! going down (every table it is in flips in that one apply) and up, and `status`, `stats`,
//! `audit` and `audit FILE`, each beside a baseline from the same run (copying one table into
//! the slot map; reading every live table once).
//!
//! The daemon (`xlb run --config`, capacity from the config) in a namespace, every backend
//! health-checked over TCP at 1 s intervals: 10,000 distinct targets (shared by 10 VIPs each),
//! most refusing (local addresses without a listener), the rest dropping (routed to a peer that
//! does not forward): time to the first apply, resident memory beside the size of the tables,
//! CPU while idle, a one-weight reload (end to end through SIGHUP, and the apply the daemon
//! logs), the same change through `xlb apply FILE`, and the verbs run as an operator would.
//!
//! Knobs: `XLB_BENCH_VIPS` (default 1000), `XLB_BENCH_IDLE_SECONDS` (default 10),
//! `XLB_BENCH_APPLY_RUNS` (runs of `xlb apply FILE`, default 5);
//! `--library-only` skips the daemon, `--daemon-only` the library cases.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::Ebpf;
use lb_common::{Config, PROGRAM_NAME, map_names, meta::Meta};
use lb_userspace::{
    audit,
    capacity::Capacity,
    config::FixedEnvironment,
    maps, object, pins,
    rollout::{self, Desired, DesiredBackend, DesiredVip},
    stats, status, steering,
};
use serde_json::{Value, json};
use xlb_tests::{netns::Lab, steering::vip_key};

const BACKENDS_PER_VIP: u32 = 100;
const TABLE_SIZE: u32 = 65_537;
const TARGETS: u32 = 10_000;
/// VIPs a shared backend serves.
const SHARED_VIPS: usize = 100;
/// Runs of each quick case (median and min reported).
const RUNS: usize = 5;

fn vips() -> u32 {
    std::env::var("XLB_BENCH_VIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Target `i`'s address: 198.19.0.0/19 refuses (local, no listener), 198.19.32.0/19 drops.
fn target(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(198, 19, 0, 0)) + (i % TARGETS),
    ))
}

/// The backend shared by the first [`SHARED_VIPS`] VIPs, in place of their first backend.
const SHARED: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 63, 250));

/// Backend `j` of VIP `i`: targets are spread so each serves 10 VIPs.
fn backend(i: u32, j: u32) -> IpAddr {
    if j == 0 && (i as usize) < SHARED_VIPS {
        SHARED
    } else {
        target(i * 10 + j)
    }
}

fn mac(address: IpAddr) -> [u8; 6] {
    let IpAddr::V4(v4) = address else {
        unreachable!()
    };
    let o = v4.octets();
    [0x02, 0, o[1], o[2], o[3], 1]
}

fn desired(vips: u32) -> Desired {
    let vips = (0..vips)
        .map(|i| DesiredVip {
            key: vip_key("198.18.1.10", 1000 + i as u16, 6),
            flags: 0,
            table_size: TABLE_SIZE,
            backends: (0..BACKENDS_PER_VIP)
                .map(|j| DesiredBackend {
                    address: backend(i, j),
                    weight: 1,
                    mac: mac(backend(i, j)),
                    operator: None,
                    unhealthy: None,
                })
                .collect(),
        })
        .collect();
    Desired {
        vips,
        config: Config::default(),
        config_hash: 1,
        max_share: 0.9,
    }
}

/// The same VIPs as a config file: every backend checked over TCP on port 80 at 1 s.
fn config_text(vips: u32, pin_path: &Path, weight_of_one: u32) -> String {
    let mut text = format!(
        "[global]\ninterface = \"eth0\"\nxdp_mode = \"generic\"\npin_path = \"{}\"\n\n\
         [capacity]\nvips = {vips}\nbackends_per_vip = {BACKENDS_PER_VIP}\ntable_slots = \
         {TABLE_SIZE}\n\n[alerts]\nmin_new_flows = 1000000\n\n",
        pin_path.display()
    );
    for i in 0..vips {
        let _ = writeln!(
            text,
            "[[vip]]\nname = \"v{i}\"\naddress = \"198.18.1.10\"\nport = {}\nprotocol = \"tcp\"\n\
             backend = [",
            1000 + i
        );
        for j in 0..BACKENDS_PER_VIP {
            let address = backend(i, j);
            let m = mac(address);
            let weight = if i == vips / 2 && j == 5 {
                weight_of_one
            } else {
                1
            };
            let _ = writeln!(
                text,
                "{{ address = \"{address}\", weight = {weight}, mac = \
                 \"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\", health = {{ check = \"tcp\", \
                 port = 80 }} }},",
                m[0], m[1], m[2], m[3], m[4], m[5]
            );
        }
        text.push_str("]\n\n");
    }
    text
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Min and median of [`RUNS`] timings of `f` (given the run's index), in milliseconds.
fn time(mut f: impl FnMut(usize) -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    let mut samples = Vec::new();
    for run in 0..RUNS {
        let start = Instant::now();
        f(run)?;
        samples.push(start.elapsed());
    }
    Ok(min_median(samples))
}

/// The min and median of `samples`, in ms.
fn min_median(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    (ms(samples[0]), ms(samples[samples.len() / 2]))
}

fn apply_runs() -> usize {
    std::env::var("XLB_BENCH_APPLY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS)
        .max(1)
}

/// Min and median of `runs` one-weight changes made live by `xlb apply FILE` through the
/// daemon, process start to exit (the file is written before the clock starts), the slowest
/// tenth, and how many of the runs the daemon's watch (it looks at the file every second)
/// reloaded the file too.
fn cli_apply(
    xlb: &Path,
    file: &Path,
    log: &Path,
    vips: u32,
    pin_path: &Path,
    runs: usize,
) -> anyhow::Result<((f64, f64), f64, usize)> {
    let watched = || -> anyhow::Result<usize> {
        Ok(std::fs::read_to_string(log)?
            .matches("config file changed: reloading")
            .count())
    };
    let before = watched()?;
    let mut samples = Vec::new();
    for run in 0..runs {
        std::fs::write(file, config_text(vips, pin_path, 3 + (run % 32) as u32))?;
        let start = Instant::now();
        let out = Command::new(xlb).arg("apply").arg(file).output()?;
        samples.push(start.elapsed());
        anyhow::ensure!(
            out.status.success(),
            "xlb apply failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    samples.sort();
    let p90 = ms(samples[(runs * 9 / 10).min(runs - 1)]);
    Ok((min_median(samples), p90, watched()? - before))
}

/// Min and median of applies of `want` with `change` on (even runs) and off (odd runs), each
/// of which must rebuild `rebuilt` VIPs' tables (`what` names the change); leaves it off and
/// applied.
fn toggle(
    ebpf: &mut Ebpf,
    want: &mut Desired,
    rebuilt: usize,
    what: &str,
    change: impl Fn(&mut Desired, bool),
) -> anyhow::Result<(f64, f64)> {
    let timed = time(|run| {
        change(want, run % 2 == 0);
        let applied = rollout::apply(ebpf, want)?;
        let count = applied.vips.iter().filter(|v| v.rebuilt).count();
        anyhow::ensure!(count == rebuilt, "{count} VIPs rebuilt for {what}");
        Ok(())
    })?;
    change(want, false);
    rollout::apply(ebpf, want)?;
    Ok(timed)
}

struct Row {
    name: String,
    min: f64,
    median: f64,
    baseline: Option<(&'static str, f64)>,
    /// Upper bound in ms, when the issue sets one.
    target: Option<f64>,
    note: String,
}

impl Row {
    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "ms_min": self.min,
            "ms_median": self.median,
            "baseline": self.baseline.map(|(name, _)| name),
            "baseline_ms_median": self.baseline.map(|(_, ms)| ms),
            "ratio_to_baseline_median": self.baseline.map(|(_, ms)| self.median / ms),
            "target_ms": self.target,
            "meets_target": self.target.map(|t| self.median < t),
            "note": self.note,
        })
    }
}

/// A verb run against the pins.
type Verb<'a> = dyn Fn() -> anyhow::Result<()> + 'a;

fn capacity(vips: u32) -> Capacity {
    Capacity {
        vips,
        backends_per_vip: BACKENDS_PER_VIP,
        table_slots: TABLE_SIZE,
    }
}

/// The maps' sizes at this capacity, in the kernel of this machine.
fn sizes(vips: u32) -> Value {
    let capacity = capacity(vips);
    let memory = capacity.memory_here();
    json!({
        "capacity": capacity,
        "memory": memory,
        "memory_total_bytes": memory.total(),
    })
}

/// The library cases on a pinned program under `pin_path`.
fn library(vips: u32, pin_path: &Path, config: &Path) -> anyhow::Result<Vec<Row>> {
    let capacity = capacity(vips);
    let mut ebpf = object::load_sized(object::XDP_OBJECT, PROGRAM_NAME, &capacity.map_sizes())?;
    maps::pin(&ebpf, pin_path, &map_names::XLB)?;
    let mut rows = Vec::new();
    let mut want = desired(vips);

    let started = Instant::now();
    rollout::apply(&mut ebpf, &want)?;
    let first = ms(started.elapsed());
    rows.push(Row {
        name: format!("first_apply_{vips}_vips"),
        min: first,
        median: first,
        baseline: None,
        target: None,
        note: "every table built and written (one run)".into(),
    });

    let copy = {
        let table = vec![7u32; TABLE_SIZE as usize];
        time(|_| steering::write_tables(&mut ebpf, &[(capacity.table_base(0, 1), &table)]))?
    };
    let baseline = Some(("write_one_table", copy.1));
    let middle = (vips / 2) as usize;
    let (min, median) = toggle(&mut ebpf, &mut want, 1, "one weight", |want, on| {
        want.vips[middle].backends[5].weight = if on { 2 } else { 1 };
    })?;
    rows.push(Row {
        name: format!("one_weight_among_{vips}_vips"),
        min,
        median,
        baseline,
        target: Some(20.0),
        note: "one VIP's table rebuilt and flipped; the others untouched".into(),
    });
    let (min, median) = time(|_| rollout::apply(&mut ebpf, &want).map(|_| ()))?;
    rows.push(Row {
        name: format!("no_change_among_{vips}_vips"),
        min,
        median,
        baseline,
        target: None,
        note: "nothing rebuilt; generation and meta written".into(),
    });
    let shared = SHARED_VIPS.min(vips as usize);
    let what = format!("a backend in {SHARED_VIPS}");
    let (min, median) = toggle(&mut ebpf, &mut want, shared, &what, |want, down| {
        for vip in want.vips.iter_mut().take(SHARED_VIPS) {
            vip.backends[0].unhealthy = Some(down);
        }
    })?;
    rows.push(Row {
        name: format!("shared_backend_health_{SHARED_VIPS}_vips"),
        min,
        median,
        baseline,
        target: None,
        note: format!(
            "a backend in {SHARED_VIPS} VIPs goes down or up: every table it is in rebuilt and \
             flipped in this one apply (the time until the last flip)"
        ),
    });

    let mut pinned = pins::open(pin_path)?;
    let snapshot = lb_userspace::live::Snapshot::read(&mut pinned)?;
    let read_all = time(|_| {
        let ranges: Vec<(u32, u32)> = snapshot
            .vips
            .iter()
            .map(|(_, vip)| vip.live_table())
            .collect();
        std::hint::black_box(steering::read_tables(&pinned, &ranges)?);
        Ok(())
    })?;
    let baseline = Some(("read_every_live_table", read_all.1));
    let env = FixedEnvironment::new(&["eth0"]);
    let verbs: [(&str, Box<Verb>); 4] = [
        ("status", Box::new(|| status::read(pin_path).map(|_| ()))),
        (
            "stats",
            Box::new(|| stats::read(pin_path, None, 1.5).map(|_| ())),
        ),
        (
            "audit",
            Box::new(|| audit::audit(None, Some(pin_path), &env).map(|_| ())),
        ),
        (
            "audit_file",
            Box::new(|| audit::audit(Some(config), Some(pin_path), &env).map(|_| ())),
        ),
    ];
    for (verb, run) in verbs {
        let (min, median) = time(|_| run())?;
        rows.push(Row {
            name: format!("{verb}_{vips}_vips"),
            min,
            median,
            baseline,
            target: Some(1000.0),
            note: String::new(),
        });
    }
    drop(pinned);
    drop(ebpf);
    Ok(rows)
}

/// CPU seconds process `pid` has used: (user, system).
fn cpu_seconds(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 (1-based), 12 and 13 after the command's ")".
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((
        fields[11].parse::<f64>()? / hz,
        fields[12].parse::<f64>()? / hz,
    ))
}

/// Resident memory of process `pid`, in bytes.
fn resident(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?;
    Ok(kb * 1024)
}

/// The daemon cases, in a lab of their own.
fn daemon(vips: u32, idle: Duration) -> anyhow::Result<(Vec<Row>, Value)> {
    let xlb = xlb_tests::demo::xlb_binary()?;
    let mut lab = Lab::new("benchd")?;
    let lb = lab.netns("lb")?;
    let peer = lab.netns("peer")?;
    xlb_tests::netns::veth((&lb, "eth0"), (&peer, "eth0"))?;
    lb.addr("eth0", "198.18.250.1/24")?;
    peer.addr("eth0", "198.18.250.2/24")?;
    lb.ip(&["route", "add", "local", "198.19.0.0/19", "dev", "lo"])?;
    lb.ip(&["route", "add", "198.19.32.0/19", "via", "198.18.250.2"])?;
    let pin_path = lab.pin_dir("xlb")?;
    std::fs::remove_dir(&pin_path)?;
    let file = lab.temp_path("xlb.toml")?;
    std::fs::write(&file, config_text(vips, &pin_path, 1))?;
    let log = lab.temp_path("xlb.log")?;
    let mut run = lb.command(&xlb);
    run.args(["run", "--config"])
        .arg(&file)
        .args(["--stats-interval", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let started = Instant::now();
    let pid = lab.spawn(run)?;
    let logged = |what: &str| std::fs::read_to_string(&log).is_ok_and(|l| l.contains(what));
    let tail = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let deadline = started + Duration::from_secs(600);
    while !pin_path.join("link").exists() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "xlb run never attached: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let first_apply = started.elapsed();
    while !logged("running: SIGHUP reloads") {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the daemon never started: {}",
            tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Health checks reach their steady state: every target down after `fall` (3) rounds,
    // the dropping ones timing out every round.
    std::thread::sleep(Duration::from_secs(8));
    let rss = resident(pid)?;
    let cpu_before = cpu_seconds(pid)?;
    let idle_started = Instant::now();
    std::thread::sleep(idle);
    let cpu_after = cpu_seconds(pid)?;
    let seconds = idle_started.elapsed().as_secs_f64();
    // User time is the daemon's own code; system time includes the kernel's handling of the
    // probes' SYNs and the local targets' RSTs, which runs in the daemon's context.
    let user = (cpu_after.0 - cpu_before.0) / seconds;
    let system = (cpu_after.1 - cpu_before.1) / seconds;
    let cpu = user + system;

    let mut rows = vec![Row {
        name: format!("daemon_first_apply_{vips}_vips"),
        min: ms(first_apply),
        median: ms(first_apply),
        baseline: None,
        target: None,
        note: "from `xlb run` to the link pinned: config read and validated, program loaded, \
               every table built and written, attached"
            .into(),
    }];

    // One weight, through the daemon: SIGHUP, then the reload's generation reaches the meta
    // map (the reload waits 200 ms for a second read of the file to agree). The generation is
    // polled in the meta map, a system call (`xlb status` would cost a process and a read of
    // every table per poll, on the cores the daemon checks the file on). A health change may
    // move the generation first: the reload's own generation is the one its log line names.
    let mut pinned = pins::open(&pin_path)?;
    let mut generation = || -> u64 {
        maps::array::<Meta>(&mut pinned, map_names::META)
            .and_then(|meta| Ok(meta.get(&0, 0)?.generation))
            .unwrap_or(0)
    };
    let reload_applies = || log_fields(&log, "applied (reload)", ["generation", "seconds"]);
    let checks = || log_fields(&log, "config checked", ["parse_seconds", "check_seconds"]);
    let (reloads_before, checks_before) = (reload_applies()?.len(), checks()?.len());
    let mut last = generation();
    // Each generation seen, with when it was first seen.
    let mut seen: Vec<(u64, Duration)> = Vec::new();
    std::fs::write(&file, config_text(vips, &pin_path, 2))?;
    let sent = Instant::now();
    // SAFETY: signalling a child this process spawned.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let [reload_generation, applied] = loop {
        let now = generation();
        if now != last {
            seen.push((now, sent.elapsed()));
            last = now;
            // The daemon logs an apply after writing its generation.
            if let Some(&apply) = reload_applies()?.get(reloads_before) {
                break apply;
            }
        }
        anyhow::ensure!(
            sent.elapsed() < Duration::from_secs(60),
            "the reload never applied; the daemon's log ends: {}",
            tail()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let reload = seen
        .iter()
        .find(|(seen, _)| *seen as f64 >= reload_generation)
        .map(|(_, at)| *at)
        .context("the reload's generation was logged but never seen in the meta map")?;
    drop(pinned);
    let [parse, check] = *checks()?
        .get(checks_before)
        .context("the reload's config check was not logged")?;
    rows.push(Row {
        name: format!("daemon_one_weight_reload_{vips}_vips"),
        min: ms(reload),
        median: ms(reload),
        baseline: None,
        target: None,
        note: "SIGHUP to the new generation, with the reload's 200 ms settle and the file's \
               validation"
            .into(),
    });
    rows.push(Row {
        name: format!("daemon_one_weight_apply_{vips}_vips"),
        min: applied * 1000.0,
        median: applied * 1000.0,
        baseline: None,
        target: Some(20.0),
        note: "the apply itself, as the daemon logs it".into(),
    });
    let runs = apply_runs();
    let ((min, median), p90, watched) = cli_apply(&xlb, &file, &log, vips, &pin_path, runs)?;
    rows.push(Row {
        name: format!("cli_apply_one_weight_{vips}_vips"),
        min,
        median,
        baseline: None,
        target: Some(20.0),
        note: format!(
            "`xlb apply FILE` of a one-weight change with the daemon running, process start to \
             exit (the file written just before, outside the time); the daemon's watch \
             reloaded the file too in {watched} of {runs} runs; the slowest tenth from \
             {p90:.1} ms"
        ),
    });
    for (part, seconds, note) in [
        (
            "parse",
            parse,
            "parsing the file (only the VIPs that changed)",
        ),
        (
            "check",
            check,
            "checking the whole config, table counts known",
        ),
    ] {
        rows.push(Row {
            name: format!("daemon_one_weight_reload_{part}_{vips}_vips"),
            min: seconds * 1000.0,
            median: seconds * 1000.0,
            baseline: None,
            target: None,
            note: format!("{note}, as the daemon logs it"),
        });
    }
    for (verb, args) in [
        ("status", vec!["status"]),
        ("stats", vec!["stats"]),
        ("audit", vec!["audit"]),
    ] {
        let (min, median) = time(|_| {
            let out = Command::new(&xlb)
                .args(&args)
                .arg("--pin-path")
                .arg(&pin_path)
                .output()?;
            anyhow::ensure!(
                out.status.code().is_some_and(|c| c <= 1),
                "xlb {verb} failed"
            );
            Ok(())
        })?;
        rows.push(Row {
            name: format!("cli_{verb}_{vips}_vips"),
            min,
            median,
            baseline: None,
            target: Some(1000.0),
            note: "the xlb binary, process start to exit".into(),
        });
    }
    let stopped = lab.terminate(pid)?;
    let _ = Command::new(&xlb)
        .args(["down", "--pin-path"])
        .arg(&pin_path)
        .output();
    if !stopped.success() {
        eprintln!(
            "xlb run exited with {stopped} (SIGTERM not handled in time): {}",
            tail()
        );
    }
    let refusing = TARGETS.min(8192);
    Ok((
        rows,
        json!({
            "resident_bytes": rss,
            "idle_cpu_share_of_one_core": cpu,
            "idle_cpu_user_share": user,
            "idle_cpu_system_share": system,
            "idle_cpu_target": 0.2,
            "idle_seconds": idle.as_secs_f64(),
            "health_targets": TARGETS,
            "health_targets_refusing": refusing,
            "health_targets_dropping": TARGETS - refusing,
            "health_interval_seconds": 1,
            "stopped_cleanly": stopped.success(),
        }),
    ))
}

/// The values of the fields `names` on each line of `log` that contains `what`, in order.
fn log_fields<const N: usize>(
    log: &Path,
    what: &str,
    names: [&str; N],
) -> anyhow::Result<Vec<[f64; N]>> {
    let field = |line: &str, name: &str| -> Option<f64> {
        let value = line.split(&format!(" {name}=")).nth(1)?;
        value.split_whitespace().next()?.parse().ok()
    };
    std::fs::read_to_string(log)?
        .lines()
        .filter(|line| line.contains(what))
        .map(|line| {
            let values = names.map(|name| field(line, name));
            let values: Option<Vec<f64>> = values.into_iter().collect();
            values
                .and_then(|values| values.try_into().ok())
                .with_context(|| format!("no {names:?} in the daemon's line: {line}"))
        })
        .collect()
}

/// The bench's pin directories under /sys/fs/bpf, named by the bench's pid.
const PIN_PREFIX: &str = "xlb-bench-daemon-";

/// Removes the pins of benches that were killed (their pid is gone) before they cleaned up.
fn sweep_stale_pins() {
    let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PIN_PREFIX)) else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = pins::remove(&entry.path());
        }
    }
}

/// Which cases run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phases {
    All,
    LibraryOnly,
    DaemonOnly,
}

fn bench(phases: Phases) -> anyhow::Result<Value> {
    let vips = vips();
    let idle = Duration::from_secs(
        std::env::var("XLB_BENCH_IDLE_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
    );
    sweep_stale_pins();
    let sizes = sizes(vips);
    let mut rows = Vec::new();
    if phases != Phases::DaemonOnly {
        let pin_path = PathBuf::from(format!("/sys/fs/bpf/{PIN_PREFIX}{}", std::process::id()));
        let config =
            std::env::temp_dir().join(format!("xlb-bench-daemon-{}.toml", std::process::id()));
        std::fs::write(&config, config_text(vips, &pin_path, 1))?;
        let library = library(vips, &pin_path, &config);
        let _ = pins::remove(&pin_path);
        let _ = std::fs::remove_file(&config);
        rows = library?;
    }
    let daemon = if phases == Phases::LibraryOnly {
        Value::Null
    } else {
        let (daemon_rows, figures) = daemon(vips, idle)?;
        rows.extend(daemon_rows);
        let tables = sizes["memory"]["tables"].as_u64().unwrap_or(0);
        let resident = figures["resident_bytes"].as_u64().unwrap_or(0);
        println!(
            "daemon: resident {:.1} MiB beside {:.1} MiB of tables in the kernel ({:.1} MiB \
             all maps); idle CPU {:.1}% of one core with {TARGETS} targets checked every 1 s \
             (target < 20%)",
            resident as f64 / 1048576.0,
            tables as f64 / 1048576.0,
            sizes["memory_total_bytes"].as_u64().unwrap_or(0) as f64 / 1048576.0,
            figures["idle_cpu_share_of_one_core"]
                .as_f64()
                .unwrap_or(f64::NAN)
                * 100.0
        );
        figures
    };
    println!(
        "{:<38} {:>10} {:>10}  {:<22} {:>9} {:>7} {:>9}",
        "case", "min ms", "median ms", "baseline", "base ms", "ratio", "target"
    );
    for row in &rows {
        println!(
            "{:<38} {:>10.2} {:>10.2}  {:<22} {:>9} {:>7} {:>9}",
            row.name,
            row.min,
            row.median,
            row.baseline.map_or("", |(name, _)| name),
            row.baseline
                .map_or(String::new(), |(_, ms)| format!("{ms:.2}")),
            row.baseline
                .map_or(String::new(), |(_, ms)| format!("{:.1}", row.median / ms)),
            row.target.map_or(String::new(), |t| format!("<{t} ms"))
        );
    }
    Ok(json!({
        "vips": vips,
        "backends_per_vip": BACKENDS_PER_VIP,
        "table_size": TABLE_SIZE,
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "sizes": sizes,
        "daemon": daemon,
    }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = |flag: &str| args.iter().any(|a| a == flag);
    let phases = match (only("--library-only"), only("--daemon-only")) {
        (false, false) => Phases::All,
        (true, false) => Phases::LibraryOnly,
        (false, true) => Phases::DaemonOnly,
        (true, true) => {
            eprintln!("xlb-bench-daemon: --library-only and --daemon-only exclude each other");
            return ExitCode::from(2);
        }
    };
    let Some(out) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("usage: xlb-bench-daemon OUTPUT.json [--library-only | --daemon-only]");
        return ExitCode::from(2);
    };
    match bench(phases).and_then(|report| {
        if let Some(dir) = Path::new(out).parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, format!("{report:#}\n"))?;
        Ok(())
    }) {
        Ok(()) => {
            println!("wrote {out}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("xlb-bench-daemon: {err:#}");
            ExitCode::FAILURE
        }
    }
}
