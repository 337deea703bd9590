//! End-to-end benchmark (run by `cargo xtask bench --e2e`): short HTTP requests from the
//! client of the lab ([`xlb_tests::lab`]: client, lb and three nginx backends on a bridge, the
//! real `xlb run --config` daemon) measured with wrk, through four paths on the same
//! namespaces and the same cores: xlb `dsr`, xlb `ipip`, HAProxy in the lb namespace as the
//! equivalent layer-4 balancer (`mode tcp`, `balance roundrobin`, the lab's weights) on a VIP
//! of its own, the client talking to one backend directly as the ceiling, and the same backend
//! reached through the lb namespace's kernel forwarding (the extra bridge hop that xlb's paths
//! also take, without XDP steering: xlb passes it as `not_vip`). Each path with keep-alive on
//! and off (`Connection: close`: one new connection per request, so requests/s is new
//! connections/s).
//!
//! Beside each run, the CPU the balancers spent: the xlb program's and the backends' decap
//! programs' run time from the kernel's BPF statistics (BPF_ENABLE_STATS, held only while the
//! benchmark runs: the same counters `sysctl kernel.bpf_stats_enabled=1` switches on), and
//! HAProxy's user and system time from /proc/PID/stat. Prints tables and writes JSON; the lab is
//! removed afterwards, also on error and on Ctrl-C.
//!
//! `xlb-bench-e2e [REPORT]` (default `target/bench/e2e.json`). The `xlb` binary is
//! `$XLB_BIN`, else the one beside this one. Exits 1 if any path served no request.

use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use aya::{
    programs::{ProgramInfo, loaded_programs},
    sys::{Stats, enable_stats},
};
use lb_userspace::{decap, pins};
use serde_json::json;
use xlb_tests::{
    daemon_lab::exited,
    lab::{self, HTTP_PORT, IPIP_VIP_V4, WEIGHTS},
    lab_site::{self, Site},
    netns::Netns,
    network::{Host, LB_V4},
    topology::VIP_V4,
};

/// HAProxy's VIP, on the lb namespace's loopback (xlb passes what is not its VIP).
const HAPROXY_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 30);
/// wrk's load: threads, connections, seconds per measurement.
const THREADS: u32 = 2;
const CONNECTIONS: u32 = 64;
const SECONDS: u32 = 5;
/// HAProxy's connection limit: well under the 20,000 open files (two per connection).
const HAPROXY_MAXCONN: u32 = 4_000;
/// How long HAProxy and each path may take to answer a first request.
const READY: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// The balancer's CPU target per new connection: at most this fraction of HAProxy's.
const CPU_TARGET: f64 = 1.0 / 60.0;

/// One way from the client to an nginx.
struct Path4 {
    name: &'static str,
    address: IpAddr,
    /// Whether xlb carries it (its rows get ratios to HAProxy and to the direct path).
    xlb: bool,
    /// Whether the client routes it through the lb namespace's kernel forwarding (to the
    /// direct path's address).
    forwarded: bool,
}

/// One wrk run.
struct Row {
    path: &'static str,
    address: IpAddr,
    xlb: bool,
    keepalive: bool,
    /// What the balancers' CPU counters moved by during the run.
    cpu: Cpu,
    requests: u64,
    requests_per_second: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    /// wrk's socket errors and non-2xx/3xx responses, as it printed them.
    errors: Vec<String>,
    command: String,
}

fn main() -> ExitCode {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/bench/e2e.json".into()),
    );
    lab_site::exit_code("xlb-bench-e2e", run(&out))
}

fn run(out: &Path) -> anyhow::Result<()> {
    let xlb = xlb_binary()?;
    let start = Instant::now();
    let mut site = Site::removable()?;
    let result = measure(&mut site, &xlb);
    let namespaces = result
        .as_ref()
        .map(|(_, namespaces)| namespaces.clone())
        .unwrap_or_default();
    drop(site);
    let (rows, _) = result?;
    let left: Vec<&String> = namespaces
        .iter()
        .filter(|name| Path::new("/run/netns").join(name).exists())
        .collect();
    ensure!(
        left.is_empty(),
        "namespaces left after the benchmark: {left:?}"
    );
    println!(
        "bench: lab removed ({} namespaces, the pins, nginx, HAProxy, the daemon); {:.1} s in all",
        namespaces.len(),
        start.elapsed().as_secs_f64()
    );

    print!("{}", table(&rows));
    let report = report(&rows);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());

    let empty: Vec<String> = rows
        .iter()
        .filter(|row| row.requests == 0)
        .map(|row| format!("{} (keep-alive {})", row.path, on_off(row.keepalive)))
        .collect();
    ensure!(
        empty.is_empty(),
        "no request served through {}",
        empty.join(", ")
    );
    Ok(())
}

