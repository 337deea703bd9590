//! The lab behind README's first command (`cargo xtask lab`, the `xlb-lab` binary): a client,
//! the load balancer and three backends in network namespaces on a bridge; nginx in every
//! backend answering with its name; the real `xlb run --config` daemon in the lb namespace
//! with four VIPs (IPv4 and IPv6, `dsr` and `ipip`, backends weighted 1:1:2); a bounded burst
//! of HTTP requests from the client with curl, one new connection each; per VIP, how many
//! requests each backend answered beside the share its weight gives it; and `xlb stats`.
//! Then everything is removed (also on error and on Ctrl-C), unless the lab is kept
//! ([`Options::keep`]): see [`crate::lab_site`] for both.
//!
//! ```text
//!   client (eth0: 198.18.0.1, 2001:db8::1)  ──┐
//!   lb     (eth0: 198.18.0.2, 2001:db8::2)  ──┼── br0 in sw; XDP bare_pass on p-lb, so
//!   b{i}   (eth0: 198.18.0.1{i}, ::1{i})    ──┘   native XDP_TX from the lb is delivered
//! ```
//!
//! Every backend holds the four VIPs on its loopback and answers the client directly; on its
//! eth0 the `xlb_decap` program strips the tunnels of the `ipip` VIPs. As in
//! [`crate::topology`], the links behind the lb carry an MTU of [`FABRIC_MTU`] and xlb's
//! config says so, so a full-size tunnelled packet is never dropped; the client's link stays
//! at 1500.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use aya::{Ebpf, programs::links::FdLink};
use lb_common::DECAP_PROGRAM_NAME;
use lb_userspace::{
    attach::{self, AttachMode},
    decap, object,
};

use crate::{
    daemon_lab::{wait_ready, xlb_verb},
    lab_site::{self, Site},
    netns::{Ipv6, Netns},
    network::{Balancers, Built, CLIENT_V4, CLIENT_V6, Host, LB_V4, LB_V6, Network},
    topology::{FABRIC_MTU, VIP_V4, VIP_V6},
};

/// The backends' weights, in every VIP: b2 should answer half of the requests.
pub const WEIGHTS: [u32; 3] = [1, 1, 2];
/// HTTP requests per VIP unless told otherwise, and the most allowed.
pub const DEFAULT_REQUESTS: u32 = 300;
pub const MAX_REQUESTS: u32 = 2_000;
/// The `ipip` VIPs (the `dsr` ones are [`VIP_V4`] and [`VIP_V6`]).
pub const IPIP_VIP_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 20);
pub const IPIP_VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x20);
/// The port of every VIP and of every backend's nginx.
pub const HTTP_PORT: u16 = 80;
/// Where the daemon serves metrics, on the lb namespace's loopback.
const METRICS_ADDRESS: &str = "127.0.0.1:9100";
/// curl processes running at once during a burst.
const CONCURRENCY: usize = 8;
/// What each curl may take (`--max-time`), in seconds.
const CURL_MAX_TIME: &str = "2";
/// How long nginx and the daemon may take to be ready.
const NGINX_READY: Duration = Duration::from_secs(10);
const DAEMON_READY: Duration = Duration::from_secs(15);

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// HTTP requests per VIP (1 to [`MAX_REQUESTS`]).
    pub requests: u32,
    /// Leave the lab running under fixed `xlblab-` names instead of removing it.
    pub keep: bool,
}

/// One VIP of the lab.
#[derive(Clone, Copy, Debug)]
pub struct LabVip {
    pub name: &'static str,
    pub address: IpAddr,
    pub forwarding: &'static str,
}

