//! Data-plane benchmark (run by `cargo xtask bench`): kernel-measured ns/packet of xlb's paths
//! through BPF_PROG_TEST_RUN, each beside bare XDP_DROP and XDP_TX programs measured the same
//! way in the same run, as min and median over several runs and as a ratio to bare XDP_TX; a
//! fixture's figures are medians over several loaded copies of the program. Each path is
//! measured hot (the repeat loop, fresh packets) and cold (caches and TLBs evicted before each
//! packet, as real traffic finds them). Every case proves the path it measured by its counter.
//! `ipip`'s cost over `dsr` (both paths in one program, over several loaded copies) is printed
//! beside its floor, a bare program that only grows the frame's head. Writes JSON.

use std::process::ExitCode;

use anyhow::ensure;
use aya::programs::Xdp;
use lb_common::{
    Config, Event, PROGRAM_NAME, Reason,
    proto::TCP as IPPROTO_TCP,
    service::{DEFAULT_TABLE_SIZE, VIP_FORWARD_IPIP},
};
use lb_userspace::{config::FlowAdmission, counters::Totals, object, steering, testrun};
use serde_json::json;
use xlb_tests::{
    fixtures::{self, Setup},
    packets::{self, Flow},
    steering::{load, use_ipip, vip_key},
};

/// Runs per case; the first one or two of a series are often high, hence min and median.
const RUNS: usize = 11;
/// Repetitions per run for packets the program leaves as they were (or only re-addresses).
const REPEAT: u32 = 200_000;
/// Separate calls per run for packets the program grows (encapsulation).
const CALLS: u32 = 20_000;

/// Separate calls per run of the cold method, each after an eviction (see [`Evictor`]).
const COLD_CALLS: u32 = 200;

/// How a case is measured. `Repeat` lets the kernel loop over one buffer: valid only when the
/// program's output takes the same path again. `Fresh` starts every packet from its original
/// bytes, one system call each. `Cold` is `Fresh` with this core's caches and TLBs evicted
/// before each packet, as the rest of a busy machine evicts them between two packets of real
/// traffic: the program's code, its map entries and the page-table walks to them are fetched
/// again, as under `cargo xtask bench --e2e`.
#[derive(Clone, Copy, PartialEq)]
enum Method {
    Repeat,
    Fresh,
    Cold,
}

impl Method {
    const ALL: [Method; 3] = [Method::Repeat, Method::Fresh, Method::Cold];

    fn name(self) -> &'static str {
        match self {
            Method::Repeat => "repeat",
            Method::Fresh => "fresh",
            Method::Cold => "cold",
        }
    }
    fn packets_per_run(self) -> u64 {
        u64::from(match self {
            Method::Repeat => REPEAT,
            Method::Fresh => CALLS,
            Method::Cold => COLD_CALLS,
        })
    }
}

struct Stats {
    min: f64,
    median: f64,
}

impl Stats {
    fn of(mut samples: Vec<f64>) -> Stats {
        samples.sort_by(f64::total_cmp);
        Stats {
            min: samples[0],
            median: samples[samples.len() / 2],
        }
    }
}

/// Slices each run is cut into, taken in turn from the baseline and the case, so a slow
/// spell of this noisy machine (they last milliseconds) lands on both.
const SLICES: u32 = 10;

/// Mean ns/packet of one slice: a tenth of a run.
fn slice(program: &Xdp, packet: &[u8], method: Method) -> anyhow::Result<f64> {
    match method {
        Method::Repeat => testrun::ns_per_packet(program, packet, REPEAT / SLICES),
        Method::Fresh => testrun::ns_per_fresh_packet(program, packet, CALLS / SLICES),
        Method::Cold => {
            let mut total = 0.0;
            for _ in 0..COLD_CALLS / SLICES {
                EVICTOR.with(Evictor::evict);
                total += testrun::ns_per_fresh_packet(program, packet, 1)?;
            }
            Ok(total / f64::from(COLD_CALLS / SLICES))
        }
    }
}

thread_local! {
    static EVICTOR: Evictor = Evictor::new();
}