/// `$XLB_BIN`, else `xlb` beside this binary.
fn xlb_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("XLB_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .join("xlb"),
    };
    std::fs::canonicalize(&path)
        .with_context(|| format!("the xlb binary {} is not there", path.display()))
}

/// Builds the lab, adds HAProxy, runs wrk over every path; stops the servers the operator's
/// way. Returns the rows and the lab's namespaces (the site removes them).
fn measure(site: &mut Site, xlb: &Path) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let running = lab::start(site, xlb)?;
    let topology = &running.topology;
    let (client, lb) = (&topology.client, topology.lb());
    // Keep-alive off opens thousands of connections a second: the client's whole port range.
    client.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;

    let step = Instant::now();
    lb.addr("lo", &format!("{HAPROXY_VIP}/32"))?;
    client.ip(&[
        "-4",
        "route",
        "add",
        &format!("{HAPROXY_VIP}/32"),
        "via",
        &LB_V4.to_string(),
    ])?;
    let haproxy = start_haproxy(site, lb, &topology.backends)?;
    // The forwarded path: lb routes what is not its VIP; no ICMP redirects, which would send
    // the client around it.
    lb.sysctl("net.ipv4.ip_forward", "1")?;
    for dev in ["all", "eth0"] {
        lb.sysctl(&format!("net.ipv4.conf.{dev}.send_redirects"), "0")?;
    }
    client.sysctl("net.ipv4.conf.all.accept_redirects", "0")?;
    let direct = &topology.backends[0];
    let paths = [
        Path4 {
            name: "xlb dsr",
            address: IpAddr::V4(VIP_V4),
            xlb: true,
            forwarded: false,
        },
        Path4 {
            name: "xlb ipip",
            address: IpAddr::V4(IPIP_VIP_V4),
            xlb: true,
            forwarded: false,
        },
        Path4 {
            name: "haproxy",
            address: IpAddr::V4(HAPROXY_VIP),
            xlb: false,
            forwarded: false,
        },
        Path4 {
            name: "direct",
            address: IpAddr::V4(direct.address),
            xlb: false,
            forwarded: false,
        },
        Path4 {
            name: "forwarded",
            address: IpAddr::V4(direct.address),
            xlb: false,
            forwarded: true,
        },
    ];
    let programs = Programs::of(&running)?;
    // The kernel counts programs' run time only while some process holds this.
    let _stats = enable_stats(Stats::RunTime)
        .context("enabling the kernel's BPF run-time statistics (BPF_ENABLE_STATS)")?;
    println!(
        "bench: haproxy (pid {haproxy}, mode tcp, balance roundrobin) on {HAPROXY_VIP}:{HTTP_PORT} \
         in {}; forwarding on in {} for the forwarded path ({:.1} s)",
        lb.name,
        lb.name,
        step.elapsed().as_secs_f64()
    );
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench: wrk -t{THREADS} -c{CONNECTIONS} -d{SECONDS}s --latency from {} per path and \
         keep-alive setting; {cores} cores shared by wrk, nginx, HAProxy and the kernel",
        client.name
    );

    let mut rows = Vec::new();
    for path in &paths {
        let route = format!("{}/32", path.address);
        if path.forwarded {
            client.ip(&["-4", "route", "add", &route, "via", &LB_V4.to_string()])?;
        }
        wait_for_answer(site, client, path, haproxy)?;
        for keepalive in [true, false] {
            let before = Cpu::read(&programs, haproxy)?;
            let mut row = wrk(client, path, keepalive)?;
            row.cpu = Cpu::read(&programs, haproxy)?.since(&before);
            println!(
                "bench: {:<9} keep-alive {:<3} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms{}",
                row.path,
                on_off(keepalive),
                row.requests_per_second,
                row.latency_p50_ms,
                row.latency_p99_ms,
                if row.errors.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", row.errors.join("; "))
                }
            );
            rows.push(row);
        }
        if path.forwarded {
            client.ip(&["-4", "route", "del", &route])?;
        }
    }
    print!("{}", cpu_table(&rows));

    site.stop(haproxy)?;
    lab::stop(site, xlb, &running)?;
    Ok((rows, topology.namespaces()))
}

