//! Network-namespace labs: named namespaces, veth pairs, bridges, addresses from 198.18.0.0/15,
//! processes started inside a namespace, and bpffs pin directories.
//!
//! Everything a [`Lab`] creates (namespaces, processes, pin directories, files under /tmp) is
//! removed when it is dropped (also while a test panics), and on Ctrl-C or SIGTERM. Names carry
//! the process id and a sequence number so labs can run in parallel, and leftovers of a process
//! that died without cleaning up (namespaces, pin directories, /tmp entries, the daemons' BGP
//! records under /run/xlb) are swept away by the next lab.

use std::{
    collections::BTreeMap,
    fs::File,
    net::IpAddr,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Mutex, Once,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::Ebpf;
pub use lb_userspace::netdev::run_checked;
use lb_userspace::{
    attach::{self, AttachMode},
    object,
};

/// Prefix of every namespace, pin directory and /tmp entry a lab creates.
pub const PREFIX: &str = "xlbt";
/// Where bpffs is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// What one lab must remove, kept in a process-wide registry so the signal handler can find it.
#[derive(Default)]
struct Resources {
    namespaces: Vec<String>,
    pids: Vec<u32>,
    pin_dirs: Vec<PathBuf>,
    /// Files and directories to remove: under /tmp, and stale BGP records.
    paths: Vec<PathBuf>,
}

static LIVE: Mutex<BTreeMap<u64, Resources>> = Mutex::new(BTreeMap::new());
static NEXT_LAB: AtomicU64 = AtomicU64::new(0);
static INIT: Once = Once::new();
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Held by the signal handler from the moment it sets INTERRUPTED until it exits the process.
static HANDLER: Mutex<()> = Mutex::new(());

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// If Ctrl-C or SIGTERM arrived, waits while the handler removes every lab and exits the
/// process with 130. Call it before reporting an error: after an interruption the error is a
/// consequence of the labs being removed, and exiting first would cut the removal short.
pub fn exit_if_interrupted() {
    if interrupted() {
        let _held = HANDLER.lock();
        unreachable!("the signal handler exits the process while holding its lock");
    }
}

/// A named network namespace of a lab.
#[derive(Clone, Debug)]
pub struct Netns {
    pub name: String,
}

/// Creates a veth pair with one end in each namespace and brings both ends up.
pub fn veth(a: (&Netns, &str), b: (&Netns, &str)) -> anyhow::Result<()> {
    // Created in the first namespace so the names never meet in the caller's namespace.
    a.0.ip(&[
        "link", "add", a.1, "type", "veth", "peer", "name", b.1, "netns", &b.0.name,
    ])?;
    a.0.ip(&["link", "set", a.1, "up"])?;
    b.0.ip(&["link", "set", b.1, "up"])
}

impl Netns {
    /// Adds `cidr` to `dev`. Only the benchmarking range 198.18.0.0/15 (and IPv6 documentation
    /// space) may be used: lab traffic must never leave the machine.
    pub fn addr(&self, dev: &str, cidr: &str) -> anyhow::Result<()> {
        check_lab_address(cidr)?;
        // nodad: IPv6 addresses are usable at once instead of after duplicate detection.
        let mut args = vec!["addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(&args)
    }

    /// Creates bridge `name`, enslaves `ports` (already here) and brings it up.
    pub fn bridge(&self, name: &str, ports: &[&str]) -> anyhow::Result<()> {
        self.ip(&["link", "add", name, "type", "bridge"])?;
        for port in ports {
            self.ip(&["link", "set", port, "master", name])?;
        }
        self.ip(&["link", "set", name, "up"])
    }

    /// Joins each member namespace's `eth0` to a port of bridge `br0` here through a veth
    /// (`members`: namespace and port name), with transmit checksum offload off at both ends:
    /// frames XDP forwards keep the checksum they arrived with, so every sender must compute
    /// full checksums rather than leave them to an offload that never happens.
    pub fn switch(&self, members: &[(&Netns, String)]) -> anyhow::Result<()> {
        for (ns, port) in members {
            veth((ns, "eth0"), (self, port))?;
        }
        let ports: Vec<&str> = members.iter().map(|(_, port)| port.as_str()).collect();
        self.bridge("br0", &ports)?;
        for (ns, port) in members {
            self.tx_checksum_off(port)?;
            ns.tx_checksum_off("eth0")?;
        }
        Ok(())
    }

    /// Makes this namespace a direct-server-return backend of `vips`: they go on `lo`; ARP
    /// never answers for them on eth0 (arp_ignore) nor uses them as the source of our own
    /// requests (arp_announce); and packets are accepted whose reply leaves by another route
    /// than the request came in (rp_filter).
    pub fn hold_vips_on_lo(&self, vips: &[IpAddr]) -> anyhow::Result<()> {
        for vip in vips {
            let prefix = if vip.is_ipv4() { 32 } else { 128 };
            self.addr("lo", &format!("{vip}/{prefix}"))?;
        }
        self.sysctl("net.ipv4.conf.all.arp_ignore", "1")?;
        self.sysctl("net.ipv4.conf.all.arp_announce", "2")?;
        for dev in ["all", "default", "lo", "eth0"] {
            self.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
        }
        Ok(())
    }

    /// A command that runs `program` inside this namespace. Uses `nsenter --net` rather than
    /// `ip netns exec`, which remounts /sys and would hide the bpffs pins.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        command
    }

    /// Runs `f` on a thread that has entered this namespace; sockets and XDP attachments made
    /// by `f` belong to the namespace.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> anyhow::Result<R> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on a valid namespace fd affects only this thread.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        let err = std::io::Error::last_os_error();
                        return Err(anyhow::anyhow!("setns into {path}: {err}"));
                    }
                    Ok(f())
                })
                .join()
                .map_err(|panic| anyhow::anyhow!("thread in {path} panicked: {panic:?}"))?
        })
    }

    /// Turns off tx checksum offload on `dev`: frames XDP rewrites and forwards from a veth
    /// otherwise reach their receiver with checksums it drops as bad.
    pub fn tx_checksum_off(&self, dev: &str) -> anyhow::Result<()> {
        let mut command = self.command("ethtool");
        run_checked(command.args(["-K", dev, "tx", "off"])).map(drop)
    }

    /// The MAC address of `dev`, as `ip` prints it. Read with `ip -j`: /sys/class/net shows the
    /// namespace sysfs was mounted in, whatever namespace the reading thread is in.
    pub fn mac(&self, dev: &str) -> anyhow::Result<String> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-j", "link", "show", dev])
            .output()
            .context("running ip -j link show")?;
        if !out.status.success() {
            bail!(
                "ip -n {} link show {dev} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let links: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        links[0]["address"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no address for {dev} in {}: {links}", self.name))
    }

    /// Runs `ip ARGS` in this namespace and fails with its stderr if it fails.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run_checked(Command::new("ip").args(&full)).map(drop)
    }

    /// Sets the sysctl `key` (dotted, e.g. `net.ipv4.conf.all.rp_filter`) to `value` in this
    /// namespace. Written from a thread inside it: /proc/sys/net follows the writer's network
    /// namespace, so no `ip netns exec` (and no procps) is needed.
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run(|| std::fs::write(&path, value))?
            .with_context(|| format!("setting {key}={value} in {}", self.name))
    }
}