/// Memory this core reads between two cold packets: every line of [`Evictor::LINES`] bytes,
/// four times the 512 KiB L2 cache of this machine's cores (which holds their L1 caches' lines,
/// code included), and one line in each of [`Evictor::PAGES`] 4 KiB pages, twice as many as a
/// second-level TLB of theirs holds. Its own mapping, in 4 KiB pages (no transparent huge
/// pages).
struct Evictor {
    memory: *mut u8,
    round: std::cell::Cell<usize>,
}

impl Evictor {
    const LINES: usize = 2 << 20;
    const PAGES: usize = 4096;
    const PAGE: usize = 4096;
    const LEN: usize = Self::LINES + Self::PAGES * Self::PAGE;

    fn new() -> Evictor {
        // SAFETY: a fresh private anonymous mapping; the advice only concerns it.
        let memory = unsafe {
            let memory = libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert!(memory != libc::MAP_FAILED, "mapping the evictor's memory");
            libc::madvise(memory, Self::LEN, libc::MADV_NOHUGEPAGE);
            // Faulted in now, so that an eviction costs no page faults.
            std::ptr::write_bytes(memory.cast::<u8>(), 1, Self::LEN);
            memory.cast::<u8>()
        };
        Evictor {
            memory,
            round: std::cell::Cell::new(0),
        }
    }

    fn evict(&self) {
        let round = self.round.get();
        self.round.set(round + 1);
        let mut sum = 0u8;
        // SAFETY: every offset is below LEN, inside the mapping, which lives as long as self.
        unsafe {
            for line in (0..Self::LINES).step_by(64) {
                sum ^= self.memory.add(line).read_volatile();
            }
            // A different line of each page each round, so that the same cache sets do not
            // take every read.
            for page in 0..Self::PAGES {
                let line = (page * 7 + round) % (Self::PAGE / 64) * 64;
                sum ^= self
                    .memory
                    .add(Self::LINES + page * Self::PAGE + line)
                    .read_volatile();
            }
        }
        std::hint::black_box(sum);
    }
}

/// Distinct flows the new-flow streams cycle through: four times the default flow table, so a
/// flow's old slot is gone when its turn comes again and every SYN is a new flow (the table
/// stays full, as under a flood).
const STREAM_FLOWS: u32 = 4 * 65_536;

/// New flows, one per call: SYNs from distinct sources, each call from the original bytes, or
/// the first ACK of each (its SYN sent just before, unmeasured).
struct Stream {
    syns: Vec<Vec<u8>>,
    acks: Vec<Vec<u8>>,
    next: usize,
}

impl Stream {
    fn new() -> Stream {
        let flows = (0..STREAM_FLOWS).map(|i| {
            let [_, a, b, c] = i.to_be_bytes();
            Flow {
                src: std::net::Ipv4Addr::new(198, 18, a, b).into(),
                dst: std::net::Ipv4Addr::new(198, 18, 1, 10).into(),
                sport: 1024 + u16::from(c),
                dport: 80,
            }
        });
        let (syns, acks) = flows
            .map(|flow| (packets::tcp_syn(&flow), packets::tcp_ack(&flow, b"GET /")))
            .unzip();
        Stream {
            syns,
            acks,
            next: 0,
        }
    }

    /// Mean ns/packet of a slice of new flows' SYNs, or (`first_ack`) of their first ACKs.
    fn slice(&mut self, program: &Xdp, first_ack: bool) -> anyhow::Result<f64> {
        let calls = CALLS / SLICES;
        let mut total = 0.0;
        for _ in 0..calls {
            let i = self.next % self.syns.len();
            self.next += 1;
            total += if first_ack {
                testrun::run(program, &self.syns[i])?;
                testrun::ns_per_fresh_packet(program, &self.acks[i], 1)?
            } else {
                testrun::ns_per_fresh_packet(program, &self.syns[i], 1)?
            };
        }
        Ok(total / f64::from(calls))
    }
}

/// A case measured run by run beside the baseline, their slices interleaved.
struct Paired {
    case: Stats,
    baseline: Stats,
    /// Median over runs of case / baseline.
    ratio: f64,
    /// Min of the case over min of the baseline: each at its least disturbed.
    ratio_of_mins: f64,
    /// Median over runs of case - baseline, ns.
    net: f64,
}