/// The programs whose run time the benchmark reads: xlb in the lb namespace (by its pin) and
/// `xlb_decap` on every backend (by their pins), as kernel program ids.
struct Programs {
    xlb: u32,
    decap: Vec<u32>,
}

impl Programs {
    fn of(running: &lab::Running) -> anyhow::Result<Programs> {
        let xlb = pinned_program(&running.pin_path)?;
        let decap = running
            .topology
            .backends
            .iter()
            .map(|host| {
                // Pinned as `xlb decap attach eth0` pins: one directory per interface.
                let root = running.links.join(format!("decap-{}", host.name));
                pinned_program(&decap::pin_dir(&root, "eth0"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Programs { xlb, decap })
    }
}

/// The kernel id of the program pinned under `pin_path`.
fn pinned_program(pin_path: &Path) -> anyhow::Result<u32> {
    let path = pins::program_path(pin_path);
    Ok(ProgramInfo::from_pin(&path)
        .with_context(|| format!("reading the program pinned at {}", path.display()))?
        .id())
}

/// The balancers' CPU counters: the programs' run time (ns) and runs (packets), HAProxy's user
/// and system time (ns). Read at one moment, or the difference over a run.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    xlb_ns: u64,
    xlb_packets: u64,
    decap_ns: u64,
    decap_packets: u64,
    haproxy_ns: u64,
}

impl Cpu {
    fn read(programs: &Programs, haproxy: u32) -> anyhow::Result<Cpu> {
        let mut cpu = Cpu {
            haproxy_ns: process_cpu_ns(haproxy)?,
            ..Cpu::default()
        };
        // Other programs come and go meanwhile (a vanished one is an error here): skip them.
        for info in loaded_programs().filter_map(Result::ok) {
            let (ns, runs) = (info.run_time().as_nanos() as u64, info.run_count());
            if info.id() == programs.xlb {
                cpu.xlb_ns += ns;
                cpu.xlb_packets += runs;
            } else if programs.decap.contains(&info.id()) {
                cpu.decap_ns += ns;
                cpu.decap_packets += runs;
            }
        }
        Ok(cpu)
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            xlb_ns: self.xlb_ns.saturating_sub(before.xlb_ns),
            xlb_packets: self.xlb_packets.saturating_sub(before.xlb_packets),
            decap_ns: self.decap_ns.saturating_sub(before.decap_ns),
            decap_packets: self.decap_packets.saturating_sub(before.decap_packets),
            haproxy_ns: self.haproxy_ns.saturating_sub(before.haproxy_ns),
        }
    }
}

/// User and system time of process `pid` (all its threads) in ns, from /proc/PID/stat.
fn process_cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields from the third (state) on, after the command name, which may hold spaces; utime
    // and stime are the 14th and 15th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .with_context(|| format!("{path} has no command name"))?
        .1
        .split_whitespace()
        .collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        let field = fields
            .get(index)
            .with_context(|| format!("{path} is short"))?;
        field
            .parse::<u64>()
            .with_context(|| format!("{path}: bad CPU time {field:?}"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&hz| hz > 0)
        .context("sysconf(_SC_CLK_TCK) failed")?;
    Ok((ticks(11)? + ticks(12)?) * 1_000_000_000 / hz)
}

/// `ns` per request of `row`, None when nothing was served.
fn per_request(ns: u64, row: &Row) -> Option<f64> {
    (row.requests > 0).then(|| ns as f64 / row.requests as f64)
}

/// The balancer's CPU per new connection: xlb's program time through `path` against HAProxy's
/// process time, keep-alive off, both from the same run.
fn cpu_versus_haproxy(rows: &[Row], path: &str) -> Option<(f64, f64)> {
    let row = rows.iter().find(|row| row.path == path && !row.keepalive)?;
    let haproxy = peer(rows, "haproxy", row)?;
    Some((
        per_request(row.cpu.xlb_ns, row)?,
        per_request(haproxy.cpu.haproxy_ns, haproxy)?,
    ))
}

fn cpu_table(rows: &[Row]) -> String {
    let mut text = "\nbalancer CPU per request (keep-alive off: per new connection): the xlb and \
                    decap programs' run time (kernel BPF statistics), HAProxy's user+system \
                    time (/proc)\n"
        .to_owned();
    let _ = writeln!(
        text,
        "  {:<9} {:<10} {:>11} {:>12} {:>11} {:>13} {:>15}",
        "path",
        "keep-alive",
        "xlb ns/req",
        "xlb pkt/req",
        "xlb ns/pkt",
        "decap ns/req",
        "haproxy ns/req"
    );
    let show = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.0}"));
    for row in rows {
        let cpu = &row.cpu;
        let per_packet = (cpu.xlb_packets > 0).then(|| cpu.xlb_ns as f64 / cpu.xlb_packets as f64);
        let packets =
            per_request(cpu.xlb_packets, row).map_or("-".to_owned(), |v| format!("{v:.1}"));
        let _ = writeln!(
            text,
            "  {:<9} {:<10} {:>11} {:>12} {:>11} {:>13} {:>15}",
            row.path,
            on_off(row.keepalive),
            show(per_request(cpu.xlb_ns, row)),
            packets,
            show(per_packet),
            show(per_request(cpu.decap_ns, row)),
            show(per_request(cpu.haproxy_ns, row)),
        );
    }
    for path in ["xlb dsr", "xlb ipip"] {
        if let Some((xlb, haproxy)) = cpu_versus_haproxy(rows, path) {
            let _ = writeln!(
                text,
                "  {path}: {xlb:.0} ns of balancer CPU per new connection, HAProxy {haproxy:.0} \
                 ns: 1/{:.0} (target at most 1/{:.0}: {})",
                haproxy / xlb,
                1.0 / CPU_TARGET,
                if xlb <= haproxy * CPU_TARGET {
                    "met"
                } else {
                    "MISSED"
                }
            );
        }
    }
    text
}

