//! The smallest lab: a client and a load-balancer namespace joined by a veth pair, the real
//! `xlb run --interface` (no services) attached in native mode on the load balancer's side,
//! and a bounded burst of UDP datagrams that xlb must count and pass to the stack. README's
//! first command runs the full lab instead ([`crate::lab`]). Also where tests and labs find
//! the `xlb` binary ([`xlb_binary`]).

use std::{
    net::UdpSocket,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::netns::{Lab, Netns};

const CLIENT_ADDR: &str = "198.18.0.1";
const LB_ADDR: &str = "198.18.0.2";
const PORT: u16 = 9000;

/// What the demo sent, what arrived, and what xlb printed.
#[derive(Debug)]
pub struct Report {
    pub sent: u32,
    pub received: u32,
    /// Everything `xlb run` printed, its final counters last.
    pub xlb_output: String,
}

impl Report {
    /// Packets of the last `name` line (e.g. `reason.not_vip`) xlb printed, 0 if none.
    pub fn counter(&self, name: &str) -> u64 {
        self.xlb_output
            .lines()
            .rev()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next()? == name).then(|| fields.next()?.parse().ok())?
            })
            .unwrap_or(0)
    }
}

/// The `xlb` binary to run: `$XLB_BIN` (what `cargo xtask test` sets, after building it), else
/// `xlb` beside the running executable's directory (target/debug/deps/.. for tests), built
/// first with the cargo that built this harness so a plain `cargo test` never runs a stale
/// binary; a failed build is an error, not a fallback to the old one.
pub fn xlb_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("XLB_BIN") {
        return Ok(PathBuf::from(path));
    }
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(build_xlb)
        .clone()
        .map_err(anyhow::Error::msg)?;
    let exe = std::env::current_exe()?;
    let candidates = exe.ancestors().skip(1).take(2).map(|dir| dir.join("xlb"));
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "the xlb binary was not found beside {}: set XLB_BIN",
        exe.display()
    )
}

/// `cargo build -p lb-userspace --bin xlb` in this workspace (once per process; a no-op when
/// the binary is fresh).
fn build_xlb() -> Result<(), String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "lb-userspace", "--bin", "xlb"])
        .current_dir(workspace)
        .status()
        .map_err(|err| format!("running {} to build xlb: {err}", env!("CARGO")))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo build -p lb-userspace --bin xlb` failed ({status}): fix the build, or set \
             XLB_BIN to the xlb binary to test"
        ))
    }
}

/// Runs the demo with `datagrams` UDP datagrams (at most 10,000).
pub fn run(xlb: &Path, datagrams: u32) -> anyhow::Result<Report> {
    let datagrams = datagrams.min(10_000);
    let mut lab = Lab::new("demo")?;
    let client = lab.netns("client")?;
    let lb = lab.netns("lb")?;
    // Only the demo's datagrams should reach xlb: no IPv6 neighbour or router chatter.
    for ns in [&client, &lb] {
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
    }
    crate::netns::veth((&client, "eth0"), (&lb, "eth0"))?;
    client.addr("eth0", &format!("{CLIENT_ADDR}/24"))?;
    lb.addr("eth0", &format!("{LB_ADDR}/24"))?;

    let log = lab.temp_path("xlb.log")?;
    let log_file = std::fs::File::create(&log)?;
    let mut command = lb.command(xlb);
    command
        .args([
            "run",
            "--interface",
            "eth0",
            "--xdp-mode",
            "native",
            "--stats-interval",
            "0",
        ])
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let pid = lab.spawn(command)?;
    wait_for_xdp(&lb, "eth0", Duration::from_secs(10))?;

    let receiver = lb.run(|| UdpSocket::bind((LB_ADDR, PORT)))??;
    receiver.set_read_timeout(Some(Duration::from_millis(500)))?;
    let sender = client.run(|| UdpSocket::bind((CLIENT_ADDR, 0)))??;
    let mut received = 0;
    let mut buf = [0u8; 64];
    for seq in 0..datagrams {
        sender.send_to(&seq.to_be_bytes(), (LB_ADDR, PORT))?;
        // Receive as we go so no socket buffer overflows.
        if receiver.recv(&mut buf).is_ok() {
            received += 1;
        }
    }
    let status = lab.terminate(pid)?;
    let xlb_output = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        bail!("xlb run exited with {status}:\n{xlb_output}");
    }
    Ok(Report {
        sent: datagrams,
        received,
        xlb_output,
    })
}

/// Waits until an XDP program is attached to `dev` in `ns`.
fn wait_for_xdp(ns: &Netns, dev: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let out = std::process::Command::new("ip")
            .args(["-n", &ns.name, "link", "show", dev])
            .output()
            .context("running ip link")?;
        if String::from_utf8_lossy(&out.stdout).contains("prog/xdp") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "no XDP program appeared on {dev} in {} within {timeout:?}",
        ns.name
    )
}
