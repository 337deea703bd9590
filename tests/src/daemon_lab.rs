//! A load-balancer lab run by the real daemon: the client, lb, switch and backend namespaces of
//! [`crate::network`] (as in [`crate::topology`]), but xlb is the `xlb run --config FILE`
//! process in the lb namespace (health checks, reloads, metrics, alerts), driven as an
//! operator would: by its config file, signals, the `xlb` verbs and HTTP scrapes of its
//! metrics endpoint.
//!
//! ```text
//!   client (eth0: 198.18.0.1) ──┐
//!   lb     (eth0: 198.18.0.2) ──┼── br0 in sw ── XDP bare_pass on p-lb, so native XDP_TX from
//!   b{i}   (eth0: .10+i)      ──┘   the lb is delivered; every b{i} holds the VIP on lo
//! ```
//!
//! Every backend runs a controllable TCP server on port 80: it answers each connection with
//! its name and a newline, then echoes whatever the client sends until the client closes, so
//! the same server serves one-shot "who answered?" connections and long-lived streams.
//! [`DaemonLab::stop_backend`] closes its listener (new connections are refused, established
//! ones live on), [`DaemonLab::start_backend`] listens again.

use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use aya::Ebpf;
use socket2::SockRef;

use crate::{
    connect::connect_from,
    demo, echo,
    netns::{Ipv6, Lab, Netns},
    network::{Balancers, Built, Network},
};

pub use crate::network::{CLIENT_V4 as CLIENT, Host, LB_V4 as LB};
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
pub const VIP_PORT: u16 = 80;
/// The VIP as the `xlb backend` verb and the metrics' `vip` label spell it.
pub const VIP_SPEC: &str = "198.18.1.10:80/tcp";
/// The VIP's config name.
pub const VIP_NAME: &str = "web";
/// Where the daemon serves metrics, on the lb namespace's own loopback.
pub const METRICS_PORT: u16 = 9100;
/// Health checks of every backend: a TCP connect to port 80.
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(200);
pub const HEALTH_TIMEOUT: Duration = Duration::from_millis(100);
pub const RISE: u32 = 2;
pub const FALL: u32 = 2;
/// How long a client waits for the handshake and for each answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How often server threads look at their stop flags.
pub(crate) const POLL: Duration = Duration::from_millis(50);
/// How long the daemon may take to attach (or adopt) and serve metrics.
const DAEMON_READY: Duration = Duration::from_secs(15);

/// What one `xlb` verb printed and how it exited.
#[derive(Clone, Debug)]
pub struct VerbOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl VerbOutput {
    /// Fails with everything the verb printed unless it exited 0.
    pub fn ok(self) -> anyhow::Result<VerbOutput> {
        ensure!(
            self.code == Some(0),
            "xlb exited with {:?}:\n{}{}",
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }

    /// Whether the verb refused (exit 1) with each of `in_stdout` in its stdout and each of
    /// `in_stderr` in its stderr.
    pub fn refused_with(&self, in_stdout: &[&str], in_stderr: &[&str]) -> bool {
        self.code == Some(1)
            && in_stdout.iter().all(|word| self.stdout.contains(word))
            && in_stderr.iter().all(|word| self.stderr.contains(word))
    }

    /// stdout as JSON (for `--output json`).
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("xlb printed no JSON document:\n{}", self.stdout))
    }
}

/// The lab; dropping it stops the daemon and the servers and removes every namespace and pin.
pub struct DaemonLab {
    // Fields drop in order: servers first (their sockets pin the namespaces), then the bridge
    // program, the lab (the daemon, the pins, the namespaces) last.
    servers: Vec<Server>,
    shared: Arc<echo::Shared>,
    _bridge_pass: Ebpf,
    pub client: Netns,
    pub lb: Netns,
    pub switch: Netns,
    pub backends: Vec<Host>,
    /// The daemon's pin directory (xlb creates it).
    pub pin_path: PathBuf,
    /// The daemon's config file.
    pub config_path: PathBuf,
    /// A directory of the lab's own under /tmp (config, log, anything a test writes there),
    /// removed with the lab.
    pub dir: PathBuf,
    pub xlb: PathBuf,
    daemon: Option<u32>,
    lab: Lab,
}

