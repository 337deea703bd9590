//! Scale-out: several xlb nodes behind a router that spreads flows over them with ECMP, the
//! routes learnt over BGP from BIRD 2 on every node (`[bgp]` in each node's config).
//!
//! ```text
//!   client (eth0: 198.18.2.1) ── router (eth1: 198.18.2.254; eth0: 198.18.0.254, BIRD:
//!                                  │      BGP AS 65000, kernel protocol with `merge paths`,
//!                                  │      fib_multipath_hash_policy=1: L4 hashing)
//!                                  └── br0 in sw ──┬── n{i} (eth0: 198.18.0.{2+i}): xlb run
//!                                                  │   --config + BIRD (AS 65001)
//!                                                  └── b{i} (eth0: 198.18.0.{10+i}): VIP on lo
//! ```
//!
//! Every node runs the same config (so the same Maglev tables), `dsr` VIP 198.18.1.10:80 over
//! the backends weighted 1:1:2; backends answer the client directly through the router. Each
//! backend runs a TCP server that answers each connection with its name and a newline, then
//! echoes what it is sent, so one server serves "who answered?" connections and long streams.

use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use aya::Ebpf;

use crate::{
    daemon_lab::{POLL, VerbOutput, exited, log_to, wait_ready, write_atomically, xlb_verb},
    demo, echo,
    netns::{Ipv6, Lab, Netns},
    network::{Balancers, Built, Host, Network},
};

pub use crate::network::{ROUTED_CLIENT as CLIENT, ROUTER};
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
pub const VIP_PORT: u16 = 80;
/// The IPv6 VIP every node also serves (ipip to the IPv4 backends) and announces.
pub const VIP6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
/// The backends' weights: b2 should answer half of the new connections.
pub const WEIGHTS: [u32; 3] = [1, 1, 2];
pub const ROUTER_AS: u32 = 65000;
pub const NODE_AS: u32 = 65001;
/// A port nothing listens on: a node whose config checks it sees every backend down.
pub const DEAD_HEALTH_PORT: u16 = 81;
const HEALTH_INTERVAL_MS: u32 = 200;
const HEALTH_TIMEOUT_MS: u32 = 100;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const READY: Duration = Duration::from_secs(20);

/// One xlb node: its namespace, address, files and processes.
pub struct Node {
    /// `n{i}` on the switch.
    pub host: Host,
    pub pin_path: PathBuf,
    pub dir: PathBuf,
    pub xlb_pid: Option<u32>,
    pub bird_pid: Option<u32>,
}

impl Node {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("xlb.toml")
    }
    pub fn routes_file(&self) -> PathBuf {
        self.dir.join("bird-vips.conf")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("xlb.log")).unwrap_or_default()
    }
}

/// The scale-out lab; dropping it stops every process and removes every namespace and pin.
pub struct ScaleOut {
    shared: Arc<echo::Shared>,
    listeners: Vec<JoinHandle<()>>,
    _passes: Vec<Ebpf>,
    pub client: Netns,
    pub router: Netns,
    pub switch: Netns,
    pub nodes: Vec<Node>,
    pub backends: Vec<Host>,
    pub dir: PathBuf,
    pub xlb: PathBuf,
    router_bird: Option<u32>,
    lab: Lab,
}