/// Writes HAProxy's config and starts it in the foreground in `lb`; returns its pid.
fn start_haproxy(site: &mut Site, lb: &Netns, backends: &[Host]) -> anyhow::Result<u32> {
    let dir = site.dir.display().to_string();
    let mut servers = String::new();
    for (host, weight) in backends.iter().zip(WEIGHTS) {
        let _ = writeln!(
            servers,
            "    server {} {}:{HTTP_PORT} weight {weight}",
            host.name, host.address
        );
    }
    let config = format!(
        "# HAProxy as the layer-4 equivalent of xlb's VIPs, written by xlb-bench-e2e.\n\
         global\n\
         \x20   maxconn {HAPROXY_MAXCONN}\n\
         \x20   pidfile {dir}/haproxy.pid\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 2s\n\
         \x20   timeout client 30s\n\
         \x20   timeout server 30s\n\
         frontend vip\n\
         \x20   bind {HAPROXY_VIP}:{HTTP_PORT}\n\
         \x20   default_backend web\n\
         backend web\n\
         \x20   balance roundrobin\n\
         {servers}"
    );
    let config_path = site.dir.join("haproxy.cfg");
    std::fs::write(&config_path, config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let log_path = site.dir.join("haproxy.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = lb.command("haproxy");
    // -db: in the foreground, one process, stopped by its pid.
    command
        .arg("-db")
        .arg("-f")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    site.spawn(command)
        .context("starting haproxy (is it installed? `cargo xtask setup` installs it)")
}

/// Waits until one HTTP request to `path` from `client` is answered by an nginx.
fn wait_for_answer(site: &Site, client: &Netns, path: &Path4, haproxy: u32) -> anyhow::Result<()> {
    let address = SocketAddr::new(path.address, HTTP_PORT);
    let deadline = Instant::now() + READY;
    loop {
        let answer = client.run(|| get(address))?;
        let error = match answer {
            Ok(body) if body.starts_with('b') => return Ok(()),
            Ok(body) => format!("answered {body:?}"),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() >= deadline || exited(haproxy) {
            let log = std::fs::read_to_string(site.dir.join("haproxy.log")).unwrap_or_default();
            bail!(
                "{} ({address}) does not answer within {READY:?}: {error}; haproxy's log:\n{log}",
                path.name
            );
        }
        std::thread::sleep(POLL);
    }
}

/// One `GET /` to `address` on a new connection: the body, trimmed.
fn get(address: SocketAddr) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok(body.trim().to_owned())
}

/// `wrk` against `path` from `client`, keep-alive on or off.
fn wrk(client: &Netns, path: &Path4, keepalive: bool) -> anyhow::Result<Row> {
    let url = lab::url(path.address);
    let mut args = vec![
        format!("-t{THREADS}"),
        format!("-c{CONNECTIONS}"),
        format!("-d{SECONDS}s"),
        "--timeout".into(),
        "2s".into(),
        "--latency".into(),
    ];
    if !keepalive {
        args.extend(["-H".into(), "Connection: close".into()]);
    }
    args.push(url);
    let mut command = client.command("wrk");
    command.args(&args).stdin(Stdio::null());
    lab_site::die_with_parent(&mut command, libc::SIGKILL);
    let out = command
        .output()
        .context("running wrk (is it installed? `cargo xtask setup` installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let quoted: Vec<String> = args
        .iter()
        .map(|arg| {
            if arg.contains(' ') {
                format!("'{arg}'")
            } else {
                arg.clone()
            }
        })
        .collect();
    let described = format!("wrk {}", quoted.join(" "));
    ensure!(
        out.status.success(),
        "`{described}` in {} failed ({}): {}{}",
        client.name,
        out.status,
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&text, path, keepalive, described)
        .with_context(|| format!("reading wrk's output:\n{text}"))
}

/// Requests, requests/s, p50 and p99 and the errors from wrk's `--latency` output.
fn parse_wrk(text: &str, path: &Path4, keepalive: bool, command: String) -> anyhow::Result<Row> {
    let mut requests = None;
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    let mut errors = Vec::new();
    for line in text.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["50%", value] => p50 = Some(millis(value)?),
            ["99%", value] => p99 = Some(millis(value)?),
            ["Requests/sec:", value] => rps = Some(value.parse::<f64>()?),
            [count, "requests", "in", ..] => requests = Some(count.parse::<u64>()?),
            _ if line.starts_with("Socket errors:") || line.starts_with("Non-2xx") => {
                errors.push(line.to_owned());
            }
            _ => {}
        }
    }
    let requests = requests.context("no `N requests in` line")?;
    Ok(Row {
        path: path.name,
        address: path.address,
        xlb: path.xlb,
        keepalive,
        cpu: Cpu::default(),
        requests,
        requests_per_second: rps.context("no Requests/sec line")?,
        // wrk prints no distribution when nothing was answered.
        latency_p50_ms: p50.unwrap_or(f64::NAN),
        latency_p99_ms: p99.unwrap_or(f64::NAN),
        errors,
        command,
    })
}

/// A wrk duration (`812.00us`, `1.23ms`, `2.00s`, `1.00m`) in milliseconds.
fn millis(value: &str) -> anyhow::Result<f64> {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {value:?}"))?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("bad number {value:?}"))?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => bail!("unknown unit in {value:?}"),
    };
    Ok(number * scale)
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// The row of `path` with the same keep-alive setting as `row`.
fn peer<'a>(rows: &'a [Row], path: &str, row: &Row) -> Option<&'a Row> {
    rows.iter()
        .find(|other| other.path == path && other.keepalive == row.keepalive)
}