impl DaemonLab {
    /// Builds the namespaces, links and `backends` servers (1 to 20), and writes the config
    /// with equal weights. Starts no daemon: see [`DaemonLab::start_daemon`].
    pub fn new(label: &str, backends: usize) -> anyhow::Result<DaemonLab> {
        ensure!(
            (1..=20).contains(&backends),
            "{backends} backends: use 1 to 20"
        );
        let xlb = demo::xlb_binary()?;
        let mut lab = Lab::new(label)?;
        let net = Network {
            ipv6: Ipv6::Off,
            balancers: Balancers::One,
            backends,
            vips: &[IpAddr::V4(VIP)],
            fabric_mtu: None,
        }
        .build(|name| lab.netns(name))?;
        let mut passes = net.pass_xdp()?;
        let Built {
            switch,
            client,
            mut balancers,
            backends: hosts_out,
            ..
        } = net;
        let lb = balancers.pop().context("one balancer")?.ns;

        let pin_path = lab.pin_dir("xlb")?;
        // The lab removes the directory on drop; xlb creates it itself.
        std::fs::remove_dir(&pin_path)
            .with_context(|| format!("removing the empty {}", pin_path.display()))?;
        let dir = lab.temp_path("files")?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config_path = dir.join("xlb.toml");

        let shared = Arc::new(echo::Shared::default());
        let servers = hosts_out
            .iter()
            .map(|host| Server {
                host: host.clone(),
                listening: None,
            })
            .collect();
        let mut daemon_lab = DaemonLab {
            servers,
            shared,
            _bridge_pass: passes.pop().context("one balancer")?,
            client,
            lb,
            switch,
            backends: hosts_out,
            pin_path,
            config_path,
            dir,
            xlb,
            daemon: None,
            lab,
        };
        for index in 0..backends {
            daemon_lab.start_backend(index)?;
        }
        let weights = vec![1; backends];
        daemon_lab.write_config(&daemon_lab.config_text(&weights, None))?;
        Ok(daemon_lab)
    }

    /// [`DaemonLab::new`], with the daemon started.
    pub fn started(label: &str, backends: usize) -> anyhow::Result<DaemonLab> {
        let mut lab = DaemonLab::new(label, backends)?;
        lab.start_daemon()?;
        Ok(lab)
    }

    /// A config for this lab: the dsr VIP [`VIP_SPEC`] over every backend with `weights`
    /// (one per backend) and TCP health checks, native XDP on the lb's eth0, the lab's pin
    /// path and metrics on 127.0.0.1:[`METRICS_PORT`]; `alerts` is the body of an `[alerts]`
    /// table, if any.
    pub fn config_text(&self, weights: &[u32], alerts: Option<&str>) -> String {
        let mut text = format!(
            "[global]\ninterface = \"eth0\"\nxdp_mode = \"native\"\npin_path = \"{}\"\n\
             metrics_address = \"127.0.0.1:{METRICS_PORT}\"\n\n",
            self.pin_path.display()
        );
        if let Some(alerts) = alerts {
            text += &format!("[alerts]\n{alerts}\n\n");
        }
        text += &format!(
            "[[vip]]\nname = \"{VIP_NAME}\"\naddress = \"{VIP}\"\nport = {VIP_PORT}\n\
             protocol = \"tcp\"\nforwarding = \"dsr\"\n"
        );
        for (host, weight) in self.backends.iter().zip(weights) {
            text += &format!(
                "\n  [[vip.backend]]\n  address = \"{}\"\n  weight = {weight}\n  mac = \"{}\"\n\
                 \x20   [vip.backend.health]\n    check = \"tcp\"\n    interval_ms = {}\n\
                 \x20   timeout_ms = {}\n    rise = {RISE}\n    fall = {FALL}\n",
                host.address,
                host.mac,
                HEALTH_INTERVAL.as_millis(),
                HEALTH_TIMEOUT.as_millis(),
            );
        }
        text
    }

    /// Replaces the daemon's config file with `text` in one step (a rename), so the daemon
    /// never reads half a file.
    pub fn write_config(&self, text: &str) -> anyhow::Result<()> {
        write_atomically(&self.config_path, text)
    }

    /// Writes `text` as `name` in the lab's directory and returns its path.
    pub fn write_file(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        write_atomically(&path, text)?;
        Ok(path)
    }

    /// Index of the backend whose address is `address`.
    pub fn backend_index(&self, address: &str) -> Option<usize> {
        self.backends
            .iter()
            .position(|host| host.address.to_string() == address)
    }

    // ---- the daemon ----

    /// Starts `xlb run --config` in the lb namespace and waits until its link is pinned and
    /// its metrics endpoint answers; returns its pid (nsenter execs xlb: the pid is xlb's).
    pub fn start_daemon(&mut self) -> anyhow::Result<u32> {
        self.start_daemon_under(&[])
    }