impl ScaleOut {
    /// Builds the lab with `nodes` xlb nodes (1 to 8) and three backends; starts the backends'
    /// servers and the router's BIRD, not the nodes (see [`ScaleOut::start_node`]).
    pub fn new(label: &str, nodes: usize) -> anyhow::Result<ScaleOut> {
        ensure!((1..=8).contains(&nodes), "{nodes} nodes: use 1 to 8");
        let xlb = demo::xlb_binary()?;
        let mut lab = Lab::new(label)?;
        let net = Network {
            ipv6: Ipv6::Off,
            balancers: Balancers::BehindRouter(nodes),
            backends: WEIGHTS.len(),
            vips: &[IpAddr::V4(VIP)],
            fabric_mtu: None,
        }
        .build(|name| lab.netns(name))?;
        let passes = net.pass_xdp()?;
        let Built {
            switch,
            client,
            router,
            balancers,
            backends,
        } = net;
        let router = router.context("a router in front of the nodes")?;

        let dir = lab.temp_path("files")?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

        let mut node_list = Vec::new();
        for host in balancers {
            let pin_path = lab.pin_dir(&host.name)?;
            std::fs::remove_dir(&pin_path)?;
            let node_dir = dir.join(&host.name);
            std::fs::create_dir_all(&node_dir)?;
            node_list.push(Node {
                host,
                pin_path,
                dir: node_dir,
                xlb_pid: None,
                bird_pid: None,
            });
        }
        let shared = Arc::new(echo::Shared::default());
        let mut listeners = Vec::new();
        for backend in &backends {
            listeners.push(listen(backend, &shared)?);
        }
        let mut scale_out = ScaleOut {
            shared,
            listeners,
            _passes: passes,
            client,
            router,
            switch,
            nodes: node_list,
            backends,
            dir,
            xlb,
            router_bird: None,
            lab,
        };
        scale_out.start_router_bird()?;
        for i in 0..nodes {
            let text = scale_out.config_text(i, VIP_PORT);
            scale_out.write_config(i, &text)?;
        }
        Ok(scale_out)
    }

    fn start_router_bird(&mut self) -> anyhow::Result<()> {
        let mut conf = format!(
            "router id {ROUTER};\nprotocol device {{ scan time 1; }}\n\
             protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n\
             template bgp xlbnode {{ local {ROUTER} as {ROUTER_AS}; hold time 3; \
             keepalive time 1; connect retry time 1; error wait time 1, 2; \
             ipv4 {{ import all; export none; }}; \
             ipv6 {{ import all; export none; extended next hop on; }}; }}\n"
        );
        for node in &self.nodes {
            conf += &format!(
                "protocol bgp {} from xlbnode {{ neighbor {} as {NODE_AS}; }}\n",
                node.host.name, node.host.address
            );
        }
        let dir = self.dir.join("router");
        std::fs::create_dir_all(&dir)?;
        let pid = self.spawn_bird(&self.router.clone(), &dir, &conf)?;
        self.router_bird = Some(pid);
        Ok(())
    }