/// `a / b`, None when it means nothing.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && b > 0.0).then(|| a / b)
}

/// The ratios of `row` to `base`: requests/s, p50 and p99 (for latency, below 1 is better).
fn ratios(row: &Row, base: Option<&Row>) -> serde_json::Value {
    match base {
        Some(base) => json!({
            "requests_per_second": ratio(row.requests_per_second, base.requests_per_second),
            "latency_p50": ratio(row.latency_p50_ms, base.latency_p50_ms),
            "latency_p99": ratio(row.latency_p99_ms, base.latency_p99_ms),
        }),
        None => serde_json::Value::Null,
    }
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

fn report(rows: &[Row]) -> serde_json::Value {
    let json_rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let (haproxy, direct, forwarded) = if row.xlb {
                (
                    peer(rows, "haproxy", row),
                    peer(rows, "direct", row),
                    peer(rows, "forwarded", row),
                )
            } else {
                (None, None, None)
            };
            let cpu = &row.cpu;
            json!({
                "path": row.path,
                "address": SocketAddr::new(row.address, HTTP_PORT).to_string(),
                "keepalive": row.keepalive,
                "requests": row.requests,
                "requests_per_second": row.requests_per_second,
                "new_connections_per_second": (!row.keepalive).then_some(row.requests_per_second),
                "latency_p50_ms": finite(row.latency_p50_ms),
                "latency_p99_ms": finite(row.latency_p99_ms),
                "xlb_over_haproxy": ratios(row, haproxy),
                "xlb_over_direct": ratios(row, direct),
                "xlb_over_forwarded": ratios(row, forwarded),
                "cpu": {
                    "xlb_program_ns": cpu.xlb_ns,
                    "xlb_program_packets": cpu.xlb_packets,
                    "xlb_program_ns_per_request": per_request(cpu.xlb_ns, row),
                    "xlb_program_ns_per_packet": (cpu.xlb_packets > 0)
                        .then(|| cpu.xlb_ns as f64 / cpu.xlb_packets as f64),
                    "decap_programs_ns_per_request": per_request(cpu.decap_ns, row),
                    "decap_programs_packets": cpu.decap_packets,
                    "haproxy_cpu_ns_per_request": per_request(cpu.haproxy_ns, row),
                },
                "errors": row.errors,
                "command": row.command,
            })
        })
        .collect();
    let cpu_report: Vec<serde_json::Value> = ["xlb dsr", "xlb ipip"]
        .into_iter()
        .map(|path| {
            let ratio = cpu_versus_haproxy(rows, path);
            json!({
                "path": path,
                "xlb_program_ns": ratio.map(|(xlb, _)| xlb),
                "haproxy_process_ns": ratio.map(|(_, haproxy)| haproxy),
                "xlb_over_haproxy": ratio.map(|(xlb, haproxy)| xlb / haproxy),
                "target_at_most": CPU_TARGET,
                "target_met": ratio.map(|(xlb, haproxy)| xlb <= haproxy * CPU_TARGET),
            })
        })
        .collect();
    json!({
        "tool": "wrk",
        "threads": THREADS,
        "connections": CONNECTIONS,
        "seconds": SECONDS,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "backends": WEIGHTS.len(),
        "weights": WEIGHTS,
        "haproxy": { "mode": "tcp", "balance": "roundrobin", "maxconn": HAPROXY_MAXCONN },
        "direct": "the client to one backend's nginx, no balancer",
        "forwarded": "the client to the direct path's nginx, routed through the lb namespace's \
                      kernel forwarding (xlb passes it as not_vip)",
        "rows": json_rows,
        "balancer_cpu_per_new_connection": cpu_report,
    })
}