    /// [`DaemonLab::start_daemon`], with xlb run by `wrapper` (a program and its arguments
    /// that execs the rest, e.g. `setpriv --no-new-privs`).
    pub fn start_daemon_under(&mut self, wrapper: &[&str]) -> anyhow::Result<u32> {
        ensure!(self.daemon.is_none(), "the daemon already runs");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = self.lb.command(program);
                command.args(args).arg(&self.xlb);
                command
            }
            None => self.lb.command(&self.xlb),
        };
        command
            .args(["run", "--config"])
            .arg(&self.config_path)
            // No NO_COLOR: the log is a file, so xlb must write plain lines by itself.
            .env_remove("NO_COLOR");
        log_to(&mut command, &self.log_path())?;
        let pid = self.lab.spawn(command)?;
        self.daemon = Some(pid);
        wait_ready(
            pid,
            DAEMON_READY,
            || self.pin_path.join("link").exists() && self.scrape().is_ok(),
            || format!("xlb run: {}", self.daemon_log()),
        )?;
        Ok(pid)
    }

    /// The running daemon's pid.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon
    }

    /// Sends `signal` to the daemon.
    pub fn signal_daemon(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = self.daemon.context("no daemon runs")?;
        // SAFETY: signalling a child this lab spawned and has not reaped.
        if unsafe { libc::kill(pid as i32, signal) } != 0 {
            bail!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until the daemon exits on its own (bounded by `timeout`), reaps it and returns
    /// how it ended.
    pub fn wait_daemon_exit(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.daemon.context("no daemon runs")?;
        let deadline = Instant::now() + timeout;
        while !exited(pid) {
            ensure!(
                Instant::now() < deadline,
                "xlb run (pid {pid}) still runs after {timeout:?}; its log:\n{}",
                self.daemon_log()
            );
            std::thread::sleep(POLL);
        }
        self.daemon = None;
        self.lab.terminate(pid)
    }

    /// `kill -9` the daemon and reap it: no chance to clean anything up.
    pub fn kill_daemon(&mut self) -> anyhow::Result<()> {
        self.signal_daemon(libc::SIGKILL)?;
        let pid = self.daemon.take().context("no daemon runs")?;
        let status = self.lab.terminate(pid)?;
        ensure!(
            !status.success(),
            "xlb run exited successfully after SIGKILL"
        );
        Ok(())
    }

    /// Everything the daemons of this lab logged so far.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("xlb.log")
    }

    /// Runs `xlb ARGS --pin-path PIN` in the lb namespace.
    pub fn xlb(&self, args: &[&str]) -> anyhow::Result<VerbOutput> {
        xlb_verb(&self.lb, &self.xlb, &self.pin_path, args)
    }

    /// `xlb status --output json`.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        self.xlb(&["status", "--output", "json"])?.ok()?.json()
    }

    /// The live config generation.
    pub fn generation(&self) -> anyhow::Result<u64> {
        let status = self.status()?;
        status["generation"]
            .as_u64()
            .with_context(|| format!("no generation in {status}"))
    }

    /// `xlb stats --output json`: the VIP's row of backend `index`.
    pub fn backend_stats(&self, index: usize) -> anyhow::Result<serde_json::Value> {
        let stats = self.xlb(&["stats", "--output", "json"])?.ok()?.json()?;
        let address = self.backends[index].address.to_string();
        stats["vips"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|vip| vip["backends"].as_array().into_iter().flatten())
            .find(|b| b["address"] == address.as_str())
            .cloned()
            .with_context(|| format!("no backend {address} in xlb stats: {stats}"))
    }

    /// Whether backend `index` takes new flows: `active` with a part of the table.
    pub fn in_table(&self, index: usize) -> anyhow::Result<bool> {
        let row = self.backend_stats(index)?;
        let share = row["expected_share"].as_f64().unwrap_or(0.0);
        Ok(row["state"] == "active" && share > 0.0)
    }

    /// GET /metrics over HTTP from inside the lb namespace; the body of a 200 answer.
    pub fn scrape(&self) -> anyhow::Result<String> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, METRICS_PORT));
        let answer = self
            .lb
            .run(|| -> std::io::Result<String> {
                let mut stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                stream.set_write_timeout(Some(Duration::from_secs(5)))?;
                stream.write_all(
                    format!(
                        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )?;
                let mut answer = String::new();
                // The endpoint closes each connection after its answer; the cap bounds it.
                stream.take(16 << 20).read_to_string(&mut answer)?;
                Ok(answer)
            })?
            .with_context(|| format!("scraping http://{address}/metrics in {}", self.lb.name))?;
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .with_context(|| format!("no HTTP head in {answer:?}"))?;
        let status = head.lines().next().unwrap_or_default();
        ensure!(
            status.starts_with("HTTP/1.") && status.split(' ').nth(1) == Some("200"),
            "GET /metrics answered {status:?}"
        );
        Ok(body.to_owned())
    }

    // ---- the backends' servers ----

    /// Closes backend `index`'s listener: new connections to it are refused, established ones
    /// go on.
    pub fn stop_backend(&mut self, index: usize) -> anyhow::Result<()> {
        let server = self.servers.get_mut(index).context("no such backend")?;
        let listening = server
            .listening
            .take()
            .with_context(|| format!("{} is not listening", server.host.name))?;
        listening.stop();
        Ok(())
    }

    /// Listens again on backend `index`'s port 80.
    pub fn start_backend(&mut self, index: usize) -> anyhow::Result<()> {
        let server = self.servers.get_mut(index).context("no such backend")?;
        ensure!(
            server.listening.is_none(),
            "{} already listens",
            server.host.name
        );
        server.listening = Some(Listening::start(&server.host, &self.shared)?);
        Ok(())
    }

    // ---- the client ----

    /// A handle that opens connections from the client namespace; it can move to another
    /// thread while the lab is changed.
    pub fn connector(&self) -> Connector {
        Connector {
            client: self.client.clone(),
            names: self.backends.iter().map(|host| host.name.clone()).collect(),
        }
    }

    /// Opens `count` connections to the VIP and returns how many each backend answered;
    /// fails at the first connection that fails, or when they take longer than `budget`.
    pub fn ask_many(&self, count: usize, budget: Duration) -> anyhow::Result<Vec<u64>> {
        self.connector().session(|session| {
            let deadline = Instant::now() + budget;
            let mut answered = vec![0u64; session.names.len()];
            for n in 0..count {
                ensure!(
                    Instant::now() < deadline,
                    "{n} of {count} connections in {budget:?}: too slow"
                );
                let backend = session
                    .ask()
                    .with_context(|| format!("connection {n} of {count}"))?;
                answered[backend] += 1;
            }
            Ok(answered)
        })?
    }

    /// Opens `count` long-lived connections to the VIP.
    pub fn open_streams(&self, count: usize) -> anyhow::Result<Vec<Stream>> {
        self.connector()
            .session(|session| (0..count).map(|_| session.open_stream()).collect())?
    }
}