/// How a lab's namespaces treat IPv6. Set before any link exists, so the defaults apply to
/// the new veths.
#[derive(Clone, Copy)]
pub enum Ipv6 {
    /// Off: no IPv6 neighbour or router chatter through xlb, no duplicate address detection
    /// holding links back.
    Off,
    /// On, without duplicate address detection, which would hold back every address for a
    /// second or two (neighbour solicitations need a link-local one).
    NoDad,
}

impl Ipv6 {
    /// Sets this treatment in `ns`, for its existing links and the ones to come.
    pub fn apply(self, ns: &Netns) -> anyhow::Result<()> {
        let (key, value) = match self {
            Ipv6::Off => ("disable_ipv6", "1"),
            Ipv6::NoDad => ("accept_dad", "0"),
        };
        ns.sysctl(&format!("net.ipv6.conf.all.{key}"), value)?;
        ns.sysctl(&format!("net.ipv6.conf.default.{key}"), value)
    }
}

/// Every lab's core: a switch namespace `sw` whose bridge `br0` joins the `eth0` of each
/// member namespace through port `p-NAME` ([`Netns::switch`]).
pub struct Switch {
    pub ns: Netns,
    /// The members, in the order their names were given.
    pub members: Vec<Netns>,
}

impl Switch {
    /// Builds the switch and its `members` (namespace names), each namespace made by `netns`
    /// (a [`Lab`]'s or a kept lab's) and given `ipv6` before any link exists.
    pub fn build(
        mut netns: impl FnMut(&str) -> anyhow::Result<Netns>,
        members: &[String],
        ipv6: Ipv6,
    ) -> anyhow::Result<Switch> {
        let mut make = |name: &str| {
            let ns = netns(name)?;
            ipv6.apply(&ns)?;
            anyhow::Ok(ns)
        };
        let ns = make("sw")?;
        let joined: Vec<Netns> = members
            .iter()
            .map(|name| make(name))
            .collect::<anyhow::Result<_>>()?;
        let ports: Vec<(&Netns, String)> = joined
            .iter()
            .zip(members)
            .map(|(member, name)| (member, Switch::port(name)))
            .collect();
        ns.switch(&ports)?;
        let members = joined;
        Ok(Switch { ns, members })
    }