    fn spawn_bird(&mut self, ns: &Netns, dir: &std::path::Path, conf: &str) -> anyhow::Result<u32> {
        let path = dir.join("bird.conf");
        std::fs::write(&path, conf)?;
        let mut command = ns.command("bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(&path)
            .arg("-s")
            .arg(dir.join("bird.ctl"))
            .arg("-P")
            .arg(dir.join("bird.pid"));
        log_to(&mut command, &dir.join("bird.log"))?;
        self.lab.spawn(command)
    }

    /// Node `i`'s config: the same VIP and backends on every node; health checks on
    /// `health_port` (the VIP's port for a healthy node); `[bgp]` with its routes file and
    /// its BIRD's socket.
    pub fn config_text(&self, i: usize, health_port: u16) -> String {
        let node = &self.nodes[i];
        let mut text = format!(
            "[global]\ninterface = \"eth0\"\nxdp_mode = \"native\"\npin_path = \"{}\"\n\
             metrics_address = \"127.0.0.1:9100\"\nipip_source_v4 = \"{}\"\n\n[bgp]\n\
             routes_file = \"{}\"\nsocket = \"{}\"\n",
            node.pin_path.display(),
            node.host.address,
            node.routes_file().display(),
            node.socket().display()
        );
        for (name, address, forwarding) in [
            ("web", VIP.to_string(), "dsr"),
            ("web6", VIP6.to_string(), "ipip"),
        ] {
            text += &format!(
                "\n[[vip]]\nname = \"{name}\"\naddress = \"{address}\"\nport = {VIP_PORT}\n\
                 protocol = \"tcp\"\nforwarding = \"{forwarding}\"\n"
            );
            text += &self.backends_text(health_port);
        }
        text
    }

    /// The `[[vip.backend]]` tables of the lab's backends, health-checked on `health_port`.
    fn backends_text(&self, health_port: u16) -> String {
        let mut text = String::new();
        for (backend, weight) in self.backends.iter().zip(WEIGHTS) {
            text += &format!(
                "\n  [[vip.backend]]\n  address = \"{}\"\n  weight = {weight}\n  mac = \"{}\"\n\
                 \x20   [vip.backend.health]\n    check = \"tcp\"\n    port = {health_port}\n\
                 \x20   interval_ms = {HEALTH_INTERVAL_MS}\n    timeout_ms = {HEALTH_TIMEOUT_MS}\n\
                 \x20   rise = 2\n    fall = 2\n",
                backend.address, backend.mac
            );
        }
        text
    }

    pub fn write_config(&self, i: usize, text: &str) -> anyhow::Result<()> {
        write_atomically(&self.nodes[i].config_path(), text)
    }

    /// Starts node `i`: its BIRD (with an empty routes file), then `xlb run --config`; waits
    /// until the link is pinned.
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        ensure!(node.xlb_pid.is_none(), "{} already runs", node.host.name);
        if !node.routes_file().exists() {
            std::fs::write(
                node.routes_file(),
                lb_userspace::bgp::render(&BTreeSet::new(), &node.pin_path),
            )?;
        }
        let conf = format!(
            "router id {};\ninclude \"{}\";\nprotocol device {{ scan time 1; }}\n\
             protocol bgp uplink {{ local {} as {NODE_AS}; neighbor {ROUTER} as {ROUTER_AS}; \
             hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 2; \
             ipv4 {{ import none; export where proto = \"xlb_vips4\"; }}; \
             ipv6 {{ import none; export where proto = \"xlb_vips6\"; extended next hop on; }}; }}\n",
            node.host.address,
            node.routes_file().display(),
            node.host.address
        );
        let (ns, dir) = (node.host.ns.clone(), node.dir.clone());
        if self.nodes[i].bird_pid.is_none() {
            let pid = self.spawn_bird(&ns, &dir, &conf)?;
            self.nodes[i].bird_pid = Some(pid);
            // birdc needs the control socket before the daemon's first reload.
            let socket = self.nodes[i].socket();
            wait_ready(
                pid,
                READY,
                || socket.exists(),
                || {
                    format!(
                        "BIRD in {}: {}",
                        ns.name,
                        std::fs::read_to_string(dir.join("bird.log")).unwrap_or_default()
                    )
                },
            )?;
        }
        let mut command = ns.command(&self.xlb);
        command
            .args(["run", "--config"])
            .arg(self.nodes[i].config_path())
            .env("NO_COLOR", "1");
        log_to(&mut command, &dir.join("xlb.log"))?;
        let pid = self.lab.spawn(command)?;
        let node = &mut self.nodes[i];
        node.xlb_pid = Some(pid);
        let link = node.pin_path.join("link");
        wait_ready(
            pid,
            READY,
            || link.exists(),
            || format!("xlb run in {}: {}", ns.name, node.log()),
        )
    }

    /// Kills node `i` hard: `kill -9` its daemon, `xlb down` its pins (which withdraws its
    /// VIPs through its BIRD), then stops its BIRD.
    pub fn kill_node(&mut self, i: usize) -> anyhow::Result<()> {
        self.stop_daemon(i, libc::SIGKILL)?;
        self.xlb(i, &["down"])?.ok()?;
        if let Some(bird) = self.nodes[i].bird_pid.take() {
            self.lab.terminate(bird)?;
        }
        let _ = std::fs::remove_file(self.nodes[i].routes_file());
        Ok(())
    }