impl Drop for DaemonLab {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Relaxed);
        for server in &mut self.servers {
            if let Some(listening) = server.listening.take() {
                listening.stop();
            }
        }
        self.shared.join_handlers();
    }
}

/// Opens connections from the client namespace.
#[derive(Clone, Debug)]
pub struct Connector {
    client: Netns,
    names: Vec<String>,
}

impl Connector {
    /// Runs `f` on a thread inside the client namespace, where [`Session`] connects.
    pub fn session<R: Send>(&self, f: impl FnOnce(&Session) -> R + Send) -> anyhow::Result<R> {
        let session = Session { names: &self.names };
        self.client.run(|| f(&session))
    }

    /// How many backends the lab has (the range of [`Session::ask`]'s answers).
    pub fn backends(&self) -> usize {
        self.names.len()
    }
}

/// Connections from a thread inside the client namespace.
pub struct Session<'a> {
    names: &'a [String],
}

impl Session<'_> {
    /// One connection to the VIP: returns the index of the backend that answered.
    pub fn ask(&self) -> anyhow::Result<usize> {
        let (_stream, backend) = self.connect()?;
        Ok(backend)
    }

    /// A connection to the VIP that stays open; its backend echoes what it is sent.
    pub fn open_stream(&self) -> anyhow::Result<Stream> {
        let (stream, backend) = self.connect()?;
        Ok(Stream { stream, backend })
    }

    /// One connection to the VIP from the fixed source `CLIENT:port`: returns the index of the
    /// backend that answered. The socket binds with SO_REUSEADDR and closes with a reset
    /// (SO_LINGER 0), so no TIME_WAIT is left on either end and the same four-tuple can
    /// connect again at once. Pick ports outside the client's ephemeral range
    /// (32768-60999), so no other connection of the lab takes them.
    pub fn ask_from(&self, port: u16) -> anyhow::Result<usize> {
        let vip = SocketAddr::from((VIP, VIP_PORT));
        let source = SocketAddr::from((CLIENT, port));
        let mut stream = connect_from(source, vip, CONNECT_TIMEOUT)
            .with_context(|| format!("{source} -> {vip}"))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        let name = echo::read_line(&mut stream).with_context(|| format!("{source} -> {vip}"))?;
        SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .with_context(|| format!("SO_LINGER on {source}"))?;
        drop(stream);
        self.names
            .iter()
            .position(|n| *n == name)
            .with_context(|| format!("{source} -> {vip}: unexpected answer {name:?}"))
    }

    fn connect(&self) -> anyhow::Result<(TcpStream, usize)> {
        let vip = SocketAddr::from((VIP, VIP_PORT));
        let mut stream = TcpStream::connect_timeout(&vip, CONNECT_TIMEOUT)
            .with_context(|| format!("connecting to {vip}"))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        let local = stream.local_addr()?;
        let name = echo::read_line(&mut stream).with_context(|| format!("{local} -> {vip}"))?;
        let backend = self
            .names
            .iter()
            .position(|n| *n == name)
            .with_context(|| format!("{local} -> {vip}: unexpected answer {name:?}"))?;
        Ok((stream, backend))
    }
}