/// The four VIPs: IPv4 and IPv6, `dsr` and `ipip`, all TCP port 80.
pub const VIPS: [LabVip; 4] = [
    LabVip {
        name: "web-v4",
        address: IpAddr::V4(VIP_V4),
        forwarding: "dsr",
    },
    LabVip {
        name: "web-v6",
        address: IpAddr::V6(VIP_V6),
        forwarding: "dsr",
    },
    LabVip {
        name: "tunnel-v4",
        address: IpAddr::V4(IPIP_VIP_V4),
        forwarding: "ipip",
    },
    LabVip {
        name: "tunnel-v6",
        address: IpAddr::V6(IPIP_VIP_V6),
        forwarding: "ipip",
    },
];

/// How one backend did in one VIP's burst.
#[derive(Clone, Debug)]
pub struct BackendShare {
    pub name: String,
    /// Its address in this VIP's config (the VIP's family).
    pub address: IpAddr,
    pub weight: u32,
    pub answered: u64,
    /// The share of requests its weight gives it, 0 to 1.
    pub expected: f64,
}

/// One VIP's burst.
#[derive(Clone, Debug)]
pub struct VipBurst {
    pub vip: LabVip,
    pub requests: u32,
    /// Requests answered by a backend's nginx.
    pub answered: u64,
    pub backends: Vec<BackendShare>,
    /// The first few failures, as curl reported them.
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

/// What a run of the lab found.
#[derive(Clone, Debug)]
pub struct Report {
    pub bursts: Vec<VipBurst>,
    /// What `xlb stats` printed after the bursts.
    pub stats: String,
    pub namespaces: Vec<String>,
    pub pin_path: PathBuf,
    pub dir: PathBuf,
    pub kept: bool,
}

impl Report {
    /// The report as JSON (`xlb-lab --report FILE`).
    pub fn to_json(&self) -> serde_json::Value {
        let bursts: Vec<serde_json::Value> = self
            .bursts
            .iter()
            .map(|burst| {
                let backends: Vec<serde_json::Value> = burst
                    .backends
                    .iter()
                    .map(|b| {
                        serde_json::json!({
                            "name": b.name,
                            "address": b.address.to_string(),
                            "weight": b.weight,
                            "answered": b.answered,
                            "expected_share": b.expected,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "vip": burst.vip.name,
                    "address": burst.vip.address.to_string(),
                    "forwarding": burst.vip.forwarding,
                    "requests": burst.requests,
                    "answered": burst.answered,
                    "errors": burst.errors,
                    "seconds": burst.elapsed.as_secs_f64(),
                    "backends": backends,
                })
            })
            .collect();
        serde_json::json!({
            "vips": bursts,
            "stats": self.stats,
            "namespaces": self.namespaces,
            "pin_path": self.pin_path.display().to_string(),
            "dir": self.dir.display().to_string(),
            "kept": self.kept,
        })
    }
}

/// The namespaces and links of the lab.
pub type Topology = Built;

/// Runs the lab with the `xlb` binary `xlb`; prints what it does and finds as it goes.
pub fn run(xlb: &Path, options: &Options) -> anyhow::Result<Report> {
    ensure!(
        (1..=MAX_REQUESTS).contains(&options.requests),
        "{} requests per VIP: use 1 to {MAX_REQUESTS}",
        options.requests
    );
    let xlb = std::fs::canonicalize(xlb)
        .with_context(|| format!("the xlb binary {} is not there", xlb.display()))?;
    let start = Instant::now();
    let mut site = if options.keep {
        Site::kept(&xlb)?
    } else {
        Site::removable()?
    };
    let result = run_on(&mut site, &xlb, options);
    if options.keep {
        if let Err(err) = result {
            lab_site::exit_if_interrupted();
            eprintln!("lab: failed ({err:#}); removing the kept lab built so far");
            drop(site);
            lab_site::down(Some(&xlb))?;
            return Err(err);
        }
        return result.map(|(report, _)| report);
    }
    let (report, teardown) = result?;
    drop(site);
    let left: Vec<&String> = report
        .namespaces
        .iter()
        .filter(|name| Path::new("/run/netns").join(name).exists())
        .collect();
    ensure!(left.is_empty(), "namespaces left after the lab: {left:?}");
    ensure!(
        !report.pin_path.exists(),
        "pins left after the lab under {}",
        report.pin_path.display()
    );
    println!(
        "lab: removed {} namespaces with their links, the pins and every process in {:.1} s; \
         the whole lab took {:.1} s",
        report.namespaces.len(),
        teardown.elapsed().as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    let failed = failures(&report);
    ensure!(failed.is_empty(), "requests failed: {}", failed.join("; "));
    Ok(report)
}

/// `VIP: N of M requests unanswered` for every VIP that lost requests.
fn failures(report: &Report) -> Vec<String> {
    report
        .bursts
        .iter()
        .filter(|burst| burst.answered < u64::from(burst.requests))
        .map(|burst| {
            format!(
                "{}: {} of {} requests unanswered",
                burst.vip.name,
                u64::from(burst.requests) - burst.answered,
                burst.requests
            )
        })
        .collect()
}

/// A lab up and serving: the topology, nginx in every backend, the daemon in the lb namespace.
pub struct Running {
    pub topology: Topology,
    /// The pids of the backends' nginx, in the order of `topology.backends`.
    pub servers: Vec<u32>,
    /// The pid of `xlb run --config`.
    pub daemon: u32,
    /// Where the daemon pinned its program, link and maps.
    pub pin_path: PathBuf,
    /// The pinned XDP links of the backends' decap programs (`decap-b{i}`) and the bridge's.
    pub links: PathBuf,
}

/// Builds the lab on `site` and starts its servers: the namespaces and links, the XDP
/// programs of the backends and the bridge, nginx in every backend and `xlb run --config` in
/// the lb namespace, serving the four [`VIPS`]. Prints each step as it goes.
pub fn start(site: &mut Site, xlb: &Path) -> anyhow::Result<Running> {
    let step = Instant::now();
    let topology = build(site)?;
    let links = attach_programs(site, &topology)?;
    println!(
        "lab: namespaces {} on a bridge; xlb_decap on every backend's eth0 ({:.1} s)",
        topology.namespaces().join(", "),
        step.elapsed().as_secs_f64()
    );

    let step = Instant::now();
    let mut servers = Vec::new();
    for host in &topology.backends {
        servers.push(start_nginx(site, host)?);
    }
    for (host, &pid) in topology.backends.iter().zip(&servers) {
        wait_for_nginx(site, host, pid)?;
    }
    println!(
        "lab: nginx in {} answers its name on every VIP ({:.1} s)",
        names(&topology.backends),
        step.elapsed().as_secs_f64()
    );

    let step = Instant::now();
    let pin_path = site.pin_dir("xlb")?;
    // xlb creates the directory itself; the site removes it with the lab.
    std::fs::remove_dir(&pin_path)
        .with_context(|| format!("removing the empty {}", pin_path.display()))?;
    let config_path = site.dir.join("xlb.toml");
    std::fs::write(&config_path, config_text(&pin_path, &topology.backends))
        .with_context(|| format!("writing {}", config_path.display()))?;
    let daemon = start_daemon(site, topology.lb(), xlb, &config_path, &pin_path)?;
    println!(
        "lab: xlb run --config {} in {} (pid {daemon}), pinned under {} ({:.1} s)",
        config_path.display(),
        topology.lb().name,
        pin_path.display(),
        step.elapsed().as_secs_f64()
    );
    Ok(Running {
        topology,
        servers,
        daemon,
        pin_path,
        links,
    })
}

/// Takes a removable lab's servers down the operator's way: stops the daemon (forwarding
/// continues on the pins), `xlb down` (detach, remove the pins), then the backends' nginx.
/// Returns what `xlb down` printed. The namespaces go with the site.
pub fn stop(site: &mut Site, xlb: &Path, running: &Running) -> anyhow::Result<String> {
    let status = site.stop(running.daemon)?;
    ensure!(
        status.success(),
        "xlb run exited with {status} when stopped; its log:\n{}",
        daemon_log(&site.dir)
    );
    let down = xlb_verb(running.topology.lb(), xlb, &running.pin_path, &["down"])?.ok()?;
    for &pid in &running.servers {
        site.stop_nginx(pid)?;
    }
    Ok(down.stdout)
}

/// Builds the lab and runs the bursts; a removable lab is then taken down as far as the site
/// leaves to its owner (daemon, pins, servers), and the instant that began is returned too.
fn run_on(site: &mut Site, xlb: &Path, options: &Options) -> anyhow::Result<(Report, Instant)> {
    let running = start(site, xlb)?;
    let (topology, pin_path) = (&running.topology, &running.pin_path);

    let mut bursts = Vec::new();
    for vip in VIPS {
        let burst = burst(topology, vip, options.requests);
        print!("{}", render_burst(&burst));
        bursts.push(burst);
    }
    let stats = xlb_verb(topology.lb(), xlb, pin_path, &["stats"])?
        .ok()?
        .stdout;
    println!(
        "\n$ xlb stats --pin-path {}\n{}",
        pin_path.display(),
        stats.trim_end()
    );

    let report = Report {
        bursts,
        stats,
        namespaces: topology.namespaces(),
        pin_path: pin_path.clone(),
        dir: site.dir.clone(),
        kept: site.is_kept(),
    };
    if site.is_kept() {
        let failed = failures(&report);
        if !failed.is_empty() {
            println!(
                "\nlab: requests failed ({}); the lab is kept to look into it",
                failed.join("; ")
            );
        }
        print!("{}", poke_at(topology, xlb, pin_path, &site.dir));
        return Ok((report, Instant::now()));
    }
    let teardown = Instant::now();
    let down = stop(site, xlb, &running)?;
    print!("\n$ xlb down --pin-path {}\n{}", pin_path.display(), down);
    Ok((report, teardown))
}

/// Creates the namespaces, links and addresses of the diagram in the module doc.
fn build(site: &mut Site) -> anyhow::Result<Topology> {
    let vips = VIPS.map(|vip| vip.address);
    Network {
        ipv6: Ipv6::NoDad,
        balancers: Balancers::One,
        backends: WEIGHTS.len(),
        vips: &vips,
        // Tunnelled frames are larger than the client's (see topology::FABRIC_MTU): raise the
        // MTU of every link they cross. The client's link stays at 1500.
        fabric_mtu: Some(FABRIC_MTU),
    }
    .build(|name| site.netns(name))
}

/// Attaches `xlb_decap` to every backend's eth0 and `bare_pass` to the bridge's port of the
/// lb (native XDP_TX on a veth reaches the peer only if the peer runs an XDP program). Their
/// links are pinned in the lab's `links` pin directory, so they stay attached without this
/// process (a kept lab) and go with the directory, which is returned.
fn attach_programs(site: &mut Site, topology: &Topology) -> anyhow::Result<PathBuf> {
    let links = site.pin_dir("links")?;
    for host in &topology.backends {
        // As `xlb decap attach eth0 --address V4 --address V6` does on a real backend.
        let root = links.join(format!("decap-{}", host.name));
        let addresses = host.addresses();
        host.ns
            .run(|| decap::attach("eth0", &addresses, AttachMode::Native, &root))?
            .with_context(|| format!("attaching {DECAP_PROGRAM_NAME} in {}", host.ns.name))?;
    }
    let pass = object::load(object::BASELINE_OBJECT, "bare_pass")?;
    attach_pinned(
        pass,
        "bare_pass",
        &topology.switch,
        "p-lb",
        &links.join("pass-p-lb"),
    )?;
    Ok(links)
}

/// Attaches program `name` of `ebpf` natively to `dev` in `ns` and pins its link at `pin`.
fn attach_pinned(
    mut ebpf: Ebpf,
    name: &str,
    ns: &Netns,
    dev: &str,
    pin: &Path,
) -> anyhow::Result<()> {
    let program = object::xdp_program(&mut ebpf, name)?;
    let attached = ns
        .run(|| attach::attach(program, dev, AttachMode::Native))?
        .with_context(|| format!("attaching {name} to {dev} in {}", ns.name))?;
    let link = FdLink::try_from(program.take_link(attached.link)?)
        .context("the kernel attached the program without a bpf_link (kernel older than 5.9?)")?;
    link.pin(pin)
        .with_context(|| format!("pinning the link of {name} at {}", pin.display()))?;
    // Dropping the object now is fine: the pinned link holds the program.
    Ok(())
}

/// Writes `host`'s nginx config and starts nginx; returns the pid to stop.
pub fn start_nginx(site: &mut Site, host: &Host) -> anyhow::Result<u32> {
    let prefix = site.dir.join(&host.name);
    std::fs::create_dir_all(&prefix).with_context(|| format!("creating {}", prefix.display()))?;
    let conf = site.dir.join(format!("{}.conf", host.name));
    std::fs::write(&conf, nginx_config(host, &site.dir, &prefix))
        .with_context(|| format!("writing {}", conf.display()))?;
    let error_log = error_log(&site.dir, host);
    let (conf, prefix, error_log) = (
        conf.display().to_string(),
        prefix.display().to_string(),
        error_log.display().to_string(),
    );
    site.spawn_nginx(
        &host.ns,
        &["-c", &conf, "-p", &format!("{prefix}/"), "-e", &error_log],
    )
}

fn error_log(dir: &Path, host: &Host) -> PathBuf {
    dir.join(format!("{}-error.log", host.name))
}

/// nginx for `host`: one master and one worker, answering every request with the host's
/// name, on the four VIPs and (for xlb's health checks) on its own addresses.
fn nginx_config(host: &Host, dir: &Path, prefix: &Path) -> String {
    let dir = dir.display();
    let prefix = prefix.display();
    let name = &host.name;
    let mut listen = String::new();
    for address in VIPS.iter().map(|vip| vip.address).chain(host.addresses()) {
        let _ = writeln!(
            listen,
            "        listen {};",
            SocketAddr::new(address, HTTP_PORT)
        );
    }
    format!(
        "# nginx of backend {name} in the xlb lab: its name for every request.\n\
         daemon off;\n\
         worker_processes 1;\n\
         pid {dir}/{name}.pid;\n\
         error_log {dir}/{name}-error.log warn;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n\
         \x20   access_log {dir}/{name}-access.log;\n\
         \x20   client_body_temp_path {prefix}/body;\n\
         \x20   proxy_temp_path {prefix}/proxy;\n\
         \x20   fastcgi_temp_path {prefix}/fastcgi;\n\
         \x20   uwsgi_temp_path {prefix}/uwsgi;\n\
         \x20   scgi_temp_path {prefix}/scgi;\n\
         \x20   server {{\n\
         {listen}\
         \x20       location / {{\n\
         \x20           default_type text/plain;\n\
         \x20           return 200 \"{name}\\n\";\n\
         \x20       }}\n\
         \x20       # The drills' long downloads (files they write there, sent at 300 KB/s);\n\
         \x20       # the header names the backend that serves one.\n\
         \x20       location /files/ {{\n\
         \x20           alias {dir}/files/;\n\
         \x20           add_header X-Backend {name} always;\n\
         \x20           limit_rate 300k;\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// Waits until `host`'s nginx accepts connections on its own IPv4 address.
pub fn wait_for_nginx(site: &Site, host: &Host, pid: u32) -> anyhow::Result<()> {
    let address = SocketAddr::new(IpAddr::V4(host.address), HTTP_PORT);
    let answers = || {
        let connect = || TcpStream::connect_timeout(&address, Duration::from_millis(200));
        host.ns
            .run(connect)
            .is_ok_and(|connected| connected.is_ok())
    };
    wait_ready(pid, NGINX_READY, answers, || {
        let log = std::fs::read_to_string(error_log(&site.dir, host)).unwrap_or_default();
        format!(
            "nginx in {} answering on {address}; its error log:\n{log}",
            host.ns.name
        )
    })
}

/// The daemon's config: the four VIPs over the three backends, weighted [`WEIGHTS`], with
/// HTTP health checks.
fn config_text(pin_path: &Path, backends: &[Host]) -> String {
    let mut text = format!(
        "# The xlb lab's config, written by `cargo xtask lab`.\n\
         [global]\n\
         interface = \"eth0\"\n\
         xdp_mode = \"native\"\n\
         pin_path = \"{}\"\n\
         metrics_address = \"{METRICS_ADDRESS}\"\n\
         # The links behind the lb carry {FABRIC_MTU} bytes: room for the tunnel headers.\n\
         mtu = {FABRIC_MTU}\n\
         ipip_source_v4 = \"{LB_V4}\"\n\
         ipip_source_v6 = \"{LB_V6}\"\n",
        pin_path.display()
    );
    for vip in VIPS {
        let _ = write!(
            text,
            "\n[[vip]]\nname = \"{}\"\naddress = \"{}\"\nport = {HTTP_PORT}\n\
             protocol = \"tcp\"\nforwarding = \"{}\"\n",
            vip.name, vip.address, vip.forwarding
        );
        for (host, weight) in backends.iter().zip(WEIGHTS) {
            let _ = write!(
                text,
                "\n  [[vip.backend]]\n  address = \"{}\"\n  weight = {weight}\n  mac = \"{}\"\n\
                 \x20   [vip.backend.health]\n    check = \"http\"\n    path = \"/\"\n\
                 \x20   interval_ms = 1000\n    timeout_ms = 500\n",
                host.address_for(vip.address),
                host.mac
            );
        }
    }
    text
}

/// Starts `xlb run --config` in `lb` and waits until it has pinned its link.
fn start_daemon(
    site: &mut Site,
    lb: &Netns,
    xlb: &Path,
    config_path: &Path,
    pin_path: &Path,
) -> anyhow::Result<u32> {
    let log_path = site.dir.join("xlb.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = lb.command(xlb);
    command
        .args(["run", "--config"])
        .arg(config_path)
        // Plain log lines in the log file.
        .env("NO_COLOR", "1")
        .stdout(log.try_clone()?)
        .stderr(log);
    let pid = site.spawn(command)?;
    let attached = || pin_path.join("link").exists();
    wait_ready(pid, DAEMON_READY, attached, || {
        format!("xlb run attaching; its log:\n{}", daemon_log(&site.dir))
    })?;
    Ok(pid)
}

pub fn daemon_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("xlb.log")).unwrap_or_default()
}

/// `requests` HTTP requests to `vip` from the client, [`CONCURRENCY`] curl processes at a
/// time, each one a new connection.
fn burst(topology: &Topology, vip: LabVip, requests: u32) -> VipBurst {
    let url = url(vip.address);
    let names: Vec<&str> = topology.backends.iter().map(|h| h.name.as_str()).collect();
    let next = AtomicU32::new(0);
    let tally = Mutex::new((BTreeMap::<String, u64>::new(), Vec::<String>::new()));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CONCURRENCY {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let answer = curl(&topology.client, &url, &["-g", "--max-time", CURL_MAX_TIME]);
                    let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                    match answer {
                        Ok(name) if names.contains(&name.as_str()) => {
                            *tally.0.entry(name).or_default() += 1;
                        }
                        Ok(other) => tally.1.push(format!("unexpected answer {other:?}")),
                        Err(err) => tally.1.push(format!("{err:#}")),
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let (counts, mut errors) = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    let failed = errors.len();
    errors.truncate(5);
    if failed > errors.len() {
        errors.push(format!("... {} failures in all", failed));
    }
    let total: u32 = WEIGHTS.iter().sum();
    let backends = topology
        .backends
        .iter()
        .zip(WEIGHTS)
        .map(|(host, weight)| BackendShare {
            name: host.name.clone(),
            address: host.address_for(vip.address),
            weight,
            answered: counts.get(&host.name).copied().unwrap_or(0),
            expected: f64::from(weight) / f64::from(total),
        })
        .collect();
    VipBurst {
        vip,
        requests,
        answered: counts.values().sum(),
        backends,
        errors,
        elapsed,
    }
}

/// One `curl -sS OPTIONS URL` from `client`: the body, trimmed.
pub fn curl(client: &Netns, url: &str, options: &[&str]) -> anyhow::Result<String> {
    let mut command = client.command("curl");
    // -S: say why a request failed.
    command
        .arg("-sS")
        .args(options)
        .arg(url)
        .stdin(Stdio::null());
    lab_site::die_with_parent(&mut command, libc::SIGKILL);
    let out = command
        .output()
        .context("running curl (is it installed? `cargo xtask setup` installs it)")?;
    if !out.status.success() {
        bail!(
            "curl {url}: {} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A burst as a table: per backend, requests answered and their share beside the expected.
pub fn render_burst(burst: &VipBurst) -> String {
    let vip = burst.vip;
    let family = if vip.address.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    };
    let mut text = format!(
        "\n{} {} ({}, {family}): {} of {} requests answered in {:.1} s\n",
        vip.name,
        SocketAddr::new(vip.address, HTTP_PORT),
        vip.forwarding,
        burst.answered,
        burst.requests,
        burst.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        text,
        "  {:<8} {:<16} {:>6} {:>9} {:>7} {:>9}",
        "backend", "address", "weight", "answered", "share", "expected"
    );
    for b in &burst.backends {
        let share = if burst.answered == 0 {
            0.0
        } else {
            b.answered as f64 / burst.answered as f64
        };
        let _ = writeln!(
            text,
            "  {:<8} {:<16} {:>6} {:>9} {:>6.1}% {:>8.1}%",
            b.name,
            b.address.to_string(),
            b.weight,
            b.answered,
            share * 100.0,
            b.expected * 100.0
        );
    }
    for error in &burst.errors {
        let _ = writeln!(text, "  failed: {error}");
    }
    text
}

/// What to type to poke at a kept lab.
fn poke_at(topology: &Topology, xlb: &Path, pin_path: &Path, dir: &Path) -> String {
    let xlb = xlb.display();
    let pins = pin_path.display();
    let client = &topology.client.name;
    let mut text = format!(
        "\nlab: kept. It runs until `cargo xtask lab --down`: namespaces {}; nginx and the \
         daemon's config and logs in {}.\nPoke at it:\n\
         \x20 {xlb} stats --pin-path {pins}\n\
         \x20 {xlb} status --pin-path {pins}\n\
         \x20 {xlb} explain {}:40000 {}:80 tcp --pin-path {pins}\n\
         \x20 {xlb} explain '[{}]:40000' '[{}]:80' tcp --pin-path {pins}\n\
         \x20 bpftool map dump pinned {pins}/XLB_REASONS\n",
        topology.namespaces().join(", "),
        dir.display(),
        CLIENT_V4,
        VIPS[0].address,
        CLIENT_V6,
        VIPS[3].address,
    );
    for vip in VIPS {
        let _ = writeln!(
            text,
            "  ip netns exec {client} curl -g '{}'",
            url(vip.address)
        );
    }
    let _ = write!(
        text,
        "  ip netns exec {} curl -s http://{METRICS_ADDRESS}/metrics | grep ^xlb_backend_new_flows\n\
         \x20 tail -f {}/xlb.log {}/b0-access.log\n\
         Remove it: cargo xtask lab --down\n",
        topology.lb().name,
        dir.display(),
        dir.display()
    );
    text
}

/// `http://ADDRESS/`, the brackets around an IPv6 address included.
pub fn url(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => format!("http://{v4}/"),
        IpAddr::V6(v6) => format!("http://[{v6}]/"),
    }
}

fn names(hosts: &[Host]) -> String {
    hosts
        .iter()
        .map(|host| host.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