    /// Stops only node `i`'s daemon with `signal` (SIGKILL after a grace period) and reaps
    /// it; its BIRD and its pins stay.
    pub fn stop_daemon(&mut self, i: usize, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = self.nodes[i]
            .xlb_pid
            .take()
            .context("the node does not run")?;
        // SAFETY: signalling a child this lab spawned and has not reaped.
        unsafe { libc::kill(pid as i32, signal) };
        self.lab.terminate(pid)?;
        Ok(())
    }

    /// Whether node `i`'s BIRD is still running.
    pub fn bird_runs(&self, i: usize) -> bool {
        self.nodes[i].bird_pid.is_some_and(|pid| !exited(pid))
    }

    /// `xlb ARGS --pin-path PIN` in node `i`'s namespace.
    pub fn xlb(&self, i: usize, args: &[&str]) -> anyhow::Result<VerbOutput> {
        let node = &self.nodes[i];
        xlb_verb(&node.host.ns, &self.xlb, &node.pin_path, args)
    }

    /// New flows node `i` steered for the VIP, per backend (its `xlb stats`).
    pub fn node_new_flows(&self, i: usize) -> anyhow::Result<Vec<u64>> {
        let stats = self.xlb(i, &["stats", "--output", "json"])?.ok()?.json()?;
        let mut flows = vec![0; self.backends.len()];
        for vip in stats["vips"].as_array().into_iter().flatten() {
            for row in vip["backends"].as_array().into_iter().flatten() {
                let address = row["address"].as_str().unwrap_or_default();
                if let Some(b) = self
                    .backends
                    .iter()
                    .position(|b| b.address.to_string() == address)
                {
                    flows[b] += row["new_flows"].as_u64().unwrap_or(0);
                }
            }
        }
        Ok(flows)
    }