impl Paired {
    /// The same figures over program copies measured one by one (see [`INSTANCES`]): medians
    /// of each copy's medians, the least of their minimums.
    fn over(copies: &[Paired]) -> Paired {
        let of = |figure: fn(&Paired) -> f64| Stats::of(copies.iter().map(figure).collect());
        let case = Stats {
            min: of(|copy| copy.case.min).min,
            median: of(|copy| copy.case.median).median,
        };
        let baseline = Stats {
            min: of(|copy| copy.baseline.min).min,
            median: of(|copy| copy.baseline.median).median,
        };
        Paired {
            ratio: of(|copy| copy.ratio).median,
            ratio_of_mins: case.min / baseline.min,
            net: of(|copy| copy.net).median,
            case,
            baseline,
        }
    }
}

fn measure(baseline: &Xdp, program: &Xdp, packet: &[u8], method: Method) -> anyhow::Result<Paired> {
    measure_slices(baseline, program, |program| slice(program, packet, method))
}

/// [`measure`] with `slice` measuring a slice of a program.
fn measure_slices(
    baseline: &Xdp,
    program: &Xdp,
    mut slice: impl FnMut(&Xdp) -> anyhow::Result<f64>,
) -> anyhow::Result<Paired> {
    let (mut cases, mut baselines) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (mut case, mut base) = (0.0, 0.0);
        for _ in 0..SLICES {
            base += slice(baseline)?;
            case += slice(program)?;
        }
        baselines.push(base / f64::from(SLICES));
        cases.push(case / f64::from(SLICES));
    }
    let ratios = cases.iter().zip(&baselines).map(|(c, b)| c / b).collect();
    let nets = cases.iter().zip(&baselines).map(|(c, b)| c - b).collect();
    let (case, baseline) = (Stats::of(cases), Stats::of(baselines));
    Ok(Paired {
        ratio: Stats::of(ratios).median,
        ratio_of_mins: case.min / baseline.min,
        net: Stats::of(nets).median,
        case,
        baseline,
    })
}

struct Row {
    name: String,
    method: Method,
    paired: Paired,
    /// Each program copy's net ns ([`Paired::net`]), when the row is the median over copies.
    copy_nets: Vec<f64>,
    /// The target ratio to bare XDP_TX, judged on this row.
    target: Option<f64>,
    proof: String,
}

/// Keeps this thread (and so every test run, which runs on the caller's CPU) on the CPU it is
/// on: the CPUs of this machine differ in speed from moment to moment, and a case and its
/// baseline must be measured on the same one. Returns that CPU.
fn pin_to_this_cpu() -> anyhow::Result<usize> {
    // SAFETY: sched_getcpu has no preconditions; the cpu_set_t is zeroed, then one bit set.
    unsafe {
        let cpu = usize::try_from(libc::sched_getcpu())?;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        ensure!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0,
            "pinning the benchmark to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
        Ok(cpu)
    }
}