fn table(rows: &[Row]) -> String {
    let mut text = format!(
        "\nshort HTTP requests from the client, wrk -t{THREADS} -c{CONNECTIONS} -d{SECONDS}s \
         (keep-alive off: req/s = new connections/s)\n"
    );
    let _ = writeln!(
        text,
        "  {:<9} {:<10} {:>10} {:>9} {:>9} {:>13} {:>12} {:>13}",
        "path",
        "keep-alive",
        "req/s",
        "p50 ms",
        "p99 ms",
        "vs haproxy",
        "vs direct",
        "vs forwarded"
    );
    let show = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.2}x"));
    for row in rows {
        let versus = |path: &str| {
            row.xlb
                .then(|| peer(rows, path, row))
                .flatten()
                .and_then(|b| ratio(row.requests_per_second, b.requests_per_second))
        };
        let _ = writeln!(
            text,
            "  {:<9} {:<10} {:>10.0} {:>9.2} {:>9.2} {:>13} {:>12} {:>13}",
            row.path,
            on_off(row.keepalive),
            row.requests_per_second,
            row.latency_p50_ms,
            row.latency_p99_ms,
            show(versus("haproxy")),
            show(versus("direct")),
            show(versus("forwarded"))
        );
    }
    text.push_str(
        "  (vs: xlb's requests/s over HAProxy's, the direct path's and the forwarded path's, \
         same keep-alive)\n",
    );
    text
}