    /// The router's next hops for the VIP (`ip route show VIP`).
    pub fn next_hops(&self) -> anyhow::Result<BTreeSet<Ipv4Addr>> {
        let out = self
            .router
            .command("ip")
            .args(["-4", "route", "show", &format!("{VIP}/32")])
            .output()?;
        Ok(via_addresses(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Waits until the router's next hops for the VIP are exactly `nodes`; returns how long.
    pub fn wait_next_hops(&self, nodes: &[usize], within: Duration) -> anyhow::Result<Duration> {
        let want: BTreeSet<Ipv4Addr> = nodes.iter().map(|i| self.nodes[*i].host.address).collect();
        let started = Instant::now();
        loop {
            let hops = self.next_hops()?;
            if hops == want {
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                bail!(
                    "after {within:?} the router's next hops for {VIP} are {hops:?}, not \
                     {want:?}; router BIRD log:\n{}",
                    std::fs::read_to_string(self.dir.join("router/bird.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The next hops the router's BIRD learned for the IPv6 VIP over BGP (`birdc show route
    /// for VIP6`): each node's IPv4 address, carried as an extended next hop (RFC 8950).
    pub fn ipv6_next_hops(&self) -> anyhow::Result<BTreeSet<Ipv4Addr>> {
        let out = std::process::Command::new("birdc")
            .arg("-s")
            .arg(self.dir.join("router/bird.ctl"))
            .args([
                "show",
                "route",
                "for",
                &format!("{VIP6}/128"),
                "table",
                "master6",
            ])
            .output()?;
        Ok(via_addresses(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Runs `f` on a thread inside the client namespace.
    pub fn client<R: Send>(&self, f: impl FnOnce() -> R + Send) -> anyhow::Result<R> {
        self.client.run(f)
    }

    /// Backend index by name.
    pub fn backend_named(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }
}

impl Drop for ScaleOut {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Relaxed);
        for listener in self.listeners.drain(..) {
            let _ = listener.join();
        }
        self.shared.join_handlers();
        for node in &self.nodes {
            let _ = std::fs::remove_file(lb_userspace::bgp::state_path(&node.pin_path));
        }
    }
}

/// One connection to the VIP from the client namespace (call inside [`ScaleOut::client`]):
/// the stream and the name of the backend that answered.
pub fn connect() -> anyhow::Result<(TcpStream, String)> {
    let vip = SocketAddr::from((VIP, VIP_PORT));
    let mut stream = TcpStream::connect_timeout(&vip, CONNECT_TIMEOUT)
        .with_context(|| format!("connecting to {vip}"))?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let name = echo::read_line(&mut stream)?;
    Ok((stream, name))
}

/// Sends one byte on `stream` and reads its echo back.
pub fn echo(stream: &mut TcpStream, byte: u8) -> anyhow::Result<()> {
    stream.write_all(&[byte]).context("sending")?;
    let mut back = [0u8; 1];
    stream.read_exact(&mut back).context("reading the echo")?;
    ensure!(back[0] == byte, "sent {byte}, echoed {}", back[0]);
    Ok(())
}

/// The IPv4 addresses after each `via` in a route listing (`ip route`, `birdc show route`).
fn via_addresses(text: &str) -> BTreeSet<Ipv4Addr> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "via")
        .filter_map(|w| w[1].parse().ok())
        .collect()
}

fn listen(backend: &Host, shared: &Arc<echo::Shared>) -> anyhow::Result<JoinHandle<()>> {
    let listener = backend
        .ns
        .run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, VIP_PORT)))?
        .with_context(|| format!("listening in {}", backend.ns.name))?;
    listener.set_nonblocking(true)?;
    let (shared, name) = (Arc::clone(shared), backend.name.clone());
    // Only the lab's shutdown stops these servers.
    let never = AtomicBool::new(false);
    Ok(std::thread::spawn(move || {
        echo::accept(&listener, &name, &never, &shared)
    }))
}

/// `cargo xtask lab --nodes N`: builds the lab with `nodes` nodes, starts them, waits for the
/// router's multipath route, sends `requests` new connections from the client and prints
/// which node (the router's choice, `ip route get` with the connection's ports) and which
/// backend (its answer) served the first ones, then the totals per node (each node's own
/// counters) and per backend beside the weights, and the table fingerprints of every node.
/// Everything is removed when it returns (and on Ctrl-C).
pub fn run_lab(nodes: usize, requests: usize) -> anyhow::Result<()> {
    const SHOWN: usize = 12;
    let started = Instant::now();
    let mut lab = ScaleOut::new("scale", nodes)?;
    println!(
        "lab: client {CLIENT} -> router {ROUTER} (BIRD, AS {ROUTER_AS}, ECMP with L4 hashing) \
         -> {nodes} xlb nodes (BIRD, AS {NODE_AS}) -> backends {} weighted {WEIGHTS:?}",
        lab.backends
            .iter()
            .map(|b| format!("{} {}", b.name, b.address))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for i in 0..nodes {
        lab.start_node(i)?;
        println!(
            "lab: node {} ({}) up: xlb run --config, BIRD announcing {VIP}/32",
            lab.nodes[i].host.name, lab.nodes[i].host.address
        );
    }
    let all: Vec<usize> = (0..nodes).collect();
    let took = lab.wait_next_hops(&all, Duration::from_secs(30))?;
    let route = lab
        .router
        .command("ip")
        .args(["route", "show", &format!("{VIP}/32")])
        .output()?;
    println!(
        "lab: BGP converged in {took:?}; the router's route:\n{}",
        String::from_utf8_lossy(&route.stdout).trim_end()
    );
    let before: Vec<Vec<u64>> = (0..nodes)
        .map(|i| lab.node_new_flows(i))
        .collect::<anyhow::Result<_>>()?;
    let served: Vec<(u16, String)> = lab.client(|| -> anyhow::Result<Vec<(u16, String)>> {
        (0..requests)
            .map(|_| {
                let (stream, name) = connect()?;
                Ok((stream.local_addr()?.port(), name))
            })
            .collect()
    })??;
    println!("\nthe first {SHOWN} connections:\n  client port  node  backend");
    for (port, backend) in served.iter().take(SHOWN) {
        let node = lab.router_choice(*port)?;
        println!("  {port:>11}  {node:>4}  {backend}");
    }
    let mut per_backend = vec![0u64; lab.backends.len()];
    for (_, name) in &served {
        if let Some(i) = lab.backend_named(name) {
            per_backend[i] += 1;
        }
    }
    println!("\n{requests} connections, per node (its own counters, `xlb stats`):");
    for (i, old) in before.iter().enumerate() {
        let now: u64 = lab.node_new_flows(i)?.iter().sum();
        let flows = now - old.iter().sum::<u64>();
        println!(
            "  {} {:>5} ({:.1}%)",
            lab.nodes[i].host.name,
            flows,
            flows as f64 * 100.0 / requests as f64
        );
    }
    let weight: u32 = WEIGHTS.iter().sum();
    println!("per backend (who answered), beside the share its weight gives it:");
    for (i, count) in per_backend.iter().enumerate() {
        println!(
            "  {} {:>5} ({:.1}%, weight {:.1}%)",
            lab.backends[i].name,
            count,
            *count as f64 * 100.0 / requests as f64,
            f64::from(WEIGHTS[i]) * 100.0 / f64::from(weight)
        );
    }
    println!("table fingerprints (same config, same tables):");
    for i in 0..nodes {
        let status = lab.xlb(i, &["status", "--output", "json"])?.ok()?.json()?;
        let prints: Vec<String> = status["vips"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| format!("{} {}", v["vip"], v["fingerprint"]))
            .collect();
        println!("  {} {}", lab.nodes[i].host.name, prints.join(", "));
    }
    if nodes > 1 {
        let mut args = vec!["audit".to_owned()];
        for node in &lab.nodes[1..] {
            args.push("--peer".into());
            args.push(node.pin_path.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let audit = lab.xlb(0, &args)?;
        print!("$ xlb audit --peer ... (on n0)\n{}", audit.stdout);
        ensure!(audit.code == Some(0), "the nodes' tables differ");
    }
    for i in 0..nodes {
        lab.stop_node(i)?;
    }
    lab.wait_next_hops(&[], Duration::from_secs(10))?;
    println!(
        "lab: every node stopped (SIGTERM: VIP withdrawn, `xlb down`); the router has no route \
         left; removing the lab ({:.1?} in all)",
        started.elapsed()
    );
    Ok(())
}

impl ScaleOut {
    /// The node the router picks for a connection from `CLIENT:port` to the VIP.
    pub fn router_choice(&self, port: u16) -> anyhow::Result<String> {
        let out = self
            .router
            .command("ip")
            .args([
                "-4",
                "route",
                "get",
                &VIP.to_string(),
                "from",
                &CLIENT.to_string(),
                "iif",
                "eth1",
                "ipproto",
                "tcp",
                "sport",
                &port.to_string(),
                "dport",
                &VIP_PORT.to_string(),
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let via = text
            .split_whitespace()
            .skip_while(|w| *w != "via")
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        Ok(self
            .nodes
            .iter()
            .find(|n| n.host.address.to_string() == via)
            .map_or(via, |n| n.host.name.clone()))
    }

    /// Stops node `i` as an operator would: SIGTERM to its daemon (which withdraws the VIP),
    /// `xlb down`, then its BIRD.
    pub fn stop_node(&mut self, i: usize) -> anyhow::Result<()> {
        if self.nodes[i].xlb_pid.is_some() {
            self.stop_daemon(i, libc::SIGTERM)?;
            self.xlb(i, &["down"])?.ok()?;
        }
        if let Some(bird) = self.nodes[i].bird_pid.take() {
            self.lab.terminate(bird)?;
        }
        Ok(())
    }
}