    /// The switch port of member `name`.
    pub fn port(name: &str) -> String {
        format!("p-{name}")
    }

    /// Attaches `bare_pass` natively to member `name`'s port on `switch`: native XDP_TX on a
    /// veth reaches the peer only if the peer runs an XDP program. Attached while the returned
    /// object lives.
    pub fn pass_xdp(switch: &Netns, name: &str) -> anyhow::Result<Ebpf> {
        let mut pass = object::load(object::BASELINE_OBJECT, "bare_pass")?;
        let program = object::xdp_program(&mut pass, "bare_pass")?;
        let port = Switch::port(name);
        switch
            .run(|| attach::attach(program, &port, AttachMode::Native))?
            .with_context(|| format!("attaching bare_pass to {port}"))?;
        Ok(pass)
    }
}

/// A set of namespaces, links, processes and pins that disappears with it.
pub struct Lab {
    id: u64,
    prefix: String,
    children: Vec<Child>,
}

impl Lab {
    /// Starts an empty lab; `label` makes its names recognisable (keep it short).
    pub fn new(label: &str) -> anyhow::Result<Lab> {
        INIT.call_once(|| {
            sweep_stale();
            // A second handler cannot be installed (for instance by the binary that uses the
            // lab): then that binary is responsible for dropping its labs.
            let _ = ctrlc::set_handler(|| {
                let _held = HANDLER.lock();
                INTERRUPTED.store(true, Ordering::SeqCst);
                cleanup_all();
                std::process::exit(130);
            });
        });
        let id = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{PREFIX}-{}-{id}-{label}", std::process::id());
        lock().insert(id, Resources::default());
        Ok(Lab {
            id,
            prefix,
            children: Vec::new(),
        })
    }