fn bench() -> anyhow::Result<serde_json::Value> {
    let cpu = pin_to_this_cpu()?;
    let v4 = Flow::new("198.18.0.1", "198.18.1.10", 40000, 80);
    let syn4 = packets::tcp_syn(&v4);
    let mut bare_tx = object::load(object::BASELINE_OBJECT, "bare_tx")?;
    let bare_tx = object::xdp_program(&mut bare_tx, "bare_tx")?;
    let mut rows = Vec::new();
    for method in Method::ALL {
        for name in ["bare_drop", "bare_tx", "bare_adjust_head"] {
            // The repeat loop would grow one frame until its headroom ran out.
            if name == "bare_adjust_head" && method == Method::Repeat {
                continue;
            }
            let mut ebpf = object::load(object::BASELINE_OBJECT, name)?;
            let program = object::xdp_program(&mut ebpf, name)?;
            rows.push(Row {
                name: name.into(),
                method,
                paired: measure(bare_tx, program, &syn4, method)?,
                copy_nets: Vec::new(),
                target: None,
                proof: String::new(),
            });
        }
    }

    // The bench's cases are the fixture table's (tests/src/fixtures.rs), which the fixture
    // tests check for their verdict, reason and output.
    let only = std::env::var("XLB_BENCH_ONLY").unwrap_or_default();
    for fixture in fixtures::all() {
        let Some(bench) = fixture.bench else {
            continue;
        };
        if !fixture.name.contains(&only) {
            continue;
        }
        let methods: &[Method] = if bench.repeat {
            &Method::ALL
        } else {
            &[Method::Fresh, Method::Cold]
        };
        let (name, reason) = (fixture.name, fixture.reason);
        let copies = copies(fixture.setup);
        let expected = |method: Method| RUNS as u64 * method.packets_per_run();
        for &method in methods {
            let mut measured = Vec::new();
            for _ in 0..copies {
                let mut ebpf = fixture.setup.load().ebpf;
                measured.push(measure(
                    bare_tx,
                    object::xdp_program(&mut ebpf, PROGRAM_NAME)?,
                    &fixture.frame,
                    method,
                )?);
                let counted = Totals::read(&ebpf)?.reason(reason).packets;
                ensure!(
                    counted == expected(method),
                    "{name}: {counted} packets counted as {}, expected {}",
                    reason.name(),
                    expected(method)
                );
            }
            // VIP paths are judged fresh, the others in the repeat loop (see the targets).
            let judged = method
                == if reason == Reason::NotVip || reason == Reason::NotIp {
                    Method::Repeat
                } else {
                    Method::Fresh
                };
            rows.push(Row {
                name: name.into(),
                method,
                paired: Paired::over(&measured),
                copy_nets: measured.iter().map(|copy| copy.net).collect(),
                target: bench.target.filter(|_| judged),
                proof: format!(
                    "reason.{}={} per copy, copies={copies}",
                    reason.name(),
                    expected(method)
                ),
            });
        }
    }

    rows.extend(admission_rows(bare_tx, &only)?);

    println!(
        "{:<38} {:>6} {:>7} {:>7} {:>8} {:>8} {:>7} {:>6} {:>6} {:>12}  proof",
        "case",
        "method",
        "min ns",
        "med ns",
        "bare min",
        "bare med",
        "net ns",
        "ratio",
        "mins",
        "target"
    );
    let mut json_rows = Vec::new();
    for row in &rows {
        let p = &row.paired;
        let target = row.target.map_or(String::new(), |target| {
            let verdict = if p.ratio <= target { "met" } else { "MISSED" };
            format!("<={target} {verdict}")
        });
        println!(
            "{:<38} {:>6} {:>7.1} {:>7.1} {:>8.1} {:>8.1} {:>7.1} {:>6.2} {:>6.2} {:>12}  {}",
            row.name,
            row.method.name(),
            p.case.min,
            p.case.median,
            p.baseline.min,
            p.baseline.median,
            p.net,
            p.ratio,
            p.ratio_of_mins,
            target,
            row.proof
        );
        json_rows.push(json!({
            "name": row.name,
            "method": row.method.name(),
            "ns_per_packet_min": p.case.min,
            "ns_per_packet_median": p.case.median,
            "baseline": format!("bare_tx ({})", row.method.name()),
            "baseline_ns_per_packet_min": p.baseline.min,
            "baseline_ns_per_packet_median": p.baseline.median,
            "ratio_to_baseline_median": p.ratio,
            "ratio_of_mins": p.ratio_of_mins,
            "ns_above_baseline_median": p.net,
            "ns_above_baseline_copies": row.copy_nets,
            "target_ratio": row.target,
            "target_met": row.target.map(|target| p.ratio <= target),
            "proof": row.proof,
        }));
    }
    let scale = scale_rows(&rows);
    let ipip = if "ipip_over_dsr".contains(&only) {
        ipip_over_dsr(bare_tx)?
    } else {
        Vec::new()
    };
    Ok(json!({
        "runs": RUNS,
        "repeat": REPEAT,
        "fresh_calls": CALLS,
        "cpu": cpu,
        "cases": json_rows,
        "scale": scale,
        "ipip_over_dsr": ipip,
    }))
}