/// A long-lived connection to the VIP.
#[derive(Debug)]
pub struct Stream {
    stream: TcpStream,
    /// Index of the backend serving it.
    pub backend: usize,
}

impl Stream {
    /// Sends one byte and reads its echo back (within the read timeout).
    pub fn echo(&mut self, byte: u8) -> anyhow::Result<()> {
        let local = self.stream.local_addr()?;
        self.stream
            .write_all(&[byte])
            .with_context(|| format!("stream from {local}: sending"))?;
        let mut back = [0u8; 1];
        self.stream
            .read_exact(&mut back)
            .with_context(|| format!("stream from {local}: reading the echo"))?;
        ensure!(
            back[0] == byte,
            "stream from {local}: sent {byte}, echoed {}",
            back[0]
        );
        Ok(())
    }
}

struct Server {
    host: Host,
    listening: Option<Listening>,
}

/// A listener on port 80 and the thread accepting on it.
struct Listening {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Listening {
    fn start(host: &Host, shared: &Arc<echo::Shared>) -> anyhow::Result<Listening> {
        let listener = host
            .ns
            .run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, VIP_PORT)))?
            .with_context(|| format!("listening on port {VIP_PORT} in {}", host.ns.name))?;
        // Non-blocking, so a connection reset between poll and accept cannot block the thread.
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, shared, name) = (Arc::clone(&stop), Arc::clone(shared), host.name.clone());
            std::thread::spawn(move || echo::accept(&listener, &name, &stop, &shared))
        };
        Ok(Listening { stop, thread })
    }

    /// Stops accepting and closes the listener (the thread owns it).
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Runs the verb `xlb ARGS --pin-path PIN` (the binary `xlb`) in namespace `ns`, as an
/// operator would from a shell there, and returns what it printed and how it exited.
pub fn xlb_verb(
    ns: &Netns,
    xlb: &Path,
    pin_path: &Path,
    args: &[&str],
) -> anyhow::Result<VerbOutput> {
    verb_output(ns.command(xlb), pin_path, args)
}

/// [`xlb_verb`] in the test's own namespace.
pub fn host_verb(xlb: &Path, pin_path: &Path, args: &[&str]) -> anyhow::Result<VerbOutput> {
    verb_output(Command::new(xlb), pin_path, args)
}

fn verb_output(mut command: Command, pin_path: &Path, args: &[&str]) -> anyhow::Result<VerbOutput> {
    command
        .args(args)
        .arg("--pin-path")
        .arg(pin_path)
        .stdin(Stdio::null());
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    Ok(VerbOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Whether process `pid` has exited (gone, or a zombie waiting to be reaped).
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: `pid (comm) S ...`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Sends `command`'s output to the end of the file at `log`.
pub fn log_to(command: &mut Command, log: &Path) -> anyhow::Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    command.stdout(file.try_clone()?).stderr(file);
    Ok(())
}

/// Polls `ready` until it holds; fails with `what` (who, and its log) once process `pid`
/// exits or `within` has passed, saying which.
pub fn wait_ready(
    pid: u32,
    within: Duration,
    mut ready: impl FnMut() -> bool,
    what: impl Fn() -> String,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !ready() {
        let gone = exited(pid);
        if gone || Instant::now() >= deadline {
            let how = if gone {
                "exited".to_owned()
            } else {
                format!("did not become ready within {within:?}")
            };
            bail!("pid {pid} {how}; {}", what());
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// Replaces the file at `path` with `text` in one step (a rename), so no reader sees half.
pub fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let staging = path.with_extension("staging");
    let mut file =
        File::create(&staging).with_context(|| format!("creating {}", staging.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&staging, path).with_context(|| format!("replacing {}", path.display()))
}