    /// Creates namespace `name` of this lab, with its loopback up.
    pub fn netns(&mut self, name: &str) -> anyhow::Result<Netns> {
        let full = format!("{}-{name}", self.prefix);
        self.create(|r| {
            run_checked(Command::new("ip").args(["netns", "add", &full]))?;
            r.namespaces.push(full.clone());
            Ok(())
        })?;
        let ns = Netns { name: full };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Starts `command` (built with [`Netns::command`]) and stops it when the lab goes.
    pub fn spawn(&mut self, mut command: Command) -> anyhow::Result<u32> {
        let child = self.create(|r| {
            let child = command
                .stdin(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {command:?}"))?;
            r.pids.push(child.id());
            Ok(child)
        })?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Stops a process started with [`Lab::spawn`] (SIGTERM, then SIGKILL after 3 s) and
    /// returns how it ended.
    pub fn terminate(&mut self, pid: u32) -> anyhow::Result<std::process::ExitStatus> {
        let index = self
            .children
            .iter()
            .position(|child| child.id() == pid)
            .with_context(|| format!("process {pid} was not started by this lab"))?;
        let mut child = self.children.swap_remove(index);
        self.register(|r| r.pids.retain(|p| *p != pid));
        Ok(stop(&mut child))
    }

    /// Creates a fresh bpffs directory for pins, removed with the lab.
    pub fn pin_dir(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = Path::new(BPFFS).join(format!("{}-{name}", self.prefix));
        self.create(|r| {
            std::fs::create_dir_all(&dir).with_context(|| {
                format!("creating {}: is bpffs mounted at {BPFFS}?", dir.display())
            })?;
            r.pin_dirs.push(dir.clone());
            Ok(())
        })?;
        Ok(dir)
    }

    /// A path under /tmp named for this lab (`/tmp/PREFIX-PID-N-LABEL-NAME`), nothing created
    /// there yet: whatever the test writes at it (a file or a directory) is removed with the
    /// lab, on Ctrl-C, and by the sweep if the process dies.
    pub fn temp_path(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        let path = std::env::temp_dir().join(format!("{}-{name}", self.prefix));
        self.create(|r| {
            r.paths.push(path.clone());
            Ok(())
        })?;
        Ok(path)
    }

    /// Creates a resource and records it under the registry lock, so the signal handler
    /// either sees it or runs before it exists; nothing is created once interrupted.
    fn create<T>(&self, f: impl FnOnce(&mut Resources) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let mut live = lock();
        match live.get_mut(&self.id) {
            Some(resources) if !interrupted() => f(resources),
            _ => bail!("interrupted: the lab is being removed"),
        }
    }

    fn register(&self, f: impl FnOnce(&mut Resources)) {
        if let Some(resources) = lock().get_mut(&self.id) {
            f(resources);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = stop(child);
        }
        // Reaped: their ids may belong to someone else's process by now.
        let reaped: Vec<u32> = self.children.iter().map(Child::id).collect();
        self.register(|r| r.pids.retain(|pid| !reaped.contains(pid)));
        if let Some(resources) = lock().remove(&self.id) {
            remove(resources);
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, BTreeMap<u64, Resources>> {
    // A panic while holding the lock must not stop the cleanup of other labs.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SIGTERM, then SIGKILL if the process is still there after a grace period.
fn stop(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id() as i32;
    // SAFETY: signalling a child we spawned and have not reaped yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().unwrap_or_default()
}

fn remove(resources: Resources) {
    for &pid in &resources.pids {
        // SAFETY: best-effort kill of a process this lab started and has not reaped.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    // Reap them before their namespaces go: a process still exiting holds its namespace and
    // its files, and an unreaped one stays a zombie.
    for pid in resources.pids {
        reap(pid);
    }
    for dir in resources.pin_dirs {
        let _ = std::fs::remove_dir_all(&dir);
        // What xlb keeps for the pin path under /run/xlb (a killed daemon leaves its socket).
        lb_userspace::names::forget(&dir);
        let _ = std::fs::remove_file(lb_userspace::control::socket_path(&dir));
    }
    for path in resources.paths {
        remove_path(&path);
    }
    for ns in resources.namespaces {
        let _ = Command::new("ip")
            .args(["netns", "delete", &ns])
            .stderr(Stdio::null())
            .status();
    }
}

/// Waits (at most 5 s) for child `pid`, killed, to exit, and reaps it.
fn reap(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut status = 0;
        // SAFETY: waitpid on a child of this process, without blocking.
        match unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) } {
            0 => std::thread::sleep(Duration::from_millis(10)),
            // Reaped now, or not ours to wait for (already reaped): gone either way.
            _ => return,
        }
    }
}

/// Removes a file or a directory tree, whichever `path` is; nothing if it is absent.
fn remove_path(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

fn cleanup_all() {
    let all = std::mem::take(&mut *lock());
    for resources in all.into_values() {
        remove(resources);
    }
}

/// Removes namespaces, pin directories, /tmp entries and the daemons' BGP records left by lab
/// processes that are no longer alive.
pub fn sweep_stale() {
    let alive = |name: &str| {
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        pid.is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists())
    };
    let mut stale = Resources::default();
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if name.starts_with(PREFIX) && !alive(name) {
                stale.namespaces.push(name.to_owned());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(BPFFS) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(PREFIX) && !alive(&name) {
                stale.pin_dirs.push(entry.path());
            }
        }
    }
    for entry in std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{PREFIX}-")) && !alive(&name) {
            stale.paths.push(entry.path());
        }
    }
    // A daemon of a lab keys its record by its pin path, `/sys/fs/bpf/PREFIX-PID-...` with
    // every other character than a letter or digit made `_`.
    let record = format!("{}_{PREFIX}_", BPFFS.replace('/', "_"));
    let bgp_dir = Path::new(lb_userspace::bgp::STATE_DIR);
    for entry in std::fs::read_dir(bgp_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(&record)
            && !alive(&format!("{PREFIX}-{}", rest.replace('_', "-")))
        {
            stale.paths.push(entry.path());
        }
    }
    remove(stale);
}

/// Everything named with `marker` still on the machine: namespaces, pin directories and /tmp
/// entries starting with it, and processes with it on their command line or among their open
/// files. Tests use it to prove a lab left nothing behind.
pub fn leftovers(marker: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let mut left: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(marker))
        .map(|line| format!("namespace {line}"))
        .collect();
    for dir in [Path::new("/sys/fs/bpf").to_path_buf(), std::env::temp_dir()] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(marker) {
                left.push(entry.path().display().to_string());
            }
        }
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
            .unwrap_or_default();
        let open_file = std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| target.to_string_lossy().contains(marker));
        if cmdline.contains(marker) || open_file {
            left.push(format!("process {:?}: {cmdline}", entry.file_name()));
        }
    }
    left
}