/// The SYN and first-ACK paths of new flows under each flow admission (fresh, distinct flows:
/// [`Stream`]): `syn` is the policy before SYN-flood protection, the baseline of the others.
fn admission_rows(bare_tx: &Xdp, only: &str) -> anyhow::Result<Vec<Row>> {
    let mut stream = Stream::new();
    let mut rows = Vec::new();
    for (path, first_ack) in [("syn", false), ("first_ack", true)] {
        for admission in FlowAdmission::ALL {
            let name = format!("dsr_{path}_new_flow_ipv4_{}", admission.name());
            if !name.contains(only) {
                continue;
            }
            let (mut ebpf, _) = load(&[(vip_key("198.18.1.10", 80, 6), 0)], 65_537);
            let config = Config {
                flags: admission.flags(),
                ..Config::default()
            };
            steering::set_config(&mut ebpf, &config)?;
            let paired = measure_slices(
                bare_tx,
                object::xdp_program(&mut ebpf, PROGRAM_NAME)?,
                |program| stream.slice(program, first_ack),
            )?;
            // The path each packet took, from the counters: what the SYNs did to the table,
            // and whether the first ACKs found their flow.
            let totals = Totals::read(&ebpf)?;
            let proof = [
                Event::FlowHit,
                Event::FlowMiss,
                Event::FlowRemembered,
                Event::FlowNotRemembered,
                Event::FlowEvictedProven,
            ]
            .iter()
            .map(|event| format!("{}={}", event.name(), totals.event(*event).packets))
            .collect::<Vec<_>>()
            .join(" ");
            rows.push(Row {
                name,
                method: Method::Fresh,
                paired,
                copy_nets: Vec::new(),
                target: None,
                proof,
            });
        }
    }
    Ok(rows)
}

/// The large set-up's cost over the small one's, per path and method: the lookup must not
/// grow with the number of VIPs and backends.
fn scale_rows(rows: &[Row]) -> Vec<serde_json::Value> {
    let find = |name, method| find(rows, name, method);
    let mut scale = Vec::new();
    for (path, small, large) in [
        (
            "new flow",
            "dsr_new_flow_1vip_3backends",
            "dsr_new_flow_1000vips_100backends",
        ),
        (
            "established",
            "dsr_established_ipv4",
            "dsr_established_1000vips_100backends",
        ),
    ] {
        for method in Method::ALL {
            let (Some(small), Some(large)) = (find(small, method), find(large, method)) else {
                continue;
            };
            let (s, l) = (&small.paired.case, &large.paired.case);
            println!(
                "scale, {path} ({}): 1,000 VIPs x 100 backends / 1 VIP x 3 backends = {:.2} \
                 (medians), {:.2} (minimums)",
                method.name(),
                l.median / s.median,
                l.min / s.min
            );
            scale.push(json!({
                "path": path,
                "method": method.name(),
                "small": small.name,
                "large": large.name,
                "ratio_median": l.median / s.median,
                "ratio_min": l.min / s.min,
            }));
        }
    }
    scale
}

/// The row of case `name` measured by `method`, if it ran.
fn find<'a>(rows: &'a [Row], name: &str, method: Method) -> Option<&'a Row> {
    rows.iter()
        .find(|row| row.name == name && row.method == method)
}

/// Program instances `ipip_over_dsr` and each fixture row measure. One loaded copy of the same
/// program can sit several ns above or below another for as long as it lives (where its code
/// and maps landed), more than the difference between two builds: the figure is the median over
/// instances.
const INSTANCES: usize = 8;

/// Program copies a fixture row is measured over: [`INSTANCES`], but one of the large set-up,
/// each copy of which writes ~260 MB of tables.
fn copies(setup: Setup) -> usize {
    if setup == Setup::Large { 1 } else { INSTANCES }
}

/// What `ipip` established costs over `dsr` established (fresh packets), beside its floor:
/// `bare_adjust_head` over bare XDP_TX, the one helper call `ipip` makes and `dsr` does not.
/// Each instance is one program with a `dsr` and an `ipip` VIP per family, so both paths run
/// in the same copy; their slices interleave with the bare programs', run by run.
fn ipip_over_dsr(bare_tx: &Xdp) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut adjust = object::load(object::BASELINE_OBJECT, "bare_adjust_head")?;
    let adjust = object::xdp_program(&mut adjust, "bare_adjust_head")?;
    let families = [
        ("ipv4", "198.18.0.1", "198.18.1.10", "198.18.1.20"),
        ("ipv6", "2001:db8::1", "2001:db8:1::10", "2001:db8:1::20"),
    ];
    let ack = |client, vip| packets::tcp_ack(&Flow::new(client, vip, 40000, 80), b"GET /");
    // Per family: each instance's median over runs of ipip - dsr; and of the floor.
    let mut over_dsr = vec![Vec::new(); families.len()];
    let mut floors = Vec::new();
    for _ in 0..INSTANCES {
        let vips: Vec<_> = families
            .iter()
            .flat_map(|&(_, _, dsr, ipip)| {
                [
                    (vip_key(dsr, 80, IPPROTO_TCP), 0),
                    (vip_key(ipip, 80, IPPROTO_TCP), VIP_FORWARD_IPIP),
                ]
            })
            .collect();
        let (mut ebpf, _) = load(&vips, DEFAULT_TABLE_SIZE);
        use_ipip(&mut ebpf, false, 1500);
        let program = object::xdp_program(&mut ebpf, PROGRAM_NAME)?;
        let frames: Vec<[Vec<u8>; 2]> = families
            .iter()
            .map(|&(_, client, dsr, ipip)| [ack(client, dsr), ack(client, ipip)])
            .collect();
        // The first packet of each flow takes the new-flow path; the measured ones hit.
        for frame in frames.iter().flatten() {
            testrun::run(program, frame)?;
        }
        let (mut nets, mut floor) = (vec![Vec::new(); families.len()], Vec::new());
        for _ in 0..RUNS {
            let mut sums = vec![[0.0; 2]; families.len()];
            let (mut tx, mut grown) = (0.0, 0.0);
            for _ in 0..SLICES {
                tx += slice(bare_tx, &frames[0][0], Method::Fresh)?;
                grown += slice(adjust, &frames[0][0], Method::Fresh)?;
                for (sum, pair) in sums.iter_mut().zip(&frames) {
                    sum[0] += slice(program, &pair[0], Method::Fresh)?;
                    sum[1] += slice(program, &pair[1], Method::Fresh)?;
                }
            }
            let slices = f64::from(SLICES);
            for (net, [dsr, ipip]) in nets.iter_mut().zip(&sums) {
                net.push((ipip - dsr) / slices);
            }
            floor.push((grown - tx) / slices);
        }
        let totals = Totals::read(&ebpf)?;
        let expected = (RUNS as u64 * Method::Fresh.packets_per_run() + 1) * 2;
        for reason in [Reason::ForwardedDsr, Reason::ForwardedIpip] {
            let counted = totals.reason(reason).packets;
            ensure!(
                counted == expected,
                "ipip over dsr: {counted} packets counted as {}, expected {expected}",
                reason.name()
            );
        }
        for (family, net) in over_dsr.iter_mut().zip(nets) {
            family.push(Stats::of(net).median);
        }
        floors.push(Stats::of(floor).median);
    }
    let floor = Stats::of(floors.clone());
    let mut figures = Vec::new();
    for ((name, ..), instances) in families.iter().zip(over_dsr) {
        let over = Stats::of(instances.clone());
        println!(
            "ipip over dsr, established {name} (fresh, {INSTANCES} program instances): median \
             {:.1} ns (least {:.1}), of which the head's growth (bare_adjust_head) {:.1} ns",
            over.median, over.min, floor.median
        );
        figures.push(json!({
            "family": name,
            "ns_over_dsr": over.median,
            "ns_over_dsr_instances": instances,
            "adjust_head_ns": floor.median,
            "adjust_head_ns_instances": floors,
        }));
    }
    Ok(figures)
}

fn main() -> ExitCode {
    xlb_tests::report::main("xlb-bench", "target/bench/dataplane.json", bench)
}