/// Accepts only addresses in 198.18.0.0/15 or the IPv6 documentation prefix 2001:db8::/32.
fn check_lab_address(cidr: &str) -> anyhow::Result<()> {
    let addr = cidr.split('/').next().unwrap_or_default();
    let ok = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.octets()[0] == 198 && (v4.octets()[1] & 0xfe) == 18,
        Ok(std::net::IpAddr::V6(v6)) => v6.segments()[0] == 0x2001 && v6.segments()[1] == 0xdb8,
        Err(_) => false,
    };
    if !ok {
        bail!("lab address {cidr} is outside 198.18.0.0/15 and 2001:db8::/32; use one inside them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_lab_address;

    /// Test that labs refuse addresses outside the benchmarking and documentation ranges.
    #[test]
    fn lab_addresses_stay_in_test_ranges() {
        assert!(check_lab_address("198.18.0.1/24").is_ok());
        assert!(check_lab_address("198.19.255.1/24").is_ok());
        assert!(check_lab_address("2001:db8::1/64").is_ok());
        for outside in [
            "10.0.0.1/8",
            "198.20.0.1/24",
            "192.168.1.1/24",
            "fd00::1/64",
            "x",
        ] {
            assert!(
                check_lab_address(outside).is_err(),
                "{outside} was accepted"
            );
        }
    }
}
